"""The stages of one market interval, as pure functions on arrays with a batch axis ([B, N, ...]).

decode → assets → orders → clear → injections → grid check → grid policy → settle → rewards → observations.
:func:`p2p_gym.sim.step` chains them. Every stage takes what it needs as arguments and returns what the next
stage needs; none keeps state. The clearing stage is vectorised over the batch where the mechanism allows
(uniform call market and community rules, when no trade-level rule needs the individual trades) and loops over
the books with :func:`p2p_gym.market.clear` otherwise, so every option works for any B.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from p2p_gym import market
from p2p_gym.market.community import COMMUNITY_RULES
from p2p_gym.sim.config import GAMES
from p2p_gym.sim.uncertainty import forecast_kw

#: Observations are clipped to [-OBS_BOUND, OBS_BOUND] (powers are normalised, prices are per kWh).
OBS_BOUND = 10.0

#: Names of the observation features, in order (before forecasts and book statistics).
OBS_FEATURES = (
    "load",  # own load, in units of the agent's power scale
    "pv",  # own PV generation, power scale units
    "soc",  # battery state of charge as a fraction of capacity (0 without battery)
    "net",  # pv - load, power scale units
    "hour_sin",
    "hour_cos",
    "retail_price",  # currency/kWh
    "feed_in_price",  # currency/kWh
    "last_clearing_price",  # currency/kWh (the mean of feed-in and retail when there was none)
    "last_traded",  # own P2P sold minus bought in the last step, kWh per power-scale kWh
    "has_battery",  # 1 if the agent owns a battery
)

#: Features appended with ``dispatch="committed"`` (after forecasts and book statistics), power-scale units
#: unless stated.
COMMITTED_FEATURES = (
    "flex_min",  # X_min: the lowest net injection the agent's devices reach this step
    "flex_max",  # X_max: the highest
    "inflexible_net",  # n0: the net injection with every device at its reference
    "reference_action",  # the quantity action entry (index 1) whose target is n0, in [-1, 1]
    "ev_need",  # energy the plugged-in EV still needs (kWh per power-scale kWh; 0 when none)
    "hp_deviation",  # heat-pump deviation from its reference as a fraction of its band (0 without one)
)

#: Mechanisms whose clearing has a vectorised form over the batch.
VECTORISED_MECHANISMS: tuple[str, ...] = ("uniform", *COMMUNITY_RULES)

#: Orders below this quantity (kWh) are not submitted.
MIN_ORDER_KWH = 1e-9


# ----------------------------------------------------------------------------------------------- decode
def decode(act: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sanitise raw actions float[..., A] (Box[-1, 1] expected).

    Returns a float64 copy with non-finite entries replaced by 0 and the rest clipped to [-1, 1], the number of
    altered entries per row (int[...], non-finite or out of range) and the number of non-finite ones (int[...]).
    """
    act = np.array(act, dtype=np.float64)
    nonfinite = ~np.isfinite(act)
    if nonfinite.any():
        act[nonfinite] = 0.0
    outside = (act < -1.0) | (act > 1.0)
    np.clip(act, -1.0, 1.0, out=act)
    outside |= nonfinite
    return act, outside.sum(axis=-1), nonfinite.sum(axis=-1)


