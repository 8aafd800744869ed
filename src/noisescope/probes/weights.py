"""``WeightsProbe``: the weight-space view on the probe schedule (no forward pass).

Rows (probe ``"weights"``, tap = layer name, subset ``""``; definitions in docs/definitions.md,
"Weights", and docs/weights.md):

================== =========================================================================
metric             value
================== =========================================================================
sv                 singular value s_k of the layer's weight matrix (index k, 0-based)
alpha              power-law exponent of the eigenvalue tail (KS-chosen x_min)
alpha_xmin         the tail's lower cutoff
alpha_ks           Kolmogorov-Smirnov distance of the fit
alpha_n_tail       eigenvalues in the tail
alpha_se           standard error (alpha - 1) / sqrt(n_tail)
stable_rank        sum s^2 / s_1^2
spectral_norm      s_1
frobenius_norm     sqrt(sum s^2)
effective_rank     exp(entropy of s^2 / sum s^2)
================== =========================================================================

Layers with fewer than ``min_tail`` eigenvalues (e.g. a 10-class head) get no alpha rows.
"""

from __future__ import annotations

from noisescope.data.base import NoisyDataset
from noisescope.metrics import Row
from noisescope.models.base import TappedModel
from noisescope.probes.base import ProbeContext
from noisescope.probes.engine import run_probes
from noisescope.weights.rows import weight_rows


class WeightsProbe:
    """Weight spectra, power-law alpha and norms of every Linear / Conv layer.

    Args:
        layers: dotted layer names (default every Linear / Conv layer).
        max_sv: singular values kept per layer in the rows (default 1024; None = all).
        min_tail: smallest tail of the power-law fit.
    """

    name = "weights"

    def __init__(self, layers: list[str] | None = None, max_sv: int | None = 1024, min_tail: int = 10) -> None:
        if max_sv is not None and max_sv < 1:
            raise ValueError(f"weights: max_sv must be >= 1 (or None for all), got {max_sv}")
        if min_tail < 2:
            raise ValueError(f"weights: min_tail must be >= 2, got {min_tail}")
        self.layers = None if layers is None else list(layers)
        self.max_sv, self.min_tail = max_sv, int(min_tail)

    def start(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> _WeightsSession:
        return _WeightsSession(self, model, ctx.epoch)

    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        return run_probes([self], model, data, ctx)


class _WeightsSession:
    taps: list[str] = []
    splits: tuple[str, ...] = ()  # reads weights, not data

    def __init__(self, probe: WeightsProbe, model: TappedModel, epoch: int) -> None:
        self.p, self.model, self.epoch = probe, model, epoch

    def consume(self, split: str, sl: slice, logits: object, acts: dict) -> None:
        pass

    def end(self, split: str) -> None:
        pass

    def rows(self) -> list[Row]:
        return weight_rows(self.model, self.epoch, self.p.layers, self.p.max_sv, self.p.min_tail)
