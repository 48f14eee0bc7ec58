"""RLlib MAPPO (``--lib rllib --algo mappo``): the state-augmented env, the decentralised actor and centralised
critic of the RLModule, checkpoint loading, and a tiny end-to-end run; skipped without ``ray``."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from p2p_gym.envs import parallel_env
from p2p_gym.sim import MarketConfig
from training.config import TrainArgs, TrainConfigError

pytest.importorskip("ray.rllib")
torch = pytest.importorskip("torch")
mappo = pytest.importorskip("training.rllib_mappo")
MAPPOTorchRLModule = mappo.MAPPOTorchRLModule
StateObservationWrapper = mappo.StateObservationWrapper

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
]  # RLlib's module stack: ~30 s, outside the 8-minute fast suite

MARKET = MarketConfig(scenario="tiny", episode_steps=16, grid_policy="fee")


def _module(market: MarketConfig = MARKET, seed: int = 0) -> mappo.MAPPOTorchRLModule:
    """A freshly initialised module for the agents of ``market`` (as RLlib builds it from the spec)."""
    env = StateObservationWrapper(parallel_env(config=market))
    agent = env.possible_agents[0]
    spec = mappo.module_spec(int(parallel_env(config=market).observation_space(agent).shape[0]), [32, 32])
    spec.observation_space = env.observation_space(agent)
    spec.action_space = env.action_space(agent)
    torch.manual_seed(seed)
    return spec.build()


def _augmented_batch(seed: int = 3) -> tuple[np.ndarray, int, int]:
    """The augmented observations float[N, obs_dim + state_dim] of a seeded episode after a few random steps."""
    env = StateObservationWrapper(parallel_env(config=MARKET))
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        obs, *_ = env.step({a: rng.uniform(-1, 1, env.action_space(a).shape) for a in env.agents})
    x = np.stack([obs[a] for a in env.possible_agents]).astype(np.float32)
    obs_dim = int(parallel_env(config=MARKET).observation_space("prosumer_0").shape[0])
    return x, obs_dim, len(env.possible_agents)


def test_augmented_observation_is_own_observation_then_state() -> None:
    """Step for step, the wrapper's observation equals concat(o_i, state()) of an identically seeded plain env."""
    plain = parallel_env(config=MARKET)
    wrapped = StateObservationWrapper(parallel_env(config=MARKET))
    obs, _ = plain.reset(seed=7)
    aug, _ = wrapped.reset(seed=7)
    rng = np.random.default_rng(0)
    for t in range(MARKET.episode_steps + 1):
        state = plain.state()
        assert state.shape == plain.state_space.shape
        for a in plain.possible_agents:
            np.testing.assert_array_equal(aug[a], np.concatenate([obs[a], state]).astype(np.float32))
            assert wrapped.observation_space(a).contains(aug[a])
            assert wrapped.observation_space(a).shape == (obs[a].shape[0] + state.shape[0],)
        if t == MARKET.episode_steps:
            break
        actions = {
            a: rng.uniform(-1, 1, plain.action_space(a).shape).astype(np.float32) for a in plain.agents
        }
        obs, rew, term, trunc, _ = plain.step(actions)
        aug, rew_w, term_w, trunc_w, _ = wrapped.step(actions)
        assert rew == rew_w and term == term_w and trunc == trunc_w
    assert all(trunc.values()) and wrapped.action_space("prosumer_0") == plain.action_space("prosumer_0")


