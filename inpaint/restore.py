"""One restore path: a method (a trained generator, or a classical fill) applied to one sparse volume.

    restorer = Restorer(module, {"overlap": 16})   # settings as trained, overridden where given
    degraded = restorer.degrade(reference, affine, "sub-02.nii.gz")   # the acquisition it expects (simulation)
    volume = restorer(degraded)                    # (X, Y, Z), input units, file voxel order

Validation (``InpaintingModule.validation_step``), ``inpaint.evaluate``, ``inpaint.predict`` and the
bench all restore through :class:`Restorer`, so one checkpoint on one subject gives one answer. A
network restore: scale from the acquired slices only, slice axis last, the voxel orientation the
checkpoint learnt (``geometry.network_frame``), in-plane resampling to the checkpoint's spacing when it
differs by more than 10 %, padding up to one patch, ``module.predict_volume`` (patches or the
acquired-slice grid), every step undone; then, with ``strip``, the network's output kept inside the brain
mask only, and data consistency (acquired slices copied back) once, exactly, in the input's units.

Settings (``SETTINGS``) come from the checkpoint (``hyper_parameters``: the ``inference`` settings that
decide the result, ``TRAVELS``; ``model.data_consistency``; ``config.data`` for the acquisition, where
``data_info`` supplies an ``interval`` the config lacks and overrides ``thick_slices``); what the caller
passes overrides them, and ``sources`` says where each came from. Machine-dependent
settings (batch size, bf16, fuse, heap) are this machine's defaults. Defaults live in ``inpaint.config``
only; :func:`add_arguments` gives evaluate and predict the same flags.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inpaint.config import AGGREGATIONS, DataConfig, InferenceConfig, ModelConfig
from inpaint.data.degrade import Degraded, degrade
from inpaint.data.io import InputError
from inpaint.data.normalise import acquired_scale, denormalise, normalise
from inpaint.geometry import (
    TRAINED_ORIENTATION,
    acquired_slices,
    from_network_frame,
    network_frame,
    slice_last_permutation,
    to_network_frame,
)
from inpaint.interpolate import METHODS, fill_missing

log = logging.getLogger("inpaint")
INPLANE_TOLERANCE = 0.10  # resample in-plane when the spacing differs from the checkpoint's by more
INFERENCE = tuple(asdict(InferenceConfig()))  # patch_size, overlap, aggregation, batch_size, bf16, fuse, tile, heap
TRAVELS = ("patch_size", "overlap", "aggregation", "tile")  # decide the result; batch_size, bf16, fuse, heap suit a machine
ACQUISITION = ("interval", "offset", "thick_slices")
SETTINGS = (*INFERENCE, "data_consistency", *ACQUISITION)
SHOWN = ("overlap", "aggregation", "data_consistency", "interval", "offset", "thick_slices")  # in logs and summaries
CONSISTENCY = {"trained": None, "on": True, "off": False}  # --data-consistency -> the data_consistency setting


def defaults() -> dict[str, Any]:
    """Every restore setting's default, from the typed config."""
    data = asdict(DataConfig())
    return {**asdict(InferenceConfig()), "data_consistency": ModelConfig().data_consistency,
            **{k: data[k] for k in ACQUISITION}}


def trained_settings(module: Any) -> dict[str, Any]:
    """The restore settings stored in a module's hyper-parameters (older checkpoints: what they hold)."""
    hparams = module.hparams
    data = (hparams.get("config") or {}).get("data") or {}
    info = hparams.get("data_info") or {}
    trained = {k: v for k, v in (hparams.get("inference") or {}).items() if k in TRAVELS}
    trained["data_consistency"] = module.model_cfg["data_consistency"]
    trained.update({k: data[k] for k in ACQUISITION if k in data})
    if "interval" in info:
        trained.setdefault("interval", info["interval"])
    if "thick_slices" in info:
        trained["thick_slices"] = info["thick_slices"]
    return trained


def trained_intervals(module: Any) -> list[int]:
    """The intervals a module was trained on (``data.intervals``, else ``data.interval``); [] if unknown."""
    data = (module.hparams.get("config") or {}).get("data") or {}
    intervals = list(data.get("intervals") or [])
    return intervals or ([data["interval"]] if "interval" in data else [])


