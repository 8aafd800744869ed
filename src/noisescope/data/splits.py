"""Seeded index selection: integer apportionment, class-balanced subsets, stratified splits.

All functions return int64 index tensors into the label vector they were given, sorted
ascending (so a subset keeps the source order), and depend only on their inputs and ``seed``.
"""

from __future__ import annotations

import dataclasses

import torch

from noisescope.data.base import Dataset


def apportion(weights: torch.Tensor, total: int, generator: torch.Generator) -> torch.Tensor:
    """Split the integer ``total`` in proportion to ``weights`` (largest-remainder method).

    Args:
        weights: (K,) non-negative floats, not all zero (unless ``total == 0``).
        total: the integer to split.
        generator: breaks ties between equal remainders (seeded, hence reproducible).

    Returns:
        (K,) int64 counts with ``sum == total`` and ``|count_k - total * w_k / sum(w)| < 1``;
        a zero weight always gets zero.
    """
    w = weights.double().clamp_min(0.0)
    k = len(w)
    if total == 0 or k == 0:
        return torch.zeros(k, dtype=torch.long)
    s = float(w.sum())
    if s <= 0:
        raise ValueError("apportion: all weights are zero but the total is positive")
    quota = w * (total / s)
    base = torch.floor(quota).long()
    rest = total - int(base.sum())
    if rest > 0:
        frac = quota - base.double()
        perm = torch.randperm(k, generator=generator)
        order = torch.argsort(-frac[perm], stable=True)
        chosen = perm[order[:rest]]
        base[chosen] += 1
    return base


def _check_labels(y: torch.Tensor) -> torch.Tensor:
    if y.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor, got shape {tuple(y.shape)}")
    return y.long()


def balanced_subset(
    y: torch.Tensor, size: int, seed: int = 0, num_classes: int | None = None
) -> torch.Tensor:
    """Seeded class-balanced subset of ``size`` samples.

    Every class gets ``size // C`` samples; when ``C`` does not divide ``size`` the remaining
    ``size % C`` go one each to classes chosen at random (seeded), so counts differ by at
    most one. Raises if a class has too few samples.

    Args:
        y: (N,) int labels.
        size: number of samples to keep, 1 <= size <= N.
        seed: random seed.
        num_classes: C (default ``y.max() + 1``).

    Returns:
        (size,) int64 indices into ``y``, sorted ascending.
    """
    y = _check_labels(y)
    c = int(num_classes) if num_classes is not None else int(y.max()) + 1
    if not 0 < size <= len(y):
        raise ValueError(f"subset size must lie in [1, {len(y)}], got {size}")
    g = torch.Generator().manual_seed(int(seed))
    counts = torch.full((c,), size // c, dtype=torch.long)
    extra = torch.randperm(c, generator=g)[: size % c]
    counts[extra] += 1
    avail = torch.bincount(y, minlength=c)
    short = (counts > avail).nonzero().flatten().tolist()
    if short:
        k = short[0]
        raise ValueError(
            f"a balanced subset of {size} needs {int(counts[k])} samples of class {k} but only "
            f"{int(avail[k])} exist; choose subset <= {int(avail.min()) * c}"
        )
    chosen = []
    for k in range(c):
        members = (y == k).nonzero().flatten()
        perm = torch.randperm(len(members), generator=g)
        chosen.append(members[perm[: int(counts[k])]])
    return torch.sort(torch.cat(chosen)).values


def stratified_split(
    y: torch.Tensor, fraction: float, seed: int = 0, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified hold-out split.

    The held-out part has ``round(fraction * N)`` samples, apportioned to the classes in
    proportion to their sizes (each class within one sample of ``fraction * N_c``).

    Args:
        y: (N,) int labels (true labels: the split must not depend on the noise draw).
        fraction: held-out share in [0, 1).
        seed: random seed.
        num_classes: C (default ``y.max() + 1``).

    Returns:
        ``(keep, held)``: disjoint sorted int64 index tensors covering ``range(N)``.
    """
    y = _check_labels(y)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must lie in [0, 1), got {fraction}")
    n = len(y)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    c = int(num_classes) if num_classes is not None else int(y.max()) + 1
    g = torch.Generator().manual_seed(stream_seed(seed, SPLIT_STREAM))
    sizes = torch.bincount(y, minlength=c)
    held_counts = apportion(sizes.double(), round(fraction * n), g)
    held = []
    for k in range(c):
        members = (y == k).nonzero().flatten()
        perm = torch.randperm(len(members), generator=g)
        held.append(members[perm[: int(held_counts[k])]])
    held_idx = torch.sort(torch.cat(held)).values
    is_held = torch.zeros(n, dtype=torch.bool)
    is_held[held_idx] = True
    return (~is_held).nonzero().flatten(), held_idx


SPLIT_STREAM = 0x5EED5


def stream_seed(seed: int, stream: int) -> int:
    """A seed for one random stream derived from a user's seed: the held-out split and the label
    noise both take ``seed`` values from the config, often the same number; drawn from
    ``Generator(seed)`` alike they would pick the same samples (the flipped samples would be
    exactly the validation samples). Mixing in a per-stream constant keeps them independent."""
    return (int(seed) * 0x9E3779B97F4A7C15 + int(stream)) % (2**63 - 1)


def subsample(
    ds: Dataset, subset: int | None = None, test_subset: int | None = None, seed: int = 0
) -> Dataset:
    """Seeded class-balanced subsets of train (``subset``) and test (``test_subset``)."""
    changes: dict = {}
    meta = dict(ds.meta)
    if subset:
        idx = balanced_subset(ds.y_train, int(subset), seed, ds.num_classes)
        base = ds.train_index if ds.train_index is not None else torch.arange(len(ds.y_train))
        changes.update(x_train=ds.x_train[idx], y_train=ds.y_train[idx], train_index=base[idx])
        meta["subset"] = {"size": int(subset), "seed": int(seed), "of": len(ds.y_train)}
    if test_subset:
        idx = balanced_subset(ds.y_test, int(test_subset), seed + 1, ds.num_classes)
        changes.update(x_test=ds.x_test[idx], y_test=ds.y_test[idx])
        meta["test_subset"] = {"size": int(test_subset), "seed": int(seed) + 1,
                               "of": len(ds.y_test)}
    if not changes:
        return ds
    return dataclasses.replace(ds, meta=meta, **changes)
