"""SpectralProbe rows, the truncation comparison, and the figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from spectral_data import spiked_noisy

from noisescope.evaluate import model_accuracy
from noisescope.metrics import rows_to_frame
from noisescope.models import build_model
from noisescope.probes import make_probe
from noisescope.probes.base import ProbeContext
from noisescope.report.spectral_figures import plot_all
from noisescope.spectral.analysis import analyse
from noisescope.spectral.compare import compare_truncation, summarize_seeds
from noisescope.spectral.rank import effective_rank


@pytest.fixture(scope="module")
def data():
    return spiked_noisy(n=2000, n_val=1000, n_test=1000, dim=24, k_star=6, seed=3)


@pytest.fixture(scope="module")
def model(data):
    torch.manual_seed(0)
    m = build_model("mlp", (24,), 10, widths=[48, 32])
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(30):  # memorize a little
        for s in range(0, 2000, 250):
            loss = torch.nn.functional.cross_entropy(m(data.x_train[s : s + 250]), data.y_train[s : s + 250])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return m.eval()


def test_probe_rows_follow_the_schema_and_the_analysis(data, model):
    probe = make_probe("spectral", d_grid=[1, 2, 4, 6, 8, 16, 32, 48])
    rows = probe(model, data, ProbeContext(epoch=3))
    frame = rows_to_frame(rows)
    assert set(frame["probe"]) == {"spectral"} and set(frame["epoch"]) == {3}
    assert set(frame["tap"]) == {"layer1", "layer2"}
    eig = frame[(frame.metric == "eigval") & (frame.tap == "layer1")]
    assert list(eig["index"]) == list(range(1, 49))
    res = analyse(model, data, "auto", d_grid=[1, 2, 4, 6, 8, 16, 32, 48])
    for tap, r in res.items():
        sel = frame[frame.tap == tap]
        assert sel[sel.metric == "d_star"]["value"].item() == r.d_star
        er = sel[sel.metric == "effective_rank"]["value"].item()
        assert er == pytest.approx(effective_rank(r.spectrum.eigvals))
        acc = sel[(sel.metric == "probe_acc") & (sel.subset == "test")].sort_values("index")
        assert np.allclose(acc["value"], r.probe_acc("test"))
        seg = sel[sel.metric == "segregation"]["value"].item()
        tails = sel[sel.metric == "tail_fraction"].set_index("subset")["value"]
        assert seg == pytest.approx(tails["noisy_train_true"] - tails["clean_train"])
    # the original-head truncation rows exist only on the penultimate tap
    assert set(frame[frame.metric == "trunc_acc"]["tap"]) == {"layer2"}
    # same model, same data: identical numbers
    again = rows_to_frame(probe(model, data, ProbeContext(epoch=3)))
    pd.testing.assert_frame_equal(frame, again)


def test_truncation_at_full_width_matches_the_model_in_the_rows(data, model):
    rows = rows_to_frame(make_probe("spectral", taps="feature")(model, data, ProbeContext(epoch=1)))
    full = rows[(rows.metric == "trunc_acc") & (rows["index"] == 32)].set_index("subset")["value"]
    val, test = model_accuracy(model, data)
    assert full["val"] == pytest.approx(val, abs=1.5e-3)
    assert full["test"] == pytest.approx(test, abs=1.5e-3)


def test_comparison_table(data, model):
    df = compare_truncation(model, data, early=model, final_epoch=30, early_epoch=30)
    methods = list(df["method"])
    assert methods[:4] == ["final", "truncated_final", "early_stop", "truncated_early"]
    assert {"probe:layer1", "probe:layer2", "probe_best_tap", "raw_input"} <= set(methods)
    by = df.set_index("method")
    val, test = model_accuracy(model, data)
    assert by.loc["final", "test_acc"] == pytest.approx(test)
    assert by.loc["truncated_final", "test_acc"] == by.loc["truncated_early", "test_acc"]
    probes = df[df.method.str.startswith("probe:")]
    assert by.loc["probe_best_tap", "val_acc"] == probes["val_acc"].max()
    raw = analyse(None, data, segregation=False)["input"]
    assert by.loc["raw_input", "d"] == raw.d_star
    assert by.loc["raw_input", "test_acc"] == raw.probe_acc("test")[raw.at(raw.d_star)]


def test_summarize_seeds_known_answer():
    f1 = pd.DataFrame({"method": ["final", "truncated_final"], "epoch": [9, 9], "tap": ["a", "a"],
                       "d": [32, 4], "val_acc": [0.5, 0.6], "test_acc": [0.5, 0.8]})
    f2 = f1.assign(test_acc=[0.7, 0.8], d=[32, 6])
    s = summarize_seeds([f1, f2]).set_index("method")
    assert s.loc["final", "test_acc_mean"] == pytest.approx(0.6)
    assert s.loc["final", "test_acc_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert s.loc["truncated_final", "test_acc_std"] == 0.0
    assert s.loc["truncated_final", "d_mean"] == 5.0
    assert list(s.index) == ["final", "truncated_final"]
    with pytest.raises(ValueError):
        summarize_seeds([])


def test_figures_are_written(tmp_path, data, model):
    probe = make_probe("spectral", d_grid=[1, 2, 4, 8, 16, 32])
    rows = []
    for epoch in (0, 5):
        rows += probe(model, data, ProbeContext(epoch=epoch))
    paths = plot_all(rows_to_frame(rows), tmp_path)
    assert len(paths) == 5
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="spectral"):
        plot_all(rows_to_frame([]), tmp_path)


def test_too_wide_tap_is_a_clear_error(data, model):
    with pytest.raises(ValueError, match="max_dim"):
        analyse(model, data, ["layer1"], max_dim=16)
    with pytest.warns(UserWarning, match="skipping tap 'layer1'"):
        res = analyse(model, data, "auto", max_dim=40, segregation=False)
    assert list(res) == ["layer2"]


def test_streamed_batches_do_not_change_the_answer(data, model):
    a = analyse(model, data, "auto", batch_size=97, segregation=True)
    b = analyse(model, data, "auto", batch_size=4096, segregation=True)
    for tap in a:
        assert torch.equal(a[tap].probe_correct["test"], b[tap].probe_correct["test"])
        assert torch.allclose(a[tap].spectrum.eigvals, b[tap].spectrum.eigvals, rtol=1e-9, atol=1e-12)
        assert np.allclose(a[tap].tail_noisy, b[tap].tail_noisy, rtol=1e-9)