def add_arguments(parser: argparse.ArgumentParser, simulate: str = "") -> None:
    """The restore-setting flags of evaluate and predict; each defaults to the checkpoint's value.

    ``simulate``: prefix for the help of the acquisition flags (predict: "with --simulate: ").
    """
    parser.add_argument("--interval", type=int, metavar="N",
                        help=f"{simulate}keep every N-th axial slice (default: the checkpoint's data.interval, i.e. its "
                             "validation interval for a multi-interval model, else 5)")
    parser.add_argument("--offset", type=int, metavar="K",
                        help=f"{simulate}kept slices k %% N == K, 0-based in the file's voxel order (default: as trained, else 0)")
    parser.add_argument("--thick-slices", action=argparse.BooleanOptionalAction,
                        help=f"{simulate}acquired slices are the means of their slab of N slices, or thin with "
                             "--no-thick-slices (default: as trained, else thin)")
    parser.add_argument("--overlap", type=int, metavar="VOXELS",
                        help="network patch overlap, even (default: as the checkpoint was trained)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS,
                        help="how network patch overlaps are merged (default: as the checkpoint was trained)")
    parser.add_argument("--data-consistency", choices=tuple(CONSISTENCY),
                        help="copy the acquired slices into network outputs: as each checkpoint was trained "
                             "(default), on, off")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The restore settings given on a command line built by :func:`add_arguments` (None: not given)."""
    return {"overlap": args.overlap, "aggregation": args.aggregation,
            "data_consistency": CONSISTENCY[args.data_consistency or "trained"],
            "interval": args.interval, "offset": args.offset, "thick_slices": args.thick_slices}


def check_settings(settings: dict[str, Any]) -> None:
    """One-line InputError for values out of range (before any work)."""
    interval, offset, overlap = settings.get("interval"), settings.get("offset"), settings.get("overlap")
    if interval is not None and interval < 2:
        raise InputError(f"--interval {interval}: keep every N-th slice needs N >= 2 (N = 1 keeps them all)")
    if offset is not None and not 0 <= offset < (interval or 2**31):
        raise InputError(f"--offset {offset}: must be in [0, interval)")
    if overlap is not None and (overlap < 0 or overlap % 2):
        raise InputError(f"--overlap {overlap}: must be an even number of voxels >= 0, e.g. 8")


def _resize(x: torch.Tensor, size: list[int], mode: str) -> torch.Tensor:
    """(X, Y, Z) -> (size[0], size[1], Z)."""
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(x[None, None].float(), size=[*size, x.shape[2]], mode=mode, **kwargs)[0, 0]


class Restorer:
    """Restores sparse volumes with one method, with its settings bound once.

    Args:
        method: ``"linear"``/``"cubic"`` or an ``InpaintingModule`` (``inpaint.checkpoint.load_module``).
        overrides: settings that replace the trained ones (None values are ignored).

    Attributes:
        settings: every key of ``SETTINGS``, resolved.
        sources: per setting, ``"checkpoint"``, ``"command line"`` or ``"default"``.
    """

    def __init__(self, method: str | Any, overrides: dict[str, Any] | None = None) -> None:
        if isinstance(method, str) and method not in METHODS:
            raise InputError(f"unknown classical method {method!r}; choose one of {', '.join(METHODS)}")
        self.method = method
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        unknown = sorted(set(given) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown restore setting(s) {', '.join(unknown)}; valid: {', '.join(SETTINGS)}")
        check_settings(given)
        trained = {} if self.classical else trained_settings(method)
        self.settings = {**defaults(), **trained, **given}
        self.sources = {k: "command line" if k in given else "checkpoint" if k in trained else "default"
                        for k in SETTINGS}

    @property
    def classical(self) -> bool:
        return isinstance(self.method, str)

    @property
    def info(self) -> dict[str, Any]:
        """The checkpoint's facts about its training data (spacing [x, y, slice], interval, skull_stripped)."""
        return {} if self.classical else dict(self.method.hparams.get("data_info") or {})

    def describe(self, keys: tuple[str, ...] = SHOWN) -> str:
        """``overlap 16 (checkpoint), aggregation hann (checkpoint), ...`` for logs and summaries."""
        if self.classical:
            return f"{self.method} interpolation along the slice axis"
        return ", ".join(f"{k.replace('_', ' ')} {self.settings[k]} ({self.sources[k]})" for k in keys)

    def degrade(self, reference: torch.Tensor, affine: np.ndarray, source: str = "volume") -> Degraded:
        """Simulate the acquisition this method expects (interval, offset, thick slices) from a full volume."""
        s = self.settings
        return degrade(reference, affine, s["interval"], s["offset"], source, s["thick_slices"])

    def __call__(self, degraded: Degraded, mask: torch.Tensor | None = None, spacing: list[float] | None = None,
                 source: str = "volume", strip: bool = False, affine: np.ndarray | None = None) -> torch.Tensor:
        """Fill ``degraded`` (file voxel order); (X, Y, Z) float32 in the input's units.

        Args:
            degraded: the linearly filled input with its acquired-slice mask.
            mask: brain mask for the network (scale voxels, patches to run); None = ``input > 0`` (the
                missing reference slices are never looked at).
            spacing: voxel spacing ``[a, b, slice]`` in mm, slice axis last (None: no resampling).
            source: file name for error messages.
            strip: an unstripped head with its brain ``mask`` (``predict --mask``): the network sees the input
                inside the mask only (background outside, as it was trained) and its output is kept there;
                linear interpolation fills the rest.
            affine: the volume's voxel-to-world affine: the network then sees it in the voxel orientation it
                learnt (``geometry.network_frame``; e.g. an LPS file flipped to LAS and back). None: as stored.
        """
        if self.classical:
            if self.method == "linear":
                return degraded.input.clone()
            try:
                return fill_missing(degraded.input, degraded.axis, degraded.kept, self.method)
            except ValueError as error:
                raise InputError(f"{source}: {error}") from None
        if strip and mask is None:
            raise ValueError("Restorer: strip=True needs the brain mask")
        mask = degraded.input > 0 if mask is None else mask
        scale = acquired_scale(degraded.input, degraded.known, mask, source)
        perm = slice_last_permutation(degraded.axis)
        trained = self.info.get("orientation", TRAINED_ORIENTATION)  # older checkpoints: ds002748's
        frame = network_frame(affine, degraded.axis, trained) if affine is not None else (False, (False,) * 3)
        x, known, brain = (to_network_frame(t.permute(*perm), frame)
                           for t in (normalise(degraded.input, scale), degraded.known, mask))
        if spacing is not None and frame[0]:
            spacing = [spacing[1], spacing[0], spacing[2]]
        shape = list(x.shape[:2])
        if strip:
            x = torch.where(brain, x, normalise(torch.zeros(()), scale).to(x.dtype))
        size = self.inplane_size(tuple(x.shape), spacing, source)
        if size is not None:
            x, known, brain = _resize(x, size, "trilinear"), _resize(known, size, "nearest"), _resize(brain, size, "nearest")
        pad = self.padding(tuple(x.shape))
        if any(pad):  # smaller than the network's patch: background around it, cropped off again
            background = float(normalise(torch.zeros(()), scale))
            x, known, brain = (F.pad(t[None].float(), pad, value=v)[0] for t, v in ((x, background), (known, 0), (brain, 0)))
        try:
            pred = self.restore_normalised(x, known, brain)
        except ValueError as error:
            raise InputError(f"{source}: {error}") from None
        if any(pad):
            pred = pred[tuple(slice(before, n - after) for n, before, after in
                              zip(pred.shape, pad[4::-2], pad[5::-2], strict=True))]
        if size is not None:
            pred = _resize(pred, shape, "trilinear")
        pred = from_network_frame(pred, frame)
        out = denormalise(pred.double(), scale).float().permute(*np.argsort(perm).tolist()).contiguous()
        if strip:
            out = torch.where(mask, out, degraded.input)
        if self.settings["data_consistency"]:  # once, exact in input units, after any resampling
            out[degraded.known] = degraded.input[degraded.known]
        return out

    def padding(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``F.pad`` widths (last axis first) that grow a (X, Y, Z) volume to the patch a full-resolution network needs."""
        if self.method.acquired_grid or self.settings["tile"] is not None:
            return (0,) * 6
        grow = [max(0, self.settings["patch_size"] - n) for n in shape]
        return tuple(w for g in reversed(grow) for w in (g // 2, g - g // 2))

    def restore_normalised(self, x: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The network on a normalised (X, Y, Z) volume, slice axis last -> (X, Y, Z) normalised.

        Data consistency is not applied here: ``__call__`` applies it once, exactly, in the input's units.
        """
        settings = {k: self.settings[k] for k in INFERENCE}
        return self.method.predict_volume(x[None, None], known[None, None], mask[None, None], data_consistency=False,
                                          **settings)[0]

    def inplane_size(self, shape: tuple[int, ...], spacing: list[float] | None, source: str) -> list[int] | None:
        """New in-plane size (slice axis last) if the checkpoint's in-plane spacing differs by > 10 %, else None."""
        trained = self.info.get("spacing")
        if not spacing or not trained:
            return None
        ratios = [s / t for s, t in zip(spacing[:2], trained[:2], strict=True)]
        if all(abs(r - 1) <= INPLANE_TOLERANCE for r in ratios):
            return None
        size = [max(1, round(n * r)) for n, r in zip(shape[:2], ratios, strict=True)]
        log.info("%s: in-plane spacing %.3g x %.3g mm differs from the checkpoint's %.3g x %.3g mm; "
                 "resampling %s -> %s for the network and back", source, *spacing[:2], *trained[:2], list(shape[:2]), size)
        return size


def degraded_from_mask(volume: torch.Tensor, known: torch.Tensor, axis: int, interval: int, offset: int) -> Degraded:
    """A :class:`Degraded` of a linearly filled (X, Y, Z) volume from its acquired-slice mask (slice axis ``axis``)."""
    kept, _ = acquired_slices(known.movedim(axis, -1))
    return Degraded(volume, known > 0, axis, kept, interval, offset)
