"""Grid check of agents' net injections on a pandapower network: exact AC power flow or a linear model.

The AC power flow runs on one of two engines that solve the same equations: pandapower's Newton–Raphson (Thurner
et al. (2018), IEEE Trans. Power Syst. 33(6)), the reference, or lightsim2grid's C++ one (Donnot, B. (2020)
"Lightsim2grid: a C++ backend for Grid2Op", GitHub; :mod:`p2p_gym.grid.lightsim`): ~0.2 ms per check on
``default`` against ~1.7 ms with pandapower's recycled flow and ~45 ms for a plain ``pandapower.runpp``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from p2p_gym.errors import GridEngineError, GridError

GridMode = Literal["ac", "linear"]
_RECYCLE = {"bus_pq": True, "gen": False, "trafo": False}
# columns of pandapower's (pypower's) case matrices: bus voltage magnitude, branch P at both ends, generator P
_VM, _PF, _PT, _PG = 7, 13, 15, 1
GRID_MODES: tuple[str, ...] = ("ac", "linear")
GRID_ENGINES: tuple[str, ...] = ("auto", "lightsim2grid", "pandapower")


@dataclass(frozen=True, eq=False)
class GridReport:
    """Outcome of one grid check. Arrays follow the order of ``net.line``, ``net.trafo`` and ``net.bus``.

    When ``converged`` is False the arrays are NaN, the counts are 0 and ``error`` says why.
    """

    converged: bool
    """True when the power flow converged (always True for the linear model with finite input)."""
    line_loading_pct: np.ndarray
    """float[L], %: current of each line relative to its thermal limit ``max_i_ka``."""
    trafo_loading_pct: np.ndarray
    """float[R], %: loading of each transformer relative to its rating ``sn_mva``."""
    vm_pu: np.ndarray
    """float[B], p.u.: voltage magnitude of each bus."""
    max_line_loading_pct: float
    """Largest line loading in % (nan when not converged)."""
    n_overloaded_lines: int
    """Number of lines above the loading limit (100 % by default)."""
    n_voltage_violations: int
    """Number of buses outside the voltage band (0.95–1.05 p.u. by default)."""
    error: str | None = None
    """Why the check failed, or None."""
    overflow_sum_pct: float = 0.0
    """Sum over overloaded lines of (loading − limit), in percentage points (EUniversal D5.3 (2022), Table 7)."""
    max_trafo_loading_pct: float = 0.0
    """Largest transformer loading in %."""
    vm_min_pu: float = 1.0
    """Lowest bus voltage (p.u.)."""
    vm_max_pu: float = 1.0
    """Highest bus voltage (p.u.)."""
    losses_kw: float = float("nan")
    """Active losses of lines and transformers, kW (linear model: an estimate; see :class:`GridModel`)."""
    ext_grid_kw: float = float("nan")
    """Active power imported from the upstream grid at the slack, kW (positive = import)."""

    @property
    def ok(self) -> bool:
        """Converged with no overloaded line, transformer or voltage violation."""
        return self.converged and self.n_overloaded_lines == 0 and self.n_voltage_violations == 0

    def as_dict(self) -> dict[str, Any]:
        """Scalar KPIs (for ``info`` dicts and logs)."""
        return {
            "converged": self.converged,
            "max_line_loading_pct": self.max_line_loading_pct,
            "max_trafo_loading_pct": self.max_trafo_loading_pct,
            "n_overloaded_lines": self.n_overloaded_lines,
            "n_voltage_violations": self.n_voltage_violations,
            "overflow_sum_pct": self.overflow_sum_pct,
            "vm_min_pu": self.vm_min_pu,
            "vm_max_pu": self.vm_max_pu,
            "losses_kw": self.losses_kw,
            "ext_grid_kw": self.ext_grid_kw,
            "error": self.error,
        }


@dataclass(frozen=True, eq=False)
class GridBatch:
    """Outcome of B grid checks at once (one per row of an injection matrix float[B, N]).

    Arrays have a leading batch axis; rows that did not converge are NaN with ``converged`` False and their
    reason in ``errors``. The KPIs (:meth:`kpis`) are defined here once and :meth:`report` gives row ``b`` as a
    :class:`GridReport`.
    """

    converged: np.ndarray
    """bool[B]."""
    line_loading_pct: np.ndarray
    """float[B, L], % of each line's thermal limit."""
    trafo_loading_pct: np.ndarray
    """float[B, R], % of each transformer's rating."""
    vm_pu: np.ndarray
    """float[B, V], bus voltage magnitudes (p.u.)."""
    errors: tuple[str | None, ...]
    """Why each failed row failed (None where it converged)."""
    losses_kw: np.ndarray
    """float[B], kW: active losses of lines and transformers (linear model: an estimate; see :class:`GridModel`)."""
    ext_grid_kw: np.ndarray
    """float[B], kW: active power imported from the upstream grid at the slack (positive = import)."""
    loading_limit_pct: float = 100.0
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05

    def kpis(self) -> dict[str, np.ndarray]:
        """Scalar KPIs per row (arrays [B]; NaN / 0 counts where the power flow failed)."""
        return self._kpis

    @functools.cached_property
    def _kpis(self) -> dict[str, np.ndarray]:
        line, trafo, vm, ok = self.line_loading_pct, self.trafo_loading_pct, self.vm_pu, self.converged
        b = len(ok)
        all_ok = bool(ok.all())
        with np.errstate(invalid="ignore"):
            over = line - self.loading_limit_pct
            n_over = np.count_nonzero(over > 0, axis=1)
            n_volt = np.count_nonzero((vm < self.v_min_pu) | (vm > self.v_max_pu), axis=1)
            out = {
                "converged": ok.copy(),
                "max_line_loading_pct": line.max(axis=1, initial=0.0),
                "max_trafo_loading_pct": trafo.max(axis=1, initial=0.0),
                "n_overloaded_lines": n_over,
                "n_voltage_violations": n_volt,
                "overflow_sum_pct": np.maximum(over, 0.0).sum(axis=1),
                "vm_min_pu": vm.min(axis=1, initial=np.inf) if vm.shape[1] else np.ones(b),
                "vm_max_pu": vm.max(axis=1, initial=-np.inf) if vm.shape[1] else np.ones(b),
                "losses_kw": np.where(ok, self.losses_kw, np.nan),
                "ext_grid_kw": np.where(ok, self.ext_grid_kw, np.nan),
            }
        if not all_ok:  # failed rows: NaN KPIs, zero counts
            bad = ~ok
            for key in ("n_overloaded_lines", "n_voltage_violations"):
                out[key] = np.where(bad, 0, out[key])
            for key in (
                "max_line_loading_pct",
                "max_trafo_loading_pct",
                "overflow_sum_pct",
                "vm_min_pu",
                "vm_max_pu",
            ):
                out[key] = np.where(bad, np.nan, out[key])
        return out

    def report(self, b: int = 0) -> GridReport:
        """Row ``b`` as a :class:`GridReport` (made once per row)."""
        cache = self.__dict__.setdefault("_reports", {})
        if b not in cache:
            cache[b] = self._report(b)
        return cache[b]

    def _report(self, b: int) -> GridReport:
        k = {name: value[b] for name, value in self._kpis.items()}
        return GridReport(
            converged=bool(k["converged"]),
            line_loading_pct=self.line_loading_pct[b],
            trafo_loading_pct=self.trafo_loading_pct[b],
            vm_pu=self.vm_pu[b],
            max_line_loading_pct=float(k["max_line_loading_pct"]),
            n_overloaded_lines=int(k["n_overloaded_lines"]),
            n_voltage_violations=int(k["n_voltage_violations"]),
            error=self.errors[b],
            overflow_sum_pct=float(k["overflow_sum_pct"]),
            max_trafo_loading_pct=float(k["max_trafo_loading_pct"]),
            vm_min_pu=float(k["vm_min_pu"]),
            vm_max_pu=float(k["vm_max_pu"]),
            losses_kw=float(k["losses_kw"]),
            ext_grid_kw=float(k["ext_grid_kw"]),
        )


