"""Probe schedules and learning-rate schedules: pure functions of the epoch."""

from __future__ import annotations

import math


def probe_epochs(epochs: int, schedule: str = "every", every: int = 1, points: int = 30) -> list[int]:
    """Epochs at which probes run; always includes 0 (the untrained control) and ``epochs``.

    Args:
        epochs: total training epochs.
        schedule: ``"every"`` (each epoch), ``"every_k"`` (each ``every`` epochs), ``"log"``
            (about ``points`` log-spaced epochs, dense early, where learning is fastest) or
            ``"auto"`` (``"every"`` while that is at most ``points`` probed epochs, i.e.
            ``epochs < points``; ``"log"`` for longer runs: a 50-epoch run with 30 points is
            probed at 22 epochs, every one of the first 11, instead of 51).
    """
    if schedule == "auto":
        schedule = "every" if epochs < points else "log"
    if schedule == "every":
        chosen = set(range(epochs + 1))
    elif schedule == "every_k":
        chosen = set(range(0, epochs + 1, every))
    elif schedule == "log":
        chosen = {0}
        if epochs > 0:
            for i in range(points):
                chosen.add(round(math.exp(math.log(epochs + 1) * i / max(points - 1, 1))) - 1)
            chosen.add(1)
    else:
        raise ValueError(f"unknown probe schedule {schedule!r}; use every, every_k, log or auto")
    chosen.add(epochs)
    return sorted(e for e in chosen if 0 <= e <= epochs)


def lr_at(epoch: int, base_lr: float, epochs: int, schedule: str = "constant", warmup_epochs: int = 0) -> float:
    """Learning rate for (0-based) training epoch ``epoch``.

    ``constant``; ``cosine`` to 0 at the end; ``linear`` decay to 0; ``step``: x0.1 at 50% and 75%.
    A linear warm-up over ``warmup_epochs`` precedes any of them.
    """
    if warmup_epochs and epoch < warmup_epochs:
        return base_lr * (epoch + 1) / warmup_epochs
    t = (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1)
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "linear":
        return base_lr * (1 - t)
    if schedule == "step":
        return base_lr * (0.1 ** (int(t >= 0.5) + int(t >= 0.75)))
    raise ValueError(f"unknown lr schedule {schedule!r}")
