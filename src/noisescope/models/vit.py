"""A small Vision Transformer for 32x32 (or 28x28) images: patch 4, pre-norm blocks.

The image is cut into (H/p) x (W/p) patches, each linearly embedded to ``width`` dims;
a learned class token and learned position embeddings are added; ``depth`` pre-norm
transformer blocks follow; phi(x) is the final LayerNorm of the class token
(``pool="cls"``) or of the mean token (``pool="mean"``).

Taps (T = 1 + (H/p)(W/p) tokens, D = ``width``; 65 tokens for 32x32, 50 for 28x28):

=========  ===============  ================================================
tap        shape            what
=========  ===============  ================================================
embed      (B, T, D)        patch embeddings + class token + positions
block1..L  (B, T, D)        residual stream after each transformer block
pool       (B, D)           final LayerNorm of the pooled token = phi(x)
=========  ===============  ================================================
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from noisescope.models.staged import StagedNet, image_shape, positive_int


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, 1 + HW/p^2, D): patches, class token, position embeddings."""

    def __init__(self, in_channels: int, num_patches: int, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, num_patches + 1, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)  # (B, HW/p^2, D)
        cls = self.cls.expand(len(x), -1, -1).to(tokens.dtype)
        return torch.cat([cls, tokens], dim=1) + self.pos.to(tokens.dtype)


class Attention(nn.Module):
    """Multi-head self-attention, (B, T, D) -> (B, T, D), via scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, T, d/heads)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class TokenPool(nn.Module):
    """(B, T, D) -> (B, D): final LayerNorm of the class token or of the token mean."""

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x[:, 0] if self.mode == "cls" else x[:, 1:].mean(dim=1)
        return self.norm(pooled)


def build_vit(
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int = 192,
    depth: int = 6,
    heads: int = 3,
    patch: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
    pool: str = "cls",
) -> StagedNet:
    """ViT with embedding dim ``width``, ``depth`` blocks of ``heads`` heads, ``patch``-pixel
    patches (H and W must be multiples of ``patch``)."""
    arch = "vit"
    c, h, w = image_shape(input_shape, arch)
    dim = positive_int(arch, "width", width)
    depth = positive_int(arch, "depth", depth)
    heads = positive_int(arch, "heads", heads)
    patch = positive_int(arch, "patch", patch)
    if dim % heads:
        raise ValueError(f"{arch}: width ({dim}) must be a multiple of heads ({heads})")
    if h % patch or w % patch:
        raise ValueError(f"{arch}: image size {h}x{w} must be a multiple of patch ({patch})")
    if pool not in ("cls", "mean"):
        raise ValueError(f"{arch}: pool must be 'cls' or 'mean', got {pool!r}")
    if mlp_ratio <= 0 or not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"{arch}: need mlp_ratio > 0 and dropout in [0, 1), got {mlp_ratio}, {dropout}"
        )
    body: OrderedDict[str, nn.Module] = OrderedDict(
        embed=PatchEmbed(c, (h // patch) * (w // patch), patch, dim)
    )
    for i in range(1, depth + 1):
        body[f"block{i}"] = Block(dim, heads, mlp_ratio, dropout)
    body["pool"] = TokenPool(dim, pool)
    model = StagedNet(body, nn.Linear(dim, num_classes))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    return model
