"""The joint energy–reserve study runs end to end on a short horizon and writes its figure and table."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_reserve_study_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eval import reserve

    argv = ["--out", str(tmp_path), "--hours", "2", "--start-hour", "11", "--samples", "500", "--quiet"]
    assert reserve.main(argv) == 0
    assert (tmp_path / "reserve_allocation.png").stat().st_size > 0
    table = (tmp_path / "reserve_allocation.md").read_text(encoding="utf-8")
    for label in ("centralised", "Rel. α^1", "Rel. α^σ", "Rel. α^μ", "Abs. α^σ"):
        assert label in table
    assert "| policy |" in capsys.readouterr().out


def test_reserve_study_reports_bad_arguments_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from eval import reserve

    assert reserve.main(["--hours", "0", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: hours") and "\n" not in err
