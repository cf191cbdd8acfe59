"""W&B sweep files: W&B's own schema check and proposals, and the agent's command line run through inpaint.fit.

Needs the ``sweeps`` package (``wandb[sweeps]``, which may pin numpy<2): it lives in its own venv,
``make test-sweeps``. Elsewhere these tests are skipped, unless ``INPAINT_REQUIRE_SWEEPS=1`` (CI) turns
the missing package into an error.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from inpaint.config import EXPERIMENTS, from_argv
from inpaint.fit import main
from tests.conftest import quick_overrides

with warnings.catch_warnings():  # sweeps 0.2 uses pydantic-1 config names under pydantic 2
    warnings.simplefilter("ignore", UserWarning)
    if os.environ.get("INPAINT_REQUIRE_SWEEPS") == "1":
        import sweeps
    else:
        sweeps = pytest.importorskip("sweeps", reason="`sweeps` not installed: `make test-sweeps` uses its own venv")

SWEEPS = sorted((EXPERIMENTS / "sweeps").glob("*.yaml"))
MAX_PROPOSALS = 20  # all of a grid; the first ones of a random or bayes search


def sweep_config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def proposals(config: dict) -> list:
    """What the sweep controller would hand the agents first, asked offline (no W&B server)."""
    runs: list = []
    while len(runs) < MAX_PROPOSALS and (run := sweeps.next_run(config, runs)) is not None:
        runs.append(run)
    return runs


def agent_command(config: dict, params: dict) -> list[str]:
    """The command line ``wandb agent`` builds (wandb/wandb_agent.py), with W&B's own helpers."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    variables = create_sweep_command_args({"args": params}) | {"env": ["/usr/bin/env"], "interpreter": ["python"]}
    command: list[str] = []
    for chunk in map(str, create_sweep_command(config["command"])):
        if chunk.startswith("${") and chunk.endswith("}"):
            command += variables.get(chunk[2:-1]) or []
        else:
            command.append(chunk)
    return command


def fit_args(command: list[str]) -> list[str]:
    assert command[:4] == ["/usr/bin/env", "python", "-m", "inpaint.fit"], command
    return command[4:]


def test_there_are_sweeps():
    assert {p.stem for p in SWEEPS} >= {"dense_unet_lr_perceptual", "unet3d_width"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_file_passes_wandbs_schema_check(path):
    config = sweep_config(path)
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert config["metric"] == {"name": "val/psnr", "goal": "maximize"}
    command = config["command"]
    assert command[:4] == ["${env}", "${interpreter}", "-m", "inpaint.fit"] and command[-1] == "${args_no_hyphens}"
    assert any(c.startswith("experiment=") for c in command) and "logger=wandb" in command


def test_the_schema_check_catches_mistakes():
    config = sweep_config(SWEEPS[0])
    config["metric"]["goal"] = "maximise"
    config["parameters"]["optim.lr"] = {"valuez": [1.0]}
    assert len(sweeps.schema_violations_from_proposed_config(config)) >= 2


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_proposal_parses_into_the_config(path):
    config = sweep_config(path)
    runs = proposals(config)
    assert runs
    for run in runs:
        params = {key: value["value"] for key, value in run.config.items()}
        cfg = from_argv(fit_args(agent_command(config, run.config)))
        for key, value in params.items():
            got = OmegaConf.select(cfg, key)
            assert (OmegaConf.to_container(got) if OmegaConf.is_config(got) else got) == value, key
        assert cfg.logger == "wandb"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_the_agents_first_command_trains_one_step(path, tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("INPAINT_DEBUG", "1")  # raise instead of printing a one-line error
    config = sweep_config(path)
    run = proposals(config)[0]
    quick = [*quick_overrides(tiny_root, tmp_path), "trainer.fast_dev_run=true"]  # logger=none comes last
    assert not {o.split("=")[0] for o in quick} & set(run.config), "the test must not override a swept key"
    assert main([*fit_args(agent_command(config, run.config)), *quick]) == 0
    (result,) = (tmp_path / "runs").glob("*/*/result.json")
    assert json.loads(result.read_text())["metrics"]["val/psnr"] > 0
