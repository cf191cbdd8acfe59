from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaint.constants import MASK, SCALE, TARGET
from inpaint.data.io import InputError, read_volume, write_volume
from inpaint.data.normalise import Normalise, denormalise, normalise
from inpaint.data.subjects import find_volumes, make_subject, read_split_file, reference_files, split_volumes
from inpaint.data.transforms import PatchCentres, PrepareVolume
from tests.conftest import phantom, write_nifti


def test_bids_folder_with_masks_matched_by_name(tmp_path):
    for name in ("sub-01", "sub-02"):
        write_nifti(tmp_path / name / "anat" / f"{name}_T1w.nii.gz", phantom())
    write_nifti(tmp_path / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz", (phantom() > 0).astype(np.uint8))
    write_nifti(tmp_path / "other.mgz_dir" / "x.nii", phantom())
    volumes = {v.name: v for v in find_volumes(tmp_path)}
    assert set(volumes) == {"sub-01", "sub-02", "x"}
    assert volumes["sub-01"].mask.name == "sub-01_desc-brain_mask.nii.gz" and volumes["sub-02"].mask is None


def test_seeded_split_is_deterministic_and_disjoint(tiny_root):
    volumes = find_volumes(tiny_root)
    a = split_volumes(volumes, 0.2, 0.2, seed=3)
    b = split_volumes(list(reversed(volumes)), 0.2, 0.2, seed=3)
    c = split_volumes(volumes, 0.2, 0.2, seed=4)
    as_sets = lambda split: {k: {v.name for v in vs} for k, vs in split.items()}  # noqa: E731
    assert as_sets(a) == as_sets(b)
    assert as_sets(a) != as_sets(c) or as_sets(a) == as_sets(split_volumes(volumes, 0.2, 0.2, seed=4))
    names = [v.name for vs in a.values() for v in vs]
    assert sorted(names) == sorted(v.name for v in volumes) and len(a["val"]) == 1 and len(a["test"]) == 1


def test_split_file_and_explicit_lists(tiny_root, tmp_path):
    volumes = find_volumes(tiny_root)
    tsv = tmp_path / "split.tsv"
    tsv.write_text("subject\tsplit\n" + "".join(f"sub-0{i}\t{'val' if i == 5 else 'train'}\n" for i in range(6)))
    assert [v.name for v in split_volumes(volumes, split_file=str(tsv))["val"]] == ["sub-05"]
    explicit = split_volumes(volumes, val_subjects=["sub-01"], test_subjects=["sub-02"])
    assert [v.name for v in explicit["test"]] == ["sub-02"] and len(explicit["train"]) == 4
    with pytest.raises(InputError, match="unknown subject 'sub-99'"):
        split_volumes(volumes, val_subjects=["sub-99"])


def test_reference_files_are_exact_and_a_missing_one_is_a_one_line_error(tmp_path):
    for name in ("sub-01_T1w.nii.gz", "sub-02_T1w.nii"):
        write_nifti(tmp_path / name, phantom())
    assert [p.name for p in reference_files(tmp_path, ["sub-02", "sub-01"])] == ["sub-02_T1w.nii", "sub-01_T1w.nii.gz"]
    with pytest.raises(InputError, match=r"no sub-03_\*T1w.nii\(.gz\) file\(s\) there; give --data the folder"):
        reference_files(tmp_path, ["sub-01", "sub-03"])
    write_nifti(tmp_path / "sub-010_T1w.nii.gz", phantom())  # no prefix match: sub-01 is not sub-010
    assert [p.name for p in reference_files(tmp_path, ["sub-01"])] == ["sub-01_T1w.nii.gz"]
    write_nifti(tmp_path / "sub-01_acq-b_T1w.nii.gz", phantom())
    with pytest.raises(InputError, match=r"2 sub-01_\*T1w.nii\(.gz\) file\(s\) there \(sub-01_T1w.nii.gz, sub-01_acq-b"):
        reference_files(tmp_path, ["sub-01"])
    with pytest.raises(InputError, match="no subject to look up"):
        reference_files(tmp_path, [])
    with pytest.raises(InputError, match="no such split file"):
        read_split_file(tmp_path / "split.tsv")


def test_normalisation_uses_acquired_slices_only_and_round_trips(tiny_root):
    from inpaint.data.degrade import Degrade

    subject = Degrade(interval=5)(PrepareVolume()(make_subject(find_volumes(tiny_root)[0])))
    original = subject[TARGET].data.clone().double()
    # changing a missing slice must not change the scale
    changed = subject[TARGET].data.clone()
    changed[..., 2] += 1e4
    other = Normalise()(subject.__class__({**subject, TARGET: subject[TARGET].__class__(tensor=changed, affine=subject[TARGET].affine)}))
    out = Normalise()(subject)
    assert out[SCALE] == other[SCALE]
    assert out[TARGET].data.max() > 1.0 - 1e-6  # not clipped: the brightest voxels pass 1
    np.testing.assert_allclose(denormalise(out[TARGET].data.double(), out[SCALE]), original, atol=1e-3)
    x = torch.linspace(-50, 2000, 11, dtype=torch.float64)
    torch.testing.assert_close(denormalise(normalise(x, (3.0, 900.0)), (3.0, 900.0)), x)


def test_patch_centres_stay_in_the_brain_on_the_lattice(tiny_root):
    subject = PatchCentres(16, 8)(PrepareVolume()(make_subject(find_volumes(tiny_root)[0])))
    centres = torch.nonzero(subject["sampling"].data[0])
    assert len(centres) > 0
    assert bool((subject[MASK].data[0][tuple(centres.T)] > 0).all())
    assert bool(((centres - 8) % 8 == 0).all())
    shape = torch.tensor(subject[MASK].shape[1:])
    assert bool((centres >= 8).all()) and bool((centres <= shape - 8).all())


@pytest.mark.parametrize(
    "data, expected",
    [
        (np.ones((5, 5, 5, 2), np.float32), "expected one 3D volume, got shape (5, 5, 5, 2)"),
        (np.ones((20, 20), np.float32), "expected one 3D volume"),
        (np.where(np.arange(27).reshape(3, 3, 3) == 4, np.nan, 1.0).astype(np.float32), "1 NaN/Inf voxels"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, data, expected):
    path = write_nifti(tmp_path / "bad.nii.gz", data)
    with pytest.raises(InputError) as info:
        read_volume(path)
    assert expected in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_unreadable_and_empty_inputs(tmp_path):
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="junk.nii.gz: cannot read it"):
        read_volume(tmp_path / "junk.nii.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no NIfTI volumes found"):
        find_volumes(empty)
    zeros = write_nifti(tmp_path / "z" / "zero_T1w.nii.gz", np.zeros((8, 8, 8), np.float32))
    with pytest.raises(InputError, match="zero_T1w.nii.gz: the brain mask is empty"):
        PrepareVolume()(make_subject(find_volumes(zeros.parent)[0]))


def test_patch_larger_than_volume(tmp_path):
    write_nifti(tmp_path / "small_T1w.nii.gz", phantom((20, 40, 40)))
    with pytest.raises(InputError, match="small_T1w.nii.gz: volume \\(20, 40, 40\\) is smaller than the training patch \\(32, 32, 32\\)"):
        PatchCentres(32)(PrepareVolume()(make_subject(find_volumes(tmp_path)[0])))


def test_atomic_write_refuses_to_overwrite(tmp_path):
    path = write_volume(torch.ones(4, 4, 4), np.eye(4), tmp_path / "out.nii.gz")
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_volume(torch.zeros(4, 4, 4), np.eye(4), path)
    write_volume(torch.zeros(4, 4, 4), np.eye(4), path, overwrite=True)
    assert read_volume(path)[0].sum() == 0 and [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_a_folder_with_a_committed_split_uses_it_and_says_so(tmp_path, caplog):
    import logging

    from inpaint.config import load
    from inpaint.data.module import InpaintDataModule

    root = tmp_path / "ds002748"  # experiments/splits/ds002748.tsv: sub-02 train, sub-03 val, sub-11 test
    for name in ("sub-02", "sub-03", "sub-11", "sub-99"):  # sub-99: not in the split, so in no split
        write_nifti(root / f"{name}_T1w.nii.gz", phantom())
    with caplog.at_level(logging.INFO):
        datamodule = InpaintDataModule(load("debug", [f"data.root={root}"]).data)
        datamodule.setup()
    assert {k: [v.name for v in vs] for k, vs in datamodule.splits.items()} == {
        "train": ["sub-02"], "val": ["sub-03"], "test": ["sub-11"]}
    assert "the committed split experiments/splits/ds002748.tsv" in caplog.text
    seeded = InpaintDataModule(load("debug", [f"data.root={root}", "data.split=null"]).data)
    seeded.setup()
    assert sum(len(v) for v in seeded.splits.values()) == 4  # null: the seeded split of every volume
