"""The training loop: device-resident batches, probes on a schedule, resumable by epoch.

Epoch numbering: "epoch e" is the state after e full passes; epoch 0 is the untrained control.
After each finished epoch the loop (1) runs the probes scheduled for it, (2) appends their rows
to the store, (3) saves the chosen checkpoints and the resume state. A run killed at any moment
therefore resumes from the last finished epoch and recomputes at most the epoch in progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from noisescope import accel
from noisescope.config import TrainConfig
from noisescope.data.base import NoisyDataset
from noisescope.models.base import TappedModel
from noisescope.pipeline import TensorPipeline
from noisescope.probes.base import Probe, ProbeContext, Row
from noisescope.run import best_val_epoch
from noisescope.schedule import lr_at
from noisescope.store import RunStore


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
) -> float:
    """One pass over ``batches``; returns the mean training loss (nats, observed labels).

    ``plan`` switches on bf16 autocast where the device supports it; ``step_fn`` is the
    (optionally compiled) forward used for training. The loss is accumulated on the device:
    one host sync per epoch, not per step.
    """
    model.train()
    plan = plan or accel.AccelPlan(device=batches.device)
    forward = step_fn or model
    meter = accel.DeviceMean(batches.device)
    for xb, yb, _idx in batches:
        with accel.autocast(plan):
            loss = F.cross_entropy(forward(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        meter.add(loss.detach(), len(yb))
    return meter.value()


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
        store: RunStore | None = None,
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
        self.batches = TensorPipeline(
            data.x_train, data.y_train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=self.device,
            augment=cfg.augment or None, channels_last=self.plan.channels_last,
        )
        self.probe_state: dict = {}
        self.best_val: tuple[int, float] | None = None  # (epoch, noisy-validation accuracy)

    def run_probes(self, epoch: int) -> list[Row]:
        ctx = ProbeContext(epoch=epoch, device=self.device, batch_size=self.probe_batch_size,
                           state=self.probe_state)
        rows: list[Row] = []
        for probe in self.probes:
            rows.extend(probe(self.model, self.data, ctx))
        return rows

    def _keep_best_val(self, epoch: int, rows: list[Row]) -> None:
        """Keep the weights of the best noisy-validation epoch so far (the early-stopping
        model; ties -> the earlier epoch), dropping the previous best unless it was asked for."""
        val = [r.value for r in rows if (r.probe, r.subset, r.metric) == ("dynamics", "val", "acc")]
        if self.store is None or not val or (self.best_val is not None and val[0] <= self.best_val[1]):
            return
        previous, self.best_val = self.best_val, (epoch, val[0])
        self.store.save_weights(self.model, epoch)
        if previous is not None and previous[0] not in self.checkpoint_at:
            self.store.delete_weights(previous[0])

    def _finish_epoch(self, epoch: int, train_loss: float, lr: float) -> None:
        rows = self.run_probes(epoch) if epoch in self.probe_at else []
        if self.store is not None:
            self._keep_best_val(epoch, rows)
            train_rows = [Row(epoch, "train", "loss", train_loss, subset="train_running"),
                          Row(epoch, "train", "lr", lr)] if epoch > 0 else []
            self.store.append_metrics(rows + train_rows)
            if epoch in self.checkpoint_at:
                self.store.save_weights(self.model, epoch)
            self.store.save_resume(self.model, self.optimizer, epoch)
            self.store.set_status("running", epoch)
        if self.on_epoch is not None:
            self.on_epoch(EpochReport(epoch, train_loss, lr, rows))

    def fit(self) -> TappedModel:
        """Train to ``cfg.epochs``, resuming from the store's resume state if present."""
        done = -1
        if self.store is not None:
            done = self.store.load_resume(self.model, self.optimizer)
            self.store.truncate_metrics(done)
            self.best_val = best_val_epoch(self.store.metrics())
        if done < 0:
            self._finish_epoch(0, float("nan"), 0.0)
            done = 0
        for epoch in range(done + 1, self.cfg.epochs + 1):
            lr = lr_at(epoch - 1, self.cfg.lr, self.cfg.epochs, self.cfg.schedule, self.cfg.warmup_epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(self.cfg.seed * 1_000_003 + epoch)  # dropout etc.: same on resume
            self.batches.set_epoch(epoch)
            loss = train_epoch(self.model, self.batches, self.optimizer, self.plan, self.step_fn)
            self._finish_epoch(epoch, loss, lr)
        return self.model
