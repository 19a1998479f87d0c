"""The README's PyTorch example runs as written: the loss falls and the
mask statistics it prints are those of a real refresh."""

import torch
from readme import run_block


def test_torch_example_runs_as_written(capsys):
    torch.manual_seed(0)
    namespace = run_block("PyTorch")
    report = namespace["opt"].mask_stats()
    assert report is not None and report.total == sum(
        p.numel() for p in namespace["model"].parameters()
    )
    assert 0.55 <= report.flat_fraction <= 0.65
    assert "flat" in capsys.readouterr().out.lower()
    x, y = namespace["x"], namespace["y"]
    final = torch.nn.functional.cross_entropy(namespace["model"](x), y).item()
    assert final < 2.0  # started near log(10) ≈ 2.30
