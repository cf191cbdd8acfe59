"""Speed bench: training patches/s, training-data patches/s, whole-volume inference seconds, memory, FLOP/s.

    python -m benchmarks.bench                                  # paper sizes on the CPU (< ~8 min on 2 cores)
    python -m benchmarks.bench --device cuda --deadline 85 --out bench.md   # every row, within ~90 s on an H200
    python -m benchmarks.bench --device cuda --batches 48,96     # + patches/s by batch size, the best marked
    python -m benchmarks.bench --shrunk --repeats 1             # tiny networks and sizes: a smoke run
    python -m benchmarks.bench --levers --skip train,peer,queue --generators dense_unet   # inference levers
    python -m benchmarks.bench --generators dense_unet --skip queue,infer,peer --channels-first   # the old layout
    python -m benchmarks.bench --checkpoint runs/.../best.ckpt  # tile-vs-exact difference of a trained net

Training: forward + backward + Adam step on random 32³ patches (batch 12; fp32 on the CPU, bf16
autocast on CUDA), with and without the perceptual term (the committed VGG19 weights). FLOPs are
counted with ``torch.utils.flop_counter.FlopCounterMode`` over one whole step (2 x multiply-adds).
Inference: ``InpaintingModule.predict_volume`` on a real ds002748 volume (or a phantom of its size),
interval 5, BatchRenorm statistics calibrated on the volume's patches; the MONAI peer
(``sliding_window_inference``, same patch function, overlap 8/32 = 0.25) as a ratio. Training data: the real
``InpaintDataModule.train_dataloader`` of each trained generator's experiment, through the TorchIO queue and the
resident pipeline (on ``--device``), beside that generator's step rate. Optional packages (monai, psutil)
load lazily. Every row is guarded: a failure is the row's note, ``--deadline`` skips what would start
late, and ``--out`` is rewritten after every row.
On the CPU, heavy measurements stop after ``--budget`` seconds (the "timed steps" column says how
many ran); machines shared with other jobs inflate wall seconds, so the process CPU seconds and
the load average are printed as well.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from inpaint.metrics import psnr

REPO = Path(__file__).resolve().parents[1]
NORMALISED_RANGE = 2.0  # PSNR peak of volumes normalised to [-1, 1]
DEFAULT_VOLUME = REPO.parent / "shared" / "data" / "ds002748" / "sub-02_T1w.nii.gz"
H100_BF16_DENSE = 989e12  # H100 SXM dense bf16 spec, FLOP/s
MATMUL_REACHABLE = 798e12  # what a large bf16 matmul reaches on an H100 (measured again on cuda)
SHRUNK = {"dense_unet": {"features": 4, "layers_per_block": 2}, "unet3d": {"features": (4, 8, 16, 32, 64)},
          "slice_resnet": {"features": 4, "blocks": 1, "head_features": 8}}


# -- timing, memory, the benchmark volume and its calibrated network ----------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory inside a ``with`` block: CUDA allocator peak, else sampled RSS (psutil) or ru_maxrss."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self.kind = device, 0, ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "GPU"
            return self
        try:
            import psutil
        except ImportError:
            self.kind = "process max RSS"
            return self
        self.kind, self._stop, proc = "RSS", threading.Event(), psutil.Process()

        def sample() -> None:
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, proc.memory_info().rss)

        self.peak, self._thread = proc.memory_info().rss, threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self.kind == "RSS":
            self._stop.set()
            self._thread.join()
        else:
            import resource

            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    def __str__(self) -> str:
        return f"{self.peak / 2**30:.2f} GiB {self.kind}"


def timed(fn: Any, device: torch.device, repeats: int, budget: float) -> list[float]:
    """Seconds of ``repeats`` calls (at least one; stop early once ``budget`` seconds are spent)."""
    times: list[float] = []
    while len(times) < repeats and (not times or sum(times) < budget):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def phantom(shape: tuple[int, int, int]) -> torch.Tensor:
    """A smooth skull-stripped 'brain' of ``shape``: an ellipsoid with texture, 0 outside, float32."""
    grid = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = sum((g / r) ** 2 for g, r in zip(grid, (0.9, 0.9, 0.85), strict=True))
    texture = sum(torch.sin(7 * g + k) for k, g in enumerate(grid))
    return torch.where(radius < 1, 600 + 150 * texture, torch.zeros(())).float()


def load_case(path: Path | None, shape: tuple[int, int, int], interval: int = 5) -> dict[str, Any]:
    """Degrade (every ``interval``-th slice, linear fill) and normalise a volume, slice axis last, as ``Restorer`` does.

    Returns:
        ``input``, ``known``, ``mask`` (the network's: ``input > 0``), ``target`` (the normalised original): (X, Y, Z)
        tensors; ``degraded`` (``inpaint.data.degrade.Degraded``, file order), ``scale``, ``perm`` and ``name``.
    """
    import numpy as np

    from inpaint.data.degrade import degrade
    from inpaint.data.normalise import acquired_scale, normalise
    from inpaint.geometry import slice_last_permutation

    if path is not None:
        from inpaint.data.io import read_volume

        data, affine = read_volume(path)
        data, name = data[0], path.name.split(".")[0]
    else:
        data, affine, name = phantom(shape), np.eye(4), "phantom"  # slice axis 2
    sparse = degrade(data, affine, interval, 0, name)
    known = sparse.known.to(torch.uint8)
    mask = (sparse.input > 0).to(torch.uint8)  # the Restorer's network mask: never the missing reference slices
    scale = acquired_scale(sparse.input, known, mask, name)
    x, target = normalise(sparse.input, scale), normalise(data, scale)
    perm = slice_last_permutation(sparse.axis)
    tensors = (("input", x), ("known", known), ("mask", mask), ("target", target))
    return {"name": name, "degraded": sparse, "scale": scale, "perm": perm,
            **{k: t.permute(*perm).contiguous() for k, t in tensors}}


def calibrate(net: nn.Module, case: dict[str, Any], patch: int, count: int = 8) -> None:
    """Set norm running statistics from ``count`` brain patches of the case (a trained net's are realistic)."""
    from inpaint.data.transforms import lattice_mask

    centres = torch.nonzero(lattice_mask(case["mask"], patch, patch // 2))
    centres = centres[torch.linspace(0, len(centres) - 1, count).long()]
    device = next(net.parameters()).device
    x = torch.stack([case["input"][tuple(slice(c - patch // 2, c + patch // 2) for c in centre.tolist())]
                     for centre in centres])[:, None].to(device)
    norms = [m for m in net.modules() if hasattr(m, "running_var") and hasattr(m, "momentum")]
    if not norms:  # nothing to calibrate (e.g. slice_resnet, which also takes other inputs than a patch)
        net.eval()
        return
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 1.0
    with torch.no_grad():
        net.train()(x)
    for m, (momentum, steps) in zip(norms, saved, strict=True):
        m.momentum = momentum
        m.num_batches_tracked.copy_(steps)
    net.eval()


def cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (TorchIO's queue workers once they exit)."""
    import resource

    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def bench_data(experiment: str, pipeline: str, args: argparse.Namespace) -> dict[str, Any]:
    """Training patches/s of ``experiment``'s data settings through ``pipeline`` (InpaintDataModule.train_dataloader):
    the TorchIO queue with its workers, or resident volumes on ``args.device``; ``args.queue_subjects`` training
    subjects, epochs repeated until ``args.queue_batches`` batches of ``args.batch`` are timed (after the first);
    on the CPU with one torch thread (TorchIO's workers have one each), so patches/s is per core there."""
    from inpaint import config as configuration

    overrides = [f"data.batch_size={args.batch}", f"data.pipeline={pipeline}"]
    overrides += [f"data.root={args.queue_root}"] if args.queue_root else []  # else the bundled demo data
    if args.shrunk:  # tiny volumes: enough patches per subject for a few batches, no worker processes
        overrides += ["data.samples_per_volume=8", "data.queue_length=16", "data.num_workers=0", "data.patch_slices=4"]
    cfg = configuration.load(experiment, overrides)
    with torch_threads(1 if args.device.type == "cpu" else torch.get_num_threads()):  # CPU rows: per core
        return measure_data(cfg, pipeline, args)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_data(cfg: Any, pipeline: str, args: argparse.Namespace) -> dict[str, Any]:
    """``bench_data``'s measurement of one loaded config."""
    import gc

    from inpaint.data.module import InpaintDataModule
    from models import acquired_grid

    cpu, start = cpu_seconds(), time.perf_counter()
    datamodule = InpaintDataModule(cfg.data, cfg.seed, acquired_grid(cfg.generator.name))
    datamodule.setup()
    datamodule.splits["train"] = datamodule.splits["train"][: args.queue_subjects]
    batches = iter(datamodule.train_dataloader(args.device))
    next(batches)
    sync(args.device)
    setup = time.perf_counter() - start
    count, start, cpu = 0, time.perf_counter(), cpu_seconds()
    while count < args.queue_batches * args.batch:
        for batch in batches:
            count += len(batch["name"])
            if count >= args.queue_batches * args.batch:
                break
        else:
            batches = iter(datamodule.train_dataloader(args.device))  # the next epoch (same draws: a speed test)
    sync(args.device)
    seconds = time.perf_counter() - start
    del batches
    datamodule.train_queue = None  # it holds the last queue's subject loader, so its worker processes
    del datamodule
    gc.collect()  # TorchIO's workers exit and are reaped: their CPU seconds count
    used = cpu_seconds() - cpu
    workers = cfg.data.num_workers if pipeline == "torchio" else 0
    return {"experiment": cfg.experiment, "generator": cfg.generator.name, "pipeline": pipeline, "workers": workers,
            "setup": setup, "patches": count, "rate": count / seconds, "per_cpu_second": count / used if used else None,
            "device": args.device.type if pipeline == "resident" else "cpu"}


def matmul_flops(device: torch.device, n: int = 8192, repeats: int = 20) -> float:
    """FLOP/s of an n x n x n bf16 matmul on ``device``."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    seconds = statistics.median(timed(lambda: a @ b, device, repeats, 1e9))
    return 2 * n**3 / seconds


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
    return f"CPU {model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def bench_peer(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any] | str:
    """infer_volume vs MONAI ``sliding_window_inference`` with the same fused DenseUNet, patch 32, overlap 0.25."""
    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        return "MONAI not importable: pip install -e '.[bench]' in its own venv (see README) for the peer ratio"
    from inpaint.inference import heap_allocations
    from inpaint.system import InpaintingModule

    device, name = args.device, "dense_unet"
    module = InpaintingModule({"name": name, **args.kwargs[name]}).to(device)
    calibrate(module.generator, case, args.patch)
    module.eval()
    region = [slice(None)] * 3
    if args.peer_crop:
        centre = torch.nonzero(case["mask"]).float().mean(0).long().tolist()
        region = [slice(max(0, min(c - args.peer_crop // 2, n - args.peer_crop)), None)
                  for c, n in zip(centre, case["mask"].shape, strict=True)]
        region = [slice(r.start, r.start + min(args.peer_crop, n)) for r, n in zip(region, case["mask"].shape, strict=True)]
    x, known, mask = (case[k][tuple(region)][None, None] for k in ("input", "known", "mask"))
    fn = module.inference_function()
    stacked = torch.cat([x, known.float()], 1).to(device)
    with torch.no_grad():
        ours_out: list[torch.Tensor] = []
        monai_out: list[torch.Tensor] = []
        ours = timed(lambda: ours_out.append(module.predict_volume(x, known, mask)), device, args.volume_repeats, 0.0)
        with heap_allocations(device.type == "cpu"):  # the same allocator setting as infer_volume uses
            monai = timed(lambda: monai_out.append(sliding_window_inference(
                stacked, (args.patch,) * 3, 16, lambda t: fn(t[:, :1], t[:, 1:]), overlap=8 / 32, mode="constant")),
                device, args.volume_repeats, 0.0)
    brain = mask[0, 0] > 0
    diff = float((ours_out[-1][0] - monai_out[-1][0, 0].float().cpu()).abs()[brain].max())
    return {"region": "x".join(str(n) for n in x.shape[2:]), "ours": statistics.median(ours),
            "monai": statistics.median(monai), "maxdiff": diff}


# -- the measurements -----------------------------------------------------------------------------

def autocast(device: torch.device, cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (and on the CPU with ``--cpu-bf16``), else none."""
    if device.type == "cuda" or cpu_bf16:
        return torch.autocast(device.type, torch.bfloat16)
    return contextlib.nullcontext()


ACQUIRED_INTERVAL = 5  # acquired-slice generators train here on patches of --patch-slices acquired slices, interval 5


def bench_training(name: str, kwargs: dict, perceptual: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One generator's training step: patches/s, FLOPs per step, peak memory."""
    from torch.utils.flop_counter import FlopCounterMode

    from inpaint.perceptual import load_vgg19, perceptual_distance
    from models import GENERATORS, acquired_grid

    device, p = args.device, args.patch
    torch.manual_seed(0)
    net = GENERATORS.build(name, **kwargs).to(device).train()
    if args.channels_last:
        net.to(memory_format=torch.channels_last_3d)
    counted = net  # FLOPs are counted on the eager module
    if args.compile:
        net = torch.compile(net)
    vgg = load_vgg19().to(device) if perceptual else None
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-4)
    acquired = acquired_grid(net)
    k, r = args.patch_slices, ACQUIRED_INTERVAL
    x = torch.rand(args.batch, 1, p, p, k if acquired else p, device=device) * 2 - 1
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    gap = torch.full((args.batch,), float(r), device=device)
    t = (torch.arange(1, r, device=device).float() / r).expand(args.batch, r - 1)
    target = (torch.rand(args.batch, 1, p, p, k, r - 1, device=device) if acquired else x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    voxels = p * p * ((k - 1) * r if acquired else p)  # output voxels per patch (an acquired patch spans k - 1 gaps)

    def generate(model: torch.nn.Module = net) -> torch.Tensor:
        return model(x, gap, t) if acquired else model(x)

    def step(model: torch.nn.Module = net) -> None:
        with autocast(device, args.cpu_bf16):
            pred = generate(model).float()
            loss = F.l1_loss(pred, target)
            if vgg is not None:
                loss = loss + 1e-6 * perceptual_distance(vgg, pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with PeakMemory(device) as memory:
        with FlopCounterMode(display=False) as counter:
            step(counted)  # warm-up, counted, eager
        for _ in range(args.warmup - 1 + args.compile):  # (and compilation)
            step()
        times = timed(step, device, args.repeats, args.budget)
    seconds = statistics.median(times)
    return {"seconds": seconds, "rate": args.batch / seconds, "voxels": args.batch * voxels / seconds,
            "flops": counter.get_total_flops(), "n": len(times), "memory": str(memory)}


def bench_batch(row: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``bench_training`` of ``row``'s generator at ``row["batch"]``; out of GPU memory is a note, not a crash."""
    try:
        return bench_training(row["generator"], args.kwargs[row["generator"]], row["perceptual"] == "yes",
                              argparse.Namespace(**{**vars(args), "batch": row["batch"]}))
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"note": "out of GPU memory"}


def lever_functions(module: Any, tile: int) -> list[tuple[str, dict[str, Any]]]:
    """Whole-volume inference levers of the DenseUNet, each added to the previous ones: (label, settings)."""
    import copy

    from models.fuse import fold_norms

    gen = module.generator
    channels_last = copy.deepcopy(gen).to(memory_format=torch.channels_last_3d)
    folded = fold_norms(gen).to(memory_format=torch.channels_last_3d)
    return [("eager, channels-first (before)", {"fuse": False, "heap": False}),
            ("+ channels-last 3D", {"fn": lambda v, k: module.run_generator(channels_last, v, k), "heap": False}),
            ("+ norms folded into convs, in-place ELU",
             {"fn": lambda v, k: module.run_generator(folded, v, k), "heap": False}),
            ("+ dense blocks without re-concatenation", {"heap": False}),
            ("+ heap allocations (= default: exact paper grid, fuse)", {}),
            ("default + bf16 autocast", {"bf16": True}),
            (f"default + tile {tile}", {"tile": tile}),
            (f"default + tile {tile} + bf16 autocast", {"tile": tile, "bf16": True})]


def bench_inference(name: str, kwargs: dict, case: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Whole-volume ``predict_volume`` seconds for each mode, with the difference from the exact paper grid."""
    from inpaint.checkpoint import load_module
    from inpaint.data.normalise import normalise
    from inpaint.inference import infer_volume, plan
    from inpaint.restore import Restorer
    from inpaint.system import InpaintingModule

    device = args.device
    if args.checkpoint and name == "dense_unet":
        module = load_module(args.checkpoint, device)
        name = f"{module.hparams.generator['name']} (checkpoint)"
    else:
        module = InpaintingModule({"name": name, **kwargs}).to(device)
        if module.trainable:
            calibrate(module.generator, case, args.patch)
    module.eval()
    x, known, mask = (case[k][None, None] for k in ("input", "known", "mask"))
    acquired = module.acquired_grid
    modes: list[tuple[str, dict[str, Any]]] = [("whole volume, no patches" if acquired else "exact paper grid (fuse)", {})]
    if acquired:
        modes.append(("in-plane tiles of 64 (the memory fallback)", {"tile": 64}))
    elif args.tile and module.trainable:
        modes.append((f"tile {args.tile}", {"tile": args.tile}))
    if device.type == "cuda" and module.trainable:
        modes += [(label + ", bf16", {**o, "bf16": True}) for label, o in modes]
    if args.levers and module.generator.__class__.__name__ == "DenseUNet":
        modes = lever_functions(module, args.tile or 128)
    rows, reference = [], None
    for label, settings in modes:
        settings = dict(settings)
        fn = settings.pop("fn", None)
        multiple = getattr(module.generator, "size_multiple", 16)
        windows = "—" if acquired else int(plan(mask, args.patch, 8, settings.get("tile"), multiple)[4].sum())

        def run(fn: Any = fn, settings: dict = settings) -> torch.Tensor:
            if fn is None:  # what evaluate and predict run: the Restorer, back in normalised units for the comparison
                restored = Restorer(module, settings)(case["degraded"])
                return normalise(restored, case["scale"]).permute(*case["perm"])[None]
            consistency = module.model_cfg["data_consistency"]  # as predict_volume
            return infer_volume(fn, x, known, mask, device=device, data_consistency=consistency, **settings)

        with PeakMemory(device) as memory:
            for _ in range(args.warmup - 1 if device.type == "cuda" else 0):
                run()
            outputs: list[torch.Tensor] = []
            cpu = time.process_time()
            times = timed(lambda outputs=outputs: outputs.append(run()), device, args.volume_repeats, 0.0)
            cpu = (time.process_time() - cpu) / len(times)
        out = outputs[-1][0]
        reference = out if reference is None else reference
        rows.append({"generator": name, "mode": label, "seconds": statistics.median(times), "cpu": cpu, "windows": windows,
                     "psnr": psnr(out, reference, case["mask"], NORMALISED_RANGE) if out is not reference else None,
                     "psnr_target": psnr(out, case["target"], case["mask"], NORMALISED_RANGE),
                     "maxdiff": float((out - reference).abs()[case["mask"] > 0].max()), "memory": str(memory)})
    return rows


def python_command() -> str:
    """The interpreter as typed in the repo (``.venv/bin/python``), else ``python``."""
    exe = Path(sys.executable)
    return str(exe.relative_to(Path.cwd())) if exe.is_relative_to(Path.cwd()) else "python"


def training_cells(r: dict[str, Any], cuda: bool, matmul: float | None) -> str:
    """The measured cells of one training row (or its note), joined by `` | ``."""
    if "rate" not in r:
        return r["note"]
    achieved = r["flops"] / r["seconds"]
    rate = (f"{achieved / 1e12:.1f} | {100 * achieved / H100_BF16_DENSE:.1f} % | "
            f"{100 * achieved / (matmul or MATMUL_REACHABLE):.1f} %") if cuda else f"{achieved / 1e9:.1f}"
    return (f"{r['rate']:.2f} | {r['voxels'] / 1e6:.2f} | {r['seconds']:.3f} | {r['flops'] / 1e9:.0f} | {rate} | "
            f"{r['memory']} | {r['n']}")


def render(args: argparse.Namespace, train: list[dict], infer: list[dict], peer: Any, data: list[dict],
           matmul: float | None, argv: list[str], sweep: list[dict] | None = None) -> str:
    """The Markdown report: header, then one table per part."""
    cuda = args.device.type == "cuda"
    precision = "bf16 autocast" if cuda or args.cpu_bf16 else "fp32"
    lines = ["# inpaint bench", "",
             f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- device: {device_name(args.device)}",
             f"- torch {torch.__version__}, Python {platform.python_version()}",
             f"- command: `{python_command()} -m benchmarks.bench {' '.join(argv)}`",
             f"- load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
             f"- sizes: {'shrunk' if args.shrunk else 'paper'} (batch {args.batch}, patch {args.patch}³, {precision})"]
    if matmul:
        lines.append(f"- large bf16 matmul (8192³): {matmul / 1e12:.0f} TFLOP/s measured")
    layout = (", channels-last 3D" if args.channels_last else ", channels-first") + (", torch.compile" if args.compile else "")
    if args.set:
        lines.append(f"- generator keywords: {', '.join(args.set)}")
    lines += ["", f"## Training step (forward + backward + Adam, batch {args.batch}, {precision}{layout})", ""]
    flop_head = "TFLOP/s | % of 989 TFLOP/s | % of matmul" if cuda else "GFLOP/s"
    lines += [f"| generator | perceptual | patches/s | output Mvoxel/s | s/step | GFLOP/step | {flop_head} | peak memory | "
              "timed steps |", "|---|---|---|---|---|---|---|---|---|" + ("--|--|" if cuda else "")]
    for r in train:
        lines.append(f"| {r['generator']} | {r['perceptual']} | {training_cells(r, cuda, matmul)} |")
    if args.batches:
        lines += ["", f"## Training step by batch size ({precision}{layout}; best: the highest patches/s of each row group)",
                  "", f"| generator | perceptual | batch | patches/s | output Mvoxel/s | s/step | GFLOP/step | {flop_head} | "
                  "peak memory | timed steps | best |", "|---|---|---|---|---|---|---|---|---|---|---|" + ("--|--|" if cuda else "")]
        by_batch = [{**r, "batch": args.batch} for r in train if "rate" in r] + (sweep or [])
        for r in sorted(by_batch, key=lambda r: (r["generator"], r["perceptual"], r["batch"])):
            group = [q.get("rate", 0.0) for q in by_batch if (q["generator"], q["perceptual"]) == (r["generator"], r["perceptual"])]
            best = "best" if r.get("rate") == max(group) else ""
            lines.append(f"| {r['generator']} | {r['perceptual']} | {r['batch']} | {training_cells(r, cuda, matmul)} | {best} |")
    if infer:
        shape = "x".join(str(n) for n in args.case["input"].shape)
        lines += ["", f"## Whole-volume inference ({args.case['name']} {shape}, interval 5, patch 32, overlap 8, "
                  "average; BatchRenorm statistics calibrated on the volume)", "",
                  "| generator | mode | seconds | process CPU s | windows run | PSNR vs exact (dB, brain) | max abs diff | "
                  "PSNR vs original (dB, brain) | peak memory |", "|---|---|---|---|---|---|---|---|---|"]
        for r in infer:
            if "note" in r:
                lines.append(f"| {r['generator']} | {r['note']} |")
                continue
            psnr = "—" if r["psnr"] is None else f"{r['psnr']:.1f}"
            lines.append(f"| {r['generator']} | {r['mode']} | {r['seconds']:.1f} | {r['cpu']:.0f} | {r['windows']} | {psnr} | "
                         f"{r['maxdiff']:.2g} | {r['psnr_target']:.1f} | {r['memory']} |")
    lines += ["", "## MONAI peer (sliding_window_inference, same fused DenseUNet, overlap 0.25)", ""]
    if isinstance(peer, dict):
        lines += ["| region | infer_volume s | MONAI s | MONAI / infer_volume | max abs diff (brain) |", "|---|---|---|---|---|",
                  f"| {peer['region']} | {peer['ours']:.2f} | {peer['monai']:.2f} | {peer['monai'] / peer['ours']:.2f} | "
                  f"{peer['maxdiff']:.2g} |"]
    else:
        lines.append(f"{peer}")
    lines += ["", f"## Training data (InpaintDataModule.train_dataloader, batches of {args.batch}, "
              f"{args.queue_subjects} subjects of {args.queue_root or 'the bundled demo data'})", "",
              "Each experiment's own data settings; step patches/s: this bench's training row of its generator "
              "(no perceptual term). A data / step ratio below 1.5 leaves the step waiting for data.", "",
              "| experiment | pipeline | patches cut on | queue workers | setup + first batch s | patches | patches/s | "
              "patches per CPU-second | step patches/s | data / step |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data:
        if "rate" not in r:
            lines.append(f"| {r['experiment']} | {r['pipeline']} | {r['note']} |")
            continue
        step = next((t["rate"] for t in train if t.get("rate") and t["generator"] == r["generator"]
                     and t["perceptual"] == "no"), None)
        per_cpu = f"{r['per_cpu_second']:.0f}" if r["per_cpu_second"] else "—"
        step_cells = f"{step:.1f} | {r['rate'] / step:.1f}" if step else "— | —"
        lines.append(f"| {r['experiment']} | {r['pipeline']} | {r['device']} | {r['workers']} | {r['setup']:.1f} | "
                     f"{r['patches']} | {r['rate']:.0f} | {per_cpu} | {step_cells} |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    from inpaint.config import ModelConfig

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--generators", default="dense_unet,unet3d,slice_resnet,linear",
                        help="training rows, and data rows of their experiments (comma-separated)")
    parser.add_argument("--infer-generators", default=None,
                        help="whole-volume rows (default: dense_unet,linear on the CPU, --generators on cuda)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--paper", dest="shrunk", action="store_false", help="the paper's sizes (default)")
    size.add_argument("--shrunk", action="store_true", help="tiny networks, batch 2, a small volume: a smoke run")
    parser.set_defaults(shrunk=False, channels_last=ModelConfig.channels_last)
    parser.add_argument("--volume", type=Path, default=None,
                        help=f"a NIfTI volume (default {DEFAULT_VOLUME.name} if present, else a 170x200x140 phantom)")
    parser.add_argument("--repeats", type=int, default=None, help="timed training steps (default 2 CPU, 20 cuda)")
    parser.add_argument("--budget", type=float, default=None, help="stop timing a step after this many s (default 20 CPU)")
    parser.add_argument("--volume-repeats", type=int, default=None, help="timed whole-volume runs (default 1 CPU, 3 cuda)")
    parser.add_argument("--tile", type=int, default=128, help="tile mode window (0: skip the tile row)")
    parser.add_argument("--levers", action="store_true", help="whole-volume DenseUNet once per speed lever (slow)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained InpaintingModule checkpoint for the dense_unet inference rows (else calibrated random)")
    parser.add_argument("--peer-crop", type=int, default=None, help="MONAI peer on a centred cube (default 80 CPU, 0=all)")
    parser.add_argument("--queue-root", default=None, help="data folder for the data rows (default: the volume's folder)")
    parser.add_argument("--queue-batches", type=int, default=None, help="batches timed per data row (default 40 CPU, 100 cuda)")
    parser.add_argument("--queue-subjects", type=int, default=6, help="training subjects per data row (default 6)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="skip the rows that would start after this many seconds (each is a note; default: none)")
    parser.add_argument("--batches", default="",
                        help="more training batch sizes, comma-separated (e.g. 48,96): a table by batch size with the best marked")
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("--channels-last", dest="channels_last", action="store_true",
                        help="train with channels-last 3D weights and patches (default, as model.channels_last)")
    layout.add_argument("--channels-first", dest="channels_last", action="store_false",
                        help="train channels-first (the layout before model.channels_last became the default)")
    parser.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast in the CPU training step too")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator in the training step")
    parser.add_argument("--set", action="append", default=[], metavar="NAME.KEY=VALUE",
                        help="a generator keyword, e.g. slice_resnet.features=48 or slice_resnet.kernel=[3,3,1]")
    parser.add_argument("--patch-slices", type=int, default=8,
                        help="acquired slices per training patch of acquired-slice generators (default 8)")
    parser.add_argument("--skip", default="", help="parts to skip: train,queue (the data rows),infer,peer (comma-separated)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here (atomically)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible")
    cuda = args.device == "cuda"
    args.device = torch.device(args.device)
    args.batch, args.patch = (2, 32) if args.shrunk else (12, 32)
    args.warmup = 3 if cuda else 1
    args.repeats = args.repeats or (20 if cuda else 2)
    args.budget = args.budget if args.budget is not None else (1e9 if cuda else 20.0)
    args.volume_repeats = args.volume_repeats or (3 if cuda else 1)
    args.peer_crop = args.peer_crop if args.peer_crop is not None else (48 if args.shrunk else 0 if cuda else 80)
    args.queue_batches = args.queue_batches or (4 if args.shrunk else 100 if cuda else 40)
    args.generators = [g for g in args.generators.split(",") if g]
    args.infer_generators = [g for g in (args.infer_generators or ",".join(
        args.generators if cuda else [g for g in args.generators if g != "unet3d"])).split(",") if g]
    args.kwargs = {g: dict(SHRUNK.get(g, {})) if args.shrunk else {}
                   for g in {"dense_unet", *args.generators, *args.infer_generators}}
    for item in args.set:
        key, _, value = item.partition("=")
        name, _, field = key.partition(".")
        if name not in args.kwargs or not field or not value:
            parser.error(f"--set {item}: expected NAME.KEY=VALUE for a benchmarked generator ({', '.join(args.kwargs)})")
        args.kwargs[name][field] = yaml.safe_load(value)
    args.batches = sorted({int(b) for b in args.batches.split(",") if b.strip()} - {args.batch})
    args.skip = set(filter(None, args.skip.split(",")))
    if args.volume is None and DEFAULT_VOLUME.is_file():
        args.volume = DEFAULT_VOLUME
    if args.volume is not None and not args.volume.is_file():
        parser.error(f"--volume {args.volume}: no such file")
    if args.queue_root is None and args.volume is not None:
        args.queue_root = str(args.volume.parent)
    return args


class Rows:
    """Runs each measurement as a row: past ``--deadline`` (seconds since the bench started) it is skipped, a failure
    becomes the row's note (the other rows still run), and ``--out`` is rewritten after every row, so a killed
    bench leaves every row it finished."""

    def __init__(self, args: argparse.Namespace, write: Any, start: float) -> None:
        self.args, self.write, self.start = args, write, start

    def add(self, rows: list[dict[str, Any]], row: dict[str, Any], measure: Any) -> dict[str, Any]:
        """Measure ``row`` (``measure()`` returns its cells), append it to ``rows``, rewrite ``--out``; the row."""
        rows.append(self.measure(row, measure))
        self.write()
        return rows[-1]

    def measure(self, row: dict[str, Any], measure: Any) -> dict[str, Any]:
        deadline = self.args.deadline
        if deadline is not None and time.perf_counter() - self.start > deadline:
            return {**row, "note": f"skipped: past the --deadline of {deadline:.0f} s"}
        try:
            return {**row, **measure()}
        except Exception as error:  # noqa: BLE001 - one row's failure must not cost the others
            if self.args.device.type == "cuda":
                torch.cuda.empty_cache()
            first = (str(error).splitlines() or [""])[0][:160]
            print(f"bench row {row} failed: {type(error).__name__}: {first}", file=sys.stderr)
            return {**row, "note": f"failed: {type(error).__name__}: {first}"}


DATA_EXPERIMENTS = ("dense_unet", "unet3d", "slice_resnet")  # generators whose experiment of the same name has data rows


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    from inpaint.data.io import atomic_write
    from models import GENERATORS, acquired_grid

    if args.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    matmul = matmul_flops(args.device) if args.device.type == "cuda" else None
    train: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    data: list[dict[str, Any]] = []
    infer: list[dict[str, Any]] = []
    peer: Any = "skipped"

    def write() -> str:
        report = render(args, train, infer, peer, data, matmul, argv, sweep)
        if args.out is not None:
            atomic_write(args.out, report)
        return report

    row = Rows(args, write, start)
    for name in args.generators if "train" not in args.skip else []:
        trainable = any(True for _ in GENERATORS.build(name, **args.kwargs[name]).parameters())
        for perceptual in (False, True):
            head = {"generator": name, "perceptual": "yes" if perceptual else "no"}
            if not trainable:
                train.append({**head, "note": "not trained (no parameters)"})
                break
            if perceptual and acquired_grid(name):
                train.append({**head, "note": "no perceptual branch (trains on the acquired-slice grid)"})
                break
            done = row.add(train, head, lambda n=name, p=perceptual: bench_training(n, args.kwargs[n], p, args))
            print(f"trained {name} perceptual={perceptual}: {done.get('rate', done.get('note'))}", file=sys.stderr)
    for name in [] if "queue" in args.skip else [g for g in args.generators if g in DATA_EXPERIMENTS]:
        for pipeline in ("torchio", "resident"):
            head = {"experiment": name, "generator": name, "pipeline": pipeline}
            row.add(data, head, lambda h=head: bench_data(h["experiment"], h["pipeline"], args))
    for r in [r for r in train if "rate" in r]:
        for batch in args.batches:
            head = {"generator": r["generator"], "perceptual": r["perceptual"], "batch": batch}
            row.add(sweep, head, lambda h=head: bench_batch(h, args))
    args.case = load_case(args.volume, (48, 56, 40) if args.shrunk else (170, 200, 140))
    for name in [] if "infer" in args.skip else args.infer_generators:
        measured = row.measure({"generator": name}, lambda n=name: {"rows": bench_inference(n, args.kwargs[n], args.case, args)})
        infer.extend(measured.pop("rows", [measured]))
        write()
    if "peer" not in args.skip:
        measured = row.measure({}, lambda: {"peer": bench_peer(args.case, args)})
        peer = measured.get("peer", measured.get("note"))
    print(write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
