"""Build what a run needs from its Config: data -> noise -> model, probes, its identity.

``prepare`` does everything that can fail on bad input (config, data files, model shape,
probe options) before a single file is written; :mod:`noisescope.runs.lifecycle` then creates
(or resumes) the run directory.
"""

from __future__ import annotations

import inspect
import os
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

    check_data_size(cfg)
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
        # 2 a class: class means and the probes' fit / held-out halves need two samples
        for message in check_dataset(noisy, val_fraction=cfg.data.val_fraction, min_per_class=2):
            warnings.warn(f"data: {message}", UserWarning, stacklevel=2)
    except ValueError as exc:
        raise ConfigError(f"data: {exc}") from None
    normalizer = Normalizer.fit(noisy.x_train)
    noisy.noise["normalizer"] = {**normalizer.to_dict(), "scale": input_scale(noisy.x_train)}
    return noisy


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_data_size(cfg: Config) -> None:
    """Refuse generated data (``synthetic``) larger than this machine's memory, before it is
    generated: (n + n_test) x dim float32 inputs and int64 labels."""
    if cfg.data.name != "synthetic":
        return  # file-backed data sets are as large as their files
    from noisescope.data.synthetic import make_spiked

    defaults = {k: p.default for k, p in inspect.signature(make_spiked).parameters.items()}
    opts = {**defaults, **cfg.data.options}  # the generator's own defaults, not copies of them
    try:
        n = int(opts["n"] if opts["n_train"] is None else opts["n_train"])  # n_train: make_spiked's alias of n
        n_test, dim = int(opts["n_test"]), int(opts["dim"])
    except (TypeError, ValueError):
        return  # the generator's own check names the bad option
    need = max(n + n_test, 0) * (max(dim, 0) * 4 + 8) * 2  # the tensors and one working copy
    have = memory_bytes()
    if have is not None and need > have:
        raise ConfigError(f"data.options: {n:,} + {n_test:,} synthetic samples of dim {dim:,} need about "
                          f"{_gib(need)}, more than this machine's {_gib(have)} of memory; lower "
                          "data.options.n / n_test / dim", field="data.options")


def check_model_size(cfg: Config, data: NoisyDataset) -> None:
    """Refuse a model whose training state (float32 weights, gradients and two optimizer moments:
    16 bytes a parameter) is larger than this machine's memory, before it is allocated (the
    parameters are counted on PyTorch's ``meta`` device, which allocates nothing)."""
    try:
        with torch.device("meta"):
            meta = build_model(cfg.model.arch, data.input_shape, data.num_classes, **cfg.model.options)
        count = sum(p.numel() for p in meta.parameters())
    except Exception:  # noqa: BLE001 - the real build below reports bad options
        return
    need, have = 16 * count, memory_bytes()
    if have is not None and need > have:
        raise ConfigError(f"model.options: {cfg.model.arch} with {cfg.model.options} has {count:,} parameters, "
                          f"about {_gib(need)} to train, more than this machine's {_gib(have)} of memory; "
                          "lower model.options (widths, depth)", field="model.options")


def input_scale(x: torch.Tensor) -> float:
    """255 for uint8 images (pixels to [0, 1] before standardization), else 1."""
    return 255.0 if x.dtype == torch.uint8 else 1.0


def prepare_model(cfg: Config, data: NoisyDataset) -> TappedModel:
    """Build the model with the training seed (same seed -> same initial weights), with the
    data's input standardization inside it (see :class:`~noisescope.models.base.InputNorm`)."""
    check_model_size(cfg, data)
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
    path = run_path(cfg)
    check_run_dir(path)
    data = prepare_data(cfg)
    model = prepare_model(cfg, data)
    make_probes(cfg)
    return Prepared(cfg, data, model, path)


_KERNEL_FS = ("/proc", "/sys", "/dev")


def check_run_dir(path: Path) -> None:
    """Refuse a run directory that can't be created and written (a ConfigError naming
    ``run.root`` / ``run.name``): a file where a directory must be, a place inside a kernel file
    system (/proc, /sys, /dev), or a directory this process may not write."""
    resolved = Path(os.path.abspath(path))
    root = path.parent
    if any(resolved == Path(k) or Path(k) in resolved.parents for k in _KERNEL_FS):
        raise ConfigError(f"run.root = {str(root)!r} lies in a kernel file system ({resolved.parts[1]}); "
                          "set run.root to a directory on disk, e.g. run.root='runs'", field="run.root")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run.name: {str(path)!r} is a file, not a run directory; choose another run.name "
                          "or move the file", field="run.name")
    existing = resolved
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"run.root = {str(root)!r}: {str(existing)!r} is a file, not a directory; set run.root "
                          "to a directory", field="run.root")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"run.root = {str(root)!r}: {str(existing)!r} is not writable; set run.root to a "
                          "writable directory or make it writable (chmod u+w)", field="run.root")


def checkpoint_epochs(cfg: Config) -> set[int]:
    """Epochs whose weights are kept: the listed ones, every k-th, and always 0 and the last."""
    epochs = cfg.train.epochs
    chosen = {0, epochs, *cfg.run.checkpoint_epochs}
    if cfg.run.checkpoint_every:
        chosen.update(range(0, epochs + 1, cfg.run.checkpoint_every))
    return {e for e in chosen if 0 <= e <= epochs}
