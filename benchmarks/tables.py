"""Plain-text and Markdown tables for the benchmark reports.

Example:
  >>> print(render_table(["run", "loss"], [["AdamW", "1.25"], ["IRE", "1.20"]]))
  | run   | loss |
  |-------|------|
  | AdamW | 1.25 |
  | IRE   | 1.20 |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["render_table", "write_text"]


def render_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (also readable as plain text), columns padded.

    Raises:
      ValueError: if a row has a different number of cells than ``header``.
    """
    cells = [[str(c) for c in header]]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(
                f"row {i} has {len(row)} cells, the header has {len(header)}: {row!r}"
            )
        cells.append([str(c) for c in row])
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def write_text(path: Path, text: str) -> Path:
    """Writes ``text`` (plus a final newline) to ``path``, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    return path
