"""Optional metric loggers: TensorBoard and MLflow receive the same rows as the run store.

A logger is an ``on_epoch`` callback (it takes the trainer's :class:`EpochReport`), so it
plugs into :func:`noisescope.run_experiment` or any :class:`~noisescope.train.Trainer`::

    from noisescope.runs.loggers import TensorBoardLogger
    with TensorBoardLogger("runs/my-run/tensorboard") as tb:
        run_experiment(cfg, on_epoch=tb)

Each scalar row becomes one series named ``probe/tap/subset/metric`` (empty parts left out,
e.g. ``dynamics/test/acc``, ``signals/fc1/by_true/separation``) at step = epoch, plus
``train/loss`` and ``train/lr``. Vector metrics (``index >= 0``: eigenvalues, per-class
values) are left out unless ``vectors=True`` (then ``.../metric/<index>``). A finished run can
be sent afterwards with :func:`replay`. Neither package is a dependency:
``pip install 'noisescope[loggers]'``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from noisescope.metrics import Row
from noisescope.training.loop import EpochReport

LOGGERS = ("tensorboard", "mlflow")
MISSING = "the {name} logger needs the {pkg} package: pip install 'noisescope[loggers]' (or pip install {pkg})"


def metric_key(row: Row, vectors: bool = False) -> str | None:
    """``probe/tap/subset/metric`` (``/index`` for vector rows when ``vectors``), else None."""
    if row.index >= 0 and not vectors:
        return None
    parts = [row.probe, row.tap, row.subset, row.metric] + ([str(row.index)] if row.index >= 0 else [])
    return "/".join(p for p in parts if p)


def scalars(report: EpochReport, vectors: bool = False) -> dict[str, float]:
    """The report's rows (and its training loss and learning rate) as ``{key: value}``."""
    out: dict[str, float] = {}
    if report.epoch > 0:
        out["train/loss"] = float(report.train_loss)
        out["train/lr"] = float(report.lr)
    for row in report.rows:
        key = metric_key(row, vectors)
        if key is not None:
            out[key] = float(row.value)
    return out


