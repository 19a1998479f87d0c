"""Line plots written as PNG files with Matplotlib's Agg backend.

Example:
  >>> import tempfile, pathlib
  >>> out = pathlib.Path(tempfile.mkdtemp()) / "curve.png"
  >>> plot_curves({"run": ([0, 1, 2], [3.0, 2.0, 1.5])}, out, title="t", ylabel="loss").exists()
  True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_curves"]


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    *,
    title: str,
    ylabel: str,
    xlabel: str = "step",
    logy: bool = False,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    hline: tuple[float, str] | None = None,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Plots named ``(x, y)`` curves on one axis and saves a PNG.

    Args:
      curves: label -> ``(x, y)``.
      path: the PNG file (folders are created).
      title: axis title.
      ylabel: y-axis label.
      xlabel: x-axis label.
      logy: logarithmic y axis.
      bands: label -> ``(low, high)`` shaded around the curve of that label.
      hline: ``(y, label)`` of a dashed horizontal reference line.
      ylim: ``(bottom, top)`` of the y axis (default: Matplotlib's choice).

    Returns:
      ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, (x, y) in curves.items():
        (line,) = ax.plot(x, y, label=label, linewidth=1.6)
        if bands and label in bands:
            low, high = bands[label]
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if hline is not None:
        ax.axhline(hline[0], color="gray", linestyle="--", linewidth=1, label=hline[1])
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
