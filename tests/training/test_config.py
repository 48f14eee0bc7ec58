"""TrainArgs: validation, YAML round trip (old flat run configs too), flag precedence, market flags, run names."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from p2p_gym.errors import EnvConfigError, P2PGymError
from p2p_gym.sim import MarketConfig, field_names
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
        TrainArgs(algo="sac", setting="single", market=MarketConfig(peer_selection=True), seed=7).run_name
        == "sac-single-default-uniform-peers-s7"
    )
    assert args.market == MarketConfig() and args.market.episode_steps == 96
    assert args.env_config == MarketConfig().to_dict()


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
        algo="td3",
        market=MarketConfig(scenario="tiny", grid_policy="fee", preference=[[0.0, 1.0], [1.0, 0.0]]),
        setting="single",
        hyperparams={"learning_rate": 5e-4},
        seed=2,
    )
    args.save(tmp_path / "c.yaml")
    saved = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert saved["market"] == args.market.to_dict() and "scenario" not in saved  # nested, not flat
    back = TrainArgs.from_yaml(tmp_path / "c.yaml")
    assert back.market == args.market and back.to_dict() == args.to_dict()
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
    expected = MarketConfig(scenario="tiny", peer_selection=True, peer_k=1, grid_policy="fee")
    assert args.market == expected
    assert args.env_config == expected.to_dict() and type(args.env_config) is dict
    assert args.run_name == "ppo-shared-tiny-uniform-peers-s0"
    (tmp_path / "bad.yaml").write_text("algo: ppo\nlearning_rate: 0.1\n")
    with pytest.raises(TrainConfigError, match="learning_rate"):
        TrainArgs.from_yaml(tmp_path / "bad.yaml")


OLD_RUN_CONFIG = {  # config.yaml of a run written before TrainArgs took a MarketConfig
    "algo": "ppo",
    "lib": "sb3",
    "setting": "single",
    "scenario": "tiny",
    "mechanism": "bilateral",
    "grid": "none",
    "peer_selection": True,
    "peer_k": 2,
    "episode_steps": 16,
    "env_kwargs": {"grid_policy": "fee", "preference": "distance"},
    "batched": True,
    "timesteps": 256,
    "seed": 3,
    "out": "runs/ppo-single-tiny-bilateral-peers-s3",
}


def test_old_flat_run_config_loads_into_the_same_market(tmp_path: Path) -> None:
    old_keys = ("scenario", "mechanism", "grid", "peer_selection", "peer_k", "episode_steps", "env_kwargs")
    new = {k: v for k, v in OLD_RUN_CONFIG.items() if k not in (*old_keys, "batched")}
    new["market"] = {
        "scenario": "tiny",
        "mechanism": "bilateral",
        "grid": "none",
        "peer_selection": True,
        "peer_k": 2,
        "episode_steps": 16,
        "grid_policy": "fee",
        "preference": "distance",
    }
    old_args, new_args = TrainArgs.from_dict(OLD_RUN_CONFIG), TrainArgs.from_dict(new)
    assert old_args.market == new_args.market == MarketConfig.from_dict(new["market"])
    assert old_args.to_dict() == new_args.to_dict()
    assert old_args.run_name == "ppo-single-tiny-bilateral-peers-s3"
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(OLD_RUN_CONFIG, sort_keys=False))
    from_yaml = TrainArgs.from_yaml(tmp_path / "old.yaml")
    assert from_yaml.market == new_args.market and from_yaml.seed == 3
    # re-saved, it is a new-style config
    from_yaml.save(tmp_path / "resaved.yaml")
    resaved = yaml.safe_load((tmp_path / "resaved.yaml").read_text())
    assert "env_kwargs" not in resaved and resaved["market"]["grid_policy"] == "fee"
    # and `--config old.yaml` works on the command line
    assert parse("--config", str(tmp_path / "old.yaml")).market == new_args.market
    # callers of the old constructor keywords get the same market
    kw = {k: OLD_RUN_CONFIG[k] for k in old_keys}
    assert TrainArgs(setting="single", **kw).market == new_args.market


def test_old_flat_key_contradicting_market_and_bad_market_options_name_the_field() -> None:
    with pytest.raises(TrainConfigError, match="scenario"):
        TrainArgs.from_dict({"scenario": "tiny", "market": {"scenario": "default"}})
    assert TrainArgs.from_dict({"scenario": "tiny", "market": {"grid": "none"}}).market == MarketConfig(
        scenario="tiny", grid="none"
    )
    for data, name in [
        ({"market": {"grid": "dc"}}, "grid"),
        ({"grid": "dc"}, "grid"),
        ({"market": {"episode_steps": 0}}, "episode_steps"),
        ({"env_kwargs": {"no_such_option": 1}}, "no_such_option"),
        ({"market": {"no_such_option": 1}}, "no_such_option"),
    ]:
        with pytest.raises(P2PGymError, match=name) as err:
            TrainArgs.from_dict(data)
        assert isinstance(err.value, ValueError)
    with pytest.raises(EnvConfigError, match="grid_policy"):
        TrainArgs(market={"grid_policy": "toll"})


def test_every_market_option_is_a_train_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from p2p_gym.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "market options:" in text
    market_part = text.split("market options:", 1)[1]
    names = field_names()
    assert len(names) >= 20 and {"scenario", "grid_policy", "scenario_overrides"} <= set(names)
    flags = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", market_part))
    missing = [n for n in names if n.replace("_", "-") not in flags]
    assert not missing, f"market options without a flag in `p2p-gym train --help`: {missing}"
    assert "--env-kw" in text


def test_market_flag_overrides_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "algo: ppo\nmarket:\n  scenario: tiny\n  grid_policy: block\n  block_threshold_pct: 50.0\n"
    )
    from_file = parse("--config", str(tmp_path / "c.yaml"))
    assert from_file.market.grid_policy == "block" and from_file.market.block_threshold_pct == 50.0
    over = parse("--config", str(tmp_path / "c.yaml"), "--grid-policy", "fee")
    assert over.market == MarketConfig(scenario="tiny", grid_policy="fee", block_threshold_pct=50.0)
    # --env-kw is the same override by field name
    assert parse("--config", str(tmp_path / "c.yaml"), "--env-kw", "grid_policy=fee").market == over.market
    # flags not given keep the file's value; a boolean flag can switch an option off again
    assert parse("--config", str(tmp_path / "c.yaml"), "--book-stats").market.book_stats is True
    assert parse("--no-book-stats").market.book_stats is False
    assert parse("--scenario-overrides", "n_days=2").market.scenario_overrides == {"n_days": 2}


def test_env_kw_unknown_key_and_contradiction_are_named() -> None:
    with pytest.raises(TrainConfigError, match="no_such_option"):
        parse("--env-kw", "no_such_option=1")
    with pytest.raises(TrainConfigError, match="grid_policy"):
        parse("--grid-policy", "fee", "--env-kw", "grid_policy=block")
    with pytest.raises(EnvConfigError, match="grid_policy"):
        parse("--grid", "none", "--grid-policy", "block")


def test_changed_run_gets_its_own_default_name(tmp_path: Path) -> None:
    TrainArgs(market=MarketConfig(scenario="tiny"), out=str(tmp_path / "mine")).save(tmp_path / "c.yaml")
    cfg = str(tmp_path / "c.yaml")
    assert parse("--config", cfg).run_dir == tmp_path / "mine"
    assert parse("--config", cfg, "--timesteps", "5").run_dir == tmp_path / "mine"  # same run name
    assert parse("--config", cfg, "--grid-policy", "fee").run_dir == tmp_path / "mine"
    assert parse("--config", cfg, "--scenario", "default").run_dir == Path(
        "runs/ppo-shared-default-uniform-s0"
    )
    assert parse("--config", cfg, "--mechanism", "cda").run_dir == Path("runs/ppo-shared-tiny-cda-s0")
    assert parse("--config", cfg, "--env-kw", "mechanism=cda").run_dir == Path("runs/ppo-shared-tiny-cda-s0")
    assert parse("--config", cfg, "--peer-selection").run_dir.name == "ppo-shared-tiny-uniform-peers-s0"
    assert parse("--config", cfg, "--setting", "single").run_dir.name == "ppo-single-tiny-uniform-s0"
    assert parse("--config", cfg, "--seed", "4", "--out", "x").run_dir == Path("x")


def test_shared_setting_steps_one_vector_env_for_every_mechanism() -> None:
    """The shared setting steps its episodes with one BatchedMarketEnv, for every mechanism (bilateral too), and
    its first step equals the plain envs stepped by hand (seeds 0 and 1)."""
    pytest.importorskip("stable_baselines3")
    import numpy as np

    from p2p_gym.envs import BatchedMarketEnv, P2PMarketEnv
    from training.sb3 import _shared_vec_env

    for mechanism in ("uniform", "bilateral"):
        market = MarketConfig(scenario="tiny", mechanism=mechanism, episode_steps=4)
        venv = _shared_vec_env(TrainArgs(market=market, setting="shared", n_envs=2))
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


@pytest.mark.parametrize("bad", [-1, 1.5, "x", True])
def test_eval_seed_must_be_a_nonnegative_integer(bad: object) -> None:
    with pytest.raises(TrainConfigError, match="eval_seed"):
        TrainArgs(eval_seed=bad)  # type: ignore[arg-type]
    assert TrainArgs(eval_seed=7).eval_seed == 7
