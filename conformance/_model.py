"""The interface every conformance problem's mathematics implements.

Example:
  >>> import numpy as np
  >>> from conformance.problems import build_problem
  >>> model = build_problem("diag_quadratic", seed=0).bind()
  >>> params = [np.ones(8)]
  >>> bool(np.all(model.hessian_diagonal(params)[0] == model.hvp(params, params)[0]))
  True
"""

from __future__ import annotations

import abc

from array_api_compat import array_namespace

__all__ = ["Model"]


class Model(abc.ABC):
    """The exact mathematics of one problem, over the Python array API.

    Every method takes parameter lists (one array per parameter, in the
    problem's order) of any array-API library and returns arrays of the same
    library and dtype: the loss as a 0-d array, derivatives as lists shaped
    like the parameters. The loss is differentiable by the library's own
    autodiff.

    Args:
      data: the problem's data as arrays of the caller's library (float data
        in the dtype the computation runs in, labels as integers).
      xp: the namespace to compute with; ``None`` takes
        ``array_api_compat.array_namespace`` of each call's parameters.
    """

    def __init__(self, data: dict, xp=None):
        self.data = data
        self.xp = xp

    def namespace(self, params: list):
        """The namespace the computation on ``params`` runs in."""
        return self.xp if self.xp is not None else array_namespace(*params)

    @abc.abstractmethod
    def loss(self, params: list):
        """The loss at ``params`` (a 0-d array)."""

    @abc.abstractmethod
    def grad(self, params: list) -> list:
        """∇L(params), one array per parameter."""

    @abc.abstractmethod
    def hvp(self, params: list, vectors: list) -> list:
        """H(params)·vectors, the exact Hessian-vector product."""

    @abc.abstractmethod
    def hessian_diagonal(self, params: list) -> list:
        """The exact diagonal of the Hessian at ``params``."""
