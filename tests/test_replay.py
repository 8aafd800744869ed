"""One replay: ``noisescope probe RUN --probe ...`` recomputes any probe into the run's metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from noisescope.config import load_config
from noisescope.metrics import select
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.run import load_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dynamics_only_run(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, [
        "data.options={n=300, n_test=100, dim=20, k_star=4, num_classes=4}", "noise.rate=0.3",
        "model.options={widths=[32, 32]}", "train.epochs=2", "train.batch_size=64",
        'probe.probes=["dynamics"]', "probe.options={signals={dependence_samples=100, input_pcs=5}}",
        f'run.root="{root}"', 'run.name="dyn"', "run.checkpoint_every=1",
    ])
    return run_experiment(cfg)


def test_probe_signals_on_a_dynamics_only_run_fills_the_reports_signals_sections(dynamics_only_run, tmp_path):
    from noisescope.cli import app
    from noisescope.report import build_report

    assert select(load_run(dynamics_only_run).metrics, probe="signals").empty
    before = build_report(dynamics_only_run, tmp_path / "before.html").read_text()
    result = CliRunner().invoke(app, ["probe", str(dynamics_only_run), "--probe", "signals", "--no-figures"])
    assert result.exit_code == 0, result.output
    rows = select(load_run(dynamics_only_run).metrics, probe="signals")
    assert sorted(rows["epoch"].unique()) == [0, 1, 2]
    after = build_report(dynamics_only_run, tmp_path / "after.html").read_text()
    hint = "noisescope probe"
    assert hint in before and "signals_separation" not in before
    assert "Separation" in after or "separation" in after
    assert after.count("<img") > before.count("<img")


def test_probe_with_an_unknown_probe_name_fails_with_one_line(dynamics_only_run):
    from noisescope.cli import app

    result = CliRunner().invoke(app, ["probe", str(dynamics_only_run), "--probe", "nonsense"])
    assert result.exit_code == 2
    assert "unknown probe" in result.output


def test_replaying_the_dynamics_probe_reproduces_its_rows(dynamics_only_run):
    from noisescope.runs.replay import replay

    live = select(load_run(dynamics_only_run).metrics, probe="dynamics").sort_values(["epoch", "subset", "metric"])
    again = replay(dynamics_only_run, ["dynamics"]).sort_values(["epoch", "subset", "metric"])
    assert list(again["value"].round(9)) == list(live["value"].round(9))
