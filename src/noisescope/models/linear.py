"""A linear classifier as a TappedModel: phi(x) is the (standardized, flattened) input and
the head is the only layer (the positive control of epoch-wise double descent trains one)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from noisescope.models.base import TappedModel


class Linear(TappedModel):
    """Flatten -> Linear(C). The one tap, ``features``, is the flattened input (B, D) after the
    model's input standardization; it is phi(x).

    Args:
        in_features: flattened input size D.
        num_classes: C.
        zero_init: start from zero weights and bias (gradient descent from zero, as the
            double-descent analyses assume); else PyTorch's default initialization.
    """

    def __init__(self, in_features: int, num_classes: int, zero_init: bool = True) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.phi = nn.Identity()
        self.head = nn.Linear(in_features, num_classes)
        if zero_init:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi(self.flatten(self.normalize_input(x)).float())

    def taps(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict(features=self.phi)


def build_linear(input_shape: tuple[int, ...], num_classes: int, zero_init: bool = True) -> Linear:
    """A linear classifier on the flattened input."""
    return Linear(math.prod(input_shape), num_classes, bool(zero_init))
