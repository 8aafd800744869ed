"""Pair-flip (systematic, class-consistent) noise: class i -> map[i] with probability ``rate``.

The default map is ``i -> (i + 1) mod C``. A partial map (like the CIFAR-10 semantic map)
leaves unmapped classes untouched, so the realized overall rate is ``rate`` times the share of
samples in mapped classes.
"""

from __future__ import annotations

import torch

from noisescope.noise.base import NoiseResult
from noisescope.noise.transition import check_labels, sample_transition

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

#: CIFAR-10 semantic map: truck->automobile, bird->airplane, deer->horse, cat<->dog.
CIFAR10_SEMANTIC_MAP: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

NAMED_MAPS: dict[str, dict[int, int]] = {"cifar10": CIFAR10_SEMANTIC_MAP}


def resolve_map(class_map, num_classes: int) -> dict[int, int]:
    """Normalize a class map: None -> i->(i+1)%C; a name in NAMED_MAPS; a dict (keys may be
    strings, as TOML/JSON give them); or a length-C list (entry i = target of class i, or
    -1 / i for 'unchanged')."""
    c = num_classes
    if class_map is None:
        return {i: (i + 1) % c for i in range(c)}
    if isinstance(class_map, str):
        if class_map not in NAMED_MAPS:
            raise ValueError(f"unknown class map {class_map!r}; named maps: {sorted(NAMED_MAPS)}")
        m = dict(NAMED_MAPS[class_map])
    elif isinstance(class_map, dict):
        try:
            m = {int(k): int(v) for k, v in class_map.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"class_map keys and values must be class indices: {exc}") from exc
    else:
        seq = [int(v) for v in class_map]
        if len(seq) != c:
            raise ValueError(f"a list class_map needs {c} entries (one per class), got {len(seq)}")
        m = {i: v for i, v in enumerate(seq) if v >= 0 and v != i}
    for src, dst in m.items():
        if not (0 <= src < c and 0 <= dst < c):
            raise ValueError(f"class_map entry {src} -> {dst} is outside [0, {c})")
        if src == dst:
            raise ValueError(f"class_map maps class {src} to itself; drop that entry")
    return m


def pairflip_matrix(num_classes: int, rate: float, class_map=None) -> torch.Tensor:
    """(C, C) float64 matrix: mapped class i keeps 1 - rate, sends rate to map[i]."""
    p = torch.eye(num_classes, dtype=torch.float64)
    for src, dst in resolve_map(class_map, num_classes).items():
        p[src, src] = 1 - rate
        p[src, dst] = rate
    return p


def pairflip(
    y_true: torch.Tensor,
    num_classes: int,
    rate: float,
    seed: int,
    class_map=None,
    exact: bool = False,
) -> NoiseResult:
    """Pair-flip noise.

    Args:
        y_true: (N,) true labels in [0, C).
        num_classes: C.
        rate: η in [0, 1): flip probability for samples of a mapped class.
        seed: random seed.
        class_map: None (i -> i+1 mod C), ``"cifar10"`` (:data:`CIFAR10_SEMANTIC_MAP`), a dict
            {source: target} or a length-C list.
        exact: flip exactly (see :mod:`noisescope.noise.transition`) instead of Bernoulli.
    """
    y = check_labels(y_true, num_classes)
    m = resolve_map(class_map, num_classes)
    obs = sample_transition(y, pairflip_matrix(num_classes, rate, m), seed, exact)
    params = {"rate": float(rate), "seed": int(seed), "exact": bool(exact),
              "class_map": {str(k): v for k, v in sorted(m.items())}}
    return NoiseResult.from_labels(y, obs, num_classes, "pairflip", params)
