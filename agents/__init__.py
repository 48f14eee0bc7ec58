"""Rule-based prosumer agents: the baselines learned policies are compared against.

Every agent implements :class:`Policy` (``act(observation, rng) -> action``, optional ``reset()`` and
``observe_result(info)``). Build them by name with :func:`policy_from_name` / :func:`make_policies`
(names in :data:`RULES` and :data:`SELECTORS`) and step a parallel env with :func:`act_all`.

Example:
    >>> import numpy as np
    >>> import p2p_gym
    >>> from agents import act_all, make_policies
    >>> env = p2p_gym.parallel_env("tiny", grid="none")
    >>> policies = make_policies("zi-c", env)
    >>> obs, _ = env.reset(seed=0)
    >>> actions = act_all(policies, obs, np.random.default_rng(0))
"""

from agents.base import AgentConfigError, BiddingRule, Policy, action_from_price, feature, price_from_action
from agents.battery import BatteryHeuristic
from agents.peers import (
    CheapestPeers,
    GreenestPeers,
    NearestPeers,
    PeerSelector,
    RandomPeers,
    WithPeerSelection,
)
from agents.registry import (
    RULES,
    SELECTORS,
    act_all,
    make_policies,
    observe_all,
    policy_from_name,
    selector_from_name,
)
from agents.strategic import AdaptiveMarkup, BestResponse, Markup, RandomPolicy, Truthful
from agents.zi import ZIP, ZeroIntelligence

__all__ = [
    "RULES",
    "SELECTORS",
    "ZIP",
    "AdaptiveMarkup",
    "AgentConfigError",
    "BatteryHeuristic",
    "BestResponse",
    "BiddingRule",
    "CheapestPeers",
    "GreenestPeers",
    "Markup",
    "NearestPeers",
    "PeerSelector",
    "Policy",
    "RandomPeers",
    "RandomPolicy",
    "Truthful",
    "WithPeerSelection",
    "ZeroIntelligence",
    "act_all",
    "action_from_price",
    "feature",
    "make_policies",
    "observe_all",
    "policy_from_name",
    "price_from_action",
    "selector_from_name",
]
