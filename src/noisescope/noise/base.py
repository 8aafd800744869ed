"""The result every label-noise model returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class NoiseResult:
    """Noisy labels and what was realized.

    Attributes:
        labels: (N,) int64 observed labels.
        mask: (N,) bool, ``labels != true labels``.
        rate: realized noise rate, ``mask.float().mean()``.
        transitions: (C, C) int64 counts, ``transitions[i, j]`` = #samples with true class i
            and observed class j.
        model: the noise model's name, e.g. ``"symmetric"``.
        params: the parameters it was called with (JSON-serializable).
    """

    labels: torch.Tensor
    mask: torch.Tensor
    rate: float
    transitions: torch.Tensor
    model: str
    params: dict

    @classmethod
    def from_labels(
        cls, y_true: torch.Tensor, y_obs: torch.Tensor, num_classes: int, model: str, params: dict
    ) -> NoiseResult:
        y_true = y_true.long()
        y_obs = y_obs.long()
        mask = y_obs != y_true
        counts = torch.bincount(y_true * num_classes + y_obs, minlength=num_classes**2)
        return cls(
            labels=y_obs,
            mask=mask,
            rate=float(mask.float().mean()) if len(mask) else 0.0,
            transitions=counts.reshape(num_classes, num_classes),
            model=model,
            params=dict(params),
        )

    def summary(self) -> dict:
        """JSON-serializable description (for the run's config record)."""
        return {
            "model": self.model,
            "params": self.params,
            "realized_rate": self.rate,
            "transitions": self.transitions.tolist(),
        }
