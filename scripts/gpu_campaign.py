"""Stages of the one-call H200 campaign, run by ``scripts/gpu_campaign.sh`` after it unpacks the bundles.

    python scripts/gpu_campaign.py --data DIR --work DIR --out DIR [--resume CKPT | --init CKPT] [--dry-run]
                                   [--budget SECONDS]

1. smoke:    the imports (where each package comes from) and the device, in one process (the CPU dry run in the
             tests runs every stage end to end, so the GPU's seconds go to training);
2. train:    ``MAIN``, the model that would ship (``slice_resnet_unshuffle``), with ``dense_unet_paper`` and ``unet3d`` side by
             side on the one GPU, ``trainer.max_time`` = every second the other stages leave, on the committed
             split restricted to the carried subjects (no test subject travels); ``--resume`` continues the main
             model's training checkpoint of an earlier lease, ``--init`` starts it from a checkpoint's generator
             weights (``init_from``: what a lease carries when the training checkpoint is too large; ``--dry-run``:
             one after the other, seconds each);
3. export:   each best (else last) checkpoint as fp16 (``python -m inpaint.export``), its step count, and the main
             model's training checkpoint in parts of at most 16 MiB (the next lease resumes it);
4. evaluate: ``python -m inpaint.evaluate`` on the carried val subjects, linear and every trained network. The test
             split is scored after the call, on the CPU, from the fp16 checkpoints (docs/gpu.md).

The bench runs in a call of its own (``scripts/gpu_campaign.sh bench``). Every stage has a hard time limit; a failed
stage is reported and the next one still runs. At most 8 files come back under OUT: campaign.log (the shell
script's), report.md, results.tar.gz (logs, summaries, figures, run folders), ``NAME.ckpt`` for each exported
generator of at most 16 MiB and ``MAIN.train.partN``. ``--dry-run``: tiny networks, seconds of training, on the
CPU. ``--jobs FILE`` (internal) runs a stage's jobs in this process.
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The model that would ship: the campaign's most seconds, resumed lease after lease. Since 2026-12-05 the winner of
# issue 25's capacity A/B (docs/results.md); the lease of 2026-12-04 trained slice_resnet_large (pretrained's start).
MAIN = "slice_resnet_unshuffle"
TRAINED = (MAIN, "dense_unet_paper", "unet3d")  # ours and the paper's two networks, side by side
PREFLIGHT = ("torch", "lightning", "torchio", "SimpleITK", "nibabel", "omegaconf", "inpaint.fit", "inpaint.evaluate",
             "inpaint.export")
MiB = 2**20
OUT_FILES, OUT_FILE_BYTES, OUT_TOTAL_BYTES = 8, 16 * MiB, 64 * MiB  # what the device tool brings back
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# A training checkpoint holds fp32 weights and two Adam moments (~12 bytes a parameter), its fp16 export 2: one over
# this size cannot come back (the paper's 3D U-Net: ~1 GiB), so it is not exported (it is evaluated there).
TRAINING_CKPT_BYTES = 2 * 6 * OUT_FILE_BYTES
# Hard limits (s): "smoke" = imports and device, "evaluate" = exports + evaluation (reserved before the training
# starts), "report" = packing OUT. Lightning's Timer starts at on_train_start, so a run's trainer.max_time is its
# window less "startup" (imports, CUDA, reading the volumes), and it may take "train_grace" s past the window
# (last validation, checkpoints). On the GPU the training gets every second the budget leaves (~6.5 of 9 minutes).
LIMITS = {"gpu": {"smoke": 45, "evaluate": 60, "report": 15, "train_grace": 30, "startup": 30},
          "dry": {"smoke": 120, "evaluate": 200, "report": 15, "train_grace": 90, "startup": 0}}
DRY_TRAIN_SECONDS = 2
# GPU: fewer validations (a whole val volume's metrics run on the CPU, ~2 s) and the paper networks' patches from
# resident volumes too, so that three trainings do not queue on the 16 cores.
# MAIN: a GPU's batch (its yaml's 12 is the CPU campaign's) and the CPU campaign's site shifts.
GPU_TRAIN = {MAIN: ["trainer.check_val_every_n_epoch=25", "data.batch_size=48", "data.samples_per_volume=128",
                    "data.queue_length=1024", "augment.p=0.8"],
             "dense_unet_paper": ["data.pipeline=resident"], "unet3d": ["data.pipeline=resident"]}
# --dry-run: tiny widths per generator, and data settings for small phantoms (the test's: 36 x 40 x 36) on one thread.
TINY = {"dense_unet": ["generator.features=4", "generator.layers_per_block=2"],
        "unet3d": ["generator.features=[4,8,16,32,64]"],
        "slice_resnet": ["generator.features=4", "generator.blocks=1", "generator.head_features=8", "data.patch_slices=4"]}
TINY_DATA = ["data.batch_size=2", "data.samples_per_volume=4", "data.queue_length=8", "data.num_workers=0",
             "inference.batch_size=8"]


# -- the stages' jobs, run inside one process (python scripts/gpu_campaign.py --jobs FILE) ----------------------------
def preflight(argv: list[str]) -> int:
    """Import every package the stages need; write versions, origins and the device to ``argv[0]`` (JSON)."""
    origins = {}
    for name in PREFLIGHT:
        module = importlib.import_module(name)
        origins[name] = {"version": str(getattr(module, "__version__", "")), "file": str(getattr(module, "__file__", ""))}
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no CUDA device visible)"
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "device": device, "modules": origins}
    Path(argv[0]).write_text(json.dumps(env, indent=2))
    print(json.dumps(env, indent=2))
    return 0


def checkpoint_facts(argv: list[str]) -> int:
    """Steps, patches seen (steps x data.batch_size), epochs and generator parameters of checkpoint ``argv[0]``,
    written to ``argv[1]`` (JSON)."""
    import torch

    state = torch.load(argv[0], map_location="cpu", weights_only=False, mmap=True)
    steps, batch = int(state.get("global_step", 0)), state["hyper_parameters"]["config"]["data"]["batch_size"]
    facts = {"global_step": steps, "patches": steps * int(batch), "epoch": int(state.get("epoch", 0)),
             "parameters": sum(v.numel() for k, v in state["state_dict"].items() if k.startswith("generator."))}
    Path(argv[1]).write_text(json.dumps(facts))
    return 0


LOCAL_JOBS = {"preflight": preflight, "checkpoint_facts": checkpoint_facts}


def run_jobs(path: Path) -> int:
    """Run ``[[module, argv], ...]`` from ``path`` here, in order, as ``python -m module argv`` would; results go to
    ``path.with_suffix('.result.json')`` after each job. Returns 1 if any failed."""
    jobs, results = json.loads(path.read_text()), []
    for module, argv in jobs:
        print(f"\n== job: {module} {shlex.join(argv)}", flush=True)
        start = time.monotonic()
        try:
            rc = (LOCAL_JOBS[module] if module in LOCAL_JOBS else importlib.import_module(module).main)(argv)
        except SystemExit as error:
            rc = error.code if isinstance(error.code, int) else 1
        except Exception:  # noqa: BLE001 - a job's failure is reported, the next job still runs
            traceback.print_exc()
            rc = 1
        results.append({"job": module, "argv": argv, "rc": rc or 0, "seconds": round(time.monotonic() - start, 1)})
        print(f"== job done: rc {rc or 0}, {results[-1]['seconds']} s", flush=True)
        path.with_suffix(".result.json").write_text(json.dumps(results, indent=2))
        gc.collect()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.empty_cache()
    return int(any(r["rc"] for r in results))


# -- the driver ------------------------------------------------------------------------------------------------------
class Campaign:
    """The stages in order, each under its limit, with a row per stage for the report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.start = args, time.monotonic()
        self.work, self.out, self.data = args.work.resolve(), args.out.resolve(), args.data.resolve()
        self.dry = args.dry_run
        self.limits = LIMITS["dry" if self.dry else "gpu"]
        self.device = "cpu" if self.dry else "cuda"
        self.rows: list[dict] = []
        self.exported: list[str] = []
        self.train_seconds = 0.0
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self.split = self.carried_split()
        self.resume_problem = ""
        try:
            self.resumed = resume_facts(args.resume or args.init)
        except Exception as error:  # noqa: BLE001 - a bad resume file must not cost the lease: train from scratch
            self.resume_problem = f"{args.resume or args.init} did not load ({type(error).__name__}: {str(error)[:120]})"
            print(f"campaign: {self.resume_problem}; {MAIN} trains from scratch", flush=True)
            args.resume, args.init, self.resumed = None, None, {}

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.start)

    def limit(self, stage: str, reserve: float = 0.0) -> float:
        """A stage's limit, cut to the budget left after ``reserve`` seconds (the report's and later stages')."""
        return max(1.0, min(self.limits[stage], self.left() - reserve - self.limits["report"]))

    def record(self, stage: str, ok: bool | None, seconds: float, note: str = "") -> None:
        status = "ok" if ok else ("skipped" if ok is None else "FAILED")
        self.rows.append({"stage": stage, "status": status, "seconds": round(seconds, 1), "note": note})
        print(f"\n==== {stage}: {status} in {seconds:.1f} s {note}\n", flush=True)

    def processes(self, commands: dict[str, list[str]], limit: float, env: dict | None = None) -> dict[str, int | None]:
        """Run ``{name: command}`` side by side, each in its own process group with output in ``logs/NAME.log``;
        a group still running after ``limit`` seconds is killed. Returns name -> exit code (None: killed)."""
        running, codes, deadline = {}, {}, time.monotonic() + limit
        for name, command in commands.items():
            print(f"[{name}] {shlex.join(command)} (limit {limit:.0f} s)", flush=True)
            with (self.work / "logs" / f"{name}.log").open("w") as log:
                running[name] = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                                 start_new_session=True, env={**os.environ, **(env or {})})
        while running:
            time.sleep(0.2)
            for name, proc in list(running.items()):
                if proc.poll() is None and time.monotonic() < deadline:
                    continue
                if proc.poll() is None:  # past its limit
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    codes[name] = None
                else:
                    codes[name] = proc.returncode
                del running[name]
        for name in commands:
            tail = (self.work / "logs" / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
            print(f"---- {name}: exit {codes[name]}; last lines of logs/{name}.log\n" + "\n".join(tail), flush=True)
        return codes

    def jobs(self, stage: str, jobs: list[list], limit: float) -> list[dict]:
        """Run ``jobs`` in one process (imports paid once); returns their results (rc, seconds)."""
        spec = self.work / f"{stage}.jobs.json"
        spec.write_text(json.dumps(jobs))
        self.processes({stage: [sys.executable, __file__, "--jobs", str(spec)]}, limit)
        done = spec.with_suffix(".result.json")
        results = json.loads(done.read_text()) if done.exists() else []
        return results + [{"job": m, "argv": a, "rc": None, "seconds": 0.0} for m, a in jobs[len(results):]]

    # -- settings ----------------------------------------------------------------------------------------------------
    def carried_split(self) -> Path:
        """The committed split restricted to the carried subjects (data.split refuses subjects without a volume)."""
        with self.args.split.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        carried = {p.name.split("_")[0] for p in self.data.iterdir() if ".nii" in p.name}
        kept = [r for r in rows if r["subject"] in carried]
        counts = {s: sum(r["split"] == s for r in kept) for s in ("train", "val", "test")}
        if counts["test"] or not counts["train"] or not counts["val"]:
            raise ValueError(f"{self.data} holds test subjects or no train/val subject ({counts}): test subjects never "
                             "travel; rebuild the bundle with scripts/gpu_campaign.sh pack")
        path = self.work / "split_carried.tsv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept)
        self.subjects = {s: [r["subject"] for r in kept if r["split"] == s] for s in counts}
        return path

    def fit_args(self, experiment: str, *extra: str) -> list[str]:
        from inpaint import config

        generator = config.load(experiment).generator.name
        common = [f"experiment={experiment}", f"data.root={self.data}", f"data.split={self.split}",
                  f"trainer.accelerator={self.device}", "trainer.devices=1", "trainer.enable_progress_bar=false"]
        if self.dry:
            return common + TINY_DATA + TINY.get(generator, []) + list(extra)
        return common + ["trainer.precision=bf16-mixed", "data.num_workers=4", "inference.batch_size=64", *extra]

    # -- stages ------------------------------------------------------------------------------------------------------
    def stage(self, name: str, results: list[dict], note: str = "") -> bool:
        """One report row from the results of a stage's jobs; True if all of them succeeded."""
        failed = [r["argv"][0] if r["job"] == "inpaint.fit" else r["job"] for r in results if r["rc"] != 0]
        self.record(name, bool(results) and not failed, sum(r["seconds"] for r in results),
                    note + (f"; failed: {', '.join(failed)}" if failed else ""))
        return bool(results) and not failed

    def smoke(self) -> bool:
        """Imports (where each package comes from) and the device, in one process. True if they work."""
        results = self.jobs("smoke", [["preflight", [str(self.work / "env.json")]]], self.limit("smoke"))
        return self.stage("smoke", results, "imports and device")

    def train_args(self, seconds: int) -> dict[str, list[str]]:
        """``inpaint.fit`` arguments of each network, a window of ``seconds`` each: ``trainer.max_time`` is the window
        less the start-up (``--resume``: plus the training time the main model's checkpoint already holds, which
        Lightning's Timer restores; ``--init``: its generator weights only, optimiser and Timer afresh)."""
        args = {}
        for e in TRAINED:
            resume = [f"ckpt_path={self.args.resume}"] if e == MAIN and self.args.resume else []
            init = [f"init_from={self.args.init}"] if e == MAIN and self.args.init and not resume else []
            total = max(1, seconds - self.limits["startup"]) + (int(self.resumed["train_seconds"]) if resume else 0)
            max_time = f"00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
            args[e] = self.fit_args(e, f"trainer.max_time={max_time}", "logger=csv", "data.record_subjects=true",
                                    f"run_dir={self.work / 'runs' / e}", *resume, *init,
                                    *([] if self.dry else GPU_TRAIN.get(e, [])))
        return args

    def evaluate_args(self, ckpts: dict[str, Path]) -> list[str]:
        """``inpaint.evaluate`` arguments: the carried val subjects (the networks were selected on them: ``--allow-seen``;
        the report calls them val figures), the paper's protocol, linear and ``ckpts``."""
        return ["--data", str(self.data), "--split", str(self.split), "--split-name", "val", "--allow-seen", "--interval", "5",
                "--offset", "0", "--methods", "linear", "--device", self.device, "--out", str(self.work / "eval"),
                *[a for e, p in ckpts.items() for a in ("--checkpoint", f"{e}={p}")]]

    def train(self) -> None:
        """The comparison's networks side by side, each for the seconds the other stages leave."""
        grace = self.limits["train_grace"]
        seconds = DRY_TRAIN_SECONDS if self.dry else int(
            self.left() - grace - self.limits["evaluate"] - self.limits["report"])
        if seconds < 30 and not self.dry:
            self.record("train", None, 0.0, f"only {seconds} s left for training")
            return
        fits = self.train_args(seconds)
        start = time.monotonic()
        if self.dry:  # one CPU thread: one after the other, in one process (the imports paid once)
            results = self.jobs("train", [["inpaint.fit", argv] for argv in fits.values()], len(fits) * (seconds + grace))
            failed = [e for e, r in zip(fits, results, strict=True) if r["rc"] != 0]
        else:  # side by side on the one GPU, each with its own data workers
            codes = self.processes({f"train_{e}": [sys.executable, "-m", "inpaint.fit", *argv] for e, argv in fits.items()},
                                   seconds + grace, env={"OMP_NUM_THREADS": "4"})
            failed = [n for n, rc in codes.items() if rc != 0]
        self.train_seconds = round(time.monotonic() - start, 1)
        self.record("train", not failed, self.train_seconds, f"{seconds} s of trainer.max_time each, "
                    + ("one after the other" if self.dry else "side by side") + (f"; failed: {', '.join(failed)}" if failed else ""))

    def checkpoints(self) -> dict[str, Path]:
        """Best (else last) checkpoint of each trained run that has one."""
        found = {}
        for e in TRAINED:
            folder = self.work / "runs" / e / "checkpoints"
            path = next((folder / n for n in ("best.ckpt", "last.ckpt") if (folder / n).exists()), None)
            if path is not None:
                found[e] = path
        return found

    def export_and_evaluate(self) -> None:
        """fp16 exports and step counts first (they must come back even if the evaluation runs out of time), then
        the carried val subjects with linear and every checkpoint: one process."""
        ckpts, folder = self.checkpoints(), self.work / "export"
        folder.mkdir(exist_ok=True)
        last = {e: p.parent / "last.ckpt" if (p.parent / "last.ckpt").exists() else p for e, p in ckpts.items()}
        jobs = [["checkpoint_facts", [str(last[e]), str(folder / f"{e}.facts.json")]] for e in ckpts]
        jobs += [["inpaint.export", [str(p), "-o", str(folder / f"{e}.ckpt"), "--dtype", "fp16"]] for e, p in ckpts.items()
                 if p.stat().st_size <= TRAINING_CKPT_BYTES]
        jobs += [["inpaint.evaluate", self.evaluate_args(ckpts)]]
        results = self.jobs("evaluate", jobs, self.limit("evaluate"))
        self.exported = []
        for e in ckpts:
            path = folder / f"{e}.ckpt"
            if path.exists() and path.stat().st_size <= OUT_FILE_BYTES:
                place(path, self.out)
                self.exported.append(e)
        parts = split_parts(last[MAIN], self.out, f"{MAIN}.train") if MAIN in last else 0
        large = [e for e, p in ckpts.items() if p.stat().st_size > TRAINING_CKPT_BYTES]
        self.stage("export", results[:-1] if ckpts else [], f"back as fp16 (<= 16 MiB): {', '.join(self.exported) or 'none'}; "
                   f"{MAIN}'s training checkpoint in {parts} part(s) of <= 16 MiB"
                   + (f"; too large to come back, not exported: {', '.join(large)}" if large else ""))
        self.stage("evaluate", results[-1:], f"linear + {', '.join(ckpts) or 'no network'} on "
                   f"{len(self.subjects['val'])} val subject(s)" + ("" if len(ckpts) == len(TRAINED) else "; a network is missing"))

    # -- report and outputs ------------------------------------------------------------------------------------------
    def training_table(self) -> list[str]:
        lines = ["| experiment | parameters | steps | patches seen | epochs | best val PSNR (dB) | linear (dB) | "
                 "test subjects drawn | fp16 checkpoint back |", "|---|---|---|---|---|---|---|---|---|"]
        for e in TRAINED:
            run = self.work / "runs" / e
            facts_path = self.work / "export" / f"{e}.facts.json"
            facts = json.loads(facts_path.read_text()) if facts_path.exists() else {}
            result = json.loads((run / "result.json").read_text()) if (run / "result.json").exists() else {}
            drawn = {line for f in (run / "subjects").glob("*.txt") for line in f.read_text().split()}
            metric = result.get("metrics", {})
            lines.append(f"| {e} | {facts.get('parameters', '—')} | {facts.get('global_step', '—')} | "
                         f"{facts.get('patches', '—')} | {facts.get('epoch', '—')} | "
                         f"{metric.get('val/psnr', float('nan')):.2f} | {metric.get('val/linear_psnr', float('nan')):.2f} | "
                         f"{len(drawn & set(self.subjects['test'])) if drawn else 'none recorded'} | "
                         f"{'yes' if e in self.exported else 'no'} |")
        return lines

    def report(self) -> str:
        env_path = self.work / "env.json"
        env = json.loads(env_path.read_text()) if env_path.exists() else {}
        omegaconf = env.get("modules", {}).get("omegaconf", {}).get("file", "?")
        lines = [f"# GPU campaign{' (dry run)' if self.dry else ''}", "",
                 f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
                 f"- device: {env.get('device', '?')}; torch {env.get('torch', '?')}, Python {env.get('python', '?')}",
                 f"- omegaconf from the unpacked bundle: {'yes' if omegaconf.startswith(str(self.work)) else 'no'} "
                 f"({omegaconf})",
                 f"- carried subjects: {', '.join(f'{len(v)} {k}' for k, v in self.subjects.items())} "
                 f"(the committed split restricted to them: split_carried.tsv)",
                 f"- training: {', '.join(TRAINED)} {'one after the other' if self.dry else 'side by side'}, "
                 f"{self.train_seconds} s wall in all; {MAIN} "
                 + (f"resumed from step {self.resumed['global_step']} ({self.resumed['train_seconds']:.0f} s trained before)"
                    if self.resumed and self.args.resume else
                    f"from the generator weights of {self.args.init.name} (init_from; optimiser afresh)"
                    if self.resumed else "from scratch" + (f" ({self.resume_problem})" if self.resume_problem else "")),
                 f"- driver wall time: {time.monotonic() - self.start:.0f} s", "", "## Stages", "",
                 "| stage | status | seconds | note |", "|---|---|---|---|"]
        lines += [f"| {r['stage']} | {r['status']} | {r['seconds']} | {r['note']} |" for r in self.rows]
        lines += ["", "## Training (patches seen = steps x batch)", "", *self.training_table()]
        for title, path in (("Val subjects (inpaint.evaluate)", self.work / "eval" / "summary.md"),):
            text = path.read_text() if path.exists() else f"# {path.name}\n\nnot written: see the stage table"
            lines += ["", f"## {title}", "", *[("#" + line if line.startswith("#") else line) for line in text.splitlines()]]
        return "\n".join(lines) + "\n"

    def pack(self) -> list[str]:
        """report.md, metrics.csv and results.tar.gz into OUT; returns what breaks the device tool's limits."""
        text = self.report()
        (self.work / "report.md").write_text(text)
        place(self.work / "report.md", self.out)
        panels = sorted((self.work / "runs").glob("*/panels/*.png"))
        dropped = {p for p in panels if p not in sorted(p.parent.glob("*.png"))[-2:]}  # each run's last two panels

        def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            return None if info.name.endswith(".ckpt") or self.work / info.name.split("/", 1)[1] in dropped else info

        with tarfile.open(self.work / "results.tar.gz", "w:gz") as tar:
            for name in ("report.md", "logs", "runs", "eval", "env.json", "split_carried.tsv"):
                if (self.work / name).exists():
                    tar.add(self.work / name, arcname=f"results/{name}", filter=keep)
        place(self.work / "results.tar.gz", self.out)
        recap = text.split("\n## Val subjects")[0].split("\n## Stages")[1]  # output_tail keeps only the last 12,000 chars
        print(f"{text}\n# Recap\n\n## Stages{recap}", flush=True)
        return check_out(self.out)


def place(source: Path, folder: Path) -> None:
    """Copy ``source`` into ``folder`` atomically (a partial file is never left under its name)."""
    partial = folder / f".{source.name}.partial"
    shutil.copyfile(source, partial)
    os.replace(partial, folder / source.name)


def split_parts(source: Path, folder: Path, stem: str) -> int:
    """``source`` as ``folder/stem.part0``, ``.part1``, ... of at most 16 MiB each (``cat`` joins them); returns the count."""
    data, parts = source.read_bytes(), 0
    for parts, start in enumerate(range(0, max(len(data), 1), OUT_FILE_BYTES), 1):
        partial = folder / f".{stem}.part{parts - 1}.partial"
        partial.write_bytes(data[start : start + OUT_FILE_BYTES])
        os.replace(partial, folder / f"{stem}.part{parts - 1}")
    return parts


def resume_facts(path: Path | None) -> dict:
    """Step and training seconds (Lightning's Timer state) of the main model's checkpoint to resume or start from
    (a training checkpoint or an ``inpaint.export`` of one); {} for none."""
    if path is None:
        return {}
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    experiment = state["hyper_parameters"]["config"]["experiment"]
    if experiment != MAIN:
        raise ValueError(f"{path}: a checkpoint of {experiment!r}, not of {MAIN!r}")
    timer = next((v for k, v in state.get("callbacks", {}).items() if k.startswith("Timer")), {})
    return {"global_step": int(state.get("global_step", 0)),
            "train_seconds": float(timer.get("time_elapsed", {}).get("train", 0.0))}


def check_out(out: Path) -> list[str]:
    """What under ``out`` would not come back from the device machine (campaign.log counted even if not yet written)."""
    files = [p for p in out.rglob("*") if p.is_file()]
    log = 0 if (out / "campaign.log").exists() else 1
    problems = [f"{len(files) + log} files (at most {OUT_FILES})"] if len(files) + log > OUT_FILES else []
    problems += [f"{p.name}: {p.stat().st_size / MiB:.1f} MiB (at most 16)" for p in files if p.stat().st_size > OUT_FILE_BYTES]
    problems += [f"{p}: more than 2 folders deep" for p in files if len(p.relative_to(out).parts) > 3]
    problems += [f"{p}: a name with other characters than letters, digits, . _ -" for p in files
                 if not all(OUT_NAME.match(part) for part in p.relative_to(out).parts)]
    if sum(p.stat().st_size for p in files) > OUT_TOTAL_BYTES:
        problems.append("more than 64 MiB in all")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_campaign.py", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help="the unpacked subjects (flat folder of sub-XX_T1w.nii)")
    parser.add_argument("--work", type=Path, help="a scratch folder (the unpacked bundles are in it)")
    parser.add_argument("--out", type=Path, help="the folder that comes back (at most 8 files)")
    parser.add_argument("--split", type=Path, default=REPO / "experiments" / "splits" / "ds002748.tsv")
    parser.add_argument("--budget", type=float, default=520.0, help="seconds for all stages (default 520)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", type=Path, default=None, help=f"a {MAIN} training checkpoint of an earlier lease")
    start.add_argument("--init", type=Path, default=None, help=f"a {MAIN} checkpoint whose generator weights start the "
                       "training (fine-tuning: the optimiser starts afresh)")
    parser.add_argument("--dry-run", action="store_true", help="tiny networks, seconds of training, CPU")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.jobs:
        return run_jobs(args.jobs)
    if not (args.data and args.work and args.out):
        parser.error("--data, --work and --out are required")
    try:
        campaign = Campaign(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if campaign.smoke():
        campaign.train()
        campaign.export_and_evaluate()
    else:
        for stage in ("train", "export", "evaluate"):
            campaign.record(stage, None, 0.0, "the imports failed: see logs/smoke.log")
    problems = campaign.pack()
    failed = [r["stage"] for r in campaign.rows if r["status"] != "ok"]
    for line in ([f"stage(s) not ok: {', '.join(failed)}"] if failed else []) + [f"OUT: {p}" for p in problems]:
        print(f"campaign: {line}", file=sys.stderr)
    print(f"campaign: {'done' if not failed and not problems else 'FAILED'}; results in {args.out}", flush=True)
    return int(bool(failed or problems))


if __name__ == "__main__":
    sys.exit(main())
