"""CIFAR-style VGG-11/16 with batch norm and width scaling.

Five blocks of [conv3x3-BN-ReLU] * m followed by 2x2 max-pooling (``ceil_mode``, so 28x28
inputs reach 1x1 like 32x32 ones), then a global average pool and one linear head.
Block widths are w, 2w, 4w, 8w, 8w; ``width`` w = 64 is the standard VGG.

Taps (outputs for an input of shape (C, H, W); sizes round up at each pooling):

=========  ==========================  ==========================================
tap        shape                       what
=========  ==========================  ==========================================
block1     (B, w, H/2, W/2)            after block 1 and its max-pool
block2     (B, 2w, H/4, W/4)           ...
block3     (B, 4w, H/8, W/8)
block4     (B, 8w, H/16, W/16)
block5     (B, 8w, H/32, W/32)         1x1 for 32x32 and 28x28 inputs
pool       (B, 8w)                     global average = phi(x)
=========  ==========================  ==========================================
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from noisescope.models.staged import (
    GlobalAvgPool,
    StagedNet,
    image_shape,
    init_conv_weights,
    positive_int,
)

# Convolutions per block, in units of the block's width multiplier (1, 2, 4, 8, 8).
CONFIGS: dict[str, list[int]] = {
    "vgg11": [1, 1, 2, 2, 2],
    "vgg13": [2, 2, 2, 2, 2],
    "vgg16": [2, 2, 3, 3, 3],
    "vgg19": [2, 2, 4, 4, 4],
}
_MULTIPLIERS = (1, 2, 4, 8, 8)


def build_vgg(
    input_shape: tuple[int, ...], num_classes: int, depth: int = 16, width: int = 64
) -> StagedNet:
    """VGG-``depth`` (11, 13, 16 or 19) with batch norm; first-block width ``width``."""
    arch = f"vgg{depth}"
    if arch not in CONFIGS:
        raise ValueError(f"vgg: depth must be one of 11, 13, 16, 19, got {depth!r}")
    c, _, _ = image_shape(input_shape, arch)
    w = positive_int(arch, "width", width)
    body: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = c
    for i, (convs, mult) in enumerate(zip(CONFIGS[arch], _MULTIPLIERS, strict=True), start=1):
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [
                nn.Conv2d(c_in, w * mult, 3, padding=1, bias=False),
                nn.BatchNorm2d(w * mult),
                nn.ReLU(inplace=True),
            ]
            c_in = w * mult
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
        body[f"block{i}"] = nn.Sequential(*layers)
    body["pool"] = GlobalAvgPool()
    model = StagedNet(body, nn.Linear(c_in, num_classes))
    init_conv_weights(model)
    return model


def build_vgg11(input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> StagedNet:
    """VGG-11 with batch norm."""
    return build_vgg(input_shape, num_classes, depth=11, width=width)


def build_vgg16(input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> StagedNet:
    """VGG-16 with batch norm."""
    return build_vgg(input_shape, num_classes, depth=16, width=width)
