"""The main job, in its quick mode."""

import re

import pytest

from benchmarks import backends, demo


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = demo.parse_args(["--quick", "--out", str(out), "--no-progress"])
    return out, demo.run_demo(args)


def test_quick_demo_writes_png_and_table(quick_run):
    out, run = quick_run
    assert run["png"] == out / "demo_validation.png"
    assert run["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run["table"].read_text()
    assert "Validation loss (nats per byte) at checkpoints" in table
    assert re.search(r"steps to \d\.\d{3}", table)
    assert "step-time ratio" in table and "AdamW+IRE (κ=1, γ=0.5)" in table


def test_quick_demo_losses_fall_and_runs_share_warmup(quick_run):
    _, run = quick_run
    base, ire = run["results"]
    assert base.label == "AdamW" and ire.label.startswith("AdamW+IRE")
    for result in (base, ire):
        assert result.val_losses[-1] < result.val_losses[0] - 1.0
    assert base.val_losses[:2] == ire.val_losses[:2]  # identical before IRE starts


def test_main_prints_where_the_plot_is(tmp_path, capsys):
    assert demo.main(["--quick", "--steps", "16", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"Validation curves: {(tmp_path / 'demo_validation.png').resolve()}" in out
    assert "| AdamW " in out


def test_missing_backend_package_is_named(monkeypatch):
    monkeypatch.setitem(
        backends.BACKENDS, "jax", (("json", None, "jax"), ("ire_no_such_package", None, "jax"))
    )
    message = backends.require_backend("jax")
    assert "'ire_no_such_package'" in message and "pip install 'ire-optim[jax]'" in message
    monkeypatch.setitem(backends.BACKENDS, "keras", (("json", "no_such_name", "keras"),))
    assert "json.no_such_name" in backends.require_backend("keras")


def test_demo_exits_with_the_message_when_a_backend_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(demo, "require_backend", lambda name: f"{name}: 'ire_jax' is missing")
    assert demo.main(["--backend", "jax", "--quick"]) == 2
    assert "jax: 'ire_jax' is missing" in capsys.readouterr().err


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        demo.parse_args(["--steps", "1"])
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.require_backend("mxnet")
