"""Build what a run needs from its Config: data -> noise -> model, probes, its identity.

``prepare`` does everything that can fail on bad input (config, data files, model shape,
probe options) before a single file is written; :mod:`noisescope.runs.lifecycle` then creates
(or resumes) the run directory.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from noisescope.config import Config, ConfigError, config_hash
from noisescope.data.base import NoisyDataset
from noisescope.models import build_model
from noisescope.models.base import TappedModel
from noisescope.probes import Probe, make_probe


def run_path(cfg: Config) -> Path:
    name = cfg.run.name or (
        f"{cfg.data.name}-{cfg.noise.model}{cfg.noise.rate:g}-{cfg.model.arch}-{config_hash(cfg)}"
    )
    return Path(cfg.run.root) / name


def prepare_data(cfg: Config) -> NoisyDataset:
    """Load the dataset, take the subset, split noisy validation and apply label noise.

    Inputs keep their dtype (uint8 images stay uint8: 4x less device memory than float32);
    the standardization statistics of the training split (per channel for images) are
    recorded in ``data.noise["normalizer"]`` and applied per batch inside the model
    (:func:`prepare_model`)."""
    from noisescope.data import Normalizer, check_dataset, load_dataset, make_noisy_dataset

    try:
        dataset = load_dataset(cfg.data.name, seed=cfg.data.seed, **cfg.data.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data: {exc}") from None
    available = len(dataset.y_train)
    if cfg.data.subset > available:
        raise ConfigError(f"data.subset = {cfg.data.subset} is more than the {available} training samples of "
                          f"{cfg.data.name}; lower it or use 0 for all", field="data.subset")
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
    try:
        for message in check_dataset(noisy, val_fraction=cfg.data.val_fraction):
            warnings.warn(f"data: {message}", UserWarning, stacklevel=2)
    except ValueError as exc:
        raise ConfigError(f"data: {exc}") from None
    normalizer = Normalizer.fit(noisy.x_train)
    noisy.noise["normalizer"] = {**normalizer.to_dict(), "scale": input_scale(noisy.x_train)}
    return noisy


def input_scale(x: torch.Tensor) -> float:
    """255 for uint8 images (pixels to [0, 1] before standardization), else 1."""
    return 255.0 if x.dtype == torch.uint8 else 1.0


def prepare_model(cfg: Config, data: NoisyDataset) -> TappedModel:
    """Build the model with the training seed (same seed -> same initial weights), with the
    data's input standardization inside it (see :class:`~noisescope.models.base.InputNorm`)."""
    torch.manual_seed(cfg.train.seed)
    try:
        model = build_model(cfg.model.arch, data.input_shape, data.num_classes, **cfg.model.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.options: {exc}") from None
    norm = data.noise.get("normalizer")
    if norm:
        model.set_input_normalization(norm["mean"], norm["std"], norm.get("scale", 1.0))
    return model


def make_probes(cfg: Config) -> list[Probe]:
    """The config's probes with their options (``probe.options.<name>``)."""
    probes = []
    for name in cfg.probe.probes:
        try:
            probes.append(make_probe(name, **cfg.probe.options.get(name, {})))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"probe.options.{name}: {exc}") from None
    return probes


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
    make_probes(cfg)
    return Prepared(cfg, data, model, run_path(cfg))


def checkpoint_epochs(cfg: Config) -> set[int]:
    """Epochs whose weights are kept: the listed ones, every k-th, and always 0 and the last."""
    epochs = cfg.train.epochs
    chosen = {0, epochs, *cfg.run.checkpoint_epochs}
    if cfg.run.checkpoint_every:
        chosen.update(range(0, epochs + 1, cfg.run.checkpoint_every))
    return {e for e in chosen if 0 <= e <= epochs}
