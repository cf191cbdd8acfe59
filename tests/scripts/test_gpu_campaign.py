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
STAGES = ("smoke", "train", "export", "evaluate")


def split_rows() -> list[dict[str, str]]:
    with SPLIT.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def load_driver():
    spec = importlib.util.spec_from_file_location("gpu_campaign", REPO / "scripts" / "gpu_campaign.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAIN = load_driver().MAIN  # the model that would ship (slice_resnet_unshuffle since 2026-12-05)
TRAINED = (MAIN, "dense_unet_paper", "unet3d")


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
    assert "carried subjects: 2 train, 1 val, 0 test" in report  # test subjects never travel
    assert f"{MAIN} from scratch" in report
    assert (out / "campaign.log").read_text().rstrip().endswith(f"campaign: done; results in {out}")


def test_out_is_what_the_device_tool_brings_back(dry_run):
    _, out = dry_run
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(["campaign.log", "report.md", "results.tar.gz", f"{MAIN}.train.part0",
                            *(f"{name}.ckpt" for name in TRAINED)])
    assert all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    assert load_driver().check_out(out) == []


def test_val_subjects_are_scored_and_test_subjects_never_travel(dry_run):
    _, out = dry_run
    val = [r["subject"] for r in split_rows() if r["split"] == "val"][:1]
    with tarfile.open(out / "results.tar.gz") as tar:
        rows = list(csv.DictReader(tar.extractfile("results/eval/metrics.csv").read().decode().splitlines()))
        carried = tar.extractfile("results/split_carried.tsv").read().decode()
    assert {(r["subject"], r["method"]) for r in rows} == {(s, m) for s in val for m in ("linear", *TRAINED)}
    assert all(math.isfinite(float(r["psnr"])) and 0 < float(r["ssim"]) <= 1 for r in rows)
    assert "\ttest" not in carried
    report = (out / "report.md").read_text()
    for name in TRAINED:  # the subjects each run drew patches from (data.record_subjects) hold no test subject
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} | ") and "| yes |" in line)
        assert row.split(" | ")[-2] == "0", row


def test_results_archive_holds_logs_tables_and_figures(dry_run):
    _, out = dry_run
    train = {r["subject"] for r in split_rows() if r["split"] == "train"}
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
        carried = tar.extractfile("results/split_carried.tsv").read().decode().splitlines()
        for name in TRAINED:  # data.record_subjects: the subjects each epoch drew patches from, training ones only
            drawn = [tar.extractfile(n).read().decode().split() for n in names if n.startswith(f"results/runs/{name}/subjects/")]
            assert drawn and all(d and set(d) <= train for d in drawn), (name, drawn)
    for name in ("results/eval/summary.md", "results/eval/figures/boxplots.png", "results/logs/smoke.log",
                 "results/env.json", *(f"results/runs/{n}/result.json" for n in TRAINED),
                 "results/logs/train.log"):
        assert name in names, name
    assert not any(n.endswith(".ckpt") for n in names)
    assert len(carried) == 1 + 3 and carried[0].startswith("subject\tsplit")


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
    for row in [r for r in split_rows() if r["split"] != "test"][:20]:
        (tmp_path / "data" / f"{row['subject']}_T1w.nii").touch()  # only the names are read
    args = argparse.Namespace(data=tmp_path / "data", work=tmp_path / "work", out=tmp_path / "out", split=SPLIT,
                              budget=520.0, dry_run=False, resume=None, init=None)
    campaign = load_driver().Campaign(args)
    for argv in campaign.train_args(240).values():
        cfg = config.from_argv(argv)
        assert cfg.trainer.accelerator == "cuda" and cfg.trainer.precision == "bf16-mixed"
        assert cfg.generator == config.load(cfg.experiment).generator  # the real widths, not tiny ones
        assert cfg.trainer.max_time == "00:00:03:30" and cfg.data.pipeline == "resident"  # 240 s less 30 s of start-up
    main = config.from_argv(campaign.train_args(240)[MAIN])
    assert (main.data.batch_size, main.augment.p) == (48, 0.8)  # a GPU's batch; the CPU campaign's site shifts
    script = (REPO / "scripts" / "gpu_campaign.sh").read_text()
    bench_argv = next(line for line in script.splitlines() if line.startswith("BENCH_ARGS=(")).split("(")[1].split(")")[0]
    assert bench.parse(bench_argv.replace("cuda", "cpu").split()).deadline == 85
    parsed = evaluate.build_parser().parse_args(campaign.evaluate_args({"unet3d": tmp_path / "best.ckpt"}))
    assert (parsed.device, parsed.split_name, parsed.checkpoint) == ("cuda", "val", [f"unet3d={tmp_path / 'best.ckpt'}"])


