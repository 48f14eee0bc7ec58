"""Hand-worked examples for every mechanism (expected numbers computed by hand in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2p_gym.errors import MarketError
from p2p_gym.market import AUCTIONS, ContinuousDoubleAuction, Orders, clear


def book(*rows: tuple[int, bool, float, float]) -> Orders:
    """Orders from (agent, is_buy, price, quantity) rows."""
    a, b, p, q = zip(*rows)
    return Orders(agent=np.array(a), is_buy=np.array(b), price=np.array(p), quantity=np.array(q))


# Bids: A0 0.30×2, A1 0.25×2, A2 0.12×2. Asks: A3 0.10×1, A4 0.20×2, A5 0.28×3.
# D(p) / S(p): p = 0.20 → D = 4 (A0, A1), S = 3 (A3, A4) → min 3; p = 0.25 → D = 4, S = 3 → 3;
# p = 0.28 → D = 2, S = 6 → 2; p = 0.12 → D = 6, S = 1 → 1. Max volume 3.
# Accepted bids: A0 2, A1 1 (marginal bid 0.25); asks A3 1, A4 2 (marginal ask 0.20).
EXAMPLE = book(
    (0, True, 0.30, 2.0),
    (1, True, 0.25, 2.0),
    (2, True, 0.12, 2.0),
    (3, False, 0.10, 1.0),
    (4, False, 0.20, 2.0),
    (5, False, 0.28, 3.0),
)


def test_uniform_hand_example() -> None:
    res = clear(EXAMPLE, "uniform", k=0.5)
    assert res.volume == pytest.approx(3.0)
    assert res.clearing_price == pytest.approx(0.225)  # 0.5·0.25 + 0.5·0.20
    np.testing.assert_allclose(res.filled, [2.0, 1.0, 0.0, 1.0, 2.0, 0.0])
    np.testing.assert_allclose(res.bought(6), [2, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(res.sold(6), [0, 0, 0, 1, 2, 0])
    np.testing.assert_allclose(res.paid(6), [0.45, 0.225, 0, 0, 0, 0])
    # k = 1 gives the marginal bid, k = 0 the marginal ask.
    assert clear(EXAMPLE, "uniform", k=1.0).clearing_price == pytest.approx(0.25)
    assert clear(EXAMPLE, "uniform", k=0.0).clearing_price == pytest.approx(0.20)


def test_pay_as_bid_hand_example() -> None:
    res = clear(EXAMPLE, "pay_as_bid", k=0.5)
    # Walk: A0 (0.30) ↔ A3 (0.10) 1 kWh at 0.20; A0 ↔ A4 (0.20) 1 kWh at 0.25; A1 (0.25) ↔ A4 1 kWh at 0.225.
    tr = res.trades
    got = sorted(zip(tr.buyer.tolist(), tr.seller.tolist(), tr.quantity.tolist(), tr.price.tolist()))
    expected = [(0, 3, 1.0, 0.20), (0, 4, 1.0, 0.25), (1, 4, 1.0, 0.225)]
    for g, e in zip(got, expected, strict=True):
        assert g[:2] == e[:2] and g[2] == pytest.approx(e[2]) and g[3] == pytest.approx(e[3])
    assert res.clearing_price == pytest.approx((0.20 + 0.25 + 0.225) / 3)  # volume-weighted mean


def test_uniform_horizontal_overlap_price_is_the_segment_price() -> None:
    # Bids 0.20×3 (A0) and asks 0.20×2 (A1), 0.20×2 (A2): the curves overlap at 0.20 on [0, 3].
    # V = 3; asks are rationed pro rata: 1.5 each; price 0.20 for any k.
    b = book((0, True, 0.20, 3.0), (1, False, 0.20, 2.0), (2, False, 0.20, 2.0))
    for k in (0.0, 0.3, 1.0):
        res = clear(b, "uniform", k=k)
        assert res.volume == pytest.approx(3.0)
        assert res.clearing_price == pytest.approx(0.20)
        np.testing.assert_allclose(res.filled, [3.0, 1.5, 1.5])


def test_uniform_pro_rata_rationing_of_tied_bids() -> None:
    # Bids 0.30×1 (A0), 0.25×3 (A1), 0.25×1 (A2); ask 0.10×3 (A3). V = 3: A0 gets 1, the 0.25 level
    # shares the remaining 2 in proportion 3:1 → A1 1.5, A2 0.5. Price 0.5·0.25 + 0.5·0.10 = 0.175.
    b = book((0, True, 0.30, 1.0), (1, True, 0.25, 3.0), (2, True, 0.25, 1.0), (3, False, 0.10, 3.0))
    res = clear(b, "uniform")
    np.testing.assert_allclose(res.filled, [1.0, 1.5, 0.5, 3.0])
    assert res.clearing_price == pytest.approx(0.175)


def test_uniform_no_cross_and_one_sided_books_are_empty() -> None:
    no_cross = book((0, True, 0.10, 1.0), (1, False, 0.20, 1.0))
    only_bids = book((0, True, 0.10, 1.0), (1, True, 0.20, 1.0))
    for mech in AUCTIONS:
        for b in (no_cross, only_bids, Orders.empty()):
            res = clear(b, mech)
            assert res.volume == 0.0 and len(res.trades) == 0
            assert math.isnan(res.clearing_price)
            assert res.filled.shape == (len(b),)


def test_call_market_drops_self_matches() -> None:
    # A0 bids 0.30×2 and asks 0.10×1; A1 asks 0.20×1. V = 2 (both asks accepted). The walk pairs A0's bid with
    # its own ask for 1 kWh, which is dropped: A0 only buys 1 from A1.
    b = book((0, True, 0.30, 2.0), (0, False, 0.10, 1.0), (1, False, 0.20, 1.0))
    for mech in ("uniform", "pay_as_bid"):
        res = clear(b, mech)
        assert np.all(res.trades.buyer != res.trades.seller)
        np.testing.assert_allclose(res.bought(2), [1.0, 0.0])
        np.testing.assert_allclose(res.sold(2), [0.0, 1.0])


def test_bilateral_partner_restriction_hand_example() -> None:
    # Bids: A0 0.30×1, A1 0.25×1. Asks: A2 0.10×1, A3 0.20×1.
    # Full partners: total surplus (0.30 + 0.25) − (0.10 + 0.20) = 0.25 with both trading.
    # If A1 and A2 do not accept each other, A1 can only buy from A3 (surplus 0.05) and A0 from A2 (0.20):
    # the optimum is still 0.25, with A0↔A2 and A1↔A3; prices (k = 0.5) 0.20 and 0.225.
    b = book((0, True, 0.30, 1.0), (1, True, 0.25, 1.0), (2, False, 0.10, 1.0), (3, False, 0.20, 1.0))
    partners = np.ones((4, 4), bool)
    partners[1, 2] = False  # A1 refuses A2 (one refusal suffices)
    res = clear(b, "bilateral", partners=partners)
    tr = res.trades
    got = sorted(zip(tr.buyer.tolist(), tr.seller.tolist(), tr.quantity.tolist(), tr.price.tolist()))
    assert [g[:2] for g in got] == [(0, 2), (1, 3)]
    np.testing.assert_allclose([g[2] for g in got], [1.0, 1.0])
    np.testing.assert_allclose([g[3] for g in got], [0.20, 0.225])
    # A0 accepts nobody: only A1 trades, with A3 (its only mutual partner); surplus 0.05.
    partners[0, :] = False
    res = clear(b, "bilateral", partners=partners)
    assert res.trades.buyer.tolist() == [1] and res.trades.seller.tolist() == [3]


def test_bilateral_preference_changes_who_matches() -> None:
    # Bid A0 0.30×1; asks A1 0.10×1 and A2 0.12×1. Without preference A0 buys from A1 (surplus 0.20 > 0.18).
    # With β[0, 1] = 0.05 (A0 dislikes A1): surplus A0↔A1 = 0.15 < A0↔A2 = 0.18, so A0 buys from A2,
    # at the pair's midpoint (0.30 + 0.12) / 2 = 0.21; β is not paid to anyone.
    b = book((0, True, 0.30, 1.0), (1, False, 0.10, 1.0), (2, False, 0.12, 1.0))
    assert clear(b, "bilateral").trades.seller.tolist() == [1]
    pref = np.zeros((3, 3))
    pref[0, 1] = 0.05
    res = clear(b, "bilateral", preference=pref)
    assert res.trades.seller.tolist() == [2]
    assert res.trades.price[0] == pytest.approx(0.21)
    # β on the seller's side counts too: β[2, 0] = 0.05 makes A2 the worse partner again.
    pref[2, 0] = 0.05
    pref[0, 1] = 0.0
    assert clear(b, "bilateral", preference=pref).trades.seller.tolist() == [1]


def test_bilateral_greedy_is_not_optimal_but_lp_is() -> None:
    # Bids A0 0.50×1, A1 0.40×1; asks A2 0.10×1, A3 0.35×1. A1 accepts only A2.
    # Greedy by pair surplus takes A0↔A2 (0.40) first, then A1 has no partner: 0.40.
    # Optimum: A0↔A3 (0.15) + A1↔A2 (0.30) = 0.45.
    b = book((0, True, 0.50, 1.0), (1, True, 0.40, 1.0), (2, False, 0.10, 1.0), (3, False, 0.35, 1.0))
    partners = np.ones((4, 4), bool)
    partners[1, 3] = False
    res = clear(b, "bilateral", partners=partners)
    tr = res.trades
    surplus = float(((b.price[tr.buy_order] - b.price[tr.sell_order]) * tr.quantity).sum())
    assert surplus == pytest.approx(0.45)
    assert res.volume == pytest.approx(2.0)


def test_cda_scripted_sequence_price_time_priority() -> None:
    cda = ContinuousDoubleAuction()
    assert math.isnan(cda.best_bid) and math.isnan(cda.best_ask)
    assert len(cda.submit(0, False, 0.20, 1.0)) == 0  # id 0: ask 0.20×1 rests
    assert len(cda.submit(1, False, 0.15, 1.0)) == 0  # id 1: ask 0.15×1 rests
    assert len(cda.submit(2, False, 0.15, 2.0)) == 0  # id 2: ask 0.15×2 rests, behind id 1 (time)
    assert cda.best_ask == 0.15
    assert len(cda.submit(3, True, 0.10, 1.0)) == 0  # id 3: bid 0.10 does not cross; rests
    assert cda.best_bid == 0.10
    # id 4: bid 0.25×3 walks the book: id 1 (0.15, earliest) 1 kWh, id 2 (0.15) 2 kWh; all at 0.15.
    t = cda.submit(4, True, 0.25, 3.0)
    assert (
        t.sell_order.tolist() == [1, 2]
        and t.quantity.tolist() == [1.0, 2.0]
        and t.price.tolist() == [0.15, 0.15]
    )
    assert t.buy_order.tolist() == [4, 4] and t.buyer.tolist() == [4, 4] and t.seller.tolist() == [1, 2]
    assert cda.best_ask == 0.20
    # id 5: ask 0.05×1.5 hits the best bid: id 3 at 0.10 for 1 kWh; residual 0.5 rests at 0.05.
    t = cda.submit(5, False, 0.05, 1.5)
    assert t.buy_order.tolist() == [3] and t.quantity.tolist() == [1.0] and t.price.tolist() == [0.10]
    assert cda.best_ask == 0.05 and math.isnan(cda.best_bid)
    assert cda.remaining(5) == pytest.approx(0.5)
    # id 6: agent 5 bids 0.30×1: its own ask (id 5) is skipped; it buys id 0 at 0.20.
    t = cda.submit(5, True, 0.30, 1.0)
    assert t.sell_order.tolist() == [0] and t.price.tolist() == [0.20]
    assert cda.best_ask == 0.05  # the own order is still there
    assert len(cda.trades()) == 4
    cda.reset()
    assert math.isnan(cda.best_ask) and cda.n_orders == 0


def test_cda_via_clear_uses_array_order() -> None:
    # Arrival order matters: ask first then bid trades at the ask's price; reversed, at the bid's.
    ask_first = book((0, False, 0.10, 1.0), (1, True, 0.30, 1.0))
    bid_first = book((1, True, 0.30, 1.0), (0, False, 0.10, 1.0))
    assert clear(ask_first, "cda").clearing_price == pytest.approx(0.10)
    assert clear(bid_first, "cda").clearing_price == pytest.approx(0.30)


def test_cda_submit_validation() -> None:
    cda = ContinuousDoubleAuction()
    with pytest.raises(MarketError, match=r"agent"):
        cda.submit(-1, True, 0.1, 1.0)
    with pytest.raises(MarketError, match=r"price"):
        cda.submit(0, True, float("nan"), 1.0)
    with pytest.raises(MarketError, match=r"quantity"):
        cda.submit(0, True, 0.1, -1.0)


def test_call_market_repairs_avoidable_self_matches() -> None:
    # Bids A0 0.30×1, A1 0.25×1; asks A0 0.10×1, A2 0.20×1. V = 2. The walk pairs A0's bid with A0's ask;
    # swapping partners gives A0 ← A2 and A1 ← A0, keeping the volume 2 at price 0.5·0.25 + 0.5·0.20.
    b = book((0, True, 0.30, 1.0), (1, True, 0.25, 1.0), (0, False, 0.10, 1.0), (2, False, 0.20, 1.0))
    res = clear(b, "uniform")
    assert res.volume == pytest.approx(2.0)
    assert res.clearing_price == pytest.approx(0.225)
    got = sorted(zip(res.trades.buyer.tolist(), res.trades.seller.tolist()))
    assert got == [(0, 2), (1, 0)]
    # Pay-as-bid: pair prices (0.30 + 0.20) / 2 = 0.25 and (0.25 + 0.10) / 2 = 0.175.
    pab = clear(b, "pay_as_bid")
    prices = dict(zip(zip(pab.trades.buyer.tolist(), pab.trades.seller.tolist()), pab.trades.price.tolist()))
    assert prices == pytest.approx({(0, 2): 0.25, (1, 0): 0.175})


def test_bilateral_result_does_not_depend_on_earlier_solves() -> None:
    """The LP solver instance is reused across calls; a degenerate book (many optimal matchings) must clear
    the same after other books as in a fresh process."""
    import subprocess
    import sys

    tied = book((0, True, 0.30, 1.0), (1, True, 0.30, 1.0), (2, False, 0.10, 1.0), (3, False, 0.10, 1.0))
    code = (
        "from p2p_gym.market import Orders, clear; "
        "r = clear(Orders([0, 1, 2, 3], [True, True, False, False], [0.3, 0.3, 0.1, 0.1], [1.0] * 4), "
        "'bilateral'); "
        "print(repr((r.trades.buyer.tolist(), r.trades.seller.tolist(), r.trades.quantity.tolist())))"
    )
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rng = np.random.default_rng(5)
    for _ in range(20):  # other books, of other sizes, solved in between
        k = int(rng.integers(2, 12))
        other = Orders(rng.integers(0, 6, k), rng.random(k) < 0.5, rng.uniform(0, 1, k), rng.uniform(0, 2, k))
        clear(other, "bilateral", n_agents=6)
    r = clear(tied, "bilateral")
    again = repr((r.trades.buyer.tolist(), r.trades.seller.tolist(), r.trades.quantity.tolist()))
    assert again == fresh.strip()
    assert r.volume == pytest.approx(2.0)
