"""The linear model's branch current ``√(I0² + (A0 + S p)²)`` (active part at zero injection ``A0``, reactive rest
``I0``): worked by hand on a one-line feeder and checked against plain ``pandapower.runpp``, and against the AC
power flow on the MV/LV system ``mvlv``, whose zero-injection state carries large base flows (the earlier form
``√(I0² + (S p)²)`` put its HV/MV transformers at 308 % instead of 36 %)."""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import numpy as np
import pandapower as pp
import pytest

from p2p_gym.grid import GridModel
from tests.conftest import cached_scenario

warnings.filterwarnings("ignore")

# ------------------------------------------------------------------------------------------ hand case
# Slack (0.4 kV, 1.0 p.u.) ──line (50 m NAYY 4x150 SE: R = 0.0104 Ω, X = 0.004 Ω)──▶ bus 1: a fixed load of
# 60 kW / 20 kvar and the agent a0. The slack holds the from bus at V = 0.4 kV, so the from-end current splits
# into an active part P_from / (√3 V) and a reactive part Q_from / (√3 V), with the line's losses
# P_from = P_load − p + R (P_from² + Q_from²) / V² and Q_from = Q_load + X (P_from² + Q_from²) / V² (the cable's
# charging, 0.0007 kvar, is left out). One kW injected at bus 1 changes P_from by −1 / (1 − 2 R P_from / V²).
V_KV, R_OHM, X_OHM = 0.4, 0.208 * 0.05, 0.08 * 0.05
P_LOAD, Q_LOAD = 0.06, 0.02  # MW, Mvar


def _one_line():  # type: ignore[no-untyped-def]
    net = pp.create_empty_network()
    b0, b1 = pp.create_bus(net, V_KV), pp.create_bus(net, V_KV)
    pp.create_ext_grid(net, b0, vm_pu=1.0)
    pp.create_line(net, b0, b1, 0.05, "NAYY 4x150 SE")
    pp.create_load(net, b1, p_mw=P_LOAD, q_mvar=Q_LOAD)
    pp.create_sgen(net, b1, p_mw=0.0, name="a0")
    scenario = SimpleNamespace(
        net=net, agent_ids=("a0",), background_ids=(), pv_kw=np.full((2, 1), 100.0), load_kw=np.zeros((2, 1))
    )
    return net, scenario


def _by_hand() -> tuple[float, float, float]:
    """(I_a, I_r, s): active and reactive from-end current at zero injection (kA) and the slope (kA per kW)."""
    p, q = P_LOAD, Q_LOAD
    for _ in range(20):  # fixed point of the loss equations (converges in a few steps: losses are ~0.4 %)
        p, q = P_LOAD + R_OHM * (p * p + q * q) / V_KV**2, Q_LOAD + X_OHM * (p * p + q * q) / V_KV**2
    k = 1.0 / (np.sqrt(3.0) * V_KV)  # kA per MW
    return p * k, q * k, -k / (1.0 - 2.0 * R_OHM * p / V_KV**2) / 1000.0


