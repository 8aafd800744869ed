"""Dataset + label noise -> NoisyDataset (train and noisy validation noisy, test clean)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from noisescope.data.base import Dataset, NoisyDataset
from noisescope.data.splits import stratified_split, subsample
from noisescope.data.transforms import to_float
from noisescope.noise.base import NoiseResult


def make_noisy_dataset(
    ds: Dataset,
    noise: str | NoiseResult | Callable[[torch.Tensor], NoiseResult] = "none",
    rate: float = 0.0,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    subset: int | None = None,
    noise_seed: int | None = None,
    x_ref: torch.Tensor | None = None,
    noise_options: dict | None = None,
) -> NoisyDataset:
    """Corrupt the training labels and hold out a noisy-validation split.

    Steps: (0) with ``subset``, a seeded class-balanced training subset is taken first (as
    ``load_dataset(..., subset=...)`` does; ``ds.train_index`` records the source rows);
    (1) noise is applied once to all N training labels (so ``instance`` sees every sample and
    ``file`` labels line up with ``ds.train_index``); (2) a seeded split, stratified by the
    *true* label, holds out ``round(val_fraction * N)`` samples as the noisy validation set.
    The split does not depend on the noise, so runs that differ only in noise rate or model
    train on the same samples. The test split stays clean.

    Args:
        ds: the clean dataset.
        noise: a model name for :func:`noisescope.noise.apply_noise`, a precomputed
            :class:`NoiseResult` for ``ds.y_train``, or a callable ``y_true -> NoiseResult``.
        rate: noise rate (model names only).
        val_fraction: held-out share in [0, 1).
        seed: seed of the subset and the split (and of the noise unless ``noise_seed`` is
            given).
        subset: training-subset size (None or 0 = keep all).
        noise_seed: seed of the noise draw.
        x_ref: (N, ...) reference embedding for ``instance`` (default: ``ds.x_train`` as
            floats in [0, 1]).
        noise_options: extra options of the noise model (e.g. ``{"exact": True}``).

    Returns:
        NoisyDataset; ``noise`` holds the full-set summary plus realized rate and transition
        counts of the train and validation parts.
    """
    if subset:

        ds = subsample(ds, subset, None, seed)
    n = len(ds.y_train)
    nseed = seed if noise_seed is None else noise_seed
    if isinstance(noise, NoiseResult):
        result = noise
    elif callable(noise):
        result = noise(ds.y_train)
    else:
        from noisescope.noise import apply_noise

        opts = dict(noise_options or {})
        if noise == "instance" and x_ref is None:
            x_ref = to_float(ds.x_train)
        if noise == "file" and "indices" not in opts and ds.train_index is not None:
            opts["indices"] = ds.train_index
        result = apply_noise(ds.y_train, ds.num_classes, noise, rate, nseed, x_ref=x_ref, **opts)
    if not isinstance(result, NoiseResult) or len(result.labels) != n:
        raise ValueError(f"the noise must give a NoiseResult with {n} labels (one per sample)")
    train, val = stratified_split(ds.y_train, val_fraction, seed=seed, num_classes=ds.num_classes)
    y_obs = result.labels.long()

    def part(idx: torch.Tensor) -> dict:
        r = NoiseResult.from_labels(
            ds.y_train[idx], y_obs[idx], ds.num_classes, result.model, result.params
        )
        return {"size": len(idx), "realized_rate": r.rate, "transitions": r.transitions.tolist()}

    summary = result.summary()
    summary["params"] = {
        k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in summary["params"].items()
    }
    summary.update(seed=int(nseed), split_seed=int(seed), val_fraction=float(val_fraction),
                   train=part(train), val=part(val))
    return NoisyDataset(
        x_train=ds.x_train[train],
        y_train=y_obs[train],
        y_train_true=ds.y_train[train],
        x_val=ds.x_train[val],
        y_val=y_obs[val],
        y_val_true=ds.y_train[val],
        x_test=ds.x_test,
        y_test=ds.y_test,
        num_classes=ds.num_classes,
        name=ds.name,
        noise=summary,
        classes=ds.classes,
        source=ds.source,
    )
