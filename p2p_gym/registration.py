"""Named task configurations: ``p2p_gym.make(id)``."""

from __future__ import annotations

from typing import Any

from p2p_gym.errors import EnvConfigError

#: id -> keyword arguments of :func:`p2p_gym.parallel_env`.
TASKS: dict[str, dict[str, Any]] = {
    "P2P-Tiny-Uniform-v0": {"scenario": "tiny", "mechanism": "uniform", "grid": "linear"},
    "P2P-Tiny-Bilateral-Peers-v0": {
        "scenario": "tiny",
        "mechanism": "bilateral",
        "grid": "linear",
        "peer_selection": True,
        "peer_k": 1,
        "preference": "distance",
        "preference_per_km": 0.5,
    },
    "P2P-Default-Uniform-v0": {"scenario": "default", "mechanism": "uniform", "grid": "linear"},
    "P2P-Default-PayAsBid-v0": {"scenario": "default", "mechanism": "pay_as_bid", "grid": "linear"},
    "P2P-Default-CDA-v0": {"scenario": "default", "mechanism": "cda", "grid": "linear"},
    "P2P-Default-SDR-v0": {"scenario": "default", "mechanism": "sdr", "grid": "linear"},
    "P2P-Default-Bilateral-Peers-v0": {
        "scenario": "default",
        "mechanism": "bilateral",
        "grid": "linear",
        "peer_selection": True,
        "peer_k": 3,
        "grid_policy": "fee",
    },
    "P2P-HighPV-Uniform-Block-v0": {
        "scenario": "default_high_pv",
        "mechanism": "uniform",
        "grid": "linear",
        "grid_policy": "block",
        "grid_penalty": 0.01,
    },
    "P2P-Default-Uniform-AC-v0": {"scenario": "default", "mechanism": "uniform", "grid": "ac"},
}


def list_tasks() -> list[str]:
    """The registered task ids."""
    return list(TASKS)


def make(task_id: str, **overrides: Any) -> Any:
    """Build the parallel environment of a registered task, with keyword overrides."""
    from p2p_gym.envs import parallel_env

    if task_id not in TASKS:
        raise EnvConfigError(f"task_id: unknown task {task_id!r}; registered: {list_tasks()}")
    return parallel_env(**{**TASKS[task_id], **overrides})
