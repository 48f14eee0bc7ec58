"""Small pieces shared by the studies' command lines: a parser whose errors are one line, and strict JSON."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line on stderr and exit code 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def json_safe(x: Any) -> Any:
    """``x`` as strict JSON data: non-finite floats → ``None``, tuples and arrays → lists, numpy scalars → Python."""
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    return x
