"""Instance-dependent (corruption-aligned) noise: flips go where a sample already leans.

Given a reference embedding ``x_ref`` (N, F) (raw inputs, or features of a pretrained model),
class means mu_c are computed with the true labels. For sample i with true class y_i:

* target t_i = the nearest *other* class mean, argmin_{c != y_i} ||x_i - mu_c||;
* margin  m_i = ||x_i - mu_{t_i}|| - ||x_i - mu_{y_i}|| (small or negative = ambiguous).

Exactly K = round(rate * N) samples flip to their target. Low-margin samples are preferred:
the flipped set is the top-K of ``-m_i / (temperature * std(m)) + Gumbel noise`` (a seeded
sample without replacement with weights proportional to exp(-m_i / (temperature * std(m))));
``temperature=0`` flips exactly the K lowest-margin samples (ties broken at random).
"""

from __future__ import annotations

import torch

from noisescope.noise.base import NoiseResult
from noisescope.noise.transition import check_labels


def class_margins(
    x_ref: torch.Tensor, y: torch.Tensor, num_classes: int, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest other class (N,) int64 and margin (N,) float64 of every sample (see module).

    Computed in float64 for float64 embeddings, else in float32 on globally centred
    coordinates (which keeps ``|x|^2 - 2 x.m + |m|^2`` well conditioned), ``chunk`` rows at
    a time.
    """
    x = x_ref.detach().cpu().reshape(len(x_ref), -1)
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dt)
    counts = torch.bincount(y, minlength=num_classes)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"instance noise needs every class present; classes {missing} are empty")
    centre = x.mean(0, dtype=torch.float64).to(dt)
    sums = torch.zeros(num_classes, x.shape[1], dtype=torch.float64)
    for i in range(0, len(x), chunk):
        sums.index_add_(0, y[i : i + chunk], (x[i : i + chunk] - centre).double())
    means = (sums / counts[:, None].double()).to(dt)
    sq_means = (means * means).sum(1)
    dist = torch.empty(len(x), num_classes, dtype=torch.float64)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk] - centre
        d2 = (xb * xb).sum(1, keepdim=True) - 2 * xb @ means.T + sq_means
        dist[i : i + chunk] = d2.clamp_min(0).sqrt().double()
    own = dist.gather(1, y[:, None]).squeeze(1)
    other = dist.scatter(1, y[:, None], float("inf"))
    near, target = other.min(1)
    return target, near - own


def instance(
    y_true: torch.Tensor,
    num_classes: int,
    rate: float,
    seed: int,
    x_ref: torch.Tensor | None = None,
    temperature: float = 0.5,
) -> NoiseResult:
    """Corruption-aligned noise (see module docstring).

    Args:
        y_true: (N,) true labels in [0, C).
        num_classes: C >= 2.
        rate: η in [0, 1); exactly round(η N) samples flip.
        seed: random seed.
        x_ref: (N, ...) reference embedding (flattened; uint8 is scaled to [0, 1]).
        temperature: >= 0; how softly low margins are preferred (0 = strictly lowest first).
    """
    y = check_labels(y_true, num_classes)
    if x_ref is None:
        raise ValueError(
            "instance noise needs x_ref, a reference embedding (N, ...) of the samples"
        )
    if len(x_ref) != len(y):
        raise ValueError(f"x_ref has {len(x_ref)} rows but there are {len(y)} labels")
    if num_classes < 2:
        raise ValueError("instance noise needs num_classes >= 2")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    xr = torch.as_tensor(x_ref)
    xr = xr.float() / 255.0 if xr.dtype == torch.uint8 else xr
    target, margin = class_margins(xr, y, num_classes)
    k = round(rate * len(y))
    g = torch.Generator().manual_seed(int(seed))
    if temperature == 0:
        perm = torch.randperm(len(y), generator=g)
        order = perm[torch.argsort(margin[perm], stable=True)]
    else:
        scale = float(margin.std()) if len(y) > 1 else 1.0
        scale = scale if scale > 0 else 1.0
        u = torch.rand(len(y), generator=g, dtype=torch.float64).clamp_min(1e-300)
        gumbel = -torch.log(-torch.log(u))
        order = torch.argsort(-margin / (temperature * scale) + gumbel, descending=True)
    chosen = order[:k]
    obs = y.clone()
    obs[chosen] = target[chosen]
    params = {"rate": float(rate), "seed": int(seed), "temperature": float(temperature)}
    return NoiseResult.from_labels(y, obs, num_classes, "instance", params)
