"""Every named policy drives the env within its action limits; registry spec forms."""

from __future__ import annotations

import numpy as np
import pytest

import p2p_gym
from agents import (
    RULES,
    SELECTORS,
    AgentConfigError,
    BatteryHeuristic,
    Markup,
    Policy,
    Truthful,
    WithPeerSelection,
    ZeroIntelligence,
    act_all,
    make_policies,
    observe_all,
    policy_from_name,
)
from p2p_gym.errors import P2PGymError
from p2p_gym.wrappers import truthful_action

NAMES = [*RULES, *(f"zi-c+{s}" for s in SELECTORS), "zip+battery+cheapest:1", "markup:0.3+battery"]


@pytest.mark.parametrize("peer_selection", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_actions_in_bounds_and_right_shape(name: str, peer_selection: bool) -> None:
    mech = "bilateral" if peer_selection else "uniform"
    env = p2p_gym.parallel_env(
        "tiny", mechanism=mech, grid="none", peer_selection=peer_selection, episode_steps=96
    )
    n_act = 3 + (3 if peer_selection else 0)
    policies = make_policies(name, env)
    assert all(isinstance(p, Policy) for p in policies.values())
    obs, _ = env.reset(seed=1, options={"start_day": 0})
    rng = np.random.default_rng(1)
    steps = 0
    while env.agents and steps < 96:
        actions = act_all(policies, obs, rng)
        for a in actions.values():
            assert a.shape == (n_act,) and a.dtype == np.float32
            assert np.all(np.isfinite(a)) and np.all(a >= -1.0) and np.all(a <= 1.0)
            if peer_selection and name != "random":
                assert set(np.unique(a[3:])) <= {-1.0, 1.0}
        obs, _, _, _, infos = env.step(actions)
        assert all(i["clipped_actions"] == 0 for i in infos.values())
        observe_all(policies, infos)
        steps += 1 if name != "best-response" else 4  # best response is slower: sample the day
    for p in policies.values():
        if hasattr(p, "reset"):
            p.reset()


def test_truthful_matches_the_wrappers_rule() -> None:
    rng = np.random.default_rng(0)
    for net in (-0.3, 0.0, 0.4):
        obs = np.zeros(11, dtype=np.float32)
        obs[3] = net
        np.testing.assert_array_equal(Truthful(7).act(obs, rng), truthful_action(obs, 7))


def test_spec_forms_and_composition() -> None:
    env = p2p_gym.parallel_env("tiny", grid="none", peer_selection=True)
    cycled = make_policies("truthful, markup:0.2", env)
    kinds = [type(cycled[a]).__name__ for a in env.possible_agents]
    assert kinds == ["Truthful", "Markup", "Truthful", "Markup"]
    assert cycled["prosumer_1"].markup == 0.2
    mixed = make_policies({"prosumer_2": "zi-u", "prosumer_0": Markup(0.5, n_actions=6)}, env)
    assert isinstance(mixed["prosumer_1"], Truthful) and mixed["prosumer_0"].markup == 0.5
    assert isinstance(mixed["prosumer_2"], ZeroIntelligence) and not mixed["prosumer_2"].constrained
    p = policy_from_name("zi-c+battery+greenest", env, "prosumer_1", k=1)
    assert isinstance(p, WithPeerSelection) and isinstance(p.policy, BatteryHeuristic)
    assert p.selector.k == 1
    assert isinstance(policy_from_name("battery", env, "prosumer_1").bidder, Truthful)
    assert policy_from_name("markup", env, "prosumer_0", markup=0.3).markup == 0.3


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nonsense", "unknown rule"),
        ("zi-c+cheap", "unknown modifier"),
        ({"nobody": "zi-c"}, "not in the env"),
        ("markup:lots", "must be a number"),
        ("zi-c+nearest:two", "must be an integer"),
        ("markup:1.5", "markup: must be in"),
    ],
)
def test_bad_names_raise(spec, match: str) -> None:
    env = p2p_gym.parallel_env("tiny", grid="none")
    with pytest.raises(AgentConfigError, match=match):
        make_policies(spec, env)


def test_policies_use_only_the_given_rng() -> None:
    env = p2p_gym.parallel_env("tiny", grid="none", peer_selection=True)
    obs, _ = env.reset(seed=0, options={"start_day": 0})
    for name in ("zi-c", "zi-u", "random", "zi-c+random-k:1"):
        pols = make_policies(name, env)
        np.random.seed(1)  # noqa: NPY002 - perturb the global state on purpose: it must not matter
        a1 = act_all(pols, obs, np.random.default_rng(42))
        np.random.seed(2)  # noqa: NPY002
        a2 = act_all(pols, obs, np.random.default_rng(42))
        for a in env.possible_agents:
            np.testing.assert_array_equal(a1[a], a2[a])


def test_agent_errors_join_the_package_hierarchy() -> None:
    assert issubclass(AgentConfigError, P2PGymError) and issubclass(AgentConfigError, ValueError)
