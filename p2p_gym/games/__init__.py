"""Game-theoretic P2P mechanisms as clearing rules over one interval's order book (numpy/scipy only).

The mechanism families of Suthar, Cherukuri & Pindoriya (2023), "Peer-to-peer energy trading in smart grid:
frameworks, implementation methodologies, and demonstration projects", Electric Power Systems Research,
§4.1 (game theory, Tables 1–2, eqs. 1–6) and Table 4. Every mechanism maps a book and the grid tariffs to a
:class:`~p2p_gym.market.ClearingResult`, so it can stand in for :func:`p2p_gym.market.clear`:

==========================  ===================================================================  ===============
``clear_nash_bargaining``    efficient quantities, payments maximising Π gain (eqs. 5–6)          margin 0
``clear_shapley``            efficient quantities, each agent's gain = its Shapley value          Σ side payments
``clear_sharing_game``       Nash equilibrium of the pool-placement game (best responses)         margin 0
``clear_stackelberg``        leader's optimal internal prices, followers take or leave (eqs. 3–4) (p_b − p_s)·V
==========================  ===================================================================  ===============

The last column is the operator margin Σ paid − Σ received of the result's trades. Each
``clear_<name>(orders, retail_price, feed_in_price, n_agents=None, **options)`` has a
``solve_<name>(...) -> (ClearingResult, diagnostics)`` twin.

Utility model (used by every mechanism). The grid is every agent's outside option
(:mod:`p2p_gym.market.settlement`): stand-alone, a buyer of q kWh imports q at the retail price π_r and a
seller of q kWh exports q at the feed-in price π_f. An order's limit is the agent's true marginal value (bid)
or cost (ask) per kWh; since energy can always be bought at π_r and sold at π_f, the value of a kWh bought
P2P is the **effective limit** ``v̂ = min(limit, π_r)`` and the cost of a kWh sold P2P is
``ĉ = max(limit, π_f)``. If agent n buys x kWh (per bid) and sells y kWh (per ask) P2P, paying ``paid_n``
and receiving ``received_n``, the rest of its orders settling with the grid as stand-alone, its **gain** over
its stand-alone outcome is

    g_n = w_n − paid_n + received_n,     w_n = Σ_{bids of n} v̂·x − Σ_{asks of n} ĉ·y,

where w_n is the *trade value* of its P2P volume. Its money **savings** (stand-alone bill − P2P bill) are
``retail·Σx − paid_n + received_n − feed-in·Σy``; gain and savings coincide when its limits lie at or beyond
the tariffs (a bid ≥ π_r, an ask ≤ π_f). A buyer whose limit is below π_r values P2P energy at its limit:
buying at a price above it is a loss even if cheaper than retail. The **welfare** of an allocation is
``W = Σ_n w_n = Σ_n g_n + operator margin``; it is maximised by the uniform call market on the effective
limits (:func:`~p2p_gym.games.utility.efficient_allocation`), W* below.

Example:
    >>> from p2p_gym.market import Orders
    >>> from p2p_gym.games import solve_nash_bargaining
    >>> book = Orders(agent=[0, 1], is_buy=[True, False], price=[0.30, 0.10], quantity=[2.0, 2.0])
    >>> res, diag = solve_nash_bargaining(book, retail_price=0.30, feed_in_price=0.10)
    >>> diag.gains.round(3).tolist(), round(res.clearing_price, 3)
    ([0.2, 0.2], 0.2)
"""

from p2p_gym.games.bargaining import (
    BargainingDiagnostics,
    clear_nash_bargaining,
    solve_nash_bargaining,
    water_fill,
)
from p2p_gym.games.coalition import (
    CoalitionalGame,
    CoreCheck,
    MarketGame,
    ShapleyDiagnostics,
    clear_shapley,
    core_violation,
    shapley_exact,
    shapley_sampled,
    solve_shapley,
)
from p2p_gym.games.sharing import SharingDiagnostics, clear_sharing_game, pool_price, solve_sharing_game
from p2p_gym.games.stackelberg import (
    OBJECTIVES,
    StackelbergDiagnostics,
    clear_stackelberg,
    follower_outcome,
    solve_stackelberg,
)
from p2p_gym.games.utility import effective_limits, efficient_allocation, gains, savings, welfare

#: Every mechanism of the package by name: ``MECHANISMS[name](orders, retail, feed_in, n_agents, **options)``.
MECHANISMS = {
    "nash_bargaining": clear_nash_bargaining,
    "shapley": clear_shapley,
    "sharing_game": clear_sharing_game,
    "stackelberg": clear_stackelberg,
}

__all__ = [
    "MECHANISMS",
    "OBJECTIVES",
    "BargainingDiagnostics",
    "CoalitionalGame",
    "CoreCheck",
    "MarketGame",
    "ShapleyDiagnostics",
    "SharingDiagnostics",
    "StackelbergDiagnostics",
    "clear_nash_bargaining",
    "clear_shapley",
    "clear_sharing_game",
    "clear_stackelberg",
    "core_violation",
    "effective_limits",
    "efficient_allocation",
    "follower_outcome",
    "gains",
    "pool_price",
    "savings",
    "shapley_exact",
    "shapley_sampled",
    "solve_nash_bargaining",
    "solve_shapley",
    "solve_sharing_game",
    "solve_stackelberg",
    "water_fill",
    "welfare",
]
