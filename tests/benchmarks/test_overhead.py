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
    "AdamW fused=True",
    "IRE gradient, fused=True base",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("overhead")
    result = overhead.main(["--quick", "--backends", "torch", "--out", str(out)])
    return out, result


def _check_torch_rows(rows, cuda: bool) -> None:
    """Every torch row of the four models; the memory columns hold the CUDA
    allocator's peaks on CUDA and read n/a on the CPU."""
    models = sorted({r.model for r in rows})
    assert [m.split(" ")[0] for m in models] == ["lm-large", "lm-small", "mlp-large",
                                                 "mlp-small"]
    for model in models:
        assert [r.variant for r in rows if r.model == model] == TORCH_VARIANTS
    for r in rows:
        assert r.backend == "torch" and r.params > 0
        assert r.base_ms > 0 and r.ire_ms > 0 and r.ratio > 0
        assert (r.peak_mib is not None and r.peak_mib >= 0) == cuda
        if r.variant.startswith("AdamW"):
            assert r.ratio == 1.0 and r.extra_state == 0.0 and r.refresh_peak_mib is None
        else:  # a whole refresh period is measured: one refresh step
            assert (r.refresh_peak_mib is not None and r.refresh_peak_mib >= 0) == cuda


def test_quick_run_has_every_torch_row(quick_run):
    _check_torch_rows(quick_run[1]["rows"], cuda=False)


def test_quick_cuda_run_reads_the_allocators_peaks(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    result = overhead.main(["--quick", "--backends", "torch", "--device", "cuda"])
    _check_torch_rows(result["rows"], cuda=True)
    assert result["machine"]["torch_device_name"]


def test_persistent_state_is_a_quarter_of_the_parameters(quick_run):
    _, result = quick_run
    ire_rows = [r for r in result["rows"] if r.variant.startswith("IRE")]
    assert len(ire_rows) == 4 * (len(TORCH_VARIANTS) - 2)
    for r in ire_rows:  # one bool per fp32 coordinate, the generic path's included
        assert r.extra_state == pytest.approx(0.25)


def test_per_coordinate_bytes_counts_the_state_that_grows_with_the_model():
    torch = pytest.importorskip("torch")
    from benchmarks.overhead.torch_rows import per_coordinate_bytes
    from ire_torch import AdamWIRE

    model = torch.nn.Linear(30, 4)
    opt = AdamWIRE(model.parameters(), lr=1e-3, estimator="fisher", interval=3)
    model(torch.ones(2, 30)).sum().backward()
    opt.step(logits_fn=lambda: model(torch.ones(2, 30)))
    # exp_avg and exp_avg_sq (fp32) and the mask (bool) of 124 coordinates;
    # the step counters, the threshold and the generator's state are not counted.
    assert per_coordinate_bytes(opt, model.parameters()) == 124 * (4 + 4 + 1)


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
    cells = r"\|( [^|]+ \|){2}( +[0-9.]+ \|){3}( +n/a \|){2} +0\.[0-9]{3} \|"
    assert all(re.fullmatch(cells, line) for line in table)  # the CPU reads no peak
    rules = [line for line in text.splitlines() if line.startswith("|--")]
    assert re.fullmatch(r"\|(-+\|){2}(-+:\|){6}", rules[0])  # torch: numbers right-aligned
    assert "### Flat-mask selection" in text and "Machine: " in text
    saved = json.loads((out / "overhead.json").read_text())
    assert len(saved["rows"]) == len(result["rows"])
    assert saved["machine"]["threads"] == 2 and saved["machine"]["torch"]
    assert saved["rows"][0]["peak_mib"] is None


def test_one_generated_file_per_table(quick_run):
    out, _ = quick_run
    whole = (out / "overhead.md").read_text()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["overhead.json", "overhead.md", "overhead_fisher.md",
                     "overhead_selection.md", "overhead_torch.md"]  # jax, keras not run
    for name, title in (("overhead_torch.md", "### torch"),
                        ("overhead_selection.md", "### Flat-mask selection"),
                        ("overhead_fisher.md", "### Fisher masks")):
        text = (out / name).read_text()
        assert text.startswith("<!-- Generated by `python -m benchmarks.overhead")
        section, machine = text.split("\n\n", 1)[1].rsplit("\n\n", 1)
        assert section.startswith(title) and section in whole  # the same table
        assert machine.startswith("Machine: ") and machine in whole


def test_right_aligned_tables_need_one_letter_per_column():
    from benchmarks.tables import render_table

    assert render_table(["a", "b"], [["x", "1"]], align="lr").splitlines()[1] == "|---|--:|"
    for align in ("l", "lrr", "lc"):
        with pytest.raises(ValueError, match="one 'l' or 'r' per column"):
            render_table(["a", "b"], [["x", "1"]], align=align)


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
