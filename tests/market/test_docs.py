"""The documented examples run: docstring doctests and the README's market snippet."""

from __future__ import annotations

import doctest

import pytest

import p2p_gym.market
import p2p_gym.market.cda
from tests._readme import python_blocks, readme_section


@pytest.mark.parametrize("module", [p2p_gym.market, p2p_gym.market.cda])
def test_doctests(module) -> None:  # type: ignore[no-untyped-def]
    result = doctest.testmod(module, verbose=False)
    assert result.failed == 0 and result.attempted > 0


def test_docs_example_runs() -> None:
    code = python_blocks(readme_section("Market clearing"))[0]
    ns: dict[str, object] = {}
    exec(compile(code, "README-market", "exec"), ns)
    assert ns["res"].volume == pytest.approx(3.0)  # type: ignore[attr-defined]
    assert ns["res"].clearing_price == pytest.approx(0.225)  # type: ignore[attr-defined]
