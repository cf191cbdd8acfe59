"""The one-call GPU campaign's dry run (``scripts/gpu_campaign.sh dry-run``): the same packing, unpacking, stages and
outputs as on the H200, with tiny networks on the CPU, on phantoms named as the committed split's subjects."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from inpaint import config
from tests.conftest import REPO, phantom, write_nifti

SPLIT = REPO / "experiments" / "splits" / "ds002748.tsv"
TRAINED = ("dense_unet_paper", "unet3d", "slice_resnet")
STAGES = ("smoke", "bench", "train", "export", "evaluate")


def split_rows() -> list[dict[str, str]]:
    with SPLIT.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def load_driver():
    spec = importlib.util.spec_from_file_location("gpu_campaign", REPO / "scripts" / "gpu_campaign.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """Phantoms named as the split's test and val subjects and its first training ones; the script picks what it carries."""
    root = tmp_path_factory.mktemp("campaign")
    rows = split_rows()
    train = [r for r in rows if r["split"] == "train"][:4]
    for i, row in enumerate([r for r in rows if r["split"] != "train"] + train):
        write_nifti(root / "data" / f"{row['subject']}_T1w.nii.gz", phantom((36, 40, 36), seed=i))
    env = {**os.environ, "PY": sys.executable, "OMP_NUM_THREADS": "1", "TMPDIR": str(root)}
    proc = subprocess.run(["bash", "scripts/gpu_campaign.sh", "dry-run", "--data", str(root / "data"),
                           "--out", str(root / "out")], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return proc, root / "out"


def test_dry_run_passes_every_stage(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = (out / "report.md").read_text()
    for stage in STAGES:
        assert f"| {stage} | ok |" in report, stage
    assert "omegaconf from the unpacked bundle: yes" in report  # the site bundle was unpacked and used
    assert "carried subjects: 2 train, 1 val, 8 test" in report
    trains = [e for e in config.experiment_names() if config.load(e).train]  # every experiment that trains
    assert f"{len(trains)} experiments: {', '.join(trains)}" in report
    assert (out / "campaign.log").read_text().rstrip().endswith(f"campaign: done; results in {out}")


def test_out_is_what_the_device_tool_brings_back(dry_run):
    _, out = dry_run
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(["campaign.log", "report.md", "metrics.csv", "results.tar.gz",
                            *(f"{name}.ckpt" for name in TRAINED)])
    assert all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    assert load_driver().check_out(out) == []


def test_test_subjects_are_scored_and_never_trained_on(dry_run):
    _, out = dry_run
    test = {r["subject"] for r in split_rows() if r["split"] == "test"}
    with (out / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["subject"], r["method"]) for r in rows} == {(s, m) for s in test for m in ("linear", *TRAINED)}
    assert all(math.isfinite(float(r["psnr"])) and 0 < float(r["ssim"]) <= 1 for r in rows)
    report = (out / "report.md").read_text()
    for name in TRAINED:  # the subjects each run drew patches from (data.record_subjects) hold no test subject
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} | ") and "| yes |" in line)
        assert row.split(" | ")[-2] == "0", row


def test_results_archive_holds_logs_tables_and_figures(dry_run):
    _, out = dry_run
    train = {r["subject"] for r in split_rows() if r["split"] == "train"}
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
        bench = tar.extractfile("results/bench.md").read().decode()
        carried = tar.extractfile("results/split_carried.tsv").read().decode().splitlines()
        for name in TRAINED:  # data.record_subjects: the subjects each epoch drew patches from, training ones only
            drawn = [tar.extractfile(n).read().decode().split() for n in names if n.startswith(f"results/runs/{name}/subjects/")]
            assert drawn and all(d and set(d) <= train for d in drawn), (name, drawn)
    for name in ("results/eval/summary.md", "results/eval/figures/boxplots.png", "results/logs/smoke.log",
                 "results/env.json", *(f"results/runs/{n}/result.json" for n in TRAINED),
                 "results/logs/train.log"):
        assert name in names, name
    assert not any(n.endswith(".ckpt") for n in names)
    assert "## Training step by batch size" in bench and "| slice_resnet |" in bench
    assert len(carried) == 1 + 11 and carried[0].startswith("subject\tsplit")


def test_checkpoints_are_fp16_generators(dry_run):
    _, out = dry_run
    for name in TRAINED:
        state = torch.load(out / f"{name}.ckpt", map_location="cpu", weights_only=False)
        assert state["hyper_parameters"]["config"]["experiment"] == name
        weights = [v for v in state["state_dict"].values() if v.is_floating_point()]
        assert weights and all(v.dtype == torch.float16 for v in weights)


def test_the_gpu_commands_pass_their_own_parsers(tmp_path):
    """What only the device runs (CUDA, bf16, paper widths, the GPU-only settings) is at least well-formed."""
    from benchmarks import bench
    from inpaint import evaluate

    (tmp_path / "data").mkdir()
    for row in split_rows()[:20] + [r for r in split_rows() if r["split"] == "test"]:
        (tmp_path / "data" / f"{row['subject']}_T1w.nii").touch()  # only the names are read
    args = argparse.Namespace(data=tmp_path / "data", work=tmp_path / "work", out=tmp_path / "out", split=SPLIT,
                              budget=520.0, dry_run=False)
    campaign = load_driver().Campaign(args)
    fits = [campaign.fit_args(e, "trainer.fast_dev_run=true") for e in config.experiment_names() if config.load(e).train]
    for argv in fits + list(campaign.train_args("00:00:04:00").values()):
        cfg = config.from_argv(argv)
        assert cfg.trainer.accelerator == "cuda" and cfg.trainer.precision == "bf16-mixed"
        assert cfg.generator == config.load(cfg.experiment).generator  # the paper's widths, not tiny ones
    assert bench.parse([a.replace("cuda", "cpu") for a in campaign.bench_args()]).batches == [48, 96]
    parsed = evaluate.build_parser().parse_args(campaign.evaluate_args({"unet3d": tmp_path / "best.ckpt"}))
    assert (parsed.device, parsed.split_name, parsed.checkpoint) == ("cuda", "test", [f"unet3d={tmp_path / 'best.ckpt'}"])


def test_pack_carries_the_test_subjects_the_first_val_and_the_first_training_ones():
    chosen = subprocess.run(["bash", "-c", "source scripts/gpu_campaign.sh && subjects 3"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split()
    by_split = {s: [r["subject"] for r in split_rows() if r["split"] == s] for s in ("train", "val", "test")}
    assert chosen == by_split["test"] + by_split["val"][:1] + by_split["train"][:3]


def test_check_out_names_what_would_not_come_back(tmp_path):
    check_out = load_driver().check_out
    for i in range(8):
        (tmp_path / f"f{i}.txt").write_text("x")
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("x")
    (tmp_path / "bad name.txt").write_text("x")
    problems = check_out(tmp_path)
    assert any("files (at most 8)" in p for p in problems)
    assert any("more than 2 folders deep" in p for p in problems)
    assert any("bad name.txt" in p for p in problems)
