"""``market.with_payments``: per-agent payments as trade prices, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym import market
from p2p_gym.errors import MarketError
from p2p_gym.market.payments import with_payments


def _result() -> market.ClearingResult:
    # buyer 0 bids 0.30 for 3 kWh; sellers 1 and 2 ask 0.10 and 0.20 for 2 kWh each: uniform clears 3 kWh
    book = market.Orders(agent=[0, 1, 2], is_buy=[True, False, False], price=[0.30, 0.10, 0.20],
                         quantity=[3.0, 2.0, 2.0])  # fmt: skip
    return market.clear(book, "uniform", k=0.5)


def test_payments_become_prices_and_totals() -> None:
    res = with_payments(_result(), paid=np.array([0.75, 0.0, 0.0]), received=np.array([0.0, 0.40, 0.20]))
    np.testing.assert_allclose(res.paid(3), [0.75, 0.0, 0.0])
    np.testing.assert_allclose(res.received(3), [0.0, 0.40, 0.20])
    np.testing.assert_allclose(res.bought(3), [3.0, 0.0, 0.0])  # quantities unchanged
    assert res.trades.operator_margin == pytest.approx(0.75 - 0.60)
    assert res.clearing_price == pytest.approx(0.25)
    st = market.settle(res, net_kwh=[-3.0, 2.0, 1.0], retail_price=0.30, feed_in_price=0.05)
    np.testing.assert_allclose(st.bill, [0.75, -0.40, -0.20])  # every kWh traded: no grid


def test_bad_payments_name_the_field() -> None:
    with pytest.raises(MarketError, match=r"received\[0\]"):
        with_payments(_result(), paid=np.array([0.75, 0.0, 0.0]), received=np.array([1.0, 0.4, 0.2]))
    with pytest.raises(MarketError, match="paid, received"):
        with_payments(_result(), paid=np.array([0.75, 0.0]), received=np.array([0.0, 0.4, 0.2]))
    with pytest.raises(MarketError, match="finite"):
        with_payments(_result(), paid=np.array([np.nan, 0.0, 0.0]), received=np.zeros(3))
