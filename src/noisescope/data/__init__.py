"""Datasets as tensors, a registry of loaders, and the noisy train/validation/test split.

Two calls build an experiment's data::

    from noisescope.data import load_dataset, make_noisy_dataset
    ds = load_dataset("fashion_mnist", subset=10000, seed=0)          # -> Dataset
    data = make_noisy_dataset(ds, "symmetric", 0.4, val_fraction=0.1, seed=0)  # -> NoisyDataset

``load_dataset(name, *, subset=None, test_subset=None, seed=0, **options) -> Dataset``

==================  ======================================  ===================================
name                source                                  options
==================  ======================================  ===================================
``synthetic``       spiked covariance, planted k* (meta)    n, n_test, dim, k_star,
                                                            num_classes, signal, noise,
                                                            clusters_per_class
``two_scale``       two feature scales, linear teacher      n, n_test, fast_dim, slow_dim,
                    (double-descent control, 2 classes)     slow_scale, fast_weight, slow_weight
``large_input``     Gaussian classes, a few coordinates     n, n_test, dim, num_classes,
                    spiked (large-activation control)       spike_dims, spike_scale, spike_rate,
                                                            separation
``digits``          scikit-learn's bundled 8x8 digits       test_fraction
``mnist``           IDX files                               root, download
``fashion_mnist``   IDX files (/usr/share/datasets/...),    root, download, source
                    else the embedded 10k/5k subset         (auto | full | embedded)
``cifar10``         python pickle batches (safe unpickle)   root, download
``cifar100``        python pickle batches                   root, download, label_type
``arrays``          user numpy/torch arrays or an .npz      x_train, y_train, x_test, y_test,
                                                            path, num_classes, classes, name,
                                                            test_fraction
==================  ======================================  ===================================

``seed`` seeds generation (synthetic), the train/test split (digits, arrays without a test
split) and the subsets. ``subset`` / ``test_subset`` keep a seeded class-balanced subset of
train / test (``None`` or 0 = all); ``Dataset.train_index`` then records the source rows.
Images stay uint8 ``(N, C, H, W)``; features are float32 ``(N, D)``. Convert with
:class:`~noisescope.data.transforms.Normalizer` (fitted on the training split) or
:func:`~noisescope.data.transforms.normalize`. Files are searched, and downloaded with
``download=True``, as described in :mod:`noisescope.data.download`.

``fashion_mnist`` needs no download: without the installed dataset it falls back to a
class-balanced subset shipped inside the package (10000 train / 5000 test images, the exact
rows the demo's ``subset=10000, seed=0`` takes); ``source="embedded"`` asks for it directly,
``source="full"`` refuses the fallback (see :mod:`noisescope.data.embedded`).
Every Dataset carries ``source``, one line saying where its data came from (printed by the
command line), and :class:`~noisescope.data.base.NoisyDataset` inherits it.

Errors: missing files raise :class:`DataNotFoundError` (a ``FileNotFoundError``); an unusable
file (empty, truncated, corrupt, unsafe pickle) raises :class:`DataFileError` (a
``ValueError``) with one line naming the file; :func:`check_dataset` raises
:class:`DegenerateDataError` (a ``ValueError``) for data no experiment can learn from.
"""

from __future__ import annotations

import inspect
from importlib import import_module

from noisescope.data.base import Dataset, NoisyDataset
from noisescope.data.checks import DegenerateDataError, check_dataset
from noisescope.data.download import ChecksumError, DataFileError, DataNotFoundError
from noisescope.data.noisy import make_noisy_dataset
from noisescope.data.splits import balanced_subset, stratified_split, subsample
from noisescope.data.transforms import Normalizer, normalize, to_float

REGISTRY: dict[str, str] = {
    "synthetic": "noisescope.data.synthetic:make_spiked",
    "two_scale": "noisescope.data.controls:make_two_scale",
    "large_input": "noisescope.data.controls:make_large_input",
    "digits": "noisescope.data.digits:load_digits",
    "mnist": "noisescope.data.idx:load_idx_dataset",
    "fashion_mnist": "noisescope.data.embedded:load_fashion_mnist",
    "cifar10": "noisescope.data.cifar:load_cifar",
    "cifar100": "noisescope.data.cifar:load_cifar",
    "arrays": "noisescope.data.arrays:from_arrays",
}

_FIXED = {"mnist": {"name": "mnist"}, "cifar10": {"name": "cifar10"}, "cifar100": {"name": "cifar100"}}

_ALIASES = {"fashion-mnist": "fashion_mnist", "fmnist": "fashion_mnist",
            "cifar-10": "cifar10", "cifar-100": "cifar100"}

DATASETS = tuple(REGISTRY)

#: Alias: the error raised when a dataset's files are missing.
DatasetNotFoundError = DataNotFoundError


def _loader(key: str):
    module, attr = REGISTRY[key].split(":")
    return getattr(import_module(module), attr)


def dataset_options(name: str) -> list[str]:
    """The options ``load_dataset(name, ...)`` accepts besides subset/test_subset/seed."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(REGISTRY)}")
    params = inspect.signature(_loader(key)).parameters
    return [p for p in params if p not in _FIXED.get(key, {}) and p != "seed"]


def load_dataset(
    name: str,
    *,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    **options,
) -> Dataset:
    """Load a registered dataset (see the module table) as tensors.

    Args:
        name: a key of :data:`REGISTRY` (``fashion-mnist`` and ``cifar-10`` spellings work).
        subset: keep a seeded class-balanced training subset of this size (None/0 = all).
        test_subset: same for the test split.
        seed: data seed (generation, splits, subsets).
        **options: the loader's options.

    Raises:
        ValueError: unknown name or option (the message lists the valid ones).
        noisescope.data.download.DataNotFoundError: files missing (the message names them and
            the folders to put them in).
        noisescope.data.download.DataFileError: a file is unusable (one line naming it).
    """
    key = _ALIASES.get(name.lower(), name.lower())
    allowed = dataset_options(key)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"dataset {key!r} has no option {unknown[0]!r}; its options: "
            f"{', '.join(allowed) or '(none)'}"
        )
    fn = _loader(key)
    kwargs = dict(options, **_FIXED.get(key, {}))
    if "seed" in inspect.signature(fn).parameters:
        kwargs["seed"] = seed
    ds = fn(**kwargs)
    try:
        return subsample(ds, subset, test_subset, seed)
    except ValueError as exc:
        if "embedded" not in ds.meta:
            raise
        from noisescope.data.embedded import INSTALL_HINT

        raise ValueError(f"{exc}: the data are the {ds.source.split(';')[0]}; {INSTALL_HINT}") from None


__all__ = [
    "DATASETS",
    "ChecksumError",
    "DataFileError",
    "DataNotFoundError",
    "DatasetNotFoundError",
    "DegenerateDataError",
    "REGISTRY",
    "Dataset",
    "Normalizer",
    "NoisyDataset",
    "balanced_subset",
    "check_dataset",
    "dataset_options",
    "load_dataset",
    "make_noisy_dataset",
    "normalize",
    "stratified_split",
    "subsample",
    "to_float",
]
