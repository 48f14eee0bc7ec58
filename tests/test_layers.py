"""Layering: the core never imports torch; market/optim never import gymnasium, pettingzoo or pandapower."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    res = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    return set(json.loads(res.stdout.strip().splitlines()[-1]))


def test_core_imports_without_torch() -> None:
    mods = _modules_after(
        "import p2p_gym, p2p_gym.envs, p2p_gym.sim, p2p_gym.scenarios, p2p_gym.grid, p2p_gym.market, p2p_gym.wrappers\n"
        "env = p2p_gym.parallel_env('tiny', episode_steps=2); env.reset(seed=0)"
    )
    assert "p2p_gym.envs" in mods
    assert not any(m == "torch" or m.startswith("torch.") for m in mods)
    assert "stable_baselines3" not in mods and "ray" not in mods


@pytest.mark.parametrize("package", ["p2p_gym.market", "p2p_gym.optim"])
def test_pure_layers_do_not_import_env_or_grid_libraries(package: str) -> None:
    pytest.importorskip(package)
    mods = _modules_after(f"import {package}")
    for heavy in ("gymnasium", "pettingzoo", "pandapower", "torch"):
        assert heavy not in mods, f"{package} imported {heavy}"