def test_hand_worked_decomposition_on_one_line() -> None:
    net, scenario = _one_line()
    model = GridModel(scenario, "linear")
    sens = model.sensitivities
    i_a, i_r, s = _by_hand()
    assert i_a == pytest.approx(0.086981, abs=1e-6) and i_r == pytest.approx(0.029013, abs=1e-6)
    assert sens["line_active_current_ka"][0] == pytest.approx(i_a, rel=1e-4)
    assert sens["line_current_ka"][0] == pytest.approx(i_r, rel=1e-4)
    assert sens["line_current_ka_per_kw"][0, 0] == pytest.approx(s, rel=1e-4)
    imax = float(net.line.max_i_ka.iloc[0])
    for p in (-40.0, 0.0, 30.0, 60.0, 90.0):
        loading = model.check(np.array([p])).line_loading_pct[0]
        # the model's current is exactly the decomposition ...
        formula = np.hypot(
            sens["line_current_ka"][0],
            sens["line_active_current_ka"][0] + sens["line_current_ka_per_kw"][0, 0] * p,
        )
        assert loading == pytest.approx(100.0 * formula / imax, rel=1e-12)
        # ... and the hand-worked one, up to the charging current and the larger to-end current
        assert loading == pytest.approx(100.0 * np.hypot(i_r, i_a + s * p) / imax, abs=0.01)
        # ... and an independent AC power flow, up to the change of the losses with p
        ref = copy.deepcopy(net)
        ref.sgen["p_mw"] = p / 1000.0
        pp.runpp(ref)
        assert loading == pytest.approx(ref.res_line.loading_percent.iloc[0], abs=0.3)
    # with the load covered by the agent only the reactive current is left: ~29 A (less the reactive losses of
    # the vanished active flow). The earlier form, √(|I(0)|² + (s p)²), gave √(92² + 87²) A there, 4.4× too much.
    ref = copy.deepcopy(net)
    ref.sgen["p_mw"] = P_LOAD
    pp.runpp(ref)
    i_ac = ref.res_line.i_ka.iloc[0]
    assert i_ac == pytest.approx(i_r, rel=0.01)
    assert model.check(np.array([60.0])).line_loading_pct[0] * imax / 100.0 == pytest.approx(i_ac, rel=0.01)
    earlier = np.hypot(np.hypot(i_a, i_r), s * 60.0)
    assert earlier > 4.0 * i_ac


# ------------------------------------------------------------------------------------------ mvlv
def test_linear_model_agrees_with_ac_on_mvlv_with_background() -> None:
    """A day of real injections (PV − load of 991 prosumers) and background (the rest of the MV/LV system) on
    ``mvlv``: linear losses within 3 % of the AC losses (measured 1.7 %; the earlier form: ×6.7), line and
    transformer loadings within 2 points (1.0 and 1.6; earlier: 103 and 296), voltages within 0.005 p.u."""
    sc = cached_scenario("mvlv", days=2)
    rows = slice(0, sc.steps_per_day)
    inj, bg = (sc.pv_kw - sc.load_kw)[rows], sc.background_kw[rows]
    assert bg.shape[1] > 0 and np.abs(bg).max() > 100.0
    ac = GridModel(sc, "ac").check_batch(inj, bg)
    lin = GridModel(sc, "linear").check_batch(inj, bg)
    assert ac.converged.all()
    np.testing.assert_allclose(lin.losses_kw, ac.losses_kw, rtol=0.03)
    np.testing.assert_allclose(lin.line_loading_pct, ac.line_loading_pct, rtol=0, atol=2.0)
    np.testing.assert_allclose(lin.trafo_loading_pct, ac.trafo_loading_pct, rtol=0, atol=2.0)
    np.testing.assert_allclose(lin.vm_pu, ac.vm_pu, rtol=0, atol=0.005)
    hv = (sc.net.trafo.vn_hv_kv > 50.0).to_numpy()  # the HV/MV transformers, which carry the whole system
    assert hv.any() and ac.trafo_loading_pct[:, hv].max() > 30.0
    np.testing.assert_allclose(lin.trafo_loading_pct[:, hv], ac.trafo_loading_pct[:, hv], rtol=0, atol=1.0)


def test_marginal_losses_are_the_derivative_of_the_linear_losses() -> None:
    """GridModel.marginal_losses against central differences of check_batch's losses (a quadratic in the
    injections, so central differences are exact up to rounding)."""
    from p2p_gym.errors import GridError

    sc = cached_scenario("default")
    model = GridModel(sc, "linear")
    rng = np.random.default_rng(0)
    inj = (sc.pv_kw - sc.load_kw)[[40, 48, 56, 80]]
    d = rng.uniform(0, 1, (sc.n_agents, 3))
    got = model.marginal_losses(inj, d)
    h = 0.5
    for j in range(3):
        up = model.check_batch(inj + h * d[:, j]).losses_kw
        down = model.check_batch(inj - h * d[:, j]).losses_kw
        np.testing.assert_allclose(got[:, j], (up - down) / (2 * h), rtol=1e-7, atol=1e-10)
    with pytest.raises(GridError, match="directions"):
        model.marginal_losses(inj, np.zeros((3, 2)))
    with pytest.raises(GridError, match="linear"):
        GridModel(sc, "ac").marginal_losses(inj, d)
