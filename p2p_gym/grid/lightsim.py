"""The lightsim2grid engine of :class:`~p2p_gym.grid.GridModel`: the same AC power flow as pandapower, in C++.

lightsim2grid (Donnot, B. (2020) "Lightsim2grid: a C++ backend for Grid2Op", GitHub, RTE France) solves the
Newton–Raphson power flow of a network converted from pandapower (Thurner et al. (2018) "pandapower — an
open-source Python tool for convenient modeling, analysis, and optimization of electric power systems", IEEE
Trans. Power Syst. 33(6)) with KLU sparse factorisations and no pandas on the way: a check of the shipped feeders
costs 0.2–0.4 ms (1.2 ms on the 1,258-bus ``mvlv``) instead of 45–55 ms for a plain ``pandapower.runpp``
(``benchmarks/grid_check.py``). Its converter reads the element tables but not everything pandapower models, so
the net is first brought into a form where both compute the same equations (:func:`prepare_net`):

* **Switches** (the converter ignores them), handled as pandapower's ``pd2ppc`` does: buses joined by a closed
  bus–bus switch are fused into one; a line or transformer end behind an open line/transformer switch is moved
  to a new auxiliary bus of its own (the branch stays energised from its other end, so a cable's charging current
  still flows); a branch open at both ends is out of service.
* **Transformer taps**: pandapower 3 applies ``tap_pos`` only to tap changers of a declared type; with
  ``tap_changer_type`` None (SimBench nets as loaded) the tap is ignored. The converter applies ``tap_pos``
  whatever the type and assumes ``tap_neutral = 0``, so taps of type ``"Ratio"`` are shifted to a zero neutral
  and untyped taps are set to their neutral position.
* **Parallel branches** (``parallel`` > 1, refused by the converter) become one equivalent branch: a line's
  impedances divided and its admittances multiplied by ``parallel``; a transformer's rating and iron losses
  multiplied (its per-unit data stay the same).
* **Scaling** of loads, static generators and generators, and the step of shunts, are multiplied in (the
  converter's runtime setters ignore ``scaling``: the engine multiplies each static generator's setpoint by its
  scaling itself).

Anything else the converter would silently get wrong (three-winding transformers, wards, impedances, storage, DC
lines, voltage-dependent loads, several slacks, phase-shifting or table-based taps, impedance switches, isolated
buses) raises :class:`~p2p_gym.errors.GridEngineError`, and ``GridModel(engine="auto")`` then falls back to
pandapower. As a last guard the engine solves the reference point once and compares every bus voltage, line
current and transformer loading with pandapower's result of the same point before it is used.

**Warm start.** A flat start (all voltages 1∠0) converges to a wrong solution through the 150° phase shift of
the Dyn5 MV/LV transformers, so the first flow starts from pandapower's solution of the reference point and each
flow from the last converged one; after a failed flow the next one starts from the reference solution again.
A failed flow is a value (``converged`` False and the reason), never an exception.

**Transformer model.** lightsim2grid converts a pandapower transformer either with the formulas of pandapower 2
(``pp_orig_file="pandapower_v2"``) or with those it attributes to pandapower 3. With pandapower 3.5 the first
reproduce ``pandapower.runpp`` to machine precision on every shipped scenario, the second differ by ~1e-6 p.u. on
transformers with iron losses, so the engine uses the first (and the reference check above would catch a change).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2p_gym.errors import GridEngineError
from p2p_gym.grid.model import AcFlows

#: Element tables the converter cannot model (or would model differently from pandapower) when not empty.
_UNSUPPORTED_TABLES = (
    "trafo3w",
    "ward",
    "xward",
    "impedance",
    "dcline",
    "motor",
    "asymmetric_load",
    "asymmetric_sgen",
    "storage",
    "svc",
    "tcsc",
    "ssc",
    "vsc",
    "line_dc",
    "bus_dc",
)
#: Columns of loads that make them voltage dependent (pandapower 3 names, then pandapower 2 names).
_VOLTAGE_DEPENDENT = (
    "const_z_p_percent",
    "const_i_p_percent",
    "const_z_q_percent",
    "const_i_q_percent",
    "const_z_percent",
    "const_i_percent",
)
#: Elements attached to one bus whose ``bus`` column is remapped when buses are fused.
_BUS_ELEMENTS = ("load", "sgen", "gen", "ext_grid", "shunt")
#: Agreement required between the engine and pandapower at the reference point.
_REF_TOL_VM_PU = 1e-6
_REF_TOL_I_KA = 1e-6
_REF_TOL_PCT = 1e-4
#: setpoint changes below this go through an intermediate value (see ``LightsimEngine._set_sgens``)
_SMALL_CHANGE_MW = 1e-6


def lightsim_available() -> bool:
    """True when lightsim2grid can be imported."""
    try:
        import lightsim2grid  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class PreparedNet:
    """A copy of a pandapower net that lightsim2grid's converter models like pandapower (:func:`prepare_net`)."""

    net: Any
    """The prepared pandapower net: buses numbered 0..n−1, no switches, taps, parallels and scalings folded in."""
    bus_of_row: np.ndarray
    """int[V]: the prepared bus of each row of the original ``net.bus`` (fused buses share one)."""
    warm_bus: np.ndarray
    """int[n]: for each prepared bus, the original bus row whose voltage starts it (aux buses: the switch's bus)."""
    line_in_service: np.ndarray
    """bool[L]: lines energised after the switches (pandapower reports 0 current for the others)."""
    trafo_in_service: np.ndarray
    """bool[R]: transformers energised after the switches."""


