"""The training loop: device-resident batches, probes on a schedule, resumable by epoch.

Epoch numbering: "epoch e" is the state after e full passes; epoch 0 is the untrained control.
After each finished epoch the loop (1) runs the probes scheduled for it, (2) appends their rows
to the store, (3) saves the chosen checkpoints and the resume state. A run killed at any moment
therefore resumes from the last finished epoch and recomputes at most the epoch in progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from noisescope import accel
from noisescope.config import TrainConfig
from noisescope.data.base import NoisyDataset
from noisescope.io import UserError
from noisescope.methods import Method, build_method
from noisescope.metrics import Row
from noisescope.models.base import TappedModel
from noisescope.pipeline import TensorPipeline
from noisescope.probes import Probe, ProbeContext, run_probes
from noisescope.probes.dynamics import best_val_epoch, early_stop_update
from noisescope.schedule import lr_at


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else cpu; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(params: object, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or AdamW from the config."""
    name = cfg.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {cfg.optimizer!r}")


class RunStoreLike(Protocol):
    """What the loop needs from a run store (:class:`noisescope.runs.store.RunStore`)."""

    def save_weights(self, model: torch.nn.Module, epoch: int) -> object: ...
    def delete_weights(self, epoch: int) -> None: ...
    def append_metrics(self, rows: list[Row]) -> None: ...
    def save_resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    probe_state: dict) -> None: ...
    def load_resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, dict]: ...
    def truncate_metrics(self, after_epoch: int) -> None: ...
    def write_record(self, name: str, epoch: int, frame: object) -> None: ...
    def truncate_records(self, after_epoch: int) -> None: ...
    def checkpoints(self) -> dict: ...
    def metrics(self) -> object: ...
    def set_status(self, state: str, epoch: int, **extra: object) -> None: ...


@dataclass
class EpochReport:
    """What the loop tells its caller after each finished epoch."""

    epoch: int
    train_loss: float
    lr: float
    rows: list[Row] = field(default_factory=list)


