"""RLlib PPO on the PettingZoo env with a tiny budget (local Ray cluster); skipped without ``ray``."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray.rllib")

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("setting", ["shared", "independent"])
def test_rllib_train_and_evaluate(setting: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "p2p_gym.cli", "train", "--lib", "rllib", "--setting", setting]
    cmd += ["--scenario", "tiny", "--episode-steps", "16", "--timesteps", "128", "--eval-episodes", "1"]
    cmd += ["--hp", "train_batch_size_per_learner=64", "--hp", "minibatch_size=32", "--hp", "num_epochs=1"]
    cmd += ["--grid-policy", "fee", "--ray-num-cpus", "1", "--no-progress", "--out", str(run)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (run / "config.yaml").exists() and (run / "checkpoint" / "rllib_checkpoint.json").exists()
    market = yaml.safe_load((run / "config.yaml").read_text())["market"]
    assert market["scenario"] == "tiny" and market["episode_steps"] == 16 and market["grid_policy"] == "fee"
    modules = {
        p.name
        for p in (run / "checkpoint" / "learner_group" / "learner" / "rl_module").iterdir()
        if p.is_dir()
    }
    assert modules == ({"shared"} if setting == "shared" else {f"prosumer_{i}" for i in range(4)})
    with (run / "progress.csv").open() as f:
        assert list(csv.DictReader(f))
    with (run / "evaluations.csv").open() as f:
        assert list(csv.DictReader(f))
    out = subprocess.run(
        [sys.executable, "-m", "p2p_gym.cli", "evaluate-policy", str(run), "--episodes", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0 and "prosumer_3" in out.stdout, out.stdout + out.stderr


def test_rllib_env_config_is_the_plain_market_dict() -> None:
    """RLlib gets ``market.to_dict()`` as ``env_config`` (plain data), and its env factory builds that market."""
    from p2p_gym.sim import MarketConfig
    from training.config import TrainArgs
    from training.rllib import _make_env, build_config

    market = MarketConfig(
        scenario="tiny", grid="none", episode_steps=8, grid_policy="fee", peer_selection=True
    )
    args = TrainArgs(lib="rllib", market=market)
    cfg = build_config(args)
    assert dict(cfg.env_config) == market.to_dict()
    env = _make_env(cfg.env_config)
    assert env.par_env.config == market


def test_rllib_trains_on_an_existing_ray_cluster_by_address(tmp_path: Path) -> None:
    """``--ray-address`` connects to a running cluster (``ray start --head``) instead of starting one, and runs
    its env runner there (``ray-num-cpus`` 2: one remote env runner); the cluster outlives the run."""
    import os
    import secrets
    import shutil
    import socket
    import tempfile

    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("no `ray` command next to the interpreter")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    head = [str(ray_cli), "start", "--head", "--port", str(port), "--num-cpus", "2", "--temp-dir", temp]
    head += ["--include-dashboard=false", "--disable-usage-stats"]
    # Ray ≥ 2.59 protects clusters started by `ray start` with a token; the head and its clients share it
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    started = subprocess.run(head, capture_output=True, text=True, timeout=180, check=False, env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        run = tmp_path / "run"
        cmd = [sys.executable, "-m", "p2p_gym.cli", "train", "--lib", "rllib", "--scenario", "tiny"]
        cmd += ["--episode-steps", "16", "--timesteps", "128", "--eval-episodes", "1", "--no-progress"]
        cmd += [
            "--hp",
            "train_batch_size_per_learner=64",
            "--hp",
            "minibatch_size=32",
            "--hp",
            "num_epochs=1",
        ]
        cmd += ["--ray-address", f"127.0.0.1:{port}", "--ray-num-cpus", "2", "--out", str(run)]
        without = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        denied = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=without)
        assert denied.returncode != 0 and "ray_address: cannot connect" in denied.stderr, denied.stderr[
            -2000:
        ]
        assert "Traceback" not in denied.stderr  # one line
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path, env=env
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "Connecting to existing Ray cluster" in log, log[-3000:]
        with (run / "evaluations.csv").open() as f:
            assert list(csv.DictReader(f))
        status = subprocess.run(
            [str(ray_cli), "status", "--address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert status.returncode == 0, status.stdout + status.stderr  # the run did not shut the cluster down
    finally:
        subprocess.run(
            [str(ray_cli), "stop", "--force"], capture_output=True, timeout=120, check=False, env=env
        )
        shutil.rmtree(temp, ignore_errors=True)
