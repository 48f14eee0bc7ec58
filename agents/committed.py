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

from agents.base import action_from_price, fee_adjusted


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


class OfferFlexibility:
    """A simple flexible rule for committed dispatch: truthful prices, and the flexibility offered around the PV
    hours. During the solar window (``hours``, default 10–16 h) a buyer (inflexible need) bids down to ``flex_min``
    — buying its neighbours' PV surplus to charge its battery, pre-heat, consume flexibly — and a seller offers
    its inflexible surplus only; outside it a buyer covers its own need from its devices as far as they reach
    (target min(0, ``flex_max``): battery, EV and heat-pump deferral) and a seller offers up to ``flex_max``
    (selling from storage). Fallback share 0: market-contingent parts move only for what clears, so its P2P
    trades move power — PV surplus is stored next door instead of exported through the feeder. With fixed
    positions it is the truthful rule.

    Args:
        n_actions: the env's action size.
        obs_index: the env's observation layout (``env.static.obs_index``).
        hours: the solar window [start, end) in hours of the day.
    """

    def __init__(
        self, n_actions: int, obs_index: dict[str, int], hours: tuple[float, float] = (10.0, 16.0)
    ) -> None:
        self.n_actions = n_actions
        self.index = obs_index
        self.hours = hours
        self.fee_per_kwh = 0.0  # expected network fee (see agents.base.fee_adjusted)

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The action for one observation (``rng`` unused)."""
        from p2p_gym.rollout import truthful_action

        if "inflexible_net" not in self.index:
            return truthful_action(observation, self.n_actions)
        i = self.index
        n0 = float(observation[i["inflexible_net"]])
        lo, hi = float(observation[i["flex_min"]]), float(observation[i["flex_max"]])
        hour = (np.degrees(np.arctan2(observation[i["hour_sin"]], observation[i["hour_cos"]])) / 15.0) % 24.0
        solar = self.hours[0] <= hour < self.hours[1]
        if n0 < 0:
            x = lo if solar else min(0.0, hi)
        else:
            x = n0 if solar else hi
        a = np.zeros(self.n_actions, dtype=np.float32)
        a[3:] = 1.0
        # buyers bid retail, sellers ask feed-in (each net of half the expected network fee)
        feed_in, retail = float(observation[i["feed_in_price"]]), float(observation[i["retail_price"]])
        a[0] = action_from_price(
            fee_adjusted(1.0 if x < 0 else 0.0, x < 0, self.fee_per_kwh, feed_in, retail)
        )
        a[1] = 2.0 * (x - lo) / (hi - lo) - 1.0 if hi - lo > 1e-12 else 0.0
        a[2] = -1.0  # market parts move only for what clears
        return a
