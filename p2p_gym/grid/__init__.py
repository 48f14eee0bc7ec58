"""Grid check: agents' net injections on a pandapower network (AC power flow or linear sensitivities)."""

from __future__ import annotations

from p2p_gym.grid.model import GRID_MODES, GridModel, GridReport

__all__ = ["GRID_MODES", "GridModel", "GridReport"]
