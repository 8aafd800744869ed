"""Forward hooks that capture tap outputs batch by batch, and always remove themselves.

``capture(model, names)`` is a context manager giving a dict that the hooks fill on each
forward pass with (B, F) flattened activations; ``iter_taps`` streams a whole tensor through
the model in eval mode and yields ``(index_slice, logits, {tap: (B, F)})`` so probes can reduce
activations on the fly without ever holding (N, F) for all N.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import nn

from noisescope.models.base import TappedModel, _HeadInput


def resolve_taps(model: TappedModel, names: list[str] | None = None) -> list[str]:
    """Validate tap names; None means every tap.

    A name is either one of ``model.taps()`` or the dotted name of any submodule of ``model``
    (as in ``model.named_modules()``, e.g. ``"blocks.layer1.1"``), so any module's output can
    be analysed, not only the declared taps.
    """
    available = list(model.taps())
    if names is None:
        return available
    submodules = dict(model.named_modules())
    unknown = [n for n in names if n not in available and (not n or n not in submodules)]
    if unknown:
        raise ValueError(
            f"unknown tap(s) {unknown}; this model has taps {available} "
            "(or give the dotted name of any submodule, see model.named_modules())"
        )
    return list(names)


def taps_of_type(model: TappedModel, types: type | tuple[type, ...] | list[str]) -> list[str]:
    """Dotted names of every submodule of ``model`` that is an instance of ``types``, in
    registration (forward) order; ``types`` may also be class names like ``["ReLU"]``.

    Example: ``taps_of_type(mlp, torch.nn.ReLU)`` -> ``["blocks.layer1.1", ...]``.
    """
    if isinstance(types, (list, tuple)) and all(isinstance(t, str) for t in types):
        wanted = set(types)
        names = [n for n, m in model.named_modules() if n and type(m).__name__ in wanted]
    else:
        names = [n for n, m in model.named_modules() if n and isinstance(m, types)]  # type: ignore[arg-type]
    if not names:
        raise ValueError(f"no submodule of type {types} in {type(model).__name__}")
    return names


@contextmanager
def capture(model: TappedModel, names: list[str] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Register forward hooks on the named taps; yield the dict they fill; remove them.

    After each forward pass ``out[name]`` holds that tap's output flattened to (B, F).
    """
    names = resolve_taps(model, names)
    modules = dict(model.taps())
    for name in names:
        if name not in modules:
            modules[name] = model.get_submodule(name)
    out: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in names:
            module = modules[name]
            if isinstance(module, _HeadInput):
                def pre_hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], name: str = name) -> None:
                    out[name] = inp[0].flatten(1)
                handles.append(module.target.register_forward_pre_hook(pre_hook))
            else:
                def hook(_m: nn.Module, _inp: object, output: torch.Tensor, name: str = name) -> None:
                    out[name] = output.flatten(1)
                handles.append(module.register_forward_hook(hook))
        yield out
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def iter_taps(
    model: TappedModel,
    x: torch.Tensor,
    names: list[str] | None = None,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> Iterator[tuple[slice, torch.Tensor, dict[str, torch.Tensor]]]:
    """Stream ``x`` (N, ...) through ``model`` in eval mode, yielding per batch
    ``(slice into x, logits (B, C), {tap: activations (B, F)})``.

    The model's train/eval mode is restored afterwards. Activations live on ``device``
    (default: the model's device) and are only valid until the next iteration.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with capture(model, names) as acts:
            for start in range(0, len(x), batch_size):
                sl = slice(start, min(start + batch_size, len(x)))
                xb = x[sl].to(device, non_blocking=True)
                logits = model(xb)
                yield sl, logits, dict(acts)
    finally:
        model.train(was_training)


INPUT_TAP = "input"  # the raw inputs, flattened, as a pseudo-tap (model=None)


class Consumer(Protocol):
    """Anything fed by :func:`stream_splits`: a probe's work at one epoch, an analysis.

    Attributes:
        taps: tap names it reads (resolved, see :func:`resolve_taps`); may be empty.
        splits: the splits it reads, e.g. ``("train", "test")``.
    """

    taps: list[str]
    splits: tuple[str, ...]

    def consume(self, split: str, sl: slice, logits: torch.Tensor | None,
                acts: dict[str, torch.Tensor]) -> None:
        """One batch: rows ``sl`` of the split, logits (B, C) (None for raw inputs), tap
        activations (B, F) valid only during the call."""

    def end(self, split: str) -> None:
        """The split has been streamed completely."""


def stream_splits(
    model: TappedModel | None,
    inputs: dict[str, torch.Tensor],
    consumers: list[Consumer],
    batch_size: int = 2048,
    device: torch.device | str | None = None,
) -> None:
    """Stream each split of ``inputs`` (in its order) through ``model`` once, feeding every
    consumer that reads it the union of the taps they need; then call their ``end(split)``.

    ``model=None`` streams the raw inputs, flattened to float32, as the tap ``"input"``. A split
    nobody reads, or an empty one, is skipped (``end`` is still called for an empty split).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    for split, x in inputs.items():
        active = [c for c in consumers if split in c.splits]
        if not active:
            continue
        names = list(dict.fromkeys(t for c in active for t in c.taps))
        if model is None:
            dev = torch.device(device) if device is not None else x.device
            for start in range(0, len(x), batch_size):
                sl = slice(start, min(start + batch_size, len(x)))
                acts = {INPUT_TAP: x[sl].to(dev).flatten(1).float()}
                for c in active:
                    c.consume(split, sl, None, acts)
        else:
            for sl, logits, acts in iter_taps(model, x, names, batch_size, device):
                for c in active:
                    c.consume(split, sl, logits, {t: acts[t] for t in c.taps})
        for c in active:
            c.end(split)
