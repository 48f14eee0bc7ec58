"""The system level of a multiscale P2P market: platform operators trade their platforms' residual orders.

Morstyn, Savelli & Hepburn (2021, "Multiscale design for system-wide peer-to-peer energy trading", One Earth
4(5):629–638) nest local P2P platforms under a system-level market. Here each platform first clears its own
book; what its members did not match (the *residual orders*) is what its operator can trade with the other
operators, paying a network fee β_pq per kWh (each side) for the MV path between platforms p and q.

**The operators' problem.** Operator p's cost of a net upstream position s (> 0 sells) is the merit-order cost
of its residual orders, ``C_p(s) = min Σ_asks π_j·y_j − Σ_bids π_j·y_j`` over fills ``0 ≤ y_j ≤ q_j`` with
``Σ_asks y − Σ_bids y = s``: convex and piecewise linear on [−D_p, S_p] (D_p, S_p its residual bid and ask
volumes), with marginal cost the price of the marginal order. The market is

    min  Σ_p C_p(Σ_q x_pq) + Σ_p Σ_q β_pq·|x_pq| + α·Σ x_pq²     s.t.  x_pq = −x_qp,

the P2P market problem of :mod:`p2p_gym.optim.problem` (Le Goff Latimier & Ben Ahmed 2023, eq. 3 and 12) with
the operators' exact piecewise-linear costs in place of quadratic ones, and α the same uniqueness regulariser.
Without α it is the welfare-maximising matching of all residual orders across platforms under the fees.

**Negotiation** (:func:`negotiate_admm`): the consensus ADMM of :func:`~p2p_gym.optim.solve_admm` (Le Goff
Latimier & Ben Ahmed 2023, §5: trades, reciprocity multipliers λ, one local problem per operator each
iteration), whose local step here is solved exactly for a piecewise-linear cost (:func:`_local_step`): with ν
the operator's marginal price, each trade is the clipped soft threshold ``x_e(ν) = S_β(ρ·t_e − ν)/(ρ + 2α)``,
its sum g(ν) is continuous and non-increasing, and the operator's own position s(ν) is the merit-order step
function (a jump of q_j at each order price π_j); the root ``g(ν) ∈ [s(ν⁻), s(ν⁺)]`` is found by locating the
order price interval that contains it and then the edge kink interval within it, both by vectorised search.

**Asynchronous negotiation** (``negotiate_admm(..., asynchronous=True, rng=...)``): in each round every
operator is awake independently with probability ``p_active``; the awake operators do their exact local step
against the last trades and multipliers agreed with each peer, and the pairs whose two operators are both awake
agree anew (the randomised asynchronous ADMM of Wei & Ozdaglar 2013, one constraint block per pair).

**The reference** (:func:`negotiate_centralized`): the same problem with fills y_j explicit, one HiGHS LP.

**Allocation** (:func:`allocate`): operator p's position s_p is filled from its residual orders in merit order
(asks cheapest first, bids dearest first): every order priced strictly inside the marginal price is filled,
orders at the marginal price share the rest in order index order, so each member trades only at a price it
accepts. Each member trades at its operator's volume-weighted trade price and pays its operator's
volume-weighted fee, so money and energy balance exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numba
import numpy as np

from p2p_gym.errors import OptimError

__all__ = [
    "Allocation",
    "OperatorBook",
    "OperatorSolution",
    "allocate",
    "negotiate_admm",
    "negotiate_centralized",
    "operator_book",
]

#: Regulariser α of the trades (currency/kWh²): unique trades without changing positions beyond ~α.
ALPHA = 1e-6


@dataclass(frozen=True)
class OperatorBook:
    """The residual orders of all platforms, sorted by platform then price (arrays over residual orders)."""

    n_platforms: int
    agent: np.ndarray  # int[K] agent of each residual order
    platform: np.ndarray  # int[K] its platform (sorted)
    price: np.ndarray  # float[K] limit price (sorted within a platform)
    qty: np.ndarray  # float[K] kWh > 0
    is_buy: np.ndarray  # bool[K]
    supply: np.ndarray  # float[P] S_p residual ask volume
    demand: np.ndarray  # float[P] D_p residual bid volume
    start: np.ndarray  # int[P + 1] the orders of platform p are start[p]:start[p + 1]

    @property
    def tradeable(self) -> bool:
        """Some platform can sell and another can buy."""
        return bool(np.any(self.supply > 0) and np.any(self.demand > 0))


def operator_book(
    price: np.ndarray, residual: np.ndarray, is_buy: np.ndarray, platform: np.ndarray, n_platforms: int
) -> OperatorBook:
    """The residual orders (``residual`` kWh > 0 on each agent's side) grouped by platform, cheapest first.

    After a local call market the residual book of a platform does not cross (its unmatched bids are below its
    unmatched asks); the welfare and the allocation assume that (a crossing pair would be matched locally)."""
    agent = np.flatnonzero(residual > 1e-12)
    order = np.lexsort((agent, price[agent], platform[agent]))
    agent = agent[order]
    plat = platform[agent]
    qty = residual[agent]
    buy = is_buy[agent]
    return OperatorBook(
        n_platforms=n_platforms,
        agent=agent,
        platform=plat,
        price=price[agent].astype(np.float64),
        qty=qty.astype(np.float64),
        is_buy=buy,
        supply=np.bincount(plat[~buy], qty[~buy], n_platforms),
        demand=np.bincount(plat[buy], qty[buy], n_platforms),
        start=np.searchsorted(plat, np.arange(n_platforms + 1)),
    )


@dataclass(frozen=True)
class OperatorSolution:
    """The operators' market: trades x[P, P] (p sells to q if > 0), positions, marginal and trade prices."""

    trades: np.ndarray
    position: np.ndarray  # float[P] Σ_q x_pq
    marginal: np.ndarray  # float[P] ν_p (nan for an operator with no residual)
    prices: np.ndarray  # float[P, P] bilateral price of each trade (nan without one)
    welfare: float  # −(Σ C_p(s_p) + Σ β|x|): gains from inter-platform trade net of fees
    status: str
    iterations: int = 0
    solve_time: float = 0.0
    primal_residual: float = 0.0
    state: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def volume(self) -> float:
        """kWh traded between platforms (Σ of the positive trades, reciprocal average)."""
        return float(np.clip(0.5 * (self.trades - self.trades.T), 0.0, None).sum())


def _cost(book: OperatorBook, position: np.ndarray) -> np.ndarray:
    """C_p(s_p) per platform: the merit-order cost (asks cheapest first, bids dearest first)."""
    out = np.zeros(book.n_platforms)
    for p in range(book.n_platforms):
        lo, hi = book.start[p], book.start[p + 1]
        price, qty, buy = book.price[lo:hi], book.qty[lo:hi], book.is_buy[lo:hi]
        fill = _fill(position[p], price, qty, buy)
        out[p] = float(np.dot(np.where(buy, -price, price), fill))
    return out


def _fill(s: float, price: np.ndarray, qty: np.ndarray, buy: np.ndarray) -> np.ndarray:
    """Fills of one platform's sorted orders for position s: asks from the cheapest, bids from the dearest."""
    fill = np.zeros_like(qty)
    if s > 0:
        idx = np.flatnonzero(~buy)
        take = np.clip(s - (np.cumsum(qty[idx]) - qty[idx]), 0.0, qty[idx])
        fill[idx] = take
    elif s < 0:
        idx = np.flatnonzero(buy)[::-1]
        take = np.clip(-s - (np.cumsum(qty[idx]) - qty[idx]), 0.0, qty[idx])
        fill[idx] = take
    return fill


def _levels(book: OperatorBook) -> tuple[np.ndarray, np.ndarray]:
    """s(π_j⁻) and s(π_j⁺) at every order's price: the operator's position with the orders priced strictly
    below π_j switched (asks sold, bids dropped), and with those priced at or below it."""
    k = book.price.size
    cum = np.r_[0.0, np.cumsum(book.qty)]
    new = np.r_[True, (book.price[1:] != book.price[:-1]) | (book.platform[1:] != book.platform[:-1])]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], k]
    group = np.cumsum(new) - 1
    base = cum[book.start[book.platform]] + book.demand[book.platform]
    return cum[starts[group]] - base, cum[ends[group]] - base


