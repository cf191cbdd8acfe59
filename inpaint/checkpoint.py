"""Load a trained generator from a checkpoint (a path, or a committed model's name) with one-line errors.

    module = load_module("pretrained")              # the recommended committed model (inpaint/assets/pretrained)
    module = load_module("runs/x/checkpoints/best.ckpt", device="cuda")

The one loader of predict, evaluate, export, fit's ``init_from`` and the benchmarks; a :class:`inpaint.restore.Restorer` built
from the module restores volumes with the settings stored in it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inpaint.config import REPO
from inpaint.data.io import InputError
from inpaint.data.subjects import read_split_file

if TYPE_CHECKING:  # Lightning takes ~2 s to import: only load_module needs it
    from inpaint.system import InpaintingModule

PRETRAINED = Path(__file__).resolve().parent / "assets" / "pretrained"
# --checkpoint NAME -> the committed file in PRETRAINED; its model card is the file's stem + .md beside it.
PRETRAINED_MODELS = {
    "pretrained": "slice_resnet_unshuffle.ckpt",  # the recommended model: the space-to-depth acquired-slice generator
    "pretrained-slice-resnet-unshuffle": "slice_resnet_unshuffle.ckpt",  # (intervals 2-8, thin slices)
    "pretrained-slice-resnet-large": "slice_resnet_large.ckpt",  # pretrained until 2026-12-05 (1.7x slower)
    "pretrained-slice-resnet": "slice_resnet.ckpt",  # the small one (375 k parameters, 3.4x faster than the large)
    "pretrained-thick": "slice_resnet_unshuffle_thick.ckpt",  # pretrained fine-tuned on thick slices (real 2D scans)
    "pretrained-slice-resnet-unshuffle-thick": "slice_resnet_unshuffle_thick.ckpt",
    "pretrained-slice-resnet-large-thick": "slice_resnet_large_thick.ckpt",  # pretrained-thick until 2026-12-05
    "pretrained-slice-resnet-thick": "slice_resnet_thick.ckpt",  # the small one on thick slices (3.4x faster)
    "pretrained-dense-unet": "dense_unet.ckpt",  # the small DenseUNet of the paper's design, interval 5 (docs/results.md)
}


def pretrained_path(name: str = "pretrained") -> Path:
    """The committed model file that ``name`` (a key of ``PRETRAINED_MODELS``) names."""
    if name not in PRETRAINED_MODELS:
        raise InputError(f"--checkpoint {name}: no such pretrained model; choose one of {', '.join(PRETRAINED_MODELS)} "
                         "or give a checkpoint path")
    path = PRETRAINED / PRETRAINED_MODELS[name]
    if not path.is_file():
        raise InputError(f"no pretrained model in {PRETRAINED} (installed without package data?); reinstall "
                         "inpaint or pass a checkpoint path, e.g. runs/dense_unet/<run>/checkpoints/best.ckpt")
    return path


def is_pretrained_name(spec: str) -> bool:
    """``spec`` names a committed model (or tries to: ``pretrained-...`` that is no file and no path)."""
    return spec in PRETRAINED_MODELS or (spec.startswith("pretrained") and not Path(spec).exists()
                                         and "/" not in spec and not spec.endswith(".ckpt"))


def checkpoint_path(spec: str) -> Path:
    """The file a ``--checkpoint`` value names: a committed model's (``PRETRAINED_MODELS``) or the path itself."""
    return pretrained_path(spec) if is_pretrained_name(spec) else Path(spec)


def model_card(name: str = "pretrained") -> Path:
    """The model card (Markdown) of a pretrained model (a key of ``PRETRAINED_MODELS``)."""
    return pretrained_path(name).with_suffix(".md")


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file, read in 1 MiB blocks: which weights a row was scored with, which input a volume came from."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed_weights(recorded: dict[str, str], weights: dict[str, str], redo: list[str]) -> list[str]:
    """Names whose checkpoint digest in ``weights`` differs from the one ``recorded`` with earlier scores, except
    those in ``redo`` (scored again); a name not recorded yet has not changed."""
    return [n for n, digest in weights.items() if recorded.get(n, digest) != digest and n not in redo]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict of an inpaint .ckpt (CPU tensors), or a one-line InputError."""
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file; give a .ckpt written by python -m inpaint.fit or a committed "
                         f"model: {', '.join(PRETRAINED_MODELS)}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)  # tensors read when used
    except Exception as error:  # pickle, zip and torch errors alike
        raise InputError(f"{path}: not a PyTorch checkpoint ({type(error).__name__}); "
                         "give a .ckpt written by python -m inpaint.fit") from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "generator" not in hparams or "state_dict" not in checkpoint:
        raise InputError(f"{path}: not an inpaint checkpoint (no generator in its hyper-parameters); "
                         "give a .ckpt written by python -m inpaint.fit")
    return checkpoint


def load_module(spec: str, device: str | torch.device = "cpu") -> InpaintingModule:
    """An ``InpaintingModule`` in eval mode from a checkpoint path (or a ``PRETRAINED_MODELS`` name), with one-line errors."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available to this torch build; use --device cpu")
    path = checkpoint_path(spec)
    checkpoint = read_checkpoint(path)
    from inpaint.system import InpaintingModule  # here, not at import: a command's checks come first

    try:
        module = InpaintingModule.load_from_checkpoint(path, map_location=torch.device(device))
    except Exception as error:
        detail = " ".join(str(error).split())[:200]
        raise InputError(f"{path}: its weights do not build generator {checkpoint['hyper_parameters']['generator'].get('name')!r} "
                         f"of this inpaint version ({detail}); use a checkpoint trained with this version") from None
    module.checkpoint_path = str(path)
    return module.eval()


def seen_subjects(hparams: dict[str, Any]) -> dict[str, list[str]] | None:
    """The subjects a checkpoint trained on (``train``) and was selected on (``val``), or None when unknown.

    ``hparams``: the checkpoint's hyper-parameters (``module.hparams``). ``inpaint.fit`` records the subjects
    (``data_info["subjects"]``, those of the checkpoints it resumed or started from included); older checkpoints,
    the committed models among them, name the split file they trained with (``data.split``), read here relative
    to the repository.
    """
    info = hparams.get("data_info") or {}
    if info.get("subjects"):
        return {split: list(names) for split, names in info["subjects"].items()}
    split = ((hparams.get("config") or {}).get("data") or {}).get("split")
    path = Path(split) if split and split != "auto" else None
    if path is not None and not path.is_absolute():
        path = REPO / path
    if path is None or not path.is_file():
        return None
    assignment = read_split_file(path)
    return {s: [n for n, v in assignment.items() if v == s] for s in ("train", "val")}


def inherited_subjects(subjects: dict[str, list[str]], sources: list[str]) -> dict[str, list[str]]:
    """``subjects`` ({"train": [...], "val": [...]}) plus those of the checkpoints in ``sources`` (a resumed one, an
    ``init_from``): a model has seen every subject any of its training stages saw."""
    train, val = list(subjects["train"]), list(subjects["val"])
    for source in sources:
        earlier = seen_subjects(read_checkpoint(checkpoint_path(source))["hyper_parameters"]) or {}
        train += [n for n in earlier.get("train", []) if n not in train]
        val += [n for n in earlier.get("val", []) if n not in val and n not in train]
    return {"train": train, "val": [n for n in val if n not in train]}
