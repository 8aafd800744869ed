"""The repair leaderboard (`noisescope repair`): every post-hoc repair side by side."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from noisescope.cli import app
from noisescope.config import from_dict
from noisescope.models import build_model
from noisescope.runs.lifecycle import run_experiment
from noisescope.spectral.layerwise import ProjectedModel, TapProjection, fit_layerwise
from noisescope.weights import full_rank, truncate_weights, weight_layers
from noisescope.workflows.repair import _Board, _finish, export_repair, repair_run
from noisescope.workflows.repair_export import COLUMNS, load_repair
from noisescope.workflows.repair_many import aggregate, repair_many

pytestmark = pytest.mark.usefixtures("one_thread")

ROWS = ["final", "early_stop", "feature_trunc:penult", "feature_trunc:best_tap", "feature_trunc:all_layers",
        "weight_trunc:val", "weight_trunc:ww0.8", "refit:ridge", "refit:logistic", "label_free:eigengap",
        "label_free:control_edge", "label_free:mp_edge", "cleaning", "raw_input", "oracle"]


def _config(root, name: str, seed: int = 0) -> dict:
    return {
        "data": {"name": "synthetic", "val_fraction": 0.25,
                 "options": {"n_train": 640, "n_test": 300, "dim": 20, "k_star": 4, "num_classes": 4}},
        "noise": {"model": "symmetric", "rate": 0.4, "seed": seed},
        "model": {"arch": "mlp", "options": {"widths": [24, 16]}},
        "train": {"epochs": 6, "batch_size": 64, "lr": 3e-3, "device": "cpu", "seed": seed},
        "probe": {"schedule": "every", "probes": ["dynamics"]},
        "run": {"root": str(root), "name": name, "checkpoint_every": 2},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("repair")
    return [run_experiment(from_dict(_config(root, f"r{s}", s))) for s in (0, 1)]


@pytest.fixture(scope="module")
def report(runs):
    return repair_run(runs[0], oracle=True)


def test_weight_truncation_at_full_rank_returns_the_original_logits_exactly():
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 5, widths=[32, 16])
    x = torch.randn(50, 1, 8, 8)
    full = {n: full_rank(m) for n, m in weight_layers(model).items()}
    with torch.no_grad():
        assert torch.equal(truncate_weights(model, full)(x), model(x))
        cut = truncate_weights(model, {n: r - 1 for n, r in full.items()})(x)
    assert not torch.equal(cut, model(x))


def test_projecting_every_tap_onto_all_its_directions_keeps_the_predictions(runs):
    from noisescope.runs.run import load_run

    run = load_run(runs[0])
    model = run.model()
    choice = fit_layerwise(model, run.data, strategy="shared", fractions=[1.0])
    assert choice.dims == choice.widths and not choice.module.tap_names
    # a full-width projection is the identity up to float rounding
    from noisescope.spectral.layerwise import _spectra

    spec = _spectra(model, run.data.x_train, ["layer1"], 256, "cpu")["layer1"]
    full = ProjectedModel(model, {"layer1": TapProjection.from_spectrum(spec, spec.dim)})
    with torch.no_grad():
        assert torch.allclose(full(run.data.x_test), model(run.data.x_test), atol=1e-4)
    assert not model._forward_hooks and not model.blocks.layer1._forward_hooks  # no hook left behind


def test_the_leaderboard_has_every_row_with_intervals_and_verdicts(report):
    t = report.table
    assert list(t.columns) == COLUMNS
    assert t["method"].tolist() == ROWS
    measured = t[t.n_test > 0]
    assert set(t.method) - set(measured.method) == {"cleaning"}  # no label_issues.parquet in this run
    assert "label-issues" in t.loc[t.method == "cleaning", "note"].iloc[0]
    assert ((measured.test_low <= measured.test_acc) & (measured.test_acc <= measured.test_high)).all()
    assert ((measured.val_low <= measured.val_acc) & (measured.val_acc <= measured.val_high)).all()
    assert (measured.n_val == len(report.correct["final"]["val"])).all()
    repairs = measured[measured.kind == "repair"]
    assert len(repairs) == len(measured) - 3  # all but final, raw_input and the oracle
    assert repairs.val_gain_se.notna().all()  # the paired gain over the final model, informative
    # every candidate (final, early stopping, the repairs) has its outcome under the rule; the
    # reference and the oracle are no candidates
    cands = measured[measured.kind.isin(["baseline", "repair"])]
    outcomes = {"recommended", "kept", "undecided", "beaten", "not beaten"}
    assert all(v in outcomes or v.startswith("= ") for v in cands.verdict)
    assert set(measured[~measured.kind.isin(["baseline", "repair"])].verdict) == {""}
    assert (cands.verdict.isin(["recommended", "kept"])).sum() == 1
    assert t.loc[t.method == report.recommended, "verdict"].iloc[0] in ("recommended", "kept")
    assert report.decision.default == "early_stop" and report.decision_posthoc.default == "final"
    others = measured[measured.method != "early_stop"]
    assert others.es_p.between(0, 1).all()  # McNemar against early stopping on the clean test set
    assert measured.gap_closed.notna().all()  # the oracle was trained
    assert t.loc[t.method == "oracle", "gap_closed"].iloc[0] == pytest.approx(1.0)
    # d for the label-free rules is compared with the noisy-validation d
    assert "noisy-val d=" in t.loc[t.method == "label_free:eigengap", "choice"].iloc[0]
    # written next to the run
    saved = pd.read_parquet(report.path / "repair.parquet")
    assert saved["method"].tolist() == ROWS
    info = json.loads((report.path / "repair.json").read_text())
    assert info["recommended"] == report.recommended and len(info["rows"]) == len(ROWS)
    assert info["decision"]["line"] == report.verdict_line() and info["decision"]["status"] == report.decision.status
    # the label-free d recorded is the d its row used (the rule's own value beside it)
    for rule, d in info["label_free_d"].items():
        assert t.loc[t.method == f"label_free:{rule}", "d"].iloc[0] == d >= 1
    assert (report.path / "oracle" / "config.json").exists()
    oracle_cfg = json.loads((report.path / "oracle" / "config.json").read_text())
    assert oracle_cfg["noise"]["model"] == "none"


def test_the_exported_module_of_every_repair_kind_reloads_with_identical_outputs(report, runs, tmp_path):
    from noisescope.runs.run import load_run

    x = load_run(runs[0]).data.x_test
    kinds = set()
    for method, module in report.modules.items():
        path = export_repair(report, method, tmp_path / method.replace(":", "_"))
        loaded = load_repair(path)
        kinds.add(type(loaded).__name__)
        with torch.no_grad():
            assert torch.equal(loaded(x), module.eval()(x)), method
    assert {"TruncatedModel", "ProjectedModel", "MLP"} <= kinds
    # the recommended one (early stopping unless a candidate beats every other) was written to RUN/repaired
    rec = load_repair(report.export)
    expect = report.modules[report.recommended]
    with torch.no_grad():
        assert torch.equal(rec(x), expect(x))
    # every export names the epoch its weights come from, not always the final one
    meta = json.loads((export_repair(report, "early_stop", tmp_path / "es") / "network.json").read_text())
    assert meta["source_epoch"] == report.early_epoch and meta["source_run"] == str(report.path)
    meta = json.loads((export_repair(report, "oracle", tmp_path / "or") / "network.json").read_text())
    assert meta["source_run"] == str(report.path / "oracle") and meta["source_epoch"] == report.row("oracle")["epoch"]
    meta = json.loads((export_repair(report, "weight_trunc:val", tmp_path / "wt") / "network.json").read_text())
    assert meta["source_epoch"] == report.final_epoch


def test_the_rule_keeps_early_stopping_unless_a_repair_beats_every_other_candidate(tmp_path):
    n = 1000
    rng = np.random.default_rng(0)
    es = rng.permutation(np.arange(n) < 596)  # early stopping: 596 of 1000 right
    board = _Board(SimpleNamespace(), 64, torch.device("cpu"))

    def flip(base: np.ndarray, win: int, lose: int = 0) -> np.ndarray:  # b = win, c = lose against base
        out = base.copy()
        out[np.flatnonzero(~base)[:win]] = True
        out[np.flatnonzero(base)[:lose]] = False
        return out

    test = rng.random(300) < 0.7
    final = flip(es, 0, 130)
    board.add("final", "baseline", right={"val": final, "test": test})
    board.add("early_stop", "repair", right={"val": es, "test": test})
    # the case: far above the final model (+12.3 points), 602 vs 596 over early stopping
    board.add("feature_trunc:best_tap", "repair", right={"val": flip(es, 10, 4), "test": test}, posthoc=True)
    board.add("raw_input", "reference", right={"val": flip(es, 80), "test": test})  # no candidate
    board.add("oracle", "oracle", note="not measured")
    rep = _finish(SimpleNamespace(path=tmp_path), board, 80, 12, [])
    assert rep.recommended == "early_stop" and rep.decision.status == "no decision"
    assert rep.verdict_line().startswith("no decision: feature_trunc:best_tap and early_stop differ by 6 of 1000 "
                                         "validation samples")
    assert rep.row("feature_trunc:best_tap")["val_gain"] > rep.row("feature_trunc:best_tap")["val_gain_se"]
    assert rep.row("early_stop")["verdict"] == "kept" and rep.row("final")["verdict"] == "beaten"
    assert rep.row("raw_input")["verdict"] == ""  # the raw-input reference is better but not a candidate
    assert "samples would resolve it" in rep.warning
    # among the post-hoc repairs of the converged network the same rule, default the final model
    assert rep.recommended_posthoc == "feature_trunc:best_tap" and rep.decision_posthoc.default == "final"
    # a repair that beats every other candidate is recommended
    board.add("weight_trunc:val", "repair", right={"val": flip(es, 60), "test": test})
    rep = _finish(SimpleNamespace(path=tmp_path), board, 80, 12, [])
    assert rep.recommended == "weight_trunc:val" and rep.decision.status == "recommended"
    assert rep.decision.decisive.second == "feature_trunc:best_tap" and rep.warning is None


def test_the_cli_prints_the_leaderboard_and_aggregates_seeds(runs, report, tmp_path):
    res = CliRunner().invoke(app, ["repair", str(runs[0]), "--out", str(tmp_path / "exp")], terminal_width=250)
    assert res.exit_code == 0, res.output
    for word in ("feature_trunc:all_layers", "weight_trunc:ww0.8", "refit:logistic", "label_free:mp_edge",
                 "oracle", "raw_input", "McNemar"):
        assert word in res.output
    assert (tmp_path / "exp").is_dir()
    out = tmp_path / "agg"
    res = CliRunner().invoke(app, ["repair", str(runs[0]), str(runs[1]), "--reuse", "--out", str(out)],
                             terminal_width=250)
    assert res.exit_code == 0, res.output
    assert "over seeds" in res.output
    agg = pd.read_parquet(out / "repair.parquet")
    assert set(agg.method) == set(ROWS)
    fin = agg[agg.method == "final"].iloc[0]
    assert fin.n_seeds == 2 and np.isfinite(fin.test_sd) and fin.test_low <= fin.test_mean <= fin.test_high
    bad = CliRunner().invoke(app, ["repair", str(tmp_path / "nothing")])
    assert bad.exit_code == 2


def test_aggregate_counts_seeds_that_beat_early_stopping():
    def table(acc: float, p: float, verdict: str = "recommended") -> pd.DataFrame:
        return pd.DataFrame([{**dict.fromkeys(COLUMNS, float("nan")), "method": "x", "kind": "repair",
                              "choice": "d=3", "note": "", "verdict": verdict, "n_test": 100,
                              "test_acc": acc, "val_acc": 0.5, "val_gain": 0.02, "es_p": p, "es_diff": 0.03,
                              "gap_closed": 0.6, "seconds": 1.0}])

    agg = aggregate({"a": table(0.8, 0.01), "b": table(0.82, 0.2, "beaten"), "c": table(0.81, 0.04, "not beaten")})
    r = agg.iloc[0]
    assert r.n_seeds == 3 and r.beats_es == "2/3" and r.verdicts == "1/3"  # chosen by the rule on 1 seed of 3
    assert r.test_mean == pytest.approx(0.81) and r.gap_closed_mean == pytest.approx(0.6)


def test_repair_many_reads_a_sweep_directory_layout(runs, report, tmp_path):
    import shutil

    sweep = tmp_path / "sweep"
    for r in runs:
        shutil.copytree(r, sweep / "runs" / r.name)
    tables, groups = repair_many([sweep], reuse=True)
    assert len(tables) == 2 and len(groups) == 1  # the two runs differ only in their seeds


def test_the_report_section_shows_the_leaderboard_or_names_the_command(report, tmp_path):
    from noisescope.report.html import render_page
    from noisescope.report.repair_section import repair_section

    sec = repair_section(report.path, tmp_path)
    assert not sec.missing and sec.tables and "feature_trunc:all_layers" in sec.tables[0]
    assert "McNemar" in sec.blurb
    page = render_page("t", [], [sec])
    assert "label-issues" in page  # the cleaning row says which command measures it
    empty = repair_section(tmp_path, tmp_path)
    assert "noisescope repair" in empty.missing and not empty.tables


# ----------------------------------------------------------------------------- 80 columns
def _render(print_fn, width: int, monkeypatch) -> str:
    from rich.console import Console

    import noisescope.cli.repair as cli_repair

    con = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    monkeypatch.setattr(cli_repair, "console", con)
    print_fn()
    return con.export_text()


def test_repair_output_fits_80_columns_without_splitting_a_number_or_word(report, monkeypatch):
    from width80 import problems

    import noisescope.cli.repair as cli_repair
    from noisescope.workflows.repair_many import aggregate

    agg = aggregate({"a": report.table, "b": report.table})
    for show in (lambda: cli_repair._print_report(report),
                 lambda: cli_repair.console.print(cli_repair.aggregate_table(agg, "over seeds: x"))):
        narrow, wide = _render(show, 80, monkeypatch), _render(show, 1000, monkeypatch)
        # no line over 80 columns, no cut cell, every word and number of the unwrapped output whole
        assert not problems(narrow, wide), "\n".join(problems(narrow, wide)) + "\n" + narrow
    text = _render(lambda: cli_repair._print_report(report), 80, monkeypatch)
    assert len(text.splitlines()) < 40 and report.verdict_line().split()[0] in text
    for method in ROWS:
        assert method in text
    # the check can fail: every column (--wide) does not fit 80 columns, and folds
    show = lambda: cli_repair._print_report(report, wide=True)  # noqa: E731
    assert problems(_render(show, 80, monkeypatch), _render(show, 1000, monkeypatch))


def test_the_imports_of_docs_repair_md_work():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "repair.md").read_text()
    lines = [ln for block in re.findall(r"```python\n(.*?)```", doc, re.S) for ln in block.splitlines()
             if ln.startswith(("from noisescope", "import noisescope"))]
    assert len(lines) >= 2
    exec("\n".join(lines), {})  # noqa: S102 - the repository's own documentation


def test_the_repair_command_fits_80_columns_end_to_end(runs, report, tmp_path):
    from width80 import assert_fits

    text = assert_fits(["repair", str(runs[0]), "--no-export"])
    assert "early_stop" in text and ("keeping" in text or "recommended" in text)
    repair_run(runs[1], export=False)  # stored leaderboards of both seeds, then their aggregate
    text = assert_fits(["repair", str(runs[0]), str(runs[1]), "--reuse", "--out", str(tmp_path / "agg")])
    assert "over seeds" in text and "chosen" in text
