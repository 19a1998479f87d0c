"""The overhead benchmark in its quick mode: well-formed tables (never timings)."""

import json
import re

import pytest

from benchmarks import overhead

TORCH_VARIANTS = [
    "AdamW",
    "IRE gradient",
    "IRE gradient, generic path",
    "IRE fisher",
    "IRE fisher, forward reused",
    "IRE fisher, 1/4 batch",
    "naive copy-step-rescale",
    "AdamW fused=True",
    "IRE gradient, fused=True base",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("overhead")
    result = overhead.main(["--quick", "--backends", "torch", "--out", str(out)])
    return out, result


def test_quick_run_has_every_torch_row(quick_run):
    _, result = quick_run
    rows = result["rows"]
    models = sorted({r.model for r in rows})
    assert [m.split(" ")[0] for m in models] == ["lm-large", "lm-small", "mlp-large",
                                                 "mlp-small"]
    for model in models:
        assert [r.variant for r in rows if r.model == model] == TORCH_VARIANTS
    for r in rows:
        assert r.backend == "torch" and r.params > 0
        assert r.base_ms > 0 and r.ire_ms > 0 and r.ratio > 0
        assert r.peak_mib is not None and r.peak_mib >= 0
        if r.variant.startswith("AdamW"):
            assert r.ratio == 1.0 and r.extra_state == 0.0 and r.refresh_peak_mib is None
        else:  # None when the measured steps held no refresh
            assert r.refresh_peak_mib is None or r.refresh_peak_mib >= 0


def test_persistent_state_is_a_quarter_of_the_parameters_and_naive_is_a_full_copy(quick_run):
    _, result = quick_run
    for r in result["rows"]:
        if r.variant.startswith("IRE"):
            assert r.extra_state == pytest.approx(0.25)  # one bool per fp32 coordinate
        elif r.variant.startswith("naive"):
            assert r.extra_state == pytest.approx(1.0)  # one float per coordinate


def test_selection_and_fisher_tables(quick_run):
    _, result = quick_run
    what = [r["what"] for r in result["selection"]]
    assert what[0] == "AdamW step" and "select_flat_mask, exact" in what
    for r in result["selection"]:
        assert r["ms"] > 0 and r["coordinates"] == overhead.sizes(True).coordinates
        if "sampled" in r["what"] or "histogram" in r["what"]:
            assert abs(r["flat_count_deviation"]) < 0.05
    assert [a["model"].split(" ")[0] for a in result["fisher_agreement"]] == ["lm-small",
                                                                            "lm-large"]
    for a in result["fisher_agreement"]:
        for key in ("quarter", "redraw"):
            assert 0.5 <= a[f"{key}_agreement"] <= 1 and 0.5 <= a[f"{key}_flat_overlap"] <= 1


def test_files_written(quick_run):
    out, result = quick_run
    text = (out / "overhead.md").read_text()
    assert text.startswith("### torch\n")
    table = [line for line in text.splitlines() if line.startswith("| mlp-small")]
    assert len(table) == len(TORCH_VARIANTS)
    assert all(re.fullmatch(r"\|( [^|]+ \|){8}", line) for line in table)
    assert "### Flat-mask selection" in text and "Machine: " in text
    saved = json.loads((out / "overhead.json").read_text())
    assert len(saved["rows"]) == len(result["rows"])
    assert saved["machine"]["threads"] == 2 and saved["machine"]["torch"]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        overhead.main(["--quick", "--backends", "torch,mxnet"])


def test_unusable_torch_device_is_refused(capsys):
    with pytest.raises(SystemExit):
        overhead.main(["--quick", "--backends", "torch", "--device", "nonsense"])
    assert "--device 'nonsense' is not usable by torch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        overhead.main(["--quick", "--backends", "torch", "--device", "meta"])
    assert "--device must be cpu or a CUDA device, got 'meta'" in capsys.readouterr().err


def _rows_by_model(rows, first_variants: list) -> dict:
    """``{model: {variant: row}}`` of a quick run, which must hold the four
    models, each starting with ``first_variants``."""
    models = sorted({r.model for r in rows})
    assert [m.split(" ")[0] for m in models] == ["lm-large", "lm-small", "mlp-large",
                                                 "mlp-small"]
    by_model = {m: {r.variant: r for r in rows if r.model == m} for m in models}
    for mine in by_model.values():
        assert list(mine)[: len(first_variants)] == first_variants
    return by_model


def test_quick_jax_run_has_every_row_and_donated_rows_use_the_donated_base(tmp_path):
    pytest.importorskip("ire_jax", reason="the JAX rows need jax and ire_jax")
    rows = overhead.main(["--quick", "--backends", "jax", "--out", str(tmp_path)])["rows"]
    for mine in _rows_by_model(rows, [
        "optax adamw", "ire_jax gradient", "optax adamw, donated buffers",
        "ire_jax gradient, donated buffers", "ire_jax gradient, steps without refresh",
    ]).values():
        for name in ("optax adamw", "optax adamw, donated buffers"):
            assert mine[name].ratio == 1.0 and mine[name].extra_state == 0.0
        assert mine["ire_jax gradient"].base_ms == mine["optax adamw"].ire_ms
        donated = mine["ire_jax gradient, donated buffers"]
        assert donated.base_ms == mine["optax adamw, donated buffers"].ire_ms
        assert 0.25 <= donated.extra_state < 0.3  # one bool per coordinate, and a few scalars
        assert all(r.ire_ms > 0 and r.ratio > 0 for r in mine.values())


def test_quick_keras_run_has_every_row_and_the_allocators_peaks(tmp_path, monkeypatch):
    pytest.importorskip("ire_keras", reason="the Keras rows need keras and ire_keras")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras was imported with another backend; the rows run on TensorFlow")
    import tensorflow as tf

    try:  # the nox session makes TensorFlow keep them
        counted = tf.config.experimental.get_memory_info("CPU:0") is not None
    except ValueError:  # "Allocator stats not available": the columns read n/a
        counted = False
    result = overhead.main(["--quick", "--backends", "keras", "--out", str(tmp_path)])
    assert not result["failed"] and not result["skipped"]
    for mine in _rows_by_model(result["rows"], [
        "keras AdamW", "ire_keras gradient", "keras AdamW, jit_compile=True",
        "ire_keras gradient, jit_compile=True", "ire_keras gradient, steps without refresh",
    ]).values():
        for name, row in mine.items():
            assert (row.peak_mib is not None and row.peak_mib >= 0) == counted
            if name.startswith("keras AdamW"):  # the base never refreshes
                assert row.ratio == 1.0 and row.refresh_peak_mib is None
            else:  # two refresh periods of steps: both kinds were measured
                assert (row.refresh_peak_mib is not None and row.refresh_peak_mib >= 0) == counted
                assert 0.25 <= row.extra_state < 0.3
