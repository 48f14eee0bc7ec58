"""TrainArgs: validation, YAML round trip, flag precedence, run names."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from training.cli import add_arguments, args_from_namespace
from training.config import DEFAULT_HYPERPARAMS, TrainArgs, TrainConfigError


def parse(*argv: str) -> TrainArgs:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return args_from_namespace(parser.parse_args(list(argv)))


def test_defaults_and_run_name() -> None:
    args = TrainArgs()
    assert args.run_name == "ppo-shared-default-uniform-s0"
    assert args.run_dir == Path("runs/ppo-shared-default-uniform-s0")
    assert args.resolved_hyperparams == DEFAULT_HYPERPARAMS["ppo"]
    assert (
        TrainArgs(algo="sac", setting="single", peer_selection=True, seed=7).run_name
        == "sac-single-default-uniform-peers-s7"
    )


def test_every_field_has_a_docstring() -> None:
    import ast
    import inspect

    import training.config as mod

    tree = ast.parse(inspect.getsource(mod))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainArgs")
    body = cls.body
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            nxt = body[i + 1]
            assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), node.target.id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"algo": "dqn"}, "algo"),
        ({"setting": "central"}, "setting"),
        ({"timesteps": 0}, "timesteps"),
        ({"hyperparams": {"n_stepz": 3}}, "hyperparams"),
        ({"lib": "rllib", "algo": "sac"}, "algo"),
        ({"lib": "rllib", "normalize_obs": True}, "normalize_obs"),
        ({"eval_freq": -1}, "eval_freq"),
    ],
)
def test_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(TrainConfigError, match=field):
        TrainArgs(**kwargs)


def test_yaml_round_trip_and_flag_precedence(tmp_path: Path) -> None:
    args = TrainArgs(
        algo="td3", scenario="tiny", setting="single", hyperparams={"learning_rate": 5e-4}, seed=2
    )
    args.save(tmp_path / "c.yaml")
    back = TrainArgs.from_yaml(tmp_path / "c.yaml")
    assert back.resolved_hyperparams == args.resolved_hyperparams
    assert back.run_dir == args.run_dir and back.algo == "td3"
    over = parse("--config", str(tmp_path / "c.yaml"), "--hp", "batch_size=64", "--timesteps", "99")
    assert (
        over.timesteps == 99
        and over.hyperparams["batch_size"] == 64
        and over.hyperparams["learning_rate"] == 5e-4
    )
    assert over.algo == "td3" and over.scenario == "tiny"
    # a changed seed gets its own default run directory
    assert parse("--config", str(tmp_path / "c.yaml"), "--seed", "5").run_dir.name.endswith("-s5")
    # switching the algorithm drops the other algorithm's saved hyperparameters
    assert (
        parse("--config", str(tmp_path / "c.yaml"), "--algo", "ppo").resolved_hyperparams
        == DEFAULT_HYPERPARAMS["ppo"]
    )


def test_env_config_and_unknown_yaml_key(tmp_path: Path) -> None:
    args = parse("--scenario", "tiny", "--peer-selection", "--peer-k", "1", "--env-kw", "grid_policy=fee")
    assert args.env_config == {
        "scenario": "tiny",
        "mechanism": "uniform",
        "grid": "linear",
        "peer_selection": True,
        "episode_steps": 96,
        "peer_k": 1,
        "grid_policy": "fee",
    }
    (tmp_path / "bad.yaml").write_text("algo: ppo\nlearning_rate: 0.1\n")
    with pytest.raises(TrainConfigError, match="learning_rate"):
        TrainArgs.from_yaml(tmp_path / "bad.yaml")


def test_shared_setting_steps_one_vector_env_for_every_mechanism() -> None:
    """The shared setting steps its episodes with one BatchedMarketEnv, for every mechanism (bilateral too), and
    its first step equals the plain envs stepped by hand (seeds 0 and 1)."""
    pytest.importorskip("stable_baselines3")
    import numpy as np

    from p2p_gym.envs import BatchedMarketEnv, P2PMarketEnv
    from training.sb3 import _shared_vec_env

    kw = {"scenario": "tiny", "setting": "shared", "n_envs": 2, "episode_steps": 4}
    for mechanism in ("uniform", "bilateral"):
        venv = _shared_vec_env(TrainArgs(mechanism=mechanism, **kw))
        assert isinstance(venv.venv.env, BatchedMarketEnv) and venv.venv.env.num_envs == 2
        obs = venv.reset()
        plain = [P2PMarketEnv("tiny", mechanism=mechanism, episode_steps=4) for _ in range(2)]
        ref = [e.reset(seed=k)[0] for k, e in enumerate(plain)]
        np.testing.assert_allclose(
            obs, np.stack([o[a] for o in ref for a in plain[0].possible_agents]), atol=1e-9
        )
        act = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
        venv.step_async(act)
        _, rew, *_ = venv.step_wait()
        agents = plain[0].possible_agents
        ref_rew = [e.step({a: act[k * 4 + i] for i, a in enumerate(agents)})[1] for k, e in enumerate(plain)]
        np.testing.assert_allclose(rew, [r[a] for r in ref_rew for a in agents], atol=1e-6)
