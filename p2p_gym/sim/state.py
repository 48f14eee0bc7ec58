"""``SimState``: what carries over from one market interval to the next, for B simulations at once."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class SimState:
    """The dynamic state of B market simulations (batch axis first, agents in ``static.agent_ids`` order).

    A stage never mutates a state; :func:`p2p_gym.sim.step` returns a new one.
    """

    t0: np.ndarray
    """int[B]: scenario step at which each episode started."""
    step: np.ndarray
    """int[B]: steps taken in each episode (the next scenario step is ``t0 + step``)."""
    soc_kwh: np.ndarray
    """float[B, N]: battery state of charge (kWh; 0 without battery)."""
    last_price: np.ndarray
    """float[B]: last clearing price (currency/kWh; the mean of feed-in and retail before the first trade)."""
    last_traded: np.ndarray
    """float[B, N]: each agent's P2P sales minus purchases in the last step (kWh)."""
    last_book: np.ndarray
    """float[B, 3]: last step's offered supply, offered demand and P2P volume (kWh per agent)."""
    hp_dev_kwh: np.ndarray
    """float[B, N]: heat-pump running deviation from its reference (kWh; ``dispatch="committed"``)."""
    ev_session: np.ndarray
    """int[B, N]: the EV session the agent last charged in (−1 none)."""
    ev_kwh: np.ndarray
    """float[B, N]: energy delivered in that session so far (kWh)."""
    welfare_sum: np.ndarray
    """float[B]: welfare accumulated over the episode so far (currency)."""
    optimum_per_step: np.ndarray
    """float[B, S]: with ``compute_optimum="episode"``, the welfare of each step of the episode optimum's
    schedule (S = episode_steps); float[B, 0] otherwise."""
    optimum_welfare: np.ndarray
    """float[B]: the episode optimum's welfare (nan unless ``compute_optimum="episode"``)."""
    reference_welfare: np.ndarray
    """float[B]: the episode's policy-independent reference welfare (no trade, idle batteries; nan unless
    ``compute_optimum="episode"``)."""
    upstream_price: np.ndarray
    """float[B, P]: each platform operator's predicted upstream energy price for the next step
    (``coordination="predictive"``; float[B, 0] otherwise)."""
    last_upstream_price: np.ndarray
    """float[B]: the last realised substation price (``coordination="predictive"``; nan before the first step)."""
    load_fc_kw: np.ndarray
    """float[B, S, N]: the load forecast of each step of the episode and the look-ahead (``forecast="day_ahead"``,
    drawn at reset; float[B, 0, N] otherwise: persistence and perfect forecasts are read from the scenario)."""
    pv_fc_kw: np.ndarray
    """float[B, S, N]: the PV forecast, as ``load_fc_kw``."""
    last_reserve_price: np.ndarray
    """float[B, 2]: last step's up and down reserve capacity prices (``reserve=True``; 0 otherwise)."""
    last_imbalance_kwh: np.ndarray
    """float[B, N]: each agent's deviation from its committed position in the last step (kWh, + = long)."""
    ev_fc_active: np.ndarray
    """int32[B, S, N]: the EV session each agent expects at each step of the episode and the look-ahead (−1 none;
    ``forecast="day_ahead"`` with EV arrival errors, drawn at reset); int32[B, 0, N] when sessions are known."""

    @property
    def t(self) -> np.ndarray:
        """int[B]: the scenario step of each simulation's next interval."""
        return self.t0 + self.step

    @property
    def batch_size(self) -> int:
        """B."""
        return len(self.t0)

    def row(self, b: int) -> SimState:
        """Simulation ``b`` alone (a state with B = 1)."""
        s = slice(b, b + 1)
        return SimState(*(getattr(self, f.name)[s] for f in fields(self)))
