"""The direct forward engine of a pack: an MLP's own forward on (K, B, ...) tensors.

Every ``nn.Linear`` becomes a :class:`_StackedLinear` bound to the pack's stacked (K, out, in)
weights (one batched GEMM for all members, no vmap), ``nn.Flatten`` skips the member
dimension, and the model's input standardization (:class:`~noisescope.models.base.InputNorm`)
reads the pack's stacked (K, C) ``mean`` / ``std``. Used by
:class:`~noisescope.packed.model.PackedModels` for noisescope MLPs; every other model runs
under ``torch.func.vmap``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from noisescope.models.base import InputNorm
from noisescope.models.mlp import MLP

_LAYOUT_WARNING = "grad and param do not obey the gradient layout contract"


@contextmanager
def _quiet_layout_warning() -> Iterator[None]:
    """Member-major (K, P) storage makes every parameter a strided view, which autograd's
    gradient-layout check reports as a (harmless, performance-only) warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_LAYOUT_WARNING)
        yield



def _signature(model: nn.Module) -> tuple:
    return (
        type(model),
        tuple((n, tuple(p.shape), p.dtype) for n, p in model.named_parameters()),
        tuple((n, tuple(b.shape), b.dtype) for n, b in model.named_buffers()),
    )


class _StackedLinear(nn.Module):
    """``nn.Linear`` for K members at once, bound to the pack's (K, out, in) / (K, out) leaves.

    Computed feature-major, y^T = W x^T + b per member (one batched GEMM), and returned as the
    (K, ..., out) transposed view: the weight gradient then comes out of autograd as a
    contiguous (K, out, in) tensor (no transposing copy into the member-major gradient
    buffer), and a following layer reads its input x^T contiguously. An input expanded from
    one shared batch (stride 0 over K, as ``forward_shared`` makes) is multiplied once by
    all K weight matrices."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.__dict__["weight"] = weight  # plain attributes: the pack owns these tensors
        self.__dict__["bias"] = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        k, out_f, in_f = w.shape
        lead = x.shape[1:-1]
        if x.stride(0) == 0 and k > 1 and not torch.is_grad_enabled():  # one batch shared by every member
            x0 = x[0].reshape(-1, in_f)
            y = x0 @ w.reshape(k * out_f, in_f).t()
            if b is not None:
                y += b.reshape(1, k * out_f)
            return y.view(-1, k, out_f).transpose(0, 1).reshape(k, *lead, out_f)
        xt = x.reshape(k, -1, in_f).transpose(1, 2)  # (K, in, B)
        yt = torch.baddbmm(b.unsqueeze(2), w, xt) if b is not None else torch.bmm(w, xt)  # (K, out, B)
        return yt.transpose(1, 2).reshape(k, *lead, out_f)


# modules that act elementwise, hence the same on (K, B, F) as on (B, F)
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Identity, nn.Dropout)


class _StackedInputNorm(nn.Module):
    """:class:`~noisescope.models.base.InputNorm` for K members on (K, B, ...) inputs, bound to
    the pack's stacked (K, C) ``mean`` / ``std`` buffers: the same elementwise operations,
    hence the same values, as each member's own."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.__dict__["mean"] = mean  # plain attributes: the pack owns these tensors
        self.__dict__["std"] = std
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, c = self.mean.shape
        if x.stride(0) == 0 and k > 1 and not torch.is_grad_enabled() and self._shared_stats():
            # one batch shared by every member, one normalization: computed once, kept
            # expanded (stride 0) so the first linear layer multiplies it once
            return self._normalize(x[0].unsqueeze(0), 1, c).expand(k, *x.shape[1:])
        return self._normalize(x, k, c)

    def _shared_stats(self) -> bool:
        return bool((self.mean == self.mean[:1]).all()) and bool((self.std == self.std[:1]).all())

    def _normalize(self, x: torch.Tensor, k: int, c: int) -> torch.Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x / self.scale
        if c > 1:
            if x.dim() != 5 or x.shape[2] != c:
                raise ValueError(f"input normalization has {c} channels but got input {tuple(x.shape)}")
            mean, std = self.mean[:k].view(k, 1, c, 1, 1), self.std[:k].view(k, 1, c, 1, 1)
        else:
            ones = (1,) * (x.dim() - 1)
            mean, std = self.mean[:k].view(k, *ones), self.std[:k].view(k, *ones)
        return (x - mean) / std


def _direct_engine(
    template: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor] | None = None
) -> nn.Module | None:
    """A copy of ``template`` that runs on (K, B, ...) inputs without vmap: every
    ``nn.Linear`` becomes a :class:`_StackedLinear` bound to the stacked leaves, every
    ``nn.Flatten`` skips the member dimension and the input standardization reads the stacked
    ``buffers``. Only for :class:`~noisescope.models.mlp.MLP` (its forward is known to use
    nothing else) whose only buffers are its ``input_norm``'s; None for anything else."""
    buffers = buffers or {}
    norm_buffers = {"input_norm.mean", "input_norm.std"}
    if type(template) is not MLP or any(n not in norm_buffers for n, _ in template.named_buffers()):
        return None
    engine = copy.deepcopy(template)

    def convert(module: nn.Module, prefix: str) -> bool:
        for name, child in list(module.named_children()):
            full = f"{prefix}{name}"
            if isinstance(child, nn.Linear) and type(child) is nn.Linear:
                bias = params.get(f"{full}.bias") if child.bias is not None else None
                setattr(module, name, _StackedLinear(params[f"{full}.weight"], bias))
            elif type(child) is nn.Flatten:
                s, e = child.start_dim, child.end_dim
                if s < 0:
                    return False
                setattr(module, name, nn.Flatten(s + 1, e + 1 if e >= 0 else e))
            elif type(child) is InputNorm and full == "input_norm":
                if f"{full}.mean" not in buffers or buffers[f"{full}.mean"].dim() != 2:
                    return False
                setattr(module, name, _StackedInputNorm(buffers[f"{full}.mean"], buffers[f"{full}.std"], child.scale))
            elif type(child) is nn.Sequential:
                if not convert(child, f"{full}."):
                    return False
            elif type(child) not in _ELEMENTWISE:
                return False
        return True

    if not convert(engine, "") or any(True for _ in engine.parameters()) or any(True for _ in engine.buffers()):
        return None
    return engine
