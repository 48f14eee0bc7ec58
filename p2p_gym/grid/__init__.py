"""Grid layer: the power-flow check of agents' injections (AC with lightsim2grid or pandapower, or linear
sensitivities), network topology (electrical distances) and the attribution of flows and penalties to agents and
trades."""

from __future__ import annotations

from p2p_gym.grid.attribution import FlowAttribution, allocate_penalty, blocked_trades
from p2p_gym.grid.dso_rules import (
    at_risk_lines,
    clearing_preference,
    forbidden_pairs,
    pair_effects,
    partners_from_forbidden,
    redirect_preference,
)
from p2p_gym.grid.flex_market import (
    FlexMarketBatch,
    FlexMarketResult,
    FlexOffer,
    clear_flex_market,
    clear_flex_market_batch,
    line_headroom_ka,
)
from p2p_gym.grid.model import GRID_ENGINES, GRID_MODES, GridBatch, GridModel, GridReport
from p2p_gym.grid.topology import path_length_km

__all__ = [
    "GRID_ENGINES",
    "GRID_MODES",
    "FlexMarketBatch",
    "FlexMarketResult",
    "FlexOffer",
    "FlowAttribution",
    "GridBatch",
    "GridModel",
    "GridReport",
    "allocate_penalty",
    "at_risk_lines",
    "blocked_trades",
    "clear_flex_market",
    "clear_flex_market_batch",
    "clearing_preference",
    "forbidden_pairs",
    "line_headroom_ka",
    "pair_effects",
    "partners_from_forbidden",
    "path_length_km",
    "redirect_preference",
]
