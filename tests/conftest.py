"""Shared fixtures: built scenarios are cached per test session (they are immutable)."""

from __future__ import annotations

import functools
import warnings

import pytest

warnings.filterwarnings("ignore", module="pandapower")


@functools.lru_cache(maxsize=16)
def cached_scenario(name: str, **overrides):  # type: ignore[no-untyped-def]
    from p2p_gym.scenarios import load_scenario

    return load_scenario(name, **overrides)


@pytest.fixture(scope="session")
def tiny():  # type: ignore[no-untyped-def]
    return cached_scenario("tiny")


@pytest.fixture(scope="session")
def default_scenario():  # type: ignore[no-untyped-def]
    return cached_scenario("default")
