"""Driver discovery: every backend is present, runnable or with a reason."""

from __future__ import annotations

import types

import pytest

import conformance.drivers as drivers_module
from conformance.drivers import BACKEND_NAMES, UnavailableDriver, all_drivers, backend_drivers
from conformance.scenarios import get_scenario


def test_all_drivers_lists_the_reference_then_every_backend():
    drivers = all_drivers()
    assert drivers[0].name == "numpy-reference"
    assert [d.name for d in drivers[1:]] == list(BACKEND_NAMES)
    for driver in drivers:
        reason = driver.available()
        assert reason is None or (isinstance(reason, str) and reason)


def test_backend_drivers_are_built_once():
    first, second = backend_drivers(), backend_drivers()
    assert all(a is b for a, b in zip(first, second))


def _load_with(monkeypatch, importer, make=lambda module: [module.Driver()]):
    monkeypatch.setattr(drivers_module.importlib, "import_module", importer)
    return drivers_module._load("fake_driver", make, ("fake-a", "fake-b"))


def test_missing_driver_module_becomes_unavailable(monkeypatch):
    def importer(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    loaded = _load_with(monkeypatch, importer)
    assert [d.name for d in loaded] == ["fake-a", "fake-b"]
    assert all(isinstance(d, UnavailableDriver) for d in loaded)
    assert loaded[0].available() == "no driver module conformance.drivers.fake_driver"


def test_missing_framework_is_named_in_the_reason(monkeypatch):
    def importer(name):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    (driver, _) = _load_with(monkeypatch, importer)
    assert driver.available() == (
        "conformance.drivers.fake_driver needs 'torch', which is not installed"
    )
    with pytest.raises(RuntimeError, match="unavailable"):
        driver.run(get_scenario("mlp_sgd_exact"))


def test_broken_driver_module_or_constructor_becomes_unavailable(monkeypatch):
    def importer(name):
        raise AttributeError("module 'keras' has no attribute 'ops'")

    (driver, _) = _load_with(monkeypatch, importer)
    assert "failed to import: AttributeError: module 'keras'" in driver.available()

    def fine(name):
        return types.SimpleNamespace(Driver=lambda: 1 / 0)

    (driver, _) = _load_with(monkeypatch, fine)
    assert "could not build its drivers: ZeroDivisionError" in driver.available()


def test_a_working_module_gives_its_own_drivers(monkeypatch):
    sentinel = object()
    loaded = _load_with(monkeypatch, lambda name: types.SimpleNamespace(Driver=lambda: sentinel))
    assert loaded == [sentinel]
