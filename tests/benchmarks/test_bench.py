"""A smoke run of the speed bench at tiny sizes: it runs and prints every table (no timing assertions)."""

from __future__ import annotations

import pytest

from benchmarks import bench
from tests.conftest import phantom, write_nifti


def test_shrunk_bench_prints_the_tables(tmp_path, capsys):
    for i in range(3):
        write_nifti(tmp_path / "data" / f"sub-{i:02d}_T1w.nii.gz", phantom((40, 44, 36), seed=i))
    out = tmp_path / "bench.md"
    argv = ["--shrunk", "--repeats", "1", "--volume", str(tmp_path / "data" / "sub-00_T1w.nii.gz"), "--out", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == out.read_text().strip()
    for text in ("- device: CPU", "- torch ", "-m benchmarks.bench --shrunk --repeats 1 --volume",
                 "| generator | perceptual | patches/s | output Mvoxel/s | s/step | GFLOP/step | GFLOP/s | peak memory | timed steps |",
                 "| dense_unet | yes |", "| unet3d | no |", "| linear | no | not trained (no parameters) |",
                 "| generator | mode | seconds | process CPU s | windows run | PSNR vs exact (dB, brain) |",
                 "| dense_unet | exact paper grid (fuse) |", "| dense_unet | tile 128 |", "## MONAI peer",
                 "| experiment | pipeline | patches cut on | queue workers | setup + first batch s | patches | patches/s |",
                 "| dense_unet | torchio | cpu | 0 |", "| dense_unet | resident | cpu | 0 |",
                 "| slice_resnet | resident | cpu | 0 |", "| unet3d | torchio | cpu | 0 |"):
        assert text in printed, text
    assert not list(tmp_path.glob(".bench.md.tmp"))  # written atomically


def test_bench_volume_and_phantom_cases():
    case = bench.load_case(None, (40, 48, 36))
    assert case["input"].shape == case["known"].shape == case["mask"].shape == (40, 48, 36)
    assert case["known"][..., ::5].all() and not case["known"][..., 1::5].any()
    assert torch_close(case["input"][case["known"] > 0], case["target"][case["known"] > 0])


def torch_close(a, b) -> bool:
    return bool((a - b).abs().max() < 1e-5)


def test_acquired_slice_generator_rows(tmp_path, capsys):
    write_nifti(tmp_path / "sub-00_T1w.nii.gz", phantom((40, 44, 36)))
    argv = ["--shrunk", "--repeats", "1", "--volume", str(tmp_path / "sub-00_T1w.nii.gz"), "--generators", "slice_resnet",
            "--infer-generators", "slice_resnet", "--skip", "peer,queue", "--channels-last"]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| slice_resnet | no | " in printed and "no perceptual branch (trains on the acquired-slice grid)" in printed
    assert "| slice_resnet | whole volume, no patches |" in printed and "| slice_resnet | in-plane tiles of 64" in printed


def test_generator_keywords_are_benchmarked(tmp_path, capsys):
    argv = ["--shrunk", "--repeats", "1", "--generators", "slice_resnet", "--skip", "infer,peer,queue",
            "--set", "slice_resnet.kernel=[3,3,1]", "--set", "slice_resnet.blocks=1"]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "- generator keywords: slice_resnet.kernel=[3,3,1], slice_resnet.blocks=1" in printed
    assert "| slice_resnet | no | " in printed


@pytest.mark.slow
def test_compiled_training_is_benchmarked(capsys):
    argv = ["--shrunk", "--repeats", "1", "--generators", "slice_resnet", "--skip", "infer,peer,queue", "--compile"]
    assert bench.main(argv) == 0
    assert ", torch.compile)" in capsys.readouterr().out


def test_a_bad_generator_keyword_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--shrunk", "--generators", "slice_resnet", "--set", "nope.features=3"])
    assert "expected NAME.KEY=VALUE" in capsys.readouterr().err


def test_a_failed_row_is_a_note_and_a_deadline_skips_the_rest(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image for this device\nsecond line")

    monkeypatch.setattr(bench, "bench_inference", broken)
    out = tmp_path / "bench.md"
    argv = ["--shrunk", "--repeats", "1", "--generators", "slice_resnet,linear", "--skip", "peer,queue",
            "--infer-generators", "slice_resnet", "--out", str(out)]
    assert bench.main(argv) == 0
    assert "| slice_resnet | failed: RuntimeError: no kernel image for this device |" in out.read_text()
    assert bench.main([*argv, "--deadline", "0"]) == 0
    assert "| slice_resnet | no | skipped: past the --deadline of 0 s |" in out.read_text()
