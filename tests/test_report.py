"""The HTML report: every section present with its figures, self-contained, honest about missing
data, the truncation table's spread over seeds, and a real render in headless Chromium."""

from __future__ import annotations

import base64
import copy
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pandas as pd
import pytest
import torch

from noisescope.config import Config
from noisescope.models import build_model
from noisescope.probes import make_probe
from noisescope.probes.dynamics import summarize
from noisescope.report import build_report
from noisescope.report.headline import comparison_rows, headline
from noisescope.report.sections import comparison_table
from noisescope.runs.store import RunStore
from noisescope.training.loop import Trainer

RUN_SECTIONS = ["dynamics", "separation", "large-activation", "alignment", "spectrum", "rank-risk", "truncation"]
FIGURE_SECTIONS = ["dynamics", "separation", "large-activation", "alignment", "spectrum", "rank-risk"]


def make_run(path, data, probes, epochs=4, options=None) -> RunStore:
    """A run directory written by the real trainer (no data pipeline needed)."""
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes, widths=[32, 32])
    store = RunStore(path)
    cfg = Config()
    cfg.train.epochs, cfg.probe.probes, cfg.probe.options = epochs, list(probes), dict(options or {})
    store.write_json("config.json", cfg.to_dict())
    made = [make_probe(p, **(options or {}).get(p, {})) for p in probes]
    Trainer(model, data, cfg.train, probes=made, probe_at=list(range(epochs + 1)),
            store=store, checkpoint_at={epochs}, probe_batch_size=512).fit()
    store.write_json("summary.json", summarize(store.metrics()))
    store.set_status("complete", epochs)
    return store


