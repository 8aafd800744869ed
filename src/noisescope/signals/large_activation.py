"""The single very large activation: max |a|, its neuron, the median |a|, and their ratio;
and whether that neuron follows the input or the label.

Median: exact counts in a streaming histogram whose bins are the float32 bit patterns with
the low 16 bits dropped (8 exponent + 7 mantissa bits, 32768 bins). The bin holding the lower
median (the ceil(n/2)-th smallest |a|, as ``torch.median``) is found exactly; the reported value
is that bin's midpoint, so its relative error is at most 2**-8 (0.39%). Activations are read
as float32. The ``nonzero`` median skips the first bin (|a| < 2**-133, i.e. exact zeros and
tiny subnormals): after a ReLU most entries are often exactly 0, which makes the median over
all entries 0 and the ratio infinite.

Dependence of a neuron's activation v (N,) on input vs label:

* ``r2_input`` -- held-out R^2 of an ordinary least-squares fit (with intercept) of v on the
  input's top-k principal components (PCA fitted on the fit half only);
* ``eta2`` -- the correlation ratio eta^2 = sum_c n_c (mean_c - mean)^2 / sum_i (v_i - mean)^2,
  the share of v's variance explained by a class label (true or observed).

A neuron that tracks the input pattern has high R^2 and low eta^2; one that encodes the
(noisy) label has high eta^2 with the observed label.
"""

from __future__ import annotations

import torch

SHIFT = 16
NUM_BINS = 1 << (31 - SHIFT)  # non-negative float32 bit patterns >> SHIFT
MEDIAN_REL_ERROR = 2.0 ** -(31 - SHIFT - 8 + 1)  # half a bin: 2**-(mantissa bits kept + 1)


def _bin_edge(key: int) -> float:
    """Smallest float32 value whose bit pattern >> SHIFT equals ``key``."""
    return float(torch.tensor([key << SHIFT], dtype=torch.int32).view(torch.float32))


def abs_keys_counts(acts: torch.Tensor) -> torch.Tensor:
    """(NUM_BINS,) int64 counts of ``|acts|`` per bin (bin = float32 bits of |a| >> SHIFT),
    on ``acts``' device."""
    bits = acts.detach().float().contiguous().view(torch.int32)
    keys = (bits >> SHIFT) & (NUM_BINS - 1)  # dropping the sign bit is the |.|
    return torch.bincount(keys.flatten(), minlength=NUM_BINS)


