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
    from noisescope.workflows.methods_board import board

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


@pytest.mark.parametrize(("args", "says"), [([], "--root"), (["--root", "/nonexistent/dir"], "not a directory"),
                                            (["/nonexistent/run"], "not a noisescope run"),
                                            (["RUNS/ce", "RUNS/ce"], "one run per method"),
                                            (["RUNS/gce"], "cross-entropy"),
                                            (["RUNS/ce", "RUNS/empty"], "no checkpoints")])
def test_methods_bad_input_is_one_line_and_exit_2(runs: Path, args: list[str], says: str, tmp_path: Path) -> None:
    if "RUNS/empty" in args:  # a run directory before its first epoch: config, no checkpoint
        import shutil

        shutil.copytree(runs / "gce", tmp_path / "empty", ignore=shutil.ignore_patterns("checkpoints"))
        args = [a.replace("RUNS/empty", str(tmp_path / "empty")) for a in args]
    args = [a.replace("RUNS", str(runs)) for a in args]
    out = render(["methods", *args], exit_code=2)
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], out


# -- the report section (report/methods_section.py) -------------------------------------------
def test_method_curves_are_the_recorded_curves_and_their_mean(runs: Path, tmp_path: Path) -> None:
    from noisescope.metrics import dynamics_curve
    from noisescope.report.methods_section import method_curves, methods_section, tail_curve
    from noisescope.runs.run import load_run

    ce, gce = load_run(runs / "ce").metrics, load_run(runs / "gce").metrics
    curves = method_curves({("ce", ""): [ce], ("both", ""): [ce, gce]}).set_index(["method", "curve", "epoch"])["value"]
    mem_ce, mem_gce = dynamics_curve(ce, "noisy_train_obs"), dynamics_curve(gce, "noisy_train_obs")
    for e in mem_ce.index:
        assert curves[("ce", "memorized", e)] == pytest.approx(mem_ce[e])
        assert curves[("both", "memorized", e)] == pytest.approx((mem_ce[e] + mem_gce[e]) / 2)
    # the spectral probe ran on ce only: its tail curves are there, noisy and clean; gce has none
    tail = tail_curve(ce, "noisy_train_true")
    assert len(tail) and ("ce", "tail_noisy", int(tail.index[-1])) in curves.index
    assert tail_curve(gce, "noisy_train_true").empty
    sec = methods_section({("ce", ""): [ce], ("gce", ""): [gce]}, tmp_path, n_test=2000)
    assert not sec.missing and len(sec.figures) == 1 and sec.figures[0].png[:4] == b"\x89PNG"
    assert "n=2000" in sec.figures[0].caption and "tail fraction" in sec.figures[0].caption
    # two noise settings: one row of panels each, the oracle ("" noise) drawn in both
    two = method_curves({("ce", "a"): [ce], ("gce", "b"): [gce], ("oracle", ""): [gce]})
    assert set(two["noise"]) == {"a", "b", ""}
    assert methods_section({("ce", "a"): [ce], ("gce", "b"): [gce], ("oracle", ""): [gce]}, tmp_path).figures
    no_tail = methods_section({("gce", ""): [gce]}, tmp_path)
    assert "no tail panel" in no_tail.figures[0].caption
    empty = methods_section({("x", ""): [ce.iloc[:0]]}, tmp_path)
    assert empty.missing and not empty.figures


def test_a_sweep_over_train_method_reports_the_methods_side_by_side(tmp_path: Path) -> None:
    import copy

    from test_sweep import BASE

    from noisescope.report import build_report
    from noisescope.sweep import sweep_from_dict
    from noisescope.sweep.runner import run_sweep

    raw = copy.deepcopy(BASE)
    raw["grid"] = {"train": {"method": ["ce", "gce"]}}
    raw["sweep"] = {"root": str(tmp_path), "name": "m", "pack": False}
    spec = sweep_from_dict(raw)
    run_sweep(spec)
    page = build_report(spec.directory, progress=False, max_runs=0).read_text()
    assert "Training methods side by side" in page and "where each method" not in page  # figure, not text
    sec = page[page.index('<section id="methods">'):]
    assert "<img" in sec[:sec.index("</section>")]
    # one method only: no methods section
    raw["grid"] = {"train": {"seed": [0, 1]}}
    raw["sweep"]["name"] = "one"
    spec = sweep_from_dict(raw)
    run_sweep(spec)
    assert "Training methods side by side" not in build_report(spec.directory, progress=False, max_runs=0).read_text()


def test_methods_html_page_has_the_table_and_the_curves(runs: Path, tmp_path: Path) -> None:
    page = tmp_path / "methods.html"
    out = render(["methods", str(runs / "ce"), str(runs / "gce"), "--html", str(page)])
    assert f"report: {page}" in out.replace("\n", "")
    text = page.read_text()
    assert "Training methods against early stopping" in text and "Training methods side by side" in text
    assert "<img" in text and "gce" in text and "recommended" in text


def test_the_widest_group_table_fits_80_columns() -> None:
    """The longest method name, a vanishing p, a large negative gap and measured compute."""
    import io

    import pandas as pd
    from rich.console import Console
    from width80 import problems

    from noisescope.cli.methods import group_table
    from noisescope.workflows.methods_board import COLUMNS

    def row(method: str, acc: float, p: float, gap: float, comp: float) -> dict:
        r = dict.fromkeys(COLUMNS, 0.0)
        r.update(method=method, test_acc=acc, test_low=acc - 0.01, test_high=acc + 0.01, n_test=10000, es_p=p,
                 gap_closed=gap, memorized=0.84, compute=comp, compute_nominal=12.0)
        return r

    g = pd.DataFrame([row("early_stop", 0.82, 1.0, 0.0, 1.0), row("bootstrap_hard", 0.633, 1e-312, -15.32, 12.34),
                      row("coteaching", 0.816, 0.2, -0.12, 2.5)], columns=COLUMNS)

    def text(width: int) -> str:
        con = Console(width=width, file=io.StringIO(), record=True, color_system=None)
        con.print(group_table(g, "sym40 noise, seed 0", "early_stop", measured=True))
        return con.export_text()

    narrow = text(80)
    assert problems(narrow, text(1000)) == [], narrow
    assert "<1e-4" in narrow and "-15.32" in narrow and "12x (12.3)" in narrow
