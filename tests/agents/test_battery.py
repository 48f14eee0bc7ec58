"""Battery heuristic: set-points and the side of the order after the battery (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest

import p2p_gym
from agents import BatteryHeuristic, Truthful, act_all, make_policies
from p2p_gym.envs import OBS_FEATURES

I = {n: i for i, n in enumerate(OBS_FEATURES)}


def _obs(net: float, soc: float = 0.5, retail: float = 0.3, bat: float = 1.0) -> np.ndarray:
    o = np.zeros(len(OBS_FEATURES), dtype=np.float32)
    o[I["net"]], o[I["soc"]], o[I["retail_price"]], o[I["feed_in_price"]], o[I["has_battery"]] = (
        net,
        soc,
        retail,
        0.08,
        bat,
    )
    return o


def _heur(mean: float = 0.3) -> BatteryHeuristic:
    # 2 kW / 4 kWh battery, power scale 4 kW (net = 0.25 is 1 kW), lossless, 15-minute steps
    return BatteryHeuristic(Truthful(), 2.0, 4.0, 4.0, 0.25, 1.0, 0.05, daily_mean=lambda obs: mean)


def test_setpoints() -> None:
    h = _heur()
    assert h.setpoint(_obs(0.25)) == pytest.approx(-0.5)  # 1 kW surplus -> charge 1 kW of 2
    assert h.setpoint(_obs(-1.0)) == pytest.approx(1.0)  # 4 kW deficit -> discharge at the 2 kW limit
    assert h.setpoint(_obs(-1.0, soc=0.0)) == 0.0  # empty
    assert h.setpoint(_obs(0.25, soc=1.0)) == 0.0  # full
    # 0.125 kWh left: at most 0.125 / 0.25 h = 0.5 kW = 0.25 of the power limit
    assert h.setpoint(_obs(-1.0, soc=0.125 / 4.0)) == pytest.approx(0.25)
    assert h.setpoint(_obs(0.25, bat=0.0)) == 0.0  # no battery
    assert _heur(mean=0.2).setpoint(_obs(0.25, retail=0.3)) == pytest.approx(1.0)  # high price: discharge
    assert _heur(mean=0.2).setpoint(_obs(-0.25, retail=0.1)) == pytest.approx(-1.0)  # low price: charge


def test_side_after_battery() -> None:
    rng = np.random.default_rng(0)
    # low price with a 1 kW surplus: charging 2 kW makes it a 1 kW buyer -> truthful bid at retail (a0 = +1)
    a = _heur(mean=0.4).act(_obs(0.25, retail=0.3), rng)
    assert a[2] == pytest.approx(-1.0) and a[0] == pytest.approx(1.0)
    # high price with a 1 kW deficit: discharging 2 kW makes it a 1 kW seller -> ask at feed-in (a0 = -1)
    a = _heur(mean=0.2).act(_obs(-0.25, retail=0.3), rng)
    assert a[2] == pytest.approx(1.0) and a[0] == pytest.approx(-1.0)
    # empty battery and a deficit: stays a buyer
    a = _heur().act(_obs(-0.25, soc=0.0), rng)
    assert a[2] == 0.0 and a[0] == pytest.approx(1.0)


def test_tiny_battery_agent_stores_midday_surplus_and_gains() -> None:
    def day(spec):
        env = p2p_gym.parallel_env("tiny", mechanism="uniform", grid="none", episode_steps=96, start_day=0)
        pols = make_policies(spec, env)
        obs, _ = env.reset(seed=0)
        rng = np.random.default_rng(0)
        soc, total = [], 0.0
        while env.agents:
            obs, r, _, _, infos = env.step(act_all(pols, obs, rng))
            soc.append(infos["prosumer_1"]["soc"])
            total += r["prosumer_1"]
        return np.array(soc), total

    soc_b, r_b = day({"prosumer_1": "battery"})
    _, r_t = day("truthful")
    # agent 1 (5 kWh battery, starts at 50 %): morning deficit drains it, PV surplus fills it, evening drains it
    assert soc_b[24] < 0.5 and soc_b[64] == pytest.approx(1.0) and soc_b[-1] < soc_b[64]
    assert r_b > r_t  # evening load served from stored PV instead of retail
