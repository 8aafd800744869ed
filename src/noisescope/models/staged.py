"""A network as a named sequence of stages: the shared shell of the conv and ViT models.

``StagedNet`` runs ``body`` (an ordered set of named stages) to get phi(x) and applies the
linear ``head``. Every stage is a tap except those listed in ``hidden`` (e.g. a final
BatchNorm-ReLU that only prepares the pooled features). The last stage is always a tap,
so phi(x) is the output of the last tap, as :class:`TappedModel` requires.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from noisescope.models.base import TappedModel


def image_shape(input_shape: tuple[int, ...], arch: str) -> tuple[int, int, int]:
    """(C, H, W) from an input shape of (C, H, W) or (H, W) (one channel).

    Raises:
        ValueError: if the shape is not an image shape.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(
            f"{arch} needs image inputs of shape (C, H, W) or (H, W), got {tuple(input_shape)}; "
            "use the 'mlp' architecture for flat feature vectors"
        )
    return shape  # type: ignore[return-value]


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) -> (B, C): mean over the spatial positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class StagedNet(TappedModel):
    """phi = body stages in order; f = head o phi.

    Args:
        body: stage name -> module, shallow to deep; the last one outputs (B, D).
        head: the linear classifier h: R^D -> R^C.
        hidden: stage names that are not taps (their outputs are not analysed).
    """

    def __init__(
        self,
        body: OrderedDict[str, nn.Module],
        head: nn.Linear,
        hidden: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        names = list(body)
        if not names or names[-1] in hidden:
            raise ValueError("the last stage of a StagedNet must be a tap (it outputs phi)")
        self.body = nn.Sequential(body)
        self.head = head
        self._hidden = tuple(hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, H, W) images -> (B, D) features phi(x)."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.normalize_input(x)
        if not x.is_floating_point():
            x = x.float()
        return self.body(x)

    def taps(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict(
            (name, m) for name, m in self.body.named_children() if name not in self._hidden
        )


def init_conv_weights(model: nn.Module) -> None:
    """He (fan-out) init for convolutions, unit BatchNorm, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def positive_int(arch: str, name: str, value: object) -> int:
    """``value`` as an int > 0, or a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{arch}: option {name} must be a positive integer, got {value!r}")
    return value
