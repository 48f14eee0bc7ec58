"""Platforms that clear against upstream prices: the DSO's day-ahead locational prices (``coordination="pricing"``)
and the operators' own predictions settled ex post (``"predictive"``).

References: the published prices are recomputed here from their definition with pandapower's AC power flow (the
marginal loss factors by finite differences of ``res_line.pl_mw + res_trafo.pl_mw``, the network charge from the
line lengths by hand); the settlement is recomputed per agent from the published prices."""

from __future__ import annotations

import copy

import numpy as np
import pandapower as pp
import pytest

from p2p_gym import sim
from p2p_gym.errors import EnvConfigError
from tests.conftest import cached_scenario

PLATFORM = np.array([0, 0, 1, 1, 0, 1])
DAY = 172


def _scenario():  # type: ignore[no-untyped-def]
    base = cached_scenario("default", n_agents=6)
    return base.replace(platform=PLATFORM, platform_names=("north", "south"))


def _run(cfg: sim.MarketConfig, steps: int, seed: int = 0, start: int = 0):  # type: ignore[no-untyped-def]
    static = sim.build(cfg, _scenario())
    rng = np.random.default_rng(seed)
    state = sim.initial_state(static, days=[DAY])
    outs = []
    for k in range(start + steps):
        actions = rng.uniform(-1, 1, (1, static.n, static.n_actions))
        obs = sim.observations(static, state)
        state, out = sim.step(static, state, actions)
        if k >= start:
            outs.append((obs, out))
    return static, outs