class AbsHistogram:
    """Exact-count histogram of |a| over float32 exponent/mantissa bins (see module doc)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.hist = torch.zeros(NUM_BINS, dtype=torch.int64, device=device)

    def update(self, acts: torch.Tensor) -> None:
        """Add every entry of ``acts`` (any shape)."""
        self.hist += abs_keys_counts(acts).to(self.hist.device)

    @property
    def count(self) -> int:
        return int(self.hist.sum())

    def zero_fraction(self) -> float:
        """Fraction of entries in the zero bin (|a| < 2**-133)."""
        n = self.count
        return float(self.hist[0]) / n if n else float("nan")

    def median(self, nonzero: bool = False) -> float:
        """Lower median of |a| (over all entries, or over nonzero ones), relative error
        <= ``MEDIAN_REL_ERROR``; 0.0 when it falls in the zero bin; NaN when empty."""
        h = self.hist.cpu()
        if nonzero:
            h = h.clone()
            h[0] = 0
        n = int(h.sum())
        if n == 0:
            return float("nan")
        k = (n - 1) // 2  # 0-based rank of the lower median
        key = int(torch.searchsorted(h.cumsum(0), torch.tensor(k + 1)))
        if key == 0:
            return 0.0
        lo, hi = _bin_edge(key), _bin_edge(key + 1)
        return 0.5 * (lo + hi)


class NeuronMax:
    """Running per-neuron max |a| (F,), and the probe-set row of the overall largest |a|.

    Kept as device tensors (no host synchronisation per batch).
    """

    def __init__(self, num_features: int, device: torch.device | str = "cpu") -> None:
        self.max = torch.full((num_features,), -1.0, dtype=torch.float32, device=device)
        self._best = torch.tensor(-1.0, device=device)
        self._row = torch.tensor(0, dtype=torch.int64, device=device)

    def update(self, acts: torch.Tensor, offset: int = 0, rows: torch.Tensor | None = None) -> None:
        """``acts`` (B, F); ``offset`` = index of the batch's first row in the probe set, or
        ``rows`` (B,) the probe-set index of each row (for a filtered batch)."""
        a = acts.detach().float()
        if len(a) == 0:
            return
        v = a.abs().amax(0)
        self.max = torch.maximum(self.max, v)
        j = v.argmax()
        pos = a[:, j].abs().argmax()
        row = pos + offset if rows is None else rows[pos]
        better = v[j] > self._best
        self._best = torch.where(better, v[j], self._best)
        self._row = torch.where(better, row, self._row)

    def top(self) -> tuple[float, int, int]:
        """``(max |a|, neuron index, probe-set row)`` of the largest activation (first
        occurrence on ties)."""
        j = int(torch.argmax(self.max))
        return float(self.max[j]), j, int(self._row)


def correlation_ratio(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """eta^2 of ``values`` (N,) given integer ``labels`` (N,) in [0, num_classes).

    Returns between-class sum of squares / total sum of squares (float64); NaN if the values
    are constant.
    """
    if values.shape != labels.shape or values.dim() != 1:
        raise ValueError(f"values and labels must be 1-D of equal length, got "
                         f"{tuple(values.shape)} and {tuple(labels.shape)}")
    v = values.detach().to(torch.float64).cpu()
    y = labels.detach().long().cpu()
    mean = v.mean()
    n_c = torch.bincount(y, minlength=num_classes).to(torch.float64)
    s_c = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, y, v)
    present = n_c > 0
    between = (n_c[present] * (s_c[present] / n_c[present] - mean) ** 2).sum()
    total = ((v - mean) ** 2).sum()
    return float(between / total) if float(total) > 0 else float("nan")


def input_components(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` principal directions of inputs ``x`` (N, ...) (flattened, float64).

    Eigendecomposition of the smaller of the D x D scatter matrix and the N x N Gram matrix
    (cheap for either many samples or wide inputs).

    Returns ``(mean (D,), components (D, k'))`` with orthonormal columns, k' = min(k, N - 1, D);
    project with ``(x.flatten(1) - mean) @ components``.
    """
    if k < 1:
        raise ValueError(f"k (number of input principal components) must be >= 1, got {k}")
    flat = x.detach().flatten(1).to(torch.float64).cpu()
    n, d = flat.shape
    if n < 2:
        raise ValueError("input_components needs at least 2 samples")
    mean = flat.mean(0)
    xc = flat - mean
    k = min(k, n - 1, d)
    if d <= n:
        _vals, vecs = torch.linalg.eigh(xc.T @ xc)  # ascending
        comps = vecs[:, -k:].flip(1)
    else:
        vals, vecs = torch.linalg.eigh(xc @ xc.T)
        top = vals[-k:].flip(0).clamp_min(torch.finfo(torch.float64).tiny)
        comps = (xc.T @ vecs[:, -k:].flip(1)) / top.sqrt()
    return mean, comps.contiguous()


def heldout_r2(z: torch.Tensor, v: torch.Tensor, fit: torch.Tensor) -> float:
    """Held-out R^2 of least squares ``v ~ z @ w + b``, fitted on rows ``fit``.

    Args:
        z: (N, k) predictors (e.g. input principal-component scores).
        v: (N,) target (a neuron's activation).
        fit: (N,) bool, True for rows used to fit; the others are scored.

    Returns:
        1 - SS_res / SS_tot on the held-out rows, SS_tot about the held-out mean (as
        ``sklearn.metrics.r2_score``); NaN if the held-out target is constant or any value is
        not finite (a diverged network: LAPACK's solver must not see inf / NaN).
    """
    if z.dim() != 2 or v.dim() != 1 or len(z) != len(v) or fit.shape != v.shape:
        raise ValueError(f"need z (N, k), v (N,), fit (N,); got {tuple(z.shape)}, "
                         f"{tuple(v.shape)}, {tuple(fit.shape)}")
    z = z.detach().to(torch.float64).cpu()
    v = v.detach().to(torch.float64).cpu()
    fit = fit.cpu().bool()
    if int(fit.sum()) < 2 or int((~fit).sum()) < 1:
        raise ValueError("heldout_r2 needs >= 2 fit rows and >= 1 held-out row")
    if not (bool(torch.isfinite(z).all()) and bool(torch.isfinite(v).all())):
        return float("nan")
    design = torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], dim=1)
    w = torch.linalg.lstsq(design[fit], v[fit].unsqueeze(1), driver="gelsd").solution
    pred = (design[~fit] @ w).squeeze(1)
    target = v[~fit]
    ss_res = float(((target - pred) ** 2).sum())
    ss_tot = float(((target - target.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
