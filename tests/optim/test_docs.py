"""The worked example of the README's optimisation section runs as written."""

from __future__ import annotations

from tests._readme import python_blocks, readme_section


def test_readme_example_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    block = python_blocks(readme_section("Optimum and ADMM P2P market"))[0]
    exec(compile(block, "README-optim", "exec"), {})
    out = capsys.readouterr().out.split()
    assert out[0] == "-0.3"  # hand-checked: 3.5 kWh matched inside, 1 kWh imported at 0.30
