"""Helpers of ``inpaint.bench``: timing, peak memory, the benchmark volume and its calibrated network."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn


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
    """Degrade (every ``interval``-th slice, linear fill) and normalise a volume, slice axis last.

    Returns:
        ``input``, ``known``, ``mask``, ``target`` (the normalised original): (X, Y, Z) tensors, and ``name``.
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
    mask = (data > 0).to(torch.uint8)
    scale = acquired_scale(sparse.input, known, mask, name)
    x, target = normalise(sparse.input, scale), normalise(data, scale)
    perm = slice_last_permutation(sparse.axis)
    tensors = (("input", x), ("known", known), ("mask", mask), ("target", target))
    return {"name": name, **{k: t.permute(*perm).contiguous() for k, t in tensors}}


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


def psnr_in_brain(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB) of ``a`` against ``b`` in the brain, peak 2 (the normalised [-1, 1] range)."""
    mse = float(((a - b)[mask > 0] ** 2).mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


def bench_queue(args: argparse.Namespace) -> dict[str, Any] | str:
    """Patches/s the real InpaintDataModule train_dataloader delivers (TorchIO Queue), batches of ``args.batch``."""
    try:
        from inpaint import config as configuration
        from inpaint.data.module import InpaintDataModule
    except ImportError as error:
        return f"skipped: {error}"
    root = args.queue_root
    overrides = [f"data.batch_size={args.batch}", f"data.patch_size={args.patch}"] + ([f"data.root={root}"] if root else [])
    if args.shrunk:  # tiny volumes: enough patches per subject for a few batches, no worker processes
        overrides += ["data.samples_per_volume=8", "data.queue_length=16", "data.num_workers=0"]
    cfg = configuration.load("dense_unet", overrides)
    start = time.perf_counter()
    datamodule = InpaintDataModule(cfg.data, cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = iter(datamodule.train_dataloader())
    setup = time.perf_counter() - start
    start = time.perf_counter()
    next(batches)
    first = time.perf_counter() - start
    count, start = 0, time.perf_counter()
    for batch in batches:
        count += batch["input"]["data"].shape[0]
        if count >= args.queue_batches * args.batch:
            break
    seconds = time.perf_counter() - start
    return {"source": root or "bundled demo", "setup": setup, "first": first, "patches": count,
            "rate": count / seconds if count else float("nan"), "workers": cfg.data.num_workers}


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
