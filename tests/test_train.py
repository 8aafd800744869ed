"""The training loop, the dynamics probe, the run store and resumption."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisescope.config import TrainConfig
from noisescope.models import build_model
from noisescope.probes.base import ProbeContext
from noisescope.probes.dynamics import DynamicsProbe, detect_double_descent
from noisescope.runs.store import RunStore
from noisescope.schedule import lr_at, probe_epochs
from noisescope.training.loop import Trainer


def _trainer(data, store=None, epochs=6, seed=0, **kw):
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes, widths=[64, 64])
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=seed)
    return Trainer(model, data, cfg, probes=[DynamicsProbe()], probe_at=list(range(epochs + 1)),
                   store=store, checkpoint_at={0, epochs}, **kw)


def test_dynamics_equals_direct_recomputation(tiny_noisy):
    torch.manual_seed(0)
    model = build_model("mlp", tiny_noisy.input_shape, 4, widths=[32])
    rows = DynamicsProbe()(model, tiny_noisy, ProbeContext(epoch=3, batch_size=77))
    got = {(r.subset, r.metric): r.value for r in rows}
    model.eval()
    with torch.no_grad():
        lt = model(tiny_noisy.x_train)
        lv, ls = model(tiny_noisy.x_val), model(tiny_noisy.x_test)
    m = tiny_noisy.noise_mask
    expected = {
        "clean_train": (lt[~m], tiny_noisy.y_train[~m]),
        "noisy_train_obs": (lt[m], tiny_noisy.y_train[m]),
        "noisy_train_true": (lt[m], tiny_noisy.y_train_true[m]),
        "val": (lv, tiny_noisy.y_val),
        "test": (ls, tiny_noisy.y_test),
    }
    for subset, (logits, y) in expected.items():
        assert got[(subset, "acc")] == pytest.approx((logits.argmax(1) == y).float().mean().item(), abs=1e-7)
        assert got[(subset, "loss")] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert all(r.epoch == 3 and r.probe == "dynamics" for r in rows)


def test_clean_learned_before_noisy_and_memorized(tiny_noisy):
    t = _trainer(tiny_noisy, epochs=40)
    accs = {}
    t.on_epoch = lambda r: accs.update({r.epoch: {x.subset: x.value for x in r.rows if x.metric == "acc"}})
    t.fit()
    # early on the clean samples are fitted far better than the noisy ones' observed labels
    assert accs[2]["clean_train"] > accs[2]["noisy_train_obs"] + 0.5
    # eventually the noisy labels are memorized
    assert accs[40]["noisy_train_obs"] > accs[2]["noisy_train_obs"] + 0.3


def test_same_seed_identical_metrics(tiny_noisy, tmp_path):
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    _trainer(tiny_noisy, a).fit()
    _trainer(tiny_noisy, b).fit()
    ma, mb = a.metrics(), b.metrics()
    assert len(ma) > 0
    np.testing.assert_array_equal(ma["value"].to_numpy(), mb["value"].to_numpy())
    c = RunStore(tmp_path / "c")
    _trainer(tiny_noisy, c, seed=1).fit()
    assert not np.array_equal(ma["value"].to_numpy(), c.metrics()["value"].to_numpy())


class Killed(Exception):
    pass


def test_resume_after_kill_matches_uninterrupted(tiny_noisy, tmp_path):
    full = RunStore(tmp_path / "full")
    _trainer(tiny_noisy, full).fit()

    broken = RunStore(tmp_path / "broken")

    def kill_at_4(report):
        if report.epoch == 4:
            raise Killed

    with pytest.raises(Killed):
        _trainer(tiny_noisy, broken, on_epoch=kill_at_4).fit()
    assert broken.status()["epoch"] == 4
    model = _trainer(tiny_noisy, broken).fit()  # a fresh process would do exactly this
    mf, mb = full.metrics(), broken.metrics()
    assert len(mf) == len(mb)
    np.testing.assert_allclose(mb["value"].to_numpy(), mf["value"].to_numpy(), rtol=0, atol=0)
    ref = full.load_weights(build_model("mlp", tiny_noisy.input_shape, 4, widths=[64, 64]), 6)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p.detach().cpu(), q)


def test_resume_drops_metrics_written_after_last_checkpoint(tiny_noisy, tmp_path):
    store = RunStore(tmp_path / "r")
    t = _trainer(tiny_noisy, store, epochs=3)
    t.fit()
    # simulate a kill after metrics of epoch 4 were written but before its resume state
    from noisescope.metrics import Row

    store.append_metrics([Row(4, "dynamics", "acc", 0.5, subset="test")])
    t2 = _trainer(tiny_noisy, store, epochs=3)
    t2.fit()
    assert int(store.metrics()["epoch"].max()) == 3


def test_no_partial_files_left(tiny_noisy, tmp_path):
    store = RunStore(tmp_path / "r")
    _trainer(tiny_noisy, store, epochs=2).fit()
    leftovers = [p for p in store.path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert {0, 2} <= set(store.checkpoints())


def test_probe_schedules():
    assert probe_epochs(5, "every") == [0, 1, 2, 3, 4, 5]
    assert probe_epochs(10, "every_k", every=4) == [0, 4, 8, 10]
    log = probe_epochs(1000, "log", points=20)
    assert log[0] == 0 and log[-1] == 1000 and 1 in log
    assert len(log) <= 22 and np.all(np.diff(log) > 0)
    gaps = np.diff(log)
    assert gaps[-1] > gaps[1]  # dense early, sparse late


def test_lr_schedules():
    assert lr_at(0, 0.1, 10, "constant") == 0.1
    assert lr_at(0, 0.1, 10, "cosine") == pytest.approx(0.1)
    assert lr_at(9, 0.1, 10, "cosine") < 0.01
    assert lr_at(6, 0.1, 10, "step") == pytest.approx(0.01)
    assert lr_at(0, 0.1, 10, "constant", warmup_epochs=2) == pytest.approx(0.05)


def test_double_descent_detection():
    epochs = np.arange(10)
    err = np.array([0.9, 0.5, 0.3, 0.35, 0.45, 0.40, 0.32, 0.25, 0.26, 0.27])
    dd = detect_double_descent(epochs, err, threshold=0.05, smooth=1)
    assert dd == {
        "first_min_epoch": 2, "peak_epoch": 4, "second_min_epoch": 7,
        "first_min_error": 0.3, "peak_error": 0.45, "second_min_error": 0.25,
        "gain": pytest.approx(0.20),
    }
    # monotone rise after the minimum (classic overfitting) is not double descent
    assert detect_double_descent(epochs, [0.9, 0.5, 0.3, 0.35, 0.4, 0.45, 0.5, 0.5, 0.5, 0.5], 0.01, 1) is None
    # a bump smaller than the threshold is ignored
    assert detect_double_descent(epochs, err, threshold=0.2, smooth=1) is None


def test_double_descent_ignores_jitter_but_finds_a_real_second_descent():
    rng = np.random.default_rng(0)
    epochs = np.arange(60)
    # overfitting with +-3 point jitter and no second descent
    rising = 0.2 + 0.25 * np.clip((epochs - 5) / 30, 0, 1) + rng.uniform(-0.03, 0.03, 60)
    assert detect_double_descent(epochs, rising, threshold=0.01, smooth=1) is not None  # raw: fooled
    assert detect_double_descent(epochs, rising) is None
    # a real hump: error rises 15 points then falls 10 below its peak
    hump = 0.2 + 0.15 * np.exp(-(((epochs - 25) / 8.0) ** 2)) - 0.1 * (epochs > 40)
    dd = detect_double_descent(epochs, hump + rng.uniform(-0.02, 0.02, 60))
    assert dd is not None and 20 <= dd["peak_epoch"] <= 30 and dd["second_min_epoch"] > 40
    assert dd["gain"] > 0.15


def test_best_validation_checkpoint_is_kept(tiny_noisy, tmp_path):
    from noisescope.probes.dynamics import best_val_epoch

    store = RunStore(tmp_path / "r")
    _trainer(tiny_noisy, store, epochs=8).fit()
    best, _ = best_val_epoch(store.metrics())
    assert set(store.checkpoints()) == {0, 8} | {best}
    model = store.load_weights(build_model("mlp", tiny_noisy.input_shape, 4, widths=[64, 64]), best)
    logits = model.eval()(tiny_noisy.x_val)
    acc = (logits.argmax(1) == tiny_noisy.y_val).float().mean().item()
    m = store.metrics()
    rec = m[(m.epoch == best) & (m.subset == "val") & (m.metric == "acc")]["value"].item()
    assert acc == pytest.approx(rec, abs=1e-7)


def test_metrics_are_appended_per_epoch_and_compacted(tiny_noisy, tmp_path):
    from noisescope.metrics import Row

    store = RunStore(tmp_path / "r")
    _trainer(tiny_noisy, store, epochs=3).fit()
    parts = sorted(store.parts_dir.glob("*.parquet"))
    assert len(parts) == 4  # epochs 0..3, one small file each: the table is never rewritten
    before = store.metrics()
    store.compact()
    assert not store.parts_dir.exists() and store.metrics_path.exists()
    after = store.metrics()
    np.testing.assert_array_equal(before["value"].to_numpy(), after["value"].to_numpy())
    # a kill between writing metrics.parquet and deleting a part leaves a duplicate: read once
    store.append_metrics([Row(3, "dynamics", "acc", 0.25, subset="test")])
    m = store.metrics()
    assert len(m) == len(after)
    assert m[(m.epoch == 3) & (m.subset == "test") & (m.metric == "acc")]["value"].item() == 0.25
