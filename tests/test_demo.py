"""``noisescope demo``: after training it finds the wrong labels and the model to use, the
report has no empty section, and the terminal ends with three lines of at most 80 columns.

The shortened demo (tiny subset and network) runs in the default suite; the real one, with a
Chromium screenshot of its report, is slow. ``NOISESCOPE_DEMO_RUN=runs/demo-...`` makes the slow
test read an existing demo run instead of training one; ``NOISESCOPE_UPDATE_SCREENSHOT=1`` copies
its screenshot to docs/report_screenshot.png (the README's)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from noisescope.cli import app
from noisescope.cli.demo import labels_line, model_line, retrain_epochs
from noisescope.detect import evaluate_scores
from noisescope.evidence.rules import recommend

ROOT = Path(__file__).resolve().parents[1]
LONG = "feature_trunc:all_layers"


def _correct(n: int, k: int, seed: int) -> np.ndarray:
    v = np.zeros(n, dtype=bool)
    v[np.random.default_rng(seed).choice(n, k, replace=False)] = True
    return v


def _table(accs: dict[str, float], n_test: int = 10000) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "test_acc": a, "n_test": n_test} for m, a in accs.items()])


def _no_split(line: str) -> None:
    assert len(line) <= 80, line
    assert "…" not in line and "\n" not in line


def test_retrain_epochs_rule():
    assert retrain_epochs(50, 8) == 16  # twice the early-stopping epoch
    assert retrain_epochs(50, 3) == 10  # at least 10
    assert retrain_epochs(12, 8) == 12  # never more than the run
    assert retrain_epochs(50, None) == 50  # no early stop: the full length


def test_reduced_note_says_what_was_cut_and_how_to_run_it_in_full():
    from noisescope.cli.demo import reduced_note

    note = reduced_note({"epochs": 50, "retrain_epochs": 16, "early_stop_epoch": 8})
    assert "trained for 16 epochs (twice the run's early-stopping epoch 8, at least 10) instead of the run's 50" in note
    assert "noisescope repair RUN --clean remove --oracle" in note
    assert "full 12 epochs" in reduced_note({"epochs": 12, "retrain_epochs": 12, "early_stop_epoch": 8})


def test_model_line_recommended_names_the_closest_win():
    es = _correct(1000, 600, 0)
    better = es.copy()
    better[np.flatnonzero(~es)[:80]] = True  # 80 more right, none lost: beats early_stop clearly
    close = es.copy()
    close[np.flatnonzero(~es)[:60]] = True
    dec = recommend({"early_stop": es, "cleaning": better, LONG: close}, default="early_stop")
    assert dec.status == "recommended" and dec.choice == "cleaning"
    line = model_line(dec, _table({"early_stop": 0.80, "cleaning": 0.8421, LONG: 0.81}))
    _no_split(line)
    assert line.startswith(("best", "use cleaning")) and "cleaning" in line
    assert "0.842 [0.835, 0.849] n=10000" in line  # Wilson interval of 8421 / 10000
    assert f"closest {LONG}" in line or f"beats {LONG}" in line or "use cleaning 0.842" in line
    assert f"{LONG} (" in line or f"vs {LONG} p=" in line  # the closest win decides


def test_model_line_no_decision_keeps_early_stopping():
    es = _correct(1000, 600, 1)
    one_more = es.copy()
    one_more[np.flatnonzero(~es)[0]] = True  # a one-sample margin: within resolution
    dec = recommend({"early_stop": es, LONG: one_more}, default="early_stop")
    assert dec.status == "no decision"
    line = model_line(dec, _table({"early_stop": 0.8, LONG: 0.79}))
    _no_split(line)
    assert line.startswith(("best model: early_stop", "best: early_stop", "kept early_stop"))
    assert ("no decision" in line or line.startswith("kept")) and LONG in line and "p=1" in line
    assert "0.800 [0.792, 0.808] n=10000" in line


def test_model_line_default_best():
    es = _correct(1000, 700, 2)
    worse = es.copy()
    worse[np.flatnonzero(es)[:50]] = False
    dec = recommend({"early_stop": es, "final": worse}, default="early_stop")
    line = model_line(dec, _table({"early_stop": 0.8, "final": 0.6}))
    _no_split(line)
    assert "early_stop" in line and "final not better" in line


def test_labels_line_scores_the_default_ranking_against_the_mask():
    mask = np.zeros(100, dtype=bool)
    mask[:40] = True
    scores = np.where(mask, 1.0, 0.0) + np.linspace(0, 0.5, 100)  # perfect ranking
    flags = np.zeros(100, dtype=bool)
    flags[:30] = True  # 30 flagged, all noisy: precision 1, recall 0.75
    ev = evaluate_scores({"consensus": scores}, mask, flagged={"consensus": flags})
    labels = SimpleNamespace(info={"settings": {"rank_by": "consensus"}}, flags={"consensus": flags}, evaluation=ev)
    line = labels_line(labels)
    _no_split(line)
    assert line.startswith("30 of 100 labels flagged")
    assert "AUROC 1.000" in line and "precision 1.00" in line and "recall 0.75" in line
    no_mask = SimpleNamespace(info={"settings": {"rank_by": "consensus"}}, flags={"consensus": flags},
                              evaluation=None)
    assert "no known noise mask" in labels_line(no_mask)


def _sections(text: str) -> dict[str, str]:
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<section id="([^"]+)">', text)]
    return {key: text[s: (starts[i + 1][0] if i + 1 < len(starts) else len(text))]
            for i, (s, key) in enumerate(starts)}


def check_demo_output(run: Path, stdout: str) -> dict[str, str]:
    """The demo's report has every section filled; the terminal ends with the three lines."""
    last = [ln for ln in stdout.splitlines() if ln.strip()][-3:]
    assert last[0].startswith(("best", "use ", "keep ", "kept ")), last
    assert " labels flagged" in last[1] and "AUROC" in last[1], last
    assert last[2] == f"report: {run / 'report.html'}", last
    for line in last[:2]:
        _no_split(line)
    text = (run / "report.html").read_text()
    secs = _sections(text)
    for key in ("conclusion", "scorecard", "dynamics", "separation", "large-activation", "alignment", "spectrum",
                "rank-risk", "truncation", "label-issues", "repair", "config"):
        assert key in secs, key
    assert "Not available" not in text
    assert "<img" in secs["label-issues"]  # the top suspects' thumbnails
    for method in ("early_stop", "feature_trunc:penult", "cleaning", "oracle"):
        assert f"<td>{method}" in secs["repair"], method
    assert last[0] in secs["conclusion"] and last[1] in secs["conclusion"]
    for sub in ("oracle", "cleaned"):
        assert (run / sub).is_dir()
    return secs


