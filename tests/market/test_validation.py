"""Bad inputs raise MarketError (a ValueError) naming the field; the market imports no heavy stack."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from p2p_gym.errors import MarketError
from p2p_gym.market import ClearingResult, Orders, Trades, clear, grid_only_bill, pricing, settle

GOOD = {"agent": [0, 1], "is_buy": [True, False], "price": [0.2, 0.1], "quantity": [1.0, 1.0]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent", [0]),  # length mismatch is reported on the other fields; see below
        ("is_buy", [True]),
        ("price", [0.2]),
        ("quantity", [1.0, 1.0, 1.0]),
        ("price", [np.nan, 0.1]),
        ("price", [np.inf, 0.1]),
        ("quantity", [1.0, np.nan]),
        ("quantity", [1.0, -0.5]),
        ("agent", [-1, 1]),
        ("agent", [0.5, 1]),
        ("price", [[0.2, 0.1]]),
        ("price", ["a", "b"]),
    ],
)
def test_orders_validation_names_the_field(field: str, value: object) -> None:
    kwargs = dict(GOOD, **{field: value})
    with pytest.raises(MarketError) as err:
        Orders(**kwargs)  # type: ignore[arg-type]
    expected = "is_buy" if (field == "agent" and value == [0]) else field
    assert str(err.value).startswith(expected)
    assert isinstance(err.value, ValueError)


def test_orders_are_frozen_copies() -> None:
    price = np.array([0.2, 0.1])
    o = Orders(agent=[0, 1], is_buy=[True, False], price=price, quantity=[1.0, 1.0])
    price[0] = 9.0  # the caller's array stays writable and independent
    assert o.price[0] == 0.2
    with pytest.raises(ValueError):
        o.price[0] = 1.0
    assert o.agent.dtype == np.int64 and o.is_buy.dtype == bool and len(o) == 2
    assert len(Orders.empty()) == 0
    f = Orders.from_sides([0], [0.2], [1.0], [1, 2], [0.1, 0.15], [1.0, 2.0])
    assert f.is_buy.tolist() == [True, False, False] and f.agent.tolist() == [0, 1, 2]


def test_clear_argument_validation() -> None:
    o = Orders(**GOOD)  # type: ignore[arg-type]
    with pytest.raises(
        MarketError,
        match=r"mechanism: must be one of \['uniform', 'pay_as_bid', 'cda', 'bilateral', 'mcafee', 'vcg', 'mmr', "
        r"'sdr', 'bill_sharing'\]",
    ):
        clear(o, "vickrey")
    with pytest.raises(
        MarketError, match=r"^retail_price, feed_in_price: the community rule 'sdr' needs both"
    ):
        clear(o, "sdr", retail_price=0.3)
    with pytest.raises(MarketError, match=r"^k: must be in"):
        clear(o, "uniform", k=1.5)
    with pytest.raises(MarketError, match=r"^n_agents"):
        clear(o, "uniform", n_agents=1)
    with pytest.raises(MarketError, match=r"^partners: must have shape \(2, 2\)"):
        clear(o, "bilateral", partners=np.ones((1, 1), bool))
    with pytest.raises(MarketError, match=r"^preference: must be >= 0"):
        clear(o, "bilateral", preference=-np.ones((2, 2)))
    with pytest.raises(MarketError, match=r"^preference: must be finite"):
        clear(o, "bilateral", preference=np.full((2, 2), np.nan))
    with pytest.raises(MarketError, match=r"^partners/preference"):
        clear(o, "uniform", partners=np.ones((2, 2), bool))
    with pytest.raises(MarketError, match=r"^orders"):
        clear("not orders", "uniform")  # type: ignore[arg-type]


def test_settle_and_pricing_validation() -> None:
    res = ClearingResult.empty(0)
    with pytest.raises(MarketError, match=r"^net_kwh"):
        settle(res, np.array([1.0, np.nan]), 0.3, 0.1)
    with pytest.raises(MarketError, match=r"^retail_price: must be a scalar or have shape \(2,\)"):
        settle(res, np.zeros(2), np.ones(3), 0.1)
    with pytest.raises(MarketError, match=r"^fee_per_kwh: must be >= 0"):
        settle(res, np.zeros(2), 0.3, 0.1, fee_per_kwh=-0.01)
    with pytest.raises(MarketError, match=r"^net_kwh: length must equal n_agents"):
        settle(res, np.zeros(2), 0.3, 0.1, n_agents=3)
    tr = Trades([0], [1], [0], [5], [1.0], [0.2])
    with pytest.raises(MarketError, match=r"^result_or_trades"):
        settle(tr, np.zeros(2), 0.3, 0.1)
    with pytest.raises(MarketError, match=r"^feed_in: must be <= retail"):
        pricing.supply_demand_ratio(1.0, 1.0, 0.1, 0.3)
    with pytest.raises(MarketError, match=r"^total_supply_kwh: must be >= 0"):
        pricing.mid_market_rate(-1.0, 1.0, 0.3, 0.1)
    with pytest.raises(MarketError, match=r"^retail: must be finite"):
        pricing.bill_sharing(1.0, 1.0, np.nan, 0.1)
    with pytest.raises(MarketError, match=r"^retail"):
        grid_only_bill(np.zeros(2), np.ones(3), 0.1)


def test_market_import_does_not_pull_heavy_dependencies() -> None:
    code = (
        "import sys, p2p_gym.market as m; "
        "o = m.Orders(agent=[0, 1], is_buy=[True, False], price=[0.2, 0.1], quantity=[1.0, 1.0]); "
        "[m.clear(o, x, retail_price=0.3, feed_in_price=0.1) for x in m.COMMUNITY_RULES]; "
        "[m.clear(o, x) for x in m.AUCTIONS]; "
        "bad = [x for x in ('gymnasium', 'pettingzoo', 'pandapower', 'cvxpy', 'torch') if x in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_bilateral_infers_n_agents_from_the_matrices() -> None:
    o = Orders(**GOOD)  # type: ignore[arg-type]
    partners = np.ones((5, 5), bool)  # agents 2..4 place no orders
    res = clear(o, "bilateral", partners=partners)
    assert res.volume == 1.0
    with pytest.raises(MarketError, match=r"^partners: must have shape \(6, 6\)"):
        clear(o, "bilateral", partners=partners, n_agents=6)
