"""The conformance driver of ire_jax against the NumPy reference driver.

The conformance session runs every scenario; here a few, one per feed path:
explicit Hutchinson probes, explicit label uniforms (with SAM), the exact
estimator as a user callable in float32, and a κ schedule.
"""

from __future__ import annotations

import pytest

pytest.importorskip("conformance.scenarios", reason="the conformance package is not importable")

from conformance.drivers.jax_driver import JaxDriver  # noqa: E402
from conformance.runner import check  # noqa: E402
from conformance.scenarios import SCENARIOS  # noqa: E402

NAMES = (
    "dense_quadratic_nesterov_hutchinson2",
    "logistic_sam_fisher",
    "logistic_nesterov_exact_f32",
    "dense_quadratic_adamw_exact_kappa_schedule",
)


def test_driver_is_available_and_named():
    driver = JaxDriver()
    assert driver.name == "jax" and driver.available() is None


@pytest.mark.parametrize("name", NAMES)
def test_driver_matches_the_reference(name):
    result = check(JaxDriver(), SCENARIOS[name])
    assert result.passed, result.summary()
