"""Grid check of agents' net injections on a pandapower network: exact AC power flow or a linear model."""

from __future__ import annotations

import copy
import functools
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from p2p_gym.errors import GridError

GridMode = Literal["ac", "linear"]
_RECYCLE = {"bus_pq": True, "gen": False, "trafo": False}
_VM = 7  # column of the voltage magnitude in pandapower's (pypower's) bus matrix
GRID_MODES: tuple[str, ...] = ("ac", "linear")


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
        )


def line_headroom_ka(max_i_ka: np.ndarray, i0_ka: np.ndarray, loading_pct: float = 100.0) -> np.ndarray:
    """float[L], kA: the bound ``H_l`` on the active-power-driven current ``|s_l·p|`` that keeps line l at or below
    ``loading_pct`` in the linear model (whose current is ``√(I0² + (s·p)²)``): ``√((loading_pct/100 · I^max_l)² −
    I0_l²)``; NaN where ``I0`` alone exceeds it. Used by every linear line limit (the flexibility market, the
    episode optimum)."""
    limit = np.asarray(max_i_ka, dtype=float) * loading_pct / 100.0
    head = limit**2 - np.asarray(i0_ka, dtype=float) ** 2
    return np.where(head >= 0, np.sqrt(np.clip(head, 0.0, None)), np.nan)


