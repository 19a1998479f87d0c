"""The demo corpus: the English text of Python's own documentation topics.

``pydoc_data.topics`` ships with every CPython installation, so the language
model benchmarks need no download. The text is read at the byte level
(vocabulary of 256), split 90/10 into training and validation bytes, and cut
into random windows drawn from an explicit seed.

Example:
  >>> corpus = load_corpus()
  >>> str(corpus.train.dtype), corpus.vocab_size, round(len(corpus.train) / len(corpus.val))
  ('uint8', 256, 9)
  >>> batches = WindowSampler(corpus.train, seq_len=16, batch_size=4, seed=0)
  >>> x, y = batches.next()
  >>> x.shape, bool((x[:, 1:] == y[:, :-1]).all())
  ((4, 16), True)
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Corpus", "WindowSampler", "corpus_bytes", "evaluation_windows", "load_corpus"]

VOCAB_SIZE = 256


def corpus_bytes() -> bytes:
    """The text of ``pydoc_data.topics.topics``, values joined in sorted-key
    order, UTF-8 encoded."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics)).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Training and validation bytes as ``uint8`` NumPy arrays (every
    framework converts them without a copy).

    Attributes:
      train: the first ``train_fraction`` of the bytes.
      val: the remaining bytes.
      vocab_size: 256.
    """

    train: np.ndarray
    val: np.ndarray
    vocab_size: int = VOCAB_SIZE


def load_corpus(train_fraction: float = 0.9) -> Corpus:
    """Loads the corpus and splits it at ``train_fraction`` of its length.

    Args:
      train_fraction: share of the bytes used for training, in (0, 1).

    Raises:
      ValueError: if ``train_fraction`` is not strictly between 0 and 1.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    data = np.frombuffer(corpus_bytes(), dtype=np.uint8)
    cut = int(len(data) * train_fraction)
    return Corpus(train=data[:cut], val=data[cut:])


def _windows(data: np.ndarray, starts: np.ndarray, seq_len: int):
    offsets = np.arange(seq_len + 1)
    chunk = data[starts[:, None] + offsets].astype(np.int64)
    return chunk[:, :-1], chunk[:, 1:]


class WindowSampler:
    """Random windows of ``seq_len + 1`` bytes: inputs and next-byte targets.

    The sequence of batches is a pure function of ``seed``, so two runs with
    the same seed see the same data in the same order.

    Args:
      data: a 1-D ``uint8`` array.
      seq_len: tokens per example.
      batch_size: examples per batch.
      seed: seed of the window positions.
    """

    def __init__(self, data: np.ndarray, seq_len: int, batch_size: int, seed: int):
        if seq_len < 1 or batch_size < 1:
            raise ValueError(
                f"seq_len and batch_size must be >= 1, got seq_len={seq_len!r}, "
                f"batch_size={batch_size!r}"
            )
        if len(data) <= seq_len + 1:
            raise ValueError(
                f"seq_len={seq_len!r} needs more than {seq_len + 1} bytes, got {len(data)}"
            )
        self.data, self.seq_len, self.batch_size = data, seq_len, batch_size
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch ``(inputs, targets)``, both ``(batch, seq_len)`` int64."""
        high = len(self.data) - self.seq_len - 1
        starts = self.rng.integers(0, high, size=self.batch_size)
        return _windows(self.data, starts, self.seq_len)


def evaluation_windows(data: np.ndarray, seq_len: int, count: int):
    """``count`` evenly spaced, fixed windows of ``data`` for evaluation.

    Example:
      >>> x, y = evaluation_windows(np.arange(100, dtype=np.uint8), 8, 3)
      >>> x[:, 0].tolist()
      [0, 45, 91]
    """
    high = len(data) - seq_len - 1
    if high < 0:
        raise ValueError(f"seq_len={seq_len!r} needs more than {seq_len + 1} bytes, got {len(data)}")
    starts = np.linspace(0, high, count).astype(np.int64)
    return _windows(data, starts, seq_len)
