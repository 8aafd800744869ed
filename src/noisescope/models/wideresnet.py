"""WideResNet-d-k (Zagoruyko & Komodakis, 2016): pre-activation blocks, three stages.

Depth d = 6n + 4 gives n blocks per stage; stage widths are 16k, 32k, 64k with strides
1, 2, 2; k = ``width`` is the widening factor (WRN-28-10: depth 28, width 10).

Taps (outputs for an input of shape (C, H, W); ``H/2`` etc. round up):

=========  ==========================  ==========================================
tap        shape                       what
=========  ==========================  ==========================================
stem       (B, 16, H, W)               first 3x3 convolution
stage1     (B, 16k, H, W)              residual stream after stage 1
stage2     (B, 32k, H/2, W/2)          ... stage 2
stage3     (B, 64k, H/4, W/4)          ... stage 3
pool       (B, 64k)                    final BN-ReLU and global average = phi(x)
=========  ==========================  ==========================================
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from noisescope.models.resnet import PreActBlock, conv3x3
from noisescope.models.staged import (
    GlobalAvgPool,
    StagedNet,
    image_shape,
    init_conv_weights,
    positive_int,
)


def build_wideresnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 28,
    width: int = 10,
    dropout: float = 0.0,
) -> StagedNet:
    """WRN-``depth``-``width``; ``dropout`` between the two convolutions of each block."""
    arch = "wideresnet"
    c, _, _ = image_shape(input_shape, arch)
    depth = positive_int(arch, "depth", depth)
    k = positive_int(arch, "width", width)
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(
            f"{arch}: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40), got {depth}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{arch}: dropout must lie in [0, 1), got {dropout}")
    n = (depth - 4) // 6
    body: OrderedDict[str, nn.Module] = OrderedDict(stem=conv3x3(c, 16))
    c_in = 16
    for i, w in enumerate((16 * k, 32 * k, 64 * k), start=1):
        blocks = []
        for j in range(n):
            stride = 2 if (i > 1 and j == 0) else 1
            blocks.append(PreActBlock(c_in, w, stride, dropout))
            c_in = w
        body[f"stage{i}"] = nn.Sequential(*blocks)
    body["post"] = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True))
    body["pool"] = GlobalAvgPool()
    model = StagedNet(body, nn.Linear(c_in, num_classes), hidden=("post",))
    init_conv_weights(model)
    return model


def build_wrn28(
    input_shape: tuple[int, ...], num_classes: int, width: int = 10, dropout: float = 0.0
) -> StagedNet:
    """WRN-28-k, k = ``width``."""
    return build_wideresnet(input_shape, num_classes, depth=28, width=width, dropout=dropout)