def test_shortened_demo_fills_every_section(tmp_path):
    """The whole demo on 600 training and 1000 test samples of the embedded subset, a 2x32 MLP,
    4 epochs (the same code path as `make demo`)."""
    overrides = ["--set", "data.subset=600", "--set", "data.options={source='embedded', test_subset=1000}",
                 "--set", "model.options={widths=[32, 32]}"]
    res = CliRunner().invoke(app, ["demo", "--root", str(tmp_path), "--epochs", "4", *overrides],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    run = tmp_path / "demo-fmnist-sym40-mlp3x512"
    check_demo_output(run, res.output)
    info = __import__("json").loads((run / "demo.json").read_text())
    assert info["retrain_epochs"] == 4 and not info["reduced"]  # max(10, 2 ES) capped at the run's 4


def test_demo_rejects_bad_retrain_epochs(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--root", str(tmp_path), "--retrain-epochs", "0"])
    assert res.exit_code == 2 and "--retrain-epochs" in res.output
    assert not any(tmp_path.iterdir())


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def page_screenshot(browser: str, html: Path, out: Path, tmp: Path, height: int = 16000, columns: int = 4) -> Path:
    """A screenshot of the whole page (headless Chromium, 1280 px wide), its blank bottom cut,
    laid out in ``columns`` side by side and halved: every section in one picture."""
    from matplotlib.image import imread, imsave

    raw = tmp / "page.png"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tempfile.mkdtemp(dir=tmp)}"]
    subprocess.run([*flags, f"--screenshot={raw}", f"--window-size=1280,{height}", html.resolve().as_uri()],
                   capture_output=True, timeout=180, check=False)
    img = imread(raw)[..., :3]
    bg = img[-1, -1]
    rows = np.flatnonzero(np.abs(img - bg).max(axis=(1, 2)) > 0.02)
    img = img[: int(rows.max()) + 24] if len(rows) else img
    step = -(-img.shape[0] // columns)
    pad = np.ones((step * columns - img.shape[0], img.shape[1], 3), dtype=img.dtype) * bg
    cols = np.split(np.concatenate([img, pad]), columns)
    gap = np.ones((step, 16, 3), dtype=img.dtype) * 0.8
    tiled = np.concatenate([c for col in cols for c in (col, gap)][:-1], axis=1)
    h, w = tiled.shape[0] // 2 * 2, tiled.shape[1] // 2 * 2
    half = tiled[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    imsave(out, np.clip(half, 0, 1))
    return out


@pytest.mark.slow
def test_full_demo_report_in_chromium(tmp_path):
    """`noisescope demo` as `make demo` runs it (or the run named by NOISESCOPE_DEMO_RUN), its
    report without an empty section, and a Chromium screenshot of every section."""
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    existing = os.environ.get("NOISESCOPE_DEMO_RUN")
    if existing:
        run = Path(existing).resolve()
        info = __import__("json").loads((run / "demo.json").read_text())
        stdout = "\n".join([*info["lines"], f"report: {run / 'report.html'}"])
        run_rel = run
    else:
        res = CliRunner().invoke(app, ["demo", "--root", str(tmp_path)], env={"COLUMNS": "80"})
        assert res.exit_code == 0, res.output
        run_rel = tmp_path / "demo-fmnist-sym40-mlp3x512"
        stdout, run = res.output, run_rel
    check_demo_output(run_rel, stdout)
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--dump-dom",
                          (run / "report.html").as_uri()], capture_output=True, text=True, timeout=180).stdout
    assert set(_sections(dom)) == set(_sections((run / "report.html").read_text()))
    assert "Not available" not in dom
    shot = page_screenshot(browser, run / "report.html", tmp_path / "report_screenshot.png", tmp_path)
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[1] > 2000 and len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 200
    if os.environ.get("NOISESCOPE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "report_screenshot.png")
