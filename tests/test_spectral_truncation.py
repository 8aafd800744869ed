"""SpectralTruncation: estimator behaviour, export as a plain module, save/reload."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spectral_data import spiked_noisy
from torch import nn

from noisescope.models import build_model, wrap_model
from noisescope.spectral.analysis import analyse
from noisescope.spectral.export import load_truncated, save_truncated
from noisescope.spectral.truncation import SpectralTruncation


@pytest.fixture(scope="module")
def data():
    return spiked_noisy(n=2000, n_val=800, n_test=800, dim=20, k_star=5, seed=11)


@pytest.fixture(scope="module")
def mlp(data):
    torch.manual_seed(0)
    return build_model("mlp", (20,), 10, widths=[32, 24]).eval()


def test_refit_estimator_equals_the_probe(data):
    res = analyse(None, data, segregation=False)["input"]
    est = SpectralTruncation(head="refit").fit(data.x_train, data.y_train, data.x_val, data.y_val)
    assert est.d_ == res.d_star
    assert np.allclose(est.val_acc_, res.probe_acc("val"))
    assert est.score(data.x_test, data.y_test) == pytest.approx(res.probe_acc("test")[res.at(est.d_)])
    # numpy input works the same
    est2 = SpectralTruncation(head="refit").fit(
        data.x_train.numpy(), data.y_train.numpy(), data.x_val.numpy(), data.y_val.numpy()
    )
    assert est2.d_ == est.d_
    assert torch.equal(est.predict(data.x_test), est2.predict(data.x_test.numpy()))
    assert est.transform(data.x_test).shape == (800, est.d_)


def test_full_d_truncation_returns_the_original_logits(data, mlp):
    est = SpectralTruncation(d=24, head="original").fit_model(mlp, data)
    trunc = est.to_module(mlp)
    with torch.no_grad():
        a, b = trunc(data.x_test), mlp(data.x_test)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_auto_d_picks_best_noisy_validation_accuracy(data, mlp):
    est = SpectralTruncation(head="original").fit_model(mlp, data)
    assert est.val_acc_[est.d_grid_.tolist().index(est.d_)] == est.val_acc_.max()
    # to_module reproduces the estimator's accuracy on the clean test set
    with torch.no_grad():
        pred = est.to_module(mlp)(data.x_test).argmax(1)
    acc = float((pred == data.y_test).double().mean())
    assert acc == pytest.approx(est.test_acc_[est.d_grid_.tolist().index(est.d_)], abs=1.5 / 800)


def test_saved_module_reloads_with_identical_logits(tmp_path, data, mlp):
    est = SpectralTruncation(d=7, head="original").fit_model(mlp, data)
    trunc = est.to_module(mlp)
    spec = {"arch": "mlp", "input_shape": [20], "num_classes": 10, "options": {"widths": [32, 24]}}
    save_truncated(trunc, tmp_path / "t", meta={"model": spec, "head": "original"})
    info = json.loads((tmp_path / "t" / "truncation.json").read_text())
    assert info["d"] == 7 and info["tap"] == "layer2"
    loaded = load_truncated(tmp_path / "t")  # rebuilt from the JSON, no training state
    with torch.no_grad():
        assert torch.equal(loaded(data.x_test), trunc(data.x_test))
    assert not list(tmp_path.glob("t/*.tmp"))


def test_refit_head_on_an_inner_tap_of_a_user_module(tmp_path, data):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10))
    model = wrap_model(net, head="4", taps=["1", "3"])
    est = SpectralTruncation(head="refit").fit_model(model, data, tap="1")
    trunc = est.to_module(model)
    with torch.no_grad():
        feats = torch.tanh(net[0](data.x_test))
        assert torch.allclose(trunc(data.x_test), est.decision_function(feats).float(), atol=1e-4)
    save_truncated(trunc, tmp_path / "u")
    with pytest.raises(ValueError, match="pass model="):
        load_truncated(tmp_path / "u")
    torch.manual_seed(99)
    fresh = wrap_model(
        nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10)),
        head="4", taps=["1", "3"],
    )
    loaded = load_truncated(tmp_path / "u", model=fresh)
    with torch.no_grad():
        assert torch.equal(loaded(data.x_test), trunc(data.x_test))


def test_bad_arguments_say_what_to_do(data, mlp):
    with pytest.raises(ValueError, match="head must be"):
        SpectralTruncation(head="new")
    with pytest.raises(ValueError, match="'auto' or a positive int"):
        SpectralTruncation(d=0)
    with pytest.raises(ValueError, match="noisy-validation"):
        SpectralTruncation(head="refit").fit(data.x_train, data.y_train)
    with pytest.raises(ValueError, match="original_head"):
        SpectralTruncation(d=3).fit(data.x_train, data.y_train)
    with pytest.raises(ValueError, match="head='refit'"):
        SpectralTruncation().fit_model(mlp, data, tap="layer1")
    with pytest.raises(ValueError, match="exceeds"):
        SpectralTruncation(d=99, head="refit").fit(data.x_train, data.y_train)
    with pytest.raises(RuntimeError, match="not fitted"):
        SpectralTruncation().predict(data.x_test)


# ----------------------------------------------------------------------------- truncate's decision
def _flip(base: np.ndarray, win: int, lose: int = 0) -> np.ndarray:
    """b = win, c = lose against ``base``."""
    out = base.copy()
    out[np.flatnonzero(~base)[:win]] = True
    out[np.flatnonzero(base)[:lose]] = False
    return out


def _report(final: np.ndarray, truncated: np.ndarray, early: np.ndarray):
    from types import SimpleNamespace

    from noisescope.evidence.rules import decision_warning, recommend, repair_verdict
    from noisescope.workflows.truncate import TruncationReport

    val = {"final": final, "truncated": truncated, "early_stop": early}
    dec = recommend({k: val[k] for k in ("early_stop", "final", "truncated")})
    return TruncationReport(None, SimpleNamespace(d_=12, head="original"), None, 80, 9, 9,
                            repair_verdict(truncated, final), decision_warning(dec), None, {"val": val}, dec)


def test_truncate_says_what_it_compares_with_and_keeps_early_stopping():
    es = np.random.default_rng(0).permutation(np.arange(1000) < 600)
    final = _flip(es, 0, 160)
    # the digits case: far better than the final model, far below early stopping
    rep = _report(final, _flip(es, 0, 40), es)
    assert rep.comparison_line().startswith("truncation to d=12 (head original): better than the final model "
                                            "(+12.0 points, se")
    assert "; early stopping is better (early_stop 600 vs truncated 560 of 1000 correct, McNemar p=" in \
        rep.comparison_line()
    assert not rep.recommended and rep.verdict_line().startswith("keeping early_stop")
    # within resolution of early stopping: no decision
    rep = _report(final, _flip(es, 10, 4), es)
    assert "within resolution of early stopping (they differ by 6 of 1000" in rep.comparison_line()
    assert rep.verdict_line().startswith("no decision: truncated and early_stop differ by 6 of 1000")
    assert "samples would resolve it" in rep.warning
    # worse than the final model: said so, and no offer of more samples for a difference of the wrong sign
    rep = _report(es, _flip(es, 0, 30), _flip(es, 5))
    assert "not better than the final model (-3.0 points" in rep.comparison_line()
    assert rep.verdict_line().startswith("keeping early_stop") and rep.warning is None
    # better than both: recommended
    rep = _report(final, _flip(es, 60), es)
    assert rep.recommended and "better than early stopping (truncated 660 vs early_stop 600" in rep.comparison_line()


def test_truncate_output_fits_80_columns_without_splitting_a_number_or_word(tmp_path):
    from width80 import assert_fits

    from noisescope.config import from_dict
    from noisescope.runs.lifecycle import run_experiment

    torch.set_num_threads(1)
    cfg = {"data": {"name": "synthetic", "val_fraction": 0.25,
                    "options": {"n_train": 300, "n_test": 200, "dim": 10, "k_star": 3, "num_classes": 3}},
           "noise": {"model": "symmetric", "rate": 0.4}, "model": {"arch": "mlp", "options": {"widths": [16]}},
           "train": {"epochs": 4, "batch_size": 64, "lr": 3e-3, "device": "cpu"},
           "probe": {"schedule": "every", "probes": ["dynamics"]},
           "run": {"root": str(tmp_path), "name": "t", "checkpoint_every": 2}}
    path = run_experiment(from_dict(cfg))
    narrow = assert_fits(["truncate", str(path), "--out", str(tmp_path / "tr")])  # 80 columns vs 1000
    assert len(narrow.splitlines()) < 40
    flat = " ".join(narrow.split())
    assert "than the final model" in flat and "early stop" in flat and "McNemar" in flat
    info = json.loads((tmp_path / "tr" / "truncation.json").read_text())
    assert info["choice"] in ("early_stop", "final", "truncated") and info["decision"]["default"] == "early_stop"