def test_actor_reads_only_the_local_observation() -> None:
    """Changing the state part leaves the action distribution unchanged; changing o_i changes it."""
    module = _module()
    x, obs_dim, _ = _augmented_batch()
    x = torch.as_tensor(x)
    noisy_state = x.clone()
    noisy_state[:, obs_dim:] += torch.randn_like(noisy_state[:, obs_dim:])
    noisy_own = x.clone()
    noisy_own[:, :obs_dim] += 0.5
    with torch.no_grad():
        ref = module.forward_inference({"obs": x})["action_dist_inputs"]
        same = module.forward_exploration({"obs": noisy_state})["action_dist_inputs"]
        other = module.forward_inference({"obs": noisy_own})["action_dist_inputs"]
        local = module.actor_mean(x[:, :obs_dim])
    torch.testing.assert_close(ref, same, rtol=0, atol=0)
    assert not torch.allclose(ref, other)
    torch.testing.assert_close(local, ref[:, : ref.shape[1] // 2], rtol=0, atol=0)


def test_critic_reads_every_agents_observation_in_the_state() -> None:
    """V(x_i) changes when any other agent's block of the state changes (the actor does not), and its gradient
    w.r.t. every entry of the state block of another agent is non-zero: the critic is centralised."""
    module = _module()
    x, obs_dim, n = _augmented_batch()
    x = torch.as_tensor(x)
    with torch.no_grad():
        v = module.compute_values({"obs": x})
    assert v.shape == (n,)
    for j in range(n):
        block = slice(obs_dim + j * obs_dim, obs_dim + (j + 1) * obs_dim)
        y = x.clone()
        y[0, block] += 0.3  # agent j's observation, as agent 0 sees it in the state
        with torch.no_grad():
            assert abs(float(module.compute_values({"obs": y})[0] - v[0])) > 1e-6, j
            a0 = module.forward_inference({"obs": y})["action_dist_inputs"][0]
            torch.testing.assert_close(a0, module.forward_inference({"obs": x})["action_dist_inputs"][0])
    x0 = x[:1].clone().requires_grad_(True)
    module.compute_values({"obs": x0}).sum().backward()
    grad = x0.grad[0, obs_dim:].reshape(n, obs_dim)
    assert bool((grad[1:].abs().sum(dim=1) > 0).all())  # every other agent's block moves V


def test_build_config_uses_one_mappo_module_per_rlmodule_id() -> None:
    from training.rllib import STATE_ENV_NAME, build_config

    shared = build_config(TrainArgs(lib="rllib", algo="mappo", market=MARKET))
    specs = shared.rl_module_spec.rl_module_specs
    assert shared.env == STATE_ENV_NAME and set(specs) == {"shared"}
    assert (
        specs["shared"].module_class is MAPPOTorchRLModule and specs["shared"].model_config["obs_dim"] == 11
    )
    independent = build_config(TrainArgs(lib="rllib", algo="mappo", setting="independent", market=MARKET))
    assert set(independent.rl_module_spec.rl_module_specs) == {f"prosumer_{i}" for i in range(4)}
    mixed = MarketConfig(scenario="tiny", grid="none", coordination="predictive", predictor="agents")
    with pytest.raises(TrainConfigError, match="pad_spaces"):
        build_config(TrainArgs(lib="rllib", algo="mappo", market=mixed))
    per_agent = build_config(TrainArgs(lib="rllib", algo="mappo", setting="independent", market=mixed))
    dims = {m: s.model_config["obs_dim"] for m, s in per_agent.rl_module_spec.rl_module_specs.items()}
    assert dims["operator_platform_0"] == 8 and dims["prosumer_0"] == 11


def test_loaded_policy_plays_the_gaussian_mean_of_the_saved_module(tmp_path: Path) -> None:
    """load_policies rebuilds the module from the run's checkpoint and acts on o_i alone with the mean of the
    module's Gaussian on concat(o_i, s), clipped to [-1, 1]."""
    from ray.rllib.core.distribution.torch.torch_distribution import TorchDiagGaussian

    from training.rllib import load_policies

    module = _module(seed=5)
    with torch.no_grad():
        module.actor[-1].bias += 2.0  # push some means outside [-1, 1] so that the clipping is exercised
    module.save_to_path(str(tmp_path / "checkpoint" / "learner_group" / "learner" / "rl_module" / "shared"))
    policies = load_policies(tmp_path, TrainArgs(lib="rllib", algo="mappo", market=MARKET))
    x, obs_dim, _ = _augmented_batch()
    rng = np.random.default_rng(0)
    for i, agent in enumerate(sorted(policies)):
        with torch.no_grad():
            inputs = module.forward_inference({"obs": torch.as_tensor(x[i : i + 1])})["action_dist_inputs"]
        mean = TorchDiagGaussian.from_logits(inputs).to_deterministic().sample()[0].numpy()
        action = policies[agent].act(x[i, :obs_dim], rng)
        np.testing.assert_allclose(action, np.clip(mean, -1.0, 1.0), rtol=0, atol=1e-6)
    assert np.any(np.abs(mean) > 1.0)


@pytest.mark.parametrize("setting", ["shared", "independent"])
def test_rllib_mappo_train_and_evaluate(setting: str, tmp_path: Path) -> None:
    from ray.rllib.core.rl_module.rl_module import RLModule

    from training.evaluate import load_run

    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "p2p_gym.cli",
        "train",
        "--lib",
        "rllib",
        "--algo",
        "mappo",
        "--setting",
        setting,
    ]
    cmd += ["--scenario", "tiny", "--episode-steps", "16", "--timesteps", "128", "--eval-episodes", "1"]
    cmd += ["--hp", "train_batch_size_per_learner=64", "--hp", "minibatch_size=32", "--hp", "num_epochs=1"]
    cmd += ["--grid-policy", "fee", "--ray-num-cpus", "1", "--no-progress", "--out", str(run)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (run / "config.yaml").exists() and (run / "checkpoint" / "rllib_checkpoint.json").exists()
    base = run / "checkpoint" / "learner_group" / "learner" / "rl_module"
    modules = {p.name for p in base.iterdir() if p.is_dir()}
    assert modules == ({"shared"} if setting == "shared" else {f"prosumer_{i}" for i in range(4)})
    for name in ("progress.csv", "evaluations.csv"):
        with (run / name).open() as f:
            assert list(csv.DictReader(f))
    # the loaded policy on o_i = the trained module's Gaussian mean on concat(o_i, s), clipped
    args, policies = load_run(run)
    assert args.algo == "mappo"
    env = parallel_env(config=args.market)
    obs, _ = env.reset(seed=1)
    state = env.state()
    for agent, policy in policies.items():
        module = RLModule.from_checkpoint(str(base / ("shared" if setting == "shared" else agent)))
        assert isinstance(module, MAPPOTorchRLModule)
        x = torch.as_tensor(np.concatenate([obs[agent], state])[None].astype(np.float32))
        with torch.no_grad():
            inputs = module.forward_inference({"obs": x})["action_dist_inputs"][0].numpy()
        expected = np.clip(inputs[: inputs.shape[0] // 2], -1.0, 1.0)
        np.testing.assert_allclose(policy.act(obs[agent], np.random.default_rng(0)), expected, atol=1e-6)
    out = subprocess.run(
        [sys.executable, "-m", "p2p_gym.cli", "evaluate-policy", str(run), "--episodes", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0 and "prosumer_3" in out.stdout, out.stdout + out.stderr
