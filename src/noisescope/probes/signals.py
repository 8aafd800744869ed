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
large_act_flag              train         1.0 "large" / 0.0 "not large" / NaN "undecided":
                                          ``evidence.rules.large_activation_flag`` (the ratio
                                          must clear the threshold by more than the median's
                                          relative error 2**-8)
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
alignment_sd_correct/_wrong test          their scores' standard deviation (ddof 1)
=========================== ============= ===================================================
"""

from __future__ import annotations

import math

import torch

from noisescope.data.base import NoisyDataset
from noisescope.evidence.rules import LARGE, NOT_LARGE, large_activation_flag
from noisescope.metrics import Row
from noisescope.models.base import TappedModel
from noisescope.probes.base import ProbeContext
from noisescope.probes.engine import run_probes
from noisescope.signals.alignment import alignment_scores, summarize_alignment
from noisescope.signals.groups import ClassSums, group_onehot
from noisescope.signals.large_activation import (
    MEDIAN_REL_ERROR,
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
        self._dep_key: tuple | None = None
        self._dep: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

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
    def start(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> _SignalsSession:
        return _SignalsSession(self, model, data, ctx)

    def __call__(self, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> list[Row]:
        return run_probes([self], model, data, ctx)

    def dependence_sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Seeded dependence subsample of the probe set ``x`` (N, ...) with its input PCA,
        cached on the probe (it depends only on the data and the options):
        (rows (k,) sorted indices into x, fit (k,) bool half used for fitting, z (k, pcs))."""
        n = len(x)
        key = (n, self.dependence_samples, self.input_pcs, self.seed, x.data_ptr())
        if self._dep_key != key:
            k = min(self.dependence_samples, n)
            g = torch.Generator().manual_seed(self.seed * 7919 + 2)
            rows = torch.randperm(n, generator=g)[:k].sort().values
            fit = torch.zeros(k, dtype=torch.bool)
            fit[torch.randperm(k, generator=g)[: k // 2]] = True
            mean, comps = input_components(x[rows[fit]], self.input_pcs)
            z = (x[rows].flatten(1).to(torch.float64).cpu() - mean) @ comps
            self._dep_key, self._dep = key, (rows, fit, z)
        return self._dep


class _SignalsSession:
    """The signals probe's share of the shared pass at one epoch.

    Train batches feed the class sums, per-neuron maxima, |a| histograms and the dependence
    buffers; when the training split ends the separation, large-activation and dependence rows
    are written; test batches then score the alignment against the class means.
    """

    def __init__(self, probe: SignalsProbe, model: TappedModel, data: NoisyDataset, ctx: ProbeContext) -> None:
        self.p, self.model, self.data, self.ctx = probe, model, data, ctx
        self.taps = probe.tap_names(model)
        self.splits = ("train", "test") if probe.alignment else ("train",)
        self.state = ctx.state.setdefault(probe.name, {})
        self.c = int(data.num_classes)
        n = len(data.x_train)
        sel = probe._subset(n, probe.max_train, 1)
        self.train_keep = None if sel is None else _mask(n, sel)
        self.sel = sel
        sel_test = probe._subset(len(data.x_test), probe.max_test, 3)
        self.test_keep = None if sel_test is None else _mask(len(data.x_test), sel_test)
        self.dep_rows = self.dep_slot = None
        if probe.dependence:
            x = data.x_train if sel is None else data.x_train[sel]
            rows, _fit, _z = probe.dependence_sample(x)
            self.dep_rows = rows if sel is None else sel[rows]  # indices into data.x_train
            self.dep_slot = torch.full((n,), -1, dtype=torch.int64)
            self.dep_slot[self.dep_rows] = torch.arange(len(rows))
        self.sums: dict[str, ClassSums] = {}
        self.maxes: dict[str, NeuronMax] = {}
        self.hists: dict[str, AbsHistogram] = {}
        self.buffers: dict[str, torch.Tensor | None] = {}
        self.means: dict[str, dict[str, torch.Tensor]] = {}
        self.scores: dict[str, list[torch.Tensor]] = {tap: [] for tap in self.taps}
        self.preds: list[torch.Tensor] = []
        self.out: list[Row] = []

    def add(self, metric: str, value: float, subset: str, tap: str, index: int = -1) -> None:
        self.out.append(Row(self.ctx.epoch, self.p.name, metric, float(value), subset, tap, index))

    def consume(self, split: str, sl: slice, logits: torch.Tensor, acts: dict[str, torch.Tensor]) -> None:
        keep = self.train_keep if split == "train" else self.test_keep
        rows = torch.arange(sl.start, sl.stop)
        if keep is not None:
            k = keep[sl]
            rows = rows[k]
            k = k.to(logits.device)
            logits, acts = logits[k], {t: a[k] for t, a in acts.items()}
        if split == "train":
            self._train_batch(sl, rows, logits, acts)
        else:
            self._test_batch(rows, logits, acts)

    def _train_batch(self, sl: slice, rows: torch.Tensor, logits: torch.Tensor, acts: dict) -> None:
        data, c = self.data, self.c
        dev = logits.device
        yt, yo = data.y_train_true[rows].to(dev), data.y_train[rows].to(dev)
        onehot = group_onehot(yt, yo, c)
        if self.dep_slot is not None:
            slot = self.dep_slot[rows].to(dev)
            has = slot >= 0
            slot = slot[has]
        n_dep = 0 if self.dep_rows is None else len(self.dep_rows)
        for tap, a in acts.items():
            if tap not in self.sums:
                self.sums[tap] = ClassSums(c, a.shape[1], dev)
                self.maxes[tap] = NeuronMax(a.shape[1], dev)
                self.hists[tap] = AbsHistogram(dev)
                fits = n_dep * a.shape[1] * 4 <= self.p.dependence_buffer_mb * 2**20
                self.buffers[tap] = torch.empty(n_dep, a.shape[1], device=dev) if n_dep and fits else None
            self.sums[tap].update(a, yt, yo, onehot)
            if self.train_keep is None:
                self.maxes[tap].update(a, offset=sl.start)
            else:
                self.maxes[tap].update(a, rows=rows.to(dev))
            self.hists[tap].update(a)
            if self.buffers[tap] is not None:
                self.buffers[tap].index_copy_(0, slot, a[has].float())

    def end(self, split: str) -> None:
        if split == "test":
            self._alignment_rows()
            return
        if not self.sums:
            raise ValueError("the signals probe needs training samples; the training split is empty")
        top: dict[str, int] = {}
        for tap in self.taps:
            m, n = self.sums[tap].means(), self.sums[tap].group_counts()
            self.means[tap] = m
            for subset, group in (("by_true", "noisy_true"), ("by_observed", "noisy_obs")):
                per_class, avg = separation(m["clean"], m[group], n["clean"], n[group], self.p.min_noisy)
                for k in range(self.c):
                    if not math.isnan(float(per_class[k])):
                        self.add("separation", float(per_class[k]), subset, tap, k)
                self.add("separation", avg, subset, tap, -1)
            top[tap] = self._large_activation(tap)
        if self.p.dependence:
            self._dependence(top)

    def _large_activation(self, tap: str) -> int:
        """Write the large-activation rows of one tap; return its top neuron."""
        nmax, hist, state, add = self.maxes[tap], self.hists[tap], self.state, self.add
        value, neuron, row = nmax.top()  # row: index into data.x_train
        med = hist.median(nonzero=self.p.median == "nonzero")
        ratio = value / med if med > 0 else float("inf")
        word = large_activation_flag(ratio, self.p.threshold, MEDIAN_REL_ERROR)
        flag = word == LARGE
        add("large_act_max", value, "train", tap)
        add("large_act_neuron", neuron, "train", tap)
        add("large_act_row", row, "train", tap)
        add("large_act_median", med, "train", tap)
        add("large_act_ratio", ratio, "train", tap)
        add("large_act_flag", 1.0 if flag else 0.0 if word == NOT_LARGE else float("nan"), "train", tap)
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

    def _dependence(self, top: dict[str, int]) -> None:
        data = self.data
        x = data.x_train if self.sel is None else data.x_train[self.sel]
        _rows, fit, z = self.p.dependence_sample(x)
        rows = self.dep_rows
        cols = {tap: self.buffers[tap][:, top[tap]].cpu() for tap in top if self.buffers.get(tap) is not None}
        rest = [tap for tap in top if tap not in cols]
        if rest:  # activations too wide to buffer: one more pass over the subsample
            parts: dict[str, list[torch.Tensor]] = {tap: [] for tap in rest}
            for _sl, _logits, acts in iter_taps(self.model, data.x_train[rows], rest, self.ctx.batch_size,
                                                self.ctx.device):
                for tap, a in acts.items():
                    parts[tap].append(a[:, top[tap]].detach().float().cpu())
            cols.update({tap: torch.cat(p) for tap, p in parts.items()})
        yt, yo = data.y_train_true[rows].cpu(), data.y_train[rows].cpu()
        for tap in top:
            v = cols[tap]
            self.add("eta2_true", correlation_ratio(v, yt, self.c), "train", tap)
            self.add("eta2_obs", correlation_ratio(v, yo, self.c), "train", tap)
            self.add("r2_input", heldout_r2(z, v, fit), "train", tap)

    def _test_batch(self, rows: torch.Tensor, logits: torch.Tensor, acts: dict) -> None:
        pred = logits.argmax(1)
        self.preds.append(pred.cpu())
        for tap, a in acts.items():
            m = self.means[tap]
            self.scores[tap].append(alignment_scores(a, pred, m["clean"], m["noisy_obs"]).cpu())

    def _alignment_rows(self) -> None:
        y = self.data.y_test if self.test_keep is None else self.data.y_test[self.test_keep]
        preds = torch.cat(self.preds) if self.preds else torch.zeros(0, dtype=torch.int64)
        correct = preds == y.cpu()
        for tap in self.taps:
            s = torch.cat(self.scores[tap]) if self.scores[tap] else torch.zeros(0, dtype=torch.float64)
            summary = summarize_alignment(s, correct)
            self.add("alignment_correct", summary["correct"], "test", tap)
            self.add("alignment_wrong", summary["wrong"], "test", tap)
            self.add("alignment_n_correct", summary["n_correct"], "test", tap)
            self.add("alignment_n_wrong", summary["n_wrong"], "test", tap)
            self.add("alignment_sd_correct", summary["sd_correct"], "test", tap)
            self.add("alignment_sd_wrong", summary["sd_wrong"], "test", tap)

    def rows(self) -> list[Row]:
        return self.out


def _mask(n: int, sel: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros(n, dtype=torch.bool)
    keep[sel] = True
    return keep
