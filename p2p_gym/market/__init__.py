"""Market clearing for p2p_gym: pure numpy (plus HiGHS for the bilateral LP), no gym/grid imports.

* :class:`Orders` → :func:`clear` (``"uniform"``, ``"pay_as_bid"``, ``"cda"``, ``"bilateral"``, the truthful
  double auctions ``"mcafee"`` and ``"vcg"`` of :mod:`p2p_gym.market.truthful`, and the community rules
  ``"mmr"``, ``"sdr"``, ``"bill_sharing"``) → :class:`ClearingResult` with :class:`Trades`;
* :func:`clear_uniform_batch` and :func:`clear_community_batch`: the same rules on B books at once;
* :class:`ContinuousDoubleAuction` for incremental order books;
* :mod:`p2p_gym.market.pricing`: community pricing rules (mid-market rate, supply-demand ratio, bill
  sharing) that need no bids;
* :func:`settle` → :class:`Settlement`: per-agent bills with the grid as the outside option.

Example:
    >>> import numpy as np
    >>> from p2p_gym import market
    >>> book = market.Orders(agent=[0, 1, 2], is_buy=[True, False, False],
    ...                      price=[0.25, 0.10, 0.15], quantity=[3.0, 2.0, 2.0])
    >>> res = market.clear(book, "uniform", k=0.5)
    >>> res.volume, round(res.clearing_price, 3)
    (3.0, 0.2)
"""

from p2p_gym.market import pricing
from p2p_gym.market.batch import clear_uniform_batch
from p2p_gym.market.cda import ContinuousDoubleAuction
from p2p_gym.market.clearing import AUCTIONS, MECHANISMS, clear
from p2p_gym.market.community import COMMUNITY_RULES, clear_community, clear_community_batch
from p2p_gym.market.settlement import (
    Settlement,
    grid_only_bill,
    imbalance_cost,
    settle,
    settle_positions,
    terminal_cost,
)
from p2p_gym.market.truthful import clear_mcafee, clear_vcg, vcg_transfers, welfare_optimum
from p2p_gym.market.types import ClearingResult, Orders, Trades
from p2p_gym.market.welfare import efficiency

__all__ = [
    "AUCTIONS",
    "COMMUNITY_RULES",
    "MECHANISMS",
    "ClearingResult",
    "ContinuousDoubleAuction",
    "Orders",
    "Settlement",
    "Trades",
    "clear",
    "clear_community",
    "clear_community_batch",
    "clear_mcafee",
    "clear_uniform_batch",
    "clear_vcg",
    "efficiency",
    "grid_only_bill",
    "imbalance_cost",
    "pricing",
    "settle",
    "settle_positions",
    "terminal_cost",
    "vcg_transfers",
    "welfare_optimum",
]
