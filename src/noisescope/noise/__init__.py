"""Label-noise models: one entry point, :func:`apply_noise`, dispatching by name.

``apply_noise(y_true, num_classes, model, rate, seed, x_ref=None, **options) -> NoiseResult``

===============  =================================================  ======================
model            what it does                                        options
===============  =================================================  ======================
``none``         observed = true labels                              -
``symmetric``    rate -> uniform other class (or any class)          include_true, exact
``pairflip``     rate -> class_map[i] (default i+1 mod C)            class_map, exact
``transition``   draw from a row-stochastic C x C matrix              matrix, exact
``instance``     exactly round(rate N) flips to the nearest other     temperature
                 class mean of ``x_ref``, low margins first
``file``         labels read from .npy/.npz/.csv/.json                path, key, indices
===============  =================================================  ======================

Every model is deterministic given ``seed`` and returns a :class:`NoiseResult` (labels, mask,
realized rate, realized C x C transition counts, parameters). ``rate`` must lie in [0, 1); the
``transition`` and ``file`` models take their rates from the matrix / file, so ``rate`` must be
0 for them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from noisescope.noise.base import NoiseResult
from noisescope.noise.file import file_labels
from noisescope.noise.instance import instance
from noisescope.noise.pairflip import CIFAR10_SEMANTIC_MAP, pairflip
from noisescope.noise.symmetric import symmetric
from noisescope.noise.transition import check_labels, transition


def no_noise(y_true: torch.Tensor, num_classes: int, seed: int = 0) -> NoiseResult:
    """Observed labels equal the true ones."""
    y = check_labels(y_true, num_classes)
    return NoiseResult.from_labels(y, y.clone(), num_classes, "none", {})


NOISE_MODELS: dict[str, Callable[..., NoiseResult]] = {
    "none": no_noise,
    "symmetric": symmetric,
    "pairflip": pairflip,
    "transition": transition,
    "instance": instance,
    "file": file_labels,
}

_RATELESS = {"none", "transition", "file"}


def apply_noise(
    y_true: torch.Tensor,
    num_classes: int,
    model: str = "none",
    rate: float = 0.0,
    seed: int = 0,
    x_ref: torch.Tensor | None = None,
    **options,
) -> NoiseResult:
    """Apply the noise model ``model`` to true labels ``y_true`` (N,).

    Args:
        y_true: (N,) int true labels in [0, C).
        num_classes: C.
        model: a name in :data:`NOISE_MODELS`.
        rate: noise rate η in [0, 1) (must be 0 for ``none``, ``transition`` and ``file``).
        seed: random seed (every random choice derives from it).
        x_ref: (N, ...) reference embedding, used by ``instance`` only.
        **options: the model's options (see the module table).

    Raises:
        ValueError: unknown model, rate out of range, or an option the model does not take.
    """
    key = model.lower()
    if key not in NOISE_MODELS:
        raise ValueError(f"unknown noise model {model!r}; choose from {sorted(NOISE_MODELS)}")
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must lie in [0, 1), got {rate}; e.g. 0.4 for 40% noise")
    fn = NOISE_MODELS[key]
    if key in _RATELESS:
        if rate != 0.0:
            raise ValueError(
                f"noise model {key!r} takes no rate (got {rate}); set the rate to 0"
                + (" and put the rates in the matrix" if key == "transition" else "")
            )
    else:
        options["rate"] = rate
    if key == "instance":
        options["x_ref"] = x_ref
    allowed = set(inspect.signature(fn).parameters) - {"y_true", "num_classes", "seed"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        opts = sorted(allowed - {"rate", "x_ref"}) or ["(none)"]
        raise ValueError(
            f"noise model {key!r} has no option {unknown[0]!r}; its options: {', '.join(opts)}"
        )
    return fn(y_true, num_classes, seed=int(seed), **options)


__all__ = [
    "CIFAR10_SEMANTIC_MAP",
    "NOISE_MODELS",
    "NoiseResult",
    "apply_noise",
    "file_labels",
    "instance",
    "no_noise",
    "pairflip",
    "symmetric",
    "transition",
]
