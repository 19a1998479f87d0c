"""The two classifier problems: softmax regression and a tanh MLP.

Both are trained with the mean cross-entropy on ``data["y"]``; their logits
feed the ``fisher`` estimator, which needs the gradient on other labels
(:meth:`Classifier.label_grad`).

Example:
  >>> import numpy as np
  >>> from conformance.problems import build_problem
  >>> problem = build_problem("mlp", seed=0)
  >>> model = problem.bind()
  >>> [g.shape for g in model.label_grad(list(problem.params), np.zeros(32, np.int64))]
  [(4, 8), (8,), (8, 3), (3,)]
"""

from __future__ import annotations

import abc

from ._model import Model

__all__ = ["Classifier", "Logistic", "Mlp", "mean_cross_entropy", "softmax"]


def softmax(logits, xp):
    """softmax over the last axis of ``(n, classes)`` logits."""
    weights = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    return weights / xp.sum(weights, axis=1, keepdims=True)


def _one_hot(labels, classes: int, xp):
    """``(n, classes)`` bools: True where the column is the row's label."""
    return labels[:, None] == xp.arange(classes, dtype=labels.dtype)[None, :]


def mean_cross_entropy(logits, labels, xp):
    """The mean over rows of −log softmax(logits)[label], a 0-d array.

    Example:
      >>> import numpy as np
      >>> from array_api_compat import array_namespace
      >>> logits = np.zeros((2, 4))
      >>> bool(np.isclose(mean_cross_entropy(logits, np.array([0, 3]), array_namespace(logits)),
      ...                 np.log(4)))
      True
    """
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    log_z = xp.log(xp.sum(xp.exp(shifted), axis=1))
    chosen = _one_hot(labels, logits.shape[1], xp)
    picked = xp.sum(xp.where(chosen, shifted, xp.zeros_like(shifted)), axis=1)
    return xp.sum(log_z - picked) / labels.shape[0]


def _residual(probs, labels, xp):
    """∂L/∂logits = (softmax − onehot) / n."""
    chosen = _one_hot(labels, probs.shape[1], xp)
    return xp.where(chosen, probs - 1, probs) / labels.shape[0]


def _softmax_jvp(probs, tangent, xp):
    """The directional derivative of softmax: p ⊙ (ṫ − ⟨p, ṫ⟩)."""
    return probs * (tangent - xp.sum(probs * tangent, axis=1, keepdims=True))


class Classifier(Model):
    """A classifier trained with the mean cross-entropy on ``data["y"]``.

    Subclasses give :meth:`logits` and the gradient and Hessian-vector
    product of the mean cross-entropy on arbitrary labels.
    """

    @abc.abstractmethod
    def logits(self, params: list):
        """The logits ``(n, classes)`` on ``data["x"]``."""

    @abc.abstractmethod
    def label_grad(self, params: list, labels) -> list:
        """∇ of the mean cross-entropy on ``labels`` (the Fisher estimator's
        gradient with sampled labels)."""

    @abc.abstractmethod
    def label_hvp(self, params: list, vectors: list, labels) -> list:
        """H·vectors of the mean cross-entropy on ``labels``."""

    def loss(self, params):
        return mean_cross_entropy(self.logits(params), self.data["y"], self.namespace(params))

    def grad(self, params):
        return self.label_grad(params, self.data["y"])

    def hvp(self, params, vectors):
        return self.label_hvp(params, vectors, self.data["y"])


class Logistic(Classifier):
    """Softmax regression: logits = x W + b; params ``[W (f, c), b (c,)]``,
    data ``x (n, f)``, ``y (n,)`` integer labels."""

    def logits(self, params):
        w, b = params
        return self.namespace(params).matmul(self.data["x"], w) + b

    def label_grad(self, params, labels):
        xp = self.namespace(params)
        residual = _residual(softmax(self.logits(params), xp), labels, xp)
        return [xp.matmul(xp.matrix_transpose(self.data["x"]), residual), xp.sum(residual, axis=0)]

    def label_hvp(self, params, vectors, labels):
        # The cross-entropy Hessian does not depend on the labels.
        xp = self.namespace(params)
        x = self.data["x"]
        probs = softmax(self.logits(params), xp)
        tangent = xp.matmul(x, vectors[0]) + vectors[1]
        d_residual = _softmax_jvp(probs, tangent, xp) / x.shape[0]
        return [xp.matmul(xp.matrix_transpose(x), d_residual), xp.sum(d_residual, axis=0)]

    def hessian_diagonal(self, params):
        xp = self.namespace(params)
        x = self.data["x"]
        probs = softmax(self.logits(params), xp)
        variance = probs * (1 - probs) / x.shape[0]
        return [xp.matmul(xp.matrix_transpose(x * x), variance), xp.sum(variance, axis=0)]


