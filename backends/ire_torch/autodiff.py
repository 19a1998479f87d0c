"""Second-order autodiff: Hessian-vector products, trace and diagonal.

Everything goes through ``torch.autograd.grad`` (never
``backward(create_graph=True)``, which leaks the graph into ``.grad``), and
nothing touches ``p.grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ._checks import as_scalar_loss

__all__ = ["hessian_diagonal", "hessian_trace", "hessian_vector_products"]


def _loss_with_graph(loss_fn: Callable[[], torch.Tensor], name: str) -> torch.Tensor:
    if not callable(loss_fn):
        raise TypeError(f"{name} must be callable, got {type(loss_fn).__name__}")
    with torch.enable_grad():
        loss = as_scalar_loss(loss_fn(), name)
    if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
        raise ValueError(
            f"{name} must return a loss computed from the parameters with gradients "
            "enabled (a tensor with a grad_fn), got one without a grad_fn"
        )
    return loss.reshape(())


def _first_gradients(loss_fn, params, name):
    loss = _loss_with_graph(loss_fn, name)
    with torch.enable_grad():
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    for i, g in enumerate(grads):
        if g is None:
            raise ValueError(
                f"parameter {i} (shape {tuple(params[i].shape)}) does not influence the loss "
                f"returned by {name}: it has no gradient, so no curvature"
            )
    if not any(g.requires_grad for g in grads):
        raise ValueError(
            f"the gradients of the loss returned by {name} have no grad_fn: the loss is "
            "not twice differentiable (computed from detached tensors, or linear in every "
            "parameter)"
        )
    return loss, grads


def _second_order(grads, params, vectors, retain_graph, name):
    outputs = [g for g in grads if g.requires_grad]
    grad_outputs = [v for g, v in zip(grads, vectors) if g.requires_grad]
    try:
        products = torch.autograd.grad(
            outputs, params, grad_outputs=grad_outputs, retain_graph=retain_graph,
            allow_unused=True,
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"the loss returned by {name} is not twice differentiable (an operation in it "
            f"has no double backward): {error}"
        ) from error
    return [torch.zeros_like(p) if hv is None else hv for p, hv in zip(params, products)]


def hessian_vector_products(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    vectors: Sequence[Sequence[torch.Tensor]],
    name: str = "loss_fn",
) -> list[list[torch.Tensor]]:
    """H·v for each list ``v`` in ``vectors``, H the Hessian of ``loss_fn()``.

    The loss is evaluated once; its gradient graph is reused for every vector.

    Args:
      loss_fn: zero-argument callable returning the scalar loss built from
        ``params`` (no ``backward`` inside).
      params: the tensors to differentiate with respect to.
      vectors: ``vectors[j][i]`` is the j-th vector's part for ``params[i]``.
      name: how ``loss_fn`` is named in errors.

    Returns:
      ``products[j][i]`` = (H v_j) for ``params[i]``, detached.

    Example:
      >>> import torch
      >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
      >>> loss_fn = lambda: (torch.tensor([3.0, 5.0]) * w**2).sum() / 2
      >>> hessian_vector_products(loss_fn, [w], [[torch.ones(2)]])[0][0].tolist()
      [3.0, 5.0]
    """
    params = list(params)
    _, grads = _first_gradients(loss_fn, params, name)
    products = []
    for j, v in enumerate(vectors):
        last = j == len(vectors) - 1
        products.append([hv.detach() for hv in
                         _second_order(grads, params, list(v), not last, name)])
    return products


def hessian_trace(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    num_probes: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hutchinson's estimate of tr(H): the mean over probes z of zᵀHz.

    Useful to log the sharpness IRE is meant to reduce. Rademacher probes are
    drawn from ``generator`` (the global RNG when ``None``).

    Args:
      loss_fn: zero-argument callable returning the scalar loss.
      params: the parameters the Hessian is taken over (frozen ones excluded).
      num_probes: number of probes averaged.
      generator: optional ``torch.Generator`` on the parameters' device.

    Returns:
      A 0-d tensor on the parameters' device.

    Example:
      >>> import torch
      >>> w = torch.ones(3, requires_grad=True)
      >>> loss_fn = lambda: (torch.tensor([1.0, 2.0, 4.0]) * w**2).sum() / 2
      >>> float(hessian_trace(loss_fn, [w], num_probes=2))   # exact for a diagonal H
      7.0
    """
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be an integer >= 1, got {num_probes!r}")
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("params must hold at least one tensor that requires grad, got none")
    probes = []
    for _ in range(num_probes):
        probe = []
        for p in params:
            device = p.device if generator is None else generator.device
            bits = torch.randint(0, 2, p.shape, generator=generator, device=device,
                                 dtype=torch.int8)
            probe.append(bits.to(device=p.device, dtype=p.dtype) * 2 - 1)
        probes.append(probe)
    products = hessian_vector_products(loss_fn, params, probes)
    total = sum(
        sum((z * hz).sum() for z, hz in zip(probe, product))
        for probe, product in zip(probes, products)
    )
    return total / num_probes


def hessian_diagonal(
    loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], name: str = "loss_fn"
) -> list[torch.Tensor]:
    """The exact diagonal of the Hessian, one second derivative per coordinate.

    Costs one backward pass per coordinate: for small models and tests.

    Example:
      >>> import torch
      >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
      >>> loss_fn = lambda: w[0] ** 2 * w[1] + w[1] ** 3
      >>> [d.tolist() for d in hessian_diagonal(loss_fn, [w])]
      [[4.0, 12.0]]
    """
    params = list(params)
    _, grads = _first_gradients(loss_fn, params, name)
    diagonal = []
    for p, g in zip(params, grads):
        flat_grad = g.reshape(-1)
        values = torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
        if g.requires_grad:
            for k in range(p.numel()):
                try:
                    (row,) = torch.autograd.grad(flat_grad[k], p, retain_graph=True,
                                                 allow_unused=True)
                except RuntimeError as error:
                    raise RuntimeError(
                        f"the loss returned by {name} is not twice differentiable: {error}"
                    ) from error
                if row is not None:
                    values[k] = row.reshape(-1)[k].detach()
        diagonal.append(values.reshape(p.shape))
    return diagonal
