"""One packed epoch: K members' batches (each in its own order, with its own labels) and one
optimizer step for all of them per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from noisescope import accel
from noisescope.packed.engine import _quiet_layout_warning
from noisescope.packed.model import PackedModels
from noisescope.packed.optim import PackedOptimizer
from noisescope.pipeline import TensorPipeline


def member_pipelines(
    x: torch.Tensor,
    ys: Sequence[torch.Tensor],
    seeds: Sequence[int],
    batch_size: int,
    device: torch.device | str = "cpu",
    **kwargs: object,
) -> list[TensorPipeline]:
    """One :class:`TensorPipeline` per member over a shared ``x`` (moved to ``device`` once;
    the pipelines share its storage) with the member's own labels and seed. ``kwargs`` go to
    every pipeline (``augment``, ``mean``, ``std``, ``drop_last``, ...)."""
    if len(ys) != len(seeds):
        raise ValueError(f"{len(ys)} label vectors for {len(seeds)} seeds")
    x = x.to(device)
    return [TensorPipeline(x, y, batch_size, shuffle=True, seed=s, device=device, **kwargs)  # type: ignore[arg-type]
            for y, s in zip(ys, seeds, strict=True)]


def _shares_gather(pipes: Sequence[TensorPipeline]) -> bool:
    """True when one index gather serves every member: the pipelines hold the same ``x``
    storage, no augmentation, the same normalization and no channels_last."""
    p0 = pipes[0]
    if not all(hasattr(p, "_order") and hasattr(p, "_affine") for p in pipes):
        return False
    for p in pipes:
        if p.augment is not None or p.channels_last or p.x.device != p0.x.device:
            return False
        if p.x.data_ptr() != p0.x.data_ptr() or p.x.shape != p0.x.shape or p.x.stride() != p0.x.stride():
            return False
        a, a0 = p._affine, p0._affine
        if (a is None) != (a0 is None):
            return False
        if a is not None and a0 is not None and not (torch.equal(a[0], a0[0]) and torch.equal(a[1], a0[1])):
            return False
    return True


def member_batches(pipes: Sequence[TensorPipeline]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This epoch's batches of K pipelines as ``(xb (K, B, ...), yb (K, B))``: member i's
    slice equals what pipeline i yields. Pipelines over one shared ``x`` without
    augmentation are served by one gather and one normalization per step for all members;
    others are iterated side by side and stacked."""
    if not _shares_gather(pipes):
        for batches in zip(*pipes, strict=True):
            yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        return
    p0 = pipes[0]
    orders = torch.stack([p._order() for p in pipes])  # (K, N): each member's own permutation
    labels = torch.stack([p.y for p in pipes])  # (K, N)
    bs = p0.batch_size
    for b in range(len(p0)):
        idx = orders[:, b * bs : (b + 1) * bs]
        yield p0.transform(p0.x[idx]), labels.gather(1, idx)


def train_packed_epoch(
    packed: PackedModels,
    batches_per_member: Sequence[TensorPipeline],
    opt: PackedOptimizer,
    lrs: float | Sequence[float] | torch.Tensor | None = None,
    *,
    epoch: int | None = None,
    plan: accel.AccelPlan | None = None,
    max_batches: int | None = None,
) -> torch.Tensor:
    """One pass for every member; returns each member's mean training loss (K,) float64 on
    the CPU (NaN for failed members).

    Args:
        packed: the models (put in train mode).
        batches_per_member: K pipelines with equal length and batch size (e.g. from
            :func:`member_pipelines`); member i's batches come from pipeline i, in its own
            order and with its own labels. A short last batch (``drop_last=False``) is short
            for every member alike, as in the unpacked loop.
        opt: the packed optimizer.
        lrs: per-member learning rates for this epoch (None: keep ``opt.lr``).
        epoch: if given, ``set_epoch(epoch)`` on every pipeline first.
        plan: bf16 autocast where planned (default: none).
        max_batches: stop after this many batches (benchmarks, smoke tests; None = all).

    Loss = sum over live members of each member's mean cross-entropy, so member i's
    gradient is exactly its unpacked gradient; one backward pass for all.
    """
    pipes = list(batches_per_member)
    if len(pipes) != packed.k:
        raise ValueError(f"{len(pipes)} pipelines for {packed.k} members")
    shapes = {(len(p), p.batch_size, len(p.x)) for p in pipes}
    if len(shapes) != 1:
        raise ValueError(f"member pipelines differ in (batches, batch size, samples): {sorted(shapes)}")
    if epoch is not None:
        for p in pipes:
            p.set_epoch(epoch)
    if lrs is not None:
        opt.set_lr(lrs)
    plan = plan or accel.AccelPlan(device=packed.device)
    packed.train()
    k = packed.k
    total = torch.zeros(k, dtype=torch.float64 if packed.device.type != "mps" else torch.float32,
                        device=packed.device)
    count = 0
    with _quiet_layout_warning():
        for step, (xb, yb) in enumerate(member_batches(pipes)):
            if max_batches is not None and step >= max_batches:
                break
            n = yb.shape[1]
            with accel.autocast(plan):
                logits = packed(xb)
                losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(k, n).mean(1)
            opt.zero_grad()
            live = packed.alive & torch.isfinite(losses.detach())
            torch.where(live, losses, torch.zeros_like(losses)).sum().backward()
            packed.screen(losses)
            opt.step()
            total += losses.detach().to(total.dtype) * n
            count += n
    out = (total / max(count, 1)).cpu().double()
    out[packed.failed] = float("nan")
    return out
