"""Strategic behaviour metrics on small runs."""

from __future__ import annotations

import numpy as np
import pytest

from eval import strategic
from p2p_gym.sim import MarketConfig


def _tiny(mechanism: str, grid: str = "none") -> MarketConfig:
    return MarketConfig(scenario="tiny", mechanism=mechanism, grid=grid, start_day=3)


def test_truthful_population_is_exploitable_under_pay_as_bid() -> None:
    res = strategic.exploitability(
        _tiny("pay_as_bid"), "truthful", deviations=("best-response", "markup:0.3"), n_deviators=2
    )
    assert res.exploitability > 0
    assert res.gains[res.best] == pytest.approx(res.exploitability)


def test_exploitability_of_named_deviators() -> None:
    """``agents=`` picks the deviators: the gain is that agent's savings with the deviation minus without, from two
    plain rollouts."""
    config = _tiny("pay_as_bid")
    res = strategic.exploitability(config, "truthful", deviations=("markup:0.3",), agents=["prosumer_1"])
    assert set(res.gains) == {("prosumer_1", "markup:0.3")}
    ids = ["prosumer_0", "prosumer_1", "prosumer_2", "prosumer_3"]
    base = strategic.rollout(config, dict.fromkeys(ids, "truthful"), days=1, seed=0, optimum=False)
    dev = strategic.rollout(config, {**dict.fromkeys(ids, "truthful"), "prosumer_1": "markup:0.3"}, days=1, seed=0,
                            optimum=False)  # fmt: skip
    assert res.gains[("prosumer_1", "markup:0.3")] == pytest.approx(
        dev.savings[1] - base.savings[1], abs=1e-12
    )
    with pytest.raises(ValueError, match=r"agents: unknown agent id\(s\) \['prosumer_9'\]"):
        strategic.exploitability(config, "truthful", agents=["prosumer_9"])


def test_community_rule_is_not_exploitable_by_prices() -> None:
    res = strategic.exploitability(_tiny("sdr"), "truthful", deviations=("markup:0.3",), n_deviators=2)
    assert res.exploitability == pytest.approx(0.0, abs=1e-12)


def test_rollout_markups_and_market_power() -> None:
    r = strategic.rollout(_tiny("uniform"), "markup:0.2", days=1)
    assert r.seller_markup.size and np.all(r.seller_markup > 0)
    assert np.all(r.buyer_markup < 0)
    assert r.trade_kwh.sum() == pytest.approx(r.volume_kwh)
    assert r.line_loading_pct.size == 0
    s = strategic.markup_summary(r)
    assert s["seller_markup_median"] > 0 > s["buyer_markup_median"]
    t = strategic.rollout(_tiny("uniform"), "truthful", days=1)
    assert strategic.price_of_anarchy(t) == pytest.approx(1.0)
    assert t.market_power["price_above_competitive"] == pytest.approx(0.0, abs=1e-12)
