"""The cross-framework test matrix.

``nox`` runs the default sessions (lint, core, torch, jax, keras on each Keras
backend, conformance, the benchmarks' quick modes, the docs site); ``nox -s
demo`` runs the main job; ``nox -s docs`` runs the examples in ``docs/`` and
builds and checks the site (``docs/_build/html/index.html``).

Every environment installs torch as exactly the version in
``constraints.txt`` (a CPU build kept on local disk).
"""

from __future__ import annotations

import shutil

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
    pytest(session, "tests/core", "tests/readme/test_readme_core.py", "--doctest-modules",
           "--pyargs", "ire_core")


@nox.session
def torch(session: nox.Session) -> None:
    """ire_torch, and the NumPy reference checked against torch.optim."""
    install(session, "torch", "test")
    pytest(session, "tests/torch", "tests/readme/test_readme_torch.py")


@nox.session
def jax(session: nox.Session) -> None:
    """ire_jax (optax transformations), x64 and 2-device CPU mesh tests, and
    docs/jax.md, whose flax recipes need flax."""
    install(session, "jax", "test", more=("flax>=0.12.8",))
    pytest(session, "tests/jax", "tests/readme/test_readme_jax.py")


@nox.session
def keras(session: nox.Session) -> None:
    """ire_keras on every Keras backend, one process each (Keras picks its
    backend at import). ``nox -s keras -- tensorflow`` runs one backend."""
    install(session, "keras", "jax", "torch", "test")
    backends = [b for b in session.posargs if b in KERAS_BACKENDS] or KERAS_BACKENDS
    for backend in backends:
        session.log(f"KERAS_BACKEND={backend}")
        session.run(
            "pytest", "tests/keras", "tests/readme/test_readme_keras.py",
            env={**QUIET_ENV, "KERAS_BACKEND": backend},
        )


@nox.session
def conformance(session: nox.Session) -> None:
    """Every backend against the NumPy reference; writes the report."""
    install(session, "all")
    pytest(
        session, "tests/conformance", "tests/core/test_imports.py",
        "--doctest-modules", "conformance", "--conformance-report=docs/conformance",
    )


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Quick modes of the demo, the paper reproductions and the overhead benchmark."""
    install(session, "all")
    # ``python -m`` puts the checkout on sys.path: ``benchmarks`` is not installed.
    # TensorFlow's CPU allocator keeps the statistics that the overhead
    # benchmark's Keras memory columns read only as BFC (or with oneDNN on).
    session.run(
        "python", "-m", "pytest", "tests/benchmarks", "--doctest-modules", "benchmarks",
        *session.posargs, env={**QUIET_ENV, "TF_CPU_ALLOCATOR_USE_BFC": "true"},
    )


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The main job (see README). Extra arguments go to ``benchmarks.demo``."""
    install(session, "torch", "bench")
    session.run("python", "-m", "benchmarks.demo", *session.posargs, env=QUIET_ENV)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site: runs every example of the pages (doctests),
    builds the site with warnings as errors (``docs/_build/html``), then checks
    its links, its API entries and its pages in headless Chromium
    (``tests/docs``)."""
    install(session, "all", "docs")
    env = {**QUIET_ENV, "KERAS_BACKEND": "tensorflow"}  # the API pages import ire_keras
    session.run("python", "-m", "pytest", "--doctest-glob=*.md", "docs", env=env)
    html = "docs/_build/html"
    # A fresh build: an incremental one re-reads, and so re-checks, only changed pages.
    shutil.rmtree(html, ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", html, env=env)
    session.run("python", "-m", "pytest", "tests/docs", env={**env, "IRE_DOCS_HTML": html})
