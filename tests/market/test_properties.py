"""Property tests on thousands of random books: invariants of every mechanism, checked against references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_gym.market import AUCTIONS, COMMUNITY_RULES, Orders, clear, settle

from . import reference
from .strategies import books

TOL = 1e-9
N = 8


def check_invariants(orders: Orders, res, mechanism: str) -> None:  # type: ignore[no-untyped-def]
    tr = res.trades
    k = len(orders)
    assert res.filled.shape == (k,)
    # No order overfilled, fills consistent with trades.
    assert np.all(res.filled >= -TOL)
    assert np.all(res.filled <= orders.quantity + TOL)
    np.testing.assert_allclose(
        res.filled, np.bincount(tr.buy_order, tr.quantity, k) + np.bincount(tr.sell_order, tr.quantity, k)
    )
    if not len(tr):
        assert np.isnan(res.clearing_price)
        return
    assert np.all(tr.quantity > 0)
    # Sides and agents are those of the orders; no self-trade.
    assert np.all(orders.is_buy[tr.buy_order]) and not np.any(orders.is_buy[tr.sell_order])
    np.testing.assert_array_equal(tr.buyer, orders.agent[tr.buy_order])
    np.testing.assert_array_equal(tr.seller, orders.agent[tr.sell_order])
    assert np.all(tr.buyer != tr.seller)
    # Individual rationality: no buyer above its bid, no seller below its ask (at what each side pays/receives);
    # VCG charges each agent one net payment, so it is individually rational per agent (one order each)
    if mechanism != "vcg":
        assert np.all(tr.price <= orders.price[tr.buy_order] + TOL)
        assert np.all(tr.seller_price >= orders.price[tr.sell_order] - TOL)
    elif len(np.unique(orders.agent)) == len(orders):
        gain = np.bincount(tr.buyer, (orders.price[tr.buy_order] - tr.price) * tr.quantity, N)
        gain += np.bincount(tr.seller, (tr.seller_price - orders.price[tr.sell_order]) * tr.quantity, N)
        assert np.all(gain >= -TOL)
    # Budget balance: buyers' payments equal sellers' receipts plus what the operator keeps; the operator keeps
    # nothing except in McAfee's trade reduction (≥ 0) and VCG (a deficit, ≤ 0, with one order per agent).
    margin = tr.operator_margin
    assert res.paid(N).sum() - res.received(N).sum() == pytest.approx(margin, abs=TOL)
    if mechanism == "mcafee":
        assert margin >= -TOL
    elif mechanism == "vcg":
        if len(np.unique(orders.agent)) == len(orders):
            assert margin <= TOL
    else:
        assert abs(margin) <= TOL
        np.testing.assert_array_equal(tr.seller_price, tr.price)
    assert np.isfinite(res.clearing_price)
    if mechanism == "uniform":
        np.testing.assert_allclose(tr.price, res.clearing_price)


@settings(max_examples=600, deadline=None)
@given(book=books(), mechanism=st.sampled_from(AUCTIONS), k=st.sampled_from([0.0, 0.5, 0.7, 1.0]))
def test_invariants_all_auctions(book: Orders, mechanism: str, k: float) -> None:
    res = clear(book, mechanism, k=k, n_agents=N)
    check_invariants(book, res, mechanism)
    # Settlement of any result balances money.
    net = np.linspace(-2.0, 2.0, N)
    st_ = settle(res, net, 0.30, 0.05, fee_per_kwh=0.01)
    assert st_.money_imbalance == pytest.approx(res.trades.operator_margin, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(book=books(), rule=st.sampled_from(COMMUNITY_RULES))
def test_community_rules_share_pro_rata_and_balance(book: Orders, rule: str) -> None:
    """Community rules (no bids): the volume is min(S, D), every order is filled in proportion to its quantity,
    the mid-market and supply-demand-ratio prices lie between feed-in and retail, and the settlement balances."""
    retail, feed_in = 0.30, 0.05
    res = clear(book, rule, retail_price=retail, feed_in_price=feed_in, n_agents=N)
    supply = float(book.quantity[~book.is_buy].sum())
    demand = float(book.quantity[book.is_buy].sum())
    volume = min(supply, demand) if supply > 0 and demand > 0 else 0.0
    assert res.volume == pytest.approx(volume, abs=1e-9)
    if volume > 0:
        share = np.where(book.is_buy, volume / demand, volume / supply)
        np.testing.assert_allclose(res.filled, book.quantity * share, atol=1e-9)
        if rule != "bill_sharing":  # bill sharing splits the community's grid bill: 0 when S = D
            assert feed_in - 1e-12 <= res.clearing_price <= retail + 1e-12
    assert abs(res.paid(N).sum() - res.received(N).sum()) <= 1e-9
    st_ = settle(res, np.linspace(-2.0, 2.0, N), retail, feed_in)
    assert st_.is_balanced(1e-9)


@settings(max_examples=600, deadline=None)
@given(book=books(disjoint=True), k=st.sampled_from([0.0, 0.25, 0.5, 1.0]))
def test_uniform_volume_is_the_brute_force_maximum(book: Orders, k: float) -> None:
    args = (book.agent.tolist(), book.is_buy.tolist(), book.price.tolist(), book.quantity.tolist())
    expected = reference.uniform_volume(*args)
    res = clear(book, "uniform", k=k)
    assert res.volume == pytest.approx(expected, abs=1e-9)
    # Pay-as-bid accepts the same quantities (only the prices differ).
    pab = clear(book, "pay_as_bid", k=k)
    assert pab.volume == pytest.approx(expected, abs=1e-9)
    np.testing.assert_allclose(pab.filled, res.filled, atol=1e-9)
    if expected > 1e-9:
        b_star, a_star = reference.uniform_marginal_prices(*args[1:], expected)
        assert res.clearing_price == pytest.approx(k * b_star + (1 - k) * a_star)
    elif expected == 0:
        assert np.isnan(res.clearing_price)


@settings(max_examples=300, deadline=None)
@given(book=books(), data=st.data())
def test_uniform_with_self_crossing_never_exceeds_brute_force(book: Orders, data) -> None:  # type: ignore[no-untyped-def]
    """With an agent on both sides, its self-matched segment is dropped: volume ≤ the maximum."""
    args = (book.agent.tolist(), book.is_buy.tolist(), book.price.tolist(), book.quantity.tolist())
    res = clear(book, "uniform")
    assert res.volume <= reference.uniform_volume(*args) + 1e-9


def _permuted(book: Orders, perm: np.ndarray) -> Orders:
    return Orders(book.agent[perm], book.is_buy[perm], book.price[perm], book.quantity[perm])


@settings(max_examples=400, deadline=None)
@given(
    book=books(),
    mechanism=st.sampled_from(["uniform", "pay_as_bid", "bilateral"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_permutation_invariance(book: Orders, mechanism: str, seed: int) -> None:
    perm = np.random.default_rng(seed).permutation(len(book))
    a = clear(book, mechanism, n_agents=N)
    b = clear(_permuted(book, perm), mechanism, n_agents=N)
    for f in ("bought", "sold", "paid", "received"):
        np.testing.assert_allclose(getattr(a, f)(N), getattr(b, f)(N), atol=1e-9, err_msg=f)
    np.testing.assert_allclose(a.clearing_price, b.clearing_price, equal_nan=True)


@st.composite
def bilateral_cases(draw):  # type: ignore[no-untyped-def]
    book = draw(books(max_orders=14, n_agents=6))
    partners = np.array(draw(st.lists(st.booleans(), min_size=36, max_size=36))).reshape(6, 6)
    if draw(st.booleans()):
        pref = np.array(draw(st.lists(st.sampled_from([0.0, 0.02, 0.05, 0.1]), min_size=36, max_size=36)))
        pref = pref.reshape(6, 6)
    else:
        pref = np.zeros((6, 6))
    return book, partners, pref


@settings(max_examples=500, deadline=None)
@given(case=bilateral_cases(), k=st.sampled_from([0.0, 0.5, 1.0]))
def test_bilateral_optimal_and_respects_partners(case, k: float) -> None:  # type: ignore[no-untyped-def]
    book, partners, pref = case
    res = clear(book, "bilateral", k=k, partners=partners, preference=pref, n_agents=6)
    check_invariants(book, res, "bilateral")
    tr = res.trades
    # Only mutually accepted pairs trade.
    assert np.all(partners[tr.buyer, tr.seller] & partners[tr.seller, tr.buyer])
    surplus = float(
        (
            (
                book.price[tr.buy_order]
                - book.price[tr.sell_order]
                - pref[tr.buyer, tr.seller]
                - pref[tr.seller, tr.buyer]
            )
            * tr.quantity
        ).sum()
    )
    expected = reference.bilateral_optimum(
        book.agent.tolist(), book.is_buy.tolist(), book.price.tolist(), book.quantity.tolist(), partners, pref
    )
    assert surplus == pytest.approx(expected, abs=1e-7)
    # Trade prices are the pair's k-price.
    np.testing.assert_allclose(tr.price, k * book.price[tr.buy_order] + (1 - k) * book.price[tr.sell_order])


@settings(max_examples=300, deadline=None)
@given(book=books(max_orders=16, n_agents=6, disjoint=True))
def test_bilateral_full_partners_equals_pool_optimum(book: Orders) -> None:
    """Full connectivity and no preference: the P2P optimum equals the pool optimum (docs/eval.md), whose
    surplus the uniform call market's allocation also reaches when no agent is on both sides."""
    ones = np.ones((6, 6), bool)
    res = clear(book, "bilateral", partners=ones, n_agents=6)
    uni = clear(book, "uniform", n_agents=6)

    def surplus(r) -> float:  # type: ignore[no-untyped-def]
        t = r.trades
        return float(((book.price[t.buy_order] - book.price[t.sell_order]) * t.quantity).sum())

    assert surplus(res) == pytest.approx(surplus(uni), abs=1e-9)


@settings(max_examples=400, deadline=None)
@given(book=books(max_orders=20, n_agents=5))
def test_cda_matches_reference(book: Orders) -> None:
    res = clear(book, "cda")
    check_invariants(book, res, "cda")
    ref = reference.cda(
        list(zip(book.agent.tolist(), book.is_buy.tolist(), book.price.tolist(), book.quantity.tolist()))
    )
    tr = res.trades
    got = list(zip(tr.buy_order.tolist(), tr.sell_order.tolist(), tr.quantity.tolist(), tr.price.tolist()))
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g[:2] == r[:2]
        assert g[2] == pytest.approx(r[2])
        assert g[3] == r[3]