class Mlp(Classifier):
    """logits = tanh(x W1 + b1) W2 + b2; params ``[W1 (f, m), b1 (m,),
    W2 (m, c), b2 (c,)]``, data ``x (n, f)``, ``y (n,)`` integer labels."""

    def _hidden(self, params, xp):
        return xp.tanh(xp.matmul(self.data["x"], params[0]) + params[1])

    def logits(self, params):
        xp = self.namespace(params)
        return xp.matmul(self._hidden(params, xp), params[2]) + params[3]

    def label_grad(self, params, labels):
        xp = self.namespace(params)
        t = xp.matrix_transpose
        x, w2 = self.data["x"], params[2]
        hidden = self._hidden(params, xp)
        residual = _residual(softmax(xp.matmul(hidden, w2) + params[3], xp), labels, xp)
        d_pre = xp.matmul(residual, t(w2)) * (1 - hidden * hidden)
        return [
            xp.matmul(t(x), d_pre),
            xp.sum(d_pre, axis=0),
            xp.matmul(t(hidden), residual),
            xp.sum(residual, axis=0),
        ]

    def label_hvp(self, params, vectors, labels):
        # Forward-over-reverse: the R-operator R{·} = d/dε (·)(params + ε·vectors)
        # applied to every intermediate of label_grad.
        xp = self.namespace(params)
        t = xp.matrix_transpose
        x, w2 = self.data["x"], params[2]
        v1, c1, v2, c2 = vectors
        hidden = self._hidden(params, xp)
        slope = 1 - hidden * hidden  # tanh'
        probs = softmax(xp.matmul(hidden, w2) + params[3], xp)
        residual = _residual(probs, labels, xp)
        r_hidden = slope * (xp.matmul(x, v1) + c1)
        r_logits = xp.matmul(r_hidden, w2) + xp.matmul(hidden, v2) + c2
        r_residual = _softmax_jvp(probs, r_logits, xp) / x.shape[0]
        d_hidden = xp.matmul(residual, t(w2))
        r_d_hidden = xp.matmul(r_residual, t(w2)) + xp.matmul(residual, t(v2))
        r_d_pre = r_d_hidden * slope - 2 * d_hidden * hidden * r_hidden
        return [
            xp.matmul(t(x), r_d_pre),
            xp.sum(r_d_pre, axis=0),
            xp.matmul(t(r_hidden), residual) + xp.matmul(t(hidden), r_residual),
            xp.sum(r_residual, axis=0),
        ]

    def hessian_diagonal(self, params):
        # Per example i and hidden unit j, with s = tanh', d = ∂L/∂hidden and
        # q_ij = w_jᵀ (diag p_i − p_i p_iᵀ) w_j (w_j the j-th row of W2):
        # ∂²L/∂W1_fj² = Σ_i x_if² (s_ij² q_ij / n − 2 h_ij s_ij d_ij), the same
        # with x = 1 for b1, and ∂²L/∂W2_jc² = Σ_i h_ij² p_ic (1 − p_ic) / n.
        xp = self.namespace(params)
        t = xp.matrix_transpose
        x, w2 = self.data["x"], params[2]
        n = x.shape[0]
        hidden = self._hidden(params, xp)
        slope = 1 - hidden * hidden
        probs = softmax(xp.matmul(hidden, w2) + params[3], xp)
        d_hidden = xp.matmul(_residual(probs, self.data["y"], xp), t(w2))
        mean_w = xp.matmul(probs, t(w2))
        q = xp.matmul(probs, t(w2 * w2)) - mean_w * mean_w
        first = slope * slope * q / n - 2 * hidden * slope * d_hidden
        variance = probs * (1 - probs) / n
        return [
            xp.matmul(t(x * x), first),
            xp.sum(first, axis=0),
            xp.matmul(t(hidden * hidden), variance),
            xp.sum(variance, axis=0),
        ]
