from __future__ import annotations

import pytest

from inpaint.config import ConfigError, experiment_names, from_argv, load


def test_experiment_merged_over_defaults_then_overrides():
    cfg = load("linear", ["data.interval=4", "trainer.max_epochs=2", "data.root=/x"])
    assert cfg.generator.name == "linear" and cfg.train is False
    assert (cfg.data.interval, cfg.trainer.max_epochs, cfg.data.root) == (4, 2, "/x")
    assert cfg.optim.lr == pytest.approx(3e-4)  # untouched default


def test_argv_form_of_wandb_agents():
    cfg = from_argv(["experiment=linear", "--data.offset=1", "data.intervals=[2,3]"])
    assert (cfg.experiment, cfg.data.offset, list(cfg.data.intervals)) == ("linear", 1, [2, 3])


@pytest.mark.parametrize(
    "experiment, overrides, expected",
    [
        ("linear", ["data.nope=1"], "unknown config key 'data.nope'; valid keys here: batch_size"),
        ("linear", ["nope=1"], "unknown config key 'nope'"),
        ("linear", ["trainer.max_epochs=many"], "bad value for 'trainer.max_epochs'"),
        ("no_such_experiment", [], "unknown experiment 'no_such_experiment': choose one of"),
        ("linear", ["logger=printer"], "logger='printer' is not one of csv, wandb"),
        ("linear", ["inference.aggregation=max"], "is not one of average, hann"),
        ("linear", ["data.interval=0"], "data.interval must be >= 2"),
        ("linear", ["justaword"], "expected key=value"),
        (None, [], "no generator"),
    ],
)
def test_bad_config_is_one_line_error(experiment, overrides, expected):
    with pytest.raises(ConfigError) as info:
        load(experiment, overrides)
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_every_experiment_file_loads():
    names = experiment_names()
    assert "linear" in names
    for name in names:
        assert load(name).generator.name


def test_experiment_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("generator: {name: linear}\ndata: {interval: 3}\n")
    cfg = load(str(path))
    assert (cfg.experiment, cfg.data.interval) == ("mine", 3)
