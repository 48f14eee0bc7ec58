"""The documented examples run: docstring doctests and the docs/market.md snippet."""

from __future__ import annotations

import doctest
import pathlib
import re

import pytest

import p2p_gym.market
import p2p_gym.market.cda

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "market.md"


@pytest.mark.parametrize("module", [p2p_gym.market, p2p_gym.market.cda])
def test_doctests(module) -> None:  # type: ignore[no-untyped-def]
    result = doctest.testmod(module, verbose=False)
    assert result.failed == 0 and result.attempted > 0


def test_docs_example_runs() -> None:
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    ns: dict[str, object] = {}
    exec(compile(code.group(1), str(DOC), "exec"), ns)
    assert ns["res"].volume == pytest.approx(3.0)  # type: ignore[attr-defined]
    assert ns["res"].clearing_price == pytest.approx(0.225)  # type: ignore[attr-defined]
    assert len(text.splitlines()) <= 60