def sections_of(text: str) -> dict[str, str]:
    """Section id -> its HTML up to the next section start."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<section id="([^"]+)">', text)]
    return {key: text[s: (starts[i + 1][0] if i + 1 < len(starts) else len(text))]
            for i, (s, key) in enumerate(starts)}


def check_self_contained(text: str) -> list[bytes]:
    srcs = re.findall(r'src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:|//)', text) and "<script" not in text and "<link" not in text
    pngs = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    return pngs


def blobs_dataset():
    """The conftest's tiny_noisy data (module-scoped fixtures can't use the function fixture)."""
    from conftest import make_blobs

    from noisescope.data.base import NoisyDataset

    x, y = make_blobs(900, 16, 4, seed=1)
    g = torch.Generator().manual_seed(2)
    y_obs = y.clone()
    flip = torch.rand(900, generator=g) < 0.3
    y_obs[flip] = (y[flip] + torch.randint(1, 4, (int(flip.sum()),), generator=g)) % 4
    return NoisyDataset(x_train=x[:600], y_train=y_obs[:600], y_train_true=y[:600], x_val=x[600:700],
                        y_val=y_obs[600:700], y_val_true=y[600:700], x_test=x[700:], y_test=y[700:],
                        num_classes=4, name="blobs", noise={"model": "symmetric", "rate": 0.3})


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> RunStore:
    """A real run with every probe (dynamics, signals, spectral)."""
    return make_run(tmp_path_factory.mktemp("run") / "run", blobs_dataset(), ["dynamics", "signals", "spectral"],
                    epochs=2, options={"spectral": {"taps": "feature"}})


def test_run_report_every_section_with_figures(full_run, tmp_path):
    out = build_report(full_run.path, tmp_path / "report.html", progress=False)
    text = out.read_text()
    check_self_contained(text)
    secs = sections_of(text)
    for key in RUN_SECTIONS:
        assert key in secs and "Not available" not in secs[key], key
    for key in FIGURE_SECTIONS:
        assert "<img" in secs[key], key
    assert secs["truncation"].count("<tr>") >= 5  # header + final, early stop, truncated final/early, probe
    m = full_run.metrics()
    final = m[(m["probe"] == "dynamics") & (m["subset"] == "test") & (m["metric"] == "acc") & (m["epoch"] == 2)]
    assert f"{float(final['value'].iloc[0]):.3f}" in secs["truncation"]


def test_missing_metrics_are_said_plainly(tiny_noisy, tmp_path):
    from typer.testing import CliRunner

    from noisescope.cli import app

    store = make_run(tmp_path / "run", tiny_noisy, ["dynamics"], epochs=2)
    res = CliRunner().invoke(app, ["report", str(store.path), "--quiet"])
    assert res.exit_code == 0, res.output
    out = store.path / "report.html"
    secs = sections_of(out.read_text())
    assert "<img" in secs["dynamics"] and "Not available" not in secs["dynamics"]
    for key in ("separation", "large-activation", "alignment", "spectrum", "rank-risk"):
        assert "Not available" in secs[key] and "probe.probes" in secs[key], key
    assert "Truncation rows are absent" in secs["truncation"]
    with pytest.raises(FileNotFoundError, match="neither a run"):
        build_report(tmp_path, progress=False)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "is not a directory" in res.output


def _dyn(epoch_vals: dict[str, list[float]]) -> list[dict]:
    rows = []
    for subset, vals in epoch_vals.items():
        rows += [dict(epoch=e, probe="dynamics", tap="", subset=subset, metric="acc", index=-1, value=v)
                 for e, v in enumerate(vals)]
    return rows


def test_comparison_rows_known_answer():
    rows = _dyn({"val": [0.1, 0.5, 0.7, 0.6, 0.55], "test": [0.1, 0.6, 0.8, 0.7, 0.65]})
    for e, (vt, tt, d) in {2: (0.72, 0.81, 5), 4: (0.66, 0.77, 7)}.items():
        common = dict(epoch=e, probe="spectral", tap="fc2", index=-1)
        rows += [dict(common, subset="val", metric="trunc_acc_d_star", value=vt),
                 dict(common, subset="test", metric="trunc_acc_d_star", value=tt),
                 dict(common, subset="val", metric="trunc_d_star", value=d)]
    m = pd.DataFrame(rows)
    got = comparison_rows(m).set_index("method")
    assert list(got.index) == ["final", "early_stop", "truncated_final", "truncated_early"]
    assert got.loc["final", ["epoch", "val_acc", "test_acc"]].tolist() == [4, 0.55, 0.65]
    assert got.loc["early_stop", ["epoch", "val_acc", "test_acc"]].tolist() == [2, 0.7, 0.8]
    assert got.loc["truncated_final", ["epoch", "d", "val_acc", "test_acc"]].tolist() == [4, 7, 0.66, 0.77]
    assert got.loc["truncated_early", ["epoch", "d", "test_acc"]].tolist() == [2, 5, 0.81]
    h = headline(m)
    assert h["final_test_acc"] == 0.65 and h["early_stop_test_acc"] == 0.8 and h["truncated_test_acc"] == 0.77
    # two seeds: mean and sample std
    m2 = m.copy()
    m2.loc[(m2["subset"] == "test") & (m2["epoch"] == 4) & (m2["probe"] == "dynamics"), "value"] = 0.55
    t = comparison_table([comparison_rows(m), comparison_rows(m2)]).set_index("method")
    assert t.loc["final", "n_seeds"] == 2
    assert t.loc["final", "test_acc_mean"] == pytest.approx(0.60)
    assert t.loc["final", "test_acc_std"] == pytest.approx(np.std([0.65, 0.55], ddof=1))


# -- sweeps -------------------------------------------------------------------------------------
def test_swept_values_plot_in_numeric_order():
    from noisescope.report.sweep_sections import axis_order

    assert axis_order(["[256,256]", "[1024,1024]", "[64,64]", "[256,256]"]) == [
        "[64,64]", "[256,256]", "[1024,1024]"]
    assert axis_order([0.4, 0.0, 0.2]) == [0.0, 0.2, 0.4]
    assert axis_order(["vgg", "mlp", "resnet"]) == ["vgg", "mlp", "resnet"]  # as given



@pytest.fixture(scope="module")
def sweep_report(full_run, tmp_path_factory):
    """A 2 noise rates x 2 seeds sweep directory whose runs hold the full run's metrics with
    the accuracies scaled per run (so the seeds differ); the report of it, one run in detail."""
    from test_sweep import BASE

    from noisescope.sweep import sweep_from_dict
    from noisescope.sweep.runner import run_dir, write_manifest

    tmp = tmp_path_factory.mktemp("sweep")
    raw = copy.deepcopy(BASE)
    raw["grid"] = {"noise": {"rate": [0.1, 0.3]}, "train": {"seed": [0, 1]}}
    raw["sweep"] = {"root": str(tmp), "name": "demo"}
    spec = sweep_from_dict(raw)
    write_manifest(spec, spec.directory)
    for i, p in enumerate(spec.points):
        store = RunStore(run_dir(spec.directory, p.id))
        shutil.copytree(full_run.path, store.path)
        store.write_json("config.json", p.config.to_dict())
        m = full_run.metrics()
        acc = m["metric"].isin(["acc", "trunc_acc_d_star", "probe_acc_d_star"])
        m.loc[acc, "value"] *= 1.0 - 0.07 * i
        store.compact(m)  # replaces the copied table (and any parts) with the scaled one
        store.write_json("summary.json", summarize(m))
    return spec, build_report(spec.directory, progress=False, max_runs=1)


def test_sweep_report_sections_and_spread(sweep_report):
    from noisescope.sweep import load_sweep

    spec, out = sweep_report
    text = out.read_text()
    check_self_contained(text)
    secs = sections_of(text)
    for key in ("sweep-runs", "sweep-headline", "sweep-truncation", "runs"):
        assert key in secs and "Not available" not in secs[key], key
    assert "<img" in secs["sweep-headline"]
    run0 = spec.points[0].id
    for key in RUN_SECTIONS:
        assert f"{run0}-{key}" in secs, key
    # the spread over seeds, independently from load_sweep
    df = load_sweep(spec.directory)
    last = df[(df["probe"] == "dynamics") & (df["subset"] == "test") & (df["metric"] == "acc") & (df["epoch"] == 2)]
    for rate, g in last.groupby("noise.rate"):
        frames = [comparison_rows(df[df["run"] == r].drop(columns=["run", "noise.rate", "train.seed"]))
                  for r in g["run"]]
        t = comparison_table(frames).set_index("method")
        assert t.loc["final", "test_acc_mean"] == pytest.approx(g["value"].mean())
        assert t.loc["final", "test_acc_std"] == pytest.approx(g["value"].std(ddof=1))
        assert g["value"].std(ddof=1) > 0.01
        assert f"{g['value'].std(ddof=1):.3f}" in secs["sweep-truncation"], rate


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(sweep_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    _spec, out = sweep_report
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"]
    url = out.resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    html_secs = sections_of(out.read_text())
    dom_secs = sections_of(dom)
    assert set(dom_secs) == set(html_secs)  # Chromium parsed every section
    assert dom.count("<img") == out.read_text().count("<img")
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,3000", url],
                   capture_output=True, timeout=120)
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (3000, 1280)
    # not a blank page: many distinct colours (figures, tables), and dark text on light ground
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200
    assert img[..., :3].min() < 0.2 and np.median(img[..., :3]) > 0.8


@pytest.mark.slow
def test_demo_sweep_report_in_chromium(tmp_path):
    """The real thing: the demo sweep preset (shortened), its report, a Chromium screenshot."""
    from noisescope.sweep import load_sweep_spec, run_sweep

    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    spec = load_sweep_spec("sweep_demo", [f"sweep.root={str(tmp_path)!r}", "train.epochs=4"])
    result = run_sweep(spec)
    assert len(result.ids("complete")) == len(spec.points) == 6
    out = build_report(spec.directory, progress=False, max_runs=3)
    secs = sections_of(out.read_text())
    for key in ("sweep-runs", "sweep-headline", "sweep-truncation"):
        assert "Not available" not in secs[key]
    for key in FIGURE_SECTIONS:
        assert "<img" in secs[f"{spec.points[2].id}-{key}"], key  # noise.rate 0.2, seed 0
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'u'}",
                    f"--screenshot={shot}", "--window-size=1280,2000", out.resolve().as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000
