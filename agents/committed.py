"""Rule-based agents under ``dispatch="committed"`` (orders are physical commitments of flexible assets).

The bidding rules of this package were written for fixed positions: the quantity entry is the share of the
position offered and the third entry a battery set-point. :class:`Committed` keeps a rule's price (and peer
scores) and translates the rest into the committed action: the order is the agent's inflexible position moved
by the rule's battery intent (``n0 + setpoint · battery_kw``, within the devices' range), executed whatever the
market does when the rule moves its battery (fallback share 1, as with fixed positions) and otherwise only the
inflexible position is offered and no device moves (fallback share 0). A rule therefore behaves *myopically*:
it never plans EV charging, heat-pump shifts or battery use around the market — which is what a learned policy
or a planning heuristic can improve on.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Committed:
    """Wraps a fixed-position policy for ``dispatch="committed"`` (module docstring).

    Args:
        policy: the wrapped policy (``act(obs, rng)``).
        obs_index: the env's observation layout (``env.static.obs_index``).
        scale_kw: the agent's power scale (observation units, kW).
        battery_kw: the agent's battery power (kW; 0 without one).
    """

    def __init__(self, policy: Any, obs_index: dict[str, int], scale_kw: float, battery_kw: float) -> None:
        self.policy = policy
        self.i_min, self.i_max = obs_index["flex_min"], obs_index["flex_max"]
        self.i_n0 = obs_index["inflexible_net"]
        self.scale, self.battery_kw = float(scale_kw), float(battery_kw)

    @classmethod
    def for_agent(cls, policy: Any, env: Any, agent_id: str) -> Committed:
        i = env.possible_agents.index(agent_id)
        st = env.static
        return cls(policy, st.obs_index, st.power_scale[i], st.scenario.battery_kw[i])

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The wrapped rule's action translated to the committed semantics."""
        a = np.array(self.policy.act(observation, rng), dtype=np.float32)
        lo, hi = float(observation[self.i_min]), float(observation[self.i_max])
        n0 = float(observation[self.i_n0])
        move = float(a[2]) * self.battery_kw / self.scale
        x = min(max(n0 + move, lo), hi)
        a[1] = 2.0 * (x - lo) / (hi - lo) - 1.0 if hi - lo > 1e-12 else 0.0
        a[2] = 1.0 if abs(move) > 1e-12 else -1.0
        return a

    def reset(self) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def observe_result(self, info: dict[str, Any]) -> None:
        if hasattr(self.policy, "observe_result"):
            self.policy.observe_result(info)

    def __getattr__(self, name: str) -> Any:  # expose the wrapped rule's attributes (markup, selector, ...)
        if name == "policy":
            raise AttributeError(name)
        return getattr(self.policy, name)
