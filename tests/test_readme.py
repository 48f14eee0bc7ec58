"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python code block"
    quickstart = blocks[0]
    namespace: dict = {}
    exec(compile(quickstart, "README-quickstart", "exec"), namespace)
    out = capsys.readouterr().out
    assert "of the optimum" in out and "max line loading" in out
    assert namespace["env"].agents == []  # the episode ran to its end


def test_agents_example_runs() -> None:
    from tests._readme import python_blocks, readme_section

    namespace: dict = {}
    exec(compile(python_blocks(readme_section("Rule-based agents"))[0], "README-agents", "exec"), namespace)
    assert namespace["env"].agents == []  # played to the end
    assert set(namespace["policies"]) == set(namespace["env"].possible_agents)


def test_multiscale_example_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    from tests._readme import python_blocks, readme_section

    namespace: dict = {}
    code = python_blocks(readme_section("Many platforms on an MV/LV grid"))[0]
    exec(compile(code, "README-multiscale", "exec"), namespace)
    env = namespace["env"]
    assert env.agents == [] and len(env.operator_agents) == 3
    platforms = namespace["platforms"]
    assert len(platforms["import_price"]) == 3 and platforms["dso_balance"] is not None
    assert "operator_" in capsys.readouterr().out


def test_uncertainty_example_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    from tests._readme import python_blocks, readme_section

    namespace: dict = {}
    code = python_blocks(readme_section("Uncertainty, imbalance and reserve"))[0]
    exec(compile(code, "README-uncertainty", "exec"), namespace)
    market = namespace["market"]
    assert namespace["env"].agents == [] and market["reserve_requirement_kw"] > 0
    assert abs(market["money_balance"]) < 1e-9 and abs(market["energy_balance_kwh"]) < 1e-9
    assert len(capsys.readouterr().out.split()) == 3