@numba.njit(cache=True)
def _sum_soft(rt: np.ndarray, beta_p: np.ndarray, p: int, nu: float) -> float:
    """(ρ + 2α)·g(ν) of operator p: Σ_{q≠p} S_β(rt_q − ν), the soft threshold of each trade target."""
    g = 0.0
    for q in range(rt.size):
        if q != p:
            d = rt[q] - nu
            if d > beta_p[q]:
                g += d - beta_p[q]
            elif d < -beta_p[q]:
                g += d + beta_p[q]
    return g


@numba.njit(cache=True)
def _local_step(
    price: np.ndarray,
    s_below: np.ndarray,
    s_above: np.ndarray,
    start: np.ndarray,
    demand: np.ndarray,
    beta_p: np.ndarray,
    den: float,
    p: int,
    rt: np.ndarray,
    out: np.ndarray,
) -> float:
    """Operator p's exact local step: its trades into ``out`` (float[P], out[p] = 0), its marginal price ν returned.

    The local problem is min C_p(Σ_q x_pq) + Σ_q [β_pq·|x_pq| + α·x_pq² + ρ/2·(x_pq − t_pq)²] with
    ``rt = ρ·t_p``. With ν its marginal price, x_pq(ν) = S_β(ρ·t_pq − ν)/(ρ + 2α) and g(ν) = Σ_q x_pq(ν) is
    continuous and non-increasing; the merit-order position s(ν) jumps by q_j at each order price π_j. A binary
    search over p's sorted prices finds the first π_j with g(π_j) ≤ s(π_j⁺): if g(π_j) ≥ s(π_j⁻) the root is
    π_j (the marginal order partly filled), else it lies below π_j, where s is constant, and bisection on ν
    solves g(ν) = s to machine precision.
    """
    n = rt.size
    lo = start[p]
    hi = start[p + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if _sum_soft(rt, beta_p, p, price[mid]) / den > s_above[mid]:
            lo = mid + 1
        else:
            hi = mid
    j = lo
    v = 0.0
    found = False
    if j < start[p + 1]:
        if _sum_soft(rt, beta_p, p, price[j]) / den >= s_below[j] - 1e-12:
            v = price[j]
            found = True
    if not found:
        level = -demand[p] if j == start[p] else s_above[j - 1]
        k_lo = np.inf
        k_hi = -np.inf
        for q in range(n):
            if q != p:
                k_lo = min(k_lo, rt[q] - beta_p[q])
                k_hi = max(k_hi, rt[q] + beta_p[q])
        reach = den * (abs(level) + 1.0) / max(n - 1, 1) + 1.0
        a = price[j - 1] if j > start[p] else k_lo - reach
        b = price[j] if j < start[p + 1] else k_hi + reach
        for _ in range(200):  # g(a) ≥ level ≥ g(b)
            m = 0.5 * (a + b)
            if m <= a or m >= b:
                break
            if _sum_soft(rt, beta_p, p, m) / den > level:
                a = m
            else:
                b = m
        v = 0.5 * (a + b)
    for q in range(n):
        out[q] = 0.0
        if q != p:
            d = rt[q] - v
            if d > beta_p[q]:
                out[q] = (d - beta_p[q]) / den
            elif d < -beta_p[q]:
                out[q] = (d + beta_p[q]) / den
    return v


@numba.njit(cache=True)
def _admm_loop(
    price: np.ndarray,
    s_below: np.ndarray,
    s_above: np.ndarray,
    start: np.ndarray,
    demand: np.ndarray,
    beta: np.ndarray,
    rho: float,
    alpha: float,
    eps: float,
    max_iter: int,
    x: np.ndarray,
    lam: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float, bool]:
    """Consensus ADMM of the operators' market with exact local steps (trades as matrices x[p, q]): every
    operator does its local step (:func:`_local_step`) with t = z − λ/ρ, then z = (x − xᵀ)/2 and
    λ += ρ/2·(x + xᵀ)."""
    n = beta.shape[0]
    den = rho + 2.0 * alpha
    z = 0.5 * (x - x.T)
    nu = np.zeros(n)
    rt = np.zeros(n)
    pos_old = x.sum(axis=1)
    r = np.inf
    for it in range(1, max_iter + 1):
        x_new = np.zeros((n, n))
        for p in range(n):
            for q in range(n):
                rt[q] = rho * z[p, q] - lam[p, q]
            nu[p] = _local_step(price, s_below, s_above, start, demand, beta[p], den, p, rt, x_new[p])
        gap = x_new + x_new.T
        lam += 0.5 * rho * gap
        pos = x_new.sum(axis=1)
        r = np.sqrt(np.sum(gap**2))
        dual = np.sqrt(np.sum((pos - pos_old) ** 2))
        x = x_new
        z = 0.5 * (x - x.T)
        pos_old = pos
        if r <= eps and dual <= eps:
            return z, lam, nu, it, r, True
    return z, lam, nu, max_iter, r, False


@numba.njit(cache=True)
def _admm_async_rounds(
    price: np.ndarray,
    s_below: np.ndarray,
    s_above: np.ndarray,
    start: np.ndarray,
    demand: np.ndarray,
    beta: np.ndarray,
    rho: float,
    alpha: float,
    eps: float,
    awake: np.ndarray,
    x: np.ndarray,
    z: np.ndarray,
    lam: np.ndarray,
    nu: np.ndarray,
    steps: np.ndarray,
    agreed: np.ndarray,
    seen: np.ndarray,
    pos_ref: np.ndarray,
) -> tuple[int, bool]:
    """Rounds of the asynchronous ADMM (:func:`negotiate_admm`), one per row of ``awake`` (bool[rounds, P]),
    updating in place x, z, λ, ν, ``steps`` (local steps per operator) and the sweep: ``agreed[p, q]`` (the pair
    agreed in it), ``seen[p, q]`` (p stepped after such an agreement) and ``pos_ref`` (the positions when it
    began). Returns the rounds done and whether the residuals fell below ``eps`` at the end of a sweep."""
    n = beta.shape[0]
    den = rho + 2.0 * alpha
    rt = np.zeros(n)
    now = np.zeros((n, n), dtype=np.bool_)
    n_seen = 0
    for p in range(n):
        for q in range(n):
            if seen[p, q]:
                n_seen += 1
    for k in range(awake.shape[0]):
        if awake[k].sum() < 2:
            continue  # no pair of operators awake together: nothing is exchanged this round
        for p in range(n):  # x-step of every awake operator against the last z and λ of all its pairs
            if awake[k, p]:
                for q in range(n):
                    rt[q] = rho * z[p, q] - lam[p, q]
                    if q != p and agreed[p, q] and not seen[p, q]:
                        seen[p, q] = True
                        n_seen += 1
                nu[p] = _local_step(price, s_below, s_above, start, demand, beta[p], den, p, rt, x[p])
                steps[p] += 1
        now[:, :] = False
        for p in range(n):  # z- and λ-steps of the pairs awake together
            if awake[k, p]:
                for q in range(p + 1, n):
                    if awake[k, q]:
                        z[p, q] = 0.5 * (x[p, q] - x[q, p])
                        z[q, p] = 0.5 * (x[q, p] - x[p, q])
                        lam[p, q] += 0.5 * rho * (x[p, q] + x[q, p])
                        lam[q, p] += 0.5 * rho * (x[q, p] + x[p, q])
                        agreed[p, q] = agreed[q, p] = now[p, q] = now[q, p] = True
        if n_seen == n * (n - 1):  # every operator has answered a new agreement with each peer: end of sweep
            gap = x + x.T
            pos = x.sum(axis=1)
            r = np.sqrt(np.sum(gap**2))
            dual = np.sqrt(np.sum((pos - pos_ref) ** 2))
            pos_ref[:] = pos
            agreed[:, :] = now  # the next sweep answers this round's agreements
            seen[:, :] = False
            n_seen = 0
            if r <= eps and dual <= eps:
                return k + 1, True
    return awake.shape[0], False


def negotiate_admm(
    book: OperatorBook,
    fee: np.ndarray,
    rho: float | None = None,
    eps: float = 1e-6,
    max_iter: int = 20_000,
    alpha: float | None = None,
    warm_start: OperatorSolution | None = None,
    *,
    asynchronous: bool = False,
    rng: np.random.Generator | None = None,
    p_active: float = 0.5,
) -> OperatorSolution:
    """The operators' market by consensus ADMM with exact piecewise-linear local steps (module docstring).

    **Asynchronous variant** (``asynchronous=True``): the randomised asynchronous ADMM of Wei & Ozdaglar
    (2013, "On the O(1/k) convergence of asynchronous distributed alternating direction method of multipliers",
    IEEE GlobalSIP, arXiv:1307.8254), for their problem min Σ_i f_i(x_i) s.t. Dx + Hz = 0, z ∈ Z with the
    constraints in blocks of which a random subset Φᵏ is active at iteration k: the x_i that appear in an active
    block minimise the augmented Lagrangian with z and the multipliers at their last values, then the z of the
    active blocks minimise it, then the multipliers of the active blocks take their dual step; every other
    variable keeps its value. Here x_p = (x_pq)_q are operator p's trades, the constraints are x_pq = z_pq,
    and Z (z_pq = −z_qp) splits into one block per pair {p, q}. In round k every operator is awake
    independently with probability ``p_active`` (drawn from ``rng``), and Φᵏ is the pairs whose two operators
    are both awake (each pair active with probability ``p_active``², as the method requires of every block):

        x_pᵏ⁺¹ = argmin C_p(Σ_q x_pq) + Σ_q [β_pq·|x_pq| + α·x_pq² + λ_pqᵏ·(x_pq − z_pqᵏ) + ρ/2·(x_pq − z_pqᵏ)²]
                 for p in a pair of Φᵏ (the exact local step), x_pᵏ⁺¹ = x_pᵏ otherwise;
        z_pqᵏ⁺¹ = (x_pqᵏ⁺¹ − x_qpᵏ⁺¹)/2,  λ_pqᵏ⁺¹ = λ_pqᵏ + ρ/2·(x_pqᵏ⁺¹ + x_qpᵏ⁺¹)   for {p, q} ∈ Φᵏ
                 (the z minimiser for λ_pq = λ_qp, which the step keeps), z and λ unchanged otherwise.

    An asleep operator keeps its trades, and its pairs keep their last z and λ (its last messages); an awake
    operator alone in its round has no pair to update and waits (its step would be superseded before any peer
    saw it). ``p_active=1`` is the synchronous algorithm, iterate for iterate.

    The stopping rule is the synchronous one (primal residual ‖x + xᵀ‖, dual residual the change of the
    operators' positions Σ_q x_pq, both ≤ ``eps``), checked at the end of each *sweep*: the rounds until every
    operator has stepped after a new agreement with each of its peers (the agreements of the round that ended
    the previous sweep count; with ``p_active=1`` a sweep is one round and the rule is the synchronous one). The
    dual residual is the change of the positions over the sweep. Checked after every round, or once every pair
    has merely agreed, it stops early (measured: 1 of 96 ``mvlv`` books 0.05 kWh from the optimum, 3 of 300
    random runs up to 1.4 kWh): between two agreements of a pair still adjusting, or before its operators answer
    its last one, nothing moves.
    Iterations count rounds, and ``state["updates"]`` the local steps of each operator (about ``p_active`` per
    round).

    Args:
        book: the residual orders (:func:`operator_book`).
        fee: float[P, P] ≥ 0, β_pq borne by p on its trades with q.
        rho: ADMM penalty (currency/kWh²); default: the spread of the book's prices over its mean operator
            volume, the scale on which the local positions move.
        eps: stop when the primal (reciprocity) and dual (change of the operators' positions) residuals are
            below ``eps`` kWh.
        max_iter: iteration cap (status "max_iter"); rounds when asynchronous.
        alpha: trade regulariser; default :data:`ALPHA`, except 0 when asynchronous with ``p_active < 1``: with
            α > 0 the partial updates approach the α-unique trades very slowly (measured at ``p_active=0.5`` on
            64 books: median 41 times the synchronous iterations with α = 1e-5, 3.3 times with α = 0; α = 1e-6
            left a 5-platform book at a primal residual of 1–3e-4, about 4α/ρ, after 20 000 rounds). With α = 0
            positions, prices and welfare are as exact; the split of the trades among routes that the fees make
            indifferent is not unique (:func:`allocate` reroutes through-flows).
        warm_start: a previous solution of the same platforms (trades and multipliers).
        asynchronous: run the asynchronous variant above.
        rng: the random generator of the operators' wake-ups (required when asynchronous; advanced by the call,
            so a generator seeded alike gives the same result).
        p_active: probability in (0, 1] that an operator is awake in a round (asynchronous only).
    """
    t0 = time.perf_counter()
    if not (isinstance(p_active, (int, float, np.integer, np.floating)) and 0.0 < p_active <= 1.0):
        raise OptimError(f"p_active: must be a probability in (0, 1], got {p_active!r}")
    if asynchronous and not isinstance(rng, np.random.Generator):
        raise OptimError(f"rng: asynchronous=True needs a numpy.random.Generator, got {rng!r}")
    if alpha is None:
        alpha = 0.0 if asynchronous and p_active < 1.0 else ALPHA
    if not (np.isfinite(alpha) and alpha >= 0):
        raise OptimError(f"alpha: must be finite and ≥ 0, got {alpha}")
    full, fee_full = book, _check_fee(fee, book.n_platforms)
    book, keep = _compact(book)
    n = book.n_platforms
    fee = fee_full[np.ix_(keep, keep)]
    if n < 2:
        return _expand(
            full, keep, np.zeros((n, n)), np.full(n, np.nan), fee_full, "converged", 0, t0, 0.0, {}
        )
    s_below, s_above = _levels(book)
    if rho is None:
        active = (book.supply + book.demand) > 0
        spread = float(np.ptp(book.price)) if book.price.size else 0.0
        scale = float(np.mean((book.supply + book.demand)[active])) if active.any() else 1.0
        rho = max(spread, 1e-3) / max(scale, 1e-3)
    if not (np.isfinite(rho) and rho > 0):
        raise OptimError(f"rho: must be finite and > 0, got {rho}")
    x = np.zeros((n, n))
    lam = np.zeros((n, n))
    if warm_start is not None and warm_start.state.get("lam", np.zeros(0)).shape == (full.n_platforms,) * 2:
        x = warm_start.trades[np.ix_(keep, keep)].copy()
        lam = warm_start.state["lam"][np.ix_(keep, keep)].copy()
    beta = fee.copy()
    np.fill_diagonal(beta, 0.0)
    start = book.start.astype(np.int64)
    state: dict[str, np.ndarray] = {}
    if not asynchronous:
        trades, lam, nu, k, r, ok = _admm_loop(
            book.price, s_below, s_above, start, book.demand, beta, float(rho), float(alpha), float(eps),
            int(max_iter), x, lam,
        )  # fmt: skip
    else:
        assert rng is not None
        z = 0.5 * (x - x.T)
        nu = np.full(n, np.nan)
        steps = np.zeros(n, dtype=np.int64)
        agreed = ~np.eye(n, dtype=np.bool_)  # the initial z = (x − xᵀ)/2 counts as agreed
        seen = np.zeros((n, n), dtype=np.bool_)
        pos_ref = x.sum(axis=1)
        k, ok, chunk = 0, False, 256
        while k < max_iter and not ok:  # wake-ups drawn in growing chunks (the same stream as all at once)
            awake = rng.random((min(chunk, max_iter - k), n)) < p_active
            done, ok = _admm_async_rounds(
                book.price, s_below, s_above, start, book.demand, beta, float(rho), float(alpha), float(eps),
                awake, x, z, lam, nu, steps, agreed, seen, pos_ref,
            )  # fmt: skip
            k += done
            chunk = min(2 * chunk, 8192)
        trades = 0.5 * (x - x.T)
        r = float(np.sqrt(np.sum((x + x.T) ** 2)))
        updates = np.zeros(full.n_platforms, dtype=np.int64)
        updates[keep] = steps
        state["updates"] = updates
    status = "converged" if ok else "max_iter"
    lam_full = np.zeros((full.n_platforms,) * 2)
    lam_full[np.ix_(keep, keep)] = lam
    state["lam"] = lam_full
    return _expand(full, keep, trades, nu, fee_full, status, int(k), t0, float(r), state)


def _check_fee(fee: np.ndarray, n: int) -> np.ndarray:
    fee = np.asarray(fee, dtype=np.float64)
    if fee.shape != (n, n) or not np.all(np.isfinite(fee)) or np.any(fee < 0):
        raise OptimError(f"fee: expected finite float[{n}, {n}] ≥ 0, got shape {fee.shape}")
    return fee


def _compact(book: OperatorBook) -> tuple[OperatorBook, np.ndarray]:
    """The book restricted to operators with residual orders (renumbered 0..P'−1) and their original indices."""
    keep = np.flatnonzero(np.diff(book.start) > 0)
    remap = np.full(book.n_platforms, -1)
    remap[keep] = np.arange(keep.size)
    plat = remap[book.platform]
    return (
        OperatorBook(
            n_platforms=int(keep.size),
            agent=book.agent,
            platform=plat,
            price=book.price,
            qty=book.qty,
            is_buy=book.is_buy,
            supply=book.supply[keep],
            demand=book.demand[keep],
            start=np.searchsorted(plat, np.arange(keep.size + 1)),
        ),
        keep,
    )


def _expand(
    full: OperatorBook,
    keep: np.ndarray,
    trades_c: np.ndarray,
    nu_c: np.ndarray,
    fee: np.ndarray,
    status: str,
    iterations: int,
    t0: float,
    residual: float,
    state: dict[str, np.ndarray],
) -> OperatorSolution:
    """The solution on all P operators from the compact one; each trade's price is the mean of the seller's
    marginal price plus its fee and the buyer's marginal price less its fee (equal at the optimum)."""
    n = full.n_platforms
    trades = np.zeros((n, n))
    trades[np.ix_(keep, keep)] = trades_c
    nu = np.full(n, np.nan)
    nu[keep] = nu_c
    sells = trades > 1e-12
    seller_side = nu[:, None] + fee
    buyer_side = nu[None, :] - fee.T
    with np.errstate(invalid="ignore"):
        prices = np.where(sells, 0.5 * (seller_side + buyer_side), np.nan)
    prices = np.where(sells.T, prices.T, prices)  # the same price on the buyer's entry
    position = trades.sum(axis=1)
    welfare = -float(_cost(full, position).sum() + np.sum(fee * np.abs(trades)))
    return OperatorSolution(
        trades=trades,
        position=position,
        marginal=nu,
        prices=prices,
        welfare=welfare,
        status=status,
        iterations=iterations,
        solve_time=time.perf_counter() - t0,
        primal_residual=residual,
        state=state,
    )


def negotiate_centralized(book: OperatorBook, fee: np.ndarray) -> OperatorSolution:
    """The same market solved centrally as one linear program (HiGHS, through highspy directly) with
    the fills y_j of every residual order explicit: the matching of all residual orders across platforms that
    maximises welfare net of the fees. ν_p is the multiplier of operator p's balance Σ_j ±y_j = Σ_q x_pq. It is
    the reference the ADMM is tested against (without the ADMM's regulariser α, so trades between indifferent
    operators may differ; positions, prices and welfare do not)."""
    from scipy import sparse
    from scipy.optimize import linprog

    t0 = time.perf_counter()
    full, fee_full = book, _check_fee(fee, book.n_platforms)
    book, keep = _compact(book)
    n = book.n_platforms
    if n < 2:
        return _expand(full, keep, np.zeros((n, n)), np.full(n, np.nan), fee_full, "optimal", 0, t0, 0.0, {})
    fee = fee_full[np.ix_(keep, keep)]
    k = book.price.size
    pu, pv = np.triu_indices(n, 1)
    m = pu.size
    sign = np.where(book.is_buy, -1.0, 1.0)
    cost_pair = fee[pu, pv] + fee[pv, pu]
    c = np.r_[sign * book.price, cost_pair, cost_pair]  # y, f⁺ (u sells to v), f⁻ (v sells to u)
    rows = np.r_[book.platform, pu, pv, pu, pv]
    cols = np.r_[np.arange(k), k + np.arange(m), k + np.arange(m), k + m + np.arange(m), k + m + np.arange(m)]
    vals = np.r_[sign, -np.ones(m), np.ones(m), np.ones(m), -np.ones(m)]
    upper = np.r_[book.qty, np.full(2 * m, np.inf)]
    solved = _solve_lp_highspy(c, rows, cols, vals, n, upper)
    if solved is None:  # highspy missing: the same LP through scipy's HiGHS wrapper
        a_eq = sparse.csr_matrix((vals, (rows, cols)), shape=(n, k + 2 * m))
        res = linprog(
            c, A_eq=a_eq, b_eq=np.zeros(n), bounds=np.c_[np.zeros(k + 2 * m), upper], method="highs"
        )
        if res.status != 0:
            raise OptimError(f"negotiate_centralized: HiGHS ended with status {res.status} ({res.message})")
        solved = (np.asarray(res.x), np.asarray(res.eqlin.marginals, dtype=np.float64))
    x, nu = solved
    f = x[k : k + m] - x[k + m :]
    trades = np.zeros((n, n))
    trades[pu, pv] = f
    trades[pv, pu] = -f
    return _expand(full, keep, trades, nu, fee_full, "optimal", 0, t0, 0.0, {})


def _solve_lp_highspy(
    c: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """min cᵀx s.t. A x = 0 (A from the triplets), 0 ≤ x ≤ upper, with highspy directly: scipy's ``linprog``
    wrapper costs twice the solve on these small LPs (measured on mvlv books: 5.5 ms a call, 1.8 ms of it in
    HiGHS). Returns the solution and the rows' duals (the sensitivity of the optimum to each right-hand side, as
    ``linprog``'s ``eqlin.marginals``); None without highspy."""
    try:
        import highspy
    except ImportError:  # pragma: no cover - highspy ships with cvxpy, a core dependency
        return None
    from scipy import sparse

    from p2p_gym.market.clearing import _highs

    a = sparse.csc_matrix((vals, (rows, cols)), shape=(n_rows, len(c)))
    h = _highs()
    h.clearModel()
    inf = highspy.kHighsInf
    status = h.passModel(
        len(c), n_rows, int(a.nnz), int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMinimize), 0.0,
        np.ascontiguousarray(c, dtype=np.float64), np.zeros(len(c)),
        np.where(np.isfinite(upper), upper, inf).astype(np.float64), np.zeros(n_rows), np.zeros(n_rows),
        a.indptr.astype(np.int32), a.indices.astype(np.int32), a.data.astype(np.float64),
        np.zeros(len(c), dtype=np.int32),
    )  # fmt: skip
    if status != highspy.HighsStatus.kOk:
        raise OptimError("negotiate_centralized: HiGHS rejected the LP")
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise OptimError(
            f"negotiate_centralized: HiGHS ended with {h.modelStatusToString(h.getModelStatus())}"
        )
    sol = h.getSolution()
    return np.asarray(sol.col_value, dtype=np.float64), np.asarray(sol.row_dual, dtype=np.float64)


@dataclass(frozen=True)
class Allocation:
    """Inter-platform trades allocated to the agents (float[N] each; currency excludes fees)."""

    bought: np.ndarray
    sold: np.ndarray
    paid: np.ndarray
    received: np.ndarray
    fees: np.ndarray
    volume: float


def _direct(trades: np.ndarray) -> np.ndarray:
    """The trades with flows *through* an operator rerouted as direct trades from its sellers to its buyers.

    With fees proportional to MV path length, buying from s and selling on to c costs a platform on the path
    from s to c exactly what a direct trade costs, and the solver's regulariser α (which prefers several
    smaller trades) then routes some volume through it. Such an operator trades on both sides; its position
    and its members are unaffected if the through-flow min(in, out) goes directly, split pro rata over its
    suppliers and customers. Positions of all operators are unchanged; fees never rise (triangle inequality).
    """
    t = trades.copy()
    for _ in range(4 * len(t)):
        inflow, outflow = t.sum(axis=0), t.sum(axis=1)
        through = np.minimum(inflow, outflow)
        p = int(np.argmax(through))
        if through[p] <= 1e-12:
            break
        reroute = through[p] * np.outer(t[:, p] / inflow[p], t[p] / outflow[p])
        t[:, p] -= reroute.sum(axis=1)
        t[p] -= reroute.sum(axis=0)
        t += reroute
        np.fill_diagonal(t, 0.0)
        net = t - t.T  # opposite trades of one pair cancel
        t = np.clip(net, 0.0, None)
        t[t < 1e-12] = 0.0
    return t


def allocate(book: OperatorBook, solution: OperatorSolution, fee: np.ndarray, n_agents: int) -> Allocation:
    """Each operator's position filled from its residual orders in merit order, at its mean trade price."""
    n = book.n_platforms
    trades = _direct(np.clip(solution.trades, 0.0, None))  # p sells to q; no flow through an operator
    # an iterative solution may overshoot by its tolerance what an operator's members accept at its marginal
    # price ν (asks ≤ ν, bids ≥ ν, to 1e-6): scale its trades down (never up) so that its net position is filled
    # from those orders only
    nu = np.nan_to_num(solution.marginal)
    ok_ask = ~book.is_buy & (book.price <= nu[book.platform] + 1e-6)
    ok_bid = book.is_buy & (book.price >= nu[book.platform] - 1e-6)
    can_sell = np.bincount(book.platform[ok_ask], book.qty[ok_ask], n)
    can_buy = np.bincount(book.platform[ok_bid], book.qty[ok_bid], n)
    for _ in range(10):
        net = trades.sum(axis=1) - trades.sum(axis=0)
        cap = np.where(net > 0, can_sell, can_buy)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(np.abs(net) > cap, cap / np.where(net != 0, np.abs(net), 1.0), 1.0)
        if np.all(factor >= 1.0):
            break
        trades *= np.minimum(factor[:, None], factor[None, :])
    trades[trades < 1e-12] = 0.0
    fee = np.asarray(fee, dtype=np.float64)
    # one price per trade: the mean of the seller's marginal price plus its fee and the buyer's marginal price
    # less its fee (equal at the optimum), so what one side pays the other receives
    price = np.where(trades > 0, 0.5 * ((nu[:, None] + fee) + (nu[None, :] - fee.T)), 0.0)
    bought, sold = np.zeros(n_agents), np.zeros(n_agents)
    paid, received, fees = np.zeros(n_agents), np.zeros(n_agents), np.zeros(n_agents)
    out_vol, in_vol = trades.sum(axis=1), trades.sum(axis=0)
    for p in range(n):
        lo, hi = book.start[p], book.start[p + 1]
        net = float(out_vol[p] - in_vol[p])
        if hi == lo or abs(net) < 1e-12:
            continue
        fill = _fill(net, book.price[lo:hi], book.qty[lo:hi], book.is_buy[lo:hi])
        if fill.sum() <= 0:
            continue
        agents = book.agent[lo:hi]
        # money of operator p: receives Σ price·out, pays Σ price·in (seller's price on each trade), fees both
        money_in = float((price[p] * trades[p]).sum())
        money_out = float((price[:, p] * trades[:, p]).sum())
        fee_total = float((fee[p] * trades[p]).sum() + (fee[p] * trades[:, p]).sum())
        share = fill / fill.sum()
        if net > 0:
            sold[agents] += fill
            received[agents] += share * (money_in - money_out)
        else:
            bought[agents] += fill
            paid[agents] += share * (money_out - money_in)
        fees[agents] += share * fee_total
    return Allocation(bought, sold, paid, received, fees, float(out_vol.sum()))
