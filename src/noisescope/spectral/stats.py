"""Streaming feature statistics: mean, covariance, class-wise and clean/noisy-wise sums.

Features arrive batch by batch as (B, D) tensors (e.g. from :func:`noisescope.taps.iter_taps`)
and are reduced on the fly in float64, so (N, D) features are never held in memory. All sums
are taken about a fixed *shift* (the first batch's mean) so the covariance does not lose
precision to cancellation when the features have a large mean.

Notation (docs/definitions.md, "Spectrum"): mean mu, covariance Sigma = (F - mu)^T (F - mu) / N,
eigenvalues lambda_1 >= ... >= lambda_D with eigenvectors v_k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Spectrum:
    """The eigendecomposition of a feature covariance.

    Attributes:
        mean: (D,) float64 feature mean mu.
        eigvals: (D,) float64 covariance eigenvalues, descending, negatives clipped to 0
            (units: squared feature units).
        eigvecs: (D, D) float64, column k is v_k.
        n: number of samples the statistics were taken over.
    """

    mean: torch.Tensor
    eigvals: torch.Tensor
    eigvecs: torch.Tensor
    n: int
    _cast: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # eigvecs cast once per dtype

    @property
    def dim(self) -> int:
        return int(self.eigvals.numel())

    def project(
        self, feats: torch.Tensor, d: int | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """Principal coordinates z = (f - mu) V_d: (B, D) features -> (B, d).

        Centring is always done in float64; ``dtype=torch.float32`` runs the product in single
        precision (about 3x faster on a CPU, relative error ~1e-6 of |z|).
        """
        v = self.eigvecs if d is None else self.eigvecs[:, :d]
        centred = feats.to(v.device, torch.float64, copy=True).sub_(self.mean)
        if dtype == torch.float64:
            return centred @ v
        if dtype not in self._cast:
            self._cast[dtype] = self.eigvecs.to(dtype)
        vl = self._cast[dtype] if d is None else self._cast[dtype][:, :d]
        return centred.to(dtype) @ vl


def eigh(matrix: torch.Tensor, single_thread_below: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` on the matrix's device (ascending eigenvalues, eigenvectors as columns).

    On the CPU, matrices up to ``single_thread_below`` wide are decomposed with one thread:
    LAPACK's threaded eigensolver gains little at this size and slows down by an order of
    magnitude when the cores are shared with other processes (measured: 512 x 512 in 0.7 s
    with one thread, 12-20 s with two, on a loaded 2-core machine).
    """
    if matrix.device.type != "cpu" or matrix.shape[-1] > single_thread_below:
        return torch.linalg.eigh(matrix)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(matrix)
    finally:
        torch.set_num_threads(threads)


