"""The command line: bad configs give one-line errors and write nothing; a run round-trips."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from noisescope.cli import app
from noisescope.config import ConfigError, load_config

runner = CliRunner()

SMALL = [
    "data.name=synthetic",
    "data.options={n=600, n_test=200, dim=20, k_star=4, num_classes=4}",
    "model.options={widths=[32]}",
    "train.epochs=2",
    "train.batch_size=64",
]


def _run(tmp_path, *extra: str):
    args = ["run", "synthetic_demo", "--quiet"]
    for s in [*SMALL, f"run.root='{tmp_path / 'runs'}'", *extra]:
        args += ["--set", s]
    return runner.invoke(app, args)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.lrr=0.1", "train.lrr"),
        ("noise.rate=1.0", "noise.rate"),
        ("noise.rate=-0.1", "noise.rate"),
        ("model.options={widths=[32, 0]}", "model.options.widths"),
        ("model.options={width=0}", "model.options.width"),
        ("data.name='nope'", "nope"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("train.optimizer='rmsprop'", "train.optimizer"),
        ("train.batch_size=0", "train.batch_size"),
        ("probe.probes=['nope']", "probe.probes"),
        ("model.arch='resnet9000'", "model.arch"),
        ("bogus.key=1", "bogus"),
        ("noise.model='nope'", "nope"),
    ],
)
def test_bad_field_one_line_error_exit_2_nothing_written(tmp_path, override, field):
    result = _run(tmp_path, override)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert field in lines[0]
    assert not (tmp_path / "runs").exists()


def test_missing_dataset_names_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISESCOPE_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    result = _run(tmp_path, "data.name='cifar10'", "data.options={}")
    assert result.exit_code == 2, result.output
    assert "cifar" in result.output.lower()
    assert str(tmp_path / "empty") in result.output.replace("\n", "")
    assert not (tmp_path / "runs").exists()


def test_run_then_list_then_load(tmp_path):
    result = _run(tmp_path, "run.name='r1'")
    assert result.exit_code == 0, result.output
    listing = runner.invoke(app, ["runs", str(tmp_path / "runs")])
    assert listing.exit_code == 0 and "r1" in listing.output
    import noisescope

    run = noisescope.load_run(tmp_path / "runs" / "r1")
    assert run.status["state"] == "complete"
    assert sorted(run.metrics["epoch"].unique()) == [0, 1, 2]
    assert set(run.metrics.columns) == {"epoch", "probe", "tap", "subset", "metric", "index", "value"}
    assert run.env["git_commit"] and run.env["torch"]
    assert (run.path / "figures" / "dynamics.png").stat().st_size > 10_000
    assert run.config.train.epochs == 2
    noise = run.store.read_json("noise.json")
    assert abs(noise["realized_rate"] - 0.4) < 0.1
    # the rebuilt model from the last checkpoint reproduces the recorded test accuracy
    model = run.model()
    acc = (model(run.data.x_test).argmax(1) == run.data.y_test).float().mean().item()
    assert acc == pytest.approx(run.summary["final_test_acc"], abs=1e-6)


def test_rerun_same_config_is_a_no_op_and_conflict_is_an_error(tmp_path):
    assert _run(tmp_path, "run.name='r'").exit_code == 0
    assert _run(tmp_path, "run.name='r'").exit_code == 0
    result = _run(tmp_path, "run.name='r'", "train.lr=0.5")
    assert result.exit_code == 2 and "run.name" in result.output


def test_override_parsing():
    cfg = load_config("synthetic_demo", ["train.lr=3e-4", "run.name=abc", "probe.schedule=log"])
    assert cfg.train.lr == 3e-4 and cfg.run.name == "abc" and cfg.probe.schedule == "log"
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        load_config("no_such_preset")


def test_run_with_tensorboard_logger(tmp_path):
    pytest.importorskip("tensorboard")
    args = ["run", "synthetic_demo", "--quiet", "--logger", "tensorboard"]
    for s in [*SMALL, f"run.root='{tmp_path / 'runs'}'", "run.name='tb'"]:
        args += ["--set", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    events = list((tmp_path / "runs" / "tb" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    bad = runner.invoke(app, ["run", "synthetic_demo", "--logger", "wandb", "--set", f"run.root='{tmp_path}'",
                              *sum((["--set", s] for s in SMALL), [])])
    assert bad.exit_code == 2 and "wandb" in bad.output
    assert not any((tmp_path).glob("demo-*"))


def test_no_help_text_loses_a_bracketed_word_to_rich_markup():
    # rich reads "[grid]" as a style tag and drops it from --help unless it is escaped "\[grid]"
    import re

    import typer.main

    from noisescope.cli import app

    group = typer.main.get_command(app)
    lost = []
    for name, cmd in group.commands.items():
        out = re.sub(r"[\s│╭╮╰╯─]+", "", runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output)
        for p in cmd.params:
            for word in re.findall(r"\[[^\]]*\]+", (getattr(p, "help", None) or "").replace("\\[", "[")):
                if re.sub(r"\s+", "", word) not in out:
                    lost.append(f"{name} {p.name}: {word}")
    assert not lost
