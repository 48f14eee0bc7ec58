"""Forecasts with errors: the persistence forecast by hand, the calibration against a direct computation, and the
synthetic day-ahead errors against the statistics they are drawn from (a long sample)."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.errors import ScenarioError
from p2p_gym.scenarios.forecast import calibrate, forecast
from tests.conftest import cached_scenario


@pytest.fixture(scope="module")
def sc():  # type: ignore[no-untyped-def]
    return cached_scenario("default")


def test_perfect_and_persistence(sc) -> None:  # type: ignore[no-untyped-def]
    load, pv = forecast(sc, 200, 50, "perfect")
    np.testing.assert_array_equal(load, sc.load_kw[200:250])
    np.testing.assert_array_equal(pv, sc.pv_kw[200:250])
    load, pv = forecast(sc, 200, 50, "persistence")
    np.testing.assert_array_equal(load, sc.load_kw[104:154])  # one day (96 steps) earlier
    np.testing.assert_array_equal(pv, sc.pv_kw[104:154])
    load, _ = forecast(sc, 0, 10, "persistence")  # the first day has no day before
    np.testing.assert_array_equal(load, sc.load_kw[:10])


def test_calibration_matches_a_direct_computation(sc) -> None:  # type: ignore[no-untyped-def]
    st = calibrate(sc)
    i = int(np.argmax(sc.pv_kw.max(axis=0)))
    e = sc.pv_kw[96:, i] - sc.pv_kw[:-96, i]
    day = (sc.pv_kw[96:] > 0).any(axis=1) | (sc.pv_kw[:-96] > 0).any(axis=1)
    assert st.pv_sigma_kw[i] == pytest.approx(np.sqrt(np.mean(e[day] ** 2)), rel=1e-12)
    j = 0
    el = sc.load_kw[96:, j] - sc.load_kw[:-96, j]
    assert st.load_sigma_kw[j] == pytest.approx(np.sqrt(np.mean(el**2)), rel=1e-12)
    # SimBench's PV profiles share shapes: the agents' PV errors move together
    assert 0.5 < st.pv_corr <= 1.0
    assert 0.0 < st.pv_nrmse < 1.0 and 0.0 < st.load_nrmse


def test_day_ahead_errors_have_the_calibrated_statistics(sc) -> None:  # type: ignore[no-untyped-def]
    st = calibrate(sc)
    rng = np.random.default_rng(0)
    t0, steps = 96 * 150, 96 * 60  # two summer months
    load, pv = forecast(sc, t0, steps, "day_ahead", rng, st)
    rows = np.arange(t0, t0 + steps)
    # load: standard deviation where the load is far above the error (the forecast is clipped at 0 elsewhere;
    # selecting steps by the load, not by the error, keeps the sample unbiased), and lag-one autocorrelation
    e = load - sc.load_kw[rows]
    real = sc.load_kw[rows]
    for k in np.flatnonzero(st.load_sigma_kw > 0):
        sel = real[:, k] > 3.5 * st.load_sigma_kw[k]
        if sel.sum() > 500:
            assert e[sel, k].std() == pytest.approx(st.load_sigma_kw[k], rel=0.12)
    big = np.flatnonzero((real > 3.5 * st.load_sigma_kw).mean(axis=0) > 0.9)
    if len(big):
        lag = np.mean([np.corrcoef(e[:-1, k], e[1:, k])[0, 1] for k in big])
        assert lag == pytest.approx(st.load_ar, abs=0.05)
    # PV: errors only in daylight, forecasts within [0, peak], errors correlated across agents as calibrated
    ep = pv - sc.pv_kw[rows]
    night = ~((sc.pv_kw[rows] > 0) | (sc.pv_kw[rows - 96] > 0))
    assert np.all(ep[night] == 0.0)
    assert np.all(pv >= 0) and np.all(pv <= sc.pv_kw.max(axis=0) + 1e-12)
    with_pv = np.flatnonzero(st.pv_sigma_kw > 0)
    total = sc.pv_kw[rows].sum(axis=1)
    mid = total > 0.4 * total.max()  # bright daylight, away from the clipping at 0
    c = np.corrcoef(ep[mid][:, with_pv].T)
    iu = np.triu_indices(len(with_pv), 1)
    assert np.mean(c[iu]) == pytest.approx(st.pv_corr, abs=0.1)
    # reproducible with the same generator seed; skill 0 is perfect
    again, _ = forecast(sc, t0, steps, "day_ahead", np.random.default_rng(0), st)
    np.testing.assert_array_equal(again, load)
    perfect, _ = forecast(sc, t0, 10, "day_ahead", rng, st, skill=0.0)
    np.testing.assert_array_equal(perfect, sc.load_kw[t0 : t0 + 10])


def test_bad_arguments(sc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScenarioError, match="kind"):
        forecast(sc, 0, 10, "oracle")
    with pytest.raises(ScenarioError, match="rng"):
        forecast(sc, 0, 10, "day_ahead")
    with pytest.raises(ScenarioError, match="t0 \\+ steps"):
        forecast(sc, sc.n_steps - 5, 10, "perfect")
    with pytest.raises(ScenarioError, match="skill"):
        forecast(sc, 0, 10, "day_ahead", np.random.default_rng(0), skill=-1.0)


def test_day_ahead_load_forecast_is_unbiased_where_clipping_matters(sc) -> None:  # type: ignore[no-untyped-def]
    """Where the load is below its error's σ, plain clipping at 0 would forecast too much load on average; the
    shifted centre keeps the expectation at the realisation (pooled over those steps, within 4 standard errors)."""
    from scipy.stats import norm

    st = calibrate(sc)
    t0, steps = 100 * sc.steps_per_day, sc.steps_per_day
    real = sc.load_kw[t0 : t0 + steps]
    sigma = np.broadcast_to(st.load_sigma_kw, real.shape)
    low = (real > 0) & (real < sigma)
    assert low.sum() > 50
    rng = np.random.default_rng(7)
    err = np.array([forecast(sc, t0, steps, "day_ahead", rng, st)[0] - real for _ in range(400)])
    pooled = err[:, low].mean(axis=1)  # one pooled mean per draw: independent across draws
    assert abs(pooled.mean()) <= 4 * pooled.std() / np.sqrt(len(pooled))
    # plain clipping's bias at those steps, E[max(L + σZ, 0)] − L > 0: large against that tolerance
    naive = real * norm.cdf(real / sigma) + sigma * norm.pdf(real / sigma) - real
    assert naive[low].mean() > 10 * pooled.std() / np.sqrt(len(pooled))
