"""The cross-framework test matrix.

``nox`` runs the default sessions (lint, core, torch, jax, keras on each Keras
backend, conformance); ``nox -s demo`` runs the main job; ``nox -s docs``
regenerates the benchmark results in ``docs/``.

Every environment installs torch as exactly the version in
``constraints.txt`` (a CPU build kept on local disk).
"""

from __future__ import annotations

import os

import nox

nox.options.error_on_missing_interpreters = False
nox.options.reuse_venv = "no"

CONSTRAINTS = ("-c", "constraints.txt")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
# Quiet, deterministic framework start-up in every session.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PYTHONHASHSEED": "0",
}


def install(session: nox.Session, *extras: str, more: tuple[str, ...] = ()) -> None:
    """Installs the project (not editable) with ``extras`` under the constraints."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(*CONSTRAINTS, spec, *more)


def pytest(session: nox.Session, *args: str, env: dict | None = None) -> None:
    session.run("pytest", *args, *session.posargs, env={**QUIET_ENV, **(env or {})})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def core(session: nox.Session) -> None:
    """ire_core and its NumPy reference, with NumPy as the only framework."""
    install(session, "test")
    pytest(session, "tests/core", "--doctest-modules", "--pyargs", "ire_core")


@nox.session
def torch(session: nox.Session) -> None:
    """ire_torch, and the NumPy reference checked against torch.optim."""
    install(session, "torch", "test")
    pytest(session, "tests/torch")


@nox.session
def jax(session: nox.Session) -> None:
    """ire_jax (optax transformations), x64 and 2-device CPU mesh tests."""
    install(session, "jax", "test")
    pytest(session, "tests/jax")


@nox.session
@nox.parametrize("backend", KERAS_BACKENDS)
def keras(session: nox.Session, backend: str) -> None:
    """ire_keras on one Keras backend (Keras picks its backend at import)."""
    extras = {"tensorflow": (), "jax": ("jax",), "torch": ("torch",)}[backend]
    install(session, "keras", "test", *extras)
    pytest(session, "tests/keras", env={"KERAS_BACKEND": backend})


@nox.session
def conformance(session: nox.Session) -> None:
    """Every backend against the NumPy reference; writes the report."""
    install(session, "all")
    pytest(session, "tests/conformance", "tests/core/test_imports.py")
    if os.path.isdir("conformance") and os.path.exists("conformance/report.py"):
        session.run("python", "-m", "conformance.report", env=QUIET_ENV)


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The main job (see README). Extra arguments go to the demo script."""
    install(session, "torch", "docs")
    session.run("python", "-m", "benchmarks.quadratic", *session.posargs, env=QUIET_ENV)


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """Doctests of the docs pages."""
    install(session, "all")
    session.run("python", "-m", "pytest", "--doctest-glob=*.md", "docs", env=QUIET_ENV)
