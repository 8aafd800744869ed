"""``SignalsProbe``: the internal-signal measurements of Kubo et al. on the probe schedule.

One streaming eval pass over the training probe set reduces every tap's activations on the
fly (class-wise sums by group, per-neuron max |a|, |a| histogram) and keeps the activations of
a seeded subsample (default 2000 rows) for the input-vs-label dependence of the largest neuron;
one pass over the test set scores test alignment. Nothing of size (N, F) is kept.

Rows written (``probe="signals"``, one per tap unless noted):

=========================== ============= ===================================================
metric                      subset        value
=========================== ============= ===================================================
separation                  by_true /     cos(S_clean,c, S_noisy,c); ``index`` = class c, or -1
                            by_observed   for the average over classes with >= min_noisy noisy
large_act_max               train         largest |a| over the probe set and all neurons
large_act_neuron            train         its neuron index (within the tap's flattened output)
large_act_row               train         the training sample (row of data.x_train) holding it
large_act_median            train         median |a| (``median="nonzero"`` or ``"all"`` entries;
                                          relative error <= 2**-8, see large_activation.py)
large_act_ratio             train         max / median (inf if the median is 0)
large_act_flag              train         1.0 if ratio >= threshold else 0.0
large_act_zero_frac         train         fraction of entries that are exactly 0
large_act_same_neuron       train         1.0 if the top neuron is the previous probe's
large_act_tracked_neuron    train         neuron followed across epochs (first flagged one,
                                          else the first probe's top neuron)
large_act_tracked_max       train         that neuron's max |a| this epoch
eta2_true / eta2_obs        train         correlation ratio of the top neuron with the
                                          true / observed label
r2_input                    train         held-out R^2 of the top neuron from the input's
                                          top principal components
alignment_correct/_wrong    test          mean alignment score over correct / wrong predictions
alignment_n_correct/_wrong  test          number of test samples with a defined score
=========================== ============= ===================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from noisescope.data.base import NoisyDataset
from noisescope.models.base import TappedModel
from noisescope.probes.base import ProbeContext, Row
from noisescope.signals.alignment import alignment_scores, summarize_alignment
from noisescope.signals.groups import ClassSums, group_onehot
from noisescope.signals.large_activation import (
    AbsHistogram,
    NeuronMax,
    correlation_ratio,
    heldout_r2,
    input_components,
)
from noisescope.signals.separation import separation
from noisescope.taps import iter_taps, resolve_taps, taps_of_type

MEDIANS = ("nonzero", "all")


class SignalsProbe:
    """Separation, large activation, dependence and test alignment, per tap.

    Args:
        taps: tap names (``model.taps()`` keys, or dotted submodule names); None = every tap.
        tap_types: module class names (e.g. ``["ReLU"]``): analyse every submodule of these
            types instead of ``taps``.
        min_noisy: a class enters the separation average with at least this many noisy samples.
        threshold: relative threshold on max/median for ``large_act_flag`` (default 100).
        median: ``"nonzero"`` (default: median over nonzero |a|, robust to ReLU sparsity) or
            ``"all"`` (over every entry; 0 whenever over half the units are inactive).
        max_train: probe at most this many training samples (seeded subset); 0 = all.
        max_test: score alignment on at most this many test samples; 0 = all.
        dependence: compute eta^2 and held-out R^2 of each tap's top neuron.
        dependence_samples: training samples used for the dependence (seeded subsample;
            half fit the PCA and the regression, half score it).
        input_pcs: number of input principal components for R^2.
        dependence_buffer_mb: the subsample's activations of a tap are kept (float32) during
            the main pass when they fit in this many MiB; wider taps get one extra forward
            pass over the subsample instead.
        alignment: compute test alignment.
        seed: seed of every subsample.
    """

    name = "signals"

    def __init__(
        self,
        taps: list[str] | None = None,
        tap_types: list[str] | None = None,
        min_noisy: int = 10,
        threshold: float = 100.0,
        median: str = "nonzero",
        max_train: int = 0,
        max_test: int = 0,
        dependence: bool = True,
        dependence_samples: int = 2000,
        input_pcs: int = 50,
        dependence_buffer_mb: float = 256.0,
        alignment: bool = True,
        seed: int = 0,
    ) -> None:
        if median not in MEDIANS:
            raise ValueError(f"signals: median must be one of {MEDIANS}, got {median!r}")
        if threshold <= 0:
            raise ValueError(f"signals: threshold must be > 0 (a max/median ratio), got {threshold}")
        if min_noisy < 1:
            raise ValueError(f"signals: min_noisy must be >= 1, got {min_noisy}")
        for key, val in (("max_train", max_train), ("max_test", max_test)):
            if val < 0:
                raise ValueError(f"signals: {key} must be >= 0 (0 = all samples), got {val}")
        if dependence and (dependence_samples < 4 or input_pcs < 1):
            raise ValueError("signals: dependence needs dependence_samples >= 4 and input_pcs >= 1, "
                             f"got {dependence_samples} and {input_pcs}")
        if taps is not None and tap_types is not None:
            raise ValueError("signals: give taps or tap_types, not both")
        self.taps = list(taps) if taps is not None else None
        self.tap_types = list(tap_types) if tap_types is not None else None
        self.min_noisy = int(min_noisy)
        self.threshold = float(threshold)
        self.median = median
        self.max_train = int(max_train)
        self.max_test = int(max_test)
        self.dependence = bool(dependence)
        self.dependence_samples = int(dependence_samples)
        self.input_pcs = int(input_pcs)
        self.dependence_buffer_mb = float(dependence_buffer_mb)
        self.alignment = bool(alignment)
        self.seed = int(seed)

    # -- helpers -------------------------------------------------------------------------
    def tap_names(self, model: TappedModel) -> list[str]:
        """The taps this probe analyses on ``model``."""
        if self.tap_types is not None:
            return taps_of_type(model, self.tap_types)
        return resolve_taps(model, self.taps)

    def _subset(self, n: int, cap: int, salt: int) -> torch.Tensor | None:
        """Sorted seeded subset of range(n) of size cap (None = everything)."""
        if cap == 0 or cap >= n:
            return None
        g = torch.Generator().manual_seed(self.seed * 7919 + salt)
        return torch.randperm(n, generator=g)[:cap].sort().values

    # -- the probe -----------------------------------------------------------------------
    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        with full_precision_matmul():
            return self._probe(model, data, ctx)

    def _probe(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        names = self.tap_names(model)
        state = ctx.state.setdefault("signals", {})
        sel = self._subset(len(data.x_train), self.max_train, 1)
        x = data.x_train if sel is None else data.x_train[sel]
        y_obs = data.y_train if sel is None else data.y_train[sel]
        y_true = data.y_train_true if sel is None else data.y_train_true[sel]
        c = int(data.num_classes)
        dep_slot = self._prepare_dependence(x, state) if self.dependence else None
        n_dep = int((dep_slot >= 0).sum()) if dep_slot is not None else 0

        sums: dict[str, ClassSums] = {}
        maxes: dict[str, NeuronMax] = {}
        hists: dict[str, AbsHistogram] = {}
        buffers: dict[str, torch.Tensor | None] = {}
        for sl, logits, acts in iter_taps(model, x, names, ctx.batch_size):
            dev = logits.device
            yt, yo = y_true[sl].to(dev), y_obs[sl].to(dev)
            onehot = group_onehot(yt, yo, c)
            if dep_slot is not None:
                slot = dep_slot[sl].to(dev)
                keep = slot >= 0
                slot = slot[keep]
            for tap, a in acts.items():
                if tap not in sums:
                    sums[tap] = ClassSums(c, a.shape[1], dev)
                    maxes[tap] = NeuronMax(a.shape[1], dev)
                    hists[tap] = AbsHistogram(dev)
                    fits = n_dep * a.shape[1] * 4 <= self.dependence_buffer_mb * 2**20
                    buffers[tap] = (torch.empty(n_dep, a.shape[1], device=dev)
                                    if dep_slot is not None and fits else None)
                sums[tap].update(a, yt, yo, onehot)
                maxes[tap].update(a, offset=sl.start)
                hists[tap].update(a)
                if buffers[tap] is not None:
                    buffers[tap].index_copy_(0, slot, a[keep].float())

        rows: list[Row] = []
        e = ctx.epoch

        def add(metric: str, value: float, subset: str, tap: str, index: int = -1) -> None:
            rows.append(Row(e, self.name, metric, float(value), subset, tap, index))

        means = {tap: s.means() for tap, s in sums.items()}
        top: dict[str, int] = {}
        for tap in names:
            m, n = means[tap], sums[tap].group_counts()
            for subset, group in (("by_true", "noisy_true"), ("by_observed", "noisy_obs")):
                per_class, avg = separation(m["clean"], m[group], n["clean"], n[group],
                                            self.min_noisy)
                for k in range(c):
                    if not math.isnan(float(per_class[k])):
                        add("separation", float(per_class[k]), subset, tap, k)
                add("separation", avg, subset, tap, -1)
            top[tap] = self._large_activation(tap, maxes[tap], hists[tap], state, add, sel)

        if self.dependence:
            self._dependence(model, data, x, y_true, y_obs, top, buffers, ctx, state, add)
        if self.alignment:
            self._alignment(model, data, names, means, ctx, add)
        return rows

    def _large_activation(self, tap: str, nmax: NeuronMax, hist: AbsHistogram,
                          state: dict, add, sel: torch.Tensor | None) -> int:
        """Write the large-activation rows of one tap; return its top neuron."""
        value, neuron, row = nmax.top()
        row = row if sel is None else int(sel[row])  # index into data.x_train
        med = hist.median(nonzero=self.median == "nonzero")
        ratio = value / med if med > 0 else float("inf")
        flag = ratio >= self.threshold
        add("large_act_max", value, "train", tap)
        add("large_act_neuron", neuron, "train", tap)
        add("large_act_row", row, "train", tap)
        add("large_act_median", med, "train", tap)
        add("large_act_ratio", ratio, "train", tap)
        add("large_act_flag", float(flag), "train", tap)
        add("large_act_zero_frac", hist.zero_fraction(), "train", tap)
        last = state.setdefault("last_neuron", {})
        if tap in last:
            add("large_act_same_neuron", float(last[tap] == neuron), "train", tap)
        last[tap] = neuron
        tracked = state.setdefault("tracked", {})
        flagged = state.setdefault("tracked_flagged", {})
        if tap not in tracked or (flag and not flagged.get(tap, False)):
            tracked[tap] = neuron
            flagged[tap] = bool(flag)
        j = tracked[tap]
        add("large_act_tracked_neuron", j, "train", tap)
        add("large_act_tracked_max", float(nmax.max[j]), "train", tap)
        return neuron

    def _prepare_dependence(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """Seeded dependence subsample of the probe set (cached with its input PCA in
        ``state``); returns (N,) int64: slot in the subsample, or -1."""
        n = len(x)
        key = ("dep", n, self.dependence_samples, self.input_pcs, self.seed)
        if state.get("dep_key") != key:
            k = min(self.dependence_samples, n)
            g = torch.Generator().manual_seed(self.seed * 7919 + 2)
            rows = torch.randperm(n, generator=g)[:k].sort().values
            fit = torch.zeros(k, dtype=torch.bool)
            fit[torch.randperm(k, generator=g)[: k // 2]] = True
            mean, comps = input_components(x[rows[fit]], self.input_pcs)
            z = (x[rows].flatten(1).to(torch.float64).cpu() - mean) @ comps
            slot = torch.full((n,), -1, dtype=torch.int64)
            slot[rows] = torch.arange(k)
            state.update(dep_key=key, dep_rows=rows, dep_fit=fit, dep_z=z, dep_slot=slot)
        return state["dep_slot"]

    def _dependence(self, model, data, x, y_true, y_obs, top, buffers, ctx, state, add) -> None:
        rows, fit, z = state["dep_rows"], state["dep_fit"], state["dep_z"]
        cols = {tap: buffers[tap][:, top[tap]].cpu() for tap in top if buffers[tap] is not None}
        rest = [tap for tap in top if tap not in cols]
        if rest:  # activations too wide to buffer: one more pass over the subsample
            parts: dict[str, list[torch.Tensor]] = {tap: [] for tap in rest}
            for _sl, _logits, acts in iter_taps(model, x[rows], rest, ctx.batch_size):
                for tap, a in acts.items():
                    parts[tap].append(a[:, top[tap]].detach().float().cpu())
            cols.update({tap: torch.cat(p) for tap, p in parts.items()})
        yt, yo = y_true[rows].cpu(), y_obs[rows].cpu()
        c = int(data.num_classes)
        for tap in top:
            v = cols[tap]
            add("eta2_true", correlation_ratio(v, yt, c), "train", tap)
            add("eta2_obs", correlation_ratio(v, yo, c), "train", tap)
            add("r2_input", heldout_r2(z, v, fit), "train", tap)

    def _alignment(self, model, data, names, means, ctx, add) -> None:
        sel = self._subset(len(data.x_test), self.max_test, 3)
        x = data.x_test if sel is None else data.x_test[sel]
        y = data.y_test if sel is None else data.y_test[sel]
        scores: dict[str, list[torch.Tensor]] = {tap: [] for tap in names}
        preds: list[torch.Tensor] = []
        for _sl, logits, acts in iter_taps(model, x, names, ctx.batch_size):
            pred = logits.argmax(1)
            preds.append(pred.cpu())
            for tap, a in acts.items():
                m = means[tap]
                scores[tap].append(alignment_scores(a, pred, m["clean"], m["noisy_obs"]).cpu())
        correct = torch.cat(preds) == y.cpu()
        for tap in names:
            summary = summarize_alignment(torch.cat(scores[tap]), correct)
            add("alignment_correct", summary["correct"], "test", tap)
            add("alignment_wrong", summary["wrong"], "test", tap)
            add("alignment_n_correct", summary["n_correct"], "test", tap)
            add("alignment_n_wrong", summary["n_wrong"], "test", tap)


@contextmanager
def full_precision_matmul() -> Iterator[None]:
    """Disable TF32 (and other reduced-precision float32 matmuls) while the probe runs, so
    class sums and cosines are float32-exact; the previous setting is restored."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
