"""Every bad input gets a clear error that names the argument."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_cases import batch, classifier

from ire_torch import IRE, SAMIRE, SGDIRE, AdamWIRE, hessian_trace


def _params():
    return classifier().parameters()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(kappa=-1.0), ValueError, "kappa must be a finite number >= 0, got -1.0"),
        (dict(kappa=float("nan")), ValueError, "kappa must be a finite number >= 0"),
        (dict(flat_fraction=1.5), ValueError, r"flat_fraction must be a number in \[0, 1\], got 1.5"),
        (dict(interval=0), ValueError, "interval must be an integer >= 1, got 0"),
        (dict(interval=2.5), ValueError, "interval must be an integer >= 1, got 2.5"),
        (dict(ema=1.0), ValueError, r"ema must be a number in \[0, 1\), got 1.0"),
        (dict(start_step=-1), ValueError, "start_step must be an integer >= 0, got -1"),
        (dict(estimator="newton"), ValueError, "estimator must be one of .* got 'newton'"),
        (dict(num_probes=0), ValueError, "num_probes must be an integer >= 1, got 0"),
        (dict(kappa_follows_lr="yes"), TypeError, "kappa_follows_lr must be True or False"),
        (dict(peak_lr=0.0), ValueError, "peak_lr must be a finite number > 0, got 0.0"),
        (dict(seed=-3), ValueError, "seed must be an integer >= 0, got -3"),
        (dict(probes_fn=3), TypeError, "probes_fn must be callable or None, got int"),
        (dict(label_uniforms_fn="u"), TypeError, "label_uniforms_fn must be callable or None"),
        (dict(sync_curvature="auto"), TypeError, "sync_curvature must be True, False or None"),
    ],
)
def test_bad_hyperparameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        SGDIRE(_params(), lr=0.1, **kwargs)
    with pytest.raises(error, match=message):
        IRE(torch.optim.Adam(_params()), **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rho=-0.1), "rho must be a finite number >= 0, got -0.1"),
        (dict(adaptive=1), "adaptive must be True or False, got 1"),
        (dict(sam_eps=0.0), "sam_eps must be a finite number > 0, got 0.0"),
    ],
)
def test_bad_sam_hyperparameters(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SAMIRE(_params(), torch.optim.SGD, lr=0.1, **kwargs)


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="params must hold at least one tensor, got an empty"):
        AdamWIRE([], lr=1e-3)
    with pytest.raises(TypeError, match="params must be an iterable .* got a single tensor"):
        SGDIRE(torch.ones(2, requires_grad=True))
    with pytest.raises(TypeError, match="base_optimizer must be a torch.optim.Optimizer instance"):
        IRE(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="base_optimizer must not itself be an IRE optimizer"):
        IRE(SGDIRE(_params()))
    with pytest.raises(TypeError, match="base_optimizer must be a torch.optim.Optimizer class"):
        SAMIRE(_params(), "sgd")
    with pytest.raises(ValueError, match="params must be None when base_optimizer is an"):
        SAMIRE(_params(), torch.optim.SGD(_params()))
    with pytest.raises(TypeError, match="base optimizer arguments cannot be given"):
        SAMIRE(None, torch.optim.SGD(_params()), momentum=0.9)


def test_sparse_gradients_are_rejected():
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    opt = IRE(torch.optim.SGD(embedding.parameters(), lr=0.1))
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients: parameter 0 of "
                                           r"param group 0 \(shape \(10, 3\)\)"):
        opt.step()


def test_closure_must_return_a_scalar():
    model = classifier()
    x, y = batch()
    opt = SGDIRE(model.parameters(), lr=0.1)

    def closure():
        opt.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")
        losses.mean().backward()
        return losses

    with pytest.raises(ValueError, match=r"closure must return a scalar loss .* shape \(16,\)"):
        opt.step(closure)
    sam = SAMIRE(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="closure must return a scalar loss"):
        sam.step(closure)
    with pytest.raises(ValueError, match="SAMIRE.step needs a closure"):
        sam.step()


def _one_backward(model, x, y):
    F.cross_entropy(model(x), y).backward()


def test_missing_or_bad_curvature_sources():
    model = classifier()
    x, y = batch()
    _one_backward(model, x, y)
    opt = SGDIRE(model.parameters(), lr=0.1, estimator="fisher")
    with pytest.raises(ValueError, match="estimator='fisher' needs logits_fn on refresh steps"):
        opt.step()
    with pytest.raises(TypeError, match="logits_fn must be callable or None, got Tensor"):
        opt.step(logits_fn=model(x))
    opt = SGDIRE(model.parameters(), lr=0.1, estimator="hutchinson")
    with pytest.raises(ValueError, match="estimator='hutchinson' needs loss_fn"):
        opt.step()
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar loss .* shape \(16,\)"):
        opt.step(loss_fn=lambda: F.cross_entropy(model(x), y, reduction="none"))
    with pytest.raises(ValueError, match="loss_fn must return a loss computed from the parameters"):
        opt.step(loss_fn=lambda: torch.tensor(1.0))
    opt = SGDIRE(model.parameters(), lr=0.1, estimator="fisher")
    with pytest.raises(ValueError, match="logits_fn must return logits computed from the param"):
        opt.step(logits_fn=lambda: model(x).detach())


def test_loss_that_is_not_twice_differentiable():
    class NoDoubleBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            ctx.save_for_backward(value)
            return value.sin()

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            (value,) = ctx.saved_tensors
            return grad * value.cos()

    w = torch.nn.Parameter(torch.ones(3))
    opt = SGDIRE([w], lr=0.1, estimator="hutchinson")
    NoDoubleBackward.apply(w).sum().backward()
    with pytest.raises((RuntimeError, ValueError), match="not twice differentiable"):
        opt.step(loss_fn=lambda: NoDoubleBackward.apply(w).sum())
    with pytest.raises(ValueError, match="not twice differentiable"):
        opt.step(loss_fn=lambda: (w * torch.tensor([1.0, 2.0, 3.0])).sum())


def test_parameter_missing_from_the_loss_is_named():
    model = classifier()
    x, y = batch()
    _one_backward(model, x, y)
    opt = SGDIRE(model.parameters(), lr=0.1, estimator="hutchinson")
    with pytest.raises(ValueError, match=r"parameter 3 \(shape \(3,\)\) does not influence"):
        opt.step(loss_fn=lambda: (model[2].weight ** 2).sum() + model[0](x).pow(2).sum())


def test_supplied_draws_are_checked():
    model = classifier()
    x, y = batch()
    _one_backward(model, x, y)
    opt = SGDIRE(model.parameters(), lr=0.1, estimator="hutchinson",
                 probes_fn=lambda step: [[torch.ones(2)] * 4])
    with pytest.raises(ValueError, match=r"probes_fn\(0\)\[0\]\[0\] must have the shape of its"):
        opt.step(loss_fn=lambda: F.cross_entropy(model(x), y))
    opt = SGDIRE(model.parameters(), lr=0.1, estimator="hutchinson", num_probes=2,
                 probes_fn=lambda step: [[torch.ones_like(p) for p in model.parameters()]])
    with pytest.raises(ValueError, match=r"probes_fn\(0\) must return num_probes=2 probes, got 1"):
        opt.step(loss_fn=lambda: F.cross_entropy(model(x), y))
    opt = SGDIRE(model.parameters(), lr=0.1, estimator="fisher",
                 label_uniforms_fn=lambda step: torch.rand(3))
    with pytest.raises(ValueError, match=r"label_uniforms_fn\(0\) must return an array of shape"):
        opt.step(logits_fn=lambda: model(x))


def test_user_estimator_output_is_checked():
    model = classifier()
    x, y = batch()
    _one_backward(model, x, y)
    opt = SGDIRE(model.parameters(), lr=0.1, estimator=lambda params, grads: grads[:2])
    with pytest.raises(ValueError, match="estimator callable must return one tensor per param"):
        opt.step()
    opt = SGDIRE(model.parameters(), lr=0.1, estimator=lambda params, grads: [torch.ones(2)] * 4)
    with pytest.raises(ValueError, match=r"returned shape \(2,\) for parameter 0"):
        opt.step()


def test_sam_steps_in_the_wrong_order():
    model = classifier()
    x, y = batch()
    opt = SAMIRE(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="second_step needs a first_step before it"):
        opt.second_step()
    with pytest.raises(RuntimeError, match="first_step needs gradients"):
        opt.first_step()
    _one_backward(model, x, y)
    opt.first_step()
    with pytest.raises(RuntimeError, match="first_step was called twice"):
        opt.first_step()


def test_hessian_trace_arguments():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="num_probes must be an integer >= 1, got 0"):
        hessian_trace(lambda: (w**2).sum(), [w], num_probes=0)
    with pytest.raises(ValueError, match="params must hold at least one tensor that requires"):
        hessian_trace(lambda: (w**2).sum(), [torch.ones(2)])


def test_kappa_follows_lr_needs_an_lr():
    model = classifier()
    opt = SGDIRE(model.parameters(), lr=0.1, kappa_follows_lr=True, interval=1)
    del opt.param_groups[0]["lr"]
    _one_backward(model, *batch())
    with pytest.raises(ValueError, match="kappa_follows_lr=True needs an 'lr' in every param"):
        opt.step()
