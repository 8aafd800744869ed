"""``noisescope methods`` (cli/methods.py) and the methods report section
(report/methods_section.py) on tiny runs: synthetic data, 3 epochs, cross-entropy, GCE and
the clean-label oracle."""

from __future__ import annotations

from pathlib import Path

import pytest
from width80 import assert_fits, render

from noisescope.config import load_config
from noisescope.runs.lifecycle import run_experiment


def _cfg(root: Path, name: str, method: str = "ce", noise: str = "symmetric", seed: int = 0,
         probes: str = '["dynamics"]') -> object:
    sets = ["data.options={n = 400, dim = 20, k_star = 4, num_classes = 5}", "model.options={widths = [32, 32]}",
            "train.epochs=3", "train.batch_size=64", 'train.device="cpu"', f'train.method="{method}"',
            f"train.seed={seed}", f"noise.seed={seed}", f'run.root="{root}"', f'run.name="{name}"',
            f"probe.probes={probes}"]
    if noise == "none":
        sets += ['noise.model="none"', "noise.rate=0.0"]
    return load_config("synthetic_demo", sets)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("methods")
    run_experiment(_cfg(root, "ce", probes='["dynamics", "spectral"]'))
    run_experiment(_cfg(root, "gce", method="gce"))
    run_experiment(_cfg(root, "oracle", noise="none"))
    return root


def test_methods_table_fits_80_columns_and_names_every_method(runs: Path) -> None:
    out = assert_fits(["methods", str(runs / "ce"), str(runs / "gce"), str(runs / "oracle")])
    assert "symmetric40 noise, seed 0" in out
    for name in ("early_stop", "final", "gce", "oracle", "n=", "recommended:"):
        assert name in out, out
    # the baseline against itself: no McNemar, gap closed 0 by definition
    es_line = next(line for line in out.splitlines() if line.startswith("early_stop"))
    assert " 0.00 " in es_line + " ", es_line
    # the oracle closes the whole gap (1.00) when it is better than early stopping
    from noisescope.cli.methods import timings_of
    from noisescope.runs.methods_board import board

    table, _s, _c, dec = board(runs, timings=timings_of([runs / "ce", runs / "gce", runs / "oracle"]),
                               export=False)
    assert not (runs / "recommended").exists()  # export=False writes nothing
    orc = table[table.method == "oracle"].iloc[0]
    es = table[table.method == "early_stop"].iloc[0]
    if orc.test_acc > es.test_acc:
        assert orc.gap_closed == pytest.approx(1.0)
    assert dec["symmetric40-s0"]["choice"] in {"early_stop", "final", "gce"}
    assert f"recommended: {dec['symmetric40-s0']['choice']}" in out
    # Wilson interval printed for the baseline: "acc [low, high]" with low <= acc <= high
    acc, low, high = es.test_acc, es.test_low, es.test_high
    assert low <= acc <= high and f"{acc:.3f} [{low:.3f}, {high:.3f}]" in es_line


def test_methods_root_finds_the_runs_in_a_directory(runs: Path) -> None:
    out = render(["methods", "--root", str(runs)])
    assert "gce" in out and "oracle" in out


@pytest.mark.parametrize("args", [[], ["--root", "/nonexistent/dir"], ["/nonexistent/run"],
                                  ["RUNS/ce", "RUNS/ce"], ["RUNS/gce"]])
def test_methods_bad_input_is_one_line_and_exit_2(runs: Path, args: list[str]) -> None:
    args = [a.replace("RUNS", str(runs)) for a in args]
    out = render(["methods", *args], exit_code=2)
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
