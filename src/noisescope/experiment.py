"""One experiment from a Config: data -> noise -> model -> train (+probes) -> store.

``prepare`` does everything that can fail on bad input (config, data files, model shape)
before a single file is written; ``run_experiment`` then creates (or resumes) the run directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from noisescope.config import Config, ConfigError
from noisescope.data.base import NoisyDataset
from noisescope.models import build_model
from noisescope.models.base import TappedModel
from noisescope.probes import make_probe
from noisescope.schedule import probe_epochs
from noisescope.store import RunStore, environment
from noisescope.train import EpochReport, Trainer


def config_hash(cfg: Config) -> str:
    """Stable 10-hex-digit id of a resolved config (the run's name, where none is given).

    ``run.root`` and ``run.name`` are left out: they say where a run lives, not what it is.
    """
    d = cfg.to_dict()
    d["run"] = {k: v for k, v in d["run"].items() if k not in ("root", "name")}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def run_path(cfg: Config) -> Path:
    name = cfg.run.name or (
        f"{cfg.data.name}-{cfg.noise.model}{cfg.noise.rate:g}-{cfg.model.arch}-{config_hash(cfg)}"
    )
    return Path(cfg.run.root) / name


def prepare_data(cfg: Config) -> NoisyDataset:
    """Load the dataset, take the subset, split noisy validation, apply label noise, and
    standardize the inputs to float32 with statistics of the training split (per channel for
    images); the statistics are recorded in ``data.noise["normalizer"]``."""
    from noisescope.data import load_dataset, make_noisy_dataset, normalize

    try:
        dataset = load_dataset(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data: {exc}") from None
    try:
        noisy = make_noisy_dataset(
            dataset,
            noise=cfg.noise.model,
            rate=cfg.noise.rate,
            noise_seed=cfg.noise.seed,
            noise_options=cfg.noise.options,
            subset=cfg.data.subset,
            val_fraction=cfg.data.val_fraction,
            seed=cfg.data.seed,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"noise: {exc}") from None
    data, normalizer = normalize(noisy)
    data.noise["normalizer"] = normalizer.to_dict()
    return data


def prepare_model(cfg: Config, data: NoisyDataset) -> TappedModel:
    """Build the model with the training seed (same seed -> same initial weights)."""
    torch.manual_seed(cfg.train.seed)
    try:
        return build_model(cfg.model.arch, data.input_shape, data.num_classes, **cfg.model.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.options: {exc}") from None


@dataclass
class Prepared:
    cfg: Config
    data: NoisyDataset
    model: TappedModel
    path: Path


def prepare(cfg: Config) -> Prepared:
    """Validate everything that can fail on bad input; writes nothing."""
    data = prepare_data(cfg)
    model = prepare_model(cfg, data)
    for name in cfg.probe.probes:
        try:
            make_probe(name, **cfg.probe.options.get(name, {}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"probe.options.{name}: {exc}") from None
    return Prepared(cfg, data, model, run_path(cfg))


def run_experiment(
    cfg: Config,
    on_epoch: Callable[[EpochReport], None] | None = None,
    prepared: Prepared | None = None,
) -> Path:
    """Train and probe as ``cfg`` says; returns the run directory.

    An existing directory with the same config is resumed; one with a different config is an
    error (pick another ``run.name``).
    """
    p = prepared or prepare(cfg)
    store = RunStore(p.path)
    if store.exists():
        old = store.read_json("config.json")
        if old != cfg.to_dict():
            raise ConfigError(
                f"run.name: {p.path} already holds a run with a different config; "
                "choose another run.name or remove that directory"
            )
        if store.status().get("state") == "complete":
            return p.path
    else:
        store.write_json("config.json", cfg.to_dict())
        store.write_json("noise.json", p.data.noise)
    trainer = Trainer(
        p.model,
        p.data,
        cfg.train,
        probes=[make_probe(n, **cfg.probe.options.get(n, {})) for n in cfg.probe.probes],
        probe_at=probe_epochs(cfg.train.epochs, cfg.probe.schedule, cfg.probe.every, cfg.probe.points),
        store=store,
        checkpoint_at=checkpoint_epochs(cfg),
        probe_batch_size=cfg.probe.batch_size,
        on_epoch=on_epoch,
    )
    store.write_json("env.json", environment(trainer.device))
    try:
        trainer.fit()
    except BaseException as exc:
        store.set_status("failed", store.status().get("epoch", -1), error=repr(exc))
        raise
    from noisescope.run import summarize

    store.compact()
    store.write_json("summary.json", summarize(store.metrics()))
    store.set_status("complete", cfg.train.epochs)
    return p.path


def checkpoint_epochs(cfg: Config) -> set[int]:
    """Epochs whose weights are kept: the listed ones, every k-th, and always 0 and the last."""
    epochs = cfg.train.epochs
    chosen = {0, epochs, *cfg.run.checkpoint_epochs}
    if cfg.run.checkpoint_every:
        chosen.update(range(0, epochs + 1, cfg.run.checkpoint_every))
    return {e for e in chosen if 0 <= e <= epochs}