def test_pack_carries_the_first_val_and_the_first_training_subjects_and_no_test_one():
    chosen = subprocess.run(["bash", "-c", "source scripts/gpu_campaign.sh && subjects 3"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split()
    by_split = {s: [r["subject"] for r in split_rows() if r["split"] == s] for s in ("train", "val", "test")}
    assert chosen == by_split["val"][:1] + by_split["train"][:3]


def test_the_training_checkpoint_comes_back_in_parts_and_the_next_lease_resumes_it(dry_run, tmp_path):
    driver = load_driver()
    _, out = dry_run
    joined = tmp_path / "last.ckpt"
    joined.write_bytes(b"".join((out / f"{MAIN}.train.part{i}").read_bytes()
                                for i in range(len(list(out.glob(f"{MAIN}.train.part*"))))))
    facts = driver.resume_facts(joined)
    assert facts["global_step"] > 0 and facts["train_seconds"] > 0
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (70_000 * 2))  # 35.8 MB: three parts
    (tmp_path / "parts").mkdir()
    assert driver.split_parts(big, tmp_path / "parts", "x.train") == 3
    parts = sorted((tmp_path / "parts").iterdir())
    assert all(p.stat().st_size <= 16 * 2**20 for p in parts) and b"".join(p.read_bytes() for p in parts) == big.read_bytes()
    (tmp_path / "data").mkdir()
    for row in [r for r in split_rows() if r["split"] != "test"][:8]:
        (tmp_path / "data" / f"{row['subject']}_T1w.nii").touch()
    args = argparse.Namespace(data=tmp_path / "data", work=tmp_path / "work", out=tmp_path / "out", split=SPLIT,
                              budget=520.0, dry_run=False, resume=joined, init=None)
    fits = driver.Campaign(args).train_args(240)
    main = config.from_argv(fits[MAIN])
    total = 240 - 30 + int(facts["train_seconds"])  # Lightning's Timer restores the seconds already trained
    assert main.ckpt_path == str(joined) and main.trainer.max_time == f"00:00:{total // 60:02d}:{total % 60:02d}"
    assert config.from_argv(fits["unet3d"]).ckpt_path is None
    joined.write_bytes(joined.read_bytes()[:1000])  # a badly joined file: the lease trains from scratch, and says so
    campaign = driver.Campaign(argparse.Namespace(**{**vars(args), "resume": joined, "work": tmp_path / "work2"}))
    assert campaign.resumed == {} and "did not load" in campaign.resume_problem
    assert config.from_argv(campaign.train_args(240)[MAIN]).ckpt_path is None


def test_a_checkpoint_too_large_to_carry_travels_as_fp16_weights_the_lease_starts_from(dry_run, tmp_path):
    """pack's choice (carry_resume): the whole training checkpoint while MIN_TRAIN training subjects still fit beside it,
    else its generator weights as fp16, which the main model starts from (init_from) with a fresh optimiser."""
    _, out = dry_run
    joined = tmp_path / "last.ckpt"
    joined.write_bytes(b"".join((out / f"{MAIN}.train.part{i}").read_bytes()
                                for i in range(len(list(out.glob(f"{MAIN}.train.part*"))))))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "site.tar.xz").write_bytes(b"")

    def carry(min_train: int) -> tuple[str, list[str]]:
        env = {**os.environ, "PY": sys.executable, "RESUME": str(joined), "MIN_TRAIN": str(min_train)}
        proc = subprocess.run(["bash", "-c", 'source scripts/gpu_campaign.sh && carry_resume "$0"', str(bundle)], cwd=REPO,
                              env=env, capture_output=True, text=True, check=True)
        return proc.stdout, sorted(p.name for p in bundle.iterdir())

    said, carried = carry(1)
    assert carried == ["resume.ckpt", "site.tar.xz"] and said.startswith("resuming")
    said, carried = carry(1000)  # no room for 1,000 training subjects beside it: the weights alone
    assert carried == ["init.ckpt", "site.tar.xz"] and "travel as fp16" in said
    init = bundle / "init.ckpt"
    state = torch.load(init, map_location="cpu", weights_only=False)
    assert "optimizer_states" not in state and init.stat().st_size < joined.stat().st_size
    assert all(v.dtype == torch.float16 for v in state["state_dict"].values() if v.is_floating_point())
    (tmp_path / "data").mkdir()
    for row in [r for r in split_rows() if r["split"] != "test"][:8]:
        (tmp_path / "data" / f"{row['subject']}_T1w.nii").touch()
    campaign = load_driver().Campaign(argparse.Namespace(data=tmp_path / "data", work=tmp_path / "work", out=tmp_path / "out",
                                                         split=SPLIT, budget=520.0, dry_run=False, resume=None, init=init))
    main = config.from_argv(campaign.train_args(240)[MAIN])
    assert (main.init_from, main.ckpt_path, main.trainer.max_time) == (str(init), None, "00:00:03:30")  # a fresh Timer
    assert config.from_argv(campaign.train_args(240)["unet3d"]).init_from is None
    assert f"{MAIN} from the generator weights of init.ckpt" in campaign.report()
    env = {**os.environ, "PY": sys.executable, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path), "MIN_TRAIN": "1000"}
    proc = subprocess.run(["bash", "scripts/gpu_campaign.sh", "dry-run", "--data", str(out.parent / "data"), "--out",
                           str(tmp_path / "lease2"), "--resume", str(joined)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)  # the next lease, end to end, from the weights alone
    report = (tmp_path / "lease2" / "report.md").read_text()
    assert proc.returncode == 0 and "travel as fp16" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| train | ok |" in report and f"{MAIN} from the generator weights of init.ckpt" in report


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
