"""Bad input to a ``p2p-gym`` subcommand ends in one ``p2p-gym COMMAND: error: …`` line and exit code 2, no
traceback; other exceptions keep their traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from p2p_gym import cli
from p2p_gym.errors import ScenarioError


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "p2p_gym.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
    )


def _error_line(res: subprocess.CompletedProcess, command: str) -> str:
    """The one error line, checked to be the last line of stderr and the only one of its kind."""
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    prefix = f"p2p-gym {command}: error: "
    assert [line for line in lines if line.startswith(prefix)] == lines[-1:], res.stderr
    return lines[-1][len(prefix) :]


def test_eval_unknown_policy(tmp_path: Path) -> None:
    res = _cli(
        "eval",
        "--policies",
        "nope",
        "--mechanisms",
        "uniform",
        "--scenario",
        "tiny",
        "--grid",
        "none",
        "--days",
        "1",
        "--seeds",
        "1",
        "--exploit-agents",
        "0",
        "--workers",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "eval"),
        cwd=tmp_path,
    )
    assert "'nope'" in _error_line(res, "eval")


def test_train_config_with_a_python_tag_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    config = tmp_path / "config.yaml"
    config.write_text(f'algo: !!python/object/apply:os.system ["touch {marker}"]\n')
    res = _cli("train", "--config", str(config), "--out", str(tmp_path / "run"), cwd=tmp_path)
    message = _error_line(res, "train")
    assert str(config) in message and "python/object/apply:os.system" in message
    assert "line 1, column 7" in message
    assert not marker.exists()  # loaded as plain data only: the tag was never constructed


def test_train_missing_config(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    res = _cli("train", "--config", str(missing), cwd=tmp_path)
    assert str(missing) in _error_line(res, "train")


def test_run_unknown_scenario(tmp_path: Path) -> None:
    # `run` reports this itself; the contract is the same: exit 2, no traceback, last line names the value.
    res = _cli("run", "--scenario", "nope", "--no-progress", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    last = [line for line in res.stderr.splitlines() if line.strip()][-1]
    assert "error" in last and "'nope'" in last


def _fake_command(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def run(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(cli, "_load", lambda name: (lambda parser: None, run))


def test_multiline_messages_are_joined(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _fake_command(monkeypatch, ScenarioError("scenario: bad value 'x'\n  expected one of ['a', 'b']"))
    assert cli.main(["scenarios"]) == 2
    err = capsys.readouterr().err
    assert err == "p2p-gym scenarios: error: scenario: bad value 'x'; expected one of ['a', 'b']\n"


def test_other_exceptions_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["scenarios"])
