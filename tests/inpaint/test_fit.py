"""End-to-end runs of inpaint.fit on tiny synthetic volumes (seconds each)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inpaint.checkpoint import load_module
from inpaint.config import ConfigError, experiment_names, load
from inpaint.data.io import InputError
from inpaint.fit import fit, main
from tests.conftest import phantom, quick_overrides, write_nifti

# Shrunk widths so a paper-sized experiment costs a second, not half a minute, on 2 cores.
SHRINK = {"dense_unet": ["generator.features=4", "generator.layers_per_block=2"],
          "unet3d": ["generator.features=[4,8,16,32,64]"], "linear": [],
          "slice_resnet": ["generator.features=8", "generator.blocks=1", "generator.head_features=8",
                           "data.patch_slices=4"]}


def shrink(name: str) -> list[str]:  # by generator: every experiment of a generator shrinks alike
    return SHRINK[load(name).generator.name]


@pytest.mark.parametrize("name", experiment_names())
def test_every_experiment_runs_one_fast_dev_step(name, tiny_root, tmp_path):
    cfg = load(name, [*quick_overrides(tiny_root, tmp_path), *shrink(name), "trainer.fast_dev_run=true"])
    result = fit(cfg)
    assert result["metrics"]["val/psnr"] > 0
    assert (Path(result["run_dir"]) / "config.yaml").is_file()


def test_linear_validates_without_training_and_equals_the_input(tiny_root, tmp_path):
    result = fit(load("linear", quick_overrides(tiny_root, tmp_path)))
    m = result["metrics"]
    assert m["val/psnr"] == pytest.approx(m["val/linear_psnr"]) and m["val/psnr_gain"] == pytest.approx(0.0, abs=1e-6)
    assert result["best_checkpoint"] == ""


def test_thick_slices_reach_validation(tiny_root, tmp_path):
    thin, thick = (fit(load("linear", [*quick_overrides(tiny_root, tmp_path / name), f"data.thick_slices={name}"]))
                   for name in ("false", "true"))
    assert thin["metrics"]["val/linear_psnr"] != pytest.approx(thick["metrics"]["val/linear_psnr"], abs=1e-3)


def train_cfg(tiny_root, tmp_path, *extra):
    overrides = [*quick_overrides(tiny_root, tmp_path), *SHRINK["dense_unet"], "logger=csv",
                 "trainer.max_epochs=2", "trainer.limit_train_batches=3", "optim.step_epochs=1", *extra]
    return load("dense_unet", overrides)


def test_training_writes_config_checkpoints_and_metrics(tiny_root, tmp_path):
    result = fit(train_cfg(tiny_root, tmp_path))
    run = Path(result["run_dir"])
    assert Path(result["best_checkpoint"]).name == "best.ckpt" and (run / "checkpoints" / "last.ckpt").is_file()
    lines = (run / "logs" / "metrics.csv").read_text().splitlines()
    assert "val/psnr" in lines[0] and "work/cpu_hours" in lines[0]
    column = lines[0].split(",").index("work/patches_seen")
    assert [float(line.split(",")[column]) for line in lines[1:] if line.split(",")[column]] == [6.0, 12.0]
    checkpoint = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["config"]["generator"]["name"] == "dense_unet" and hparams["data_info"]["interval"] == 5
    assert hparams["data_info"]["orientation"] == "RAS"  # the tiny phantoms' (identity affine), slice axis last
    subjects = hparams["data_info"]["subjects"]  # evaluate refuses to score the model on them
    assert subjects["val"] == result["val_subjects"] and len(subjects["train"]) == 4
    assert not set(subjects["train"]) & set(subjects["val"])
    assert not any("vgg" in k.lower() for k in checkpoint["state_dict"])


def test_last_checkpoint_is_written_every_epoch_even_when_validation_does_not_improve(tiny_root, tmp_path):
    result = fit(train_cfg(tiny_root, tmp_path, "optim.lr=0"))  # the same weights: epoch 1 is no improvement
    last = torch.load(result["last_checkpoint"], map_location="cpu", weights_only=False)
    best = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=False)
    assert (best["epoch"], last["epoch"]) == (0, 1) and Path(result["last_checkpoint"]).name == "last.ckpt"


def test_resume_continues_exactly(tiny_root, tmp_path):
    straight = fit(train_cfg(tiny_root, tmp_path / "a"))
    first = fit(train_cfg(tiny_root, tmp_path / "b", "trainer.max_epochs=1"))
    resumed = fit(train_cfg(tiny_root, tmp_path / "b", f"ckpt_path={first['last_checkpoint']}"))
    assert resumed["run_dir"] == first["run_dir"]
    a = torch.load(straight["last_checkpoint"], weights_only=False)
    b = torch.load(resumed["last_checkpoint"], weights_only=False)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, msg=key)
    assert a["lr_schedulers"] == b["lr_schedulers"]
    work = {k: v for k, v in b["callbacks"].items() if "WorkMeter" in k}
    assert [state["patches"] for state in work.values()] == [2 * 3 * 2]  # the resumed run kept counting


def test_a_run_stopped_at_an_epoch_end_resumes_from_its_last_checkpoint(tiny_root, tmp_path):
    # last.ckpt written as epoch 1 ended (max_steps): the resumed loop opens with on_train_epoch_end
    base = [*quick_overrides(tiny_root, tmp_path), *SHRINK["slice_resnet"], "logger=csv", "trainer.max_epochs=4",
            "trainer.limit_train_batches=2", "trainer.check_val_every_n_epoch=2"]
    first = fit(load("slice_resnet", [*base, "trainer.max_steps=4"]))
    resumed = fit(load("slice_resnet", [*base, "trainer.max_steps=6", f"ckpt_path={first['last_checkpoint']}"]))
    last = torch.load(resumed["last_checkpoint"], map_location="cpu", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 6)


def test_resume_with_another_learning_rate_continues_at_it(tiny_root, tmp_path):
    first = fit(train_cfg(tiny_root, tmp_path, "trainer.max_epochs=1", "optim.lr=1e-3"))
    resumed = fit(train_cfg(tiny_root, tmp_path, f"ckpt_path={first['last_checkpoint']}", "optim.lr=1e-5"))  # a cool-down
    last = torch.load(resumed["last_checkpoint"], map_location="cpu", weights_only=False)
    gamma = last["hyper_parameters"]["optim"]["gamma"]
    assert last["lr_schedulers"][0]["base_lrs"] == [1e-5] and last["hyper_parameters"]["optim"]["lr"] == 1e-5
    for group in last["optimizer_states"][0]["param_groups"]:  # the decay of both epochs (step_epochs=1) applies
        assert group["lr"] == pytest.approx(1e-5 * gamma**2) and group["initial_lr"] == 1e-5


def test_resume_true_finds_the_last_checkpoint(tiny_root, tmp_path):
    first = fit(train_cfg(tiny_root, tmp_path, "trainer.max_epochs=1"))
    again = fit(train_cfg(tiny_root, tmp_path, "resume=true"))
    assert again["run_dir"] == first["run_dir"]


def test_init_from_copies_generator_weights_and_refuses_another_generator(tiny_root, tmp_path):
    first = fit(train_cfg(tiny_root, tmp_path / "a", "trainer.max_epochs=1"))
    source = load_module(first["best_checkpoint"])
    cfg = train_cfg(tiny_root, tmp_path / "b", f"init_from={first['best_checkpoint']}", "optim.lr=0",
                    "trainer.max_epochs=1")
    second = load_module(fit(cfg)["best_checkpoint"])  # lr 0: the weights it started from (norm statistics move)
    for (name, a), b in zip(source.generator.named_parameters(), second.generator.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    other = load("slice_resnet", [*quick_overrides(tiny_root, tmp_path / "c"), f"init_from={first['best_checkpoint']}"])
    with pytest.raises(ConfigError, match="init_from=.*does not fit"):
        fit(other)


def test_a_fine_tuned_model_has_seen_what_its_starting_checkpoint_saw(tiny_root, tmp_path):
    split = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "data.test_subjects=[sub-00]"]
    first = fit(train_cfg(tiny_root, tmp_path / "a", *split, "data.val_subjects=[sub-05]"))
    second = fit(train_cfg(tiny_root, tmp_path / "b", *split, "data.val_subjects=[sub-04]",
                           f"init_from={first['last_checkpoint']}"))
    seen = torch.load(second["last_checkpoint"], weights_only=False)["hyper_parameters"]["data_info"]["subjects"]
    assert sorted(seen["train"]) == ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05"]  # sub-04: trained on before
    assert seen["val"] == [] and "sub-00" not in seen["train"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["experiment=linear", "data.bogus=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "unknown config key 'data.bogus'" in err and "\n" not in err
    assert main(["experiment=linear", f"data.root={tmp_path}"]) == 2
    assert "no NIfTI volumes found" in capsys.readouterr().err


def test_a_nan_volume_is_a_one_line_error_before_the_run_folder(tmp_path, capsys):
    for i in range(4):
        volume = phantom(seed=i)
        volume[5, 5, 5] = np.nan if i == 2 else volume[5, 5, 5]
        write_nifti(tmp_path / "data" / f"sub-{i:02d}_T1w.nii.gz", volume)
    assert main(["experiment=debug", f"data.root={tmp_path / 'data'}", "data.val_fraction=0.25",
                 "data.test_fraction=0", f"output_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "sub-02_T1w.nii.gz" in err and "NaN" in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_module_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "inpaint.fit", "experiment=nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown experiment 'nope'" in out.stderr


def test_help_prints_the_usage_and_the_experiments(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m inpaint.fit experiment=NAME") and "slice_resnet" in out and "data.*" in out


def test_output_that_is_not_a_terminal_gets_plain_progress_lines(tiny_root, tmp_path, capsys):
    fit(train_cfg(tiny_root, tmp_path, "trainer.enable_progress_bar=true", "trainer.log_every_n_steps=1"))
    out = capsys.readouterr().out  # pytest's capture is not a terminal
    assert "epoch 0 batch 1/3 step 1 loss" in out and "epoch 1 validation: PSNR" in out


def test_last_checkpoint_also_on_epochs_without_validation(tiny_root, tmp_path):
    result = fit(train_cfg(tiny_root, tmp_path, "trainer.check_val_every_n_epoch=2", "trainer.max_epochs=3"))
    assert torch.load(result["last_checkpoint"], map_location="cpu", weights_only=False)["epoch"] == 2


@pytest.mark.parametrize(("override", "needle"), [("data.interval=1", "data.interval must be >= 2"),
                                                  ("data.intervals=[1,5]", "data.intervals must all be >= 2"),
                                                  ("data.patch_slices=1", "data.patch_slices must be >= 2"),
                                                  ("data.offset=5", "data.offset=5 must be in [0, interval)")])
def test_bad_acquisition_settings_are_config_errors(override, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load("slice_resnet", [override])


@pytest.mark.parametrize("name", ["debug", "slice_resnet_thick"])
def test_resident_pipeline_trains_and_validates(name, tiny_root, tmp_path):
    cfg = load(name, [*quick_overrides(tiny_root, tmp_path), *shrink(name), "data.pipeline=resident",
                      "trainer.max_epochs=2", "trainer.limit_train_batches=3"])
    result = fit(cfg)
    assert result["metrics"]["val/psnr"] > 0
    state = torch.load(result["last_checkpoint"], weights_only=False)
    assert state["global_step"] == 6


def test_a_shifted_validation_set_is_reported_beside_the_val_subjects(tiny_root, tmp_path):
    """data.val_shifted: a second validation loader; its gain is logged every validation and reported."""
    shifted = tmp_path / "shifted"
    write_nifti(shifted / "sub-05_acq-gamma_T1w.nii.gz", (phantom(seed=5) / 1000) ** 1.6 * 1000)
    split = ["data.val_subjects=[sub-05]", "data.test_subjects=[sub-00]", f"data.val_shifted={shifted}"]
    result = fit(train_cfg(tiny_root, tmp_path, *split, "select=val_mean/psnr_gain"))
    m = result["metrics"]
    assert {"val/psnr_gain", "val_shifted/psnr_gain", "val_shifted/linear_psnr"} <= set(m)
    assert m["val_shifted/linear_psnr"] != pytest.approx(m["val/linear_psnr"], abs=1e-3)  # another volume was scored
    assert m["val_mean/psnr_gain"] == pytest.approx((m["val/psnr_gain"] + m["val_shifted/psnr_gain"]) / 2, abs=1e-5)
    rows = list(csv.DictReader((Path(result["run_dir"]) / "logs" / "metrics.csv").open()))
    assert {"val_shifted/psnr_gain", "val/psnr_gain"} <= set(rows[0])
    means = {int(r["epoch"]): float(r["val_mean/psnr_gain"]) for r in rows if r["val_mean/psnr_gain"]}
    assert len(means) == 2 and result["best_epoch"] == max(means, key=means.get)  # best.ckpt follows select
    best = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=False)
    assert best["epoch"] == result["best_epoch"]
    validated = fit(load("linear", [*quick_overrides(tiny_root, tmp_path / "linear"), *split]))["metrics"]
    assert validated["val_shifted/psnr_gain"] == pytest.approx(0.0, abs=1e-6) and "val/psnr" in validated


def test_selecting_by_the_shifted_gain_needs_a_shifted_val_set(tiny_root, tmp_path):
    with pytest.raises(ConfigError, match="select=val_mean/psnr_gain needs a shifted val set: give data.val_shifted"):
        load("slice_resnet", [*quick_overrides(tiny_root, tmp_path), "select=val_mean/psnr_gain"])
    with pytest.raises(ConfigError, match="select='val/ssim' is not one of val/psnr, val_mean/psnr_gain"):
        load("slice_resnet", [*quick_overrides(tiny_root, tmp_path), "select=val/ssim"])


def test_a_shifted_validation_set_made_from_a_training_subject_is_refused(tiny_root, tmp_path):
    shifted = write_nifti(tmp_path / "shifted" / "sub-02_acq-bias_T1w.nii.gz", phantom(seed=2)).parent
    cfg = train_cfg(tiny_root, tmp_path, "data.val_subjects=[sub-05]", "data.test_subjects=[sub-00]",
                    f"data.val_shifted={shifted}")
    with pytest.raises(InputError, match=r"sub-02_acq-bias_T1w.nii.gz is made from sub-02, a train subject"):
        fit(cfg)


def test_site_shifted_training_runs_and_is_recorded(tiny_root, tmp_path):
    cfg = load("slice_resnet", [*quick_overrides(tiny_root, tmp_path), *SHRINK["slice_resnet"], "augment.p=0.8",
                                "trainer.limit_train_batches=2", "trainer.max_epochs=1"])
    result = fit(cfg)
    module = load_module(result["last_checkpoint"])
    assert module.augment_cfg["p"] == 0.8 and module.site_shift is not None
    assert np.isfinite(result["metrics"]["val/psnr"])


def test_a_short_cpu_run_of_a_full_resolution_network_validates_briefly(tiny_root, tmp_path, capsys):
    from inpaint.fit import short_cpu_run

    assert short_cpu_run(load("dense_unet", ["trainer.accelerator=cpu", "trainer.max_time=00:00:03:00"]))
    assert not short_cpu_run(load("dense_unet", ["trainer.accelerator=cpu", "trainer.max_time=00:02:00:00"]))
    assert not short_cpu_run(load("slice_resnet", ["trainer.accelerator=cpu", "trainer.max_steps=10"]))  # whole volumes are fast
    result = fit(train_cfg(tiny_root, tmp_path, "trainer.max_steps=3", "trainer.max_epochs=1", "trainer.log_every_n_steps=1",
                           "trainer.enable_progress_bar=true", "data.val_subjects=[sub-04,sub-05]"))
    assert len(result["val_subjects"]) == 1  # one volume, cropped, instead of both
    out = capsys.readouterr().out
    assert "epoch 0 validation volume 1/1" in out and "patches/s" in out and "min of training left" in out


def test_a_folder_of_sparse_scans_is_refused_in_one_line(tmp_path, capsys):
    for i in range(4):
        write_nifti(tmp_path / "sparse" / f"sub-0{i}_T1w.nii.gz", phantom((40, 44, 8), seed=i), np.diag([1.0, 1.0, 5.0, 1.0]))
    code = main(["experiment=debug", f"data.root={tmp_path / 'sparse'}", f"output_dir={tmp_path / 'runs'}",
                 "trainer.accelerator=cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sparse along voxel axis 2: a 2D acquisition" in err[0]
    assert "inpaint.predict" in err[0]
