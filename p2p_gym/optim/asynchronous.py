"""Asynchronous P2P ADMM (Le Goff Latimier & Ben Ahmed 2023, §5.3, Fig. 7–8) as a time-stepped simulation,
vectorised over edges.

Each agent n keeps its own trades p_nm, its copy of λ_nm and the last value of p_mn it received. It updates
as soon as new messages from at least ⌈δ·M_n⌉ of its M_n peers have arrived (and its previous update is
finished): it first applies the dual step λ_nm += ρ/2·(p_nm + p_mn) for the peers it heard from, then solves
its local problem (the exact step of :mod:`p2p_gym.optim.local`, only for the updating agents) and sends one
message to each peer. A message takes a random delay; each transmission attempt is lost with probability σ
and then retransmitted after a timeout. δ = 1 is the synchronous algorithm with realistic waiting.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from p2p_gym.optim.local import local_step
from p2p_gym.optim.problem import P2PSolution, solution_from_edges

if TYPE_CHECKING:
    from p2p_gym.optim.admm import AsyncConfig, _Ctx

__all__ = ["run_async"]

_QUEUE = 8
"""Capacity of each per-edge message queue (the oldest message is dropped when full)."""


def _delays(cfg: AsyncConfig, rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    """One-way delays of ``size`` messages and the number of lost attempts (retransmissions)."""
    lost = rng.geometric(1.0 - cfg.loss, size) - 1 if cfg.loss > 0 else np.zeros(size, dtype=np.int64)
    base = rng.gamma(lost + 1.0, cfg.mean_delay) if cfg.mean_delay > 0 else np.zeros(size)
    return base + lost * cfg.timeout, int(lost.sum())


def run_async(
    ctx: _Ctx,
    cfg: AsyncConfig,
    rng: np.random.Generator,
    eps_primal: float,
    eps_dual: float,
    max_iter: int,
    warm: P2PSolution | None,
) -> P2PSolution:
    """Simulate the asynchronous ADMM; see :func:`p2p_gym.optim.solve_admm`."""
    from p2p_gym.optim.admm import _warm_arrays

    if ctx.H is not None:
        from p2p_gym.errors import OptimError

        raise OptimError("asynchronous: line limits are only supported by the synchronous ADMM")
    t0 = time.perf_counter()
    pb = ctx.problem
    n = pb.n_agents
    src, rev, rho = ctx.src, ctx.rev, ctx.rho
    n_e = src.size
    p, lam, nu = _warm_arrays(pb, warm)
    known = p[rev].copy()  # src(e)'s view of p_rev(e)
    fresh = np.ones(n_e, dtype=bool)  # everyone starts at once with the initial values
    # per-edge FIFO of messages in transit towards src(e) (in-order delivery, as over TCP)
    q_val = np.zeros((n_e, _QUEUE))
    q_lam = np.zeros((n_e, _QUEUE))
    known_lam = lam.copy()
    q_arr = np.full((n_e, _QUEUE), np.inf)
    head = np.zeros(n_e, dtype=np.int64)
    tail = np.zeros(n_e, dtype=np.int64)
    last_arr = np.zeros(n_e)
    rows = np.arange(n_e)
    in_order = cfg.delta >= 1.0  # synchronous semantics: use the peer's messages one by one, in order
    last_dp = np.full(n_e, np.inf)
    deg = np.bincount(src, minlength=n)
    need = np.maximum(1, np.ceil(cfg.delta * deg - 1e-12)).astype(np.int64)
    busy_until = np.zeros(n)
    updates = np.zeros(n, dtype=np.int64)
    messages = retrans = 0
    pri_hist: list[float] = []
    dual_hist: list[float] = []
    status = "max_iter"
    now = 0.0
    eps_p2, eps_d2 = eps_primal**2, eps_dual**2
    max_ticks = int(max_iter * (2 + (cfg.compute_time + 3 * cfg.mean_delay) / cfg.tick) * (1 + 3 * cfg.loss))
    for _ in range(max_ticks):
        n_arrived = np.zeros(n_e, dtype=np.int64)
        for o in range(_QUEUE):
            slot = (head + o) % _QUEUE
            n_arrived += (o < tail - head) & (q_arr[rows, slot] <= now)
        has_msg = fresh | (n_arrived > 0)
        count = np.bincount(src, has_msg, minlength=n)
        ready = (count >= need) & (busy_until <= now) & (deg > 0)
        if ready.any():
            emask = ready[src]
            take = emask & (n_arrived > 0)
            use = np.where(in_order, 1, n_arrived)  # oldest (sync) or latest (async) arrived message
            slot = (head + use - 1) % _QUEUE
            known = np.where(take, q_val[rows, slot], known)
            known_lam = np.where(take, q_lam[rows, slot], known_lam)
            head = np.where(take, head + use, head)
            idx = np.flatnonzero(emask)
            heard = (take | fresh)[idx]
            # dual step, averaged with the peer's copy so that λ_nm = λ_mn at any fixed point
            lam_avg = 0.5 * (lam[idx] + known_lam[idx])
            lam[idx] = np.where(heard, lam_avg + 0.5 * rho * (p[idx] + known[idx]), lam[idx])
            fresh[idx] = False
            t = 0.5 * (p[idx] - known[idx]) - lam[idx] / rho
            p_new, nu_new = local_step(
                src[idx],
                t,
                ctx.beta[idx],
                ctx.lo[idx],
                ctx.hi[idx],
                pb.a,
                pb.b,
                pb.p_min,
                pb.p_max,
                nu,
                rho,
                ctx.alpha,
            )
            nu = np.where(ready, nu_new, nu)
            last_dp[idx] = p_new - p[idx]
            p[idx] = p_new
            delay, lost = _delays(cfg, rng, idx.size)
            r_idx = rev[idx]
            arr = np.maximum(now + cfg.compute_time + delay, last_arr[r_idx])
            last_arr[r_idx] = arr
            full = tail[r_idx] - head[r_idx] >= _QUEUE  # drop the oldest message if the queue is full
            head[r_idx] += full
            pos = tail[r_idx] % _QUEUE
            q_val[r_idx, pos] = p_new
            q_lam[r_idx, pos] = lam[idx]
            q_arr[r_idx, pos] = arr
            tail[r_idx] += 1
            busy_until[ready] = now + cfg.compute_time
            updates += ready
            messages += idx.size
            retrans += lost
            gap = p + p[rev]
            r2 = float(gap @ gap)
            d2 = float(np.sum(np.minimum(np.abs(last_dp), 1e150) ** 2))
            pri_hist.append(math.sqrt(r2))
            dual_hist.append(math.sqrt(d2))
            if r2 <= eps_p2 and d2 <= eps_d2:
                status = "converged"
                break
            if updates[deg > 0].min(initial=max_iter) >= max_iter:
                break
        now += cfg.tick
    lam_sym = 0.5 * (lam + lam[rev])
    return solution_from_edges(
        pb,
        p,
        lam_sym,
        status=status,
        solver=f"admm/async(δ={cfg.delta:g}, σ={cfg.loss:g})",
        iterations=int(updates.max(initial=0)),
        messages=messages,
        primal_residuals=np.asarray(pri_hist),
        dual_residuals=np.asarray(dual_hist),
        solve_time=time.perf_counter() - t0,
        sim_time=now + cfg.compute_time,
        state={"nu": nu, "lam": lam_sym, "retransmissions": np.array([retrans])},
    )
