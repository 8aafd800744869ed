"""Noisy-label training methods chosen by configuration: ``[train] method = "..."`` and
``method_options = {...}``.

========================= ========================================== ==========================
``train.method``          method (paper)                             defaults (from the paper)
========================= ========================================== ==========================
``ce``                    cross-entropy (the plain loop; no object)  --
``gce``                   generalized cross-entropy (Zhang &         q = 0.7
                          Sabuncu 2018)
``sce``                   symmetric cross-entropy (Wang et al. 2019) alpha = 0.1, beta = 1.0,
                                                                     log_zero A = -4
``elr``                   early-learning regularization (Liu et al.  lam = 3, beta = 0.7
                          2020)                                      (CIFAR-10)
``bootstrap_soft``        soft bootstrapping (Reed et al. 2015)      beta = 0.95
``bootstrap_hard``        hard bootstrapping (Reed et al. 2015)      beta = 0.8
``mixup``                 mixup (Zhang et al. 2018)                  alpha = 8 (corrupted
                                                                     labels, Table 2)
``coteaching``            Co-teaching (Han et al. 2018)              forget_rate = noise rate,
                                                                     ramp_epochs T_k = 10
``rank_tail``             feature-spectrum tail penalty (this        k = C, lam = 1
                          package; the seeds' rank-constraint
                          remedy as training)
========================= ========================================== ==========================

DivideMix (a Gaussian mixture on per-sample losses, the noisy part used unlabeled, two
networks, MixMatch) is not here: it did not fit this iteration's budget.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from noisescope.config.sections import TRAIN_METHODS, ConfigError, TrainConfig
from noisescope.methods.base import Method
from noisescope.methods.coteaching import CoTeaching
from noisescope.methods.losses import ELR, GCE, SCE, BootstrapHard, BootstrapSoft
from noisescope.methods.mixup import Mixup
from noisescope.methods.rank import SpectralTail
from noisescope.models.base import TappedModel

CLASSES: dict[str, type[Method]] = {
    "gce": GCE, "sce": SCE, "elr": ELR, "bootstrap_soft": BootstrapSoft, "bootstrap_hard": BootstrapHard,
    "mixup": Mixup, "coteaching": CoTeaching, "rank_tail": SpectralTail,
}
#: The papers' hyperparameters (``None``: filled from the run, see :func:`resolve_options`).
DEFAULTS: dict[str, dict[str, float | None]] = {
    "ce": {},
    "gce": {"q": 0.7},
    "sce": {"alpha": 0.1, "beta": 1.0, "log_zero": -4.0},
    "elr": {"lam": 3.0, "beta": 0.7},
    "bootstrap_soft": {"beta": 0.95},
    "bootstrap_hard": {"beta": 0.8},
    "mixup": {"alpha": 8.0, "seed": None},
    "coteaching": {"forget_rate": None, "ramp_epochs": 10, "seed": None},
    "rank_tail": {"k": None, "lam": 1.0},
}
#: Training compute of each method as a multiple of one cross-entropy run.
COMPUTE = {"ce": 1.0, **{name: cls.compute for name, cls in CLASSES.items()}}

assert {m: set(o) for m, o in DEFAULTS.items()} == {m: set(o) for m, o in TRAIN_METHODS.items()}, \
    "methods.DEFAULTS and config TRAIN_METHODS disagree (methods or option names)"


def nominal_noise_rate(noise: dict) -> float:
    """The noise model's nominal flip rate from a NoisyDataset's ``noise`` record: its ``rate``
    parameter, or ``1 - mean(diag(P))`` for a transition matrix P (uniform class prior)."""
    params = noise.get("params", {}) or {}
    if "rate" in params:
        return float(params["rate"])
    if "matrix" in params:
        p = torch.as_tensor(params["matrix"], dtype=torch.float64)
        return float(1 - p.diagonal().mean())
    return float(noise.get("realized_rate", 0.0))


def resolve_options(cfg: TrainConfig, num_classes: int, noise: dict | None = None) -> dict:
    """The method's defaults overridden by ``cfg.method_options``, the run-dependent ones filled:
    seeds from ``train.seed`` (mixup: the seed; Co-teaching: the peer's, seed + 1), Co-teaching's
    forget rate from the noise model (:func:`nominal_noise_rate`; the paper assumes the rate
    known), the tail penalty's k = C."""
    name = cfg.method
    if name not in DEFAULTS:
        raise ConfigError(f"train.method must be one of {', '.join(DEFAULTS)}, got {name!r}", field="train.method")
    opts = {**DEFAULTS[name], **cfg.method_options}
    if "seed" in opts and opts["seed"] is None:
        opts["seed"] = cfg.seed + (1 if name == "coteaching" else 0)
    if name == "coteaching" and opts["forget_rate"] is None:
        opts["forget_rate"] = nominal_noise_rate(noise or {})
    if name == "rank_tail" and opts["k"] is None:
        opts["k"] = num_classes
    return opts


def build_method(cfg: TrainConfig, model: TappedModel, n_train: int, num_classes: int,
                 noise: dict | None = None,
                 make_optimizer: Callable[[object], torch.optim.Optimizer] | None = None) -> Method | None:
    """The method object ``cfg.method`` names (None for ``"ce"``: the loop's plain path).

    Args:
        cfg: the [train] section; model: the run's model (on its device); n_train: N training
            rows; num_classes: C; noise: the dataset's noise record (Co-teaching's default
            forget rate); make_optimizer: params -> optimizer of the run's kind (Co-teaching's
            peer).
    """
    if cfg.method == "ce":
        return None
    opts = resolve_options(cfg, num_classes, noise)
    cls = CLASSES[cfg.method]
    if cls is CoTeaching:
        return CoTeaching(model, n_train, num_classes, opts, make_optimizer=make_optimizer)
    return cls(model, n_train, num_classes, opts)


__all__ = ["CLASSES", "COMPUTE", "DEFAULTS", "Method", "build_method", "nominal_noise_rate", "resolve_options"]
