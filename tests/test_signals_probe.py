"""SignalsProbe end to end on toy networks with planted structure."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from noisescope.data.base import NoisyDataset
from noisescope.metrics import rows_to_frame
from noisescope.models.base import wrap_model
from noisescope.models.mlp import MLP
from noisescope.probes import make_probe
from noisescope.probes.base import ProbeContext
from noisescope.probes.signals import SignalsProbe
from noisescope.signals.large_activation import MEDIAN_REL_ERROR
from noisescope.taps import taps_of_type

C = 3


def _data(n: int = 600, d: int = 10, seed: int = 0) -> NoisyDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y_true = torch.randint(0, C, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.3
    y_obs = y_true.clone()
    y_obs[flip] = (y_true[flip] + 1) % C
    xt = torch.randn(200, d, generator=g)
    yt = torch.randint(0, C, (200,), generator=g)
    return NoisyDataset(x, y_obs, y_true, x[:50], y_obs[:50], y_true[:50], xt, yt, C, "toy")


def _giant_mlp(neuron: int = 5, seed: int = 0) -> MLP:
    """layer2[neuron] = 300 * relu(x_1 + 3): a giant activation that follows the input."""
    torch.manual_seed(seed)
    model = MLP(10, [12, 12, 12], C)
    with torch.no_grad():
        l1, l2, l3 = (model.blocks[i][0] for i in range(3))
        l1.weight[0] = 0.0
        l1.weight[0, 1] = 1.0
        l1.bias[0] = 3.0
        l2.weight[neuron] = 0.0
        l2.weight[neuron, 0] = 300.0
        l2.bias[neuron] = 0.0
        l3.weight[:, neuron] = 0.0  # keep the giant out of layer3
    return model


def _frame(rows) -> pd.DataFrame:
    return rows_to_frame(rows)


def _value(df: pd.DataFrame, metric: str, tap: str, epoch: int = 0) -> float:
    sel = df[(df.metric == metric) & (df.tap == tap) & (df.epoch == epoch) & (df["index"] == -1)]
    assert len(sel) == 1, (metric, tap, len(sel))
    return float(sel.value.iloc[0])


def test_planted_giant_neuron_found_with_tap_index_and_ratio() -> None:
    data = _data()
    model = _giant_mlp()
    df = _frame(SignalsProbe(input_pcs=10, dependence_samples=600)(model, data,
                                                                   ProbeContext(epoch=0)))
    with torch.no_grad():
        h1 = model.blocks.layer1(data.x_train)
        h2 = model.blocks.layer2(h1)
        h3 = model.blocks.layer3(h2)
    for tap, acts in (("layer1", h1), ("layer2", h2), ("layer3", h3)):
        mags = acts.abs().flatten()
        exact_max = float(mags.max())
        exact_median = float(mags[mags > 0].median())
        exact_ratio = exact_max / exact_median
        assert _value(df, "large_act_max", tap) == pytest.approx(exact_max)
        assert _value(df, "large_act_neuron", tap) == int(acts.abs().max(0).values.argmax())
        assert _value(df, "large_act_median", tap) == pytest.approx(exact_median,
                                                                    rel=MEDIAN_REL_ERROR)
        assert _value(df, "large_act_ratio", tap) == pytest.approx(exact_ratio,
                                                                   rel=1.01 * MEDIAN_REL_ERROR)
        assert _value(df, "large_act_flag", tap) == float(exact_ratio >= 100)
    assert [_value(df, "large_act_flag", t) for t in ("layer1", "layer2", "layer3")] == [0, 1, 0]
    assert _value(df, "large_act_neuron", "layer2") == 5
    assert _value(df, "large_act_row", "layer2") == int(data.x_train[:, 1].argmax())
    # the giant is linear in the input and independent of the labels
    assert _value(df, "r2_input", "layer2") > 0.999
    assert _value(df, "eta2_true", "layer2") < 0.02
    assert _value(df, "eta2_obs", "layer2") < 0.02


def test_no_hook_remains_and_outputs_unchanged() -> None:
    data = _data()
    model = _giant_mlp()
    model.train()
    with torch.no_grad():
        before = model(data.x_test).clone()
    SignalsProbe(tap_types=["ReLU", "Linear"])(model, data, ProbeContext(epoch=0))
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert model.training
    with torch.no_grad():
        assert torch.equal(model(data.x_test), before)


def test_type_selected_taps_equal_named_taps() -> None:
    data = _data()
    model = _giant_mlp()
    relus = taps_of_type(model, nn.ReLU)
    assert relus == ["blocks.layer1.1", "blocks.layer2.1", "blocks.layer3.1"]
    by_type = _frame(SignalsProbe(tap_types=["ReLU"], dependence=False)(model, data,
                                                                         ProbeContext(epoch=0)))
    by_name = _frame(SignalsProbe(dependence=False)(model, data, ProbeContext(epoch=0)))
    by_type["tap"] = by_type["tap"].map(dict(zip(relus, ["layer1", "layer2", "layer3"], strict=True)))
    by_type["tap"] = by_type["tap"].astype(by_name["tap"].dtype)
    pd.testing.assert_frame_equal(by_type.reset_index(drop=True), by_name.reset_index(drop=True))


def test_user_module_through_wrap_model() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, C))
    model = wrap_model(net, head="4", taps=["1", "3"])
    df = _frame(make_probe("signals", max_test=100)(model, _data(), ProbeContext(epoch=2)))
    assert set(df.tap) == {"1", "3", "features"}
    assert (df.epoch == 2).all() and (df.probe == "signals").all()
    sep = df[(df.metric == "separation") & (df["index"] == -1)]
    assert set(sep.subset) == {"by_true", "by_observed"}
    assert sep.value.between(-1, 1).all()
    # 'features' is the head's input, i.e. the output of module "3": identical numbers
    a = df[df.tap == "3"].drop(columns="tap").reset_index(drop=True)
    b = df[df.tap == "features"].drop(columns="tap").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    n = df[df.metric.isin(["alignment_n_correct", "alignment_n_wrong"]) & (df.tap == "1")]
    assert n.value.sum() == 100


def test_same_seed_gives_identical_rows() -> None:
    data = _data()
    probe = SignalsProbe(max_train=300, max_test=150, dependence_samples=200, input_pcs=5)
    a = _frame(probe(_giant_mlp(), data, ProbeContext(epoch=1)))
    b = _frame(probe(_giant_mlp(), data, ProbeContext(epoch=1)))
    pd.testing.assert_frame_equal(a, b)


def test_neuron_identity_tracked_across_epochs() -> None:
    data = _data()
    probe = SignalsProbe(dependence=False, alignment=False)
    ctx = ProbeContext(epoch=0)
    df0 = _frame(probe(_giant_mlp(neuron=5), data, ctx))
    ctx.epoch = 1
    df1 = _frame(probe(_giant_mlp(neuron=5), data, ctx))
    ctx.epoch = 2
    df2 = _frame(probe(_giant_mlp(neuron=7), data, ctx))
    assert _value(df0, "large_act_neuron", "layer2", 0) == 5
    assert _value(df1, "large_act_same_neuron", "layer2", 1) == 1.0
    assert _value(df2, "large_act_neuron", "layer2", 2) == 7
    assert _value(df2, "large_act_same_neuron", "layer2", 2) == 0.0
    assert _value(df2, "large_act_tracked_neuron", "layer2", 2) == 5
    # neuron 5 is an ordinary unit in the epoch-2 network
    assert _value(df2, "large_act_tracked_max", "layer2", 2) < _value(
        df2, "large_act_max", "layer2", 2) / 50


def test_separation_rows_per_class_and_median_all() -> None:
    data = _data()
    df = _frame(SignalsProbe(median="all", dependence=False, alignment=False)(
        _giant_mlp(), data, ProbeContext(epoch=0)))
    sep = df[(df.metric == "separation") & (df.tap == "layer1") & (df.subset == "by_true")]
    assert sorted(sep["index"]) == [-1, 0, 1, 2]
    per_class = sep[sep["index"] >= 0].value
    assert _value(df[df.subset == "by_true"], "separation", "layer1") == pytest.approx(
        per_class.mean())
    # over all entries the median of a ReLU layer with > half zeros is 0: ratio inf
    zero_frac = _value(df, "large_act_zero_frac", "layer3")
    ratio = _value(df, "large_act_ratio", "layer3")
    assert (zero_frac > 0.5) == math.isinf(ratio)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"median": "mean"}, "median"),
        ({"threshold": 0}, "threshold"),
        ({"min_noisy": 0}, "min_noisy"),
        ({"max_train": -1}, "max_train"),
        ({"taps": ["a"], "tap_types": ["ReLU"]}, "not both"),
    ],
)
def test_bad_options_are_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SignalsProbe(**kwargs)


def test_unknown_tap_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown tap"):
        SignalsProbe(taps=["layer9"])(_giant_mlp(), _data(), ProbeContext(epoch=0))


def test_dependence_without_buffer_gives_same_numbers() -> None:
    """Taps too wide to buffer get an extra pass over the subsample: same eta^2 and R^2."""
    data = _data()
    kwargs = {"alignment": False, "dependence_samples": 300, "input_pcs": 8}
    buffered = _frame(SignalsProbe(**kwargs)(_giant_mlp(), data, ProbeContext(epoch=0)))
    extra = _frame(SignalsProbe(dependence_buffer_mb=0, **kwargs)(_giant_mlp(), data,
                                                                   ProbeContext(epoch=0)))
    dep = ["eta2_true", "eta2_obs", "r2_input"]
    a = buffered[buffered.metric.isin(dep)].reset_index(drop=True)
    b = extra[extra.metric.isin(dep)].reset_index(drop=True)
    assert len(a) == 9
    pd.testing.assert_frame_equal(a, b)


def test_large_act_row_indexes_the_training_set_under_subsampling() -> None:
    data = _data()
    model = _giant_mlp()
    df = _frame(SignalsProbe(max_train=200, dependence=False, alignment=False)(
        model, data, ProbeContext(epoch=0)))
    row = int(_value(df, "large_act_row", "layer2"))
    with torch.no_grad():
        a = model.blocks.layer2(model.blocks.layer1(data.x_train[row:row + 1]))
    assert float(a[0, 5]) == pytest.approx(_value(df, "large_act_max", "layer2"))
    assert row != int(data.x_train[:, 1].argmax())  # the subset excludes the global argmax


def test_probe_restores_matmul_precision() -> None:
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        SignalsProbe(dependence=False)(_giant_mlp(), _data(), ProbeContext(epoch=0))
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)
