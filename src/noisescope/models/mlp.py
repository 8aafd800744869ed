"""Multi-layer perceptrons: Linear -> ReLU blocks and a linear head (Kubo et al.'s MLP3/5/7)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from noisescope.models.base import TappedModel


class MLP(TappedModel):
    """Flatten -> [Linear(width_i) -> ReLU] * L -> Linear(C).

    Taps are ``layer1 .. layerL``: each hidden block's output after its ReLU, shape (B, width_i).
    phi(x) is the last block's output.

    Args:
        in_features: flattened input size.
        widths: hidden widths, one per hidden layer (all > 0).
        num_classes: C.
    """

    def __init__(self, in_features: int, widths: list[int], num_classes: int) -> None:
        super().__init__()
        if not widths:
            raise ValueError("an MLP needs at least one hidden layer (widths is empty)")
        if any(int(w) <= 0 for w in widths):
            raise ValueError(f"every hidden width must be > 0, got {list(widths)}")
        self.flatten = nn.Flatten()
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        prev = in_features
        for i, w in enumerate(widths, start=1):
            blocks[f"layer{i}"] = nn.Sequential(nn.Linear(prev, int(w)), nn.ReLU())
            prev = int(w)
        self.blocks = nn.Sequential(blocks)
        self.head = nn.Linear(prev, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.flatten(self.normalize_input(x)).float())

    def taps(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict(self.blocks.named_children())


def build_mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    widths: list[int] | None = None,
    depth: int | None = None,
    width: int = 512,
) -> MLP:
    """MLP from explicit ``widths``, or ``depth`` hidden layers of ``width`` units."""
    if widths is None:
        widths = [width] * (depth if depth is not None else 3)
    return MLP(math.prod(input_shape), list(widths), num_classes)


def build_mlp3(input_shape: tuple[int, ...], num_classes: int, width: int = 512) -> MLP:
    """MLP3: 2 hidden ReLU layers."""
    return build_mlp(input_shape, num_classes, depth=2, width=width)


def build_mlp5(input_shape: tuple[int, ...], num_classes: int, width: int = 512) -> MLP:
    """MLP5: 4 hidden ReLU layers."""
    return build_mlp(input_shape, num_classes, depth=4, width=width)


def build_mlp7(input_shape: tuple[int, ...], num_classes: int, width: int = 512) -> MLP:
    """MLP7: 6 hidden ReLU layers."""
    return build_mlp(input_shape, num_classes, depth=6, width=width)