def line_headroom_ka(max_i_ka: np.ndarray, i0_ka: np.ndarray, loading_pct: float = 100.0) -> np.ndarray:
    """float[L], kA: the bound ``H_l`` on the signed active current ``|A0_l + s_l·p|`` that keeps line l at or below
    ``loading_pct`` in the linear model (whose current is ``√(I0² + (A0 + s·p)²)``, :meth:`GridModel._build_linear`):
    ``H_l = √((loading_pct/100 · I^max_l)² − I0_l²)``, so the limit on the injections is ``−H_l − A0_l ≤ s_l·p ≤
    H_l − A0_l``; NaN where ``I0`` alone exceeds it. Used by every linear line limit (the flexibility market, the
    episode optimum)."""
    limit = np.asarray(max_i_ka, dtype=float) * loading_pct / 100.0
    head = limit**2 - np.asarray(i0_ka, dtype=float) ** 2
    return np.where(head >= 0, np.sqrt(np.clip(head, 0.0, None)), np.nan)


@dataclass(frozen=True)
class AcFlows:
    """Raw results of B AC power flows from an engine, in the order of ``net.line``, ``net.trafo`` and ``net.bus``.

    Rows that did not converge are NaN, with their reason in ``errors``. Both engines (pandapower's and
    lightsim2grid's) return this; :class:`GridModel` turns it into a :class:`GridBatch`.
    """

    converged: np.ndarray
    """bool[B]."""
    errors: tuple[str | None, ...]
    """Why each failed row failed (None where it converged)."""
    line_i_ka: np.ndarray
    """float[B, L], kA: line current, the larger of both ends (pandapower's ``res_line.i_ka``; 0 out of service)."""
    line_p_from_mw: np.ndarray
    """float[B, L], MW: active power entering each line at its from bus."""
    trafo_pct: np.ndarray
    """float[B, R], %: transformer loading by current (pandapower's default ``trafo_loading="current"``)."""
    trafo_p_hv_mw: np.ndarray
    """float[B, R], MW: active power entering each transformer at its HV side."""
    vm_pu: np.ndarray
    """float[B, V], p.u.: bus voltage magnitudes."""
    losses_mw: np.ndarray
    """float[B], MW: active losses of all lines and transformers (the power entering both ends, summed)."""
    ext_grid_mw: np.ndarray
    """float[B], MW: active power the external grid (slack) injects into the net, positive = import."""

    @staticmethod
    def empty(b: int, n_line: int, n_trafo: int, n_bus: int) -> AcFlows:
        """B rows of NaN, not converged, to be filled row by row."""
        return AcFlows(
            np.zeros(b, dtype=bool),
            (None,) * b,
            np.full((b, n_line), np.nan),
            np.full((b, n_line), np.nan),
            np.full((b, n_trafo), np.nan),
            np.full((b, n_trafo), np.nan),
            np.full((b, n_bus), np.nan),
            np.full(b, np.nan),
            np.full(b, np.nan),
        )