class _Logger:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class TensorBoardLogger(_Logger):
    """Writes event files under ``log_dir`` (view with ``tensorboard --logdir``)."""

    def __init__(self, log_dir: str | Path, vectors: bool = False) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RuntimeError(MISSING.format(name="TensorBoard", pkg="tensorboard")) from None
        self.log_dir = Path(log_dir)
        self.vectors = vectors
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def __call__(self, report: EpochReport) -> None:
        for key, value in scalars(report, self.vectors).items():
            self.writer.add_scalar(key, value, global_step=report.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def flatten_config(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dict -> ``{"noise.rate": "0.4", ...}`` (MLflow params are strings)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten_config(v, key))
        else:
            out[key] = json.dumps(v) if not isinstance(v, str) else v
    return out


class MLflowLogger(_Logger):
    """Logs to an MLflow tracking store (default: a local file store, no server needed).

    Args:
        tracking_uri: e.g. ``"file:/abs/path/mlruns"`` or ``"http://host:5000"``; None uses
            ``$MLFLOW_TRACKING_URI`` if set, else ``file:<cwd>/mlruns``.
        experiment: MLflow experiment name (created if missing).
        run_name: MLflow run name.
        params: logged once as the run's parameters (e.g. ``flatten_config(cfg.to_dict())``).
        resume_file: a JSON file remembering the MLflow run id, so a resumed noisescope run
            keeps logging into the same MLflow run.
        vectors: also log vector metrics.

    Non-finite values (an infinite max/median ratio) are skipped: MLflow stores only finite ones.
    A ``file:`` store sets ``MLFLOW_ALLOW_FILE_STORE=true`` (MLflow 3 otherwise asks for a
    database); view it with ``mlflow ui --backend-store-uri file:/abs/path/mlruns``.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = "noisescope",
                 run_name: str = "", params: dict[str, Any] | None = None,
                 resume_file: str | Path | None = None, vectors: bool = False) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise RuntimeError(MISSING.format(name="MLflow", pkg="mlflow")) from None
        import os

        if tracking_uri is None:
            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path.cwd() / "mlruns").as_uri()
        if tracking_uri.startswith("file:"):
            # MLflow >= 3.x refuses its file store unless asked; it is the no-server default here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.tracking_uri = tracking_uri
        self.vectors = vectors
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id = self._resume(resume_file)
        if self.run_id is None:
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(experiment)
            run = self.client.create_run(exp_id, run_name=run_name or None)
            self.run_id = run.info.run_id
            if params:
                from mlflow.entities import Param

                items = [Param(k, str(v)[:6000]) for k, v in params.items()]
                for i in range(0, len(items), 100):
                    self.client.log_batch(self.run_id, params=items[i:i + 100])
            if resume_file is not None:
                from noisescope.io import write_json

                write_json(Path(resume_file), {"tracking_uri": tracking_uri, "run_id": self.run_id})

    def _resume(self, resume_file: str | Path | None) -> str | None:
        if resume_file is None or not Path(resume_file).exists():
            return None
        saved = json.loads(Path(resume_file).read_text())
        if saved.get("tracking_uri") != self.tracking_uri:
            return None
        try:
            self.client.get_run(saved["run_id"])
        except Exception:  # deleted from the store: start a new MLflow run
            return None
        return saved["run_id"]

    def __call__(self, report: EpochReport) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, report.epoch) for k, v in scalars(report, self.vectors).items()
                 if math.isfinite(v)]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


class LoggerGroup(_Logger):
    """Several ``on_epoch`` callbacks as one; ``close`` closes those that can be closed."""

    def __init__(self, callbacks: Iterable[Callable[[EpochReport], None]]) -> None:
        self.callbacks = list(callbacks)

    def __call__(self, report: EpochReport) -> None:
        for cb in self.callbacks:
            cb(report)

    def close(self) -> None:
        for cb in self.callbacks:
            close = getattr(cb, "close", None)
            if close is not None:
                close()


def make_loggers(names: Iterable[str], run_dir: str | Path, cfg: Any = None,
                 mlflow_uri: str | None = None, experiment: str = "noisescope") -> LoggerGroup:
    """Loggers by name for one run directory.

    TensorBoard writes to ``run_dir/tensorboard``; MLflow to ``mlflow_uri`` (default
    ``$MLFLOW_TRACKING_URI``, else ``file:<run_dir's parent>/mlruns``, shared by the runs of a
    root or a sweep) with the run's config as parameters.
    """
    run_dir = Path(run_dir)
    out: list[Callable[[EpochReport], None]] = []
    for name in names:
        if name == "tensorboard":
            out.append(TensorBoardLogger(run_dir / "tensorboard"))
        elif name == "mlflow":
            import os

            uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or (
                run_dir.resolve().parent / "mlruns").as_uri()
            params = flatten_config(cfg.to_dict()) if cfg is not None else None
            out.append(MLflowLogger(uri, experiment, run_dir.name, params,
                                    resume_file=run_dir / "mlflow.json"))
        else:
            raise ValueError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
    return LoggerGroup(out)


def replay(run_path: str | Path, logger: Callable[[EpochReport], None]) -> int:
    """Send a stored run's metrics to ``logger`` epoch by epoch; returns the epochs sent."""
    import pandas as pd

    from noisescope.runs.run import load_run

    m = load_run(run_path).metrics
    epochs = sorted(int(e) for e in pd.unique(m["epoch"]))
    for e in epochs:
        sel = m[m["epoch"] == e]
        rows = [Row(int(r.epoch), str(r.probe), str(r.metric), float(r.value), str(r.subset), str(r.tap),
                    int(r.index)) for r in sel.itertuples(index=False)]
        loss = [r.value for r in rows if r.probe == "train" and r.metric == "loss"]
        lr = [r.value for r in rows if r.probe == "train" and r.metric == "lr"]
        rest = [r for r in rows if r.probe != "train"]
        logger(EpochReport(e, loss[0] if loss else float("nan"), lr[0] if lr else 0.0, rest))
    return len(epochs)