def prepare_net(net: Any) -> PreparedNet:
    """Copy ``net`` into a form lightsim2grid's pandapower converter models exactly like ``pandapower.runpp``.

    See the module docstring for what is transformed. Raises :class:`~p2p_gym.errors.GridEngineError` naming the
    first feature that cannot be represented.
    """
    import pandas as pd

    for table in _UNSUPPORTED_TABLES:
        if table in net and isinstance(net[table], pd.DataFrame) and len(net[table]):
            raise GridEngineError(
                f"engine: lightsim2grid cannot model net.{table} ({len(net[table])} elements)"
            )
    if not bool(net.bus.in_service.all()):
        raise GridEngineError("engine: lightsim2grid engine needs every bus in service (net.bus.in_service)")
    ext = net.ext_grid[net.ext_grid.in_service.astype(bool)]
    if len(ext) != 1:
        raise GridEngineError(
            f"engine: lightsim2grid engine needs exactly one ext_grid in service, got {len(ext)}"
        )
    gen = net.gen[net.gen.in_service.astype(bool)]
    slack_gen = gen.slack.fillna(False).astype(bool).any() if "slack" in gen else False
    if len(gen) and (slack_gen or gen.bus.isin(ext.bus).any()):
        raise GridEngineError("engine: lightsim2grid engine does not model slack generators (net.gen)")
    for col in _VOLTAGE_DEPENDENT:
        if col in net.load and np.nan_to_num(net.load[col].to_numpy(dtype=float)).any():
            raise GridEngineError(
                f"engine: lightsim2grid does not model voltage-dependent loads (net.load.{col})"
            )

    prep = copy.deepcopy(net)
    for key in [k for k in prep if isinstance(k, str) and k.startswith("res_")]:
        prep[key] = prep[key].iloc[0:0]
    if "_options" in prep:
        prep["_options"] = {}

    # buses numbered 0..n-1 in row order
    n_bus0 = len(net.bus)
    row_of = {int(b): i for i, b in enumerate(net.bus.index)}

    def rows(values: Any) -> np.ndarray:
        return np.array([row_of[int(b)] for b in np.asarray(values)], dtype=np.int64)

    # closed bus-bus switches: fuse (union-find, keeping the slack or a generator's bus as representative)
    sw = net.switch
    closed = sw.closed.astype(bool).to_numpy() if len(sw) else np.zeros(0, dtype=bool)
    et = sw.et.to_numpy() if len(sw) else np.zeros(0, dtype=object)
    bb = closed & (et == "b")
    if len(sw) and np.nan_to_num(sw.z_ohm.to_numpy(dtype=float)[bb]).max(initial=0.0) > 0:
        raise GridEngineError(
            "engine: lightsim2grid engine does not model closed bus-bus switches with z_ohm > 0"
        )
    if np.any(et == "t3"):
        raise GridEngineError("engine: lightsim2grid cannot model three-winding transformer switches")
    parent = np.arange(n_bus0)
    keep = np.zeros(n_bus0, dtype=bool)
    keep[rows(ext.bus)] = True
    keep[rows(gen.bus)] = True

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for a, b in zip(rows(sw.bus.to_numpy()[bb]), rows(sw.element.to_numpy()[bb])):
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            if keep[rb] and not keep[ra]:
                ra, rb = rb, ra
            parent[rb] = ra
            keep[ra] |= keep[rb]
    rep = np.array([find(i) for i in range(n_bus0)], dtype=np.int64)

    # open line/trafo switches: which branch ends are cut off
    line_from, line_to = rows(net.line.from_bus), rows(net.line.to_bus)
    trafo_hv, trafo_lv = rows(net.trafo.hv_bus), rows(net.trafo.lv_bus)
    open_ends: dict[tuple[str, int], set[int]] = {}
    for s_bus, s_el, s_et in zip(sw.bus.to_numpy()[~closed], sw.element.to_numpy()[~closed], et[~closed]):
        if s_et in ("l", "t"):
            open_ends.setdefault((str(s_et), int(s_el)), set()).add(row_of[int(s_bus)])

    # new bus numbering: representatives keep their row number, fused-away buses go out of service
    vn = net.bus.vn_kv.to_numpy(dtype=float)
    warm = list(range(n_bus0))
    line_on = net.line.in_service.astype(bool).to_numpy().copy()
    trafo_on = net.trafo.in_service.astype(bool).to_numpy().copy()
    new_from, new_to = rep[line_from].copy(), rep[line_to].copy()
    new_hv, new_lv = rep[trafo_hv].copy(), rep[trafo_lv].copy()
    aux_vn: list[float] = []

    def aux_bus(orig_row: int) -> int:
        aux_vn.append(vn[orig_row])
        warm.append(orig_row)
        return n_bus0 + len(aux_vn) - 1

    for (kind, element), buses in open_ends.items():
        if kind == "l":
            i = net.line.index.get_loc(element)
            ends = (line_from[i] in buses, line_to[i] in buses)
            if all(ends):
                line_on[i] = False
            elif ends[0]:
                new_from[i] = aux_bus(int(line_from[i]))
            elif ends[1]:
                new_to[i] = aux_bus(int(line_to[i]))
        else:
            i = net.trafo.index.get_loc(element)
            ends = (trafo_hv[i] in buses, trafo_lv[i] in buses)
            if all(ends):
                trafo_on[i] = False
            elif ends[0]:
                new_hv[i] = aux_bus(int(trafo_hv[i]))
            elif ends[1]:
                new_lv[i] = aux_bus(int(trafo_lv[i]))
    if np.any(line_on & (new_from == new_to)) or np.any(trafo_on & (new_hv == new_lv)):
        raise GridEngineError("engine: a branch joins two buses fused by closed bus-bus switches")

    # connectivity: every bus still in service must reach the slack
    n_bus = n_bus0 + len(aux_vn)
    in_service = np.zeros(n_bus, dtype=bool)
    in_service[np.unique(rep)] = True
    in_service[n_bus0:] = True
    _check_connected(
        n_bus,
        np.concatenate([new_from[line_on], new_hv[trafo_on]]),
        np.concatenate([new_to[line_on], new_lv[trafo_on]]),
        int(rep[rows(ext.bus)][0]),
        in_service,
    )

    # bus table
    bus = prep.bus.iloc[[*range(n_bus0), *([0] * len(aux_vn))]].copy()
    bus.index = pd.RangeIndex(n_bus)
    bus["vn_kv"] = np.concatenate([vn, np.asarray(aux_vn, dtype=float)])
    bus["in_service"] = in_service
    bus["name"] = [*map(str, net.bus.name.tolist()), *(f"aux_{i}" for i in range(len(aux_vn)))]
    prep["bus"] = bus
    prep["switch"] = prep.switch.iloc[0:0]

    # branches
    line = prep.line
    line["from_bus"], line["to_bus"], line["in_service"] = new_from, new_to, line_on
    par = line.parallel.to_numpy(dtype=float)
    line["r_ohm_per_km"] = line.r_ohm_per_km.to_numpy(dtype=float) / par
    line["x_ohm_per_km"] = line.x_ohm_per_km.to_numpy(dtype=float) / par
    line["c_nf_per_km"] = line.c_nf_per_km.to_numpy(dtype=float) * par
    line["g_us_per_km"] = line.g_us_per_km.to_numpy(dtype=float) * par
    line["parallel"] = 1
    trafo = prep.trafo
    trafo["hv_bus"], trafo["lv_bus"], trafo["in_service"] = new_hv, new_lv, trafo_on
    par = trafo.parallel.to_numpy(dtype=float)
    trafo["sn_mva"] = trafo.sn_mva.to_numpy(dtype=float) * par
    trafo["pfe_kw"] = trafo.pfe_kw.to_numpy(dtype=float) * par
    trafo["parallel"] = 1
    _fold_taps(trafo)

    # one-bus elements
    for table in _BUS_ELEMENTS:
        df = prep[table]
        if len(df):
            df["bus"] = rep[rows(df.bus)]
    for table in ("load", "sgen", "gen"):
        df = prep[table]
        scale = df.scaling.to_numpy(dtype=float) if "scaling" in df else np.ones(len(df))
        for col in ("p_mw", "q_mvar"):
            if col in df:
                df[col] = df[col].to_numpy(dtype=float) * scale
        if "scaling" in df:
            df["scaling"] = 1.0
        for col in ("min_p_mw", "max_p_mw", "min_q_mvar", "max_q_mvar"):
            if col in df:  # not used by the power flow; the converter needs them numeric
                df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    shunt = prep.shunt
    if len(shunt):
        step = shunt.step.to_numpy(dtype=float) if "step" in shunt else np.ones(len(shunt))
        shunt["p_mw"] = shunt.p_mw.to_numpy(dtype=float) * step
        shunt["q_mvar"] = shunt.q_mvar.to_numpy(dtype=float) * step
        if "step" in shunt:
            shunt["step"] = 1
    return PreparedNet(prep, rep, np.asarray(warm, dtype=np.int64), line_on, trafo_on)