class PandapowerEngine:
    """AC power flows with pandapower's Newton–Raphson on one working net (Thurner et al. 2018).

    The first flow (and the first after a failure) is a full ``pandapower.runpp``; the next ones reuse its internal
    case and warm-start from the last solution (pandapower's ``recycle`` with ``init="results"``) and skip the
    result extraction into pandas tables, which costs more than the power flow itself on small feeders: line and
    transformer loadings, losses and the slack's power are computed with pandapower's formulas from the same
    branch flows. :meth:`run_full` fills the ``res_*`` tables.
    """

    name = "pandapower"

    def __init__(self, net: Any) -> None:
        self.net = net
        self.n_lines, self.n_trafos, self.n_buses = len(net.line), len(net.trafo), len(net.bus)
        self.res_fresh = False
        """True when the ``res_*`` tables hold the last flow's results."""
        self.tol_mva = 1e-8
        """Newton–Raphson tolerance on the power mismatch (pandapower's ``tolerance_mva``: p.u. of ``net.sn_mva``)."""
        self._has_solution = False
        self._fast = False

    def set_sgen_p(self, p_mw: np.ndarray) -> None:
        """Set the ``p_mw`` of every row of ``net.sgen`` (float[S], MW)."""
        self.net.sgen["p_mw"] = p_mw

    def run(self, sgen_p_mw: np.ndarray) -> AcFlows:
        """AC flows for each row of ``sgen_p_mw`` float[B, S] (MW, the ``p_mw`` of every row of ``net.sgen``)."""
        out = AcFlows.empty(len(sgen_p_mw), self.n_lines, self.n_trafos, self.n_buses)
        errors: list[str | None] = [None] * len(sgen_p_mw)
        for b, row in enumerate(sgen_p_mw):
            self.set_sgen_p(row)
            if self._has_solution and self._fast:
                errors[b] = self._run_fast(out, b)
            else:
                errors[b] = self.run_full()
                if errors[b] is None:
                    errors[b] = self._read_tables(out, b)
        return dataclasses.replace(out, errors=tuple(errors))

    def run_full(self) -> str | None:
        """A full ``pandapower.runpp`` of the net (results into ``res_*``); the reason it failed, or None."""
        import pandapower as pp

        self.res_fresh = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self._has_solution:
                    pp.runpp(self.net, recycle=_RECYCLE, init="results", tolerance_mva=self.tol_mva)
                else:
                    pp.runpp(self.net, init="auto", tolerance_mva=self.tol_mva)
        except Exception as exc:  # pandapower raises LoadflowNotConverged and assorted numerical errors
            self._has_solution = False
            return f"{type(exc).__name__}: {exc}"
        if not bool(self.net.converged):
            self._has_solution = False
            return "power flow did not converge"
        self._has_solution = True
        self.res_fresh = True
        self._prepare_fast()
        return None

    def _read_tables(self, out: AcFlows, b: int) -> str | None:
        net = self.net
        rl, rt = net.res_line, net.res_trafo
        out.line_i_ka[b] = rl.i_ka.to_numpy(dtype=float)
        out.line_p_from_mw[b] = rl.p_from_mw.to_numpy(dtype=float)
        out.trafo_pct[b] = rt.loading_percent.to_numpy(dtype=float)
        out.trafo_p_hv_mw[b] = rt.p_hv_mw.to_numpy(dtype=float)
        out.vm_pu[b] = net.res_bus.vm_pu.to_numpy(dtype=float)
        out.losses_mw[b] = float(rl.pl_mw.sum() + rt.pl_mw.sum())
        out.ext_grid_mw[b] = float(net.res_ext_grid.p_mw.sum())
        return self._accept(out, b)

    def _accept(self, out: AcFlows, b: int) -> str | None:
        """Row ``b`` converged unless a bus voltage is NaN. A branch cut off at both ends by open switches has NaN
        results in pandapower (its auxiliary buses are isolated): it carries nothing, 0 here as with
        lightsim2grid."""
        if not (np.all(np.isfinite(out.vm_pu[b])) and np.isfinite(out.losses_mw[b])):
            self._has_solution = False
            for field in (out.line_i_ka, out.line_p_from_mw, out.trafo_pct, out.trafo_p_hv_mw, out.vm_pu):
                field[b] = np.nan
            out.losses_mw[b] = out.ext_grid_mw[b] = np.nan
            return "power flow returned NaN results"
        for field in (out.line_i_ka, out.line_p_from_mw, out.trafo_pct, out.trafo_p_hv_mw):
            field[b] = np.nan_to_num(field[b])
        out.converged[b] = True
        return None

    def _run_fast(self, out: AcFlows, b: int) -> str | None:
        """Newton-Raphson on pandapower's recycled internal case, without writing the ``res_*`` tables."""
        from pandapower.pd2ppc import _calc_pq_elements_and_add_on_ppc, _ppc2ppci
        from pandapower.pf.run_newton_raphson_pf import _run_newton_raphson_pf
        from pandapower.results import _copy_results_ppci_to_ppc
        from pandapower.results_branch import _get_branch_flows

        net = self.net
        options = net["_options"]
        options["recycle"] = _RECYCLE
        options["init_vm_pu"] = "results"
        options["init_va_degree"] = "results"
        options["tolerance_mva"] = self.tol_mva
        ppc = net["_ppc"]
        internal = ppc["internal"]
        ppci = {
            "bus": internal["bus"],
            "gen": internal["gen"],
            "branch": internal["branch"],
            "baseMVA": internal["baseMVA"],
            "internal": internal,
        }
        self.res_fresh = False
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                _calc_pq_elements_and_add_on_ppc(net, ppc)
                ppci = _ppc2ppci(ppc, net, ppci=ppci)
                ppci["internal"] = internal
                result = _run_newton_raphson_pf(ppci, options)
        except Exception as exc:  # numerical failure inside the solver
            self._has_solution = False
            return f"{type(exc).__name__}: {exc}"
        if not result["success"]:
            self._has_solution = False
            return "power flow did not converge"
        _copy_results_ppci_to_ppc(result, ppc, options["mode"])
        i_ft, _ = _get_branch_flows(ppc)
        pft = ppc["branch"][:, (_PF, _PT)].real
        lf, lt = self._line_range
        tf, tt = self._trafo_range
        out.line_i_ka[b] = np.max(i_ft[lf:lt], axis=1)
        out.line_p_from_mw[b] = pft[lf:lt, 0]
        out.trafo_pct[b] = np.max(i_ft[tf:tt] * self._trafo_vn, axis=1) * self._trafo_scale
        out.trafo_p_hv_mw[b] = pft[tf:tt, 0]
        out.vm_pu[b] = ppc["bus"][self._bus_ppc, _VM].real
        out.losses_mw[b] = np.nansum(pft[lf:lt]) + np.nansum(pft[tf:tt])
        out.ext_grid_mw[b] = ppc["gen"][self._ext_gen, _PG].real.sum()
        return self._accept(out, b)

    def _prepare_fast(self) -> None:
        """Index maps from pandapower's internal case to lines, transformers, buses and the slack (after a full
        run)."""
        net = self.net
        lookups = net._pd2ppc_lookups
        branch = lookups["branch"]
        self._line_range = branch.get("line", (0, 0))
        self._trafo_range = branch.get("trafo", (0, 0))
        trafo = net.trafo
        self._trafo_vn = np.stack([trafo.vn_hv_kv.to_numpy(float), trafo.vn_lv_kv.to_numpy(float)], axis=1)
        self._trafo_scale = (
            np.sqrt(3) * 100.0 / (trafo.sn_mva * trafo.parallel * trafo.df).to_numpy(dtype=float, copy=True)
        )
        self._bus_ppc = lookups["bus"][net.bus.index.to_numpy()]
        eg = net.ext_grid.index.to_numpy()[net.ext_grid.in_service.to_numpy(dtype=bool)]
        self._ext_gen = np.asarray(lookups["ext_grid"][eg], dtype=np.int64)
        self._fast = net["_options"].get("trafo_loading", "current") == "current" and not net.trafo3w.shape[0]


