"""The weights probe writes the weight spectra of every layer on the probe schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noisescope.config import load_config
from noisescope.metrics import select
from noisescope.models.mlp import build_mlp
from noisescope.probes import ProbeContext, make_probe
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.run import load_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_singular_values_in_the_rows_equal_numpys_svd_of_each_layer(tiny_noisy):
    torch.manual_seed(0)
    model = build_mlp((16,), 4, widths=[32, 24])
    rows = make_probe("weights", max_sv=None)(model, tiny_noisy, ProbeContext(epoch=3))
    assert {r.probe for r in rows} == {"weights"} and {r.epoch for r in rows} == {3}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            sv = sorted((r.index, r.value) for r in rows if r.tap == name and r.metric == "sv")
            expected = np.linalg.svd(module.weight.detach().double().numpy(), compute_uv=False)
            np.testing.assert_allclose([v for _, v in sv], expected, rtol=1e-5)
            norm = [r.value for r in rows if r.tap == name and r.metric == "spectral_norm"][0]
            assert norm == pytest.approx(expected[0], rel=1e-5)


def test_a_run_with_the_weights_probe_records_alpha_at_every_probed_epoch(tmp_path):
    cfg = load_config(None, [
        "data.options={n=200, n_test=60, dim=40, k_star=3, num_classes=3}", "noise.rate=0.2",
        "model.options={widths=[64, 64]}", "train.epochs=2", 'probe.probes=["dynamics", "weights"]',
        f"run.root={tmp_path}", "run.name=w",
    ])
    m = load_run(run_experiment(cfg)).metrics
    alpha = select(m, probe="weights", metric="alpha")
    assert sorted(alpha["epoch"].unique()) == [0, 1, 2]
    assert np.isfinite(alpha["value"]).all() and (alpha["value"] > 1).all()


def test_bad_weights_probe_options_are_refused():
    with pytest.raises(ValueError, match="max_sv"):
        make_probe("weights", max_sv=0)
