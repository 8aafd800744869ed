"""Cleaning that chooses for itself (workflows.clean.iterative_clean) and relabelling with a
confidence, on a planted case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from noisescope.config import load_config
from noisescope.data.base import NoisyDataset
from noisescope.models.base import wrap_model
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.run import load_run
from noisescope.workflows.clean import DEFAULT_DETECTOR, iterative_clean, relabel_suggestions


def test_relabel_suggestions_are_the_softmax_argmax_and_its_probability() -> None:
    net = nn.Sequential(nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    model = wrap_model(net, head="0")
    x = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    empty = torch.tensor([], dtype=torch.long)
    data = NoisyDataset(x_train=x, y_train=torch.tensor([1, 2]), y_train_true=torch.tensor([0, 2]),
                        x_val=x[:0], y_val=empty, y_val_true=empty, x_test=x, y_test=torch.tensor([0, 0]),
                        num_classes=3, name="t", noise={})
    s = relabel_suggestions(model, data)
    e2 = np.exp(2.0)
    assert s["suggested"].tolist()[0] == 0
    assert s["probability"].iloc[0] == pytest.approx(e2 / (e2 + 2))
    assert s["p_observed"].iloc[0] == pytest.approx(1 / (e2 + 2))
    assert s["probability"].iloc[1] == pytest.approx(1 / 3) and s["p_observed"].iloc[1] == pytest.approx(1 / 3)


@pytest.mark.slow
def test_iterative_cleaning_on_planted_noise_flags_mostly_wrong_labels_and_stops_on_validation(tmp_path) -> None:
    cfg = load_config("synthetic_demo", [
        "data.options={n = 1500, dim = 30, k_star = 5, num_classes = 5}", "model.options={widths = [64, 64]}",
        "train.epochs=30", "noise.rate=0.3",
        "train.lr=3e-3", "train.device=\"cpu\"", f'run.root="{tmp_path}"', 'run.name="parent"'])
    torch.set_num_threads(1)
    path = run_experiment(cfg)
    res = iterative_clean(path, max_rounds=2)
    data = load_run(path).data
    wrong = (data.y_train != data.y_train_true).numpy()
    assert res.detector == DEFAULT_DETECTOR and res.rounds[0].round == 0
    first = res.rounds[1]
    assert first.path is not None and first.n_flagged > 0
    # the planted noise (30% wrong): cleaning is kept, and its flags are mostly wrong labels
    assert res.chosen >= 1 and res.rounds[res.chosen].kept
    assert wrong[res.flagged].mean() > 0.65 > 2 * 0.3 and abs(wrong.mean() - 0.3) < 0.02
    assert res.rounds[res.chosen].val_correct.sum() > res.rounds[0].val_correct.sum()
    # the loop stops at the first round that is not kept: nothing after it
    not_kept = [r.round for r in res.rounds[1:] if not r.kept]
    assert not not_kept or not_kept[0] == res.rounds[-1].round
    assert res.trained_runs == 1 + sum(r.path is not None for r in res.rounds[1:])
    assert len(res.suggestions) == len(data.y_train)
