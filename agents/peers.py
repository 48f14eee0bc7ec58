"""Peer selection: which other agents an agent accepts as trading partners (action entries ``a[3:]``).

A selector returns the score vector float32[N − 1] over the other agents in ``possible_agents`` order (self
skipped): ``+1`` for the chosen peers, ``−1`` for the others, so the env accepts exactly the chosen ones (with
``peer_k`` unset). :class:`WithPeerSelection` composes a selector with any policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import AgentConfigError, feature

__all__ = [
    "CheapestPeers",
    "GreenestPeers",
    "NearestPeers",
    "PeerSelector",
    "RandomPeers",
    "WithPeerSelection",
]


class PeerSelector:
    """Base class: ``k`` peers of agent ``index`` among ``n_agents``.

    Args:
        n_agents: N, the number of agents.
        index: this agent's index in ``possible_agents``.
        k: number of peers to choose (clipped to ``[1, N − 1]``).
    """

    def __init__(self, n_agents: int, index: int, k: int = 2) -> None:
        if not 0 <= index < n_agents:
            raise AgentConfigError(f"index: must be in [0, {n_agents - 1}], got {index!r}")
        if k < 1:
            raise AgentConfigError(f"k: must be at least 1, got {k!r}")
        self.n_agents, self.index = int(n_agents), int(index)
        self.k = int(min(k, max(n_agents - 1, 1)))
        self.others = np.array([m for m in range(n_agents) if m != index], dtype=int)

    def choose(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Agent indices (into ``possible_agents``) of the chosen peers."""
        raise NotImplementedError

    def scores(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32[N − 1]: +1 for chosen peers, −1 otherwise (``possible_agents`` order, self skipped)."""
        chosen = np.isin(self.others, self.choose(obs, rng))
        return np.where(chosen, 1.0, -1.0).astype(np.float32)

    def _rank(self, key: np.ndarray) -> np.ndarray:
        """The ``k`` other agents with the smallest ``key`` (float[N − 1]); ties by agent index."""
        order = np.argsort(key, kind="stable")
        return self.others[order[: self.k]]

    def reset(self) -> None:
        """Forget learnt state (stateless selectors: nothing)."""

    def observe_result(self, info: dict[str, Any]) -> None:
        """Learn from the env's per-agent info (stateless selectors: nothing)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


class NearestPeers(PeerSelector):
    """The ``k`` peers at the shortest electrical distance: line path length in km between the agents' buses
    (:func:`p2p_gym.grid.path_length_km`); ties by agent index.

    Args:
        distance_km: float[N, N] path lengths (e.g. ``path_length_km(scenario.net, scenario.bus)``).
        index: this agent's index.
        k: number of peers.
    """

    def __init__(self, distance_km: np.ndarray, index: int, k: int = 2) -> None:
        d = np.asarray(distance_km, dtype=float)
        if d.ndim != 2 or d.shape[0] != d.shape[1]:
            raise AgentConfigError(f"distance_km: must be a square float[N, N], got shape {d.shape}")
        super().__init__(d.shape[0], index, k)
        self.distance = d[index, self.others]

    @classmethod
    def from_scenario(cls, scenario: Any, index: int, k: int = 2) -> NearestPeers:
        """Distances from the scenario's network and agent buses."""
        from p2p_gym.grid import path_length_km

        return cls(path_length_km(scenario.net, scenario.bus), index, k)

    def choose(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._rank(self.distance)


class GreenestPeers(PeerSelector):
    """Preference for green peers: the ``k`` peers with the largest installed PV (``pv_kwp``), among those that
    have PV (``pv_kwp > 0``); ties by agent index. If fewer than ``k`` peers have PV, only those are chosen
    (possibly none: the agent then trades only with the grid).

    Args:
        pv_kwp: float[N] installed PV per agent (``scenario.pv_kwp``).
        index: this agent's index.
        k: number of peers.
    """

    def __init__(self, pv_kwp: np.ndarray, index: int, k: int = 2) -> None:
        kwp = np.asarray(pv_kwp, dtype=float)
        super().__init__(len(kwp), index, k)
        self.kwp = kwp[self.others]

    def choose(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top = self._rank(-self.kwp)
        return top[self.kwp[np.searchsorted(self.others, top)] > 0]


class RandomPeers(PeerSelector):
    """``k`` peers drawn uniformly without replacement at every step (from ``rng``)."""

    def choose(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.others, size=self.k, replace=False)


class CheapestPeers(PeerSelector):
    """Greedy choice by past prices: a buyer picks the ``k`` peers that sold to it cheapest on average, a seller
    the ``k`` that paid it most; peers it has not traded with yet on that side rank first (optimistic start, so
    every peer gets tried), ties by agent index.

    The per-peer prices come from the trades of the last step (``env.last_outcome.result.trades``: buyer,
    seller, price), read in :meth:`observe_result`; the env's per-agent info has only totals. Without an env
    reference nothing is learnt and every peer stays untried, so the choice is the first ``k`` by index.

    Args:
        n_agents: N.
        index: this agent's index.
        k: number of peers.
        env: optional :class:`~p2p_gym.envs.P2PMarketEnv` whose ``last_outcome`` is read.
    """

    def __init__(self, n_agents: int, index: int, k: int = 2, env: Any = None) -> None:
        super().__init__(n_agents, index, k)
        self.env = env
        self.reset()

    def reset(self) -> None:
        # [side (0 = as buyer, 1 = as seller), peer] -> sum of price·kWh and kWh
        self.value = np.zeros((2, self.n_agents))
        self.volume = np.zeros((2, self.n_agents))

    def mean_price(self, as_buyer: bool) -> np.ndarray:
        """float[N]: volume-weighted mean past price with each peer on that side (NaN: never traded)."""
        s = 0 if as_buyer else 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.volume[s] > 0, self.value[s] / self.volume[s], np.nan)

    def observe_result(self, info: dict[str, Any]) -> None:
        out = getattr(self.env, "last_outcome", None)
        if out is None:
            return
        tr = out.result.trades
        me = self.index
        for s, mine, peer in ((0, tr.buyer == me, tr.seller), (1, tr.seller == me, tr.buyer)):
            if np.any(mine):
                self.value[s] += np.bincount(peer[mine], tr.price[mine] * tr.quantity[mine], self.n_agents)
                self.volume[s] += np.bincount(peer[mine], tr.quantity[mine], self.n_agents)

    def choose(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        as_buyer = feature(obs, "net") < 0
        price = self.mean_price(as_buyer)[self.others]
        key = price if as_buyer else -price
        return self._rank(np.where(np.isnan(key), -np.inf, key))


class WithPeerSelection:
    """Any policy plus a peer selector: the policy's action with ``a[3:]`` replaced by the selector's scores.

    ``reset`` and ``observe_result`` are forwarded to both. With ``peer_selection=False`` (3 actions) the
    selector is not used.

    Args:
        policy: the bidding policy (anything with ``act(obs, rng)``).
        selector: the :class:`PeerSelector`.
    """

    def __init__(self, policy: Any, selector: PeerSelector) -> None:
        self.policy, self.selector = policy, selector

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The policy's action with the selector's peer scores."""
        a = np.array(self.policy.act(observation, rng), dtype=np.float32)
        if a.shape[0] > 3:
            a[3:] = self.selector.scores(observation, rng)
        return a

    def reset(self) -> None:
        """Reset the policy and the selector."""
        for part in (self.policy, self.selector):
            if hasattr(part, "reset"):
                part.reset()

    def observe_result(self, info: dict[str, Any]) -> None:
        """Forward the env's info to the policy and the selector."""
        for part in (self.policy, self.selector):
            if hasattr(part, "observe_result"):
                part.observe_result(info)

    def __repr__(self) -> str:
        return f"WithPeerSelection({self.policy!r}, {self.selector!r})"
