"""Packed runs: K runs that differ only in seeds, noise draw, learning rate or weight decay,
trained as one packed model (:mod:`noisescope.packed`), each in its own ordinary run directory.

``run_packed(cfgs)`` is :func:`~noisescope.runs.lifecycle.run_experiment` for K configs at
once. Each member keeps its own data order (``train.seed``), its own noisy labels
(``noise.seed``), initial weights, optimizer state, probes (run on the member's own model
and data, with its own cross-epoch state), early stopping (its best noisy-validation
checkpoint), checkpoints, per-sample records, and a run directory written exactly as an
unpacked run writes it (``config.json``, ``noise.json``, ``env.json``, metric parts,
``resume.safetensors`` in the unpacked format, ``summary.json``, ``status.json``): ``load_run``,
the report, a sweep and an unpacked ``run_experiment`` see ordinary runs, and an unpacked
run can resume a packed member's directory.

Numbers: a member's weights and metrics equal those of the same config trained unpacked up
to float rounding (batched and single matmuls round differently; see tests/test_packed_runs.py
for the tolerance), and a packed sweep killed at any file operation resumes bit for bit.

Epoch commit, for the members finishing epoch e together: (A) for each member its metric
rows, records and wanted weights; (B) for each member its resume state (the member's commit
point); (C) for each member the clean-up of a superseded best-validation checkpoint and
``status.json``. A kill between two members' resume writes leaves members one epoch apart;
the next start rebuilds the pack from every member's resume state and first recomputes the
behind members' epoch in the same pack slots, the members ahead frozen and restored
afterwards (a member's arithmetic does not depend on the other members' values), so every
member ends exactly as in an uninterrupted pack.

Failures: a member whose loss or gradient becomes non-finite is frozen in the pack and its
run recorded as failed (``status.json``: state ``failed``, ``error`` "non-finite loss at
epoch E", epoch = its last committed epoch); the others go on. An unpacked run does not
check for this (it would train on with NaN weights).

Limits: ``train.compile`` and channels_last are not applied to a pack; models with dropout
draw their masks from another random stream than an unpacked run (valid, not equal).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from noisescope import accel
from noisescope.config import Config, ConfigError, config_identity
from noisescope.metrics import Row
from noisescope.models.base import TappedModel
from noisescope.packed import (
    PACKABLE_FIELDS,
    PackedModels,
    PackedOptimizer,
    member_lrs,
    member_pipelines,
    train_packed_epoch,
)
from noisescope.probes import Probe, ProbeContext, run_probes
from noisescope.probes.base import split_inputs
from noisescope.probes.dynamics import best_val_epoch, early_stop_update, summarize
from noisescope.probes.engine import full_precision_matmul
from noisescope.runlock import RunLock
from noisescope.runs.build import Prepared, checkpoint_epochs, make_probes, prepare_data, prepare_model, run_path
from noisescope.runs.lifecycle import _warn_if_threads_differ
from noisescope.runs.store import RunStore, environment
from noisescope.schedule import probe_epochs
from noisescope.training.loop import EpochReport, make_optimizer, resolve_device

#: Dotted config fields in which the members of one pack may differ.
PACK_FIELDS = ("noise.seed", *(f"train.{f}" for f in PACKABLE_FIELDS))

OnEpoch = Callable[[EpochReport], None]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key.count(".") < 1:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def pack_key(cfg: Config) -> dict[str, Any]:
    """What must be equal for runs to share a pack: the resolved config without the
    :data:`PACK_FIELDS` and without ``run.root`` / ``run.name`` (where a run lives)."""
    flat = _flat(cfg.to_dict())
    flat["train.optimizer"] = str(flat["train.optimizer"]).lower()
    return {k: v for k, v in flat.items() if k not in PACK_FIELDS and k not in ("run.root", "run.name")}


def varying_fields(cfgs: Sequence[Config]) -> list[str]:
    """The :data:`PACK_FIELDS` whose values differ between ``cfgs``."""
    flats = [_flat(c.to_dict()) for c in cfgs]
    return [k for k in PACK_FIELDS if len({repr(f[k]) for f in flats}) > 1]


def pack_reason(cfgs: Sequence[Config]) -> str | None:
    """None if these configs can train as one pack, else why not (one line)."""
    cfgs = list(cfgs)
    if not cfgs:
        return "no runs"
    if any(c.train.method != "ce" for c in cfgs):
        return "the packed engine trains cross-entropy only (train.method must be \"ce\")"
    first = pack_key(cfgs[0])
    for i, c in enumerate(cfgs[1:], start=1):
        key = pack_key(c)
        diff = [k for k in first if key.get(k) != first[k]]
        if diff:
            return (f"run {i} differs from run 0 in {', '.join(diff[:4])} "
                    f"(packs may differ only in {', '.join(PACK_FIELDS)})")
    paths = [run_path(c).resolve() for c in cfgs]
    if len(set(paths)) != len(paths):
        return "two runs share one run directory"
    return None


@dataclass
class _Member:
    """One run of the pack: its config, prepared inputs, store and training state."""

    slot: int
    cfg: Config
    prep: Prepared
    store: RunStore
    probes: list[Probe]
    probe_at: set[int]
    checkpoint_at: set[int]
    on_epoch: OnEpoch | None = None
    state: str = "active"  # active | failed | complete
    done: int = -1  # last committed epoch
    probe_state: dict = field(default_factory=dict)
    best_val: tuple[int, float] | None = None
    pending: dict[str, Any] = field(default_factory=dict)


def prepare_pack(cfgs: Sequence[Config]) -> list[Prepared]:
    """:func:`~noisescope.runs.build.prepare` for every member (everything that can fail, before
    anything is written), loading the data once per distinct ``[data]`` + ``[noise]``: members
    that differ only in [train] fields share one noisy dataset."""
    datasets: dict[str, Any] = {}
    out = []
    for cfg in cfgs:
        key = json.dumps({"data": cfg.to_dict()["data"], "noise": cfg.to_dict()["noise"]}, sort_keys=True, default=str)
        if key not in datasets:
            datasets[key] = prepare_data(cfg)
        data = datasets[key]
        model = prepare_model(cfg, data)
        make_probes(cfg)
        out.append(Prepared(cfg, data, model, run_path(cfg)))
    return out


def _share_inputs(preps: Sequence[Prepared]) -> None:
    """Every member must see the same inputs in every split (only labels differ); they then
    share one copy of each."""
    d0 = preps[0].data
    for i, p in enumerate(preps[1:], start=1):
        for name in ("x_train", "x_val", "x_test"):
            mine, first = getattr(p.data, name), getattr(d0, name)
            if mine is not first and (mine.shape != first.shape or not torch.equal(mine, first)):
                raise ValueError(f"run {i} of the pack has other inputs ({name}) than run 0; only runs over "
                                 "the same data can be packed")
            setattr(p.data, name, first)


def run_packed(
    cfgs: Sequence[Config],
    on_epoch: OnEpoch | Sequence[OnEpoch | None] | None = None,
    prepared: Sequence[Prepared] | None = None,
) -> list[Path]:
    """Train and probe the runs ``cfgs`` as one pack; returns their run directories (in order).

    Args:
        cfgs: resolved configs that differ only in :data:`PACK_FIELDS` (:func:`pack_reason`).
        on_epoch: called with each member's :class:`EpochReport` after each of its epochs: one
            callable for all, or one per member.
        prepared: the members' :func:`~noisescope.runs.build.prepare` results, if already made
            (default: :func:`prepare_pack`).

    As :func:`~noisescope.runs.lifecycle.run_experiment`, per member: an existing directory
    with the same config is resumed, one with another config is an error (raised before
    anything is written), a complete one is left as it is, and the run is locked
    (:class:`~noisescope.runlock.RunLock`) while the pack trains. Members at different epochs
    (a kill between their commits) are brought to the same epoch exactly before the pack goes
    on. A member that diverges is recorded as failed and does not raise.
    """
    cfgs = list(cfgs)
    reason = pack_reason(cfgs)
    if reason:
        raise ConfigError(f"these runs can't be packed: {reason}")
    preps = list(prepared) if prepared is not None else prepare_pack(cfgs)
    _share_inputs(preps)
    hooks = list(on_epoch) if isinstance(on_epoch, Sequence) else [on_epoch] * len(cfgs)
    members = []
    for i, (cfg, p) in enumerate(zip(cfgs, preps, strict=True)):
        members.append(_Member(
            i, cfg, p, RunStore(p.path), make_probes(cfg),
            set(probe_epochs(cfg.train.epochs, cfg.probe.schedule, cfg.probe.every, cfg.probe.points)),
            checkpoint_epochs(cfg), hooks[i]))
    with ExitStack() as locks:
        for path in sorted({p.path.resolve() for p in preps}):  # one order for every process
            locks.enter_context(RunLock(path))
        _run_locked(members)
    return [p.path for p in preps]


def _run_locked(members: list[_Member]) -> None:
    for m in members:
        if m.store.exists() and config_identity(m.store.read_json("config.json")) != config_identity(m.cfg):
            raise ConfigError(f"run.name: {m.prep.path} already holds a run with a different config; "
                              "choose another run.name or remove that directory")
    for m in members:
        if m.store.exists():
            if m.store.status().get("state") == "complete":
                m.state = "complete"
                continue
            m.store.remove_stale_temporaries()
            _warn_if_threads_differ(m.store)
        m.store.write_json("noise.json", m.prep.data.noise)
        if not m.store.exists():
            m.store.write_json("config.json", m.cfg.to_dict())
    live = [m for m in members if m.state == "active"]
    if live:
        _Pack(live).fit()
    for m in live:
        if m.state == "active":
            m.store.compact()
            m.store.write_json("summary.json", summarize(m.store.metrics()))
            m.store.set_status("complete", m.cfg.train.epochs)


class _Pack:
    """The training of the live members of a pack (slots 0..K-1, in order)."""

    def __init__(self, members: list[_Member]) -> None:
        for slot, m in enumerate(members):
            m.slot = slot
        self.members = members
        c0 = members[0].cfg
        self.epochs = c0.train.epochs
        self.device = resolve_device(c0.train.device)
        self.plan = accel.plan(self.device, precision=c0.train.precision, compile=False, channels_last=False)
        accel.configure_backends(self.plan)
        for m in members:
            if m.store.read_json("env.json") is None:
                m.store.write_json("env.json", environment(self.device))

    def fit(self) -> None:
        try:
            self._build()
            while True:
                todo = [m for m in self.members if m.state == "active" and m.done < self.epochs]
                if not todo:
                    break
                low = min(m.done for m in todo)
                behind = [m for m in todo if m.done == low]
                if low < 0:
                    self._commit(behind, 0, torch.full((len(self.members),), math.nan))
                else:
                    self._train(behind, low + 1)
        except BaseException as exc:
            for m in self.members:
                if m.state == "active":
                    m.store.set_status("failed", m.store.status().get("epoch", -1), error=repr(exc))
            raise

    # ------------------------------------------------------------------------- set-up
    def _build(self) -> None:
        """Each member's model and torch optimizer from its resume state (or fresh), its
        store truncated to that epoch; then the pack and the packed optimizer from them."""
        models, optimizers = [], []
        for m in self.members:
            model = m.prep.model.to(self.device)
            optimizer = make_optimizer(model.parameters(), m.cfg.train)
            m.done, m.probe_state = m.store.load_resume(model, optimizer)
            m.store.truncate_metrics(m.done)
            m.store.truncate_records(m.done)
            m.best_val = best_val_epoch(m.store.metrics())
            keep = m.checkpoint_at | ({m.best_val[0]} if m.best_val else set())
            for epoch in list(m.store.checkpoints()):
                if epoch <= m.done and epoch not in keep:
                    m.store.delete_weights(epoch)
            models.append(model)
            optimizers.append(optimizer)
        self.packed = PackedModels(models, device=self.device)
        self.opt = PackedOptimizer.from_configs(self.packed, [m.cfg.train for m in self.members])
        c0 = self.members[0].cfg.train
        self.pipes = member_pipelines(self.members[0].prep.data.x_train, [m.prep.data.y_train for m in self.members],
                                      [m.cfg.train.seed for m in self.members], c0.batch_size, self.device,
                                      augment=c0.augment or None)
        self.batches = len(self.pipes[0])
        for m, optimizer in zip(self.members, optimizers, strict=True):
            self.opt.load_member_optimizer(m.slot, optimizer, steps=max(m.done, 0) * self.batches)

    # ----------------------------------------------------------------------- training
    def _train(self, behind: list[_Member], epoch: int) -> None:
        """Epoch ``epoch`` for the members ``behind`` (all live members, except after a kill
        between commits): any other live slot is frozen for the pass and restored after it."""
        slots = {m.slot for m in behind}
        alive = self.packed.alive.cpu()
        frozen = {s: (self.packed.member_state_dict(s), self.opt.member_rows(s))
                  for s in range(self.packed.k) if s not in slots and bool(alive[s])}
        for s in frozen:
            self.packed.mark_failed(s)
        self.opt.steps = (epoch - 1) * self.batches  # every member behind has taken this many
        lrs = member_lrs(epoch, [m.cfg.train for m in self.members])
        torch.manual_seed(self.members[0].cfg.train.seed * 1_000_003 + epoch)  # dropout etc.: same on resume
        losses = train_packed_epoch(self.packed, self.pipes, self.opt, lrs, epoch=epoch, plan=self.plan)
        for s, (weights, rows) in frozen.items():
            self.packed.load_member(s, weights)
            self.opt.load_member_rows(s, rows)
            self.packed.mark_alive(s)
        failed = self.packed.failed
        ok = []
        for m in behind:
            if bool(failed[m.slot]) or not math.isfinite(float(losses[m.slot])):
                m.state = "failed"
                m.store.set_status("failed", m.done, error=f"non-finite loss at epoch {epoch}")
            else:
                ok.append(m)
        self._commit(ok, epoch, losses, lrs)

    # ------------------------------------------------------------------------- probes
    def _probe(self, ms: list[_Member], models: dict[int, TappedModel], epoch: int) -> dict[int, tuple[list, dict]]:
        """Each member's probe rows and per-sample records at ``epoch``: every probe session
        is started on the member's own model, data and state. With the direct engine (MLPs)
        the splits go through the pack once (every member's logits and taps from one packed
        pass, the input standardization and first layer shared); otherwise each member runs
        the shared probe pass of :func:`~noisescope.probes.run_probes` on its own model."""
        out: dict[int, tuple[list, dict]] = {}
        ctxs = {m.slot: ProbeContext(epoch=epoch, device=self.device, batch_size=m.cfg.probe.batch_size,
                                     state=m.probe_state) for m in ms}
        if self.packed.engine != "direct" or self.packed.k == 1:
            for m in ms:
                out[m.slot] = (run_probes(m.probes, models[m.slot], m.prep.data, ctxs[m.slot]), ctxs[m.slot].records)
            return out
        if not ms:
            return out
        with torch.no_grad(), full_precision_matmul():
            sessions = {m.slot: [p.start(models[m.slot], m.prep.data, ctxs[m.slot]) for p in m.probes] for m in ms}
            for split, x in split_inputs(ms[0].prep.data).items():
                active = {slot: [s for s in ss if split in s.splits] for slot, ss in sessions.items()}
                names = list(dict.fromkeys(t for ss in active.values() for s in ss for t in s.taps))
                if not any(active.values()):
                    continue
                for sl, logits, acts in self.packed.iter_taps(x, names, ms[0].cfg.probe.batch_size):
                    for slot, ss in active.items():
                        mine = {t: a[slot].contiguous() for t, a in acts.items()}
                        for s in ss:
                            s.consume(split, sl, logits[slot], {t: mine[t] for t in s.taps})
                for ss in active.values():
                    for s in ss:
                        s.end(split)
            for m in ms:
                out[m.slot] = ([r for s in sessions[m.slot] for r in s.rows()], ctxs[m.slot].records)
        return out

    # ------------------------------------------------------------------------- commit
    def _commit(self, ms: list[_Member], epoch: int, losses: torch.Tensor, lrs: list[float] | None = None) -> None:
        """Epoch ``epoch`` finished for ``ms``: probes and files in the unpacked loop's order,
        phase by phase over the members (see the module docstring)."""
        models = {m.slot: self.packed.member(m.slot) for m in ms}
        probed = self._probe([m for m in ms if epoch in m.probe_at], models, epoch)
        for m in ms:  # (A) metric rows, records, weights
            model = models[m.slot]
            rows, records = probed.get(m.slot, ([], {}))
            val = [r.value for r in rows if (r.probe, r.subset, r.metric) == ("dynamics", "val", "acc")]
            best = early_stop_update(m.best_val, epoch, val[0]) if val else m.best_val
            lr = lrs[m.slot] if lrs is not None and epoch > 0 else 0.0
            loss = float(losses[m.slot])
            train_rows = [Row(epoch, "train", "loss", loss, subset="train_running"),
                          Row(epoch, "train", "lr", lr)] if epoch > 0 else []
            m.store.append_metrics(rows + train_rows)
            for name, frame in records.items():
                m.store.write_record(name, epoch, frame)
            if epoch in m.checkpoint_at or (best is not None and best[0] == epoch):
                m.store.save_weights(model, epoch)
            m.pending = {"model": model, "best": best, "report": EpochReport(epoch, loss, lr, rows)}
        for m in ms:  # (B) the commit points
            model = m.pending["model"]
            optimizer = self.opt.member_optimizer(m.slot, model)
            for group in optimizer.param_groups:  # as the unpacked loop leaves it
                group["lr"] = m.pending["report"].lr if epoch > 0 else m.cfg.train.lr
            m.store.save_resume(model, optimizer, epoch, m.probe_state)
            m.done = epoch
        for m in ms:  # (C) clean-up, status, callbacks
            previous, m.best_val = m.best_val, m.pending["best"]
            if previous is not None and m.best_val != previous and previous[0] not in m.checkpoint_at:
                m.store.delete_weights(previous[0])
            m.store.set_status("running", epoch)
            report = m.pending["report"]
            m.pending = {}
            if m.on_epoch is not None:
                m.on_epoch(report)
