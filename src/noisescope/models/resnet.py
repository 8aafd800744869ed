"""CIFAR-style residual networks of width k: PreAct-ResNet18 (Nakkiran et al.) and ResNet18/34.

All use a 3x3 stride-1 stem (no max-pool) and four stages of basic blocks with widths
k, 2k, 4k, 8k and strides 1, 2, 2, 2; k = 64 is the standard ResNet18.

Taps (outputs for an input of shape (C, H, W); ``H/2`` etc. round up):

=========  ==========================  ===============================================
tap        shape                       what
=========  ==========================  ===============================================
stem       (B, k, H, W)                first convolution (ResNet: after BN-ReLU)
stage1     (B, k, H, W)                residual stream after stage 1
stage2     (B, 2k, H/2, W/2)           ... stage 2
stage3     (B, 4k, H/4, W/4)           ... stage 3
stage4     (B, 8k, H/8, W/8)           ... stage 4
pool       (B, 8k)                     global average pool = phi(x) (PreAct: after the
                                       final BN-ReLU)
=========  ==========================  ===============================================

A one-channel 28x28 input (Fashion-MNIST) gives stage4 of spatial size 4x4.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from noisescope.models.staged import (
    GlobalAvgPool,
    StagedNet,
    image_shape,
    init_conv_weights,
    positive_int,
)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus a shortcut (He et al., 2016).

    The projection shortcut (1x1 conv) reads the pre-activated input, as in the paper.
    Shapes: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(c_out, c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.drop(self.relu(self.bn2(out))))
        return out + skip


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut, then ReLU (He et al., 2015).

    Shapes: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _stages(
    block: type[nn.Module], widths: list[int], depths: list[int], c_in: int
) -> OrderedDict[str, nn.Module]:
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (w, n) in enumerate(zip(widths, depths, strict=True), start=1):
        stride = 1 if i == 1 else 2
        blocks = []
        for j in range(n):
            blocks.append(block(c_in, w, stride if j == 0 else 1))
            c_in = w
        stages[f"stage{i}"] = nn.Sequential(*blocks)
    return stages


def preact_resnet(
    input_shape: tuple[int, ...], num_classes: int, depths: list[int], width: int, arch: str
) -> StagedNet:
    """Pre-activation ResNet with stage widths (k, 2k, 4k, 8k) and ``depths`` blocks each."""
    c, _, _ = image_shape(input_shape, arch)
    k = positive_int(arch, "width", width)
    widths = [k, 2 * k, 4 * k, 8 * k]
    body: OrderedDict[str, nn.Module] = OrderedDict(stem=conv3x3(c, k))
    body.update(_stages(PreActBlock, widths, depths, k))
    body["post"] = nn.Sequential(nn.BatchNorm2d(8 * k), nn.ReLU(inplace=True))
    body["pool"] = GlobalAvgPool()
    model = StagedNet(body, nn.Linear(8 * k, num_classes), hidden=("post",))
    init_conv_weights(model)
    return model


def resnet(
    input_shape: tuple[int, ...], num_classes: int, depths: list[int], width: int, arch: str
) -> StagedNet:
    """Post-activation ResNet with stage widths (k, 2k, 4k, 8k) and ``depths`` blocks each."""
    c, _, _ = image_shape(input_shape, arch)
    k = positive_int(arch, "width", width)
    widths = [k, 2 * k, 4 * k, 8 * k]
    body: OrderedDict[str, nn.Module] = OrderedDict(
        stem=nn.Sequential(conv3x3(c, k), nn.BatchNorm2d(k), nn.ReLU(inplace=True))
    )
    body.update(_stages(BasicBlock, widths, depths, k))
    body["pool"] = GlobalAvgPool()
    model = StagedNet(body, nn.Linear(8 * k, num_classes))
    init_conv_weights(model)
    return model


def build_preact_resnet18(
    input_shape: tuple[int, ...], num_classes: int, width: int = 64
) -> StagedNet:
    """PreAct-ResNet18 of width k = ``width`` (Nakkiran et al.'s double-descent model)."""
    return preact_resnet(input_shape, num_classes, [2, 2, 2, 2], width, "preact_resnet18")


def build_resnet18(input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> StagedNet:
    """ResNet18 (CIFAR stem) with stage widths (k, 2k, 4k, 8k), k = ``width``."""
    return resnet(input_shape, num_classes, [2, 2, 2, 2], width, "resnet18")


def build_resnet34(input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> StagedNet:
    """ResNet34 (CIFAR stem) with stage widths (k, 2k, 4k, 8k), k = ``width``."""
    return resnet(input_shape, num_classes, [3, 4, 6, 3], width, "resnet34")
