"""Reserve sizing under Gaussian and sampled forecast errors, checked by Monte Carlo (an independent estimate of
the joint confidence) and by hand for one error."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.errors import OptimError
from p2p_gym.optim.reserve import empirical_reserve, gaussian_reserve, joint_confidence


def _cov(rng: np.random.Generator, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    sigma = rng.uniform(0.5, 2.0, n)
    corr = np.full((n, n), rho)
    np.fill_diagonal(corr, 1.0)
    return rng.normal(0.0, 0.3, n), corr * np.outer(sigma, sigma)


def test_one_error_by_hand() -> None:
    # N(1, 2²), δ = 0.9: each tail 5 %, z = 1.6449 → R⁺ = 1 + 3.2897, R⁻ = −1 + 3.2897
    up, down = gaussian_reserve([1.0], [[4.0]], 0.9)
    assert up == pytest.approx(1.0 + 2 * 1.6448536, rel=1e-6)
    assert down == pytest.approx(-1.0 + 2 * 1.6448536, rel=1e-6)


@pytest.mark.parametrize("rho", [0.0, 0.6])
@pytest.mark.parametrize("delta", [0.9, 0.99])
def test_gaussian_reserve_meets_its_confidence_by_monte_carlo(rho: float, delta: float) -> None:
    rng = np.random.default_rng(int(100 * rho + 1000 * delta))
    mu, cov = _cov(rng, 12, rho)
    up, down = gaussian_reserve(mu, cov, delta)
    samples = rng.multivariate_normal(mu, cov, size=200_000)
    got = joint_confidence(samples, up, down)
    se = np.sqrt(delta * (1 - delta) / len(samples))
    assert abs(got - delta) < 4 * se
    # each tail gets half the violation probability
    total = samples.sum(axis=1)
    assert abs(np.mean(total > up) - (1 - delta) / 2) < 4 * se
    assert abs(np.mean(total < -down) - (1 - delta) / 2) < 4 * se


def test_correlated_errors_need_the_covariance() -> None:
    """With positively correlated errors (a cloud over every roof), sizing as if they were independent
    (√Σσ²) misses the confidence; with the covariance it is met."""
    rng = np.random.default_rng(5)
    mu, cov = _cov(rng, 20, 0.7)
    samples = rng.multivariate_normal(mu, cov, size=100_000)
    up, down = gaussian_reserve(mu, cov, 0.95)
    naive_up, naive_down = gaussian_reserve(mu, np.diag(np.diag(cov)), 0.95)
    assert naive_up < up and naive_down < down
    assert joint_confidence(samples, naive_up, naive_down) < 0.80
    assert joint_confidence(samples, up, down) == pytest.approx(0.95, abs=0.005)


def test_empirical_reserve_covers_delta_of_any_samples() -> None:
    rng = np.random.default_rng(2)
    samples = rng.gamma(2.0, 1.0, (5_000, 6)) - 2.0  # skewed, not Gaussian
    for delta in (0.8, 0.95):
        up, down = empirical_reserve(samples, delta)
        assert joint_confidence(samples, up, down) >= delta
        assert joint_confidence(samples, up, down) <= delta + 3 / len(samples)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(OptimError, match="delta"):
        gaussian_reserve([0.0], [[1.0]], 1.0)
    with pytest.raises(OptimError, match="cov"):
        gaussian_reserve([0.0, 0.0], [[1.0]], 0.9)
    with pytest.raises(OptimError, match="symmetric"):
        gaussian_reserve([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]], 0.9)
    with pytest.raises(OptimError, match="samples"):
        empirical_reserve(np.zeros(5), 0.9)
