"""A pack's state as flat tensors and safetensors files (resume), and its memory footprint."""

from __future__ import annotations

from pathlib import Path

import torch

from noisescope.io import atomic_write
from noisescope.packed.model import PackedModels
from noisescope.packed.optim import PackedOptimizer


def packed_state_dict(packed: PackedModels, opt: PackedOptimizer) -> dict[str, torch.Tensor]:
    """Models (``model.*``) and optimizer (``optim.*``) as flat CPU tensors, ready for
    ``safetensors.torch.save_file``."""
    out = {f"model.{k}": v.cpu() for k, v in packed.state_dict().items()}
    out.update({f"optim.{k}": v.cpu() for k, v in opt.state_dict().items()})
    return out


def load_packed_state_dict(packed: PackedModels, opt: PackedOptimizer, tensors: dict[str, torch.Tensor]) -> None:
    packed.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("optim.")})


def save_packed(path: str | Path, packed: PackedModels, opt: PackedOptimizer, epoch: int) -> None:
    """Resume state after ``epoch`` as one safetensors file, written atomically."""
    from safetensors.torch import save_file

    tensors = packed_state_dict(packed, opt)
    meta = {"epoch": str(int(epoch)), "members": str(packed.k)}
    atomic_write(Path(path), lambda p: save_file(tensors, str(p), metadata=meta))


def load_packed(path: str | Path, packed: PackedModels, opt: PackedOptimizer) -> int:
    """Restore :func:`save_packed`'s state; returns the epoch it was saved after."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if int(meta.get("members", packed.k)) != packed.k:
        raise ValueError(f"{path} holds {meta['members']} members, this pack has {packed.k}")
    load_packed_state_dict(packed, opt, tensors)
    return int(meta["epoch"])


def packed_nbytes(packed: PackedModels, opt: PackedOptimizer | None = None) -> int:
    """Bytes held by the pack: parameters, gradients, buffers, and the optimizer's state and
    scratch buffer (divide by ``packed.k`` for a per-member figure)."""
    total = packed.flat.nbytes + packed.grad.nbytes + sum(b.nbytes for b in packed.buffers.values())
    if opt is not None:
        scratch = {id(opt._tmp): opt._tmp, id(opt._tmp2): opt._tmp2}
        total += sum(t.nbytes for t in opt.state.values()) + sum(t.nbytes for t in scratch.values())
    return total
