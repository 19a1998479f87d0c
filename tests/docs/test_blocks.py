"""Every code block of the guides runs, and every block says what it holds.

The pages' Python blocks run as doctests (``pytest --doctest-glob='*.md' docs``
in ``nox -s docs``), and doctest runs only the ``>>>`` lines. These tests read
the top-level pages (``docs/*.md``, not the generated ``docs/results``) and
require that:

* every fenced block has a language (``python``, ``bash``, ``text``, a MyST
  directive such as ``{toctree}``, …);
* every ``python`` block holds ``>>>`` examples, so none of them is left out
  of the doctest run;
* a block of shell commands is labelled ``bash``, ``console`` or ``shell``.

They read the Markdown sources only, not the built site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(DOCS.glob("*.md"))

PYTHON = {"python", "py", "python3", "pycon"}
SHELL = {"bash", "console", "shell", "sh"}
# The first word of a line that runs a command rather than showing text.
COMMANDS = {"pip", "nox", "python", "python3", "pytest", "git", "cd", "export", "uv", "$"}

_OPEN = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")


@dataclass
class Block:
    """One fenced block: its 1-based opening line, language and body."""

    line: int
    language: str
    body: str


def fenced_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown (MyST) text, in order.

    A block opens with three or more backticks or tildes, optionally indented
    (a block inside a list item), and closes with a line holding only a fence
    of the same character at least as long. The language is the first word
    of the info string (``python``, ``{toctree}``, …), ``""`` when absent.

    >>> [(b.line, b.language, b.body) for b in fenced_blocks("x\\n```py\\n1\\n```\\n~~~\\n~~~")]
    [(2, 'py', '1'), (5, '', '')]
    """
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        info = opening["info"].strip()
        if fence[0] == "`" and "`" in info:  # an inline code span, not a fence
            i += 1
            continue
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        language = info.split()[0] if info else ""
        blocks.append(Block(i + 1, language, "\n".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


def problems(text: str) -> list[str]:
    """What is wrong with the fenced blocks of one page, one line per block."""
    found = []
    for block in fenced_blocks(text):
        where = f"line {block.line}"
        commands = [
            line for line in block.body.splitlines()
            if line.split(maxsplit=1)[:1] and line.split(maxsplit=1)[0] in COMMANDS
        ]
        if not block.language:
            kind = "bash" if commands else "python, bash or text"
            found.append(f"{where}: a block without a language (label it {kind})")
        elif block.language in PYTHON and ">>>" not in block.body:
            found.append(
                f"{where}: a python block without '>>>' never runs as a doctest "
                "(write it as '>>>' examples)"
            )
        elif block.language not in PYTHON | SHELL and commands:
            found.append(f"{where}: shell commands in a '{block.language}' block (label it bash)")
    return found


def test_pages_are_found():
    assert {"torch.md", "jax.md", "keras.md", "index.md"} <= {page.name for page in PAGES}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_block_runs_or_is_labelled(page):
    assert problems(page.read_text(encoding="utf-8")) == []


def test_problems_catches_unrun_and_unlabelled_blocks():
    page = "\n".join([
        "```python",
        ">>> 1 + 1",
        "2",
        "",
        "```",
        "* a list item:",
        "  ```python",
        "  model(x)",
        "  ```",
        "```",
        "pip install ire-optim",
        "```",
        "```text",
        "nox -s docs",
        "```",
        "```bash",
        "nox -s docs",
        "```",
        "```{toctree}",
        "torch",
        "```",
    ])
    assert [problem.split(":")[0] for problem in problems(page)] == ["line 7", "line 10", "line 13"]
