"""The positive controls (docs/results/controls.md): each claim's detector fires on its planted
positive and stays silent on the null twin. Fast tests train the control's model directly;
the end-to-end runs of the bundled presets are marked slow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisescope.data import load_dataset, make_noisy_dataset
from noisescope.evidence.descent import read_descent
from noisescope.evidence.rules import LARGE, NOT_LARGE, large_activation_flag
from noisescope.evidence.tail import tail_verdict


def _gd_curves(slow_scale: float, steps: int = 1500, seed: int = 0, rate: float = 0.2) -> dict:
    """dd_control's recipe without the run machinery: full-batch gradient descent (lr 0.5) of
    a zero-initialized linear softmax classifier; test loss and error with their SEs on a
    log-spaced schedule."""
    torch.manual_seed(seed)
    ds = load_dataset("two_scale", seed=seed, n=667, n_test=4000, slow_scale=slow_scale)
    d = make_noisy_dataset(ds, "symmetric", rate, val_fraction=0.1, seed=seed, noise_seed=seed)
    x, y, xt, yt = d.x_train, d.y_train, d.x_test, d.y_test
    m, s = x.mean(), x.std()
    x, xt = (x - m) / s, (xt - m) / s
    w = torch.zeros(x.shape[1], 2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.5)
    probe = set(np.unique(np.round(np.geomspace(1, steps + 1, 50)) - 1).astype(int).tolist())
    out: dict[str, list] = {"epoch": [], "loss": [], "loss_se": [], "err": []}
    for t in range(steps + 1):
        if t in probe:
            with torch.no_grad():
                lt = xt @ w + b
                per = F.cross_entropy(lt, yt, reduction="none")
                out["epoch"].append(t)
                out["loss"].append(float(per.mean()))
                out["loss_se"].append(float(per.std()) / len(yt) ** 0.5)
                out["err"].append(float((lt.argmax(1) != yt).float().mean()))
        if t < steps:
            loss = F.cross_entropy(x @ w + b, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    err = np.array(out["err"])
    out["err_se"] = np.sqrt(err * (1 - err) / len(yt))
    return out


@pytest.mark.parametrize("slow_scale, expected", [(0.1, "clear"), (2.0, "absent")])
def test_two_scale_gradient_descent_shows_double_descent_only_with_two_time_scales(slow_scale, expected):
    c = _gd_curves(slow_scale)
    loss = read_descent(c["epoch"], c["loss"], c["loss_se"])
    err = read_descent(c["epoch"], c["err"], c["err_se"])
    assert loss["status"] == expected and err["status"] == expected
    if expected == "clear":
        # first descent within the first steps, peak while the nuisance block fits the flips,
        # second descent after ~100 steps when the slow block is learned
        assert loss["first_min_epoch"] <= 3 and 10 <= loss["peak_epoch"] <= 300
        assert loss["second_min_epoch"] > 3 * loss["peak_epoch"] and loss["gain"] > 0.03
        assert err["gain"] > 0.03


def test_two_scale_generator_known_blocks():
    ds = load_dataset("two_scale", seed=3, n=400, n_test=100, fast_dim=5, nuisance_dim=20, slow_dim=10,
                      fast_scale=2.0, slow_scale=0.1)
    x = ds.x_train.numpy()
    assert x.shape == (400, 35) and set(ds.y_train.tolist()) == {0, 1}
    sd = x.std(0)
    assert np.all(np.abs(sd[:5] - 2.0) < 0.4) and np.all(np.abs(sd[5:25] - 1) < 0.2)
    assert np.all(np.abs(sd[25:] - 0.1) < 0.02)
    with pytest.raises(ValueError, match="scales > 0"):
        load_dataset("two_scale", slow_scale=0.0)


def _first_layer(spike_scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """First-layer ReLU activations (N, 128) of a freshly built MLP on large_input data, with
    the global input standardization every noisescope model applies."""
    from noisescope.models import build_model

    ds = load_dataset("large_input", seed=seed, n=2000, n_test=10, spike_scale=spike_scale)
    torch.manual_seed(seed)
    model = build_model("mlp", ds.input_shape, ds.num_classes, widths=[128, 128])
    x = ds.x_train
    model.set_input_normalization([float(x.mean())], [float(x.std())])
    with torch.no_grad():
        acts = model.blocks.layer1(model.normalize_input(x))
    return acts, x


@pytest.mark.parametrize("spike_scale, flag", [(1000.0, LARGE), (0.0, NOT_LARGE)])
def test_large_input_gives_one_large_first_layer_activation_only_with_the_spike(spike_scale, flag):
    acts, x = _first_layer(spike_scale)
    a = acts.abs()
    ratio = float(a.max() / a[a > 0].median())
    assert large_activation_flag(ratio) == flag
    if flag == LARGE:
        row = int(a.max(1).values.argmax())
        assert float(x[row, :3].abs().min()) == spike_scale  # the largest sits on a spiked sample
        # it follows the input: the top unit's activation is (almost) a linear function of the
        # spike coordinate
        unit = int(a.max(0).values.argmax())
        r = np.corrcoef(acts[:, unit].numpy(), x[:, 0].numpy())[0, 1]
        assert r > 0.9
    else:
        assert ratio < 30


@pytest.mark.parametrize("signal, status", [(2.0, "supported"), (0.5, "not supported")])
def test_planted_tail_truncation_removes_the_noisy_fit(signal, status):
    """tail_control's recipe without the run machinery: a linear classifier fits 40% flipped
    labels through the unit-variance bulk (D > n); truncating phi to the top k* = 4 principal
    components removes that fit and keeps the clean one when the signal stands above the bulk."""
    ds = load_dataset("synthetic", seed=0, n=1000, n_test=1000, dim=1200, k_star=4, num_classes=5, signal=signal)
    d = make_noisy_dataset(ds, "symmetric", 0.4, val_fraction=0.0, seed=0, noise_seed=0)
    x, y, noisy = d.x_train, d.y_train, d.noise_mask
    m, s = x.mean(), x.std()
    x, xt = (x - m) / s, (d.x_test - m) / s
    torch.manual_seed(0)
    w = torch.zeros(x.shape[1], 5, requires_grad=True)
    b = torch.zeros(5, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(30):
        loss = F.cross_entropy(x @ w + b, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    mu = x.mean(0)
    v = torch.linalg.svd(x - mu, full_matrices=False).Vh[:4]
    with torch.no_grad():
        full, trunc = x @ w + b, ((x - mu) @ v.T @ v + mu) @ w + b
        fit = {k: float((z.argmax(1)[noisy] == y[noisy]).float().mean()) for k, z in (("full", full), ("trunc", trunc))}
        clean = {k: float((z.argmax(1)[~noisy] == y[~noisy]).float().mean())
                 for k, z in (("full", full), ("trunc", trunc))}
        test_full = float(((xt @ w + b).argmax(1) == d.y_test).float().mean())
        test_trunc = float(((((xt - mu) @ v.T @ v + mu) @ w + b).argmax(1) == d.y_test).float().mean())
    assert fit["full"] > 0.99  # every flipped label fitted
    v_ = tail_verdict(clean["full"], fit["full"], clean["trunc"], fit["trunc"], int((~noisy).sum()),
                      int(noisy.sum()), 4)
    assert v_.status == status
    if status == "supported":
        assert fit["trunc"] < 0.05 and test_trunc > test_full + 0.2


@pytest.mark.slow
@pytest.mark.parametrize("preset, status", [("dd_control", "supported"), ("dd_control_null", "not supported")])
def test_dd_control_end_to_end(preset, status, tmp_path):
    """`noisescope run dd_control` then `noisescope verdict RUN` (about 20 s of CPU each)."""
    from noisescope.config import load_config
    from noisescope.runs.lifecycle import run_experiment
    from noisescope.workflows.verdict import run_verdict

    cfg = load_config(preset, [f"run.root={tmp_path}", "run.name=r"])
    claims = {c.key: c for c in run_verdict(run_experiment(cfg)).claims}
    assert claims["double_descent"].status == status


@pytest.mark.slow
@pytest.mark.parametrize("preset, status", [("large_activation_control", "supported"),
                                            ("large_activation_control_null", "not supported")])
def test_large_activation_control_end_to_end(preset, status, tmp_path):
    from noisescope.config import load_config
    from noisescope.runs.lifecycle import run_experiment
    from noisescope.workflows.verdict import run_verdict

    cfg = load_config(preset, [f"run.root={tmp_path}", "run.name=r"])
    claims = {c.key: c for c in run_verdict(run_experiment(cfg)).claims}
    assert claims["large_activation"].status == status


@pytest.mark.parametrize("preset", ["dd_control", "dd_control_null", "large_activation_control",
                                    "large_activation_control_null", "tail_control", "tail_control_null"])
def test_control_presets_validate_and_build(preset):
    from noisescope.config import load_config
    from noisescope.runs.build import prepare_data, prepare_model

    cfg = load_config(preset)
    model = prepare_model(cfg, prepare_data(cfg))
    assert model(prepare_data(cfg).x_test[:4]).shape[0] == 4


def test_long_horizon_sweeps_expand():
    from noisescope.sweep.grid import load_sweep_spec

    search = load_sweep_spec("kubo_dd_search").points
    assert len(search) == 24 and {p.config.model.arch for p in search} == {"mlp3", "mlp5", "mlp7"}
    assert all(p.config.train.epochs == 1000 and p.config.probe.schedule == "log" for p in search)
    seeds = load_sweep_spec("kubo_dd_seeds").points
    assert [(p.config.train.seed, p.config.noise.seed) for p in seeds] == [(0, 0), (1, 1), (2, 2)]