def train_epoch(
    model: TappedModel,
    batches: TensorPipeline,
    optimizer: torch.optim.Optimizer,
    plan: accel.AccelPlan | None = None,
    step_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    method: Method | None = None,
) -> float:
    """One pass over ``batches``; returns the mean training loss (nats, observed labels).

    ``plan`` switches on bf16 autocast where the device supports it; ``step_fn`` is the
    (optionally compiled) forward used for training; ``method`` (``train.method``, None for
    cross-entropy) gives the batch loss and steps any network it owns. The loss is accumulated on the device:
    one host sync per epoch, not per step.
    """
    model.train()
    plan = plan or accel.AccelPlan(device=batches.device)
    forward = step_fn or model
    meter = accel.DeviceMean(batches.device)
    for xb, yb, idx in batches:
        with accel.autocast(plan):
            loss = F.cross_entropy(forward(xb), yb) if method is None else method.loss(forward, xb, yb, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if method is not None:
            method.after_step()
        meter.add(loss.detach(), len(yb))
    return meter.value()


class TrainingDiverged(UserError):
    """The mean training loss of an epoch was not finite (docs/definitions.md, "Diverged run");
    nothing of that epoch was stored."""

    def __init__(self, epoch: int, loss: float, lr: float) -> None:
        super().__init__(f"diverged at epoch {epoch}: the training loss is {loss}; lower train.lr "
                         f"(now {lr:g}) or use a gentler train.schedule / train.warmup_epochs")
        self.epoch = epoch


class Trainer:
    """Trains ``model`` on ``data.x_train`` / ``data.y_train`` (observed labels).

    Args:
        model: a TappedModel.
        data: the noisy dataset.
        cfg: the [train] config section.
        probes: probes to run at ``probe_at`` epochs.
        probe_at: epochs (0..cfg.epochs) at which probes run.
        store: run store for metrics, checkpoints and resume state (None: keep nothing).
        checkpoint_at: epochs whose weights are kept as ``epoch_XXXX.safetensors``.
        probe_batch_size: evaluation batch size.
        on_epoch: called with an :class:`EpochReport` after every finished epoch.
    """

    def __init__(
        self,
        model: TappedModel,
        data: NoisyDataset,
        cfg: TrainConfig,
        probes: list[Probe],
        probe_at: list[int],
        store: RunStoreLike | None = None,
        checkpoint_at: set[int] | None = None,
        probe_batch_size: int = 2048,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.plan = accel.plan(self.device, precision=cfg.precision, compile=cfg.compile, model=model)
        accel.configure_backends(self.plan)
        self.model = accel.prepare_model(model.to(self.device), self.plan)
        self.step_fn = accel.compiled(self.model, self.plan)
        self.data = data
        self.probes = probes
        self.probe_at = set(probe_at)
        self.store = store
        self.checkpoint_at = set(checkpoint_at or ())
        self.probe_batch_size = probe_batch_size
        self.on_epoch = on_epoch
        self.optimizer = make_optimizer(self.model.parameters(), cfg)
        self.method = build_method(cfg, self.model, len(data.y_train), data.num_classes, data.noise,
                                   lambda params: make_optimizer(params, cfg))
        self.batches = TensorPipeline(
            data.x_train, data.y_train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=self.device,
            augment=cfg.augment or None, channels_last=self.plan.channels_last,
        )
        self.probe_state: dict = {}
        self.records: dict = {}
        self.best_val: tuple[int, float] | None = None  # (epoch, noisy-validation accuracy)

    def run_probes(self, epoch: int) -> list[Row]:
        """Every probe's rows at ``epoch``, from one pass over each split."""
        ctx = ProbeContext(epoch=epoch, device=self.device, batch_size=self.probe_batch_size,
                           state=self.probe_state)
        rows = run_probes(self.probes, self.model, self.data, ctx)
        self.records = ctx.records
        return rows

    def _finish_epoch(self, epoch: int, train_loss: float, lr: float) -> None:
        """Probes, then the store in an order a kill at any point repairs on resume: metric
        rows, weights, then the resume state (the commit point: everything after epoch
        ``e - 1`` is recomputed until it is written), then the clean-up of a superseded
        early-stopping checkpoint, then the status."""
        self.records = {}
        rows = self.run_probes(epoch) if epoch in self.probe_at else []
        if self.store is not None:
            val = [r.value for r in rows if (r.probe, r.subset, r.metric) == ("dynamics", "val", "acc")]
            best = early_stop_update(self.best_val, epoch, val[0]) if val else self.best_val
            train_rows = [Row(epoch, "train", "loss", train_loss, subset="train_running"),
                          Row(epoch, "train", "lr", lr)] if epoch > 0 else []
            self.store.append_metrics(rows + train_rows)
            for name, frame in self.records.items():
                self.store.write_record(name, epoch, frame)
            if epoch in self.checkpoint_at or (best is not None and best[0] == epoch):
                self.store.save_weights(self.model, epoch)
            self.store.save_resume(self.model, self.optimizer, epoch, self.probe_state)
            previous, self.best_val = self.best_val, best
            if previous is not None and best != previous and previous[0] not in self.checkpoint_at:
                self.store.delete_weights(previous[0])
            self.store.set_status("running", epoch)
        if self.on_epoch is not None:
            self.on_epoch(EpochReport(epoch, train_loss, lr, rows))

    def _tidy_checkpoints(self, done: int) -> None:
        """After a resume: drop weights no longer wanted (a superseded early-stopping
        checkpoint whose deletion a kill interrupted)."""
        keep = set(self.checkpoint_at) | ({self.best_val[0]} if self.best_val else set())
        for epoch in list(self.store.checkpoints()):
            if epoch <= done and epoch not in keep:
                self.store.delete_weights(epoch)

    def fit(self) -> TappedModel:
        """Train to ``cfg.epochs``, resuming from the store's resume state if present."""
        done = -1
        if self.store is not None:
            done, self.probe_state = self.store.load_resume(self.model, self.optimizer)
            self.store.truncate_metrics(done)
            self.store.truncate_records(done)
            self.best_val = best_val_epoch(self.store.metrics())
            self._tidy_checkpoints(done)
        if done < 0:
            self._finish_epoch(0, float("nan"), 0.0)
            done = 0
        for epoch in range(done + 1, self.cfg.epochs + 1):
            lr = lr_at(epoch - 1, self.cfg.lr, self.cfg.epochs, self.cfg.schedule, self.cfg.warmup_epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(self.cfg.seed * 1_000_003 + epoch)  # dropout etc.: same on resume
            self.batches.set_epoch(epoch)
            if self.method is not None:
                self.method.start_epoch(epoch, lr)
            loss = train_epoch(self.model, self.batches, self.optimizer, self.plan, self.step_fn, self.method)
            if not math.isfinite(loss):  # before anything of this epoch is stored: resume stays at e - 1
                raise TrainingDiverged(epoch, loss, lr)
            self._finish_epoch(epoch, loss, lr)
        return self.model
