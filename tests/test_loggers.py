"""TensorBoard and MLflow loggers receive exactly the rows the run store keeps (skipped when the
packages are not installed)."""

from __future__ import annotations

import pytest
import torch

from noisescope.metrics import Row
from noisescope.models import build_model
from noisescope.probes.dynamics import DynamicsProbe
from noisescope.runs.loggers import make_loggers, metric_key, replay, scalars
from noisescope.runs.store import RunStore
from noisescope.training.loop import EpochReport, Trainer


def _train(data, store, on_epoch, epochs=3):
    from noisescope.config import Config, TrainConfig

    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes, widths=[32])
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, device="cpu")
    store.write_json("config.json", Config().to_dict())
    Trainer(model, data, cfg, probes=[DynamicsProbe()], probe_at=list(range(epochs + 1)), store=store,
            checkpoint_at={epochs}, on_epoch=on_epoch).fit()
    return store.metrics()


def _expected(metrics, key):
    probe, subset, metric = key.split("/")
    sel = metrics[(metrics["probe"] == probe) & (metrics["subset"] == subset) & (metrics["metric"] == metric)]
    return dict(zip(sel["epoch"].astype(int), sel["value"], strict=True))


def test_keys_and_scalars():
    rows = [Row(2, "dynamics", "acc", 0.5, subset="test"), Row(2, "spectral", "eigval", 3.0, "train", "fc1", 4),
            Row(2, "signals", "separation", 0.9, "by_true", "fc1")]
    assert [metric_key(r) for r in rows] == ["dynamics/test/acc", None, "signals/fc1/by_true/separation"]
    assert metric_key(rows[1], vectors=True) == "spectral/fc1/train/eigval/4"
    got = scalars(EpochReport(2, 0.7, 1e-3, rows))
    assert got == {"train/loss": 0.7, "train/lr": 1e-3, "dynamics/test/acc": 0.5,
                   "signals/fc1/by_true/separation": 0.9}
    assert "train/loss" not in scalars(EpochReport(0, float("nan"), 0.0, rows))
    with pytest.raises(ValueError, match="unknown logger 'wandb'"):
        make_loggers(["wandb"], "/tmp/x")


def test_tensorboard_gets_the_stored_rows(tiny_noisy, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = RunStore(tmp_path / "run")
    group = make_loggers(["tensorboard"], store.path)
    metrics = _train(tiny_noisy, store, group)
    group.close()
    ea = EventAccumulator(str(store.path / "tensorboard"))
    ea.Reload()
    for key in ("dynamics/test/acc", "dynamics/noisy_train_obs/loss"):
        got = {e.step: e.value for e in ea.Scalars(key)}
        want = _expected(metrics, key)
        assert set(got) == set(want) == {0, 1, 2, 3}
        assert got == pytest.approx(want, rel=1e-6)  # event files hold float32
    loss = {e.step: e.value for e in ea.Scalars("train/loss")}
    assert loss == pytest.approx(_expected(metrics, "train/train_running/loss"), rel=1e-6)
    # replaying the stored run afterwards writes the same series
    with make_loggers(["tensorboard"], tmp_path / "replayed") as again:
        assert replay(store.path, again) == 4
    eb = EventAccumulator(str(tmp_path / "replayed" / "tensorboard"))
    eb.Reload()
    assert [e.value for e in eb.Scalars("dynamics/test/acc")] == [e.value for e in ea.Scalars("dynamics/test/acc")]


def test_mlflow_gets_the_stored_rows_and_resumes(tiny_noisy, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from noisescope.config import Config
    from noisescope.runs.loggers import MLflowLogger, flatten_config

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    store = RunStore(tmp_path / "run")
    resume = store.path / "mlflow.json"
    logger = MLflowLogger(uri, "tests", "run", flatten_config(Config().to_dict()), resume_file=resume)
    metrics = _train(tiny_noisy, store, logger)
    logger.close()
    client = MlflowClient(tracking_uri=uri)
    hist = {m.step: m.value for m in client.get_metric_history(logger.run_id, "dynamics/test/acc")}
    assert hist == _expected(metrics, "dynamics/test/acc")
    assert client.get_run(logger.run_id).data.params["noise.rate"] == "0.0"
    again = MLflowLogger(uri, "tests", "run", resume_file=resume)  # a resumed run logs into the same MLflow run
    assert again.run_id == logger.run_id


def test_sweep_runs_carry_their_loggers(tmp_path):
    pytest.importorskip("tensorboard")
    from test_sweep import tiny_raw

    from noisescope.sweep import LocalExecutor, run_sweep, sweep_from_dict
    from noisescope.sweep.runner import run_dir

    raw = tiny_raw(tmp_path, grid={"noise": {"rate": [0.2]}})
    raw["train"]["epochs"] = 1
    spec = sweep_from_dict(raw)
    result = run_sweep(spec, LocalExecutor(1), loggers=("tensorboard",))
    assert result.ids("complete") == [spec.points[0].id]
    events = list((run_dir(spec.directory, spec.points[0].id) / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
