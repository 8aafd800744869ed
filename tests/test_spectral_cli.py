"""The spectral tools on a stored run: probe during training, `noisescope probe`, `noisescope truncate`."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from noisescope.cli import app
from noisescope.config import from_dict
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.run import load_run
from noisescope.spectral.export import load_truncated
from noisescope.workflows.truncate import resolve_target, truncate_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = from_dict({
        "data": {"name": "synthetic", "val_fraction": 0.2,
                 "options": {"n_train": 700, "n_test": 300, "dim": 20, "k_star": 4, "num_classes": 4}},
        "noise": {"model": "symmetric", "rate": 0.4},
        "model": {"arch": "mlp", "options": {"widths": [24, 16]}},
        "train": {"epochs": 4, "batch_size": 64, "lr": 3e-3, "device": "cpu"},
        "probe": {"schedule": "every_k", "every": 2, "probes": ["dynamics", "spectral"],
                  "options": {"spectral": {"d_grid": [1, 2, 4, 8, 16, 24]}}},
        "run": {"root": str(root), "name": "spec", "checkpoint_every": 2},
    })
    return run_experiment(cfg)


def test_spectral_probe_runs_on_the_training_schedule(run_dir):
    m = load_run(run_dir).metrics
    spec = m[m.probe == "spectral"]
    assert sorted(spec.epoch.unique()) == [0, 2, 4]
    assert set(spec.tap) == {"layer1", "layer2", "input"}
    # the raw-input reference: once, at epoch 0, only d* and the probe accuracy at d*
    ref = spec[spec.tap == "input"]
    assert set(ref.epoch) == {0} and set(ref.metric) == {"d_star", "probe_acc_d_star"}
    assert len(spec[(spec.metric == "eigval") & (spec.tap == "layer2") & (spec.epoch == 4)]) == 16


def test_cli_probe_recomputes_the_stored_rows(run_dir):
    before = load_run(run_dir).metrics
    res = CliRunner().invoke(app, ["probe", str(run_dir), "--epochs", "4", "--d-max", "24"])
    assert res.exit_code == 0, res.output
    assert "spectral probe" in res.output
    after = load_run(run_dir).metrics
    old = before[(before.probe == "spectral") & (before.epoch == 4) & (before.metric == "eigval")]
    new = after[(after.probe == "spectral") & (after.epoch == 4) & (after.metric == "eigval")]
    assert len(new) == len(old)  # replaced, not duplicated
    assert torch.allclose(torch.tensor(new["value"].to_numpy()), torch.tensor(old["value"].to_numpy()))
    assert len(after[after.probe == "dynamics"]) == len(before[before.probe == "dynamics"])
    assert (run_dir / "figures" / "spectral_effective_rank.png").exists()
    bad = CliRunner().invoke(app, ["probe", str(run_dir), "--epochs", "3"])
    assert bad.exit_code == 2 and "saved epochs" in bad.output


def test_cli_truncate_prints_comparison_and_writes_module(run_dir, tmp_path):
    out = tmp_path / "trunc"
    res = CliRunner().invoke(app, ["truncate", str(run_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    for word in ("final", "truncated_final", "early_stop", "raw_input", "probe_best_tap"):
        assert word in res.output
    info = json.loads((out / "truncation.json").read_text())
    assert info["model"]["arch"] == "mlp" and info["source_epoch"] == 4
    run = load_run(run_dir)
    model = load_truncated(out)  # rebuilt from the JSON alone
    with torch.no_grad():
        logits = model(run.data.x_test)
    acc = float((logits.argmax(1) == run.data.y_test).double().mean())
    assert acc == pytest.approx(info["test_acc"], abs=1.5 / len(run.data.y_test))


def test_truncate_accepts_a_checkpoint_file(run_dir, tmp_path):
    ckpt = run_dir / "checkpoints" / "epoch_0002.safetensors"
    assert resolve_target(ckpt) == (run_dir, 2)
    rep = truncate_run(ckpt, tmp_path / "t2", head="refit", d=3, early=False, raw_input=False)
    assert rep.final_epoch == 2 and rep.estimator.d_ == 3
    assert "early_stop" not in set(rep.comparison.method)
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        resolve_target(tmp_path)