class GridModel:
    """Checks agents' net injections (kW, positive = export) on the scenario's pandapower network.

    * ``mode="ac"``: a full AC Newton-Raphson power flow (``pandapower.runpp``) on one working copy of the net,
      reusing its internal structures and last solution between calls (pandapower's ``recycle`` with
      ``init="results"``), so results equal a plain ``pandapower.runpp`` of :attr:`net` at a fraction of the cost.
    * ``mode="linear"``: sensitivities of signed line/transformer currents and bus voltages to each agent's
      injection, computed once by central finite differences of AC power flows around zero injection; a check is
      then one matrix-vector product (line loading = |signed current| / limit).

    Agents are the ``sgen`` elements of ``scenario.net`` named after the agent ids; all other elements of the net
    keep their values.

    Args:
        scenario: a :class:`~p2p_gym.scenarios.Scenario` (uses ``net``, ``agent_ids``, ``load_kw``, ``pv_kw``).
        mode: ``"ac"`` or ``"linear"``.
        v_min_pu, v_max_pu: voltage band; buses outside it count as violations.
        loading_limit_pct: lines/transformers above this loading count as overloaded.
        delta_kw: finite-difference step for the linear model (default: 5 % of the largest agent's peak |net|
            power, at least 1 kW).
    """

    def __init__(
        self,
        scenario: Any,
        mode: str = "ac",
        *,
        v_min_pu: float = 0.95,
        v_max_pu: float = 1.05,
        loading_limit_pct: float = 100.0,
        delta_kw: float | None = None,
    ) -> None:
        if mode not in GRID_MODES:
            raise GridError(f"mode: must be one of {GRID_MODES}, got {mode!r}")
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
        self._net = copy.deepcopy(scenario.net)
        names = list(self._net.sgen.name)
        missing = [a for a in scenario.agent_ids if a not in names]
        if missing:
            raise GridError(f"scenario.net: no sgen named after agents {missing[:5]}")
        # Position of each agent's sgen in the sgen table, so one column assignment applies all injections.
        self._sgen_pos = np.array([names.index(a) for a in scenario.agent_ids])
        self._p_mw = self._net.sgen.p_mw.to_numpy(dtype=float, copy=True).copy()
        self._pending: np.ndarray | None = None
        self._has_solution = False
        self._synced = True
        self._fast = False
        self.max_i_ka = self._net.line.max_i_ka.to_numpy(dtype=float, copy=True)
        self.n_lines = len(self._net.line)
        self.n_trafos = len(self._net.trafo)
        self.n_buses = len(self._net.bus)
        self.last_injection_kw = np.zeros(self.n_agents)
        if mode == "linear":
            scale = np.abs(np.asarray(scenario.pv_kw) - np.asarray(scenario.load_kw)).max(initial=0.0)
            step = delta_kw if delta_kw is not None else max(1.0, 0.05 * float(scale))
            self._build_linear(float(step))

    # ----------------------------------------------------------------------------------------- public
    @property
    def net(self) -> Any:
        """The pandapower net with the last checked injections applied (results of the last AC run in ``res_*``
        tables for ``mode="ac"``; for ``mode="linear"`` run ``pandapower.runpp`` yourself to get AC results)."""
        self._apply_pending()
        if self.mode == "ac" and not self._synced and self._has_solution:
            self._run_ac()
        return self._net

    def check(self, injection_kw: Any) -> GridReport:
        """Check the agents' net injections ``injection_kw`` (float[N], kW, positive = export).

        Raises:
            GridError: wrong shape or non-finite entries (named ``injection_kw``).
        """
        return self._check_rows(self._validate(injection_kw)[None, :]).report(0)

    def check_batch(self, injection_kw: Any) -> GridBatch:
        """Check B injection vectors at once: ``injection_kw`` float[B, N] (kW, positive = export).

        The linear model is one matrix product for the whole batch; the AC model runs one power flow per row
        (each warm-started from the previous solution, so rows agree with separate checks to the power flow's
        tolerance).

        Raises:
            GridError: wrong shape or non-finite entries (named ``injection_kw``).
        """
        inj = self._validate(injection_kw, batched=True)
        return self._check_rows(inj)

    def _check_rows(self, inj: np.ndarray) -> GridBatch:
        self.last_injection_kw = inj[-1].copy()
        if self.mode == "linear":
            self._pending = inj[-1].copy()
            flow = inj @ self._lin_si.T
            line = np.sqrt(self._lin_i0 + flow**2) * self._lin_pct_per_ka
            trafo = np.sqrt(self._lin_t0 + (inj @ self._lin_st.T) ** 2)
            vm = self._lin_v0 + inj @ self._lin_sv.T
            return self._batch(np.ones(len(inj), dtype=bool), line, trafo, vm, (None,) * len(inj))
        b = len(inj)
        line = np.full((b, self.n_lines), np.nan)
        trafo = np.full((b, self.n_trafos), np.nan)
        vm = np.full((b, self.n_buses), np.nan)
        errors: list[str | None] = [None] * b
        for i, row in enumerate(inj):
            res = self._check_ac(row)
            if isinstance(res, str):
                errors[i] = res
            else:
                line[i], trafo[i], vm[i] = res
        ok = np.array([e is None for e in errors], dtype=bool)
        return self._batch(ok, line, trafo, vm, tuple(errors))

    def _batch(
        self, ok: np.ndarray, line: np.ndarray, trafo: np.ndarray, vm: np.ndarray, errors: tuple
    ) -> GridBatch:
        return GridBatch(ok, line, trafo, vm, errors, self.loading_limit_pct, self.v_min_pu, self.v_max_pu)

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

    def _apply_pending(self) -> None:
        if self._pending is not None:
            self._set_injection(self._pending)
            self._pending = None

    def _set_injection(self, inj: np.ndarray) -> None:
        self._p_mw[self._sgen_pos] = inj / 1000.0
        self._net.sgen["p_mw"] = self._p_mw

    def _run_ac(self) -> str | None:
        """Run a full AC power flow on the working net (results into ``res_*``); return an error or None."""
        import pandapower as pp

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self._has_solution:
                    pp.runpp(self._net, recycle=_RECYCLE, init="results")
                else:
                    pp.runpp(self._net, init="auto")
        except Exception as exc:  # pandapower raises LoadflowNotConverged and assorted numerical errors
            self._has_solution = False
            return f"{type(exc).__name__}: {exc}"
        if not bool(self._net.converged):
            self._has_solution = False
            return "power flow did not converge"
        self._has_solution = True
        self._synced = True
        return None

    def _run_ac_fast(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
        """Newton-Raphson on pandapower's recycled internal case, without writing the ``res_*`` tables.

        This is pandapower's own recycled power flow (``runpp(recycle=..., init="results")``) minus its result
        extraction into pandas tables, which costs more than the power flow itself on small feeders. Line and
        transformer loadings are computed with pandapower's formulas from the same branch flows; the ``res_*``
        tables are filled on demand when :attr:`net` is read. Returns (line %, trafo %, vm p.u.) or an error.
        """
        from pandapower.pd2ppc import _calc_pq_elements_and_add_on_ppc, _ppc2ppci
        from pandapower.pf.run_newton_raphson_pf import _run_newton_raphson_pf
        from pandapower.results import _copy_results_ppci_to_ppc
        from pandapower.results_branch import _get_branch_flows

        net = self._net
        options = net["_options"]
        options["recycle"] = _RECYCLE
        options["init_vm_pu"] = "results"
        options["init_va_degree"] = "results"
        ppc = net["_ppc"]
        internal = ppc["internal"]
        ppci = {
            "bus": internal["bus"],
            "gen": internal["gen"],
            "branch": internal["branch"],
            "baseMVA": internal["baseMVA"],
            "internal": internal,
        }
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
        lf, lt = self._line_range
        line = np.max(i_ft[lf:lt], axis=1) / self._line_i_max * 100.0
        tf, tt = self._trafo_range
        trafo = np.max(i_ft[tf:tt] * self._trafo_vn, axis=1) * self._trafo_scale
        vm = ppc["bus"][self._bus_ppc, _VM].real.copy()
        self._synced = False
        return line, trafo, vm

    def _prepare_fast(self) -> None:
        """Index maps from pandapower's internal case to lines, transformers and buses (after a full run)."""
        net = self._net
        branch = net._pd2ppc_lookups["branch"]
        self._line_range = branch.get("line", (0, 0))
        self._trafo_range = branch.get("trafo", (0, 0))
        line = net.line
        self._line_i_max = (line.max_i_ka * line.df * line.parallel).to_numpy(dtype=float, copy=True)
        trafo = net.trafo
        self._trafo_vn = np.stack([trafo.vn_hv_kv.to_numpy(float), trafo.vn_lv_kv.to_numpy(float)], axis=1)
        self._trafo_scale = (
            np.sqrt(3) * 100.0 / (trafo.sn_mva * trafo.parallel * trafo.df).to_numpy(dtype=float, copy=True)
        )
        self._bus_ppc = net._pd2ppc_lookups["bus"][net.bus.index.to_numpy()]
        self._fast = net["_options"].get("trafo_loading", "current") == "current" and not net.trafo3w.shape[0]

    def _check_ac(self, inj: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
        """One AC power flow: (line %, trafo %, vm p.u.) or the reason it failed."""
        self._pending = None
        self._set_injection(inj)
        if self._has_solution and self._fast:
            out = self._run_ac_fast()
            if isinstance(out, str):
                return out
            line, trafo, vm = out
        else:
            error = self._run_ac()
            if error is not None:
                return error
            self._prepare_fast()
            line = self._net.res_line.loading_percent.to_numpy(dtype=float, copy=True)
            trafo = self._net.res_trafo.loading_percent.to_numpy(dtype=float, copy=True)
            vm = self._net.res_bus.vm_pu.to_numpy(dtype=float, copy=True)
        if not (np.all(np.isfinite(line)) and np.all(np.isfinite(vm))):
            self._has_solution = False
            return "power flow returned NaN results"
        return line, trafo, vm

    # ----------------------------------------------------------------------------------------- linear
    def _ac_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Line current (kA) and active-flow sign, transformer loading (%) and sign, bus voltage, last AC run."""
        rl, rt = self._net.res_line, self._net.res_trafo
        return (
            rl.i_ka.to_numpy(dtype=float, copy=True),
            np.sign(rl.p_from_mw.to_numpy(dtype=float, copy=True)),
            rt.loading_percent.to_numpy(dtype=float, copy=True),
            np.sign(rt.p_hv_mw.to_numpy(dtype=float, copy=True)),
            self._net.res_bus.vm_pu.to_numpy(dtype=float, copy=True),
        )

    def _build_linear(self, delta_kw: float) -> None:
        """Finite differences of AC flows around zero injection, one ± pair per distinct agent bus.

        A branch current is modelled as ``|I| = sqrt(I0² + (s · p)²)``: ``I0`` is the (reactive) no-load current
        (cable charging, transformer magnetising) at zero injection and ``s · p`` the active-power-driven part,
        linear in the injections. ``s`` is recovered from ``sqrt(|I(±δ)|² − I0²) / δ`` signed by the direction
        of the active flow. Bus voltages are linear: ``v = v0 + S_v p`` (central differences).
        """
        n = self.n_agents
        self._set_injection(np.zeros(n))
        if self._run_ac() is not None:
            raise GridError("scenario.net: the AC power flow at zero injection does not converge")
        i0, _, t0, _, v0 = self._ac_state()
        s_i = np.zeros((self.n_lines, n))
        s_t = np.zeros((self.n_trafos, n))
        s_v = np.zeros((self.n_buses, n))
        bus = np.asarray(self._net.sgen.bus.to_numpy()[self._sgen_pos])
        for b in np.unique(bus):
            agent = int(np.flatnonzero(bus == b)[0])
            states = []
            for sign in (1.0, -1.0):
                inj = np.zeros(n)
                inj[agent] = sign * delta_kw
                self._set_injection(inj)
                if self._run_ac() is not None:
                    raise GridError(f"delta_kw: AC flow with ±{delta_kw} kW at bus {b} does not converge")
                states.append(self._ac_state())
            (ip, sip, tp, stp, vp), (im, sim, tm, stm, vm) = states
            same = bus == b
            di = 0.5 * (
                sip * np.sqrt(np.clip(ip**2 - i0**2, 0, None))
                - sim * np.sqrt(np.clip(im**2 - i0**2, 0, None))
            )
            dt = 0.5 * (
                stp * np.sqrt(np.clip(tp**2 - t0**2, 0, None))
                - stm * np.sqrt(np.clip(tm**2 - t0**2, 0, None))
            )
            s_i[:, same] = (di / delta_kw)[:, None]
            s_t[:, same] = (dt / delta_kw)[:, None]
            s_v[:, same] = ((vp - vm) / (2 * delta_kw))[:, None]
        self._lin_i0, self._lin_t0, self._lin_v0 = i0**2, t0**2, v0
        self._lin_si, self._lin_st, self._lin_sv = s_i, s_t, s_v
        with np.errstate(divide="ignore"):
            self._lin_pct_per_ka = np.where(self.max_i_ka > 0, 100.0 / self.max_i_ka, 0.0)
        self._set_injection(np.zeros(n))
        self._run_ac()

    @property
    def sensitivities(self) -> dict[str, np.ndarray]:
        """The linear model (``mode="linear"`` only): base values and sensitivity matrices per kW."""
        if self.mode != "linear":
            raise GridError("sensitivities: only available with mode='linear'")
        return {
            "line_current_ka": np.sqrt(self._lin_i0),
            "line_current_ka_per_kw": self._lin_si,
            "trafo_loading_pct": np.sqrt(self._lin_t0),
            "trafo_loading_pct_per_kw": self._lin_st,
            "vm_pu": self._lin_v0,
            "vm_pu_per_kw": self._lin_sv,
        }
