"""Several local markets in one simulation: each platform clears alone (``coordination="isolated"``) or all
agents clear together (``"single"``); checked against clearing each book directly with ``market.clear``."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym import market, sim
from p2p_gym.errors import EnvConfigError, ScenarioError
from tests.conftest import cached_scenario

PLATFORM = np.array([0, 0, 1, 1, 0, 1])


def _scenario():  # type: ignore[no-untyped-def]
    base = cached_scenario("default", n_agents=6)
    return base.replace(platform=PLATFORM, platform_names=("north", "south"))


def _direct(static, state, actions, members):  # type: ignore[no-untyped-def]
    """Positions from clearing each platform's book with market.clear: the orders come from the step's own
    decoded book (Outcome.order_*), which the plain single-market path is tested for elsewhere."""
    _, out = sim.step(static, state, actions)
    n = static.n
    bought, sold, paid = np.zeros(n), np.zeros(n), np.zeros(n)
    for idx in members:
        sel = idx[out.order_kwh[0, idx] > 0]
        book = market.Orders(
            agent=sel,
            is_buy=out.is_buy[0, sel],
            price=out.order_price[0, sel],
            quantity=out.order_kwh[0, sel],
        )
        res = market.clear(book, static.config.mechanism, n_agents=n)
        bought += res.bought(n)
        sold += res.sold(n)
        paid += res.paid(n)
    return out, bought, sold, paid


@pytest.mark.parametrize("mechanism", ["uniform", "pay_as_bid", "bilateral"])
def test_isolated_platforms_clear_their_own_books(mechanism: str) -> None:
    sc = _scenario()
    cfg = sim.MarketConfig(grid="none", mechanism=mechanism, coordination="isolated", start_day=172)
    static = sim.build(cfg, sc)
    assert [m.tolist() for m in static.platform_members] == [[0, 1, 4], [2, 3, 5]]
    rng = np.random.default_rng(3)
    state = sim.initial_state(static, days=[172])
    for _ in range(40):  # to 10:00, when both platforms have sellers and buyers
        state, _ = sim.step(static, state, np.zeros((1, static.n, static.n_actions)))
    traded = np.zeros(2)
    for _ in range(20):
        actions = rng.uniform(-1, 1, (1, static.n, static.n_actions))
        out, bought, sold, paid = _direct(static, state, actions, static.platform_members)
        np.testing.assert_allclose(out.settlement.p2p_bought_kwh[0], bought, atol=1e-9)
        np.testing.assert_allclose(out.settlement.p2p_sold_kwh[0], sold, atol=1e-9)
        np.testing.assert_allclose(out.settlement.p2p_paid[0], paid, atol=1e-9)
        # nothing crosses platforms; each platform's volume is its members' purchases
        assert out.inter_platform_kwh[0] == 0.0
        for k in range(2):
            assert out.platform_volume_kwh[0, k] == pytest.approx(bought[PLATFORM == k].sum(), abs=1e-9)
            traded[k] += out.platform_volume_kwh[0, k]
            assert out.platform_net_kwh[0, k] == pytest.approx(
                out.injection_kw[0, PLATFORM == k].sum() * static.dt, abs=1e-9
            )
        assert abs(out.money_balance[0]) < 1e-9 and abs(out.energy_balance_kwh[0]) < 1e-9
        if out.results is not None:  # the merged trades name the real agents, each within its platform
            tr = out.results[0].trades
            assert np.all(PLATFORM[tr.buyer] == PLATFORM[tr.seller])
        state, _ = sim.step(static, state, actions)
    assert np.all(traded > 0)


def test_single_market_counts_trades_across_platforms() -> None:
    sc = _scenario()
    cfg = sim.MarketConfig(grid="none", mechanism="bilateral", coordination="single", start_day=172)
    static = sim.build(cfg, sc)
    assert len(static.platform_members) == 1
    rng = np.random.default_rng(0)
    state = sim.initial_state(static, days=[172])
    crossed = 0.0
    for _ in range(50):
        actions = rng.uniform(-1, 1, (1, static.n, static.n_actions))
        state, out = sim.step(static, state, actions)
        tr = out.results[0].trades
        across = tr.quantity[PLATFORM[tr.buyer] != PLATFORM[tr.seller]].sum()
        assert out.inter_platform_kwh[0] == pytest.approx(across, abs=1e-12)
        assert out.inter_platform_kwh[0] + out.platform_volume_kwh[0].sum() == pytest.approx(
            out.p2p_volume_kwh[0], abs=1e-9
        )
        crossed += across
    assert crossed > 0  # random books do trade across the two platforms


def test_vectorised_isolated_equals_per_book() -> None:
    sc = _scenario()
    cfg = sim.MarketConfig(grid="none", mechanism="uniform", coordination="isolated")
    static = sim.build(cfg, sc)
    state = sim.initial_state(static, days=[172, 173, 180])
    for _ in range(45):
        actions = np.random.default_rng(int(state.step[0])).uniform(-1, 1, (3, static.n, static.n_actions))
        fast_state, fast = sim.step(static, state, actions, vectorised=True)
        _, slow = sim.step(static, state, actions, vectorised=False)
        np.testing.assert_allclose(fast.bills, slow.bills, atol=1e-9)
        np.testing.assert_allclose(fast.platform_volume_kwh, slow.platform_volume_kwh, atol=1e-9)
        state = fast_state


def test_bad_coordination_and_platform_fields() -> None:
    with pytest.raises(EnvConfigError, match="coordination"):
        sim.MarketConfig(coordination="federated")
    base = cached_scenario("default", n_agents=6)
    with pytest.raises(ScenarioError, match="platform"):
        base.replace(platform=np.array([0, 0, 2, 2, 0, 2]))  # platform 1 would be empty
    with pytest.raises(ScenarioError, match="platform"):
        base.replace(platform=np.array([0, 0, 1]))


def test_negotiation_adds_inter_platform_trades_that_only_raise_welfare() -> None:
    """Fixed dispatch, the same actions: the operators' trades replace grid exports of one platform and imports
    of the other, so welfare is never lower than with isolated platforms; money and energy balance."""
    sc = _scenario()
    rng = np.random.default_rng(7)
    statics = {
        c: sim.build(sim.MarketConfig(grid="none", coordination=c, negotiation="centralized"), sc)
        for c in ("isolated", "negotiation")
    }
    states = {c: sim.initial_state(s, days=[172]) for c, s in statics.items()}
    inter = 0.0
    for _ in range(96):
        actions = rng.uniform(-1, 1, (1, 6, statics["isolated"].n_actions))
        outs = {}
        for c, st in statics.items():
            states[c], outs[c] = sim.step(st, states[c], actions)
        iso, neg = outs["isolated"], outs["negotiation"]
        assert neg.welfare[0] >= iso.welfare[0] - 1e-9
        # the gain is the spread on the volume that no longer goes through the supplier
        spread = float(sc.retail_price[iso.t[0]] - sc.feed_in_price[iso.t[0]])
        assert neg.welfare[0] - iso.welfare[0] == pytest.approx(spread * neg.inter_platform_kwh[0], abs=1e-9)
        assert abs(neg.money_balance[0]) < 1e-9 and abs(neg.energy_balance_kwh[0]) < 1e-9
        inter += neg.inter_platform_kwh[0]
    assert inter > 0


def test_admm_negotiation_equals_centralized_in_the_simulation() -> None:
    sc = _scenario()
    rng = np.random.default_rng(11)
    statics = [
        sim.build(sim.MarketConfig(grid="none", coordination="negotiation", negotiation=m), sc)
        for m in ("centralized", "admm", "admm_async")
    ]
    states = [sim.initial_state(s, days=[172]) for s in statics]
    for _ in range(60):
        actions = rng.uniform(-1, 1, (1, 6, statics[0].n_actions))
        outs = []
        for i, st in enumerate(statics):
            states[i], out = sim.step(st, states[i], actions)
            outs.append(out)
        for out in outs[1:]:
            assert out.inter_platform_kwh[0] == pytest.approx(outs[0].inter_platform_kwh[0], abs=1e-4)
            assert out.welfare[0] == pytest.approx(outs[0].welfare[0], abs=1e-4)
            assert not out.negotiation_fallback[0]


def test_negotiation_rejects_trade_rules_on_local_trades() -> None:
    with pytest.raises(EnvConfigError, match="negotiation"):
        sim.MarketConfig(coordination="negotiation", grid_policy="block", mechanism="bilateral")
