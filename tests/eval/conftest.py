"""Shared fixtures of the eval tests: one tiny evaluation matrix written to a temporary directory."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``p2p-gym eval`` on ``tiny``: 2 policies × 2 mechanisms × 1 seed × 1 day, one worker."""
    from eval import matrix

    out = tmp_path_factory.mktemp("eval") / "report"
    parser = argparse.ArgumentParser()
    matrix.add_arguments(parser)
    args = parser.parse_args(
        [
            "--policies", "truthful,zi-c",
            "--mechanisms", "uniform,sdr",
            "--scenario", "tiny",
            "--days", "1",
            "--seeds", "1",
            "--exploit-agents", "0",
            "--workers", "1",
            "--quiet",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert matrix.main(args) == 0
    return out
