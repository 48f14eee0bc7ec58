"""Policies by name: ``policy_from_name``, ``make_policies`` and ``act_all`` (used by ``p2p-gym run``).

Name syntax: ``rule[:param][+modifier[:param]]…``, e.g. ``zi-c``, ``markup:0.2``, ``zi-c+nearest``,
``zip+battery+cheapest:2``. The first part is the bidding rule (:data:`RULES`), the optional parameter of
``markup``/``adaptive-markup`` is the (initial) markup. Modifiers: ``battery`` (wrap the rule in the
:class:`~agents.battery.BatteryHeuristic`) and the peer selectors of :data:`SELECTORS` with an optional ``k``.
``battery`` alone means ``truthful+battery``. With ``reserve=True`` every rule also offers reserve
(:mod:`agents.reserve`): zero-intelligence rules (``zi-c``, ``zi-u``, ``zip``) at random capacity prices, the
others truthfully (all headroom at price 0; ``random`` keeps its random entries); the modifier ``noreserve`` offers
none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.base import AgentConfigError, n_actions_of
from agents.battery import BatteryHeuristic
from agents.peers import (
    CheapestPeers,
    GreenestPeers,
    NearestPeers,
    PeerSelector,
    RandomPeers,
    WithPeerSelection,
)
from agents.strategic import AdaptiveMarkup, BestResponse, Markup, RandomPolicy, Truthful
from agents.zi import ZIP, ZeroIntelligence

__all__ = ["RULES", "SELECTORS", "act_all", "make_policies", "policy_from_name", "selector_from_name"]

#: Bidding rules by name, with a one-line description (the README table).
RULES: dict[str, str] = {
    "truthful": "bids its true limit: buyers the retail price, sellers the feed-in price",
    "zi-c": "Gode & Sunder ZI-C: uniform random price within its rational range [feed-in, retail]",
    "zi-u": "Gode & Sunder ZI-U: uniform over a band 50% wider on each side, clipped to [feed-in, retail]",
    "zip": "Cliff's zero-intelligence-plus: margin adapted toward the last clearing price",
    "markup": "fixed shading: sellers ask feed-in + m·range, buyers bid retail − m·range (m = 0.1)",
    "adaptive-markup": "markup raised by 0.02 after a fill, lowered after an unfilled order",
    "best-response": "best price on a grid against the others' orders of the last step (re-cleared)",
    "battery": "battery heuristic (charge on surplus/low price, discharge on deficit/high price) + truthful",
    "random": "uniformly random actions in [-1, 1] (sanity baseline)",
    "flex": "committed dispatch: truthful prices, offers its whole flexibility on its side (devices move only for "
    "what clears); truthful with fixed positions",
}

#: Peer selectors by name (composable with any rule: ``zi-c+nearest``).
SELECTORS: dict[str, str] = {
    "nearest": "accept the k peers at the shortest line path (km) between buses",
    "greenest": "accept the k peers with the largest PV (kWp > 0 only)",
    "cheapest": "greedy: accept the k peers with the best past prices (untried peers first)",
    "random-k": "accept k peers drawn at random every step",
}

_DEFAULT_K = 2


def _split(part: str) -> tuple[str, str | None]:
    name, _, param = part.strip().partition(":")
    return name.strip().lower(), (param.strip() or None)


def _number(text: str, name: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise AgentConfigError(
            f"policy name: parameter of {name!r} must be {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None


def _rule(name: str, param: str | None, env: Any, agent_id: str, n_act: int, kw: dict[str, Any]) -> Any:
    if name in ("markup", "adaptive-markup") and param is not None:
        kw = {**kw, "markup": _number(param, name, float)}
    if name == "truthful":
        return Truthful(n_act)
    if name == "zi-c":
        return ZeroIntelligence(True, n_actions=n_act, **kw)
    if name == "zi-u":
        return ZeroIntelligence(False, n_actions=n_act, **kw)
    if name == "zip":
        return ZIP(n_actions=n_act, **kw)
    if name == "markup":
        return Markup(n_actions=n_act, **kw)
    if name == "adaptive-markup":
        return AdaptiveMarkup(n_actions=n_act, **kw)
    if name == "best-response":
        return BestResponse(env, agent_id, n_actions=n_act, **kw)
    if name == "random":
        return RandomPolicy(n_act)
    if name == "flex":
        from agents.committed import OfferFlexibility

        static = getattr(env, "static", None)
        return OfferFlexibility(n_act, static.obs_index if static is not None else {})
    raise AgentConfigError(f"policy name: unknown rule {name!r}; choose one of {sorted(RULES)}")


def selector_from_name(name: str, env: Any, agent_id: str, k: int | None = None) -> PeerSelector:
    """A peer selector of :data:`SELECTORS` for ``agent_id`` in ``env`` (``k`` defaults to 2)."""
    sel, param = _split(name)
    kk = _number(param, sel, int) if param is not None else (_DEFAULT_K if k is None else int(k))
    i = env.possible_agents.index(agent_id)
    static = getattr(env, "static", None)
    n = static.n if static is not None else len(env.possible_agents)  # prosumers (operators follow them)
    if sel == "nearest":
        return NearestPeers.from_scenario(env.scenario, i, kk)
    if sel == "greenest":
        return GreenestPeers(env.scenario.pv_kwp, i, kk)
    if sel == "cheapest":
        return CheapestPeers(n, i, kk, env=env)
    if sel == "random-k":
        return RandomPeers(n, i, kk)
    raise AgentConfigError(f"peer selector: unknown name {sel!r}; choose one of {sorted(SELECTORS)}")


def policy_from_name(name: str, env: Any, agent_id: str, **kw: Any) -> Any:
    """The policy called ``name`` (syntax in the module docstring) for ``agent_id`` in ``env``.

    Args:
        name: e.g. ``"zi-c"``, ``"markup:0.2"``, ``"zi-c+nearest:1"``, ``"zip+battery"``.
        env: the :class:`~p2p_gym.envs.P2PMarketEnv` (action size, scenario data, last book).
        agent_id: the agent in ``env.possible_agents``. A platform operator agent gets the operator rule ``name``
            when it is one (:data:`agents.operators.OPERATOR_RULES`), else ``expected``.
        **kw: keyword arguments of the bidding rule's constructor (e.g. ``markup=0.2``); ``k`` goes to the
            peer selector.

    Raises:
        AgentConfigError: an unknown rule, modifier or agent, or a malformed parameter.
    """
    if agent_id not in env.possible_agents:
        raise AgentConfigError(f"agent_id: {agent_id!r} is not one of {env.possible_agents}")
    if agent_id in getattr(env, "operator_agents", ()):  # a platform operator: an operator rule
        from agents.operators import OPERATOR_RULES, OperatorRule

        rule = name if name in OPERATOR_RULES else "expected"
        return OperatorRule(rule, int(np.prod(env.action_space(agent_id).shape)))
    parts = [p for p in str(name).split("+") if p.strip()]
    if not parts:
        raise AgentConfigError(f"policy name: empty name {name!r}; choose one of {sorted(RULES)}")
    k = kw.pop("k", None)
    n_act = n_actions_of(env)
    rule, param = _split(parts[0])
    battery = rule == "battery"
    policy = _rule("truthful" if battery else rule, param, env, agent_id, n_act, kw)
    if hasattr(policy, "fee_per_kwh"):
        policy.fee_per_kwh = expected_fee(env, agent_id)
    selectors: list[PeerSelector] = []
    reserve_mode = "zi" if rule in ("zi-c", "zi-u", "zip") else "truthful"
    for part in parts[1:]:
        mod, _ = _split(part)
        if mod == "battery":
            battery = True
        elif mod == "noreserve":
            reserve_mode = "none"
        elif mod in SELECTORS:
            selectors.append(selector_from_name(part, env, agent_id, k))
        else:
            raise AgentConfigError(
                f"policy name: unknown modifier {mod!r} in {name!r}; choose 'battery', 'noreserve' or one of "
                f"{sorted(SELECTORS)}"
            )
    if battery:
        policy = BatteryHeuristic.for_agent(policy, env, agent_id)
    for sel in selectors:
        policy = WithPeerSelection(policy, sel)
    config = getattr(env, "config", None)
    if config is not None and getattr(config, "dispatch", "fixed") == "committed" and rule != "flex":
        from agents.committed import Committed

        policy = Committed.for_agent(policy, env, agent_id)
    if (
        config is not None and getattr(config, "reserve", False) and rule != "random"
    ):  # random: its own entries
        from agents.reserve import ReserveOffer

        policy = ReserveOffer(policy, reserve_mode)
    return policy


def expected_fee(env: Any, agent_id: str) -> float:
    """The network fee (currency/kWh, both sides together) a rule-based agent expects on a P2P trade: the mean of
    its row of the env's fee matrix over the other agents (``grid_policy="fee"``: distance-based, uniform or zonal,
    Le Goff Latimier & Ben Ahmed 2023, eq. 12), the expected fee when any peer may be its counterparty. 0 without
    fees, and for bilateral matching, whose clearing already subtracts each pair's fee from the pair's surplus (a
    quote that also included it would count the fee twice); community rules take no quotes."""
    static = getattr(env, "static", None)
    fee = getattr(static, "fee_matrix", None)
    if (
        fee is None
        or static is None
        or static.config.mechanism == "bilateral"
        or len(env.possible_agents) < 2
    ):
        return 0.0
    i = env.possible_agents.index(agent_id)
    return float(np.delete(fee[i], i).mean())


def make_policies(
    spec: str | Mapping[str, Any], env: Any, *, operators: str = "expected", **kw: Any
) -> dict[str, Any]:
    """One policy per agent of ``env.possible_agents``.

    Platform operator agents (``predictor="agents"``) get the operator rule ``operators`` (a key of
    :data:`agents.operators.OPERATOR_RULES`) unless ``spec`` is a dict that names them.

    Args:
        spec: one name for every agent (``"zi-c"``), a comma-separated list cycled over the agents
            (``"truthful,markup"``: agents 0, 2, … truthful, 1, 3, … markup), or a dict agent id → name or policy
            object (agents not in the dict are truthful).
        env: the environment.
        **kw: passed to :func:`policy_from_name` for every name.

    Raises:
        AgentConfigError: an unknown name or an agent id not in the env.
    """
    from agents.operators import operator_policies

    ops = operator_policies(operators, env)
    agents = [a for a in env.possible_agents if a not in ops]
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(env.possible_agents))
        if unknown:
            raise AgentConfigError(f"spec: agents {unknown} are not in the env ({env.possible_agents})")
        out = {}
        for a in agents:
            p = spec.get(a, "truthful")
            out[a] = policy_from_name(p, env, a, **kw) if isinstance(p, str) else p
        for a, rule in ops.items():
            p = spec.get(a, rule)
            out[a] = operator_policies(p, env)[a] if isinstance(p, str) else p
        return out
    names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not names:
        raise AgentConfigError(f"spec: no policy name in {spec!r}")
    out = {a: policy_from_name(names[i % len(names)], env, a, **dict(kw)) for i, a in enumerate(agents)}
    out.update(ops)
    return out


def act_all(
    policies: Mapping[str, Any], observations: Mapping[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Every agent's action ``policies[a].act(observations[a], rng)`` for the agents in ``observations``."""
    return {a: np.asarray(policies[a].act(obs, rng), dtype=np.float32) for a, obs in observations.items()}


def observe_all(policies: Mapping[str, Any], infos: Mapping[str, dict[str, Any]]) -> None:
    """Call ``observe_result(infos[a])`` on every policy that has it."""
    for a, info in infos.items():
        p = policies.get(a)
        if p is not None and hasattr(p, "observe_result"):
            p.observe_result(info)
