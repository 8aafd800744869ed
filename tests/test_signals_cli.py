"""Figures and the ``noisescope signals RUN`` command on a tiny synthetic run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from noisescope.config import load_config
from noisescope.metrics import select
from noisescope.report.signals_figures import plot_signals, signal_table
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.replay import replay

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, [
        'data.name="synthetic"', "data.options={n=300, n_test=100, dim=20, k_star=4, num_classes=4}",
        'noise.model="symmetric"', "noise.rate=0.3", 'model.arch="mlp"',
        "model.options={widths=[32, 32]}", "train.epochs=3", "train.batch_size=64",
        'train.device="cpu"', 'probe.probes=["dynamics", "signals"]',
        "probe.options={signals={dependence_samples=100, input_pcs=5}}",
        f'run.root="{root}"', 'run.name="tiny"', "run.checkpoint_every=1",
    ])
    return run_experiment(cfg)


def test_tables_and_figures_from_run_metrics(tiny_run: Path, tmp_path: Path) -> None:
    from noisescope.runs.run import load_run

    metrics = load_run(tiny_run).metrics
    table = signal_table(metrics, "separation", "by_true")
    assert list(table.index) == ["layer1", "layer2"]
    assert list(table.columns) == [0, 1, 2, 3]
    assert table.to_numpy().max() <= 1.0
    paths = plot_signals(metrics, tmp_path)
    assert {p.name for p in paths} == {"signals_separation.png", "signals_large_activation.png",
                                       "signals_alignment.png", "dynamics_log.png"}
    for p in paths:
        assert p.read_bytes()[:8] == PNG


def test_a_replay_from_checkpoints_matches_the_live_probe(tiny_run: Path) -> None:
    from noisescope.runs.run import load_run

    order = ["epoch", "tap", "metric", "subset", "index"]
    live = select(load_run(tiny_run).metrics, probe="signals").sort_values(order)
    again = replay(tiny_run, ["signals"]).sort_values(order)
    # same weights, same data, same options -> same numbers (the tracked neuron carries over epochs too)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), live.reset_index(drop=True),
                                  check_exact=False, rtol=1e-5, atol=1e-7)
    stored = select(load_run(tiny_run).metrics, probe="signals")
    assert len(stored) == len(live)  # replaced, not appended
    with pytest.raises(ValueError, match="no checkpoint"):
        replay(tiny_run, ["signals"], epochs=[99])


def test_cli_signals_prints_tables_and_writes_figures(tiny_run: Path, tmp_path: Path) -> None:
    from noisescope.cli import app

    result = CliRunner().invoke(app, ["signals", str(tiny_run), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "separation" in result.output and "layer2" in result.output
    assert (tmp_path / "signals_separation.png").exists()
    bad = CliRunner().invoke(app, ["signals", str(tmp_path / "nope")])
    assert bad.exit_code == 2
