"""Joint energy–reserve market: the pool version against a hand-worked KKT solution and Monte Carlo, the P2P
ADMM against the cvxpy solution of the same local-constraint problem, the δ-allocation formulas by hand and by
Monte Carlo, and argument errors."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from scipy.stats import norm

from p2p_gym.errors import OptimError
from p2p_gym.optim import solve_pool
from p2p_gym.optim.reserve_market import (
    DELTA_POLICIES,
    ReserveMarket,
    _local_step,
    allocate_delta,
    case14_reserve_market,
    global_confidence,
    local_requirements,
    solve_joint_centralized,
    solve_p2p_reserve_admm,
    solve_p2p_reserve_centralized,
)
from tests.optim._instances import random_graph


def _hand_market() -> ReserveMarket:
    """Two generators and a fixed uncertain load (hand-worked in :func:`test_pool_market_by_hand`)."""
    return ReserveMarket(
        a=[1.0, 1.0, 0.0],
        b=[10.0, 14.0, 0.0],
        p_min=[[0.0, 0.0, -8.0]],
        p_max=[[10.0, 3.0, -8.0]],
        c_up=[2.0, 1.0, 0.0],
        c_down=[1.0, 3.0, 0.0],
        mu=np.zeros((1, 3)),
        cov=np.diag([0.0, 0.0, 1.0])[None],
    )


def _random_market(
    rng: np.random.Generator, n: int, t: int, n_unc: int, corr: float, sigma_scale: float = 1.0
) -> ReserveMarket:
    """Producers (agents 0, 2, ...) and flexible consumers; the last ``n_unc`` agents are uncertain renewables
    (0 ≤ p ≤ forecast, no upward reserve) with equicorrelated errors."""
    prod = np.arange(n) % 2 == 0
    prod[n - n_unc :] = True
    ren = np.arange(n) >= n - n_unc
    a = np.where(ren, 0.0, rng.uniform(0.2, 1.0, n))
    b = np.where(ren, 0.0, np.where(prod, rng.uniform(1.0, 4.0, n), rng.uniform(6.0, 9.0, n)))
    cap = rng.uniform(3.0, 8.0, (t, n))
    p_min = np.where(prod, 0.0, -cap)
    p_max = np.where(prod, cap, -0.5 * cap)
    sig = np.where(ren, sigma_scale * rng.uniform(0.2, 0.6, (t, n)), 0.0)
    c = np.full((n, n), corr)
    np.fill_diagonal(c, 1.0)
    cov = c[None] * sig[:, :, None] * sig[:, None, :]
    return ReserveMarket(
        a=a,
        b=b,
        p_min=p_min,
        p_max=p_max,
        c_up=rng.uniform(0.5, 2.0, n),
        c_down=rng.uniform(0.5, 2.0, n),
        mu=np.where(ren, sigma_scale * rng.normal(0.0, 0.05, (t, n)), 0.0),
        cov=cov,
        r_up_max=np.where(ren, 0.0, np.inf),
    )


# ---------------------------------------------------------------------------------------------- pool market
def test_pool_market_by_hand() -> None:
    """One hour: G0 (½p² + 10p, 0–10 MW, c⁺ = 2, c⁻ = 1), G1 (½p² + 14p, 0–3 MW, c⁺ = 1, c⁻ = 3) and a fixed
    load of 8 MW with error N(0, 1); δ = 0.9 → R⁺ = R⁻ = R = Φ⁻¹(0.95) = 1.6448536.

    Energy only: 10 + p0 = 14 + p1, p0 + p1 = 8 → p0 = 6, p1 = 2. Upward reserve is cheapest at G1 (c⁺ = 1),
    but G1 has only 3 − p1 = 1 MW of room < R. With G1 holding x ∈ [1, R] and its bound binding (p1 = 3 − x,
    p0 = 5 + x), the cost ½(5+x)² + 10(5+x) + ½(3−x)² + 14(3−x) + x + 2(R − x) has derivative 2x − 3 = 0 → x = 1.5:
    p = (6.5, 1.5, −8), r⁺ = (R − 1.5, 1.5, 0). Downward reserve is cheapest at G0 (c⁻ = 1) with room p0 = 6.5 > R:
    r⁻ = (R, 0, 0). Prices: energy = G0's marginal cost 10 + 6.5 = 16.5 (G1's 15.5 + the multiplier 1 of its
    binding bound), upward reserve = G0's c⁺ = 2 (= G1's c⁺ + 1), downward = 1.
    Cost: 6.5²/2 + 65 + 1.5²/2 + 21 + 1.5 + 2(R − 1.5) + R = 106.75 + 3R.
    """
    r = norm.ppf(0.95)
    sol = solve_joint_centralized(_hand_market(), 0.9)
    assert sol.status == "optimal"
    assert sol.requirement_up[0] == pytest.approx(r) and sol.requirement_down[0] == pytest.approx(r)
    assert sol.power[0] == pytest.approx([6.5, 1.5, -8.0], abs=1e-5)
    assert sol.reserve_up[0] == pytest.approx([r - 1.5, 1.5, 0.0], abs=1e-5)
    assert sol.reserve_down[0] == pytest.approx([r, 0.0, 0.0], abs=1e-5)
    assert sol.price[0] == pytest.approx(16.5, abs=1e-4)
    assert sol.reserve_price_up[0] == pytest.approx(2.0, abs=1e-4)
    assert sol.reserve_price_down[0] == pytest.approx(1.0, abs=1e-4)
    assert sol.welfare == pytest.approx(-(106.75 + 3 * r), rel=1e-6)


def test_gaussian_reserve_reaches_the_global_confidence_by_monte_carlo() -> None:
    rng = np.random.default_rng(7)
    mk = _random_market(rng, n=8, t=3, n_unc=4, corr=0.6)
    delta = 0.9
    sol = solve_joint_centralized(mk, delta)
    assert sol.total_reserve_up == pytest.approx(
        sol.requirement_up, abs=1e-5
    )  # reserve is costly: no surplus
    samples = mk.sample_errors(np.random.default_rng(8), 100_000)
    conf = global_confidence(sol.total_reserve_up, sol.total_reserve_down, samples)
    se = np.sqrt(delta * (1 - delta) / samples.shape[0])
    assert np.all(np.abs(conf - delta) < 4 * se), conf
    # the sampler draws the market's covariance
    flat = samples[:, 1, 4:]
    assert np.cov(flat.T) == pytest.approx(mk.cov[1, 4:, 4:], abs=0.01)
    # sized from samples instead, the same samples are covered at least δ of the time
    emp = solve_joint_centralized(mk, delta, reserve="samples", samples=samples[:5_000])
    assert np.all(global_confidence(emp.total_reserve_up, emp.total_reserve_down, samples[:5_000]) >= delta)


def test_zero_forecast_error_gives_the_energy_only_optimum() -> None:
    rng = np.random.default_rng(3)
    mk = _random_market(rng, n=7, t=3, n_unc=2, corr=0.0, sigma_scale=0.0)
    sol = solve_joint_centralized(mk, 0.95)
    assert np.abs(sol.reserve_up).max() < 1e-6 and np.abs(sol.reserve_down).max() < 1e-6
    d = allocate_delta(mk, 0.95, "uniform")
    p2p = solve_p2p_reserve_admm(mk, d)
    for h in range(mk.n_hours):
        power, cost, price = solve_pool(mk.energy_problem(h))
        assert sol.cost[h] == pytest.approx(cost, rel=1e-6, abs=1e-6)
        assert sol.price[h] == pytest.approx(price, rel=1e-4, abs=1e-4)
        curved = mk.a > 0  # the zero-cost renewables may split their output in any way
        assert sol.power[h, curved] == pytest.approx(power[curved], abs=1e-4)
        assert p2p.cost[h] == pytest.approx(cost, rel=1e-5, abs=1e-5)
    assert np.abs(p2p.reserve_up).max() < 1e-6 and np.abs(p2p.reserve_down).max() < 1e-6


# ---------------------------------------------------------------------------------------------- P2P market
def _check_p2p(mk: ReserveMarket, sol, tol: float) -> None:  # type: ignore[no-untyped-def]
    assert np.all(sol.coverage_up >= sol.requirement_up - tol)
    assert np.all(sol.coverage_down >= sol.requirement_down - tol)
    assert np.all(sol.reserve_up >= -tol) and np.all(sol.reserve_down >= -tol)
    assert np.all(sol.power - sol.reserve_down >= mk.p_min - tol)
    assert np.all(sol.power + sol.reserve_up <= mk.p_max + tol)
    assert np.abs(sol.power.sum(axis=1)).max() < 10 * tol
    assert sol.reciprocity_residual < tol


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_p2p_admm_matches_cvxpy(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    mk = _random_market(rng, n=7, t=4, n_unc=3, corr=0.5)
    adj = None if seed == 0 else random_graph(mk.n_agents, 0.3, rng)
    delta = rng.uniform(0.7, 0.99, (mk.n_hours, mk.n_agents))
    ref = solve_p2p_reserve_centralized(mk, delta, adjacency=adj)
    sol = solve_p2p_reserve_admm(mk, delta, adjacency=adj, max_iter=100_000)
    assert sol.status == "converged"
    assert abs(sol.welfare - ref.welfare) <= 1e-5 * abs(ref.welfare)
    assert sol.total_reserve_up == pytest.approx(ref.total_reserve_up, abs=1e-3)
    assert sol.total_reserve_down == pytest.approx(ref.total_reserve_down, abs=1e-3)
    _check_p2p(mk, ref, 1e-6)
    _check_p2p(mk, sol, 1e-4)
    if adj is not None:
        assert np.all(sol.reserve_trades_up[:, ~adj] == 0) and np.all(ref.trades[:, ~adj] == 0)
    # the bilateral prices agree too (a full graph without trade costs: one price per hour)
    both = np.isfinite(ref.reserve_prices_up)
    assert sol.reserve_prices_up[both] == pytest.approx(ref.reserve_prices_up[both], abs=1e-2)
    assert sol.prices[both] == pytest.approx(ref.prices[both], abs=1e-2)


def test_local_step_is_the_exact_local_qp() -> None:
    """The closed-form local step against cvxpy on random targets, requirements and capacities."""
    rng = np.random.default_rng(11)
    mk = _random_market(rng, n=6, t=5, n_unc=2, corr=0.3)
    mk = ReserveMarket(**{**mk.__dict__, "r_down_max": rng.choice([np.inf, 0.5, 2.0], mk.n_agents)})
    t, n = mk.n_hours, mk.n_agents
    w = rng.uniform(0.2, 3.0, n)
    s_t, u_t, d_t = rng.normal(0, 3, (t, n)), rng.normal(0, 1, (t, n)), rng.normal(0, 1, (t, n))
    q_up, q_down = rng.uniform(-0.5, 2.0, (t, n)), rng.uniform(-0.5, 2.0, (t, n))
    got = _local_step(mk, w, s_t, u_t, d_t, q_up, q_down)
    for h in range(t):
        for i in range(n):
            s, ru, rd, uu, dd = (cp.Variable() for _ in range(5))
            obj = (
                0.5 * mk.a[i] * s**2 + mk.b[i] * s + 0.5 * w[i] * (s - s_t[h, i]) ** 2
                + 0.5 * w[i] * (uu - u_t[h, i]) ** 2 + 0.5 * w[i] * (dd - d_t[h, i]) ** 2
                + mk.c_up[i] * ru + mk.c_down[i] * rd
            )  # fmt: skip
            cons = [s >= mk.p_min[h, i] + rd, s <= mk.p_max[h, i] - ru, ru >= 0, rd >= 0]
            cons += [ru + uu >= q_up[h, i], rd + dd >= q_down[h, i]]
            for var, cap in ((ru, mk.r_up_max[i]), (rd, mk.r_down_max[i])):  # type: ignore[index]
                if np.isfinite(cap):
                    cons.append(var <= cap)
            prob = cp.Problem(cp.Minimize(obj), cons)
            prob.solve(solver=cp.CLARABEL)
            ours = [float(x[h, i]) for x in got]
            # s, U, D are unique (strongly convex); compare the objective for the reserves (ties when c = 0)
            assert ours[0] == pytest.approx(float(s.value), abs=1e-6)
            assert ours[3] == pytest.approx(float(uu.value), abs=1e-6)
            assert ours[4] == pytest.approx(float(dd.value), abs=1e-6)
            assert ours[1] == pytest.approx(float(ru.value), abs=1e-6)
            assert ours[2] == pytest.approx(float(rd.value), abs=1e-6)


def test_absolute_sigma_p2p_equals_the_pool_market() -> None:
    """With all pairs trading and no trade costs, local requirements summing to the pool's R± give the pool's
    welfare; the uniform policy holds at least as much reserve, so its welfare is lower."""
    rng = np.random.default_rng(21)
    mk = _random_market(rng, n=8, t=3, n_unc=3, corr=0.6)
    pool = solve_joint_centralized(mk, 0.95)
    sol = solve_p2p_reserve_admm(mk, allocate_delta(mk, 0.95, "absolute_sigma"))
    assert sol.welfare == pytest.approx(pool.welfare, rel=1e-5)
    assert sol.total_reserve_up == pytest.approx(pool.total_reserve_up, abs=1e-3)
    uni = solve_p2p_reserve_admm(mk, allocate_delta(mk, 0.95, "uniform"))
    assert uni.welfare < sol.welfare
    assert np.all(uni.total_reserve_up >= pool.total_reserve_up - 1e-4)


def test_case14_day_admm_matches_cvxpy() -> None:
    mk = case14_reserve_market()
    for policy in DELTA_POLICIES:
        d = allocate_delta(mk, 0.95, policy)
        ref = solve_p2p_reserve_centralized(mk, d)
        sol = solve_p2p_reserve_admm(mk, d)
        assert sol.status == "converged"
        assert abs(sol.welfare - ref.welfare) <= 1e-5 * abs(ref.welfare)
        _check_p2p(mk, sol, 1e-3)


# ---------------------------------------------------------------------------------------------- δ policies
def _policy_market(corr: float) -> ReserveMarket:
    """Four agents; agents 2 and 3 uncertain with σ = 1 and 3 and forecasts 10 and 20."""
    sig = np.array([0.0, 0.0, 1.0, 3.0])
    c = np.array([[1.0, corr], [corr, 1.0]])
    cov = np.zeros((1, 4, 4))
    cov[0, 2:, 2:] = c * np.outer(sig[2:], sig[2:])
    return ReserveMarket(
        a=[1.0, 1.0, 0.0, 0.0],
        b=[1.0, 5.0, 0.0, 0.0],
        p_min=[[0.0, -40.0, 0.0, 0.0]],
        p_max=[[40.0, 0.0, 10.0, 20.0]],
        c_up=[1.0, 1.0, 0.0, 0.0],
        c_down=[1.0, 1.0, 1.0, 1.0],
        mu=np.zeros((1, 4)),
        cov=cov,
        r_up_max=[np.inf, np.inf, 0.0, 0.0],
        forecast=[[0.0, 0.0, 10.0, 20.0]],
    )


def test_policy_formulas_by_hand() -> None:
    mk = _policy_market(0.5)
    delta = 0.9
    assert allocate_delta(mk, delta, "uniform") == pytest.approx(np.full((1, 4), 0.9))
    # Rel. α^σ: 1 − δ_n = N(1 − δ)σ_n/Σσ = 4·0.1·σ_n/4 → 0.1 and 0.3
    assert allocate_delta(mk, delta, "sigma")[0, 2:] == pytest.approx([0.9, 0.7])
    # Rel. α^μ: 4·0.1·μ̂_n/30 → 0.4/3 and 0.8/3
    assert allocate_delta(mk, delta, "mean")[0, 2:] == pytest.approx([1 - 0.4 / 3, 1 - 0.8 / 3])
    # Abs. α^σ: σ_Σ = √(1 + 9 + 2·0.5·3) = √13, z_n = √13·z(0.9)/4 for both
    z_n = np.sqrt(13.0) * norm.ppf(0.95) / 4.0
    got = allocate_delta(mk, delta, "absolute_sigma")
    assert got[0, 2:] == pytest.approx([2 * norm.cdf(z_n) - 1] * 2)
    q_up, q_down = local_requirements(mk, got)
    assert q_up.sum() == pytest.approx(np.sqrt(13.0) * norm.ppf(0.95), rel=1e-12)
    assert q_down.sum() == pytest.approx(np.sqrt(13.0) * norm.ppf(0.95), rel=1e-12)
    assert q_up[0, :2] == pytest.approx([0.0, 0.0])  # certain agents need nothing
    # agents without uncertainty keep δ in every policy
    for name in DELTA_POLICIES:
        assert allocate_delta(mk, delta, name)[0, :2] == pytest.approx([0.9, 0.9])


@pytest.mark.parametrize("corr", [0.0, 0.6])
def test_policies_against_the_global_confidence_by_monte_carlo(corr: float) -> None:
    """Uniform meets δ (Σσ_n ≥ σ_Σ), absolute-σ meets it exactly; with positively correlated errors the
    σ-relative allocation misses it."""
    rng = np.random.default_rng(int(10 * corr))
    mk = _random_market(rng, n=10, t=2, n_unc=4, corr=corr)
    delta = 0.95
    samples = mk.sample_errors(np.random.default_rng(1), 100_000)
    se = np.sqrt(delta * (1 - delta) / samples.shape[0])
    conf = {}
    for name in DELTA_POLICIES:
        q_up, q_down = local_requirements(mk, allocate_delta(mk, delta, name))
        conf[name] = global_confidence(q_up.sum(axis=1), q_down.sum(axis=1), samples)
    assert np.all(np.abs(conf["absolute_sigma"] - delta) < 4 * se)
    assert np.all(conf["uniform"] > delta + 4 * se)
    if corr > 0:
        assert np.all(conf["sigma"] < delta - 4 * se)
        assert np.all(conf["mean"] < delta - 4 * se)


def test_case14_market() -> None:
    mk = case14_reserve_market(hours=24)
    assert (mk.n_agents, mk.n_hours) == (22, 24)
    assert mk.names is not None and mk.names[0] == "gen@0" and mk.names[-1] == "pv@11"
    ren = slice(16, 22)
    assert np.all(np.asarray(mk.r_up_max)[ren] == 0)
    assert np.all(mk.sigma[:, :16] == 0)
    assert mk.sigma[12, 16] == pytest.approx(0.2 * mk.p_max[12, 16])  # wind σ = 20 % of its forecast
    assert mk.sigma[0, 19] == 0.0  # no PV error at night
    corr = mk.cov[12, 16, 19] / (mk.sigma[12, 16] * mk.sigma[12, 19])
    assert corr == pytest.approx(0.6)
    assert np.all(mk.p_min.sum(axis=1) < 0) and np.all(mk.p_max.sum(axis=1) > 0)


# ---------------------------------------------------------------------------------------------- errors
def test_bad_arguments_are_named() -> None:
    good = _hand_market().__dict__
    bad_cases = {
        "p_min": {"p_min": [[0.0, 0.0]]},
        "p_max": {"p_max": [[-1.0, 3.0, -8.0]]},
        "c_up": {"c_up": [-1.0, 1.0, 0.0]},
        "cov": {"cov": np.diag([0.0, 0.0, -1.0])[None]},
        "r_down_max": {"r_down_max": [1.0, -1.0, 0.0]},
        "mu": {"mu": [[0.0, np.nan, 0.0]]},
        "forecast": {"forecast": [[1.0, 1.0]]},
        "names": {"names": ("x",)},
    }
    for field_, change in bad_cases.items():
        with pytest.raises(OptimError, match=field_):
            ReserveMarket(**{**good, **change})
    with pytest.raises(OptimError, match="symmetric"):
        ReserveMarket(**{**good, "cov": np.array([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])})
    mk = _hand_market()
    with pytest.raises(OptimError, match="delta"):
        solve_joint_centralized(mk, 1.0)
    with pytest.raises(OptimError, match="samples"):
        solve_joint_centralized(mk, 0.9, reserve="samples")
    with pytest.raises(OptimError, match="reserve"):
        solve_joint_centralized(mk, 0.9, reserve="quantile")  # type: ignore[arg-type]
    with pytest.raises(OptimError, match="policy"):
        allocate_delta(mk, 0.9, "fair")
    with pytest.raises(OptimError, match="local_delta"):
        local_requirements(mk, [[0.9, 0.9, 1.0]])
    with pytest.raises(OptimError, match="adjacency"):
        solve_p2p_reserve_admm(mk, 0.9, adjacency=[[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    with pytest.raises(OptimError, match="rho"):
        solve_p2p_reserve_admm(mk, 0.9, rho=-1.0)
    with pytest.raises(OptimError, match="rng"):
        mk.sample_errors(np.random, 10)  # type: ignore[arg-type]
    with pytest.raises(OptimError, match="hours"):
        case14_reserve_market(hours=0)