def _fold_taps(trafo: Any) -> None:
    """Bring transformer taps into the converter's convention (``tap_neutral = 0``; see the module docstring)."""
    n = len(trafo)
    if not n:
        return
    kind = trafo.tap_changer_type.to_numpy(dtype=object) if "tap_changer_type" in trafo else np.full(n, None)
    typed = np.array([isinstance(k, str) and k != "" for k in kind])
    ratio = np.array([k == "Ratio" for k in kind])
    if np.any(typed & ~ratio):
        other = sorted({str(k) for k in kind[typed & ~ratio]})
        raise GridEngineError(f"engine: lightsim2grid engine models only 'Ratio' tap changers, got {other}")
    if "tap_dependency_table" in trafo and trafo.tap_dependency_table.fillna(False).astype(bool).any():
        raise GridEngineError("engine: lightsim2grid engine does not model tap dependency tables")
    degree = np.nan_to_num(trafo.tap_step_degree.to_numpy(dtype=float)) if "tap_step_degree" in trafo else 0
    if np.any(ratio & (degree != 0)):
        raise GridEngineError(
            "engine: lightsim2grid engine does not model phase-shifting taps (tap_step_degree)"
        )
    if "tap2_pos" in trafo and np.isfinite(trafo.tap2_pos.to_numpy(dtype=float)).any():
        raise GridEngineError("engine: lightsim2grid engine does not model a second tap changer (tap2_pos)")
    pos = np.nan_to_num(trafo.tap_pos.to_numpy(dtype=float))
    neutral = np.nan_to_num(trafo.tap_neutral.to_numpy(dtype=float))
    trafo["tap_pos"] = np.where(ratio, pos - neutral, 0.0)
    trafo["tap_neutral"] = 0.0
    trafo["tap_step_percent"] = np.where(
        ratio, np.nan_to_num(trafo.tap_step_percent.to_numpy(dtype=float)), 0.0
    )
    trafo["tap_step_degree"] = 0.0
    trafo["tap_side"] = np.where(ratio, trafo.tap_side.to_numpy(dtype=object), "hv")