# ----------------------------------------------------------------------------------------------- assets
def battery_dispatch(
    setpoint: np.ndarray,
    soc_kwh: np.ndarray,
    battery_kw: np.ndarray,
    battery_kwh: np.ndarray,
    efficiency: float,
    dt: float,
    has_battery: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Battery power (kW, positive = discharge) and new state of charge (kWh), both float[..., N].

    ``setpoint`` in [-1, 1] (fraction of ``battery_kw``, kW) is limited by the state of charge ``soc_kwh``
    (kWh), the capacity ``battery_kwh`` (kWh) and the one-way ``efficiency`` over a step of ``dt`` hours; agents
    without a battery (``has_battery`` False) get 0 kW.
    """
    want = setpoint * battery_kw
    max_dis = soc_kwh * efficiency / dt
    max_chg = (battery_kwh - soc_kwh) / efficiency / dt
    kw = np.where(has_battery, np.clip(want, -max_chg, max_dis), 0.0)
    soc = np.clip(soc_kwh - np.where(kw > 0, kw / efficiency, kw * efficiency) * dt, 0.0, battery_kwh)
    return kw, soc


# ----------------------------------------------------------------------------------------------- orders
def order_book(
    act: np.ndarray,
    net_kw: Any,
    retail: Any,
    feed_in: Any,
    is_gen: np.ndarray,
    gen_max_kw: np.ndarray,
    dt: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each agent's order from its decoded action float[..., N, A] and its net power after the battery
    ``net_kw`` float[..., N] (kW, positive = surplus): limit price (currency/kWh) float[..., N], quantity
    (kWh) float[..., N] and side bool[..., N] (True = buy). ``retail``/``feed_in`` (currency/kWh) broadcast
    against [..., N]; dispatchable generators (``is_gen``) offer ``gen_max_kw · dt`` plus any surplus."""
    position = net_kw * dt  # kWh, before dispatchable generation
    price = feed_in + (act[..., 0] + 1.0) * 0.5 * (retail - feed_in)
    frac = (act[..., 1] + 1.0) * 0.5
    offer = np.where(is_gen, gen_max_kw * dt + np.maximum(position, 0.0), np.abs(position))
    is_buy = (position < 0) & ~is_gen
    qty = frac * offer
    return price, np.where(qty > MIN_ORDER_KWH, qty, 0.0), is_buy


def partners(scores: np.ndarray, others: np.ndarray, peer_k: int | None) -> np.ndarray:
    """bool[B, N, N] accepted peers from per-peer scores float[B, N, N − 1] (``others[i]`` = the agents the
    columns of row i score): those scored > 0, or the ``peer_k`` highest (ties by agent index)."""
    b, n, _ = scores.shape
    if peer_k is None:
        chosen = scores > 0
    else:
        top = np.argsort(-scores, axis=-1, kind="stable")[..., :peer_k]
        chosen = np.zeros(scores.shape, dtype=bool)
        np.put_along_axis(chosen, top, True, axis=-1)
    accept = np.zeros((b, n, n), dtype=bool)
    bb, ii, jj = np.nonzero(chosen)
    accept[bb, ii, others[ii, jj]] = True
    return accept


def orders_of(
    price: np.ndarray, qty: np.ndarray, is_buy: np.ndarray, among: np.ndarray | None = None
) -> market.Orders:
    """The :class:`~p2p_gym.market.Orders` book of one row (agents with a positive quantity), optionally of the
    agents ``among`` only (a platform's members; agent indices stay global)."""
    idx = np.flatnonzero(qty > 0) if among is None else among[qty[among] > 0]
    # the simulation's own arrays: decoded, finite, quantities ≥ 0 (fancy indexing copies them)
    return market.Orders._trusted(
        idx.astype(np.int64, copy=False), is_buy[idx].astype(bool, copy=False),
        price[idx].astype(np.float64, copy=False), qty[idx].astype(np.float64, copy=False),
    )  # fmt: skip


def _clear_kwargs(
    config: Any,
    n: int,
    row: int,
    accept: np.ndarray | None,
    preference: np.ndarray | None,
    retail: np.ndarray,
    feed_in: np.ndarray,
    everyone: np.ndarray | None,
    premium: np.ndarray | None = None,
) -> dict[str, Any]:
    """Keyword arguments of :func:`p2p_gym.market.clear` for book ``row`` (``everyone``: the all-True partner
    matrix used when no partners were chosen, made once per call)."""
    kw: dict[str, Any] = {"k": config.k, "n_agents": n}
    if config.mechanism == "stackelberg":
        kw["leader_objective"] = config.leader_objective
    if config.mechanism == "bilateral":
        kw["partners"] = accept[row] if accept is not None else everyone
        kw["preference"] = preference[row] if preference is not None and preference.ndim == 3 else preference
        kw["candidates"] = config.bilateral_candidates
        if premium is not None:
            kw["premium"] = premium
    elif config.mechanism in COMMUNITY_RULES or config.mechanism in GAMES:
        kw["retail_price"], kw["feed_in_price"] = float(retail[row]), float(feed_in[row])
    return kw


def clear_book(
    book: market.Orders, mechanism: str, kw: dict[str, Any], step_t: int = 0
) -> market.ClearingResult:
    """One book by ``mechanism``: :func:`p2p_gym.market.clear`, or a game of :mod:`p2p_gym.games` with the options
    the simulation uses (``nash_bargaining`` keeps every average price within the tariffs, ``price_band=True``;
    ``shapley`` samples 500 permutations beyond 15 traders from a generator seeded by the scenario step
    ``step_t``, so a step is reproducible; ``stackelberg`` takes ``leader_objective`` from ``kw``)."""
    if mechanism not in GAMES:
        return market.clear(book, mechanism, **kw)
    from p2p_gym import games

    args = (book, kw["retail_price"], kw["feed_in_price"], kw["n_agents"])
    if mechanism == "nash_bargaining":
        return games.clear_nash_bargaining(*args, price_band=True)
    if mechanism == "shapley":
        return games.clear_shapley(*args, rng=np.random.default_rng(step_t), n_permutations=500)
    if mechanism == "stackelberg":
        return games.clear_stackelberg(*args, objective=kw.get("leader_objective", "margin"))
    return games.clear_sharing_game(*args)


# ----------------------------------------------------------------------------------------------- clear
@dataclass(frozen=True)
class Cleared:
    """What the clearing stage hands on: per-agent positions of the B books and, on the per-book path, the
    books and their clearing results (with the individual trades)."""

    bought: np.ndarray  # float[B, N] kWh
    sold: np.ndarray  # float[B, N] kWh
    paid: np.ndarray  # float[B, N] currency
    received: np.ndarray  # float[B, N] currency
    price: np.ndarray  # float[B] currency/kWh (nan without a price)
    volume: np.ndarray  # float[B] kWh
    books: tuple[market.Orders, ...] | None
    results: tuple[market.ClearingResult, ...] | None
    platform_price: np.ndarray | None = None  # float[B, P] each platform's price (several platforms only)
    platform_volume: np.ndarray | None = None  # float[B, P] kWh traded within each platform


def needs_trades(config: Any) -> bool:
    """True when a later stage needs the individual trades (network fees, the block rule)."""
    return config.grid_policy in ("block", "fee", "preblock", "redirect")


def clear(
    config: Any,
    n: int,
    price: np.ndarray,
    qty: np.ndarray,
    is_buy: np.ndarray,
    accept: np.ndarray | None,
    preference: np.ndarray | None,
    retail: np.ndarray,
    feed_in: np.ndarray,
    vectorised: bool,
    members: tuple[np.ndarray, ...] | None = None,
    t: np.ndarray | None = None,
    premium: np.ndarray | None = None,
) -> Cleared:
    """Clear B books float[B, N] (one order per agent; quantity 0 = none) with ``config.mechanism``.

    ``vectorised``: use the batch form of the uniform auction / community rules (no individual trades); else
    :func:`p2p_gym.market.clear` per book. ``members``: the agents of each local market (platform) when there
    are several; each clears on its own (:func:`_clear_platforms`). ``t``: int[B] scenario steps (seed the
    sampled Shapley values, :func:`clear_book`).
    """
    steps = np.zeros(len(qty), dtype=np.int64) if t is None else np.asarray(t)
    mech = config.mechanism
    if members is not None and len(members) > 1:
        return _clear_platforms(
            config,
            n,
            price,
            qty,
            is_buy,
            accept,
            preference,
            retail,
            feed_in,
            vectorised,
            members,
            steps,
            premium,
        )
    if vectorised:
        if mech == "uniform":
            bought, sold, cp, vol = market.clear_uniform_batch(is_buy, price, qty, config.k)
        else:
            bought, sold, cp, vol = market.clear_community_batch(mech, is_buy, qty, retail, feed_in)
        unit = np.where(np.isfinite(cp), cp, 0.0)[:, None]
        return Cleared(bought, sold, bought * unit, sold * unit, cp, vol, None, None)
    books, results = [], []
    everyone = np.ones((n, n), dtype=bool) if mech == "bilateral" and accept is None else None
    call_market = mech in ("uniform", "pay_as_bid")
    for b in range(len(qty)):
        if call_market:  # the compiled call market (market.grouped) with one group: the same result, faster
            book, res, _, _ = _call_markets(config, n, price[b], qty[b], is_buy[b], (np.arange(n),))
            books.append(book)
            results.append(res)
            continue
        book = orders_of(price[b], qty[b], is_buy[b])
        books.append(book)
        kw = _clear_kwargs(config, n, b, accept, preference, retail, feed_in, everyone, premium)
        results.append(clear_book(book, mech, kw, int(steps[b])))
    return _positions(n, tuple(books), tuple(results))


def _clear_platforms(
    config: Any,
    n: int,
    price: np.ndarray,
    qty: np.ndarray,
    is_buy: np.ndarray,
    accept: np.ndarray | None,
    preference: np.ndarray | None,
    retail: np.ndarray,
    feed_in: np.ndarray,
    vectorised: bool,
    members: tuple[np.ndarray, ...],
    steps: np.ndarray | None = None,
    premium: np.ndarray | None = None,
) -> Cleared:
    """Each platform's agents clear among themselves: the same mechanism on the sub-book of every platform.

    ``retail``/``feed_in``: float[B], or float[B, N] per agent when the platforms' tariffs differ (the
    community rules of platform ``k`` use those of its first member).

    Positions are per agent as usual. On the per-book path the B books and results hold every platform's orders
    and trades (agent indices global; order indices offset platform by platform), so the later stages (fees, the
    DSO's rules) see all trades. ``Cleared.price`` is the volume-weighted mean of the platforms' prices (nan
    without trades); ``platform_price`` [B, P] and ``platform_volume`` [B, P] keep each platform's own.
    """
    b = len(qty)
    p = len(members)
    bought, sold, paid, received = (np.zeros((b, n)) for _ in range(4))
    plat_price = np.full((b, p), np.nan)
    plat_volume = np.zeros((b, p))
    per_agent = np.ndim(retail) == 2
    tariff = [(retail[:, idx[0]], feed_in[:, idx[0]]) if per_agent else (retail, feed_in) for idx in members]
    if vectorised:
        for k, idx in enumerate(members):
            part = clear(config, len(idx), price[:, idx], qty[:, idx], is_buy[:, idx], None, None, *tariff[k],
                         True)  # fmt: skip
            bought[:, idx], sold[:, idx], paid[:, idx], received[:, idx] = (
                part.bought,
                part.sold,
                part.paid,
                part.received,
            )
            plat_price[:, k], plat_volume[:, k] = part.price, part.volume
        books = results = None
    else:
        books_l, results_l = [], []
        everyone = np.ones((n, n), dtype=bool) if config.mechanism == "bilateral" and accept is None else None
        for row in range(b):
            if config.mechanism in (
                "uniform",
                "pay_as_bid",
            ):  # every platform's call market in one compiled loop
                book, res, plat_price[row], plat_volume[row] = _call_markets(
                    config, n, price[row], qty[row], is_buy[row], members
                )
                books_l.append(book)
                results_l.append(res)
                continue
            sub_books, sub_results = [], []
            kw = _clear_kwargs(config, n, row, accept, preference, *tariff[0], everyone, premium)
            for k, idx in enumerate(members):
                if per_agent and k:
                    kw = _clear_kwargs(config, n, row, accept, preference, *tariff[k], everyone, premium)
                book = orders_of(price[row], qty[row], is_buy[row], among=idx)
                res = clear_book(book, config.mechanism, kw, 0 if steps is None else int(steps[row]))
                sub_books.append(book)
                sub_results.append(res)
                plat_price[row, k], plat_volume[row, k] = res.clearing_price, res.volume
            book, res = _merge_books(sub_books, sub_results)
            books_l.append(book)
            results_l.append(res)
        books, results = tuple(books_l), tuple(results_l)
        for row, res in enumerate(results):
            bought[row], sold[row] = res.bought(n), res.sold(n)
            paid[row], received[row] = res.paid(n), res.received(n)
    volume = plat_volume.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_price = np.where(
            volume > 0, np.nansum(np.nan_to_num(plat_price) * plat_volume, axis=1) / volume, np.nan
        )
    return Cleared(bought, sold, paid, received, mean_price, volume, books, results, plat_price, plat_volume)


def _call_markets(
    config: Any,
    n: int,
    price: np.ndarray,
    qty: np.ndarray,
    is_buy: np.ndarray,
    members: tuple[np.ndarray, ...],
) -> tuple[market.Orders, market.ClearingResult, np.ndarray, np.ndarray]:
    """Every platform's uniform-price or pay-as-bid auction of one row (:func:`p2p_gym.market.grouped.clear_groups`):
    the merged book (platform by platform, as :func:`_merge_books` lays it out), its result, and each platform's
    price (uniform: its price; pay-as-bid: the volume-weighted mean; nan without trades) and volume float[P]. A
    platform the grouped loop hands back (an agent on both sides) is cleared by :func:`p2p_gym.market.clear`."""
    from p2p_gym.market.grouped import clear_groups

    books = [orders_of(price, qty, is_buy, among=idx) for idx in members]
    sizes = np.array([len(bk) for bk in books])
    book = market.Orders._trusted(
        np.concatenate([bk.agent for bk in books]), np.concatenate([bk.is_buy for bk in books]),
        np.concatenate([bk.price for bk in books]), np.concatenate([bk.quantity for bk in books]),
    )  # fmt: skip
    group = np.repeat(np.arange(len(members)), sizes)
    disc = config.mechanism == "pay_as_bid"
    trades, tg, uniform, fallback = clear_groups(book, group, len(members), config.k, disc)
    if fallback.any():  # re-clear those platforms one by one and splice their trades in
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        parts = [trades]
        keep = ~np.isin(tg, np.flatnonzero(fallback))
        parts[0] = market.Trades._trusted(*(getattr(trades, f)[keep] for f in _TRADE_FIELDS))
        for j in np.flatnonzero(fallback):
            r = market.clear(books[j], config.mechanism, k=config.k, n_agents=n)
            t = r.trades
            parts.append(market.Trades._trusted(t.buy_order + offsets[j], t.sell_order + offsets[j], t.buyer,
                                                t.seller, t.quantity, t.price))  # fmt: skip
            uniform[j] = r.clearing_price if not disc else np.nan
        trades = market.Trades._trusted(
            *(np.concatenate([getattr(x, f) for x in parts]) for f in _TRADE_FIELDS)
        )
    k_orders, p = len(book), len(members)
    q = trades.quantity
    filled = np.bincount(trades.buy_order, q, k_orders) + np.bincount(trades.sell_order, q, k_orders)
    volume = float(q.sum())
    mean = float(trades.price @ q / volume) if volume > 0 else float("nan")
    if (
        len(members) == 1 and not disc and volume > 0
    ):  # one book: its uniform price, as market.clear reports it
        mean = float(uniform[0])
    g = group[trades.buy_order]
    plat_volume = np.bincount(g, q, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        vw = np.where(plat_volume > 0, np.bincount(g, q * trades.price, p) / plat_volume, np.nan)
    plat_price = vw if disc else np.where(plat_volume > 0, uniform, np.nan)
    return book, market.ClearingResult(trades, filled, mean), plat_price, plat_volume


_TRADE_FIELDS = ("buy_order", "sell_order", "buyer", "seller", "quantity", "price")


def _merge_books(
    books: list[market.Orders], results: list[market.ClearingResult]
) -> tuple[market.Orders, Any]:
    """One book and result of several platforms' books and results (order indices offset book by book)."""
    offsets = np.cumsum([0] + [len(bk.agent) for bk in books[:-1]])
    book = market.Orders(
        agent=np.concatenate([bk.agent for bk in books]),
        is_buy=np.concatenate([bk.is_buy for bk in books]),
        price=np.concatenate([bk.price for bk in books]),
        quantity=np.concatenate([bk.quantity for bk in books]),
    )
    trades = market.Trades(
        buy_order=np.concatenate([r.trades.buy_order + o for r, o in zip(results, offsets)]),
        sell_order=np.concatenate([r.trades.sell_order + o for r, o in zip(results, offsets)]),
        buyer=np.concatenate([r.trades.buyer for r in results]),
        seller=np.concatenate([r.trades.seller for r in results]),
        quantity=np.concatenate([r.trades.quantity for r in results]),
        price=np.concatenate([r.trades.price for r in results]),
        seller_price=np.concatenate([r.trades.seller_price for r in results]),
    )
    volume = trades.quantity.sum()
    mean = float(np.dot(trades.quantity, trades.price) / volume) if volume > 0 else float("nan")
    filled = np.concatenate([r.filled for r in results])
    return book, market.ClearingResult(trades, filled, mean)


def _positions(n: int, books: tuple, results: tuple) -> Cleared:
    def stack(method: str) -> np.ndarray:
        return np.array([getattr(r, method)(n) for r in results]).reshape(len(results), n)

    return Cleared(
        bought=stack("bought"),
        sold=stack("sold"),
        paid=stack("paid"),
        received=stack("received"),
        price=np.array([r.clearing_price for r in results], dtype=np.float64),
        volume=np.array([r.volume for r in results], dtype=np.float64),
        books=books,
        results=results,
    )


def drop_trades(result: market.ClearingResult, drop: np.ndarray) -> market.ClearingResult:
    """The clearing result without the trades flagged in ``drop`` (order fills reduced accordingly)."""
    tr = result.trades
    keep = ~drop
    kept = market.Trades(
        buy_order=tr.buy_order[keep],
        sell_order=tr.sell_order[keep],
        buyer=tr.buyer[keep],
        seller=tr.seller[keep],
        quantity=tr.quantity[keep],
        price=tr.price[keep],
        seller_price=tr.seller_price[keep],
    )
    k = len(result.filled)
    filled = np.bincount(kept.buy_order, kept.quantity, k) + np.bincount(kept.sell_order, kept.quantity, k)
    return replace(result, trades=kept, filled=filled)


# ----------------------------------------------------------------------------------------------- physics
def injections(net_kw: np.ndarray, sold: np.ndarray, is_gen: np.ndarray, dt: float) -> np.ndarray:
    """Physical net injection float[B, N] (kW, positive = export): the net power after the battery plus what
    dispatchable generators sold (they produce exactly that)."""
    if not is_gen.any():
        return net_kw
    return net_kw + np.where(is_gen, sold / dt, 0.0)


# ----------------------------------------------------------------------------------------------- grid policy
def base_current(static: Any, t: np.ndarray) -> np.ndarray:
    """float[B, L], kA: the linear model's signed active line currents without the agents at scenario steps ``t``
    int[B], the base flow plus the background elements' flows (``A0`` of the DSO's rules)."""
    bg = static.scenario.background_kw
    return static.linear_model.active_base_ka(bg[t] if bg.shape[1] else np.zeros((len(t), 0)))


def block(
    static: Any, cleared: Cleared, injection_kw: np.ndarray, t: np.ndarray
) -> tuple[Cleared, np.ndarray, np.ndarray]:
    """The DSO's block rule on every book (:func:`p2p_gym.grid.blocked_trades`) at scenario steps ``t``: the
    cleared positions without the blocked trades, and the number and volume (kWh) of blocked trades per book
    (int[B], float[B])."""
    from p2p_gym.grid import blocked_trades

    assert cleared.results is not None and cleared.books is not None
    cfg = static.config
    a0 = base_current(static, t)
    results, counts, volumes = [], [], []
    for b, res in enumerate(cleared.results):
        tr = res.trades
        mask = blocked_trades(
            static.attribution,
            injection_kw[b],
            tr.seller,
            tr.buyer,
            tr.quantity / static.dt,
            cfg.block_threshold_pct,
            a0_ka=a0[b],
        )
        counts.append(int(mask.sum()))
        volumes.append(float(tr.quantity[mask].sum()))
        results.append(drop_trades(res, mask) if mask.any() else res)
    return _positions(static.n, cleared.books, tuple(results)), np.array(counts), np.array(volumes)


def fees(static: Any, cleared: Cleared, qty: np.ndarray, flexibility_kw: np.ndarray) -> np.ndarray:
    """Network fees float[B, N] (currency, net of redistribution) of ``grid_policy="fee"``.

    Each trade pays the pair's rate of ``fee_matrix`` (currency/kWh: distance-based, uniform or zonal, Le Goff
    Latimier & Ben Ahmed 2023, eq. 12) × kWh, half by each side; every agent with an order (``qty`` > 0) pays the
    trade-independent ``fee_fixed``. With ``fee_redistribution`` the collected total is paid back, equally or
    pro rata to each agent's flexibility service |``flexibility_kw``| (its injection minus its inflexible net;
    equally when nobody moved) — the use the paper suggests for the collected money (§3.3).
    """
    cfg = static.config
    n = static.n
    b = len(cleared.price)
    out = np.zeros((b, n))
    if static.fee_matrix is None:
        return out
    if cleared.results is not None:
        for r, res in enumerate(cleared.results):
            tr = res.trades
            if len(tr.quantity):
                per_trade = static.fee_matrix[tr.seller, tr.buyer] * tr.quantity
                out[r] = 0.5 * (np.bincount(tr.seller, per_trade, n) + np.bincount(tr.buyer, per_trade, n))
    if cfg.fee_fixed > 0:
        out += np.where(qty > 0, cfg.fee_fixed, 0.0)
    if cfg.fee_redistribution != "none":
        total = out.sum(axis=1, keepdims=True)
        if cfg.fee_redistribution == "flexibility":
            w = np.abs(flexibility_kw)
            s = w.sum(axis=1, keepdims=True)
            share = np.where(s > 1e-12, w / np.where(s > 1e-12, s, 1.0), 1.0 / n)
        else:
            share = np.full((b, n), 1.0 / n)
        out = out - total * share
    return out


def pre_market(
    static: Any, forecast_kw: np.ndarray, is_buy: np.ndarray, accept: np.ndarray | None, t: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray]:
    """The DSO's rules before the market (EUniversal D5.3 (2022), §5.3) on the forecast no-P2P state
    ``forecast_kw`` float[B, N] (each agent's inflexible net injection): the lines at risk (loading ≥
    ``block_threshold_pct``), then either the seller→buyer pairs that would load one of them are forbidden
    (``preblock``, Scenario 2: the market matches without them) or the pairs' costs are updated direction-aware
    with the multiplier W (``redirect``, Scenario 3). Returns (partners [B, N, N], preference [B, N, N] or the
    static one, at-risk line count [B], forbidden pair count [B])."""
    from p2p_gym.grid import dso_rules

    cfg = static.config
    risk, flow = dso_rules.at_risk_lines(
        static.sens_i, static.max_i_ka, static.i0_ka, forecast_kw, cfg.block_threshold_pct,
        a0_ka=base_current(static, t),
    )  # fmt: skip
    n_risk = risk.sum(axis=-1)
    n_forbidden = np.zeros(len(forecast_kw), dtype=np.int64)
    preference = static.clearing_preference
    if cfg.grid_policy == "preblock":
        forbidden = dso_rules.forbidden_pairs(static.sens_i, risk, flow)
        n_forbidden = forbidden.sum(axis=(-1, -2))
        allowed = dso_rules.partners_from_forbidden(forbidden, is_buy)
        accept = allowed if accept is None else accept & allowed
    else:
        cost = dso_rules.redirect_preference(
            static.redirect_base, static.sens_i, risk, flow, cfg.redirect_w, cfg.redirect_mode
        )
        preference = dso_rules.clearing_preference(cost, is_buy)
    return accept, preference, n_risk, n_forbidden


def flex_market(static: Any, flex: Any, injection_kw: np.ndarray, t: np.ndarray) -> tuple[Any, np.ndarray]:
    """The DSO's local flexibility market (EUniversal D5.3 (2022), §5.2.1) after the P2P market: every agent offers
    what its devices can still move — up to ``flex_max − injection`` more injection and ``injection − flex_min``
    less — at ``flex_offer_price`` per kWh, and the DSO activates the least-cost set that removes every
    congestion under the linear model (:func:`p2p_gym.grid.clear_flex_market_batch`). Returns the market's
    outcome and what the DSO pays each agent (float[B, N], currency)."""
    from p2p_gym.grid import FlexOffer, clear_flex_market_batch

    cfg = static.config
    up = np.maximum(flex.x_max - injection_kw, 0.0)
    down = np.maximum(injection_kw - flex.x_min, 0.0)
    price = np.full_like(up, cfg.flex_offer_price)
    res = clear_flex_market_batch(
        static.sens_i, static.max_i_ka, static.i0_ka, injection_kw, FlexOffer(up, down, price, price), static.dt,
        cfg.flex_margin_pct, a0_ka=base_current(static, t),
    )  # fmt: skip
    payment = (res.up_kw + res.down_kw) * cfg.flex_offer_price * static.dt
    return res, payment


# ----------------------------------------------------------------------------------------------- observations
def _time_of_day_table() -> np.ndarray:
    """float[1440, 2]: (sin, cos) of the hour angle of every minute of the day."""
    hour = np.arange(1440) / 60.0
    ang = 2.0 * np.pi * hour / 24.0
    table = np.stack([np.sin(ang), np.cos(ang)], axis=1)
    table.flags.writeable = False
    return table


_TIME_OF_DAY = _time_of_day_table()


def observations(static: Any, state: Any) -> np.ndarray:
    """Observations float32[B, N, obs_dim] of a state (layout in :class:`~p2p_gym.envs.P2PMarketEnv`)."""
    sc, cfg = static.scenario, static.config
    t = np.minimum(state.t, sc.n_steps - 1)
    scale = static.power_scale
    has_battery = static.has_battery
    # what the agents expect (the realisation with forecast="perfect")
    load, pv = (sc.load_kw[t], sc.pv_kw[t]) if cfg.forecast == "perfect" else forecast_kw(static, state)
    shape = load.shape
    tod = _TIME_OF_DAY[t * sc.step_minutes % 1440]
    cap = np.where(has_battery, sc.battery_kwh, 1.0)
    if static.pricing is not None:  # the platform's import/export prices (coordination pricing, predictive)
        from p2p_gym.sim.multiscale import tariffs

        retail, feed_in = tariffs(static, state)[:2]
    else:
        retail = np.broadcast_to(np.asarray(sc.retail_price[t])[..., None], shape)
        feed_in = np.broadcast_to(np.asarray(sc.feed_in_price[t])[..., None], shape)
    cols = [
        load / scale,
        pv / scale,
        state.soc_kwh / cap,
        (pv - load) / scale,
        np.broadcast_to(tod[..., 0, None], shape),
        np.broadcast_to(tod[..., 1, None], shape),
        retail,
        feed_in,
        np.broadcast_to(np.asarray(state.last_price, dtype=np.float64)[..., None], shape),
        state.last_traded / (scale * sc.dt_hours),
        np.broadcast_to(has_battery.astype(float), shape),
    ]
    obs = np.stack(cols, axis=-1)
    parts = [obs]
    if cfg.forecast_steps:
        f_load, f_pv = forecast_kw(static, state, 1 + np.arange(cfg.forecast_steps))  # [B, F, N]
        parts += [np.swapaxes(f_load / scale, -1, -2), np.swapaxes(f_pv / scale, -1, -2)]
    if cfg.book_stats:
        parts.append(np.broadcast_to(np.asarray(state.last_book)[..., None, :], (*shape, 3)))
    if cfg.dispatch == "committed":
        from p2p_gym.sim import assets

        flex = assets.flex_range(static, state)
        ev = static.ev
        need = np.zeros(shape)
        if ev is not None:
            j = np.where(flex.ev_session >= 0, flex.ev_session, 0)
            need = np.where(flex.ev_session >= 0, ev.energy_kwh[j] - flex.ev_delivered, 0.0)
        band = np.where(sc.hp_band_kwh > 0, sc.hp_band_kwh, 1.0)
        parts.append(np.stack([flex.x_min / scale, flex.x_max / scale, flex.n0 / scale,
                               assets.reference_action(flex), need / (scale * sc.dt_hours),
                               state.hp_dev_kwh / band], axis=-1))  # fmt: skip
    if cfg.reserve:
        price_cap = cfg.reserve_price_cap if cfg.reserve_price_cap > 0 else 1.0
        price = np.broadcast_to((np.asarray(state.last_reserve_price) / price_cap)[..., None, :], (*shape, 2))
        parts.append(
            np.concatenate([price, (state.last_imbalance_kwh / (scale * sc.dt_hours))[..., None]], axis=-1)
        )
    if cfg.peer_obs:
        parts.append(np.broadcast_to(static.peer_features, (*shape, static.peer_features.shape[-1])))
    out = np.concatenate(parts, axis=-1) if len(parts) > 1 else obs
    return np.clip(out, -OBS_BOUND, OBS_BOUND).astype(np.float32)
