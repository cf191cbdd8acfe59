"""Typed configuration: defaults <- experiments/NAME.yaml <- command-line ``key=value`` overrides.

Every key is declared in a dataclass below, so an unknown key or a wrong type is a one-line
error that lists the valid choices. ``generator`` is a free dict (its keys are checked by the
generator registry when the network is built), so one generator's kwargs never leak into another's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from inpaint.errors import InpaintError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


class ConfigError(InpaintError):
    """A bad configuration: the message is one line naming the key and the valid choices."""


@dataclass
class DataConfig:
    root: str | None = None  # folder of NIfTI files (recursive); null = the bundled MNI152 demo data
    mask_token: str = "mask"  # files whose name contains this are brain masks, matched to images by name
    split: str | None = "auto"  # a TSV (columns subject, split); auto = experiments/splits/<root folder>.tsv if committed; null = seeded
    val_subjects: list[str] = field(default_factory=list)  # explicit lists override the seeded split
    test_subjects: list[str] = field(default_factory=list)
    val_fraction: float = 0.08
    test_fraction: float = 0.15
    split_seed: int = 0
    interval: int = 5  # keep every interval-th axial slice (PROTOCOL.md)
    intervals: list[int] = field(default_factory=list)  # training: draw one per subject load from these
    offset: int = 0  # kept slices: k % interval == offset, in the file's voxel order
    random_offset: bool = False  # training: draw the offset per subject load
    thick_slices: bool = False  # acquired slices are means over their slab of `interval` slices (clinical 2D)
    patch_size: int = 32
    patch_slices: int = 8  # acquired-slice generators: acquired slices per training patch (patch_size^2 in-plane)
    patch_stride: int | None = 16  # patch centres on a stride lattice inside the brain (paper); null = any brain voxel
    samples_per_volume: int | None = None  # null = the number of lattice patches in the brain (one paper epoch)
    queue_length: int = 300  # per process (DDP: each rank holds its own queue of its share of subjects)
    num_workers: int = 2  # processes that load + degrade subjects for the queue
    pipeline: str = "torchio"  # torchio: the TorchIO Queue (CPU workers) | resident: volumes kept on the training device
    batch_size: int = 12  # per device: under DDP the global batch is batch_size x devices x num_nodes
    max_val_subjects: int | None = None
    val_crop: int | None = None  # crop validation volumes to this cube around the brain centre (quick runs)
    val_shifted: str | None = None  # a folder of val subjects as other sites deliver them (scripts/make_shifted_val.py): every validation also logs val_shifted/*
    demo_subjects: int = 8  # size of the bundled pseudo-subject set
    demo_dir: str | None = None  # where the bundled data are written (default ~/.cache/inpaint)
    record_subjects: bool = False  # write run_dir/subjects/epoch{e}_rank{r}.txt: the training subjects each rank drew


@dataclass
class ModelConfig:
    data_consistency: bool = False  # copy the acquired slices back into the output (the paper does not)
    known_channel: bool = False  # feed the acquired-slice mask as a second input channel
    residual: bool = False  # the network predicts a correction added to the interpolated input
    channels_last: bool = True  # weights and activations in channels-last 3D memory (paper DenseUNet CPU step x1.41, U-Net x1.0)
    compile: bool = False  # torch.compile the generator (state-dict keys unchanged)


@dataclass
class AugmentConfig:
    """Site shifts of acquired-grid training patches (inpaint/data/site.py); p = 0: off."""
    p: float = 0.0  # the chance a training patch is shifted
    gamma: float = 0.5  # |log gamma| at most (0.5: gamma 0.61 to 1.65)
    bias: float = 0.45  # |log| of a patch's bias factor at most (x0.64 to x1.57)
    bias_gradient: float = 0.2  # |log| change of the bias field across a patch, per axis, at most
    noise: float = 0.05  # noise std at most, as a fraction of the acquired brain range (99.5th percentile - minimum)
    blur: float = 0.8  # in-plane Gaussian sigma at most, voxels


@dataclass
class LossConfig:
    l1: float = 1.0  # weight of the L1 fidelity term


@dataclass
class PerceptualConfig:
    weight: float = 1.0e-6  # the paper's gamma
    layer: str = "block2_conv2"
    weights: str | None = None  # null = the committed block1-2 file; or a path to the Keras VGG19 .h5


@dataclass
class CallbacksConfig:
    perceptual: PerceptualConfig | None = None


@dataclass
class OptimConfig:
    lr: float = 3.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    step_epochs: int = 20  # multiply the learning rate by gamma every step_epochs epochs
    gamma: float = 0.1


@dataclass
class InferenceConfig:
    patch_size: int = 32
    overlap: int = 8
    aggregation: str = "average"  # average (paper) | hann (seam-free)
    batch_size: int = 16
    bf16: bool = False  # bf16 autocast (CUDA, and CPUs with bf16 units); changes results slightly
    fuse: bool = True  # an eval copy with norms folded into convs (equal up to ~1e-5), faster
    tile: int | None = None  # null = the paper's 32^3 grid; T = windows of at most T voxels (changes results)
    heap: bool = True  # CPU: keep freed memory for reuse during inference (glibc)


@dataclass
class TrainerConfig:
    max_epochs: int = 60
    max_steps: int = -1
    max_time: str | None = None  # DD:HH:MM:SS
    limit_train_batches: Any = None  # int (batches) or float (fraction) per epoch
    limit_val_batches: Any = None
    check_val_every_n_epoch: int = 1
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    fast_dev_run: bool = False
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = None
    sync_batchnorm: bool = False
    enable_progress_bar: bool = True


@dataclass
class WandbConfig:
    project: str = "inpaint"
    entity: str | None = None
    mode: str | None = None  # online | offline | disabled; null = online if logged in, else offline


@dataclass
class Config:
    experiment: str = "default"
    tags: list[str] = field(default_factory=list)
    seed: int = 0
    train: bool = True  # false: validate only (parameter-free generators never train)
    generator: dict[str, Any] = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: str = "csv"  # csv | wandb | tensorboard | none
    wandb: WandbConfig = field(default_factory=WandbConfig)
    output_dir: str = "runs"  # a run writes to output_dir/experiment/TIMESTAMP (see run_dir)
    run_dir: str | None = None  # write to this folder as is (torchrun/SLURM/multi-node: give every process the same)
    ckpt_path: str | None = None  # resume from this checkpoint
    select: str = "val/psnr"  # what best.ckpt maximises: val/psnr | val_mean/psnr_gain (mean of the plain and data.val_shifted gains)
    init_from: str | None = None  # start from this checkpoint's generator weights (a path or a pretrained name): fine-tuning
    resume: bool = False  # resume from the newest last.ckpt of this experiment


LOGGERS = ("csv", "wandb", "tensorboard", "none")
PIPELINES = ("torchio", "resident")
AGGREGATIONS = ("average", "hann")
MEAN_GAIN = "val_mean/psnr_gain"  # logged when data.val_shifted is set: the mean of the plain and the shifted val gain
SELECTIONS = ("val/psnr", MEAN_GAIN)


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))


def _experiment_file(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = EXPERIMENTS / f"{name}.yaml"
    if not candidate.is_file():
        raise ConfigError(
            f"unknown experiment {name!r}: choose one of {', '.join(experiment_names())} "
            f"(files in {EXPERIMENTS}) or give a path to a YAML file"
        )
    return candidate


def _valid_keys(node: Any) -> list[str]:
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _explain(error: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    """Turn an OmegaConf error into one line naming the key and the valid choices."""
    key = getattr(error, "full_key", None) or ""
    first = str(error).splitlines()[0]
    parent = OmegaConf.select(schema, key.rsplit(".", 1)[0]) if "." in key else schema
    if "not in struct" in first or "Key '" in first and "not" in first:
        choices = ", ".join(_valid_keys(parent))
        return ConfigError(f"{source}: unknown config key {key!r}; valid keys here: {choices}")
    return ConfigError(f"{source}: bad value for {key!r}: {first}")


def _check_choices(cfg: DictConfig) -> None:
    if cfg.logger not in LOGGERS:
        raise ConfigError(f"logger={cfg.logger!r} is not one of {', '.join(LOGGERS)}")
    if cfg.data.pipeline not in PIPELINES:
        raise ConfigError(f"data.pipeline={cfg.data.pipeline!r} is not one of {', '.join(PIPELINES)}")
    if cfg.inference.aggregation not in AGGREGATIONS:
        raise ConfigError(
            f"inference.aggregation={cfg.inference.aggregation!r} is not one of {', '.join(AGGREGATIONS)}"
        )
    if cfg.select not in SELECTIONS:
        raise ConfigError(f"select={cfg.select!r} is not one of {', '.join(SELECTIONS)}")
    if cfg.select == MEAN_GAIN and not cfg.data.val_shifted:
        raise ConfigError(f"select={MEAN_GAIN} needs a shifted val set: give data.val_shifted=FOLDER "
                          "(scripts/make_shifted_val.py) or select=val/psnr")
    if "name" not in cfg.generator:
        raise ConfigError("generator.name is missing: set it in the experiment file or as generator.name=...")
    for key in ("patch_size", "batch_size"):
        if cfg.data[key] < 1:
            raise ConfigError(f"data.{key} must be >= 1, got {cfg.data[key]}")
    for key in ("interval", "patch_slices"):
        if cfg.data[key] < 2:
            raise ConfigError(f"data.{key} must be >= 2, got {cfg.data[key]}")
    if any(i < 2 for i in cfg.data.intervals):
        raise ConfigError(f"data.intervals must all be >= 2 (every N-th slice kept), got {list(cfg.data.intervals)}")
    if not 0 <= cfg.data.offset < min([cfg.data.interval, *cfg.data.intervals]):
        raise ConfigError(f"data.offset={cfg.data.offset} must be in [0, interval) for every interval trained on")


def load(experiment: str | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Build the run configuration.

    Args:
        experiment: a name in ``experiments/`` (e.g. ``dense_unet``) or a path to a YAML file.
        overrides: ``key=value`` strings (OmegaConf dot-list), applied last.

    Returns:
        A structured, typed DictConfig (struct mode: unknown keys are errors).

    Example:
        >>> cfg = load("linear", ["data.interval=4"])
        >>> cfg.data.interval, cfg.generator.name
        (4, 'linear')
    """
    schema = OmegaConf.structured(Config)
    cfg = schema
    layers: list[tuple[str, DictConfig]] = []
    if experiment:
        path = _experiment_file(experiment)
        layers.append((str(path), OmegaConf.load(path)))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"command line: expected key=value, got {bad[0]!r}")
        layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    for source, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as error:
            raise _explain(error, schema, source) from None
    if experiment:
        cfg.experiment = Path(experiment).stem
    if OmegaConf.is_missing(cfg, "generator"):
        raise ConfigError(
            "no generator: pick an experiment (experiment=NAME, one of "
            f"{', '.join(experiment_names())}) or set generator.name=..."
        )
    _check_choices(cfg)
    return cfg


def from_argv(argv: list[str] | None = None) -> DictConfig:
    """Parse ``experiment=NAME key=value ...`` (the form W&B agents pass with ${args_no_hyphens})."""
    args = list(sys.argv[1:] if argv is None else argv)
    args = [a[2:] if a.startswith("--") else a for a in args]
    experiment = None
    rest = []
    for arg in args:
        if arg.startswith("experiment="):
            experiment = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return load(experiment, rest)


def to_container(cfg: DictConfig) -> dict:
    """Plain, resolved dict (for save_hyperparameters and W&B)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def save(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from inpaint.data.io import atomic_write

    atomic_write(path, OmegaConf.to_yaml(cfg, resolve=True))
