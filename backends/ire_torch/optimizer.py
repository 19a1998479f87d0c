"""``IRE``: Implicit Regularization Enhancement around any torch.optim optimizer.

Reference: Mingze Wang et al., "Improving Generalization and Convergence by
Enhancing Implicit Regularization", NeurIPS 2024 (arXiv 2405.20763).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from itertools import chain

import torch

import ire_core
from ire_core import IREConfig
from ire_core.config import check_bool, check_kappa, check_positive
from ire_core.threshold import with_exact_rank

from ._checks import as_scalar_loss, check_optimizer
from .amplify import apply_amplification, snapshot
from .checkpoint import ire_state, load_ire_state
from .distributed import CurvatureSync
from .draws import Draws
from .estimators import CurvatureInputs, check_sources, estimate_curvature
from .fused import fused_step
from .monitoring import MaskStats, refresh_report
from .selection import exact_threshold, select_flat_mask

__all__ = ["IRE", "IRE_KEYWORDS"]

IRE_KEYWORDS = (
    "kappa",
    "flat_fraction",
    "interval",
    "ema",
    "start_step",
    "estimator",
    "num_probes",
    "kappa_follows_lr",
    "peak_lr",
    "seed",
    "probes_fn",
    "label_uniforms_fn",
    "sync_curvature",
    "process_group",
    "fused_update",
    "threshold_fn",
)
"""The keyword arguments :class:`IRE` takes besides the base optimizer."""

_GROUP_DEFAULTS = {"ire_kappa": None, "ire_enabled": True}


def _as_float(value):
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return value


class IRE(torch.optim.Optimizer):
    """IRE around a ``torch.optim`` optimizer: θ ← θ + Δ + κ·P ⊙ Δ.

    The base optimizer takes its ordinary step Δ in place; IRE then adds κ·Δ
    on the flattest fraction γ of all coordinates of the model (the flat mask
    P, chosen from a diagonal curvature estimate every ``interval`` steps and
    held in between). The base optimizer's state is untouched.

    ``param_groups`` and ``state`` are the base optimizer's own objects, so LR
    schedulers, ``add_param_group`` and ``opt.state[p]`` behave as usual.
    Each group also carries three IRE keys:

    * ``"ire_enabled"`` (default ``True``): ``False`` gives the group the bare
      base step and leaves its coordinates out of the mask selection;
    * ``"ire_kappa"`` (default ``None``): the group's own κ (a number or a
      function of the step) instead of ``kappa``;
    * ``"ire_peak_lr"``: lr_peak for ``kappa_follows_lr`` (see below).

    Curvature sources. ``step`` accepts two optional zero-argument callables,
    evaluated at the current parameters and only on refresh steps (at most one
    extra forward pass every ``interval`` steps):

    * ``loss_fn()`` returns the scalar loss (no ``backward`` inside); used by
      ``estimator="hutchinson"`` (Hessian-vector products by
      ``torch.autograd.grad``) and ``"exact"``;
    * ``logits_fn()`` returns ``(..., classes)`` logits; used by ``"fisher"``
      (labels sampled from the model, cross-entropy gradient squared).

    ``set_curvature_source`` stores default callables for loops that call a
    bare ``step()`` (trainers). ``"gradient"`` needs neither; a callable
    estimator is called as ``estimator(params, grads)`` and returns one tensor
    per parameter.

    Args:
      base_optimizer: the ``torch.optim.Optimizer`` to wrap.
      kappa: κ >= 0, or a function ``step -> κ``.
      flat_fraction: γ in [0, 1], or a function ``step -> γ``.
      interval: refresh the mask every ``interval`` optimizer steps (K).
      ema: β in [0, 1) of the curvature moving average.
      start_step: IRE leaves the first ``start_step`` steps to the base.
      estimator: ``"gradient"``, ``"fisher"``, ``"hutchinson"``, ``"exact"``
        or a callable ``(params, grads) -> list of tensors``.
      num_probes: Hutchinson probes per refresh.
      kappa_follows_lr: scale κ by ``lr / ire_peak_lr`` of each group. The
        peak is ``peak_lr`` when given, else the group's lr at its first
        step; it rises to any larger lr the group reaches, so schedules with
        a warm-up (``OneCycleLR``) work unchanged.
      peak_lr: lr_peak for ``kappa_follows_lr`` in every group.
      seed: seed of the native ``torch.Generator`` drawing probes and labels
        (kept in ``state_dict``).
      probes_fn: optional ``step -> probes`` supplying Hutchinson probes
        (see ``ire_torch.draws``).
      label_uniforms_fn: optional ``step -> uniforms`` supplying the uniforms
        from which the ``fisher`` labels are drawn.
      sync_curvature: average curvature across ranks (``None``: whenever
        ``torch.distributed`` is initialized with several ranks).
      process_group: the group curvature is averaged over.
      fused_update: apply (1 + κ·P) inside the base update when the base is
        a plain ``torch.optim.SGD``, ``Adam`` or ``AdamW`` (see
        ``ire_torch.fused``): no copy of the parameters, the same result
        up to rounding, the same state. ``False`` always takes the generic
        path (copy, base step, rescale the displacement), which every other
        base optimizer takes.
      threshold_fn: how τ is found at a refresh, ``(values, k) -> τ``
        (see ``ire_core.threshold``): ``None`` for the exact k-th
        smallest (``ire_torch.selection.exact_threshold``),
        ``ire_core.threshold.SampledThreshold()`` for a sampled
        quantile whose cost does not grow with the model,
        ``ire_core.HistogramThreshold(reduce=...)`` for sharded models.

    Example:
      >>> import torch
      >>> from ire_torch import IRE
      >>> model = torch.nn.Linear(4, 1)
      >>> opt = IRE(torch.optim.SGD(model.parameters(), lr=0.1), kappa=1.0,
      ...           flat_fraction=0.5, interval=10)
      >>> x, y = torch.randn(8, 4), torch.randn(8, 1)
      >>> for _ in range(3):
      ...     loss = torch.nn.functional.mse_loss(model(x), y)
      ...     loss.backward()
      ...     opt.step()
      ...     opt.zero_grad()
      >>> report = opt.mask_stats()
      >>> report.flat_count, report.total
      (2, 5)
    """

    # The SAM fields of IREConfig (rho, adaptive, sam_eps); SAMIRE sets them
    # before calling IRE.__init__ so that one IREConfig validates everything.
    _sam_config: dict = {}

    def __init__(
        self,
        base_optimizer: torch.optim.Optimizer,
        *,
        kappa=2.0,
        flat_fraction=0.6,
        interval: int = 10,
        ema: float = 0.0,
        start_step: int = 0,
        estimator="gradient",
        num_probes: int = 1,
        kappa_follows_lr: bool = False,
        peak_lr: float | None = None,
        seed: int = 0,
        probes_fn: Callable | None = None,
        label_uniforms_fn: Callable | None = None,
        sync_curvature: bool | None = None,
        process_group=None,
        fused_update: bool = True,
        threshold_fn: Callable | None = None,
    ):
        check_optimizer(base_optimizer, "base_optimizer")
        check_bool(fused_update, "fused_update")
        if threshold_fn is not None and not callable(threshold_fn):
            raise TypeError(
                f"threshold_fn must be a callable (values, k) -> threshold or None, got "
                f"{type(threshold_fn).__name__}"
            )
        if isinstance(base_optimizer, IRE):
            raise TypeError("base_optimizer must not itself be an IRE optimizer")
        self.config = IREConfig(
            kappa=kappa,
            flat_fraction=flat_fraction,
            interval=interval,
            ema=ema,
            start_step=start_step,
            estimator=estimator,
            num_probes=num_probes,
            kappa_follows_lr=kappa_follows_lr,
            **self._sam_config,
        )
        if peak_lr is not None:
            check_positive(peak_lr, "peak_lr")
        self.base_optimizer = base_optimizer
        self._peak_lr = peak_lr
        self.fused_update = fused_update
        # A SampledThreshold's sample is ranked by this backend's search, not the reference sort.
        self._threshold_fn = with_exact_rank(threshold_fn or exact_threshold, exact_threshold)
        self._draws = Draws(seed, probes_fn, label_uniforms_fn)
        self._sync = CurvatureSync(sync_curvature, process_group)
        self._sources: tuple = (None, None)
        self._reset_ire_state()
        self._linked = False
        defaults = {**base_optimizer.defaults, **_GROUP_DEFAULTS, "ire_peak_lr": peak_lr}
        super().__init__(base_optimizer.param_groups, defaults)
        self._link()

    # -- groups and state shared with the base optimizer -------------------

    def _link(self) -> None:
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        for group in self.param_groups:
            self._prepare_group(group)
        self._linked = True

    def _prepare_group(self, group: dict) -> None:
        for key, value in _GROUP_DEFAULTS.items():
            group.setdefault(key, value)
        if group.get("ire_peak_lr") is None:
            group["ire_peak_lr"] = self._peak_lr
        kappa = group["ire_kappa"]
        if kappa is not None and not callable(kappa):
            check_kappa(kappa, "param group 'ire_kappa'")
        check_bool(group["ire_enabled"], "param group 'ire_enabled'")

    def add_param_group(self, param_group: dict) -> None:
        """Adds a group to the base optimizer (and so to this one).

        The group may set ``"ire_enabled"``, ``"ire_kappa"`` and
        ``"ire_peak_lr"``.
        """
        if not getattr(self, "_linked", False):
            super().add_param_group(param_group)
            return
        self.base_optimizer.add_param_group(param_group)
        self._prepare_group(self.param_groups[-1])

    def _reset_ire_state(self) -> None:
        self._ire_state: dict = {}
        self._ire_step = 0
        self._refreshes = 0
        self._last_refresh: tuple | None = None

    def _all_params(self) -> list:
        return list(chain.from_iterable(group["params"] for group in self.param_groups))

    # -- public helpers ------------------------------------------------------

    @property
    def ire_step(self) -> int:
        """The number of optimizer steps taken (IRE's step counter)."""
        return self._ire_step

    @property
    def refresh_due(self) -> bool:
        """True when the next ``step`` refreshes the curvature and the mask."""
        config = self.config
        return bool(ire_core.is_refresh_step(self._ire_step, config.interval, config.start_step))

    def set_curvature_source(
        self, loss_fn: Callable | None = None, logits_fn: Callable | None = None
    ) -> None:
        """Default ``loss_fn`` / ``logits_fn`` for steps that do not pass them.

        The callables take no argument, so they usually read the current batch
        from an enclosing scope.

        Example:
          >>> import torch
          >>> from ire_torch import SGDIRE
          >>> model = torch.nn.Linear(3, 2)
          >>> batch = {"x": torch.randn(4, 3)}
          >>> opt = SGDIRE(model.parameters(), lr=0.1, estimator="fisher")
          >>> opt.set_curvature_source(logits_fn=lambda: model(batch["x"]))
        """
        check_sources(loss_fn, logits_fn)
        self._sources = (loss_fn, logits_fn)

    def flat_mask(self, param: torch.Tensor) -> torch.Tensor | None:
        """The boolean flat mask in force for ``param`` (``None`` if none)."""
        entry = self._ire_state.get(param)
        return None if entry is None else entry["mask"]

    def mask_stats(self) -> MaskStats | None:
        """The :class:`ire_core.MaskStats` of the mask chosen at the last
        refresh, every field filled with Python numbers (``None`` before the
        first refresh). Reading them synchronizes with the device."""
        if self._last_refresh is None:
            return None
        step, threshold, params = self._last_refresh
        masks = [self._ire_state[p]["mask"] for p in params]
        return refresh_report(step, threshold, params, masks)

    # -- the step -------------------------------------------------------------

    def step(self, closure: Callable | None = None, *, loss_fn: Callable | None = None,
             logits_fn: Callable | None = None):
        """One optimizer step: refresh the mask if due, base step, amplify.

        Args:
          closure: optional callable that recomputes the loss and its
            gradients (``zero_grad``, forward, ``backward``); it is run here,
            with gradients enabled, before anything else.
          loss_fn: the loss at the current parameters, for ``hutchinson`` and
            ``exact`` (only called on refresh steps).
          logits_fn: the logits at the current parameters, for ``fisher``
            (only called on refresh steps).

        Returns:
          What ``closure`` returned, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = as_scalar_loss(closure(), "closure")
        self._ire_update(loss_fn, logits_fn)
        return loss

    def _stepped_params(self) -> list:
        entries = []
        for g_index, group in enumerate(self.param_groups):
            for p_index, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(
                        f"IRE does not support sparse gradients: parameter {p_index} of param "
                        f"group {g_index} (shape {tuple(p.shape)}) has a sparse grad"
                    )
                entries.append((group, p))
        return entries

    def _group_kappa(self, group: dict, step: int):
        config = self.config
        if group["ire_kappa"] is not None:
            config = config.replace(kappa=group["ire_kappa"])
        if not config.kappa_follows_lr:
            return ire_core.kappa_at(config, step)
        lr = _as_float(group.get("lr"))
        if lr is None:
            raise ValueError(
                "kappa_follows_lr=True needs an 'lr' in every param group, got a group "
                f"with lr={lr!r}"
            )
        peak = _as_float(group.get("ire_peak_lr"))
        if lr > 0 and (peak is None or lr > peak):
            group["ire_peak_lr"] = peak = lr
        if peak is None:  # no positive lr yet (a warm-up from 0): the step is 0 anyway
            return ire_core.kappa_at(config, step, lr=0.0, peak_lr=1.0)
        return ire_core.kappa_at(config, step, lr=lr, peak_lr=peak)

    def _ire_update(self, loss_fn, logits_fn, *, estimate_grads=None, originals=None) -> None:
        check_sources(loss_fn, logits_fn)
        loss_fn = loss_fn if loss_fn is not None else self._sources[0]
        logits_fn = logits_fn if logits_fn is not None else self._sources[1]
        config = self.config
        t = self._ire_step
        stepped = self._stepped_params()
        if ire_core.is_refresh_step(t, config.interval, config.start_step):
            self._refresh(t, stepped, estimate_grads, loss_fn, logits_fn)
        plan = self._plan(t, stepped) if ire_core.is_active(t, config.start_step) else []
        self._amplified_step(plan, originals or {})
        self._ire_step = t + 1

    def _amplified_step(self, plan: list, originals: dict) -> None:
        """The base step with the plan's (param, mask, κ) amplified: fused
        into the update when possible, else copy, step and rescale."""
        if not plan:
            self.base_optimizer.step()
            return
        if self.fused_update:
            amplify = {p: (mask, kappa) for p, mask, kappa in plan}
            if fused_step(self.base_optimizer, amplify):
                return
        missing = [p for p, _, _ in plan if p not in originals]
        originals = {**originals, **dict(zip(missing, snapshot(missing)))}
        self.base_optimizer.step()
        params, masks, kappas = zip(*plan)
        apply_amplification(params, [originals[p] for p in params], masks, kappas)

    def _plan(self, step: int, stepped: list) -> list:
        plan, kappas = [], {}
        for group, p in stepped:
            if not group["ire_enabled"]:
                continue
            entry = self._ire_state.get(p)
            if entry is None:
                continue
            key = id(group)
            if key not in kappas:  # None for a group whose κ is 0 now
                kappa = self._group_kappa(group, step)
                zero = isinstance(kappa, numbers.Real) and kappa == 0
                kappas[key] = None if zero else kappa
            kappa = kappas[key]
            if kappa is not None:
                plan.append((p, entry["mask"], kappa))
        return plan

    def _refresh(self, step, stepped, estimate_grads, loss_fn, logits_fn) -> None:
        params = [p for group, p in stepped if group["ire_enabled"]]
        if not params:
            return
        config = self.config
        if estimate_grads is None:
            grads = [p.grad for p in params]
        else:
            grads = [estimate_grads[p] if p in estimate_grads else p.grad for p in params]
        inputs = CurvatureInputs(step, params, grads, loss_fn, logits_fn, self._draws,
                                 config.num_probes, self._sync)
        estimate = estimate_curvature(config.estimator, inputs)
        old = [self._ire_state.get(p, {}) for p in params]
        if config.ema > 0:
            previous = None
            if any("curvature" in entry for entry in old):
                previous = [entry.get("curvature", h.abs()) for entry, h in zip(old, estimate)]
            average, selection = ire_core.blend(previous, estimate, config.ema)
        else:  # no average to keep; the selection itself ranks |ĥ| and never picks NaN
            average, selection = [None] * len(estimate), estimate
        # "Nothing flat" before the first refresh, made on each parameter's device.
        previous_masks = [
            entry["mask"] if entry else torch.zeros(p.shape, dtype=torch.bool, device=p.device)
            for entry, p in zip(old, params)
        ]
        gamma = ire_core.flat_fraction_at(config, step)
        selected = select_flat_mask(selection, gamma, previous=previous_masks,
                                    threshold_fn=self._threshold_fn)
        state = {}
        for p, mask, curvature in zip(params, selected.mask, average):
            entry = {"mask": mask}
            if config.ema > 0:
                entry["curvature"] = curvature
            state[p] = entry
        self._ire_state = state
        self._refreshes += 1
        self._last_refresh = (step, selected.threshold, params)

    # -- checkpoints ------------------------------------------------------------

    def state_dict(self) -> dict:
        """The base optimizer's ``state_dict`` plus an ``"ire"`` entry.

        ``"ire"`` holds the step counter, the masks and curvature averages
        (keyed by parameter index, as ``"state"``), the last refresh and the
        generator state (``ire_torch.checkpoint``), so a resumed run continues
        bit-identically.
        """
        saved = self.base_optimizer.state_dict()
        saved["ire"] = ire_state(self)
        return saved

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads a state saved by :meth:`state_dict`.

        A ``state_dict`` of the bare base optimizer (no ``"ire"`` entry) is
        accepted too: the base state is loaded and IRE starts afresh.
        """
        state_dict = dict(state_dict)
        saved = state_dict.pop("ire", None)
        self.base_optimizer.load_state_dict(state_dict)
        self._link()
        self._reset_ire_state()
        if saved is not None:
            load_ire_state(self, saved)

    def __getstate__(self) -> dict:
        # The whole object (base optimizer, IRE state, draws) travels with
        # copy.deepcopy / pickle, not only torch.optim's three fields.
        return dict(self.__dict__)

    def __repr__(self) -> str:
        config = self.config
        return (
            f"{type(self).__name__}({type(self.base_optimizer).__name__}, "
            f"kappa={config.kappa!r}, flat_fraction={config.flat_fraction!r}, "
            f"interval={config.interval}, estimator={config.estimator!r})"
        )
