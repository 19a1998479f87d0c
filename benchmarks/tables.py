"""Plain-text and Markdown tables for the benchmark reports.

Example:
  >>> print(render_table(["run", "loss"], [["AdamW", "1.25"], ["IRE", "1.20"]]))
  | run   | loss |
  |-------|------|
  | AdamW | 1.25 |
  | IRE   | 1.20 |

Numbers read best right-aligned (``align``, one letter per column):
  >>> print(render_table(["run", "ms"], [["AdamW", "9.5"], ["IRE", "10.25"]], align="lr"))
  | run   |    ms |
  |-------|------:|
  | AdamW |   9.5 |
  | IRE   | 10.25 |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["render_table", "write_text"]


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None
) -> str:
    """A Markdown table (also readable as plain text), columns padded.

    Args:
      header: the column titles.
      rows: the cells, converted with ``str``.
      align: one letter per column, ``"l"`` (left) or ``"r"`` (right, marked
        ``---:`` in the rule); ``None`` aligns every column left.

    Raises:
      ValueError: if a row has a different number of cells than ``header``,
        or ``align`` is not one ``l``/``r`` per column.
    """
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(
            f"align must hold one 'l' or 'r' per column ({len(header)}), got {align!r}"
        )
    cells = [[str(c) for c in header]]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(
                f"row {i} has {len(row)} cells, the header has {len(header)}: {row!r}"
            )
        cells.append([str(c) for c in row])
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]

    def line(row):
        padded = (c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if a == "r" else "-")
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def write_text(path: Path, text: str) -> Path:
    """Writes ``text`` (plus a final newline) to ``path``, creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    return path