class GridModel:
    """Checks agents' net injections (kW, positive = export) on the scenario's pandapower network.

    * ``mode="ac"``: a full AC Newton–Raphson power flow, equal to a plain ``pandapower.runpp`` of :attr:`net` to
      the solver's tolerance, by one of two engines:

      - ``engine="lightsim2grid"``: lightsim2grid's C++ Newton–Raphson (Donnot 2020) on a converted copy of the
        net (:mod:`p2p_gym.grid.lightsim`), warm-started from the last solution; :meth:`check_batch` solves all
        rows in one call into C++. ~0.2 ms per check on the 41-bus ``default`` feeder, ~0.02 ms per row of a
        batch (a plain ``pandapower.runpp`` loop: ~45 ms; ``benchmarks/grid_check.py``).
      - ``engine="pandapower"``: pandapower's own Newton–Raphson (Thurner et al. 2018) on one working copy of the
        net, reusing its internal structures and last solution between calls (``recycle``, ``init="results"``).
        ~1.7 ms per check on ``default``. The reference, and the fallback.
      - ``engine="auto"`` (default): lightsim2grid when it is installed and models the net
        (:func:`p2p_gym.grid.lightsim.prepare_net` lists what it does not), else pandapower;
        :attr:`engine` is the one chosen and :attr:`engine_fallback` says why pandapower was.

    * ``mode="linear"``: sensitivities of the signed active line/transformer currents and of bus voltages to each
      agent's (and each background element's) injection, computed once by central finite differences of AC power
      flows (with the engine above) around zero injection; a check is then one matrix-vector product. A branch
      current is ``√(I0² + (A0 + S p)²)`` (:meth:`_build_linear`, :attr:`sensitivities`): ``A0`` the signed active
      part at zero injection (the flows of the net's other elements), ``I0`` the reactive rest, ``S`` the slopes;
      line loading = current / limit. On ``mvlv``, whose zero-injection state carries large base flows, a day of
      real injections with background gives linear losses within 1.7 % of AC, line loadings within 1.1 points,
      transformer loadings within 1.6 (the HV/MV ones within 0.5) and voltages within 0.004 p.u.
      (tests/grid/test_linear_decomposition.py; the earlier ``√(I0² + (S p)²)`` put the HV/MV transformers at
      308 % instead of 36 % and the losses at 3,594 kW instead of 520 kW).

    Agents are the ``sgen`` elements of ``scenario.net`` named after the agent ids. **Background injections**
    (optional ``scenario.background_ids``, K more ``sgen`` names: the grid's loads and generators that are not
    agents) are set per check by ``background_kw`` (kW, positive = export; None = zero). All other elements of the
    net keep their values.

    **Losses and import.** ``losses_kw`` is the active loss of all lines and transformers and ``ext_grid_kw`` the
    active power drawn from the upstream grid at the slack (positive = import). AC: exact, from the power flow
    (``Σ res_line.pl_mw + Σ res_trafo.pl_mw`` and ``res_ext_grid.p_mw`` of pandapower). Linear: an approximation
    anchored at the AC flow at zero injection, ``L(p) = L_AC(0) + V(p) − V(0)`` with the load-dependent losses
    ``V = Σ_l 3 |I_l|² R_l`` over lines (``R_l = r_ohm_per_km · length_km / parallel``, ``|I_l|`` the linear
    model's current) plus transformer copper losses ``vkr_percent/100 · S_n · (loading/100)²`` (iron losses and
    the other no-load losses stay at their AC value); the import follows from the energy balance,
    ``P_ext(p) = P_ext,AC(0) − Σ p − Σ b + L(p) − L_AC(0)``. On ``default`` and ``flex`` the linear losses are
    within 1 % (0.02 kW) of the AC losses at real injections, midday peaks included (tests/grid/test_lightsim.py);
    on ``default_congested`` within 9 % (0.6 kW) at its midday peaks, where the voltages leave the band and the
    constant-voltage currents of the linear model are furthest off.

    Args:
        scenario: a :class:`~p2p_gym.scenarios.Scenario` (uses ``net``, ``agent_ids``, ``load_kw``, ``pv_kw``,
            and ``background_ids`` when present).
        mode: ``"ac"`` or ``"linear"``.
        engine: ``"auto"``, ``"lightsim2grid"`` or ``"pandapower"`` (see above; also builds the linear model).
        v_min_pu, v_max_pu: voltage band; buses outside it count as violations.
        loading_limit_pct: lines/transformers above this loading count as overloaded.
        delta_kw: finite-difference step for the linear model (default: 5 % of the largest agent's peak |net|
            power, at least 1 kW).

    Raises:
        GridError: a bad argument (named), or agents/background elements missing from the net.
        GridEngineError: ``engine="lightsim2grid"`` but lightsim2grid is missing or cannot model the net.
    """

    def __init__(
        self,
        scenario: Any,
        mode: str = "ac",
        *,
        engine: str = "auto",
        v_min_pu: float = 0.95,
        v_max_pu: float = 1.05,
        loading_limit_pct: float = 100.0,
        delta_kw: float | None = None,
    ) -> None:
        if mode not in GRID_MODES:
            raise GridError(f"mode: must be one of {GRID_MODES}, got {mode!r}")
        if engine not in GRID_ENGINES:
            raise GridError(f"engine: must be one of {GRID_ENGINES}, got {engine!r}")
        if not (np.isfinite(v_min_pu) and np.isfinite(v_max_pu) and 0 < v_min_pu < v_max_pu):
            raise GridError(f"v_min_pu, v_max_pu: need 0 < v_min_pu < v_max_pu, got {v_min_pu}, {v_max_pu}")
        if not (np.isfinite(loading_limit_pct) and loading_limit_pct > 0):
            raise GridError(f"loading_limit_pct: must be > 0, got {loading_limit_pct}")
        if scenario.net is None:
            raise GridError("scenario: has no pandapower network (scenario.net is None)")
        self.mode: str = mode
        self.v_min_pu = float(v_min_pu)
        self.v_max_pu = float(v_max_pu)
        self.loading_limit_pct = float(loading_limit_pct)
        self.n_agents = len(scenario.agent_ids)
        self.background_ids: tuple[str, ...] = tuple(getattr(scenario, "background_ids", ()) or ())
        """Names of the background ``sgen`` elements set by ``background_kw`` (K of them)."""
        self.n_background = len(self.background_ids)
        self._net = copy.deepcopy(scenario.net)
        names = list(self._net.sgen.name)
        missing = [a for a in scenario.agent_ids if a not in names]
        if missing:
            raise GridError(f"scenario.net: no sgen named after agents {missing[:5]}")
        missing = [a for a in self.background_ids if a not in names]
        if missing:
            raise GridError(f"scenario.background_ids: no sgen named {missing[:5]} in scenario.net")
        # Position of each agent's (background element's) sgen in the sgen table: one assignment sets them all.
        self._sgen_pos = np.array([names.index(a) for a in scenario.agent_ids], dtype=np.int64)
        self._bg_pos = np.array([names.index(a) for a in self.background_ids], dtype=np.int64)
        self._p_base = self._net.sgen.p_mw.to_numpy(dtype=float, copy=True)
        self._p_base[self._sgen_pos] = 0.0
        self._p_base[self._bg_pos] = 0.0
        line, trafo = self._net.line, self._net.trafo
        i_max = (line.max_i_ka * line.df * line.parallel).to_numpy(dtype=float)
        self.max_i_ka = i_max
        """float[L], kA: each line's thermal limit as pandapower's loading counts it, ``max_i_ka · df · parallel``
        of ``net.line`` (the current ``i_ka`` is that of all parallel systems; 0 = unrated). The linear model's
        loading and the consumers of its sensitivities (``max_i_ka`` arguments) use it too."""
        self.n_lines = len(line)
        self.n_trafos = len(trafo)
        self.n_buses = len(self._net.bus)
        self._line_pct_per_ka = np.full(self.n_lines, np.inf)  # pandapower: inf loading where the rating is 0
        np.divide(100.0, i_max, out=self._line_pct_per_ka, where=i_max != 0)
        self.last_injection_kw = np.zeros(self.n_agents)
        self._pending: np.ndarray | None = None
        self._res_stale = False

        # the reference point (agents and background at zero): warm start of lightsim2grid, base of the linear model
        self._pp = PandapowerEngine(self._net)
        self._pp.set_sgen_p(self._p_base)
        ref_error = self._pp.run_full()
        self._engine: Any
        self.engine: str
        """The engine in use: ``"lightsim2grid"`` or ``"pandapower"``."""
        self.engine_fallback: str | None
        """Why ``engine="auto"`` fell back to pandapower (None when it did not)."""
        self._engine, self.engine_fallback = self._make_engine(engine, ref_error)
        self.engine = self._engine.name
        if mode == "linear":
            if ref_error is not None:
                raise GridError("scenario.net: the AC power flow at zero injection does not converge")
            scale = np.abs(np.asarray(scenario.pv_kw) - np.asarray(scenario.load_kw)).max(initial=0.0)
            step = delta_kw if delta_kw is not None else max(1.0, 0.05 * float(scale))
            self._build_linear(float(step))

    def _make_engine(self, engine: str, ref_error: str | None) -> tuple[Any, str | None]:
        """The engine object and, for ``"auto"`` falling back to pandapower, the reason."""
        if engine == "pandapower":
            return self._pp, None
        from p2p_gym.grid.lightsim import LightsimEngine, lightsim_available

        if not lightsim_available():
            reason = "engine: lightsim2grid is not installed (pip install lightsim2grid)"
        elif ref_error is not None:
            reason = f"engine: pandapower does not solve the reference point for a warm start ({ref_error})"
        else:
            try:
                return LightsimEngine(self._net), None
            except GridEngineError as exc:
                reason = str(exc)
        if engine == "lightsim2grid":
            raise GridEngineError(reason)
        return self._pp, reason

    # ----------------------------------------------------------------------------------------- public
    @property
    def net(self) -> Any:
        """The pandapower net with the last checked injections applied (results of the last AC check in ``res_*``
        tables for ``mode="ac"``, filled by a pandapower run when read; for ``mode="linear"`` run
        ``pandapower.runpp`` yourself to get AC results)."""
        if self._pending is not None:
            self._pp.set_sgen_p(self._pending)
            self._pending = None
        if self.mode == "ac" and self._res_stale:
            self._res_stale = False
            self._pp.run_full()
        return self._net

    def check(self, injection_kw: Any, background_kw: Any = None) -> GridReport:
        """Check the agents' net injections ``injection_kw`` (float[N], kW, positive = export).

        Args:
            injection_kw: float[N], kW.
            background_kw: float[K], kW, injections of the background elements (None = zero).

        Raises:
            GridError: wrong shape or non-finite entries (named ``injection_kw`` or ``background_kw``).
        """
        inj = self._validate(injection_kw)[None, :]
        return self._check_rows(inj, self._validate_background(background_kw, None)).report(0)

    def check_batch(self, injection_kw: Any, background_kw: Any = None) -> GridBatch:
        """Check B injection vectors at once: ``injection_kw`` float[B, N] (kW, positive = export).

        The linear model is one matrix product for the whole batch; the AC model runs one power flow per row, each
        warm-started from the previous solution (with lightsim2grid all rows in one call into C++), so rows agree
        with separate checks to the power flow's tolerance.

        Args:
            injection_kw: float[B, N], kW.
            background_kw: float[B, K] or float[K] (the same for every row), kW (None = zero).

        Raises:
            GridError: wrong shape or non-finite entries (named ``injection_kw`` or ``background_kw``).
        """
        inj = self._validate(injection_kw, batched=True)
        return self._check_rows(inj, self._validate_background(background_kw, len(inj)))

    def _check_rows(self, inj: np.ndarray, bg: np.ndarray) -> GridBatch:
        self.last_injection_kw = inj[-1].copy()
        if self.mode == "linear":
            self._pending = self._sgen_rows(inj[-1:], bg[-1:])[0]
            return self._check_linear(inj, bg)
        p = self._sgen_rows(inj, bg)
        flows = self._engine.run(p)
        self._pending = p[-1]
        self._res_stale = bool(flows.converged[-1]) and not (self._engine is self._pp and self._pp.res_fresh)
        return GridBatch(
            flows.converged,
            flows.line_i_ka * self._line_pct_per_ka,
            flows.trafo_pct,
            flows.vm_pu,
            flows.errors,
            flows.losses_mw * 1000.0,
            flows.ext_grid_mw * 1000.0,
            self.loading_limit_pct,
            self.v_min_pu,
            self.v_max_pu,
        )

    def _check_linear(self, inj: np.ndarray, bg: np.ndarray) -> GridBatch:
        """The linear model for rows ``inj`` float[B, N] and ``bg`` float[B, K]: signed active currents (and
        transformer loadings) ``A0 + S p + S_bg b`` in quadrature with the reactive ``I0``, voltages
        ``v0 + S_v p + S_v,bg b``, losses anchored at the AC flow at zero injection (class docstring)."""
        flow = self._lin_ia0 + inj @ self._lin_si.T
        t_flow = self._lin_ta0 + inj @ self._lin_st.T
        vm = self._lin_v0 + inj @ self._lin_sv.T
        if self.n_background:
            flow += bg @ self._lin_si_bg.T
            t_flow += bg @ self._lin_st_bg.T
            vm += bg @ self._lin_sv_bg.T
        i_ka = np.sqrt(self._lin_i0 + flow**2)
        trafo = np.sqrt(self._lin_t0 + t_flow**2)
        losses = self._lin_loss0_kw + self._variable_losses_kw(i_ka, trafo) - self._lin_var0_kw
        ext = self._lin_ext0_kw - inj.sum(axis=1) - bg.sum(axis=1) + (losses - self._lin_loss0_kw)
        b = len(inj)
        line = i_ka * self._lin_pct_per_ka
        return GridBatch(
            np.ones(b, dtype=bool),
            line,
            trafo,
            vm,
            (None,) * b,
            losses,
            ext,
            self.loading_limit_pct,
            self.v_min_pu,
            self.v_max_pu,
        )

    # ----------------------------------------------------------------------------------------- internals
    def _validate(self, injection_kw: Any, batched: bool = False) -> np.ndarray:
        """float64[N] (float64[B, N] with ``batched``) of finite injections, or a GridError naming the field."""
        want = f"(B, {self.n_agents})" if batched else f"({self.n_agents},)"
        try:
            inj = np.asarray(injection_kw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise GridError(f"injection_kw: expected float{want}, got {injection_kw!r:.60}") from exc
        if inj.ndim != (2 if batched else 1) or inj.shape[-1] != self.n_agents:
            raise GridError(f"injection_kw: expected shape {want}, got {inj.shape}")
        if not np.all(np.isfinite(inj)):
            raise GridError("injection_kw: contains NaN or infinite values; all entries must be finite")
        return inj

    def _validate_background(self, background_kw: Any, rows: int | None) -> np.ndarray:
        """float64[B, K] of finite background injections (B = 1 for a single check), or a GridError."""
        k = self.n_background
        b = 1 if rows is None else rows
        if background_kw is None:
            return np.zeros((b, k))
        want = f"({k},)" if rows is None else f"({rows}, {k}) or ({k},)"
        try:
            bg = np.asarray(background_kw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise GridError(f"background_kw: expected float{want}, got {background_kw!r:.60}") from exc
        if bg.shape == (k,):
            bg = np.broadcast_to(bg, (b, k))
        elif rows is None or bg.shape != (rows, k):
            raise GridError(
                f"background_kw: expected shape {want} (K = len(scenario.background_ids)), got {bg.shape}"
            )
        if not np.all(np.isfinite(bg)):
            raise GridError("background_kw: contains NaN or infinite values; all entries must be finite")
        return bg

    def _sgen_rows(self, inj: np.ndarray, bg: np.ndarray) -> np.ndarray:
        """float[B, S], MW: the ``p_mw`` of every ``sgen`` for each row (agents and background set, others fixed)."""
        p = np.repeat(self._p_base[None, :], len(inj), axis=0)
        p[:, self._sgen_pos] = inj / 1000.0
        p[:, self._bg_pos] = bg / 1000.0
        return p

    # ----------------------------------------------------------------------------------------- linear
    def _build_linear(self, delta_kw: float) -> None:
        """Finite differences of AC flows around zero injection, one ± pair per distinct agent/background bus.

        A branch current is modelled as ``|I| = sqrt(I0² + (A0 + s · p)²)``: ``A0 + s · p`` is its active part,
        ``P / (√3 · V)`` of the active flow ``P`` at the from bus (transformers: at the HV side, as a loading in %),
        linear in the injections, with ``A0`` its value at zero injection (the flows of the non-agent elements the
        net keeps) and ``s`` central differences of ``P``; ``I0`` is the rest of the current at zero injection,
        in quadrature (reactive: cable charging, transformer magnetising, reactive loads). An earlier form,
        ``sqrt(I0² + (s · p)²)`` with ``s`` from the current magnitudes, overstated the slope wherever the base
        flow is active: 8× on the loading of the HV/MV transformers of ``mvlv``. Bus voltages are linear:
        ``v = v0 + S_v p`` (central differences). All ``1 + 2·(number of buses)`` flows go to the engine at once
        (one call into C++ with lightsim2grid).
        """
        pos = np.concatenate([self._sgen_pos, self._bg_pos])
        bus = self._net.sgen.bus.to_numpy()[pos]
        uniq = np.unique(bus)
        p = np.repeat(self._p_base[None, :], 1 + 2 * len(uniq), axis=0)
        for j, b in enumerate(uniq):
            col = pos[int(np.flatnonzero(bus == b)[0])]
            p[1 + 2 * j, col] = delta_kw / 1000.0
            p[2 + 2 * j, col] = -delta_kw / 1000.0
        flows = self._engine.run(p)
        if not flows.converged[0]:
            raise GridError("scenario.net: the AC power flow at zero injection does not converge")
        bad = np.flatnonzero(~flows.converged)
        if len(bad):
            b = uniq[(int(bad[0]) - 1) // 2]
            raise GridError(f"delta_kw: AC flow with ±{delta_kw} kW at bus {b} does not converge")
        line, trafo = self._net.line, self._net.trafo
        bus_at = pd.Index(self._net.bus.index)
        v0 = flows.vm_pu[0]
        vn = self._net.bus.vn_kv.to_numpy(dtype=float)
        # kA of current per MW of active flow at the line's from bus (I = P / (√3 · V)), and % of transformer
        # loading per MW at its HV side (pandapower: I_hv · vn_hv · √3 / (sn · parallel · df) · 100)
        fb = bus_at.get_indexer(line.from_bus)
        ka_per_mw = 1.0 / (np.sqrt(3.0) * vn[fb] * v0[fb])
        hb = bus_at.get_indexer(trafo.hv_bus)
        pct_per_mw = (
            100.0 * trafo.vn_hv_kv.to_numpy(float)
            / (vn[hb] * v0[hb] * (trafo.sn_mva * trafo.parallel * trafo.df).to_numpy(float))
        )  # fmt: skip
        plus, minus = slice(1, None, 2), slice(2, None, 2)
        # the active parts at zero injection (signed) and their slopes; the rest of the base current is reactive
        ia0 = flows.line_p_from_mw[0] * ka_per_mw
        ta0 = flows.trafo_p_hv_mw[0] * pct_per_mw
        i0 = np.sqrt(np.clip(flows.line_i_ka[0] ** 2 - ia0**2, 0.0, None))
        t0 = np.sqrt(np.clip(flows.trafo_pct[0] ** 2 - ta0**2, 0.0, None))
        di = 0.5 * (flows.line_p_from_mw[plus] - flows.line_p_from_mw[minus]) * ka_per_mw
        dt = 0.5 * (flows.trafo_p_hv_mw[plus] - flows.trafo_p_hv_mw[minus]) * pct_per_mw
        dv = 0.5 * (flows.vm_pu[plus] - flows.vm_pu[minus])
        i0 = np.where(line.in_service.to_numpy(dtype=bool), i0, 0.0)
        col = np.searchsorted(uniq, bus)  # column of each agent/background element: its bus's ± pair
        s_i, s_t, s_v = (di[col] / delta_kw).T, (dt[col] / delta_kw).T, (dv[col] / delta_kw).T
        n = self.n_agents
        self._lin_i0, self._lin_t0, self._lin_v0 = i0**2, t0**2, v0
        self._lin_ia0, self._lin_ta0 = ia0, ta0
        self._lin_si, self._lin_st, self._lin_sv = s_i[:, :n], s_t[:, :n], s_v[:, :n]
        self._lin_si_bg, self._lin_st_bg, self._lin_sv_bg = s_i[:, n:], s_t[:, n:], s_v[:, n:]
        with np.errstate(divide="ignore"):
            self._lin_pct_per_ka = np.where(self.max_i_ka > 0, 100.0 / self.max_i_ka, 0.0)
        self._lin_r_ohm = (line.r_ohm_per_km * line.length_km / line.parallel).to_numpy(dtype=float)
        self._lin_r_ohm[~line.in_service.to_numpy(dtype=bool)] = 0.0
        on = trafo.in_service.to_numpy(dtype=bool)
        self._lin_cu_kw = np.where(
            on, (trafo.vkr_percent * trafo.sn_mva * trafo.parallel).to_numpy(float) * 10.0, 0
        )
        self._lin_df = trafo.df.to_numpy(dtype=float)
        self._lin_var0_kw = float(
            self._variable_losses_kw(np.hypot(i0, ia0)[None], np.hypot(t0, ta0)[None])[0]
        )
        self._lin_loss0_kw = float(flows.losses_mw[0] * 1000.0)
        self._lin_ext0_kw = float(flows.ext_grid_mw[0] * 1000.0)
        if self._engine is self._pp:  # leave the net at zero injection with its AC results, as documented
            self._pp.set_sgen_p(self._p_base)
            self._pp.run_full()

    def _variable_losses_kw(self, i_ka: np.ndarray, trafo_pct: np.ndarray) -> np.ndarray:
        """float[B], kW: ``Σ 3 I² R`` over lines + transformer copper losses from the loading."""
        line = 3.0 * (i_ka**2) @ self._lin_r_ohm * 1000.0  # kA² · Ω = MW
        copper = ((trafo_pct * self._lin_df / 100.0) ** 2) @ self._lin_cu_kw
        return line + copper

    def active_base_ka(self, background_kw: Any = None) -> np.ndarray:
        """float[B, L] (float[L] for one background vector or None), kA: the linear model's signed active line
        currents at zero agent injection, ``A0 + S_bg · b`` — the ``a0_ka`` the DSO's rules take
        (``mode="linear"`` only)."""
        if self.mode != "linear":
            raise GridError("active_base_ka: only available with mode='linear'")
        if background_kw is None or np.ndim(background_kw) == 1:
            bg = self._validate_background(background_kw, None)[0]
            return self._lin_ia0 + (bg @ self._lin_si_bg.T if self.n_background else 0.0)
        bg = self._validate_background(background_kw, len(background_kw))
        out = np.broadcast_to(self._lin_ia0, (len(bg), self.n_lines))
        return out + bg @ self._lin_si_bg.T if self.n_background else out.copy()

    def marginal_losses(self, injection_kw: Any, directions: Any, background_kw: Any = None) -> np.ndarray:
        """float[B, D]: the derivative of the linear model's losses (kW per kW) at B injections along D directions.

        ``∂L/∂d = Σ_l 6000 R_l F_l (S d)_l + Σ_r 2 (df_r/100)² c_r G_r (S_T d)_r`` with ``F = A0 + S p`` the
        lines' active currents (kA) and ``G`` the transformers' active loadings (%), ``c`` their copper losses at
        full load (kW): the exact gradient of :meth:`check_batch`'s ``losses_kw`` (``mode="linear"`` only).

        Args:
            injection_kw: float[B, N], kW.
            directions: float[N, D], kW of each agent per kW of each direction (e.g. a platform's members 1/n).
            background_kw: float[B, K] or float[K] (None = zero).
        """
        if self.mode != "linear":
            raise GridError("marginal_losses: only available with mode='linear'")
        inj = self._validate(injection_kw, batched=True)
        bg = self._validate_background(background_kw, len(inj))
        d = np.asarray(directions, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] != self.n_agents or not np.all(np.isfinite(d)):
            raise GridError(f"directions: expected finite float[{self.n_agents}, D], got shape {d.shape}")
        flow = self._lin_ia0 + inj @ self._lin_si.T
        t_flow = self._lin_ta0 + inj @ self._lin_st.T
        if self.n_background:
            flow += bg @ self._lin_si_bg.T
            t_flow += bg @ self._lin_st_bg.T
        line = (6000.0 * self._lin_r_ohm * flow) @ (self._lin_si @ d)
        copper = (2.0 * (self._lin_df / 100.0) ** 2 * self._lin_cu_kw * t_flow) @ (self._lin_st @ d)
        return np.asarray(line + copper)

    @property
    def sensitivities(self) -> dict[str, np.ndarray]:
        """The linear model (``mode="linear"`` only): base values and sensitivity matrices per kW.

        With ``p`` the agents' and ``b`` the background elements' injections (kW), the linear check computes

        * line current (kA): ``√(line_current_ka² + (line_active_current_ka + line_current_ka_per_kw @ p +
          line_current_ka_per_kw_background @ b)²)``, the loading in % of ``max_i_ka``;
        * transformer loading (%): the same with ``trafo_loading_pct``, ``trafo_active_loading_pct``,
          ``trafo_loading_pct_per_kw`` and ``trafo_loading_pct_per_kw_background``;
        * bus voltages (p.u.): ``vm_pu + vm_pu_per_kw @ p + vm_pu_per_kw_background @ b``.

        Keys: ``line_current_ka`` float[L] ≥ 0, the reactive part of the current at zero injection (in
        quadrature: cable charging, reactive loads); ``line_active_current_ka`` float[L], signed, its active part
        ``P / (√3 V)`` at the from bus (the flows of the net's non-agent elements; positive = from → to);
        ``trafo_loading_pct`` float[R] ≥ 0 and ``trafo_active_loading_pct`` float[R], signed, the same split of the
        transformer loading at zero injection (active part from ``P`` at the HV side); ``*_per_kw`` float[·, N]
        for the agents and ``*_per_kw_background`` float[·, K] for the background elements, the slopes of the
        signed active parts (and of the voltages); ``vm_pu`` float[V]. Consumers of the line limits
        (:func:`~p2p_gym.grid.clear_flex_market`, :func:`~p2p_gym.grid.at_risk_lines`,
        :class:`~p2p_gym.grid.FlowAttribution`, :func:`~p2p_gym.grid.allocate_penalty`) take
        ``line_active_current_ka`` (plus the background's ``@ b``) as their ``a0_ka`` keyword.
        """
        if self.mode != "linear":
            raise GridError("sensitivities: only available with mode='linear'")
        return {
            "line_current_ka": np.sqrt(self._lin_i0),
            "line_active_current_ka": self._lin_ia0,
            "line_current_ka_per_kw": self._lin_si,
            "trafo_loading_pct": np.sqrt(self._lin_t0),
            "trafo_active_loading_pct": self._lin_ta0,
            "trafo_loading_pct_per_kw": self._lin_st,
            "vm_pu": self._lin_v0,
            "vm_pu_per_kw": self._lin_sv,
            "line_current_ka_per_kw_background": self._lin_si_bg,
            "trafo_loading_pct_per_kw_background": self._lin_st_bg,
            "vm_pu_per_kw_background": self._lin_sv_bg,
        }