class FeatureStats:
    """Accumulates the moments of one tap's features in float64.

    Args:
        dim: feature dimension D.
        num_classes: C; needed for class-wise sums (the linear probe and segregation).
        device: where the sums live (default: the first batch's device).
        noisy_second_moment: also accumulate the (D, D) second moment of the noisy samples
            (the per-component noise share). With both label kinds in :meth:`update`, each
            batch's Gram product is taken as the clean rows' (in ``gram_dtype``) plus the noisy
            rows' (always float64), so the noisy moment costs no product of its own.
        gram_dtype: precision of each batch's (D, D) Gram product of the shift-centred
            features. ``torch.float32`` (about 2x faster on a CPU) rounds each batch's product
            once to single precision (relative error ~1e-7 of the batch's largest entries)
            and still sums the batches, the first moments and the class sums in float64.

    After :meth:`update` calls, read :attr:`n`, :meth:`mean`, :meth:`covariance`,
    :meth:`class_sums` and friends, or :meth:`spectrum` for the eigendecomposition.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int | None = None,
        device: torch.device | str | None = None,
        noisy_second_moment: bool = False,
        gram_dtype: torch.dtype = torch.float64,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"feature dim must be > 0, got {dim}")
        self.dim = int(dim)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.device = None if device is None else torch.device(device)
        self.noisy_second_moment = noisy_second_moment
        if gram_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"gram_dtype must be torch.float32 or torch.float64, got {gram_dtype}")
        self.gram_dtype = gram_dtype
        self.n = 0
        self._shift: torch.Tensor | None = None
        self._s1: torch.Tensor | None = None  # (D,) sum of (f - shift)
        self._s2: torch.Tensor | None = None  # (D, D) sum of (f - shift)(f - shift)^T, less _noisy_s2
        self._obs_sum: torch.Tensor | None = None  # (C, D) by observed label
        self._obs_n: torch.Tensor | None = None  # (C,)
        self._noisy_true_sum: torch.Tensor | None = None  # (C, D) noisy samples by true label
        self._noisy_true_n: torch.Tensor | None = None
        self._true_sum: torch.Tensor | None = None  # (C, D) all samples by true label
        self._true_n: torch.Tensor | None = None
        self._noisy_s1: torch.Tensor | None = None  # (D,)
        self._noisy_s2: torch.Tensor | None = None  # (D, D)
        self._noisy_n = 0

    # ------------------------------------------------------------------ accumulation
    def _init(self, feats: torch.Tensor) -> None:
        dev = self.device or feats.device
        self.device = dev
        x = feats.to(dev, torch.float64)
        self._shift = x.mean(0)
        d = self.dim
        self._s1 = torch.zeros(d, dtype=torch.float64, device=dev)
        self._s2 = torch.zeros(d, d, dtype=torch.float64, device=dev)
        if self.num_classes is not None:
            c = self.num_classes
            z = lambda: torch.zeros(c, d, dtype=torch.float64, device=dev)  # noqa: E731
            zn = lambda: torch.zeros(c, dtype=torch.float64, device=dev)  # noqa: E731
            self._obs_sum, self._obs_n = z(), zn()
            self._noisy_true_sum, self._noisy_true_n = z(), zn()
            self._true_sum, self._true_n = z(), zn()
        self._noisy_s1 = torch.zeros(d, dtype=torch.float64, device=dev)
        if self.noisy_second_moment:
            self._noisy_s2 = torch.zeros(d, d, dtype=torch.float64, device=dev)

    def _check_labels(self, name: str, y: torch.Tensor, b: int) -> torch.Tensor:
        if self.num_classes is None:
            raise ValueError(f"{name} given but FeatureStats was built without num_classes")
        y = y.to(self.device).long().reshape(-1)
        if y.numel() != b:
            raise ValueError(f"{name} has {y.numel()} entries for a batch of {b} features")
        if b and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"{name} must lie in [0, {self.num_classes})")
        return y

    @torch.no_grad()
    def update(
        self,
        feats: torch.Tensor,
        labels: torch.Tensor | None = None,
        true_labels: torch.Tensor | None = None,
    ) -> None:
        """Add a batch.

        Args:
            feats: (B, D) features (any float dtype; reduced in float64).
            labels: (B,) observed labels, for the class sums the linear probe needs.
            true_labels: (B,) true labels; with ``labels`` they define the noise mask
                (observed != true) for clean-class means and the noisy moments.
        """
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (B, {self.dim}), got {tuple(feats.shape)}")
        if len(feats) == 0:
            return
        if self._shift is None:
            self._init(feats)
        x = feats.to(self.device, torch.float64, copy=True).sub_(self._shift)
        b = len(x)
        y = None if labels is None else self._check_labels("labels", labels, b)
        t = None if true_labels is None else self._check_labels("true_labels", true_labels, b)
        self.n += b
        self._s1 += x.sum(0)
        ones = torch.ones(b, dtype=torch.float64, device=self.device)
        if y is not None:
            self._obs_sum.index_add_(0, y, x)
            self._obs_n.index_add_(0, y, ones)
        if t is None:
            self._add_gram(self._s2, x)
            return
        self._true_sum.index_add_(0, t, x)
        self._true_n.index_add_(0, t, ones)
        if y is None:  # no noise mask: every sample counts as clean
            self._add_gram(self._s2, x)
            return
        # the noisy rows, gathered once: the noisy first moment, the noisy class sums (the clean
        # ones are the true-label sums less these, at read-out) and, with noisy_second_moment,
        # the Gram matrix as the clean rows' product into _s2 plus the noisy rows' into
        # _noisy_s2 (their sum is the Gram matrix, _gram): the noisy moment costs no product
        noisy = y != t
        xn, tn = x[noisy], t[noisy]
        self._noisy_true_sum.index_add_(0, tn, xn)
        self._noisy_true_n.index_add_(0, tn, ones[: len(tn)])
        self._noisy_n += len(xn)
        self._noisy_s1 += xn.sum(0)
        if self._noisy_s2 is None:
            self._add_gram(self._s2, x)
        else:
            self._add_gram(self._s2, x[~noisy] if self.gram_dtype == torch.float64
                           else x.to(self.gram_dtype)[~noisy])
            # always float64: a float32 product's rounding, ~1e-7 of the largest entries, is first
            # order in v_k' S_noisy v_k and swamped the shares of small components (the demo's
            # first tap: 17 noise-dominated components at epoch 50 against 5 in float64)
            self._add_gram(self._noisy_s2, xn, torch.float64)

    def _add_gram(self, acc: torch.Tensor, x: torch.Tensor, dtype: torch.dtype | None = None) -> None:
        """acc += x^T x, the product in ``dtype`` (default ``gram_dtype``), the running sum in
        float64 (``x`` in float64, or already cast to ``dtype``)."""
        if not len(x):
            return
        dtype = self.gram_dtype if dtype is None else dtype
        if self.gram_dtype == torch.float64:
            acc.addmm_(x.T, x)
            return
        # the upper block rows only, mirrored: about 5/8 of the products of xs^T xs, the same
        # entries (each is one dot product over the batch either way)
        xs = x.to(dtype)
        d = xs.shape[1]
        step = -(-d // 4)
        for a in range(0, d, step):
            r = xs[:, a:a + step].T @ xs[:, a:]  # (b, d - a): rows a.. of the Gram, columns a..
            acc[a:a + step, a:] += r
            acc[a + step:, a:a + step] += r[:, step:].T

    # ------------------------------------------------------------------ read-out
    def _need(self) -> None:
        if self.n == 0:
            raise ValueError("no features accumulated yet: call update() with at least one batch")

    def _need_classes(self, what: str, tensor: torch.Tensor | None) -> torch.Tensor:
        self._need()
        if tensor is None:
            raise ValueError(f"{what} needs FeatureStats(num_classes=...) and labels in update()")
        return tensor

    def _gram(self) -> torch.Tensor:
        """(D, D) sum of (f - shift)(f - shift)^T over every sample."""
        return self._s2 if self._noisy_s2 is None else self._s2 + self._noisy_s2

    def mean(self) -> torch.Tensor:
        """(D,) float64 feature mean."""
        self._need()
        return self._shift + self._s1 / self.n

    def covariance(self) -> torch.Tensor:
        """(D, D) float64 covariance (F - mu)^T (F - mu) / N."""
        self._need()
        m = self._s1 / self.n
        cov = self._gram() / self.n - torch.outer(m, m)
        return (cov + cov.T) / 2

    def centered_class_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """By observed label: (C, D) sums of (f_i - mu) and (C,) counts."""
        s = self._need_classes("centered_class_sums", self._obs_sum)
        if float(self._obs_n.sum()) != self.n:
            raise ValueError("labels were not given for every batch passed to update()")
        return s - torch.outer(self._obs_n, self._s1 / self.n), self._obs_n.clone()

    def clean_class_means(self) -> torch.Tensor:
        """(C, D) mean feature of the clean samples of each true class.

        A class with no clean sample falls back to the mean of all its samples (true label).
        """
        true_sum = self._need_classes("clean_class_means", self._true_sum)
        if float(self._true_n.sum()) != self.n:
            raise ValueError("true_labels were not given for every batch passed to update()")
        s = true_sum - self._noisy_true_sum  # the clean samples' sums by true label
        n_clean = self._true_n - self._noisy_true_n
        out = torch.empty_like(s)
        has = n_clean > 0
        out[has] = s[has] / n_clean[has, None]
        rest = ~has & (self._true_n > 0)
        out[rest] = self._true_sum[rest] / self._true_n[rest, None]
        out[~has & ~rest] = 0.0
        return out + self._shift

    @property
    def noisy_count(self) -> int:
        return int(self._noisy_n)

    def noisy_centered_second_moment(self) -> torch.Tensor:
        """(D, D) sum over noisy samples of (f_i - mu)(f_i - mu)^T (not divided by N)."""
        self._need()
        if self._noisy_s2 is None:
            raise ValueError("build FeatureStats(noisy_second_moment=True) to get the noise share")
        m = self._s1 / self.n
        cross = torch.outer(self._noisy_s1, m)
        out = self._noisy_s2 - cross - cross.T + self._noisy_n * torch.outer(m, m)
        return (out + out.T) / 2

    def spectrum(self) -> Spectrum:
        """Eigendecomposition of the covariance on the statistics' device."""
        evals, evecs = eigh(self.covariance())
        evals = evals.flip(0).clamp_min(0.0)
        evecs = evecs.flip(1)
        return Spectrum(mean=self.mean(), eigvals=evals, eigvecs=evecs, n=self.n)