def _check_connected(n: int, f: np.ndarray, t: np.ndarray, slack: int, in_service: np.ndarray) -> None:
    """GridEngineError unless every in-service bus is reached from the slack through the given branches."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order

    graph = coo_matrix((np.ones(len(f)), (f, t)), shape=(n, n)).tocsr()
    reached = np.zeros(n, dtype=bool)
    reached[breadth_first_order(graph, slack, directed=False, return_predecessors=False)] = True
    isolated = np.flatnonzero(in_service & ~reached)
    if len(isolated):
        raise GridEngineError(
            f"engine: lightsim2grid engine needs every bus connected to the slack; {len(isolated)} bus(es) "
            f"are isolated (e.g. row {int(isolated[0])})"
        )


class LightsimEngine:
    """AC power flows of a pandapower net with lightsim2grid, for static-generator setpoints given per row.

    Args:
        net: the pandapower net, with the results of a converged ``pandapower.runpp`` (the reference point) in its
            ``res_*`` tables and its static generators at that point's setpoints.
        tol_mva: Newton–Raphson tolerance on the power mismatch (p.u. of ``net.sn_mva``, which pandapower calls
            ``tolerance_mva``), pandapower's default 1e-8.
        max_iter: Newton–Raphson iteration limit.

    Raises:
        GridEngineError: the net has a feature the engine does not model, or the engine's solution of the
            reference point differs from pandapower's.
    """

    name = "lightsim2grid"
    #: from this many rows on, :meth:`run` uses lightsim2grid's time series (all rows in one call into C++).
    batch_min_rows = 8

    def __init__(self, net: Any, *, tol_mva: float = 1e-8, max_iter: int = 20) -> None:
        from lightsim2grid.network import init_from_pandapower

        prepared = prepare_net(net)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._grid = init_from_pandapower(prepared.net, pp_orig_file="pandapower_v2")
        self.tol_mva = float(tol_mva)
        """Newton–Raphson tolerance on the power mismatch (p.u. of ``net.sn_mva``, like pandapower's)."""
        self._max_iter = int(max_iter)
        self.n_lines, self.n_trafos, self.n_buses = len(net.line), len(net.trafo), len(net.bus)
        self._bus = prepared.bus_of_row
        self._off = np.flatnonzero(~np.concatenate([prepared.line_in_service, prepared.trafo_in_service]))
        self._sgen_scaling = (
            net.sgen.scaling.to_numpy(dtype=float) if "scaling" in net.sgen else np.ones(len(net.sgen))
        )
        self._sgen_set = prepared.net.sgen.p_mw.to_numpy(dtype=float, copy=True)  # what the grid holds now
        self._slack_gen = (
            len(self._grid.get_generators()) - 1
        )  # the converter appends the ext_grid's generator
        trafo = net.trafo
        # transformer loading (%) = max(I_hv · vn_hv, I_lv · vn_lv) · √3 / (sn · parallel · df) · 100 (pandapower)
        scale = np.sqrt(3) * 100.0 / (trafo.sn_mva * trafo.parallel * trafo.df).to_numpy(dtype=float)
        self._trafo_k = np.stack([trafo.vn_hv_kv.to_numpy(float), trafo.vn_lv_kv.to_numpy(float)], axis=1)
        self._trafo_k *= scale[:, None]
        pnet = prepared.net
        ends = np.concatenate(
            [pnet.line[["from_bus", "to_bus"]].to_numpy(), pnet.trafo[["hv_bus", "lv_bus"]].to_numpy()]
        ).astype(np.int64)
        self._branch_ends = ends.reshape(-1, 2)
        self._branch_vn = pnet.bus.vn_kv.to_numpy(dtype=float)[self._branch_ends]
        rb = net.res_bus
        v = rb.vm_pu.to_numpy(dtype=float) * np.exp(1j * np.deg2rad(rb.va_degree.to_numpy(dtype=float)))
        self._v_ref = v[prepared.warm_bus].astype(complex)
        self._v = self._v_ref.copy()
        self._check_reference(net)

    # ------------------------------------------------------------------------------------------ public
    def run(self, sgen_p_mw: np.ndarray) -> AcFlows:
        """AC flows for each row of ``sgen_p_mw`` float[B, S] (MW, the ``p_mw`` of every row of ``net.sgen``)."""
        p = np.asarray(sgen_p_mw, dtype=float) * self._sgen_scaling
        if len(p) >= self.batch_min_rows:
            return self._run_batch(p)
        out = AcFlows.empty(len(p), self.n_lines, self.n_trafos, self.n_buses)
        errors = [self._solve_row(row, out, b) for b, row in enumerate(p)]
        return dataclasses.replace(out, errors=tuple(errors))

    # ------------------------------------------------------------------------------------------ internals
    def _set_sgens(self, p: np.ndarray) -> None:
        """Set the static generators' setpoints (MW) that changed, in double precision.

        lightsim2grid's ``change_p_sgen`` ignores a change smaller than 1e-7 MW (a tolerance of its change
        detection) and ``update_sgens_p`` takes float32; a small change therefore goes through an intermediate
        value 1 MW away.
        """
        grid = self._grid
        changed = np.flatnonzero(p != self._sgen_set)
        small = changed[np.abs(p[changed] - self._sgen_set[changed]) < _SMALL_CHANGE_MW]
        for i, value in zip(small.tolist(), p[small].tolist()):
            grid.change_p_sgen(i, value + 1.0)
        for i, value in zip(changed.tolist(), p[changed].tolist()):
            grid.change_p_sgen(i, value)
        self._sgen_set[changed] = p[changed]

    def _solve_row(self, p: np.ndarray, out: AcFlows, b: int) -> str | None:
        """One flow (warm-started from the last solution), written into row ``b`` of ``out``; error or None."""
        self._set_sgens(p)
        grid = self._grid
        v = grid.ac_pf(self._v.copy(), self._max_iter, self.tol_mva)
        if v.size == 0:  # diverged (results of the grid are not valid then): restart from the reference
            self._v = self._v_ref.copy()
            return f"lightsim2grid: AC power flow did not converge ({grid.get_algo().get_error()})"
        nl = self.n_lines
        res = [grid.get_line_res1(), grid.get_line_res2(), grid.get_trafo_res1(), grid.get_trafo_res2()]
        p1 = np.concatenate([res[0][0], res[2][0]])
        p2 = np.concatenate([res[1][0], res[3][0]])
        i1 = np.concatenate([res[0][3], res[2][3]])
        i2 = np.concatenate([res[1][3], res[3][3]])
        if len(self._off):  # pandapower reports 0 for branches out of service
            p1[self._off] = p2[self._off] = i1[self._off] = i2[self._off] = 0.0
        vm = np.abs(v[self._bus])
        losses = float(p1.sum() + p2.sum())
        if not (np.isfinite(losses) and np.isfinite(vm.sum() + i1.sum() + i2.sum())):
            self._v = self._v_ref.copy()
            return "lightsim2grid: AC power flow returned NaN results"
        self._v = v
        out.line_i_ka[b] = np.maximum(i1[:nl], i2[:nl])
        out.line_p_from_mw[b] = p1[:nl]
        out.trafo_pct[b] = np.maximum(i1[nl:] * self._trafo_k[:, 0], i2[nl:] * self._trafo_k[:, 1])
        out.trafo_p_hv_mw[b] = p1[nl:]
        out.vm_pu[b] = vm
        out.losses_mw[b] = losses
        out.ext_grid_mw[b] = grid.get_gen_res()[0][self._slack_gen]
        out.converged[b] = True
        return None

    def _run_batch(self, p: np.ndarray) -> AcFlows:
        """All rows in one call to lightsim2grid's time series, each row warm-started from the one before.

        The time series stops at its first failed row; that row and the ones after it are then solved one by one
        (as separate checks would: the failed row from the last solution, the next from the reference point).
        """
        from lightsim2grid.lightsim2grid_cpp import TimeSeriesCPP

        b = len(p)
        ts = TimeSeriesCPP(self._grid)
        ts.compute_gen_results = True
        ts.modify_sgen_p(np.ascontiguousarray(p))
        ts.compute(self._v.copy(), self._max_iter, self.tol_mva)
        ok = np.asarray(ts.converged_mask(), dtype=bool)
        first_bad = b if ok.all() else int(np.argmin(ok))
        out = AcFlows.empty(b, self.n_lines, self.n_trafos, self.n_buses)
        if first_bad:
            v = ts.get_voltages()[:first_bad]
            br = ts.compute_branch_results()[:first_bad]  # (rows, branches, [P1, Q1, P2, Q2]) in MW, Mvar
            gen_p = ts.get_gen_results()[:first_bad, self._slack_gen, 0]
            self._fill_batch(out, v, br, gen_p)
            self._v = v[-1].copy()
        ts.close()
        if first_bad == b:
            return out
        errors = list(out.errors)
        for r in range(first_bad, b):
            errors[r] = self._solve_row(p[r], out, r)
        return dataclasses.replace(out, errors=tuple(errors))

    def _fill_batch(self, out: AcFlows, v: np.ndarray, br: np.ndarray, gen_p: np.ndarray) -> None:
        """Write the first ``len(v)`` rows of ``out`` from the time series' voltages and branch powers: a branch
        end's current is ``|S| / (√3 · |V|)``, as lightsim2grid and pandapower compute it."""
        n, nl = len(v), self.n_lines
        kv = np.abs(v[:, self._branch_ends]) * self._branch_vn * np.sqrt(3)  # √3 · |V| in kV at both ends
        with np.errstate(divide="ignore", invalid="ignore"):
            i1 = np.nan_to_num(np.hypot(br[..., 0], br[..., 1]) / kv[..., 0])
            i2 = np.nan_to_num(np.hypot(br[..., 2], br[..., 3]) / kv[..., 1])
        p1, p2 = br[..., 0], br[..., 2]
        if len(self._off):
            for x in (i1, i2, p1, p2):
                x[:, self._off] = 0.0
        out.line_i_ka[:n] = np.maximum(i1[:, :nl], i2[:, :nl])
        out.line_p_from_mw[:n] = p1[:, :nl]
        out.trafo_pct[:n] = np.maximum(i1[:, nl:] * self._trafo_k[:, 0], i2[:, nl:] * self._trafo_k[:, 1])
        out.trafo_p_hv_mw[:n] = p1[:, nl:]
        out.vm_pu[:n] = np.abs(v[:, self._bus])
        out.losses_mw[:n] = (p1 + p2).sum(axis=1)
        out.ext_grid_mw[:n] = gen_p
        out.converged[:n] = True

    def _check_reference(self, net: Any) -> None:
        """Solve the reference point and compare with pandapower's results in ``net``'s ``res_*`` tables."""
        flows = self.run(net.sgen.p_mw.to_numpy(dtype=float)[None, :])
        if not flows.converged[0]:
            raise GridEngineError(
                f"engine: lightsim2grid does not solve the reference point ({flows.errors[0]})"
            )
        checks = (
            ("bus voltage (p.u.)", flows.vm_pu[0], net.res_bus.vm_pu, _REF_TOL_VM_PU),
            ("line current (kA)", flows.line_i_ka[0], net.res_line.i_ka, _REF_TOL_I_KA),
            ("transformer loading (%)", flows.trafo_pct[0], net.res_trafo.loading_percent, _REF_TOL_PCT),
        )
        for what, mine, ref, tol in checks:
            diff = np.abs(mine - np.nan_to_num(np.asarray(ref, dtype=float)))
            if len(diff) and not diff.max() <= tol:
                raise GridEngineError(
                    f"engine: lightsim2grid's {what} differs from pandapower's by {diff.max():.3g} at the reference "
                    f"point (tolerance {tol:g})"
                )
