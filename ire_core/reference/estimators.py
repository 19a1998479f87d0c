"""Curvature estimators composed from user-supplied autodiff callables."""

from __future__ import annotations

from ..curvature import hutchinson, sample_labels, squared


def fisher_estimate(logits_fn, label_grad_fn, params, uniforms):
    """Sampled-label Fisher (Gauss–Newton–Bartlett): ĥ = (∇θ CE(logits, ŷ))²
    with ŷ ~ softmax(logits) drawn from ``uniforms``.

    Args:
      logits_fn: ``params -> logits`` of shape ``(batch, classes)``.
      label_grad_fn: ``(params, labels) -> grads`` of the mean cross-entropy.
      params: list of arrays.
      uniforms: ``(batch,)`` draws in [0, 1).
    """
    labels = sample_labels(logits_fn(params), uniforms)
    return squared(label_grad_fn(params, labels))


def hutchinson_estimate(hvp_fn, params, probes):
    """Hutchinson: ĥ = mean over probes of z ⊙ (H z).

    Args:
      hvp_fn: ``(params, vectors) -> H·vectors``, lists of arrays.
      params: list of arrays.
      probes: ``probes[j]`` is the j-th probe, a list like ``params``.
    """
    return hutchinson(probes, [hvp_fn(params, z) for z in probes])
