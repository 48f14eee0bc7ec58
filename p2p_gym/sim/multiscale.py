"""The system level of a multi-platform simulation (``coordination``), after each platform cleared locally.

Coordination architectures of Morstyn, Savelli & Hepburn (2021, One Earth 4(5):629–638):

* ``isolated``: no system level; what a platform's members do not match goes to the supplier at the tariff.
* ``negotiation`` (their "bidirectional negotiation"): platform operators trade their platforms' residual orders
  with each other through the P2P ADMM (:mod:`p2p_gym.optim.platforms`), paying a network fee for the MV
  path between their transformers; the delivered trades are allocated to the members' residual orders.

The stage returns the local clearing plus the inter-platform positions, so the later stages (dispatch of the
committed devices, grid check, DSO rules, settlement) see both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from p2p_gym.sim.stages import Cleared


@dataclass(frozen=True)
class Upstream:
    """What the system level added to the local clearing ([B] / [B, N] arrays)."""

    volume: np.ndarray  # float[B] kWh traded between platforms
    fees: np.ndarray  # float[B, N] network fees on inter-platform volume


def platform_fee(static_config: Any, sc: Any) -> np.ndarray:
    """float[P, P] fee per kWh (each side) between two platforms: ``upstream_fee_per_kwh_km`` × the line length
    between their connection buses (the MV bus of the platform's transformer, else its first agent's bus)."""
    from p2p_gym.grid import path_length_km

    p = sc.n_platforms
    bus = np.empty(p, dtype=np.int64)
    for k in range(p):
        trafo = int(sc.platform_trafo[k])
        bus[k] = int(sc.net.trafo.at[trafo, "hv_bus"]) if trafo >= 0 else int(sc.bus[sc.platform == k][0])
    km = path_length_km(sc.net, bus)
    fee = static_config.upstream_fee_per_kwh_km * np.where(np.isfinite(km), km, 0.0)
    np.fill_diagonal(fee, 0.0)
    return fee


def negotiate(
    static: Any, cleared: Cleared, price: np.ndarray, qty: np.ndarray, is_buy: np.ndarray
) -> tuple[Cleared, Upstream]:
    """Operators negotiate their platforms' residual orders (``coordination="negotiation"``)."""
    from p2p_gym.optim.platforms import allocate, negotiate_admm, negotiate_centralized, operator_book

    sc, cfg = static.scenario, static.config
    b, n = qty.shape
    fee = static.platform_fee
    residual = np.maximum(qty - cleared.bought - cleared.sold, 0.0)
    add = {k: np.zeros((b, n)) for k in ("bought", "sold", "paid", "received", "fees")}
    volume = np.zeros(b)
    for row in range(b):
        book = operator_book(price[row], residual[row], is_buy[row], sc.platform, sc.n_platforms)
        if not book.tradeable:
            continue  # only sellers or only buyers left: nothing to negotiate
        if cfg.negotiation == "centralized":
            sol = negotiate_centralized(book, fee)
        else:
            sol = negotiate_admm(book, fee)
        alloc = allocate(book, sol, fee, n)
        for key in add:
            add[key][row] = getattr(alloc, key)
        volume[row] = alloc.volume
    out = replace(
        cleared,
        bought=cleared.bought + add["bought"],
        sold=cleared.sold + add["sold"],
        paid=cleared.paid + add["paid"],
        received=cleared.received + add["received"],
        volume=cleared.volume + volume,
    )
    return out, Upstream(volume=volume, fees=add["fees"])
