"""McAfee's trade reduction and the VCG double auction: hand-worked books, plain-Python and LP references,
and property tests on seeded random books (individual rationality, budget balance or deficit, efficiency and
dominant-strategy truthfulness checked by searching misreports)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linprog

from p2p_gym import market
from p2p_gym.errors import MarketError
from p2p_gym.market import Orders, clear, clear_mcafee, clear_vcg, vcg_transfers, welfare_optimum

TOL = 1e-9
N_BOOKS = 200


def book(*rows: tuple[int, bool, float, float]) -> Orders:
    """Orders from (agent, is_buy, price, kWh) rows."""
    a, b, p, q = zip(*rows)
    return Orders(agent=list(a), is_buy=list(b), price=list(p), quantity=list(q))


def random_book(rng: np.random.Generator, equal_quantity: bool = False) -> Orders:
    """One order per agent (buyers and sellers are distinct agents); prices on a coarse grid so that ties are
    frequent; quantities integer or continuous."""
    n = int(rng.integers(2, 9))
    is_buy = rng.random(n) < 0.5
    price = rng.integers(1, 13, n) / 20.0
    if equal_quantity:
        quantity = np.full(n, 1.5)
    elif rng.random() < 0.5:
        quantity = rng.integers(1, 5, n).astype(float)
    else:
        quantity = np.round(rng.uniform(0.1, 5.0, n), 3)
    return Orders(agent=np.arange(n), is_buy=is_buy, price=price, quantity=quantity)


def books(seed: int, count: int = N_BOOKS, **kw: bool) -> list[Orders]:
    rng = np.random.default_rng(seed)
    return [random_book(rng, **kw) for _ in range(count)]


# --------------------------------------------------------------------------------------------- references


def mcafee_reference(orders: Orders) -> tuple[list[float], float, float]:
    """McAfee (1992) on orders as traders, with plain loops: (fill per order, buyers' price, sellers' price)."""
    bids = [i for i in range(len(orders)) if orders.is_buy[i] and orders.quantity[i] > 0]
    asks = [i for i in range(len(orders)) if not orders.is_buy[i] and orders.quantity[i] > 0]
    bids.sort(key=lambda i: (-orders.price[i], orders.agent[i], i))
    asks.sort(key=lambda i: (orders.price[i], orders.agent[i], i))
    b = [float(orders.price[i]) for i in bids]
    s = [float(orders.price[i]) for i in asks]
    k = 0
    while k < min(len(b), len(s)) and b[k] >= s[k]:
        k += 1
    fills = [0.0] * len(orders)
    if k == 0:
        return fills, math.nan, math.nan
    if k < len(b) and k < len(s) and s[k - 1] <= (b[k] + s[k]) / 2 <= b[k - 1]:
        n_win, pb, ps = k, (b[k] + s[k]) / 2, (b[k] + s[k]) / 2
    else:
        n_win, pb, ps = k - 1, b[k - 1], s[k - 1]
    if n_win == 0:
        return fills, math.nan, math.nan
    demand = sum(orders.quantity[i] for i in bids[:n_win])
    supply = sum(orders.quantity[i] for i in asks[:n_win])
    volume = min(demand, supply)
    for i in bids[:n_win]:
        fills[i] = orders.quantity[i] * volume / demand
    for i in asks[:n_win]:
        fills[i] = orders.quantity[i] * volume / supply
    return fills, pb, ps


def lp_welfare(orders: Orders, without_agent: int | None = None) -> float:
    """max Σ_bids b·x − Σ_asks s·x s.t. Σ_bids x = Σ_asks x, 0 ≤ x ≤ q (dense LP, scipy)."""
    keep = np.ones(len(orders), bool) if without_agent is None else orders.agent != without_agent
    sign = np.where(orders.is_buy, 1.0, -1.0)[keep]
    if not len(sign):
        return 0.0
    res = linprog(
        -sign * orders.price[keep],
        A_eq=sign[None, :],
        b_eq=[0.0],
        bounds=list(zip(np.zeros(len(sign)), orders.quantity[keep])),
        method="highs",
    )
    assert res.status == 0
    return float(-res.fun)


def realised_welfare(orders: Orders, res: market.ClearingResult) -> float:
    return float(np.where(orders.is_buy, orders.price, -orders.price) @ res.filled)


def utility(res: market.ClearingResult, agent: int, value: float, is_buy: bool, n: int) -> float:
    """Quasi-linear utility of ``agent`` with true value (buyer) or cost (seller) ``value`` per kWh."""
    if is_buy:
        return float(value * res.bought(n)[agent] - res.paid(n)[agent])
    return float(res.received(n)[agent] - value * res.sold(n)[agent])


def misreport(orders: Orders, order: int, price: float, quantity: float) -> Orders:
    p, q = orders.price.copy(), orders.quantity.copy()
    p[order], q[order] = price, quantity
    return Orders(orders.agent, orders.is_buy, p, q)


PRICE_GRID = np.round(np.arange(0.0, 0.66, 0.025), 4)  # covers the book prices (0.05 .. 0.60) and between


def max_gain_from_lying(mechanism: str, orders: Orders, rng: np.random.Generator, n_agents: int = 3) -> float:
    """Largest utility gain over truthful of a misreport (price grid × quantities ≤ the true one) by up to
    ``n_agents`` random agents, the others reporting as given."""
    n = orders.n_agents
    truthful = clear(orders, mechanism, n_agents=n)
    worst = -np.inf
    for o in rng.choice(len(orders), size=min(n_agents, len(orders)), replace=False):
        a, buy, v, q = (
            int(orders.agent[o]),
            bool(orders.is_buy[o]),
            float(orders.price[o]),
            orders.quantity[o],
        )
        u_true = utility(truthful, a, v, buy, n)
        for q_lie in (q, 0.5 * q, 0.25 * q, 0.9 * q):
            for p_lie in PRICE_GRID:
                lie = clear(misreport(orders, o, float(p_lie), float(q_lie)), mechanism, n_agents=n)
                worst = max(worst, utility(lie, a, v, buy, n) - u_true)
    return worst


# ------------------------------------------------------------------------------------------ McAfee by hand


def test_mcafee_p0_inside_all_k_trade_at_p0() -> None:
    # Bids 0.9×1 (A0), 0.7×2 (A1), 0.3×1 (A2); asks 0.1×1 (A3), 0.4×2 (A4), 0.6×1 (A5).
    # Crossings: 0.9 ≥ 0.1, 0.7 ≥ 0.4, 0.3 < 0.6 → k = 2. p₀ = (0.3 + 0.6)/2 = 0.45 ∈ [s₂, b₂] = [0.4, 0.7]:
    # A0, A1 buy 3 kWh from A3, A4 at 0.45; the operator keeps nothing.
    b = book((0, True, 0.9, 1.0), (1, True, 0.7, 2.0), (2, True, 0.3, 1.0),
             (3, False, 0.1, 1.0), (4, False, 0.4, 2.0), (5, False, 0.6, 1.0))  # fmt: skip
    res = clear(b, "mcafee")
    np.testing.assert_allclose(res.filled, [1, 2, 0, 1, 2, 0])
    np.testing.assert_allclose(res.trades.price, 0.45)
    np.testing.assert_allclose(res.trades.seller_price, 0.45)
    assert res.clearing_price == pytest.approx(0.45)
    assert res.trades.operator_margin == pytest.approx(0.0)
    pairs = sorted(zip(res.trades.buyer.tolist(), res.trades.seller.tolist(), res.trades.quantity.tolist()))
    assert pairs == [(0, 3, 1.0), (1, 4, 2.0)]


def test_mcafee_trade_reduction_branch() -> None:
    # Bids 0.9×2 (A0), 0.5×1 (A1), 0.45×1 (A2); asks 0.1×1 (A3), 0.2×3 (A4), 0.8×1 (A5).
    # k = 2 (0.45 < 0.8); p₀ = (0.45 + 0.8)/2 = 0.625 > b₂ = 0.5: the 2nd pair (A1, A4) is removed. A0 wants
    # 2 kWh, A3 offers 1: volume 1, A0 pays b₂ = 0.5, A3 receives s₂ = 0.2, the operator keeps 0.3.
    b = book((0, True, 0.9, 2.0), (1, True, 0.5, 1.0), (2, True, 0.45, 1.0),
             (3, False, 0.1, 1.0), (4, False, 0.2, 3.0), (5, False, 0.8, 1.0))  # fmt: skip
    res = clear(b, "mcafee")
    np.testing.assert_allclose(res.filled, [1, 0, 0, 1, 0, 0])
    assert res.trades.price.tolist() == [0.5] and res.trades.seller_price.tolist() == [0.2]
    np.testing.assert_allclose(res.paid(6), [0.5, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(res.received(6), [0, 0, 0, 0.2, 0, 0])
    assert res.trades.operator_margin == pytest.approx(0.3)
    assert res.clearing_price == pytest.approx(0.5)


def test_mcafee_without_next_pair_reduces_and_rations_pro_rata() -> None:
    # Bids 0.9×2 (A0), 0.8×2 (A1), 0.5×1 (A2); asks 0.1×1, 0.2×1, 0.3×1 (A3–A5). All three pairs cross, there
    # is no 4th bid or ask for p₀: reduction. Winners A0, A1 (4 kWh) and A3, A4 (2 kWh): each bid gets
    # 2·(2/4) = 1 kWh; buyers pay b₃ = 0.5, sellers get s₃ = 0.3; margin 2·0.2 = 0.4.
    b = book((0, True, 0.9, 2.0), (1, True, 0.8, 2.0), (2, True, 0.5, 1.0),
             (3, False, 0.1, 1.0), (4, False, 0.2, 1.0), (5, False, 0.3, 1.0))  # fmt: skip
    res = clear(b, "mcafee")
    np.testing.assert_allclose(res.filled, [1, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(res.trades.price, 0.5)
    np.testing.assert_allclose(res.trades.seller_price, 0.3)
    assert res.trades.operator_margin == pytest.approx(0.4)


def test_mcafee_single_crossing_pair_is_reduced_to_nothing() -> None:
    res = clear(book((0, True, 0.3, 1.0), (1, False, 0.1, 1.0)), "mcafee")
    assert res.volume == 0.0 and math.isnan(res.clearing_price) and res.filled.tolist() == [0.0, 0.0]
    for b in (book((0, True, 0.1, 1.0), (1, False, 0.3, 1.0)), book((0, True, 0.1, 1.0)), Orders.empty()):
        assert clear(b, "mcafee").volume == 0.0


def test_mcafee_quantity_does_not_move_the_price() -> None:
    # The book of the module docstring: at the kWh crossing A could lower its price from 0.9 to 0.35 by
    # asking 9 kWh instead of 10 (demand reduction). Here k counts traders: A pays 0.9 either way.
    b = book((0, True, 1.0, 10.0), (1, True, 0.9, 1.0), (2, True, 0.2, 5.0),
             (3, False, 0.1, 10.0), (4, False, 0.5, 10.0))  # fmt: skip
    for q, paid in ((10.0, 9.0), (9.0, 8.1)):
        res = clear(misreport(b, 0, 1.0, q), "mcafee")
        assert res.bought(5)[0] == pytest.approx(q) and res.paid(5)[0] == pytest.approx(paid)
        assert res.trades.seller_price.tolist() == [0.5]


def test_mcafee_ignores_k_and_pairs_no_agent_with_itself() -> None:
    # A0 bids 0.9×1 and asks 0.1×1; A1 bids 0.8×1; A2 asks 0.2×1; A3 bids 0.05, A4 asks 0.7 (p₀ = 0.375).
    b = book((0, True, 0.9, 1.0), (0, False, 0.1, 1.0), (1, True, 0.8, 1.0), (2, False, 0.2, 1.0),
             (3, True, 0.05, 1.0), (4, False, 0.7, 1.0))  # fmt: skip
    results = [clear(b, "mcafee", k=k) for k in (0.0, 0.5, 1.0)]
    for res in results:
        assert np.all(res.trades.buyer != res.trades.seller)
        np.testing.assert_allclose(res.filled, [1, 1, 1, 1, 0, 0])
        np.testing.assert_allclose(res.trades.price, 0.375)
        assert res.trades.price.tolist() == results[0].trades.price.tolist()


# --------------------------------------------------------------------------------------------- VCG by hand


def test_vcg_one_pair_pays_the_ask_and_receives_the_bid() -> None:
    # W* = 0.3 − 0.1; without either agent W = 0: the buyer pays 0 − (0.2 − 0.3) = 0.1, the seller receives
    # 0.2 + 0.1 = 0.3; deficit 0.2 (Myerson–Satterthwaite).
    res = clear(book((0, True, 0.3, 1.0), (1, False, 0.1, 1.0)), "vcg")
    assert res.paid(2).tolist() == pytest.approx([0.1, 0.0])
    assert res.received(2).tolist() == pytest.approx([0.0, 0.3])
    assert res.trades.operator_margin == pytest.approx(-0.2)


def test_vcg_hand_computed_transfers_and_deficit() -> None:
    # Bids A 1.0×10, B 0.9×1, C 0.2×5; asks D 0.1×10, E 0.5×10. Efficient: A–D 10 kWh, B–E 1 kWh,
    # W* = 10·0.9 + 0.4 = 9.4.
    # W₋A = B–D 0.8 + C–D 5·0.1 = 1.3 → A pays 1.3 − (9.4 − 10) = 1.9.
    # W₋B = 9.0 → B pays 9.0 − (9.4 − 0.9) = 0.5.      W₋C = 9.4 → C pays 0 (C does not trade).
    # W₋D = A–E 10·0.5 = 5.0 → D receives (9.4 + 1.0) − 5.0 = 5.4.
    # W₋E = 9.0 → E receives (9.4 + 0.5) − 9.0 = 0.9.   Deficit 6.3 − 2.4 = 3.9.
    b = book((0, True, 1.0, 10.0), (1, True, 0.9, 1.0), (2, True, 0.2, 5.0),
             (3, False, 0.1, 10.0), (4, False, 0.5, 10.0))  # fmt: skip
    assert welfare_optimum(b) == pytest.approx(9.4)
    assert [welfare_optimum(b, without_agent=i) for i in range(5)] == pytest.approx([1.3, 9.0, 9.4, 5.0, 9.0])
    t, fills = vcg_transfers(b)
    np.testing.assert_allclose(t, [1.9, 0.5, 0.0, -5.4, -0.9], atol=1e-12)
    np.testing.assert_allclose(fills, [10, 1, 0, 10, 1])
    res = clear(b, "vcg", k=0.2)  # k is unused
    np.testing.assert_allclose(res.paid(5), [1.9, 0.5, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(res.received(5), [0, 0, 0, 5.4, 0.9], atol=1e-12)
    np.testing.assert_allclose(res.bought(5), [10, 1, 0, 0, 0])
    np.testing.assert_allclose(res.sold(5), [0, 0, 0, 10, 1])
    assert res.trades.operator_margin == pytest.approx(-3.9)
    assert res.clearing_price == pytest.approx(2.4 / 11)
    # The settlement of a VCG outcome balances once the operator's deficit is counted.
    st = market.settle(res, net_kwh=[-10, -1, -5, 10, 1], retail_price=1.2, feed_in_price=0.05)
    assert st.money_imbalance == pytest.approx(res.trades.operator_margin)


def test_vcg_tied_marginal_buyers_pay_their_bid() -> None:
    # Two bids at 0.3×1 share one 0.1×1 ask pro rata (0.5 kWh each). Removing either leaves W* unchanged
    # (the other takes the kWh), so each pays W* − (W* − 0.3·0.5) = 0.15, its bid; the seller receives
    # 0.2 + 0.1 = 0.3 (its removal loses all gains).
    b = book((0, True, 0.3, 1.0), (1, True, 0.3, 1.0), (2, False, 0.1, 1.0))
    res = clear(b, "vcg")
    np.testing.assert_allclose(res.bought(3), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(res.paid(3), [0.15, 0.15, 0.0])
    np.testing.assert_allclose(res.received(3), [0.0, 0.0, 0.3])


# ------------------------------------------------------------------------------------- random-book properties


def test_mcafee_matches_the_reference_and_is_ir_and_weakly_budget_balanced() -> None:
    for orders in books(seed=1):
        res = clear(orders, "mcafee")
        fills, pb, ps = mcafee_reference(orders)
        np.testing.assert_allclose(res.filled, fills, atol=1e-12)
        tr = res.trades
        if len(tr):
            np.testing.assert_allclose(tr.price, pb)
            np.testing.assert_allclose(tr.seller_price, ps)
            assert res.clearing_price == pytest.approx(pb)
        # Individual rationality per trade, weak budget balance.
        assert np.all(tr.price <= orders.price[tr.buy_order] + TOL)
        assert np.all(tr.seller_price >= orders.price[tr.sell_order] - TOL)
        assert np.all(tr.seller_price <= tr.price + TOL)
        assert tr.operator_margin >= -TOL
        assert np.all(res.filled <= orders.quantity + TOL)
        assert np.all(tr.buyer != tr.seller) and np.all(tr.quantity > 0)
        # Never more welfare than the optimum, never less than no trade.
        assert -TOL <= realised_welfare(orders, res) <= lp_welfare(orders) + TOL


def test_mcafee_efficiency_loss_is_at_most_the_reduced_trade() -> None:
    """Equal quantities q (McAfee's setting): W* − W ≤ q·(b_k − s_k), the least valuable efficient trade."""
    for orders in books(seed=2, equal_quantity=True):
        res = clear(orders, "mcafee")
        bids = np.sort(orders.price[orders.is_buy])[::-1]
        asks = np.sort(orders.price[~orders.is_buy])
        m = min(len(bids), len(asks))
        k = int(np.count_nonzero(bids[:m] >= asks[:m]))
        loss = lp_welfare(orders) - realised_welfare(orders, res)
        bound = 1.5 * (bids[k - 1] - asks[k - 1]) if k else 0.0
        assert -TOL <= loss <= bound + TOL


def test_mcafee_is_truthful_in_price_and_quantity() -> None:
    rng = np.random.default_rng(3)
    for orders in books(seed=4, count=60):
        assert max_gain_from_lying("mcafee", orders, rng) <= TOL


def test_vcg_is_efficient_ir_and_runs_a_deficit() -> None:
    for orders in books(seed=5):
        res = clear(orders, "vcg")
        uniform = clear(orders, "uniform")
        optimum = lp_welfare(orders)
        assert res.volume == pytest.approx(uniform.volume, abs=1e-9)
        np.testing.assert_allclose(res.filled, uniform.filled, atol=1e-9)
        assert realised_welfare(orders, res) == pytest.approx(optimum, abs=1e-9)
        assert welfare_optimum(orders) == pytest.approx(optimum, abs=1e-9)
        n = orders.n_agents
        value = np.bincount(orders.agent, orders.price, n)  # one order per agent: its price
        # IR: no buyer pays more than its value of what it gets, no seller receives less than its cost.
        assert np.all(res.paid(n) <= value * res.bought(n) + TOL)
        assert np.all(res.received(n) >= value * res.sold(n) - TOL)
        assert np.all(res.paid(n) >= -TOL)
        assert res.trades.operator_margin <= TOL  # deficit ≥ 0


def test_vcg_transfers_match_an_lp_reference() -> None:
    """t_i = W₋ᵢ − (W* − u_i) with every W from a dense LP."""
    for orders in books(seed=6, count=60):
        t, fills = vcg_transfers(orders)
        w_star = lp_welfare(orders)
        signed = np.where(orders.is_buy, orders.price, -orders.price) * fills
        for i in range(orders.n_agents):
            u_i = float(signed[orders.agent == i].sum())
            assert t[i] == pytest.approx(lp_welfare(orders, without_agent=i) - (w_star - u_i), abs=1e-9)


def test_vcg_is_truthful_in_price_and_quantity() -> None:
    rng = np.random.default_rng(7)
    for orders in books(seed=8, count=40):
        assert max_gain_from_lying("vcg", orders, rng) <= TOL


def test_mechanisms_handle_agents_on_both_sides() -> None:
    """Agents with several orders and on both sides: consistent trades, no self-trade, McAfee still IR per
    order and weakly budget balanced."""
    rng = np.random.default_rng(9)
    for _ in range(100):
        k = int(rng.integers(2, 12))
        orders = Orders(agent=rng.integers(0, 4, k), is_buy=rng.random(k) < 0.5,
                        price=rng.integers(1, 13, k) / 20.0, quantity=rng.integers(0, 4, k).astype(float))  # fmt: skip
        for mech in ("mcafee", "vcg"):
            res = clear(orders, mech, n_agents=6)
            tr = res.trades
            assert np.all(tr.buyer != tr.seller)
            assert np.all(res.filled <= orders.quantity + TOL)
            np.testing.assert_allclose(
                res.filled,
                np.bincount(tr.buy_order, tr.quantity, k) + np.bincount(tr.sell_order, tr.quantity, k),
            )
            assert res.paid(6).shape == (6,)
        mc = clear(orders, "mcafee")
        assert np.all(mc.trades.price <= orders.price[mc.trades.buy_order] + TOL)
        assert np.all(mc.trades.seller_price >= orders.price[mc.trades.sell_order] - TOL)
        assert mc.trades.operator_margin >= -TOL


# ---------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_name_the_field() -> None:
    good = book((0, True, 0.3, 1.0), (1, False, 0.1, 1.0))
    for fn in (clear_mcafee, clear_vcg, welfare_optimum, vcg_transfers):
        with pytest.raises(MarketError, match=r"^orders: must be an Orders"):
            fn("not a book")  # type: ignore[arg-type]
    for n in (1, True, 1.5):
        with pytest.raises(MarketError, match=r"^n_agents"):
            clear_vcg(good, n_agents=n)  # type: ignore[arg-type]
    with pytest.raises(MarketError, match=r"^n_agents"):
        clear(good, "vcg", n_agents=1)
    with pytest.raises(MarketError, match=r"^k: must be in \[0, 1\]"):
        clear(good, "mcafee", k=1.5)
    with pytest.raises(MarketError, match=r"^partners/preference"):
        clear(good, "vcg", partners=np.ones((2, 2), bool))
    with pytest.raises(MarketError, match=r"^candidates"):
        clear(good, "mcafee", candidates=3)
    with pytest.raises(MarketError, match=r"^mechanism: must be one of \[.*'mcafee', 'vcg'"):
        clear(good, "vickrey")
    with pytest.raises(MarketError, match=r"^price: must be finite"):
        clear(Orders(agent=[0, 1], is_buy=[True, False], price=[np.nan, 0.1], quantity=[1.0, 1.0]), "mcafee")
    assert "mcafee" in market.AUCTIONS and "vcg" in market.AUCTIONS and "vcg" in market.MECHANISMS
