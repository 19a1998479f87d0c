"""The README's code blocks, by section, so tests run them exactly as written."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def python_block(heading: str) -> str:
    """The first ```python block under the ``## heading`` section."""
    text = README.read_text(encoding="utf-8")
    section = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if section is None:
        raise LookupError(f"README.md has no section '## {heading}'")
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    if block is None:
        raise LookupError(f"README.md section '## {heading}' has no python block")
    return block.group(1)


def run_block(heading: str) -> dict:
    """Executes the block as a script; returns its globals."""
    namespace = {"__name__": "__readme__"}
    exec(compile(python_block(heading), f"README.md ({heading})", "exec"), namespace)
    return namespace
