"""Streaming class-wise activation sums by group: the class means S_clean,c and S_noisy,c.

Three groups (docs/definitions.md, "Internal signals"):

* ``clean``      -- samples with observed == true label, grouped by that label;
* ``noisy_true`` -- noisy samples (observed != true) grouped by their *true* label;
* ``noisy_obs``  -- the same noisy samples grouped by their *observed* label.

Sums are accumulated in float64 batch by batch, so the means equal full-batch means up to
float64 rounding and no (N, F) activation matrix is ever held.
"""

from __future__ import annotations

import torch

from noisescope.taps import iter_taps

GROUPS: tuple[str, ...] = ("clean", "noisy_true", "noisy_obs")


def group_onehot(y_true: torch.Tensor, y_obs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, 3C) float32 membership of each sample in the ``group * C + class`` cells.

    Clean rows (y_obs == y_true) have one 1 at ``0*C + y``; noisy rows two, at
    ``1*C + y_true`` and ``2*C + y_obs``. ``onehot.T @ acts`` gives the batch's (3C, F) sums.

    Args:
        y_true: (B,) int64 true labels.
        y_obs: (B,) int64 observed labels.
        num_classes: C.
    """
    if y_true.shape != y_obs.shape or y_true.dim() != 1:
        raise ValueError(f"y_true and y_obs must be 1-D of equal length, got "
                         f"{tuple(y_true.shape)} and {tuple(y_obs.shape)}")
    noisy = (y_obs != y_true).float()
    rows = torch.arange(len(y_true), device=y_true.device)
    onehot = torch.zeros(len(y_true), len(GROUPS) * num_classes, device=y_true.device)
    onehot[rows, y_true] = 1.0 - noisy
    onehot[rows, num_classes + y_true] = noisy
    onehot[rows, 2 * num_classes + y_obs] += noisy
    return onehot


class ClassSums:
    """Running sums (G=3, C, F) and counts (G, C) of activations by group and class.

    Batch sums are one float32 matrix product (exact float32 accumulation is assumed: the
    probe disables TF32 while it runs) added into float64 accumulators.

    Args:
        num_classes: C.
        num_features: F.
        device: where the float64 accumulators live.
    """

    def __init__(self, num_classes: int, num_features: int,
                 device: torch.device | str = "cpu") -> None:
        self.num_classes = int(num_classes)
        self.num_features = int(num_features)
        g = len(GROUPS)
        self.sums = torch.zeros(g * num_classes, num_features, dtype=torch.float64, device=device)
        self.counts = torch.zeros(g * num_classes, dtype=torch.float64, device=device)

    def update(self, acts: torch.Tensor, y_true: torch.Tensor, y_obs: torch.Tensor,
               onehot: torch.Tensor | None = None) -> None:
        """Add a batch: ``acts`` (B, F), labels (B,). ``onehot`` may pass a precomputed
        :func:`group_onehot` (shared by every tap of the same batch)."""
        if acts.dim() != 2 or acts.shape[1] != self.num_features:
            raise ValueError(f"acts must be (B, {self.num_features}), got {tuple(acts.shape)}")
        if onehot is None:
            onehot = group_onehot(y_true.to(acts.device), y_obs.to(acts.device), self.num_classes)
        batch = onehot.T @ acts.detach().float()
        self.sums += batch.to(self.sums.device, torch.float64)
        self.counts += onehot.sum(0).to(self.counts.device, torch.float64)

    def means(self) -> dict[str, torch.Tensor]:
        """Group name -> (C, F) float64 class means; NaN rows for empty (group, class)."""
        m = self.sums / self.counts.unsqueeze(1)  # 0/0 -> NaN for empty cells
        c = self.num_classes
        return {g: m[i * c:(i + 1) * c] for i, g in enumerate(GROUPS)}

    def group_counts(self) -> dict[str, torch.Tensor]:
        """Group name -> (C,) int64 sample counts."""
        c = self.num_classes
        return {g: self.counts[i * c:(i + 1) * c].long() for i, g in enumerate(GROUPS)}


def class_means(
    model: torch.nn.Module,
    x: torch.Tensor,
    y_true: torch.Tensor,
    y_obs: torch.Tensor,
    taps: list[str] | None = None,
    batch_size: int = 1024,
) -> dict[str, ClassSums]:
    """Stream ``x`` (N, ...) through ``model`` once; tap name -> filled :class:`ClassSums`.

    ``y_true``/``y_obs`` are (N,) labels; the number of classes is taken from the model's head.
    """
    if not (len(x) == len(y_true) == len(y_obs)):
        raise ValueError(f"x, y_true, y_obs lengths differ: {len(x)}, {len(y_true)}, {len(y_obs)}")
    num_classes = int(model.num_classes)
    out: dict[str, ClassSums] = {}
    for sl, _logits, acts in iter_taps(model, x, taps, batch_size):
        yt, yo = y_true[sl], y_obs[sl]
        onehot = group_onehot(yt.to(_logits.device), yo.to(_logits.device), num_classes)
        for name, a in acts.items():
            if name not in out:
                out[name] = ClassSums(num_classes, a.shape[1], a.device)
            out[name].update(a, yt, yo, onehot)
    return out
