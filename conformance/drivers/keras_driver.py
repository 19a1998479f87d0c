"""The Keras drivers: ``ire_keras`` on the TensorFlow, JAX and torch backends.

Keras chooses its backend when it is first imported, so each backend runs in
its own subprocess (:mod:`.keras_worker`, with ``KERAS_BACKEND`` set and
float64 enabled on JAX). The first scenario a driver is asked for starts one
subprocess that runs every registered scenario of
:data:`conformance.scenarios.SCENARIOS`; the trajectories are cached, so the
later calls cost nothing.

Example:
  >>> from conformance.drivers.keras_driver import drivers
  >>> [d.name for d in drivers()]
  ['keras-tensorflow', 'keras-jax', 'keras-torch']
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np

from ..protocol import Scenario, Trajectory

__all__ = ["KERAS_BACKENDS", "KerasDriver", "drivers"]

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
"""The Keras backends with a driver, in report order."""

_TIMEOUT_S = 1800


class KerasDriver:
    """Runs scenarios through ``ire_keras`` on one Keras backend.

    Args:
      backend: ``"tensorflow"``, ``"jax"`` or ``"torch"``.
    """

    def __init__(self, backend: str):
        if backend not in KERAS_BACKENDS:
            raise ValueError(f"backend must be one of {KERAS_BACKENDS}, got {backend!r}")
        self.backend = backend
        self.name = f"keras-{backend}"
        self._results: dict | None = None
        self._lock = threading.Lock()  # one worker per driver, even across threads

    def available(self) -> str | None:
        for module in ("keras", "ire_keras", self.backend):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    def run(self, scenario: Scenario) -> Trajectory:
        from ..scenarios import SCENARIOS

        if SCENARIOS.get(scenario.name) is not scenario:
            raise ValueError(
                f"the Keras drivers run registered scenarios only (by name in a "
                f"subprocess), got {scenario.name!r}"
            )
        with self._lock:
            if self._results is None:
                self._results = self._run_all(list(SCENARIOS))
        result = self._results.get(scenario.name)
        if isinstance(result, str):
            raise RuntimeError(f"{self.name} failed on {scenario.name}:\n{result}")
        if result is None:
            raise RuntimeError(f"{self.name} returned no result for {scenario.name}")
        return result

    def _run_all(self, names: list) -> dict:
        env = dict(os.environ)
        env["KERAS_BACKEND"] = self.backend
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if self.backend == "jax":
            env["JAX_ENABLE_X64"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "results.npz")
            command = [sys.executable, "-m", "conformance.drivers.keras_worker", out, *names]
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=_TIMEOUT_S, cwd=_repository_root())
            if done.returncode != 0 or not os.path.exists(out):
                message = f"{self.name} worker exited with {done.returncode}:\n{done.stderr[-4000:]}"
                return {name: message for name in names}
            with np.load(out) as arrays:
                return _read_results(dict(arrays), names)

    def __repr__(self) -> str:
        return f"KerasDriver({self.backend!r})"


def drivers() -> list:
    """One :class:`KerasDriver` per Keras backend."""
    return [KerasDriver(backend) for backend in KERAS_BACKENDS]


def _repository_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read_results(arrays: dict, names: list) -> dict:
    results = {}
    for name in names:
        if f"{name}/error" in arrays:
            results[name] = str(arrays[f"{name}/error"])
            continue
        if f"{name}/losses" not in arrays:
            continue
        params, masks = {}, {}
        for key, value in arrays.items():
            parts = key.split("/")
            if parts[0] != name or len(parts) != 4:
                continue
            t, i = int(parts[2]), int(parts[3])
            target = params if parts[1] == "params" else masks
            target.setdefault(t, {})[i] = value
        results[name] = Trajectory(
            params=[[entry[i] for i in sorted(entry)] for _, entry in sorted(params.items())],
            masks={t: [entry[i] for i in sorted(entry)] for t, entry in sorted(masks.items())},
            losses=[float(v) for v in arrays[f"{name}/losses"]],
        )
    return results
