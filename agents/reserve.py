"""Reserve offers of rule-based agents (``reserve=True``: the last three action entries).

With a reserve market (:mod:`p2p_gym.sim.uncertainty`) an agent offers up and down capacity as shares of its
devices' headroom after its energy plan, at one capacity price. The market is sequential — the energy plan is
fixed before reserve clears — so holding headroom costs the agent nothing in the step (its energy is already
committed), and activated energy is paid at the imbalance prices, which cover the devices' energy and wear for the
price-takers of this gym. A truthful reserve offer is therefore all the headroom at a capacity price of 0 — the
cost-based bid of a sequential capacity auction (Le Goff Latimier & Ben Ahmed 2023, §6.3 on sequential versus
joint energy–reserve markets). Modes:

* ``truthful``: all headroom up and down at price 0;
* ``zi``: all headroom at a uniformly random price in [0, cap] (Gode & Sunder's zero intelligence, constrained to
  the rational range, transposed to capacity);
* ``none``: no offer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import AgentConfigError

#: Reserve modes of :class:`ReserveOffer`.
RESERVE_MODES: tuple[str, ...] = ("truthful", "zi", "none")


class ReserveOffer:
    """Wraps a policy: its action's last three entries become the reserve offer of ``mode`` (module docstring).

    Args:
        policy: the wrapped policy (``act(obs, rng)``) with the env's full action size.
        mode: one of :data:`RESERVE_MODES`.
    """

    def __init__(self, policy: Any, mode: str = "truthful") -> None:
        if mode not in RESERVE_MODES:
            raise AgentConfigError(f"mode: must be one of {list(RESERVE_MODES)}, got {mode!r}")
        self.policy, self.mode = policy, mode

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = np.array(self.policy.act(observation, rng), dtype=np.float32)
        if self.mode == "none":
            a[-3:] = -1.0
        else:
            a[-3] = a[-2] = 1.0  # all the headroom each way
            a[-1] = -1.0 if self.mode == "truthful" else float(rng.uniform(-1.0, 1.0))
        return a

    def reset(self) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def observe_result(self, info: dict[str, Any]) -> None:
        if hasattr(self.policy, "observe_result"):
            self.policy.observe_result(info)
