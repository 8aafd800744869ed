"""Data no experiment can learn from, caught before a run is written.

``check_dataset(data, *, val_fraction=None, min_per_class=1) -> list[str]`` takes a
:class:`~noisescope.data.base.NoisyDataset` (or a plain :class:`~noisescope.data.base.Dataset`)
and raises :class:`DegenerateDataError` (a ``ValueError``) with one line naming the first hard
problem and its fix:

* fewer than 2 classes; an empty training split, or fewer training samples than classes;
* a class with fewer than ``min_per_class`` training samples (by true label);
* NaN or infinite inputs in any split;
* constant inputs: every training (or every test) input identical, i.e. zero variance across
  samples;
* an empty test split; an empty noisy-validation split although ``val_fraction > 0``.

Soft problems come back as a list of one-line warnings (empty when all is well): no
validation split at all (``val_fraction = 0``), validation or test smaller than the number of
classes or missing a class, a class that no observed (noisy) training label carries.
"""

from __future__ import annotations

import torch

from noisescope.data.base import Dataset, NoisyDataset


class DegenerateDataError(ValueError):
    """The data cannot support an experiment (one line: the problem and the fix)."""


def _class_name(k: int, classes: list[str] | None) -> str:
    return f"class {k} ({classes[k]!r})" if classes and k < len(classes) else f"class {k}"


def _all_identical(x: torch.Tensor, chunk: int = 4096) -> bool:
    """True when every row of ``x`` (N, ...) equals the first (N >= 2); stops at the first difference."""
    if len(x) < 2:
        return False
    first = x[:1]
    for i in range(1, len(x), chunk):
        if not torch.equal(x[i : i + chunk], first.expand_as(x[i : i + chunk])):
            return False
    return True


def _non_finite(x: torch.Tensor, chunk: int = 4096) -> bool:
    if not x.is_floating_point():
        return False
    return any(not bool(torch.isfinite(x[i : i + chunk]).all()) for i in range(0, len(x), chunk))


def check_dataset(
    data: NoisyDataset | Dataset, *, val_fraction: float | None = None, min_per_class: int = 1
) -> list[str]:
    """Raise on data no experiment can learn from; return warnings for weak spots.

    Args:
        data: a NoisyDataset (train / noisy validation / test) or a Dataset (train / test).
            Inputs ``x_*`` are (N, ...) uint8 or float; labels (N,) int64 in [0, C).
        val_fraction: the configured validation share; default ``data.noise["val_fraction"]``
            for a NoisyDataset (0 for a Dataset). An empty validation split is an error only
            when it is > 0.
        min_per_class: fewest training samples (by true label) a class may have.

    Returns:
        list of one-line warnings (empty when nothing is amiss).

    Raises:
        DegenerateDataError: one line naming the first hard problem and its fix.
    """
    c = int(data.num_classes)
    name = data.name
    noisy = isinstance(data, NoisyDataset)
    y_true = data.y_train_true if noisy else data.y_train
    n = len(y_true)
    if val_fraction is None:
        val_fraction = float(data.noise.get("val_fraction", 0.0)) if noisy else 0.0
    classes = data.classes

    def fail(msg: str) -> None:
        raise DegenerateDataError(f"data {name!r}: {msg}")

    if c < 2:
        fail(f"{c} class(es); a classification run needs at least 2")
    held = (f"data.val_fraction = {val_fraction:g} holds {len(data.y_val)} samples out for validation; lower it or "
            if noisy and val_fraction > 0 else "")  # name the split that took the samples
    if n == 0:
        fail(f"the training split is empty; {held}use a larger data.subset (0 = all) or check the data files")
    if n < c:
        fail(f"{n} training samples for {c} classes; {held}use a larger data.subset (0 = all)")
    counts = torch.bincount(y_true.long(), minlength=c)
    low = (counts < min_per_class).nonzero().flatten().tolist()
    if low:
        k = low[0]
        have = "no training samples" if int(counts[k]) == 0 else f"only {int(counts[k])} training samples"
        fail(
            f"{_class_name(k, classes)} has {have} (of {n}; {len(low)} class(es) below {min_per_class}); "
            f"{held}use a larger data.subset, or data whose labels cover every class (arrays: set num_classes to the "
            "classes present)"
        )
    splits = [("training", data.x_train)]
    if noisy:
        splits.append(("validation", data.x_val))
    splits.append(("test", data.x_test))
    for split, x in splits:
        if _non_finite(x):
            fail(f"the {split} inputs hold NaN or infinite values; clean the data (or drop those samples)")
    if _all_identical(data.x_train):
        fail(
            f"all {n} training inputs are identical (zero variance across samples): there is nothing to "
            "learn; the data files or arrays are broken"
        )
    m = len(data.y_test)
    if m == 0:
        fail("the test split is empty; " + ("raise data.options.n_test above 0" if name == "synthetic" else
             "give test data (arrays: x_test/y_test or test_fraction > 0, or a larger data.test_subset)"))
    if _all_identical(data.x_test):
        fail(f"all {m} test inputs are identical (zero variance across samples); the test data are broken")
    warnings: list[str] = []
    if noisy:
        v = len(data.y_val)
        if v == 0 and val_fraction > 0:
            fail(
                f"the noisy-validation split is empty (val_fraction = {val_fraction:g} of {n} samples rounds "
                "to 0), so early stopping and the choice of d have nothing to select on; raise "
                "data.val_fraction or data.subset"
            )
        if v == 0:
            warnings.append(
                "no noisy-validation split (data.val_fraction = 0): early stopping and spectral truncation "
                "have nothing to select on"
            )
        else:
            warnings += _coverage("noisy-validation", data.y_val_true, c, classes)
        observed = torch.bincount(data.y_train.long(), minlength=c)
        unseen = (observed == 0).nonzero().flatten().tolist()
        if unseen:
            warnings.append(
                f"no training sample carries observed label {_class_name(unseen[0], classes)}"
                f"{f' (and {len(unseen) - 1} more)' if len(unseen) > 1 else ''}: the model never sees it"
            )
    warnings += _coverage("test", data.y_test, c, classes)
    return warnings


def _coverage(split: str, y: torch.Tensor, c: int, classes: list[str] | None) -> list[str]:
    """Warnings when a split is smaller than C or lacks a class."""
    out = []
    if len(y) < c:
        out.append(f"the {split} split has {len(y)} samples for {c} classes: its accuracy is very coarse")
    missing = (torch.bincount(y.long(), minlength=c) == 0).nonzero().flatten().tolist()
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        out.append(f"the {split} split has no sample of {_class_name(missing[0], classes)}{more}")
    return out