def _ac_losses_kw(sc, inj_kw: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    net = copy.deepcopy(sc.net)
    names = list(net.sgen.name)
    for a, p in zip(sc.agent_ids, inj_kw, strict=True):
        net.sgen.at[net.sgen.index[names.index(a)], "p_mw"] = p / 1000.0
    pp.runpp(net)
    return float(net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()) * 1000.0


def test_published_prices_follow_their_definition() -> None:
    cfg = sim.MarketConfig(
        grid="none", coordination="pricing", mechanism="uniform", upstream_fee_per_kwh_km=0.01
    )
    static, outs = _run(cfg, 1, start=48)  # noon of 21 June
    sc = static.scenario
    out = outs[0][1]
    t = int(out.t[0])
    inj = sc.pv_kw[t] - sc.load_kw[t]  # the expected dispatch: inflexible positions
    lam = sc.retail_price[t] if inj.sum() < 0 else sc.feed_in_price[t]
    # network charge: fee × line length from the substation to each platform's first agent, by hand from the net
    import networkx as nx
    import pandapower.topology as top

    graph = top.create_nxgraph(sc.net, calc_branch_impedances=False, multi=False)
    slack = int(sc.net.ext_grid.bus.iloc[0])
    km = nx.single_source_dijkstra_path_length(graph, slack, weight="weight")
    for k in range(2):
        first = int(sc.bus[PLATFORM == k][0])
        fee = 0.01 * km[first]
        idx = np.flatnonzero(PLATFORM == k)
        delta = 1.0
        up, down = inj.copy(), inj.copy()
        up[idx] += delta / len(idx)
        down[idx] -= delta / len(idx)
        mlf = (_ac_losses_kw(sc, up) - _ac_losses_kw(sc, down)) / (2 * delta)
        imp, exp = out.upstream_prices[0, k]
        # linear model's loss factor against AC finite differences
        assert imp - fee == pytest.approx(lam * (1 - mlf), abs=2e-4)
        assert exp + fee == pytest.approx(lam * (1 - mlf), abs=2e-4)
        assert imp - exp == pytest.approx(2 * fee, rel=1e-12)


@pytest.mark.parametrize("mechanism", ["uniform", "pay_as_bid", "bilateral", "mmr"])
def test_platforms_respect_the_published_prices(mechanism: str) -> None:
    cfg = sim.MarketConfig(
        grid="none", coordination="pricing", mechanism=mechanism, upstream_fee_per_kwh_km=0.02
    )
    _, outs = _run(cfg, 24, start=36)
    for obs, out in outs:
        imp = out.upstream_prices[0, PLATFORM, 0]
        exp = out.upstream_prices[0, PLATFORM, 1]
        # observed tariffs (columns 6, 7) are the platform's published prices
        np.testing.assert_allclose(obs[0, :, 6], imp, rtol=1e-6)
        np.testing.assert_allclose(obs[0, :, 7], exp, rtol=1e-6)
        # orders within each platform's band, local trades inside it
        assert np.all(out.order_price[0] <= imp + 1e-12) and np.all(out.order_price[0] >= exp - 1e-12)
        st = out.settlement
        unit = np.divide(st.p2p_paid[0] + st.p2p_received[0], st.p2p_bought_kwh[0] + st.p2p_sold_kwh[0],
                         out=np.full(6, np.nan), where=(st.p2p_bought_kwh[0] + st.p2p_sold_kwh[0]) > 0)  # fmt: skip
        ok = np.isfinite(unit)
        assert np.all(unit[ok] <= imp[ok] + 1e-9) and np.all(unit[ok] >= exp[ok] - 1e-9)
        # residuals settle with the DSO at the published prices
        np.testing.assert_allclose(st.grid_import_cost[0], st.grid_import_kwh[0] * imp, rtol=1e-12)
        np.testing.assert_allclose(st.grid_export_revenue[0], st.grid_export_kwh[0] * exp, rtol=1e-12)
        assert out.inter_platform_kwh[0] == 0.0


def test_pricing_accounts_balance_and_welfare_is_the_supplier_bill() -> None:
    cfg = sim.MarketConfig(grid="none", coordination="pricing", upstream_fee_per_kwh_km=0.02)
    static, outs = _run(cfg, 96)
    sc = static.scenario
    for _, out in outs:
        t = int(out.t[0])
        st = out.settlement
        assert abs(out.money_balance[0]) < 1e-9 and abs(out.energy_balance_kwh[0]) < 1e-9
        net = out.injection_kw[0].sum() * sc.dt_hours
        supplier = max(-net, 0) * sc.retail_price[t] - max(net, 0) * sc.feed_in_price[t]
        assert out.supplier_payment[0] == pytest.approx(supplier, abs=1e-12)
        paid = st.grid_import_cost[0].sum() - st.grid_export_revenue[0].sum()
        assert out.dso_balance[0] == pytest.approx(paid - supplier, abs=1e-9)
        assert out.welfare[0] == pytest.approx(-supplier - out.private_cost[0].sum(), abs=1e-9)
        # a platform operator's reward is its members' money per member
        for k in range(2):
            m = PLATFORM == k
            assert out.operator_rewards[0, k] == pytest.approx(-out.bills[0, m].sum() / m.sum(), abs=1e-9)


def test_predictive_operators_settle_ex_post() -> None:
    base = dict(grid="none", coordination="predictive", upstream_fee_per_kwh_km=0.02)
    # predictor "expected" publishes the DSO's prices
    _, priced = _run(sim.MarketConfig(**{**base, "coordination": "pricing"}), 96)
    static, pred = _run(sim.MarketConfig(**base), 96)
    sc = static.scenario
    mismatched = 0
    for (_, a), (_, b) in zip(priced, pred, strict=True):
        np.testing.assert_allclose(a.upstream_prices, b.upstream_prices, rtol=1e-12)
        t = int(b.t[0])
        net = b.injection_kw[0].sum()
        lam = sc.retail_price[t] if net < 0 else sc.feed_in_price[t]
        assert b.realised_upstream_price[0] == lam
        expected_lam = sc.retail_price[t] if (sc.pv_kw[t] - sc.load_kw[t]).sum() < 0 else sc.feed_in_price[t]
        st = b.settlement
        for k in range(2):
            m = PLATFORM == k
            imp, exp = b.upstream_prices[0, k]
            # realised prices: the published ones with λ replaced by the realised λ
            fee = 0.5 * (imp - exp)
            loss_term = (imp - fee) / expected_lam  # 1 − m
            imp_r, exp_r = lam * loss_term + fee, lam * loss_term - fee
            owed = st.grid_import_kwh[0, m].sum() * imp_r - st.grid_export_kwh[0, m].sum() * exp_r
            members = (st.grid_import_cost[0, m] - st.grid_export_revenue[0, m]).sum()
            assert b.operator_balance[0, k] == pytest.approx(members - owed, abs=1e-9)
        if lam != expected_lam:
            mismatched += 1
        else:  # a correct prediction leaves the operators nothing
            assert np.allclose(b.operator_balance[0], 0.0, atol=1e-12)
        # the same actions give the same physics and welfare: only who bears the forecast error differs
        assert b.welfare[0] == pytest.approx(a.welfare[0], abs=1e-9)
        assert b.dso_balance[0] + b.operator_balance[0].sum() == pytest.approx(a.dso_balance[0], abs=1e-9)
    assert mismatched > 0  # random batteries move the system's sign in some steps


def test_operator_agents_set_next_steps_price() -> None:
    cfg = sim.MarketConfig(grid="none", coordination="predictive", predictor="agents")
    static = sim.build(cfg, _scenario())
    sc = static.scenario
    state = sim.initial_state(static, days=[DAY])
    act = np.zeros((1, static.n, static.n_actions))
    with pytest.raises(EnvConfigError, match="operator_actions"):
        sim.step(static, state, act)
    state, _ = sim.step(static, state, act, operator_actions=np.array([[1.0, -1.0]]))
    t = int(state.t[0])
    np.testing.assert_allclose(state.upstream_price[0], [sc.retail_price[t], sc.feed_in_price[t]])
    state, out = sim.step(static, state, act, operator_actions=np.array([[5.0, np.nan]]))  # clipped, nan → 0
    _, mlf = static.pricing.expected(np.array([t]))
    fee = static.pricing.fee
    np.testing.assert_allclose(out.upstream_prices[0, :, 0], np.array([sc.retail_price[t], sc.feed_in_price[t]])
                               * (1 - mlf[0]) + fee)  # fmt: skip
    mid = 0.5 * (sc.retail_price[t + 1] + sc.feed_in_price[t + 1])
    np.testing.assert_allclose(state.upstream_price[0], [sc.retail_price[t + 1], mid])


def test_priced_coordination_refuses_trade_rules() -> None:
    with pytest.raises(EnvConfigError, match="pricing"):
        sim.MarketConfig(coordination="pricing", grid="linear", grid_policy="block")
