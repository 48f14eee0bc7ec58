"""The DSO's rules in the simulation: pre-market blocking and redirection (EUniversal D5.3 (2022), §5.3) and the
local flexibility market (§5.2.1), under committed dispatch on the congested ``default_high_pv`` feeder."""

from __future__ import annotations

import numpy as np
import pytest

import p2p_gym
from p2p_gym.errors import EnvConfigError
from p2p_gym.grid import GridModel
from p2p_gym.rollout import play
from tests.conftest import cached_scenario

OVERRIDES = {"pv_penetration": 0.5, "pv_kwp_per_mwh": 10.0}
KW = dict(mechanism="bilateral", grid="linear", dispatch="committed", episode_steps=96, start_day=160,
          scenario_overrides=OVERRIDES)  # fmt: skip


def _sens(sc):  # type: ignore[no-untyped-def]
    lin = GridModel(sc, "linear")
    s = lin.sensitivities
    return s["line_current_ka_per_kw"], s["line_current_ka"], lin.max_i_ka


def test_preblock_never_clears_a_pair_that_loads_an_at_risk_line() -> None:
    """Every cleared seller→buyer trade, moved by 1 kW, raises no line that was ≥ 80 % in the no-trade state by
    more than a tolerance (an independent evaluation with the sensitivities), while unchecked P2P clears such
    trades on this feeder; the volume re-matches among allowed pairs."""
    sc = cached_scenario("default_high_pv", **OVERRIDES)
    sens, i0, imax = _sens(sc)
    out = {}
    for policy in ("report", "preblock"):
        env = p2p_gym.parallel_env("default_high_pv", grid_policy=policy, **KW)

        def record(e, _i, _r):  # type: ignore[no-untyped-def]
            o = e.last_outcome
            base = sc.pv_kw[o.t] - sc.load_kw[o.t]
            flow = sens @ base
            loading = 100 * np.sqrt(i0**2 + flow**2) / imax
            risk = loading >= 80.0
            tr = o.result.trades
            d = (sens[:, tr.seller] - sens[:, tr.buyer])[risk] * np.sign(flow[risk])[:, None]
            return int((d > 1e-3 * np.abs(sens).max()).any(axis=0).sum()), float(tr.quantity.sum())

        eps = play(env, {}, np.random.default_rng(0), seed=0, on_step=record)
        harmful, volume = zip(*eps[0].records)
        out[policy] = (sum(harmful), sum(volume))
    assert out["report"][0] > 0 and out["preblock"][0] == 0
    assert out["preblock"][1] > 0.5 * out["report"][1]


def test_redirection_moves_volume_off_loading_pairs() -> None:
    """W = 1 (multiplicative): loading pairs cost (1 + W)^k more, relieving pairs nothing; the volume of cleared
    trades that load an at-risk line falls against W = 0."""
    sc = cached_scenario("default_high_pv", **OVERRIDES)
    sens, i0, imax = _sens(sc)
    vol = {}
    for w in (0.0, 1.0):
        env = p2p_gym.parallel_env("default_high_pv", grid_policy="redirect", redirect_w=w,
                                   preference="distance", preference_per_km=0.5, **KW)  # fmt: skip

        def record(e, _i, _r):  # type: ignore[no-untyped-def]
            o = e.last_outcome
            flow = sens @ (sc.pv_kw[o.t] - sc.load_kw[o.t])
            risk = 100 * np.sqrt(i0**2 + flow**2) / imax >= 80.0
            tr = o.result.trades
            d = (sens[:, tr.seller] - sens[:, tr.buyer])[risk] * np.sign(flow[risk])[:, None]
            loads = (d > 1e-3 * np.abs(sens).max()).any(axis=0)
            return float(tr.quantity[loads].sum())

        eps = play(env, {}, np.random.default_rng(0), seed=0, on_step=record)
        vol[w] = sum(eps[0].records)
    assert vol[0.0] > 0 and vol[1.0] < vol[0.0]


def test_flex_market_removes_congestion_or_reports_infeasible() -> None:
    """With curtailable PV the DSO's flexibility market clears every congested step: afterwards the linear check
    reports no overloaded line, the DSO pays exactly the activated kWh × offer price, and money balances. Without
    curtailment (and no batteries) nothing can be offered: the market is infeasible and the overloads stay."""
    for curtailable in (True, False):
        sc = cached_scenario("default_high_pv", **OVERRIDES).replace(pv_curtailable=curtailable)
        env = p2p_gym.parallel_env(sc, flex_market=True, flex_offer_price=0.07,
                                   **{k: v for k, v in KW.items() if k != "scenario_overrides"})  # fmt: skip

        def record(e, infos, _r):  # type: ignore[no-untyped-def]
            o = e.last_step
            lfm = o.flex_market
            m = infos[e.possible_agents[0]]["market"]
            paid = (lfm.up_kw[0] + lfm.down_kw[0]) * 0.07 * e.scenario.dt_hours
            np.testing.assert_allclose(o.flex_payment[0], paid, atol=1e-12)
            assert abs(m["money_balance"]) < 1e-9 and abs(m["energy_balance_kwh"]) < 1e-9
            return lfm.status[0], m["grid"]["n_overloaded_lines"] or 0

        eps = play(env, {}, np.random.default_rng(0), seed=0, on_step=record)
        statuses = [r[0] for r in eps[0].records]
        stats = {k: statuses.count(k) for k in ("cleared", "infeasible")}
        stats["overloaded_after"] = sum(r[1] for r in eps[0].records)
        if curtailable:
            assert stats["cleared"] > 0 and stats["infeasible"] == 0 and stats["overloaded_after"] == 0
        else:
            assert stats["infeasible"] > 0 and stats["overloaded_after"] > 0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"grid_policy": "preblock", "mechanism": "uniform"}, "grid_policy"),
        ({"grid_policy": "redirect", "grid": "none"}, "grid_policy"),
        ({"flex_market": True, "dispatch": "fixed"}, "flex_market"),
        ({"flex_market": True, "grid": "none", "dispatch": "committed"}, "flex_market"),
        ({"redirect_w": 1.5}, "redirect_w"),
    ],
)
def test_bad_dso_options_name_the_field(options: dict, field: str) -> None:
    kw = {"mechanism": "bilateral", "grid": "linear", **options}
    with pytest.raises(EnvConfigError, match=field):
        p2p_gym.parallel_env("tiny", **kw)
