"""The arguments of :class:`ire_keras.IRE` and their saved form.

IRE takes the step of its inner optimizer and rescales it, so the keyword
arguments of ``keras.optimizers.Optimizer`` that shape that step (learning
rate, weight decay, clipping, EMA, loss scaling, gradient accumulation)
belong on the inner optimizer: :func:`check_keyword_arguments` refuses them
on IRE. :func:`to_config` and :func:`from_config` write and read the config
a saved ``.keras`` file holds; schedules and a callable estimator are saved
as Keras objects.

Example:
  >>> from ire_keras import _config
  >>> _config.check_keyword_arguments({"use_ema": False})
  >>> try:
  ...     _config.check_keyword_arguments({"learning_rate": 0.1})
  ... except ValueError as error:
  ...     print(error)
  IRE does not take 'learning_rate': set it on inner_optimizer
"""

from __future__ import annotations

import keras

__all__ = ["INNER_ONLY", "check_keyword_arguments", "from_config", "to_config"]

#: Keyword arguments of ``keras.optimizers.Optimizer`` that belong on the
#: inner optimizer; IRE rescales whatever step the inner optimizer takes.
INNER_ONLY = (
    "learning_rate",
    "weight_decay",
    "clipnorm",
    "global_clipnorm",
    "clipvalue",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
)


def check_keyword_arguments(kwargs: dict) -> None:
    """Raises ``ValueError`` for any keyword argument IRE does not take.

    An :data:`INNER_ONLY` argument given as ``None`` (or ``use_ema=False``)
    sets nothing and is accepted.

    Args:
      kwargs: the extra keyword arguments given to ``IRE(...)``.
    """
    misplaced = [key for key in INNER_ONLY if kwargs.get(key) is not None]
    misplaced = [key for key in misplaced if not (key == "use_ema" and kwargs[key] is False)]
    if misplaced:
        raise ValueError(
            f"IRE does not take {', '.join(map(repr, misplaced))}: set "
            f"{'it' if len(misplaced) == 1 else 'them'} on inner_optimizer"
        )
    unknown = sorted(key for key in kwargs if key not in INNER_ONLY)
    if unknown:
        raise ValueError(f"IRE got unknown argument(s): {', '.join(unknown)}")


def to_config(optimizer) -> dict:
    """The config of ``optimizer`` (an :class:`ire_keras.IRE`), as saved."""
    config = optimizer.ire_config
    return {
        "name": optimizer.name,
        "inner_optimizer": keras.saving.serialize_keras_object(optimizer.inner_optimizer),
        "kappa": _serialize_schedule(config.kappa),
        "flat_fraction": _serialize_schedule(config.flat_fraction),
        "interval": config.interval,
        "ema": config.ema,
        "start_step": config.start_step,
        "estimator": _serialize_schedule(config.estimator),
        "num_probes": config.num_probes,
        "kappa_follows_lr": config.kappa_follows_lr,
        "peak_learning_rate": optimizer.peak_learning_rate,
        "rho": config.rho,
        "adaptive": config.adaptive,
        "seed": optimizer.seed,
    }


def from_config(cls, config: dict, custom_objects=None):
    """An instance of ``cls`` (:class:`ire_keras.IRE`) from :func:`to_config`'s dict."""
    config = dict(config)
    inner = keras.saving.deserialize_keras_object(
        config.pop("inner_optimizer"), custom_objects=custom_objects
    )
    for key in ("kappa", "flat_fraction", "estimator"):
        if key in config:
            config[key] = _deserialize_schedule(config[key], custom_objects)
    return cls(inner, **config)


def _serialize_schedule(value):
    if callable(value):
        return keras.saving.serialize_keras_object(value)
    return value


def _deserialize_schedule(value, custom_objects=None):
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value, custom_objects=custom_objects)
    return value
