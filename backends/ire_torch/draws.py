"""The random draws of the curvature estimators: native or supplied.

By default the Hutchinson probes and the labels of the ``fisher`` estimator
come from a seeded ``torch.Generator`` on the parameters' device, whose state
is saved with the optimizer. For reproducing a run on another backend (or the
NumPy reference), the draws can be supplied instead, as functions of the
0-based optimizer step:

* ``probes_fn(step)`` returns ``num_probes`` probes, each a list with one
  ±1 array per parameter that receives curvature (in ``param_groups`` order);
* ``label_uniforms_fn(step)`` returns uniforms in [0, 1) of the shape of the
  logits without their class dimension; labels are then drawn with
  :func:`ire_core.sample_labels`.

Arrays may be tensors, NumPy arrays or anything ``torch.as_tensor`` accepts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

__all__ = ["Draws"]


class Draws:
    """Source of the Hutchinson probes and of the label uniforms.

    Args:
      seed: seed of the native generator.
      probes_fn: optional ``step -> probes`` supplying the probes.
      label_uniforms_fn: optional ``step -> uniforms`` supplying the uniforms.

    Example:
      >>> import torch
      >>> draws = Draws(seed=0)
      >>> probes = draws.probes(0, [torch.zeros(2, 3)], num_probes=2)
      >>> len(probes), tuple(probes[1][0].shape), set(probes[0][0].flatten().tolist()) <= {-1.0, 1.0}
      (2, (2, 3), True)
      >>> draws = Draws(label_uniforms_fn=lambda step: [0.25, 0.75])
      >>> draws.label_uniforms(3, (2,), torch.device("cpu"), torch.float64).tolist()
      [0.25, 0.75]
    """

    def __init__(
        self,
        seed: int = 0,
        probes_fn: Callable[[int], Sequence[Sequence]] | None = None,
        label_uniforms_fn: Callable[[int], object] | None = None,
    ):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        for name, fn in (("probes_fn", probes_fn), ("label_uniforms_fn", label_uniforms_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        self.seed = seed
        self.probes_fn = probes_fn
        self.label_uniforms_fn = label_uniforms_fn
        self._generator: torch.Generator | None = None

    def generator(self, device: torch.device) -> torch.Generator:
        """The native generator, created seeded on ``device`` at first use."""
        if self._generator is None:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return self._generator

    def probes(self, step: int, params: Sequence[torch.Tensor], num_probes: int) -> list:
        """``num_probes`` Rademacher probes shaped and typed like ``params``."""
        if self.probes_fn is None:
            return [self._native_probe(params) for _ in range(num_probes)]
        supplied = list(self.probes_fn(step))
        if len(supplied) != num_probes:
            raise ValueError(
                f"probes_fn({step}) must return num_probes={num_probes} probes, "
                f"got {len(supplied)}"
            )
        probes = []
        for j, probe in enumerate(supplied):
            probe = list(probe)
            if len(probe) != len(params):
                raise ValueError(
                    f"probes_fn({step})[{j}] must hold one array per parameter receiving "
                    f"curvature ({len(params)}), got {len(probe)}"
                )
            probes.append([_as_like(z, p, f"probes_fn({step})[{j}][{i}]")
                           for i, (z, p) in enumerate(zip(probe, params))])
        return probes

    def label_uniforms(self, step: int, shape: tuple, device, dtype) -> torch.Tensor:
        """Uniforms in [0, 1) of ``shape`` for drawing labels."""
        if self.label_uniforms_fn is None:
            generator = self.generator(device)
            uniforms = torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)
            return uniforms.to(device)
        uniforms = torch.as_tensor(self.label_uniforms_fn(step), dtype=dtype, device=device)
        if tuple(uniforms.shape) != tuple(shape):
            raise ValueError(
                f"label_uniforms_fn({step}) must return an array of shape {tuple(shape)} "
                f"(the logits without their class dimension), got {tuple(uniforms.shape)}"
            )
        return uniforms

    def _native_probe(self, params):
        generator = self.generator(params[0].device)
        probe = []
        for p in params:
            bits = torch.randint(0, 2, p.shape, generator=generator, device=generator.device,
                                 dtype=torch.int8)
            probe.append(bits.to(device=p.device, dtype=p.dtype) * 2 - 1)
        return probe

    def state_dict(self) -> dict:
        """The generator's state (``None`` before the first native draw)."""
        if self._generator is None:
            return {"seed": self.seed, "generator": None, "device": None}
        return {
            "seed": self.seed,
            "generator": self._generator.get_state(),
            "device": str(self._generator.device),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores what :meth:`state_dict` returned.

        A generator saved on a device this process cannot use (a CUDA
        checkpoint resumed on a machine without CUDA) cannot continue its
        stream: a warning says so, and the draws start afresh from ``seed``
        on the parameters' device. Everything else in the checkpoint loads.
        """
        self.seed = int(state["seed"])
        self._generator = None
        if state.get("generator") is None:
            return
        device = torch.device(state["device"])
        try:
            generator = torch.Generator(device=device)
        except RuntimeError as error:
            warnings.warn(
                f"the saved draws come from a torch.Generator on device {str(device)!r}, which "
                f"cannot be created here ({str(error).split('.')[0]}); the probes and sampled "
                f"labels restart from seed={self.seed} on the parameters' device",
                RuntimeWarning, stacklevel=2,
            )
            return
        generator.set_state(state["generator"].cpu())
        self._generator = generator


def _as_like(value, reference: torch.Tensor, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=reference.dtype, device=reference.device)
    if tensor.shape != reference.shape:
        raise ValueError(
            f"{name} must have the shape of its parameter {tuple(reference.shape)}, "
            f"got {tuple(tensor.shape)}"
        )
    return tensor
