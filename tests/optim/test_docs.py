"""The worked example of docs/optim.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "optim.md"


def test_docs_example_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    block = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0]
    exec(compile(block, "docs/optim.md", "exec"), {})
    out = capsys.readouterr().out.split()
    assert out[0] == "-0.3"
    assert len(DOC.read_text().splitlines()) <= 70
