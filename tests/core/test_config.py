"""Every hyperparameter is validated at construction with a named error."""

import math

import pytest

from ire_core import ESTIMATORS, IREConfig

BAD_VALUES = [
    ("kappa", -0.5, "kappa"),
    ("kappa", math.inf, "kappa"),
    ("kappa", math.nan, "kappa"),
    ("kappa", "2", "kappa"),
    ("kappa", True, "kappa"),
    ("flat_fraction", -0.1, "flat_fraction"),
    ("flat_fraction", 1.5, "flat_fraction"),
    ("flat_fraction", math.nan, "flat_fraction"),
    ("interval", 0, "interval"),
    ("interval", 2.0, "interval"),
    ("interval", True, "interval"),
    ("ema", 1.0, "ema"),
    ("ema", -0.1, "ema"),
    ("start_step", -1, "start_step"),
    ("start_step", 1.5, "start_step"),
    ("estimator", "diag", "estimator"),
    ("estimator", 3, "estimator"),
    ("num_probes", 0, "num_probes"),
    ("rho", -0.01, "rho"),
    ("rho", math.inf, "rho"),
    ("sam_eps", 0.0, "sam_eps"),
]


@pytest.mark.parametrize("name, value, mentioned", BAD_VALUES)
def test_bad_value_is_rejected_with_its_name_and_value(name, value, mentioned):
    with pytest.raises(ValueError) as error:
        IREConfig(**{name: value})
    message = str(error.value)
    assert message.startswith(mentioned)
    assert repr(value) in message


@pytest.mark.parametrize("name", ["kappa_follows_lr", "adaptive"])
def test_flags_must_be_bool(name):
    with pytest.raises(TypeError, match=name):
        IREConfig(**{name: 1})


def test_defaults_are_valid_and_documented_values():
    config = IREConfig()
    assert (config.kappa, config.flat_fraction, config.interval) == (2.0, 0.6, 10)
    assert config.estimator in ESTIMATORS


def test_boundaries_are_accepted():
    IREConfig(kappa=0.0, flat_fraction=0.0, interval=1, ema=0.0, start_step=0, rho=0.0)
    IREConfig(flat_fraction=1.0, ema=0.999)


def test_callable_schedules_and_estimators_are_accepted():
    config = IREConfig(kappa=lambda t: 1.0, flat_fraction=lambda t: 0.5, estimator=lambda: None)
    assert callable(config.kappa) and callable(config.estimator)


def test_replace_validates():
    with pytest.raises(ValueError, match="interval"):
        IREConfig().replace(interval=0)
    assert IREConfig().replace(kappa=3.0).kappa == 3.0


def test_config_is_immutable():
    with pytest.raises(AttributeError):
        IREConfig().kappa = 1.0
