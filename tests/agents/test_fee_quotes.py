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
    i = 3
    uniform = p2p_gym.parallel_env(scenario="default", mechanism="uniform", grid="none", grid_policy="fee",
                                   fee_type="uniform", fee_per_kwh=0.07)  # fmt: skip
    assert expected_fee(uniform, uniform.possible_agents[i]) == pytest.approx(
        0.07
    )  # every pair pays the same
    env = p2p_gym.parallel_env(scenario="default", mechanism="uniform", grid="none", grid_policy="fee",
                               fee_type="distance", fee_per_kwh_km=0.05)  # fmt: skip
    assert expected_fee(env, env.possible_agents[i]) > 0
    bilateral = p2p_gym.parallel_env(
        scenario="default", mechanism="bilateral", grid="none", grid_policy="fee"
    )
    assert expected_fee(bilateral, bilateral.possible_agents[i]) == 0.0
    assert expected_fee(p2p_gym.parallel_env(scenario="default", grid="none"), env.possible_agents[i]) == 0.0


def _fee_run(policies, env):  # type: ignore[no-untyped-def]
    """[T, N, 3]: bill, grid-only bill and P2P sales of every agent in every step of one episode."""
    eps = play(env, policies, np.random.default_rng(0), seed=0, on_step=lambda e, inf, r: [
        (inf[a]["bill"], inf[a]["grid_only_bill"], inf[a]["p2p_sold_kwh"]) for a in e.possible_agents])  # fmt: skip
    return np.array(eps[0].records)


#: a uniform fee of 0.40 EUR/kWh exceeds every retail − feed-in spread of ``default`` (≤ 0.379)
ABOVE_SPREAD = {"scenario": "default", "mechanism": "uniform", "grid": "none", "grid_policy": "fee",
                "fee_type": "uniform", "fee_per_kwh": 0.40, "episode_steps": 96, "start_day": 172}  # fmt: skip


@pytest.mark.parametrize("dispatch", ["fixed", "committed"])
@pytest.mark.parametrize("rule", ["truthful", "zi-c", "markup:0.1", "zip", "flex"])
def test_a_fee_above_the_spread_stops_every_rule_from_trading(dispatch: str, rule: str) -> None:
    """Any P2P trade under a fee above the spread leaves the pair worse off than the grid. Every rule quotes
    relative to its limit net of half the fee (a buyer below 1 − s, a seller above s, s = ½·fee / spread > ½), so no
    bid meets an ask: no volume, every bill equals the grid-only bill. (``best-response`` is not bound by its limit:
    it answers the last step's book, and one side of a trade can gain even under this fee.) The tolerance is for an
    agent whose target is within float32 rounding of zero, which the env may put on the other side of the book
    with a 1e-8 kWh order."""
    if rule == "flex" and dispatch == "fixed":
        pytest.skip("the flex rule is the truthful rule with fixed positions")
    env = p2p_gym.parallel_env(**ABOVE_SPREAD, dispatch=dispatch)
    aware = _fee_run(make_policies(rule, env), env)
    assert aware[..., 2].sum() < 1e-6
    np.testing.assert_allclose(aware[..., 0], aware[..., 1], atol=1e-6)


@pytest.mark.parametrize("dispatch", ["fixed", "committed"])
def test_quotes_that_ignore_the_fee_trade_and_lose(dispatch: str) -> None:
    """The counterfactual of the test above: the same truthful agents quoting without the fee trade and pay more
    than the grid alone would charge."""
    env = p2p_gym.parallel_env(**ABOVE_SPREAD, dispatch=dispatch)
    naive = make_policies("truthful", env)
    for p in naive.values():
        getattr(p, "policy", p).fee_per_kwh = 0.0  # the rule inside the committed adapter, or the rule itself
    blind = _fee_run(naive, env)
    assert blind[..., 2].sum() > 1.0  # they trade ...
    assert (blind[..., 0] - blind[..., 1]).sum() > 0.0  # ... and pay more than the grid alone would charge
