"""Peers in inpaint.evaluate: the adapter protocol end to end with a stand-in peer (no TensorFlow needed), the
one-line refusals, and the real peers where their venvs exist (make setup-peers)."""

from __future__ import annotations

import stat
import sys

import numpy as np
import pytest
import torch

import inpaint.peers as peers
from inpaint.data.degrade import degrade
from inpaint.data.io import InputError
from inpaint.evaluate import main as evaluate
from tests.conftest import phantom, write_nifti

# A stand-in peer: linear interpolation of the sparse file onto the reference slice positions, written with the
# corner-aligned affine a zoom produces; restored through the protocol it must equal linear exactly.
STAND_IN = '''
import sys
from pathlib import Path
import numpy as np
from scipy import ndimage
sys.path.insert(0, {adapters!r})
from adapter_common import read_request, stretched_affine, write_output
folder = Path(sys.argv[1])
request, data, affine, axis = read_request(folder)
k = data.shape[axis]
n_out = (k - 1) * int(request["interval"]) + 1
zoom = [1.0, 1.0, 1.0]
zoom[axis] = n_out / k
out = ndimage.zoom(data, zoom, order=1, grid_mode=False)
write_output(folder, out, stretched_affine(affine, axis, k, out.shape[axis]))
'''


@pytest.fixture
def stand_in(tmp_path, monkeypatch) -> str:
    venv = tmp_path / "venv-peer"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    marker = venv / "lib" / "python3.11" / "site-packages" / "standin" / "model.bin"
    marker.parent.mkdir(parents=True)
    marker.write_bytes(b"weights")
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / "run_standin.py").write_text(STAND_IN.format(adapters=str(peers.ADAPTERS)))
    monkeypatch.setattr(peers, "ADAPTERS", adapters)
    monkeypatch.setenv("INPAINT_PEER_STANDIN", str(venv))
    monkeypatch.setitem(peers.PEERS, "standin", peers.Peer("standin", "standin 1.0", "a test", ("standin/model.bin",),
                                                           intervals=(2, 3, 4, 5, 6), thick=False, keeps_acquired=False))
    return "standin"


def test_no_adapter_shadows_its_peer_package():
    for name in peers.PEERS:
        script = peers.adapter_script(name)
        assert script.is_file() and script.stem not in {name, "eclare", "KevinSR", "common"}, script


def test_the_sparse_file_holds_the_acquired_slices_where_the_reference_has_them():
    affine = np.array([[0.0, 0, 1.0, -20], [-0.9, 0, 0, 30], [0, 1.1, 0, -10], [0, 0, 0, 1]])  # slices along voxel axis 1
    reference = torch.from_numpy(phantom((20, 23, 18), seed=3))
    degraded = degrade(reference, affine, 4, 2)
    data, sparse_affine = peers.sparse_file(degraded, affine)
    assert degraded.axis == 1 and data.shape == (20, len(degraded.kept), 18)
    values, inside = peers.on_reference_grid(data, sparse_affine, affine, tuple(reference.shape))
    kept = degraded.kept.numpy()
    np.testing.assert_allclose(values[:, kept], reference.numpy()[:, kept], atol=1e-4)
    assert inside[:, kept[0]:kept[-1] + 1].all() and not inside[:, : kept[0]].any() and not inside[:, kept[-1] + 1:].any()


def test_a_peer_is_scored_through_its_adapter_like_any_method(stand_in, tmp_path, capsys):
    for i in range(2):
        write_nifti(tmp_path / "data" / f"sub-0{i}_T1w.nii.gz", phantom(seed=i), np.diag([0.9, 0.9, 1.0, 1.0]))
    out = tmp_path / "eval"
    assert evaluate(["--data", str(tmp_path / "data"), "--methods", f"linear,{stand_in}", "--no-figures",
                     "--out", str(out)]) == 0, capsys.readouterr().err
    rows = [r.split(",") for r in (out / "metrics.csv").read_text().split()[1:]]
    by = {(r[0], r[1]): float(r[2]) for r in rows}
    for subject in ("sub-00", "sub-01"):
        assert by[subject, stand_in] == pytest.approx(by[subject, "linear"], abs=1e-3)  # linear through the protocol
    summary = (out / "summary.md").read_text()
    assert f"peer {stand_in}: standin 1.0" in summary and "keeps the acquired slices: no" in summary


def test_a_peer_is_refused_in_one_line_before_any_work(stand_in, tmp_path, capsys, monkeypatch):
    write_nifti(tmp_path / "data" / "sub-00_T1w.nii.gz", phantom())
    base = ["--data", str(tmp_path / "data"), "--no-figures"]
    assert evaluate([*base, "--methods", f"linear,{stand_in}", "--interval", "7", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "interval 7 is outside the factors it supports (2-6)" in err and not (tmp_path / "a").exists()
    assert evaluate([*base, "--methods", f"linear,{stand_in}", "--thick-slices", "--out", str(tmp_path / "b")]) == 2
    assert "no model for thick slices offline" in capsys.readouterr().err
    monkeypatch.setenv("INPAINT_PEER_STANDIN", str(tmp_path / "nowhere"))
    assert evaluate([*base, "--methods", f"linear,{stand_in}", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "nowhere/bin/python is missing; run `make setup-peers`" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="soup_gan: .* (is missing|is not in)"):
        monkeypatch.setenv("INPAINT_PEER_SOUP_GAN", str(tmp_path / "no-venv"))
        peers.check_peer("soup_gan", 5)


@pytest.mark.parametrize("name", ["soup_gan", "eclare"])
def test_the_real_peer_restores_a_phantom(name, tmp_path, capsys, monkeypatch):
    """Runs only where the peer's venv exists (make setup-peers); ECLARE at a token budget."""
    try:
        peers.check_peer(name, 4)
    except InputError as error:
        pytest.skip(str(error))
    monkeypatch.setitem(peers.PEERS, "eclare", peers.Peer(**{**peers.PEERS["eclare"].__dict__,
                                                             "settings": {"n_patches": 256, "batch_size": 32, "threads": 1}}))
    write_nifti(tmp_path / "data" / "sub-00_T1w.nii.gz", phantom((48, 48, 40)), np.diag([0.9, 0.9, 1.0, 1.0]))
    out = tmp_path / "eval"
    assert evaluate(["--data", str(tmp_path / "data"), "--methods", f"linear,{name}", "--interval", "4",
                     "--no-figures", "--out", str(out)]) == 0, capsys.readouterr().err
    rows = {r.split(",")[1]: float(r.split(",")[2]) for r in (out / "metrics.csv").read_text().split()[1:]}
    assert np.isfinite(rows[name]) and rows[name] > 10
