"""Logging content: slice panels, throughput, learning rate, and an offline W&B run read back from its file."""

from __future__ import annotations

import logging
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from inpaint.callbacks import SlicePanels, panel_image
from inpaint.config import load
from inpaint.constants import INPUT, KNOWN, MASK, TARGET
from inpaint.fit import fit
from tests.conftest import phantom, quick_overrides


def volume_batch(shape=(20, 22, 18)) -> dict[str, torch.Tensor]:
    target = torch.from_numpy(phantom(shape) / 800.0 - 0.5)[None, None]
    known = torch.zeros_like(target)
    known[..., ::5] = 1
    return {TARGET: target, INPUT: target * known, KNOWN: known, MASK: (target > -0.5).float()}


def test_panel_has_a_column_per_volume_the_same_as_the_evaluate_figure():
    batch = volume_batch()
    two = panel_image(batch)
    three = panel_image(batch, pred=batch[TARGET][0] * 0.5)
    assert two.dtype == np.uint8 and two.ndim == 3 and two.shape[2] == 3
    assert three.shape[0] == two.shape[0] and three.shape[1] > 1.2 * two.shape[1]  # a column for the prediction


def test_panels_use_the_validation_step_prediction_and_go_to_png_with_csv(tmp_path):
    panels = SlicePanels(tmp_path)
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=7))
    trainer = SimpleNamespace(loggers=[CSVLogger(tmp_path)], is_global_zero=True, sanity_checking=False,
                              current_epoch=3, fit_loop=loop)
    batch = volume_batch()
    panels.on_validation_batch_end(trainer, None, {"pred": batch[TARGET][0]}, batch, batch_idx=0)
    panels.on_validation_batch_end(trainer, None, None, batch, batch_idx=1)  # only the first subject
    assert [p.name for p in (tmp_path / "panels").iterdir()] == ["epoch003.png"]
    import matplotlib.image

    written = matplotlib.image.imread(tmp_path / "panels" / "epoch003.png")
    assert written.shape[:2] == panel_image(batch, batch[TARGET][0]).shape[:2]  # with the prediction column


def wandb_records(path: Path):
    """The records of a ``run-*.wandb`` file (W&B's LevelDB-style log of ``Record`` protobufs)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunk = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def finished_run_records(path: Path, timeout: float = 60.0) -> list:
    """The records once the run's ``exit`` record is in: wandb's service may still be writing after finish()."""
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + timeout
    while True:
        try:
            records = list(wandb_records(path))
            if any(record.HasField("exit") for record in records):
                return records
        except DecodeError:  # a record half written
            pass
        assert time.monotonic() < deadline, f"{path}: no exit record after {timeout} s"
        time.sleep(0.2)


def test_offline_wandb_run_holds_config_losses_lr_throughput_metrics_and_panels(tiny_root, tmp_path, monkeypatch,
                                                                                  caplog):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # conftest disables W&B for every other test
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load("debug", [*quick_overrides(tiny_root, tmp_path), "logger=wandb", "wandb.mode=offline",
                         "trainer.max_epochs=1", "trainer.log_every_n_steps=2"])
    with caplog.at_level(logging.INFO, logger="inpaint"):
        result = fit(cfg)
    assert "W&B offline: checkpoint artifact skipped" in caplog.text
    (run,) = (Path(result["run_dir"]) / "wandb").glob("offline-run-*")
    records = finished_run_records(next(run.glob("run-*.wandb")))
    keys = {item.key or "/".join(item.nested_key)
            for r in records if r.HasField("history") for item in r.history.item}
    config = {item.key for r in records if r.HasField("config") for item in r.config.update}
    assert {"train/loss", "train/l1", "lr-Adam", "train/patches_per_s", "val/psnr", "val/ssim", "val/hfen",
            "val/linear_psnr", "val/panel/filenames"} <= keys, keys
    assert {"generator", "optim", "config"} <= config
    assert list((run / "files" / "media" / "images").rglob("panel_*.png"))
