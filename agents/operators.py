"""Rule-based platform operators (``coordination="predictive", predictor="agents"``).

An operator's action is its prediction of the next step's upstream energy price,
``feed_in + (a + 1) / 2 · (retail − feed_in)``; it observes :data:`p2p_gym.sim.multiscale.OPERATOR_FEATURES`
(first in its observation also with ``pad_spaces=True``). The two rules reproduce the simulation's built-in
predictors, so a learned operator can be compared with them in the same env:

* ``expected``: the substation's marginal price under the expected dispatch, retail when the prosumers' inflexible
  positions sum to a deficit at the next step, else feed-in (the price the DSO of ``coordination="pricing"``
  publishes);
* ``persistence``: the last realised substation price it has observed. An agent acts before the step it is in
  clears, so this is the price of the step before (the built-in ``predictor="persistence"`` publishes after the
  step and uses the one just cleared).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import AgentConfigError
from p2p_gym.sim.multiscale import OPERATOR_FEATURES

OPERATOR_RULES: dict[str, str] = {
    "expected": "predicts the substation price of the expected dispatch (retail if the prosumers are short, else "
    "feed-in)",
    "persistence": "predicts the last realised substation price",
}
_I = {name: i for i, name in enumerate(OPERATOR_FEATURES)}


class OperatorRule:
    """A rule-based platform operator (module docstring).

    Args:
        rule: a key of :data:`OPERATOR_RULES`.
        n_actions: the size of its action (1, or the prosumers' size with ``pad_spaces=True``).
    """

    def __init__(self, rule: str, n_actions: int = 1) -> None:
        if rule not in OPERATOR_RULES:
            raise AgentConfigError(
                f"operator rule: unknown name {rule!r}; choose one of {sorted(OPERATOR_RULES)}"
            )
        self.rule, self.n_actions = rule, int(n_actions)

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The action whose predicted price is the rule's."""
        r, f = float(observation[_I["next_retail_price"]]), float(observation[_I["next_feed_in_price"]])
        if self.rule == "expected":
            a = 1.0 if observation[_I["next_system_net"]] < 0 else -1.0
        else:
            last = float(observation[_I["last_realised_price"]])
            a = float(np.clip(2.0 * (last - f) / (r - f) - 1.0, -1.0, 1.0)) if r > f else 0.0
        out = np.zeros(self.n_actions, dtype=np.float32)
        out[0] = a
        return out


def operator_policies(rule: str, env: Any) -> dict[str, Any]:
    """One :class:`OperatorRule` per operator agent of ``env`` (none when operators are not agents)."""
    ops = list(getattr(env, "operator_agents", []))
    return {a: OperatorRule(rule, int(np.prod(env.action_space(a).shape))) for a in ops}
