"""Rule-based quotes pass the expected network fee on (``grid_policy="fee"`` with a clearing that does not net it)."""

from __future__ import annotations

import numpy as np
import pytest

import p2p_gym
from agents import make_policies
from agents.base import fee_adjusted
from agents.registry import expected_fee
from p2p_gym.rollout import play


def test_fee_adjusted_hand_values() -> None:
    # feed-in 0.10, retail 0.30 (spread 0.20), fee 0.10 per kWh, half per side: the seller asks 0.10 + 0.05 = 0.15
    # (x = 0.25), the buyer bids 0.30 − 0.05 = 0.25 (x = 0.75); a fee of 0.60 clips both to the other end
    assert fee_adjusted(0.0, False, 0.10, 0.10, 0.30) == pytest.approx(0.25)
    assert fee_adjusted(1.0, True, 0.10, 0.10, 0.30) == pytest.approx(0.75)
    assert fee_adjusted(0.0, False, 0.60, 0.10, 0.30) == 1.0
    assert fee_adjusted(1.0, True, 0.60, 0.10, 0.30) == 0.0
    assert fee_adjusted(0.4, True, 0.0, 0.10, 0.30) == 0.4


def test_expected_fee_is_the_mean_row_and_zero_where_the_clearing_nets_it() -> None:
    env = p2p_gym.parallel_env(scenario="default", mechanism="uniform", grid="none", grid_policy="fee",
                               fee_type="distance", fee_per_kwh_km=0.05)  # fmt: skip
    fee, i = env.static.fee_matrix, 3
    assert expected_fee(env, env.possible_agents[i]) == pytest.approx(np.delete(fee[i], i).mean())
    assert expected_fee(env, env.possible_agents[i]) > 0
    bilateral = p2p_gym.parallel_env(
        scenario="default", mechanism="bilateral", grid="none", grid_policy="fee"
    )
    assert expected_fee(bilateral, bilateral.possible_agents[i]) == 0.0
    assert expected_fee(p2p_gym.parallel_env(scenario="default", grid="none"), env.possible_agents[i]) == 0.0


@pytest.mark.parametrize("dispatch", ["fixed", "committed"])
def test_a_fee_above_the_spread_stops_truthful_trading(dispatch: str) -> None:
    """A uniform fee of 0.40 EUR/kWh exceeds every retail − feed-in spread of ``default`` (≤ 0.379), so any P2P
    trade leaves the pair worse off than the grid. Fee-aware truthful quotes never cross (no volume, every bill
    equals the grid-only bill); the same agents quoting without the fee trade and pay for it."""
    kw = {"scenario": "default", "mechanism": "uniform", "grid": "none", "grid_policy": "fee", "fee_type": "uniform",
          "fee_per_kwh": 0.40, "episode_steps": 96, "start_day": 172, "dispatch": dispatch}  # fmt: skip
    env = p2p_gym.parallel_env(**kw)

    def run(policies):  # type: ignore[no-untyped-def]
        eps = play(
            env,
            policies,
            np.random.default_rng(0),
            seed=0,
            on_step=lambda e, inf, r: [
                (inf[a]["bill"], inf[a]["grid_only_bill"], inf[a]["p2p_sold_kwh"]) for a in e.possible_agents
            ],
        )
        return np.array(eps[0].records)  # [T, N, 3]

    aware = run(make_policies("truthful", env))
    assert aware[..., 2].sum() == 0.0
    np.testing.assert_allclose(aware[..., 0], aware[..., 1], atol=1e-12)
    naive = make_policies("truthful", env)
    for p in naive.values():
        getattr(p, "policy", p).fee_per_kwh = 0.0  # the rule inside the committed adapter, or the rule itself
    blind = run(naive)
    assert blind[..., 2].sum() > 1.0  # they trade ...
    assert (blind[..., 0] - blind[..., 1]).sum() > 0.0  # ... and pay more than the grid alone would charge
