"""BenchMARL training: the hyperparameter mapping (fast), and MAPPO/IPPO/MADDPG/MASAC end-to-end with tiny budgets
in a subprocess, with the trained actor reloaded and played; skipped without ``benchmarl``."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("benchmarl")

from p2p_gym.sim import MarketConfig
from training.config import BENCHMARL_DEFAULTS, TrainArgs, TrainConfigError

pytestmark = [pytest.mark.marl]

TINY = MarketConfig(scenario="tiny", episode_steps=16)
AGENTS = [f"prosumer_{i}" for i in range(4)]


def bm_args(algo: str = "mappo", **kw: object) -> TrainArgs:
    return TrainArgs(lib="benchmarl", algo=algo, market=TINY, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ mapping (fast)
def test_on_policy_hyperparameters_map_to_benchmarl_configs(tmp_path: Path) -> None:
    import torch

    from training.benchmarl import build_configs

    hp = {"lr": 1e-3, "gamma": 0.9, "lmbda": 0.8, "clip_epsilon": 0.1, "entropy_coef": 0.01}
    hp |= {"critic_coef": 0.5}
    hp |= {"frames_per_batch": 96, "minibatch_size": 32, "n_minibatch_iters": 3, "net_arch": [16, 8]}
    hp |= {"activation": "relu", "max_grad_norm": 1.0, "share_param_critic": False}
    args = bm_args("mappo", setting="independent", timesteps=960, n_envs=3, hyperparams=hp, out=str(tmp_path))
    cfg, algo_cfg, model_cfg = build_configs(args)
    assert (cfg.lr, cfg.gamma, cfg.max_n_frames, cfg.max_n_iters) == (1e-3, 0.9, 960, None)
    assert cfg.on_policy_collected_frames_per_batch == 96 and cfg.on_policy_n_envs_per_worker == 3
    assert (cfg.on_policy_minibatch_size, cfg.on_policy_n_minibatch_iters) == (32, 3)
    assert cfg.share_policy_params is False and cfg.prefer_continuous_actions
    assert (cfg.clip_grad_norm, cfg.clip_grad_val) == (True, 1.0)
    assert not cfg.evaluation and cfg.loggers == [] and not cfg.create_json and cfg.checkpoint_interval == 0
    assert Path(cfg.save_folder) == (tmp_path / "benchmarl").resolve()
    assert (algo_cfg.lmbda, algo_cfg.clip_epsilon, algo_cfg.entropy_coef) == (0.8, 0.1, 0.01)
    assert algo_cfg.critic_coef == 0.5
    assert algo_cfg.share_param_critic is False and algo_cfg.has_centralized_critic()
    assert list(model_cfg.num_cells) == [16, 8] and model_cfg.activation_class is torch.nn.ReLU
    cfg.validate(on_policy=True)  # BenchMARL's own checks pass


def test_off_policy_hyperparameters_map_to_benchmarl_configs() -> None:
    import torch

    from training.benchmarl import build_configs

    hp = {"frames_per_batch": 64, "memory_size": 1000, "train_batch_size": 32, "n_optimizer_steps": 4}
    hp |= {"polyak_tau": 0.01, "exploration_eps": 0.3}
    cfg, algo_cfg, model_cfg = build_configs(bm_args("maddpg", timesteps=640, hyperparams=hp))
    assert cfg.off_policy_collected_frames_per_batch == 64 and cfg.off_policy_n_envs_per_worker == 1
    assert (cfg.off_policy_memory_size, cfg.off_policy_train_batch_size) == (1000, 32)
    assert cfg.off_policy_n_optimizer_steps == 4
    assert not cfg.off_policy_use_prioritized_replay_buffer and cfg.off_policy_init_random_frames == 0
    assert (cfg.polyak_tau, cfg.exploration_eps_init, cfg.share_policy_params) == (0.01, 0.3, True)
    assert algo_cfg.has_centralized_critic() and model_cfg.activation_class is torch.nn.Tanh
    cfg, algo_cfg, _ = build_configs(bm_args("masac"))
    defaults = BENCHMARL_DEFAULTS["masac"]
    assert (cfg.lr, cfg.off_policy_memory_size) == (defaults["lr"], defaults["memory_size"])
    assert type(algo_cfg).__name__ == "MasacConfig"
    _, ippo_cfg, _ = build_configs(bm_args("ippo"))
    assert not ippo_cfg.has_centralized_critic()


@pytest.mark.parametrize(
    ("algo", "kw", "match"),
    [
        ("masac", {"hyperparams": {"critic_coef": 1.0}}, "critic_coef applies to mappo and ippo"),
        ("mappo", {"hyperparams": {"exploration_eps": 0.1}}, "exploration_eps applies to maddpg"),
        ("mappo", {"hyperparams": {"activation": "gelu"}}, "activation: expected one of"),
        ("mappo", {"hyperparams": {"net_arch": [64, 0]}}, "net_arch"),
        ("mappo", {"n_envs": 7}, "frames_per_batch .* multiple of n_envs"),
        ("ippo", {"hyperparams": {"frames_per_batch": 64, "minibatch_size": 128}}, "minibatch_size .* ≤"),
        ("maddpg", {"hyperparams": {"train_batch_size": 0}}, "train_batch_size: must be an integer ≥ 1"),
        ("masac", {"hyperparams": {"polyak_tau": 2.0}}, "polyak_tau"),
    ],
)
def test_bad_hyperparameters_are_rejected_naming_the_key(algo: str, kw: dict, match: str) -> None:
    from training.benchmarl import build_configs

    with pytest.raises(TrainConfigError, match=match):
        build_configs(bm_args(algo, **kw))


def test_train_config_rejects_what_benchmarl_cannot_do() -> None:
    with pytest.raises(TrainConfigError, match="supports 'shared' and 'independent'"):
        bm_args(setting="single")
    with pytest.raises(TrainConfigError, match="lmbda"):  # on-policy key for an off-policy algorithm
        bm_args("masac", hyperparams={"lmbda": 0.9})
    with pytest.raises(TrainConfigError, match="supports"):
        bm_args("ppo")


def test_group_actor_gives_each_agent_its_own_row() -> None:
    """Independent actors differ per agent; the per-agent policy (own observation in every row) equals the
    agent's row of the group's actions on distinct observations, in [-1, 1], deterministic."""
    from training.benchmarl import GroupActorPolicy, _reference_obs, build_actor, group_actions

    args = bm_args("masac", setting="independent")
    actor = build_actor(args)
    obs = _reference_obs(args)
    rows = group_actions(actor, obs)
    assert rows.shape == (4, 3) and np.all(np.abs(rows) <= 1)
    for i in range(4):
        np.testing.assert_allclose(GroupActorPolicy(actor, i, 4)(obs[i]), rows[i], atol=1e-6)
    assert not np.allclose(GroupActorPolicy(actor, 0, 4)(obs[1]), GroupActorPolicy(actor, 1, 4)(obs[1]))
    np.testing.assert_array_equal(group_actions(actor, obs), rows)


def test_torchrl_sees_the_market_without_infos() -> None:
    from training.benchmarl import make_task

    task = make_task(bm_args())
    env = task.get_env_fun(1, True, 0, "cpu")()
    try:
        assert task.group_map(env) == {"agents": AGENTS}
        assert tuple(env.observation_spec["state"].shape) == (44,)
        assert task.action_spec(env)["agents", "action"].shape == (4, 3)
        td = env.rollout(20)
        assert td.batch_size == (16,) and "info" not in td["next", "agents"].keys()
    finally:
        env.close()


@pytest.mark.slow  # a fresh interpreter importing torch and torchrl: 11 s
def test_importing_the_module_leaves_torchvision_alone() -> None:
    code = "import sys, training.benchmarl; assert 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------------------- end to end (slow)
def _train(run: Path, algo: str, setting: str) -> None:
    cmd = [sys.executable, "-m", "p2p_gym.cli", "train", "--lib", "benchmarl"]
    cmd += ["--algo", algo, "--setting", setting]
    cmd += ["--scenario", "tiny", "--episode-steps", "16", "--timesteps", "128", "--eval-episodes", "1"]
    cmd += ["--eval-freq", "64", "--checkpoint-freq", "64", "--no-progress", "--out", str(run)]
    hp = {"frames_per_batch": 64, "net_arch": "[16]"}
    if algo in ("mappo", "ippo"):
        hp |= {"minibatch_size": 32, "n_minibatch_iters": 1}
    else:
        hp |= {"train_batch_size": 32, "n_optimizer_steps": 2}
    for key, value in hp.items():
        cmd += ["--hp", f"{key}={value}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, cwd=run.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algo", "setting"),
    [*((algo, "shared") for algo in ("mappo", "ippo", "maddpg", "masac")), ("mappo", "independent")],
)
def test_benchmarl_train_reload_and_evaluate(
    algo: str, setting: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from p2p_gym.cli import main as p2p_gym_main
    from training.evaluate import load_run
    from training.sb3 import Evaluator

    run = tmp_path / "run"
    _train(run, algo, setting)
    for name in ("config.yaml", "progress.csv", "evaluations.csv", "checkpoint/policy.pt"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "step_64" / "policy.pt").exists()
    assert list(run.glob("events.out.tfevents.*"))
    with (run / "progress.csv").open() as f:
        progress = list(csv.DictReader(f))
    assert [float(r["timesteps"]) for r in progress] == [64.0, 128.0]  # frames = market steps
    assert all(np.isfinite(float(r["episode_return_mean"])) for r in progress)  # 4 episodes of 16 per batch
    with (run / "evaluations.csv").open() as f:
        evaluations = list(csv.DictReader(f))
    assert [float(r["timesteps"]) for r in evaluations] == [64.0, 128.0]

    # the reloaded actor is the one trained: same actions as saved from memory, and the same final evaluation
    args, learned = load_run(run)
    assert (args.lib, args.algo, args.setting) == ("benchmarl", algo, setting) and list(learned) == AGENTS
    saved = torch.load(run / "checkpoint" / "policy.pt", weights_only=False)
    rng = np.random.default_rng(0)
    for i, agent in enumerate(AGENTS):
        action = learned[agent].act(saved["reference_obs"][i], rng)
        np.testing.assert_allclose(action, saved["reference_actions"][i], atol=1e-6)
        assert action.shape == (3,) and np.all(np.abs(action) <= 1)
        np.testing.assert_array_equal(learned[agent].act(saved["reference_obs"][i], rng), action)
    replay = Evaluator(args, AGENTS, tmp_path / "replay.csv").evaluate(learned, 128)
    assert replay["learner"] == pytest.approx(float(evaluations[-1]["learner"]), abs=1e-9)

    if setting == "independent":  # the console script once, in its own process
        out = subprocess.run(
            [sys.executable, "-m", "p2p_gym.cli", "evaluate-policy", str(run), "--episodes", "1"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        printed = out.stdout
    else:
        capsys.readouterr()
        assert p2p_gym_main(["evaluate-policy", str(run), "--episodes", "1"]) == 0
        printed = capsys.readouterr().out
    assert f"benchmarl/{algo}" in printed and all(a in printed for a in AGENTS), printed


def test_bad_benchmarl_hyperparameter_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from p2p_gym.cli import main as p2p_gym_main

    argv = ["train", "--lib", "benchmarl", "--algo", "masac", "--scenario", "tiny", "--hp", "critic_coef=1.0"]
    assert p2p_gym_main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "critic_coef applies to mappo and ippo" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
