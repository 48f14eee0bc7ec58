"""A battery heuristic composable with any bidding rule."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import AgentConfigError, feature

__all__ = ["BatteryHeuristic"]


class BatteryHeuristic:
    """Charge on surplus or low price, discharge on deficit or high price; the order comes from a bidding rule.

    The set-point ``a[2]`` (fraction of ``battery_kw``, positive = discharge) is chosen in this order:

    1. **high price**: ``retail ≥ (1 + tol) · mean`` → discharge at full power;
    2. **low price**: ``retail ≤ (1 − tol) · mean`` → charge at full power (from PV or the market/grid);
    3. otherwise follow the own position: with a surplus (``net > 0``) charge ``min(surplus, battery_kw)``, with
       a deficit discharge ``min(deficit, battery_kw)`` (self-consumption: the position moves toward 0 and
       keeps its sign).

    ``mean`` is the mean retail price of the current day of the scenario (with an env reference) or, without
    one, the running mean of the retail prices observed so far. With a flat tariff only rule 3 applies. The
    set-point is limited to what the state of charge allows (``soc`` of the observation, capacity and
    efficiency), so the agent knows its position after the battery and quotes on the right side: the bidding
    rule's ``quote_action`` gets that side (a plain policy without ``quote_action`` keeps its own ``a[0:2]``).
    Agents without a battery (``has_battery = 0``) keep the set-point 0.

    Args:
        bidder: the bidding rule (e.g. :class:`~agents.strategic.Truthful`).
        battery_kw: this agent's battery power limit (kW).
        battery_kwh: its capacity (kWh).
        power_scale: its power scale (kW; the unit of ``net`` in observations).
        dt_hours: step length (h).
        efficiency: one-way efficiency.
        tol: relative price deviation from the daily mean that counts as high/low.
        daily_mean: optional function ``obs -> mean retail price of the day``.
    """

    def __init__(
        self,
        bidder: Any,
        battery_kw: float,
        battery_kwh: float,
        power_scale: float,
        dt_hours: float = 0.25,
        efficiency: float = 0.95,
        tol: float = 0.05,
        daily_mean: Any = None,
    ) -> None:
        if power_scale <= 0 or dt_hours <= 0 or not 0 < efficiency <= 1:
            raise AgentConfigError(
                f"power_scale, dt_hours, efficiency: must be > 0 (efficiency ≤ 1), got "
                f"{power_scale!r}, {dt_hours!r}, {efficiency!r}"
            )
        self.bidder = bidder
        self.battery_kw, self.battery_kwh = float(battery_kw), float(battery_kwh)
        self.scale, self.dt, self.eff, self.tol = (
            float(power_scale),
            float(dt_hours),
            float(efficiency),
            float(tol),
        )
        self.daily_mean = daily_mean
        self._sum, self._count = 0.0, 0

    @classmethod
    def for_agent(cls, bidder: Any, env: Any, agent_id: str, tol: float = 0.05) -> BatteryHeuristic:
        """The heuristic with the battery data of ``agent_id`` in ``env`` (daily mean from the scenario)."""
        i = env.possible_agents.index(agent_id)
        sc = env.scenario
        spd = sc.steps_per_day

        def daily_mean(obs: np.ndarray) -> float:
            day = min(env.t, sc.n_steps - 1) // spd
            return float(sc.retail_price[day * spd : (day + 1) * spd].mean())

        return cls(
            bidder,
            float(sc.battery_kw[i]),
            float(sc.battery_kwh[i]),
            float(env.power_scale[i]),
            env.dt,
            sc.battery_efficiency,
            tol,
            daily_mean,
        )

    def setpoint(self, obs: np.ndarray) -> float:
        """The battery set-point ``a[2]`` in ``[-1, 1]`` (see the class docstring), SoC-feasible."""
        if feature(obs, "has_battery") < 0.5 or self.battery_kw <= 0:
            return 0.0
        retail = feature(obs, "retail_price")
        if self.daily_mean is not None:
            mean = float(self.daily_mean(obs))
        else:
            self._sum, self._count = self._sum + retail, self._count + 1
            mean = self._sum / self._count
        net_kw = feature(obs, "net") * self.scale
        if retail >= (1.0 + self.tol) * mean:
            want = 1.0
        elif retail <= (1.0 - self.tol) * mean:
            want = -1.0
        else:
            want = float(np.clip(-net_kw / self.battery_kw, -1.0, 1.0))
        soc_kwh = feature(obs, "soc") * self.battery_kwh
        max_dis = soc_kwh * self.eff / self.dt / self.battery_kw
        max_chg = (self.battery_kwh - soc_kwh) / self.eff / self.dt / self.battery_kw
        return float(np.clip(want, -min(max_chg, 1.0), min(max_dis, 1.0)))

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Battery set-point of the heuristic; price and quantity of the bidder on the resulting side."""
        a2 = self.setpoint(observation)
        position = feature(observation, "net") + a2 * self.battery_kw / self.scale
        if hasattr(self.bidder, "quote_action"):
            a = np.ones(self.bidder.n_actions, dtype=np.float32)
            a[0], a[1] = self.bidder.quote_action(observation, position < 0, rng, position=position)
        else:
            a = np.array(self.bidder.act(observation, rng), dtype=np.float32)
        a[2] = a2
        return a

    def reset(self) -> None:
        """Reset the bidder and the running price mean."""
        self._sum, self._count = 0.0, 0
        if hasattr(self.bidder, "reset"):
            self.bidder.reset()

    def observe_result(self, info: dict[str, Any]) -> None:
        """Forward the env's info to the bidder."""
        if hasattr(self.bidder, "observe_result"):
            self.bidder.observe_result(info)

    def __repr__(self) -> str:
        return f"BatteryHeuristic({self.bidder!r})"
