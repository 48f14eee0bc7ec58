"""Helpers for the tests that run the README's examples."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section(title: str) -> str:
    """The README text from the ``## {title}`` heading to the next ``## `` heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def python_blocks(text: str) -> list[str]:
    """The ```python code blocks of a markdown text."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)
