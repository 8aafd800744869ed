"""K same-architecture models as one: stacked parameters, a batched forward, members out and in."""

from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, vmap

from noisescope.models.base import TappedModel, _HeadInput
from noisescope.packed.engine import _direct_engine, _signature


class PackedModels:
    """K same-architecture :class:`TappedModel` s as one vmapped model.

    Args:
        models: the members, identical parameter/buffer names, shapes and dtypes. Their
            current weights are copied; the modules themselves are not used afterwards.
        device: where the stacked tensors live (default: the first model's device).
        engine: ``"vmap"`` (``torch.func.vmap`` over ``functional_call``: any architecture),
            ``"direct"`` (the model's own forward on (K, B, ...) tensors with batched
            linear layers and no vmap overhead: :class:`~noisescope.models.mlp.MLP` only) or
            ``"auto"`` (direct where possible, checked against vmap on the first batch).

    Attributes:
        k: number of members.
        flat: (K, P) all parameters, member-major (row i = member i's parameters).
        grad: (K, P) their gradients (``params[name].grad`` are views of it).
        params: name -> (K, ...) leaf tensor (a view of ``flat``), ``requires_grad=True``.
        buffers: name -> (K, ...) stacked buffers.
        template: the architecture on the meta device (no storage), used by functional_call.
        engine: ``"direct"`` or ``"vmap"``, the forward in use.
    """

    def __init__(
        self, models: Sequence[TappedModel], device: torch.device | str | None = None, engine: str = "auto"
    ) -> None:
        if engine not in ("auto", "vmap", "direct"):
            raise ValueError(f"engine must be 'auto', 'vmap' or 'direct', got {engine!r}")
        models = list(models)
        if not models:
            raise ValueError("PackedModels needs at least one model")
        first = models[0]
        sig = _signature(first)
        for i, m in enumerate(models[1:], start=1):
            if _signature(m) != sig:
                raise ValueError(
                    f"member {i} differs from member 0 in type or in parameter/buffer names, shapes or "
                    "dtypes; only models of one architecture and options can be packed"
                )
        named = list(first.named_parameters())
        if not named:
            raise ValueError("the model has no parameters")
        frozen = [n for n, p in named if not p.requires_grad]
        if frozen:
            raise ValueError(f"every parameter must require grad to be packed; frozen: {frozen[:5]}")
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise ValueError(f"parameters must share one floating dtype, got {sorted(map(str, dtypes))}")
        self.device = torch.device(device) if device is not None else named[0][1].device
        self.dtype = next(iter(dtypes))
        self.k = len(models)
        self.shapes: OrderedDict[str, torch.Size] = OrderedDict((n, p.shape) for n, p in named)
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for n, shape in self.shapes.items():
            size = math.prod(shape)
            self.offsets[n] = (start, start + size)
            start += size
        self.numel = start  # parameters per member
        k = self.k
        self.flat = torch.empty(k, self.numel, dtype=self.dtype, device=self.device)
        self.grad = torch.zeros_like(self.flat)
        with torch.no_grad():
            for i, m in enumerate(models):
                for n, p in m.named_parameters():
                    a, b = self.offsets[n]
                    self.flat[i, a:b].copy_(p.detach().reshape(-1))
        self.params: OrderedDict[str, torch.Tensor] = OrderedDict()
        for n, shape in self.shapes.items():
            a, b = self.offsets[n]
            leaf = self.flat[:, a:b].view(k, *shape).detach().requires_grad_(True)
            leaf.grad = self.grad[:, a:b].view(k, *shape)  # backward accumulates into self.grad
            self.params[n] = leaf
        self.buffers: OrderedDict[str, torch.Tensor] = OrderedDict(
            (n, torch.stack([dict(m.named_buffers())[n].detach() for m in models]).to(self.device))
            for n, _ in first.named_buffers()
        )
        # state_dict key -> parameter/buffer name (tied weights: several keys, one tensor)
        ids = {id(p): n for n, p in first.named_parameters()}
        ids.update({id(b): n for n, b in first.named_buffers()})
        self._state_keys = {key: ids[id(t)] for key, t in first.state_dict(keep_vars=True).items()}
        self.template: TappedModel = copy.deepcopy(first).to("meta")
        self.template.train(first.training)
        self._alive = torch.ones(k, dtype=torch.bool, device=self.device)
        self._batched = vmap(self._call, in_dims=(0, 0, 0), randomness="different")
        self._shared = vmap(self._call, in_dims=(0, 0, None), randomness="different")
        self._direct = _direct_engine(self.template, self.params, self.buffers) if engine != "vmap" else None
        if engine == "direct" and self._direct is None:
            raise ValueError(f"engine='direct' supports noisescope MLPs only, not {type(first).__name__}; "
                             "use engine='vmap' or 'auto'")
        self._verified = engine != "auto"
        if self._direct is not None:
            self._direct.train(first.training)

    # ----------------------------------------------------------------- modes and state
    @property
    def training(self) -> bool:
        return self.template.training

    @property
    def engine(self) -> str:
        return "direct" if self._direct is not None else "vmap"

    def train(self, mode: bool = True) -> PackedModels:
        self.template.train(mode)
        if self._direct is not None:
            self._direct.train(mode)
        return self

    def eval(self) -> PackedModels:
        return self.train(False)

    @property
    def alive(self) -> torch.Tensor:
        """(K,) bool on the device: members still training (no host sync)."""
        return self._alive

    @property
    def failed(self) -> torch.Tensor:
        """(K,) bool on the CPU: members whose loss or gradient became non-finite (frozen)."""
        return ~self._alive.cpu()

    def mark_failed(self, i: int) -> None:
        """Freeze member ``i`` by hand (e.g. a divergence detected by a probe)."""
        self._alive[i] = False

    def mark_alive(self, i: int) -> None:
        """Let member ``i`` train again (after :meth:`mark_failed`, e.g. a member frozen while
        others catch up with it); restore its optimizer rows first, which a failed member's
        steps zero (:meth:`PackedOptimizer.load_member_rows`)."""
        self._alive[i] = True

    def zero_grad(self) -> None:
        self.grad.zero_()

    def split(self, flat: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """A (K, P) tensor laid out like ``flat`` -> name -> (K, ...) views."""
        return OrderedDict(
            (n, flat[:, a:b].view(self.k, *self.shapes[n])) for n, (a, b) in self.offsets.items()
        )

    def screen(self, losses: torch.Tensor) -> None:
        """After backward: members whose loss (K,) or gradient is non-finite become failed;
        gradient rows of every failed member are zeroed. No host sync."""
        ok = torch.isfinite(losses.detach()) & torch.isfinite(self.grad.sum(dim=1))
        torch.logical_and(self._alive, ok, out=self._alive)
        # on a CPU reading the flags costs nothing: skip the pass while every member is alive
        if self.device.type != "cpu" or not bool(self._alive.all()):
            self.grad.masked_fill_(~self._alive.unsqueeze(1), 0.0)

    # ----------------------------------------------------------------------- forward
    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def _verify(self, x: torch.Tensor) -> None:
        """engine='auto': the direct engine must agree with vmap on a few samples of the
        first batch (eval mode), else the pack falls back to vmap with a warning."""
        self._verified = True
        if self._direct is None:
            return
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                xs = x[:, :2]
                a = self._direct(xs)
                b = self._batched(self.params, self.buffers, xs)
        finally:
            self.train(was)
        if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            warnings.warn(f"packed direct engine disagrees with vmap for {type(self.template).__name__}; "
                          "using vmap", stacklevel=3)
            self._direct = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, ...) one batch per member -> (K, B, C) logits."""
        if x.shape[0] != self.k:
            raise ValueError(f"expected a leading member dimension of {self.k}, got shape {tuple(x.shape)}")
        if not self._verified:
            self._verify(x)
        if self._direct is not None:
            return self._direct(x)
        return self._batched(self.params, self.buffers, x)

    __call__ = forward

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).expand(self.k, *x.shape)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) the same batch for every member -> (K, B, C) logits."""
        if not self._verified:
            self._verify(self._expand(x))
        if self._direct is not None:
            return self._direct(self._expand(x))
        return self._shared(self.params, self.buffers, x)

    def resolve_taps(self, names: list[str] | None = None) -> list[str]:
        """Tap names of the architecture (None = all), or dotted names of any submodule."""
        available = list(self.template.taps())
        if names is None:
            return available
        submodules = dict(self.template.named_modules())
        unknown = [n for n in names if n not in available and (not n or n not in submodules)]
        if unknown:
            raise ValueError(f"unknown tap(s) {unknown}; this model has taps {available} "
                             "(or give the dotted name of any submodule)")
        return list(names)

    @contextmanager
    def _capture(self, model: TappedModel, names: list[str], start: int) -> Iterator[dict[str, torch.Tensor]]:
        """Forward hooks on ``model``'s taps (as ``noisescope.taps.capture``: outputs flattened
        from dim ``start``: 1 inside vmap, where hooks see one member's tensors; 2 for the
        direct engine's (K, B, ...) tensors)."""
        modules = dict(model.taps())
        out: dict[str, torch.Tensor] = {}
        handles = []
        try:
            for name in names:
                module = modules[name] if name in modules else model.get_submodule(name)
                if isinstance(module, _HeadInput):
                    def pre_hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], name: str = name) -> None:
                        out[name] = inp[0].flatten(start)
                    handles.append(module.target.register_forward_pre_hook(pre_hook))
                else:
                    def hook(_m: nn.Module, _inp: object, output: torch.Tensor, name: str = name) -> None:
                        out[name] = output.flatten(start)
                    handles.append(module.register_forward_hook(hook))
            yield out
        finally:
            for h in handles:
                h.remove()

    def forward_with_taps(
        self, x: torch.Tensor, tap_names: list[str] | None = None, shared: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (K, B, C) and tap activations {tap: (K, B, F)} of every member from one
        packed forward pass. ``x``: (K, B, ...) per-member batches, or (B, ...) with
        ``shared=True`` (the same inputs for every member, e.g. a probe split)."""
        names = self.resolve_taps(tap_names)
        if not self._verified:
            self._verify(self._expand(x) if shared else x)
        if self._direct is not None:
            with self._capture(self._direct, names, 2) as acts:
                logits = self._direct(self._expand(x) if shared else x)
            return logits, {n: acts[n] for n in names}

        def run(params: dict, buffers: dict, xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            with self._capture(self.template, names, 1) as acts:
                logits = self._call(params, buffers, xb)
            return logits, {n: acts[n] for n in names}

        dims = (0, 0, None if shared else 0)
        return vmap(run, in_dims=dims, randomness="different")(self.params, self.buffers, x)

    @torch.no_grad()
    def iter_taps(
        self, x: torch.Tensor, tap_names: list[str] | None = None, batch_size: int = 1024
    ) -> Iterator[tuple[slice, torch.Tensor, dict[str, torch.Tensor]]]:
        """Stream one split ``x`` (N, ...) through every member in eval mode: yields
        ``(slice, logits (K, B, C), {tap: (K, B, F)})`` (the packed ``noisescope.taps.iter_taps``);
        the train/eval mode is restored afterwards."""
        was = self.training
        self.eval()
        try:
            for start in range(0, len(x), batch_size):
                sl = slice(start, min(start + batch_size, len(x)))
                logits, acts = self.forward_with_taps(x[sl].to(self.device), tap_names, shared=True)
                yield sl, logits, acts
        finally:
            self.train(was)

    @torch.no_grad()
    def packed_logits(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """Eval-mode logits of every member on one split: (N, ...) -> (K, N, C), one packed
        pass per batch of ``batch_size`` samples."""
        was = self.training
        self.eval()
        try:
            chunks = [self.forward_shared(x[s : s + batch_size].to(self.device)) for s in range(0, len(x), batch_size)]
        finally:
            self.train(was)
        if not chunks:
            return torch.empty(self.k, 0, self.template.num_classes, device=self.device)
        return torch.cat(chunks, dim=1)

    # ---------------------------------------------------------------------- members
    def member_state_dict(self, i: int) -> OrderedDict[str, torch.Tensor]:
        """Member ``i``'s ``state_dict`` (copies), keyed like the unpacked model's."""
        stacked = {**self.params, **self.buffers}
        return OrderedDict((key, stacked[n][i].detach().clone()) for key, n in self._state_keys.items())

    def member(self, i: int) -> TappedModel:
        """A real, independent module with member ``i``'s weights (for probes, checkpoints,
        export); changing it does not change the pack (see :meth:`load_member`)."""
        if not -self.k <= i < self.k:
            raise IndexError(f"member {i} out of range for {self.k} members")
        model = copy.deepcopy(self.template).to_empty(device=self.device)
        model.load_state_dict(self.member_state_dict(i))
        with torch.no_grad():  # non-persistent buffers are not in the state_dict
            persistent = set(self._state_keys.values())
            for n, b in model.named_buffers():
                if n not in persistent:
                    b.copy_(self.buffers[n][i])
        model.train(self.training)
        return model

    def load_member(self, i: int, state_dict: dict[str, torch.Tensor]) -> None:
        """Overwrite member ``i``'s weights from an unpacked ``state_dict`` (strict: every key
        of the architecture, no others). The member's optimizer state is left as is."""
        missing = sorted(set(self._state_keys) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(self._state_keys))
        if missing or unexpected:
            raise KeyError(f"load_member: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
        stacked = {**self.params, **self.buffers}
        with torch.no_grad():
            for key, n in self._state_keys.items():
                stacked[n][i].copy_(state_dict[key])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat, contiguous tensors: ``params.<name>`` and ``buffers.<name>`` (K, ...), and
        ``alive`` (K,) bool."""
        out = {f"params.{n}": p.detach().contiguous().clone() for n, p in self.params.items()}
        out.update({f"buffers.{n}": b.detach().contiguous().clone() for n, b in self.buffers.items()})
        out["alive"] = self._alive.clone()
        return out

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(tensors[f"params.{n}"])
            for n, b in self.buffers.items():
                b.copy_(tensors[f"buffers.{n}"])
            self._alive.copy_(tensors["alive"])
