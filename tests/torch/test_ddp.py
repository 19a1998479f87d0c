"""DDP with 2 gloo CPU processes: curvature is averaged across ranks, every
rank holds the same mask and the same parameters, equal to one process
stepping on the combined batch."""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch_cases import batch, classifier

from ire_torch import SAMIRE, SGDIRE, AdamWIRE

WORLD = 2
STEPS = 6
N = 16
UNIFORMS = torch.rand(STEPS, N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _uniforms(rank, world):
    size = N // world

    def supply(step):
        return UNIFORMS[step, rank * size:(rank + 1) * size]

    return supply


def _optimizer(case, params, rank, world):
    common = dict(kappa=2.0, flat_fraction=0.5, interval=2)
    if case == "momentum-gradient":
        return SGDIRE(params, lr=0.1, momentum=0.9, **common)
    if case == "adamw-fisher":
        return AdamWIRE(params, lr=1e-2, estimator="fisher", ema=0.5,
                        label_uniforms_fn=_uniforms(rank, world), **common)
    if case == "sgd-hutchinson":
        return SGDIRE(params, lr=0.1, estimator="hutchinson", num_probes=2, seed=3, **common)
    if case == "sam-exact":
        return SAMIRE(params, torch.optim.SGD, lr=0.1, rho=0.05, estimator="exact", **common)
    raise ValueError(case)


CASES = ("momentum-gradient", "adamw-fisher", "sgd-hutchinson", "sam-exact")


def _train(case, rank, world):
    """``rank``'s share of the batch; the module under DDP when world > 1."""
    model = classifier(dtype=torch.float64)
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    x, y = batch(n=N, dtype=torch.float64)
    size = N // world
    x, y = x[rank * size:(rank + 1) * size], y[rank * size:(rank + 1) * size]
    opt = _optimizer(case, model.parameters(), rank, world)

    def loss_fn():  # curvature sources use the bare module (no DDP hooks)
        return F.cross_entropy(model(x), y)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(wrapped(x), y)
        loss.backward()
        return loss

    for _ in range(STEPS):
        if isinstance(opt, SAMIRE):
            opt.step(closure, loss_fn=loss_fn)
        else:
            closure()
            opt.step(loss_fn=loss_fn, logits_fn=lambda: model(x))
    params = [p.detach().clone() for p in model.parameters()]
    masks = [opt.flat_mask(p).clone() for p in model.parameters()]
    return params, masks


def _worker(rank, world, out_dir):
    torch.set_num_threads(1)
    # A file rendezvous: no TCP port to pick, so none to lose to another process.
    store = "file://" + os.path.join(out_dir, "rendezvous")
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        results = {case: _train(case, rank, world) for case in CASES}
    finally:
        dist.destroy_process_group()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


def test_ddp_ranks_agree_and_match_a_single_process(tmp_path):
    mp.spawn(_worker, args=(WORLD, str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for case in CASES:
        single_params, single_masks = _train(case, rank=0, world=1)
        (params0, masks0), (params1, masks1) = ranks[0][case], ranks[1][case]
        for a, b in zip(params0, params1):
            assert torch.equal(a, b), case
        for a, b, c in zip(masks0, masks1, single_masks):
            assert torch.equal(a, b) and torch.equal(a, c), case
        assert any(m.any() for m in masks0), case
        for a, b in zip(params0, single_params):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=case)
