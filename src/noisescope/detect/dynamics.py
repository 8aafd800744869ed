"""Training-dynamics scores from the (E, N) table of assigned-label margins (see ``margins``).

* AUM (Pleiss et al. 2020, "Identifying mislabeled data using the area under the margin
  ranking"): the margin averaged over training; mislabeled samples keep a low or negative
  margin for longer. Score: -AUM.
* First-fit epoch: the first recorded epoch from which a sample stays fitted (margin > 0 at
  every later recorded epoch); noisy labels are learned late (Kubo et al.).

Both take margins as an (E, N) tensor or a :class:`MarginRecorder`; NaN (not recorded) entries
are skipped by AUM and count as "not fitted" for the first-fit epoch.
"""

from __future__ import annotations

import numpy as np
import torch

from noisescope.detect._util import Array, as_labels, num_classes_of, out
from noisescope.detect.margins import MarginRecorder


def _table(margins: Array | MarginRecorder, epochs: Array | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(margins, MarginRecorder):
        epochs = margins.epochs if epochs is None else epochs
        margins = margins.margins
    m = torch.as_tensor(margins)
    if m.ndim != 2:
        raise ValueError(f"margins must be 2-D (E epochs, N samples), got shape {tuple(m.shape)}")
    if len(m) == 0:
        raise ValueError("margins hold no recorded epoch")
    m = m.to("cpu", torch.float64)
    if epochs is None:
        return m, None
    ep = torch.as_tensor(epochs).to("cpu", torch.float64).reshape(-1)
    if len(ep) != len(m):
        raise ValueError(f"epochs has {len(ep)} entries for {len(m)} rows of margins")
    if len(ep) > 1 and not bool((ep[1:] > ep[:-1]).all()):
        raise ValueError("epochs must be strictly increasing")
    return m, ep


def aum_score(margins: Array | MarginRecorder, epochs: Array | None = None) -> torch.Tensor:
    """-AUM: minus the assigned-label margin averaged over the recorded epochs.

    Without ``epochs`` the average is the plain mean over the E recorded rows,
    (1/E) sum_e m_ei (NaN entries skipped), which is Pleiss et al.'s AUM when every epoch was
    recorded. With ``epochs`` (e.g. ``recorder.epochs``) and E >= 2 rows, it is the time average of
    the piecewise-linear margin curve, trapz(m_i, epochs) / (epochs[-1] - epochs[0]), which
    weights sparse (e.g. log-spaced) records by the time they stand for.

    Returns:
        (N,) float64, higher = lower average margin = more likely mislabeled.
    """
    if isinstance(margins, MarginRecorder):
        margins = margins.margins  # its epochs are used only when passed explicitly
    m, ep = _table(margins, epochs)
    if ep is None or len(m) < 2:
        return out(-torch.nanmean(m, 0))
    if bool(torch.isnan(m).any()):
        raise ValueError("time-averaged AUM needs every sample at every recorded epoch (NaN found)")
    return out(-torch.trapezoid(m, ep, dim=0) / (ep[-1] - ep[0]))


def make_threshold_samples(
    labels: Array, num_classes: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pleiss et al.'s threshold samples: N // (C + 1) samples drawn at random (seeded) and
    relabelled to a fake extra class C.

    Returns:
        (index (M,) int64 sorted, new labels (N,) int64 with ``labels[index] = C``). Train a
        model with C + 1 outputs on the new labels, record margins, then
        :func:`aum_threshold` on the threshold samples' scores.
    """
    y = as_labels(labels)
    c = num_classes_of(y, num_classes)
    g = torch.Generator().manual_seed(int(seed))
    m = len(y) // (c + 1)
    index = torch.randperm(len(y), generator=g)[:m].sort().values
    new = y.clone()
    new[index] = c
    return index, new


def aum_threshold(scores: Array, threshold_index: Array, percentile: float = 99.0) -> float:
    """AUM's cut-off, in score units, from the scores of the threshold samples.

    Pleiss et al. flag a sample when its AUM is at most the ``percentile``-th percentile alpha
    of the threshold samples' AUMs. With score s = -AUM this is s >= -alpha, and -alpha is the
    (100 - percentile)-th percentile of the threshold samples' scores (numpy's linear
    interpolation).
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    s = torch.as_tensor(scores).to("cpu", torch.float64).reshape(-1)
    idx = torch.as_tensor(threshold_index).long().reshape(-1)
    if len(idx) == 0:
        raise ValueError("threshold_index is empty")
    vals = s[idx].numpy()
    if not np.isfinite(vals).all():
        raise ValueError("threshold samples' scores must be finite")
    return float(-np.percentile(-vals, percentile))


def aum_issues(scores: Array, threshold: float = 0.0, exclude: Array | None = None) -> torch.Tensor:
    """(N,) bool: score >= ``threshold`` (from :func:`aum_threshold`; the default 0 flags a
    negative average margin). ``exclude`` (e.g. the threshold samples) are never flagged."""
    s = torch.as_tensor(scores).to("cpu", torch.float64).reshape(-1)
    flagged = s >= threshold
    if exclude is not None:
        flagged[torch.as_tensor(exclude).long().reshape(-1)] = False
    return flagged


def first_fit_epoch_score(margins: Array | MarginRecorder, epochs: Array | None = None) -> torch.Tensor:
    """The first recorded epoch from which a sample stays fitted.

    f_i = min { epochs[j] : m_{j'i} > 0 for every j' >= j }, and +inf when the sample is not
    fitted at the last recorded epoch (m_{E-1,i} <= 0 or NaN). ``epochs`` defaults to the
    recorder's epochs, or to 0..E-1 for a bare tensor.

    Returns:
        (N,) float64 epochs, higher = learned later = more likely mislabeled.
    """
    m, ep = _table(margins, epochs)
    if ep is None:
        ep = torch.arange(len(m), dtype=torch.float64)
    fitted = (m > 0).to(torch.int32)  # NaN > 0 is False
    suffix = fitted.flip(0).cumprod(0).flip(0)  # suffix[j, i] = all rows j.. fitted
    run = suffix.sum(0)  # length of the fitted run that reaches the last epoch
    first = len(m) - run
    res = torch.full((m.shape[1],), float("inf"), dtype=torch.float64)
    ok = run > 0
    res[ok] = ep[first[ok]]
    return res


def first_fit_issues(scores: Array, epoch: float) -> torch.Tensor:
    """(N,) bool: first-fit epoch > ``epoch`` (e.g. the early-stopping epoch: samples learned
    only after the model stopped generalizing), never-fitted samples included."""
    return torch.as_tensor(scores).to("cpu", torch.float64).reshape(-1) > epoch
