"""python -m inpaint.export: a slim half-precision checkpoint that predicts like the original."""

from __future__ import annotations

import torch

from inpaint.checkpoint import load_module
from inpaint.data.degrade import degrade
from inpaint.export import main
from inpaint.restore import Restorer
from tests.conftest import phantom
from tests.inpaint.test_predict import assert_one_line_error, tiny_checkpoint  # noqa: F401  (fixture)


def test_export_is_smaller_loads_everywhere_and_predicts_the_same(tmp_path, capsys, tiny_checkpoint):  # noqa: F811
    out = tmp_path / "model.ckpt"
    assert main([str(tiny_checkpoint), "-o", str(out)]) == 0
    assert out.stat().st_size < tiny_checkpoint.stat().st_size / 2
    saved = torch.load(out, weights_only=False)
    assert set(saved) <= {"state_dict", "hyper_parameters", "pytorch-lightning_version"}
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values() if v.is_floating_point())
    volume = torch.from_numpy(phantom(seed=4))
    degraded = degrade(volume, torch.eye(4).numpy(), 5)
    original, slim = (Restorer(load_module(str(p)))(degraded, volume > 0) for p in (tiny_checkpoint, out))
    scale = float(original.abs().max())
    assert torch.allclose(original, slim, atol=5e-3 * scale), float((original - slim).abs().max()) / scale
    capsys.readouterr()
    assert_one_line_error(main([str(tiny_checkpoint), "-o", str(out)]), capsys.readouterr().err, "exists", "--overwrite")
    assert main([str(tiny_checkpoint), "-o", str(out), "--overwrite", "--dtype", "fp32"]) == 0
    not_a_checkpoint = tmp_path / "x.ckpt"
    not_a_checkpoint.write_text("hello")
    capsys.readouterr()
    assert_one_line_error(main([str(not_a_checkpoint), "-o", str(tmp_path / "y.ckpt")]), capsys.readouterr().err,
                          "x.ckpt", "not a PyTorch checkpoint")
