"""A small LV feeder whose zero-injection state carries an active base flow, for the tests of ``a0_ka``.

    MV (slack) ══trafo══ LV0 ──line 0──▶ LV1 (load, p0) ──line 1──▶ LV2 (p1, p2, bg0)
                          └──────line 2──▶ LV3 (p3)

A fixed 150 kW / 40 kvar load at LV1 draws ≈ 0.22 kA through line 0 at zero injection (``A0`` ≈ +0.22 kA, above
the 0.2 kA rating of every line by itself); the background element ``bg0`` shares LV2 with p1 and p2.
"""

from __future__ import annotations

import numpy as np
import pandapower as pp

from p2p_gym.scenarios import Scenario

AGENTS = ("p0", "p1", "p2", "p3")


def loaded_feeder_net(load_mw: float = 0.15, q_mvar: float = 0.04, rating_ka: float = 0.2):  # type: ignore[no-untyped-def]
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 20.0, name="MV")
    lv = [pp.create_bus(net, 0.4, name=f"LV{i}") for i in range(4)]
    pp.create_ext_grid(net, mv, vm_pu=1.0)
    pp.create_transformer(net, mv, lv[0], "0.63 MVA 20/0.4 kV")
    for f, t in ((0, 1), (1, 2), (0, 3)):
        pp.create_line(net, lv[f], lv[t], 0.1, "NAYY 4x150 SE")
    net.line["max_i_ka"] = rating_ka
    pp.create_load(net, lv[1], p_mw=load_mw, q_mvar=q_mvar)
    for name, bus in zip((*AGENTS, "bg0"), (lv[1], lv[2], lv[2], lv[3], lv[2])):
        pp.create_sgen(net, bus, p_mw=0.0, name=name)
    return net


def loaded_feeder(injection_kw: np.ndarray, background_kw: np.ndarray, **net_kwargs: float) -> Scenario:
    """The feeder as a scenario whose steps have the agents' net injections ``injection_kw`` float[T, 4] (PV for
    the positive part, load for the negative) and the background ``background_kw`` float[T, 1]."""
    net = loaded_feeder_net(**net_kwargs)
    inj = np.asarray(injection_kw, dtype=float)
    t = len(inj)
    return Scenario(
        name="loaded_feeder",
        agent_ids=AGENTS,
        bus=net.sgen.bus.to_numpy()[:4].astype(np.int64),
        load_kw=np.clip(-inj, 0.0, None),
        pv_kw=np.clip(inj, 0.0, None),
        pv_kwp=np.zeros(4),
        battery_kwh=np.zeros(4),
        battery_kw=np.zeros(4),
        retail_price=np.full(t, 0.3),
        feed_in_price=np.full(t, 0.08),
        step_minutes=15,
        net=net,
        background_ids=("bg0",),
        background_kw=np.asarray(background_kw, dtype=float).reshape(t, 1),
    )


def base_ka(model, background_kw: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """float[T, L]: the ``a0_ka`` of the consumers for each step's background (:meth:`GridModel.active_base_ka`)."""
    return model.active_base_ka(np.asarray(background_kw, dtype=float).reshape(-1, model.n_background))
