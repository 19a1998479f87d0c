"""Keras tests run on the backend named by KERAS_BACKEND (tensorflow, jax or
torch); the nox session ``keras`` runs this directory once per backend."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if os.environ["KERAS_BACKEND"] == "jax":
    # Float64 equivalence tests need x64; set before Keras imports JAX.
    import jax

    jax.config.update("jax_enable_x64", True)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


@pytest.fixture
def float64():
    """Keras builds float64 weights inside the test."""
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(previous)


@pytest.fixture
def mixed_float16():
    """The ``mixed_float16`` dtype policy inside the test."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield


def numpy(value):
    """Any tensor or variable as a NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(value))


def pytest_configure(config):
    # Keras's own NumPy conversions on torch and JAX; not this project's code.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    )
