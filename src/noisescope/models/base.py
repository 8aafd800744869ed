"""The model interface every probe relies on: named taps and the split f = h o phi.

Any network that noisescope trains or analyses is a :class:`TappedModel`:

* ``features(x)`` returns the penultimate features phi(x), shape (B, D);
* ``head`` is the final linear layer h: R^D -> R^C (an ``nn.Linear``);
* ``forward(x) == head(features(x))``;
* ``taps()`` maps tap names to the modules whose *outputs* are analysed, in depth order.
  The last tap's output is phi(x).
* ``input_norm`` (optional, :meth:`TappedModel.set_input_normalization`): the per-batch input
  standardization ``(x / scale - mean) / std``, so image data stay uint8 on the device and a
  saved or exported model takes raw inputs. Subclasses call :meth:`normalize_input` first
  in ``features``.

A user's own ``nn.Module`` joins the same interface through :func:`wrap_model`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class InputNorm(nn.Module):
    """``(x.float() / scale - mean) / std`` per channel (dim 1 of 4-D inputs) or globally.

    Buffers ``mean`` and ``std`` (C,) float32 are saved with the model. ``scale`` is 255 for
    uint8 image data (pixels to [0, 1]) and 1 for float features.
    """

    def __init__(self, mean: list[float], std: list[float], scale: float = 1.0) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x / self.scale
        mean, std = self.mean, self.std
        if mean.numel() > 1:
            if x.dim() != 4 or x.shape[1] != mean.numel():
                raise ValueError(f"input normalization has {mean.numel()} channels but got input {tuple(x.shape)}")
            mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"channels={self.mean.numel()}, scale={self.scale:g}"


class TappedModel(nn.Module):
    """Base class: subclasses set ``self.head`` and implement ``features`` and ``taps``."""

    head: nn.Linear

    def set_input_normalization(self, mean: list[float], std: list[float], scale: float = 1.0) -> TappedModel:
        """Standardize inputs inside the model, per batch (see :class:`InputNorm`)."""
        self.input_norm = InputNorm(mean, std, scale)
        return self

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input standardization, or ``x`` unchanged when it has none."""
        norm = self._modules.get("input_norm")
        return x if norm is None else norm(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (B, ...) inputs -> (B, D) penultimate features."""
        raise NotImplementedError

    def taps(self) -> OrderedDict[str, nn.Module]:
        """Tap name -> module whose output is analysed, shallow to deep."""
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def feature_tap(self) -> str:
        """Name of the tap whose output is phi(x) (the last tap)."""
        return next(reversed(self.taps()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class WrappedModel(TappedModel):
    """A user ``nn.Module`` seen through the noisescope interface.

    phi(x) is the (flattened) input of the module named ``head``; taps are the named
    submodules given by the user (default: the module feeding the head is found by a hook).
    """

    def __init__(self, model: nn.Module, head: str, taps: list[str] | None = None) -> None:
        super().__init__()
        self.model = model
        modules = dict(model.named_modules())
        if head not in modules:
            raise ValueError(
                f"head={head!r} is not a submodule of the model; choose one of "
                f"{[n for n in modules if n][:20]}"
            )
        if not isinstance(modules[head], nn.Linear):
            raise TypeError(f"head={head!r} must be an nn.Linear, got {type(modules[head]).__name__}")
        self._head_name = head
        tap_names = list(taps or [])
        for t in tap_names:
            if t not in modules:
                raise ValueError(f"tap {t!r} is not a submodule of the model")
        self._tap_names = tap_names

    @property
    def head(self) -> nn.Linear:  # type: ignore[override]
        """The user's final layer (a property, so the state_dict holds it only once)."""
        return self.model.get_submodule(self._head_name)

    def taps(self) -> OrderedDict[str, nn.Module]:
        named = dict(self.model.named_modules())
        out = OrderedDict((t, named[t]) for t in self._tap_names)
        # phi is the head's input: expose it as the final tap via an identity view.
        out["features"] = _HeadInput(self.head)
        return out

    @property
    def feature_tap(self) -> str:
        return "features"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def grab(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            captured.append(inp[0])

        handle = self.head.register_forward_pre_hook(grab)
        try:
            self.model(x)
        finally:
            handle.remove()
        return captured[-1].flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize_input(x))


class _HeadInput(nn.Module):
    """Placeholder tap standing for the head's input (phi(x)); resolved by ``taps.capture``."""

    def __init__(self, head: nn.Linear) -> None:
        super().__init__()
        self.__dict__["target"] = head  # not registered: avoids a parameter cycle


def wrap_model(model: nn.Module, head: str, taps: list[str] | None = None) -> TappedModel:
    """Give any ``nn.Module`` the TappedModel interface.

    Args:
        model: the user's network; its forward must end in ``head``.
        head: dotted name of the final ``nn.Linear`` (e.g. ``"fc"`` or ``"classifier.2"``).
        taps: dotted names of submodules whose outputs to analyse, shallow to deep.
    """
    if isinstance(model, TappedModel):
        return model
    return WrappedModel(model, head=head, taps=taps)
