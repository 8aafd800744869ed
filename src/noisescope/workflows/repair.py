"""Every post-hoc repair of a stored run side by side: ``noisescope repair RUN``.

One row per method (docs/repair.md has the full definitions). Every choice (epoch, d, rank,
tap, fraction) is made on the noisy validation split with observed labels; the clean test set
is only reported.

======================== ====================================================================
method                   what
======================== ====================================================================
final                    the converged model (last checkpoint): the model every repair repairs
early_stop               the saved checkpoint with the best noisy-validation accuracy
feature_trunc:penult     original head on mu + V_d V_d^T (phi - mu), d by the 1se rule
feature_trunc:best_tap   spectral linear probe, (tap, d) chosen jointly over every tap
feature_trunc:all_layers every tap's output projected onto its top-d_l directions inside the
                         forward pass (``spectral.layerwise``, greedy or shared fraction)
weight_trunc:val         each hidden layer's weight matrix cut to rank r_l, ranks chosen by
                         ``weights.choose_ranks`` (1se rule; greedy or shared fraction)
weight_trunc:ww0.8       WeightWatcher's fixed share: r_l = floor(0.8 M_l) in every hidden layer
refit:ridge              a ridge head refitted on the top-d penultimate coordinates, d by 1se
refit:logistic           a logistic head refitted on the top-d penultimate coordinates, d by 1se
label_free:<rule>        original head at a d chosen without labels (``weights.label_free_d``:
                         eigengap, control_edge against the epoch-0 spectrum, mp_edge)
cleaning                 retraining without (or relabelling) flagged samples (``workflows.clean``)
raw_input                reference: the spectral linear probe on the raw inputs (no network)
oracle                   upper bound: the same config retrained on the clean labels of the same
                         samples (``noise.model = "none"``), early-stopped on its (clean)
                         validation; a sub-run ``RUN/oracle``, trained only with ``oracle=True``
======================== ====================================================================

Columns (COLUMNS): accuracies on noisy validation (observed labels) and clean test, each with
its 95% Wilson interval and n; ``val_gain`` / ``val_gain_se``: the paired noisy-validation gain
over the final model and its standard error (informative); ``verdict``: the row's outcome under
the recommendation rule (``Recommendation.outcome``: recommended, kept, undecided, beaten, not
beaten, "= X"; empty for the reference and the oracle); ``val_p``: McNemar's exact p of the most
accurate candidate against this row on noisy validation; ``es_*``: McNemar's exact test against
early stopping on the clean test set (b = this right and early stopping wrong, c = the reverse,
diff = this minus early stopping); ``gap_closed`` = (acc - acc_es) / (acc_oracle - acc_es) on
clean test, when the oracle was measured; ``seconds``: wall time to build the repair (its passes
over the data and its choice on noisy validation; an analysis shared by several rows is counted
in each; the oracle's is its training time), not counting the clean-test evaluation.

The recommended model is :func:`evidence.rules.recommend` over every candidate row (every kind
but "reference" and "oracle": the final model, early stopping, the repairs) with early stopping
as the safe default: a candidate replaces it only when it beats every other candidate on noisy
validation by McNemar's exact test ("no decision" is an answer: early stopping is kept). It is
exported as a plain module (:func:`export_repair`, :func:`load_repair`): safetensors + JSON,
rebuilt from the JSON with ``noisescope.models.build_model``, no optimizer, run store or pickle.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from noisescope.evaluate import correct
from noisescope.evidence.intervals import wilson_interval
from noisescope.evidence.paired import mcnemar
from noisescope.evidence.rules import Recommendation, decision_warning, recommend, repair_verdict
from noisescope.io import atomic_write, jsonable, write_json
from noisescope.models.base import TappedModel
from noisescope.runs.run import Run, load_run
from noisescope.spectral.analysis import analyse
from noisescope.spectral.compare import best_tap
from noisescope.spectral.export import SpectralHead, TruncatedModel
from noisescope.spectral.heads import logistic_readouts, ridge_readout
from noisescope.spectral.layerwise import d_candidates, fit_layerwise
from noisescope.spectral.linear_probe import choose_d, cumulative_correct
from noisescope.spectral.stats import FeatureStats, Spectrum
from noisescope.spectral.truncation import SpectralTruncation
from noisescope.taps import INPUT_TAP, iter_taps
from noisescope.weights import choose_ranks, fixed_share_ranks, label_free_d, truncate_weights, weight_layers
from noisescope.workflows.oracle import _complete, ensure_oracle
from noisescope.workflows.repair_export import (
    CLEANING_MISSING,
    COLUMNS,
    DEFAULT,
    EXPORT_DIR,
    JSON_FILE,
    NOT_CANDIDATES,
    ORACLE_MISSING,
    TABLE_FILE,
    export_module,
    load_repair,  # noqa: F401  (re-exported: docs/repair.md imports it from here)
    model_spec,
)
from noisescope.workflows.truncate import early_stop_epoch, resolve_target


@dataclass
class RepairReport:
    """What :func:`repair_run` measured.

    Attributes:
        path: the run; table: COLUMNS, one row per method; final_epoch / early_epoch.
        decision: :func:`evidence.rules.recommend` over the candidate rows, default early stopping.
        recommended: the row to use (``decision.choice``: ``"early_stop"`` unless a candidate
            beats every other).
        decision_posthoc / recommended_posthoc: the same rule over the final model and its
            repairs that neither retrain nor read another checkpoint, default the final model.
        export: where the recommended module was written.
        sources: method -> (run directory, epoch) its weights come from (a sub-run for
            cleaning and the oracle).
        modules: method -> the repaired nn.Module (in memory; :func:`export_repair` writes any).
        correct: method -> {"val", "test"}: per-sample correctness (bool arrays).
        warning: ``resolution_warning`` of the noisy-validation set, or None.
        notes: what was left out and why.
    """

    path: Path
    table: pd.DataFrame
    final_epoch: int
    early_epoch: int
    decision: Recommendation | None = None
    decision_posthoc: Recommendation | None = None
    export: Path | None = None
    modules: dict[str, nn.Module] = field(default_factory=dict)
    correct: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    warning: str | None = None
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    sources: dict[str, tuple[Path, int]] = field(default_factory=dict)

    @property
    def recommended(self) -> str | None:
        return None if self.decision is None else self.decision.choice

    @property
    def recommended_posthoc(self) -> str | None:
        return None if self.decision_posthoc is None else self.decision_posthoc.choice

    def row(self, method: str) -> dict:
        t = self.table[self.table.method == method]
        if t.empty:
            raise KeyError(f"no row {method!r}; rows: {self.table.method.tolist()}")
        return t.iloc[0].to_dict()

    def verdict_line(self) -> str:
        """The decision in one line (``Recommendation.line``)."""
        return "no decision: no candidate" if self.decision is None else self.decision.line


def _acc_cols(prefix: str, c: np.ndarray | None) -> dict:
    if c is None or len(c) == 0:
        nan = float("nan")
        return {f"{prefix}_acc": nan, f"{prefix}_low": nan, f"{prefix}_high": nan, f"n_{prefix}": 0}
    k, n = int(c.sum()), int(len(c))
    lo, hi = wilson_interval(k, n)
    return {f"{prefix}_acc": k / n, f"{prefix}_low": lo, f"{prefix}_high": hi, f"n_{prefix}": n}


class _Board:
    """Collects rows, modules and correctness vectors."""

    def __init__(self, data, batch_size: int, device: torch.device) -> None:
        self.data, self.bs, self.dev = data, batch_size, device
        self.rows: list[dict] = []
        self.modules: dict[str, nn.Module] = {}
        self.correct: dict[str, dict[str, np.ndarray]] = {}
        self.sources: dict[str, tuple[Path, int]] = {}

    def measure(self, module: nn.Module) -> dict[str, np.ndarray]:
        d = self.data
        return {"val": correct(module, d.x_val, d.y_val, self.bs, self.dev).numpy(),
                "test": correct(module, d.x_test, d.y_test, self.bs, self.dev).numpy()}

    def add(self, method: str, kind: str, *, module: nn.Module | None = None,
            right: dict[str, np.ndarray] | None = None, seconds: float = float("nan"), posthoc: bool = False,
            epoch: int = -1, tap: str = "", choice: str = "", d: int = -1, note: str = "",
            source: Path | None = None) -> None:
        """One row; ``source``: the run directory the module's weights come from (at ``epoch``),
        when it is not the repaired run itself (a sub-run)."""
        if module is not None and right is None:
            right = self.measure(module)
        if module is not None:
            self.modules[method] = module
            if source is not None:
                self.sources[method] = (Path(source), int(epoch))
        if right is not None:
            self.correct[method] = right
        self.rows.append({
            "method": method, "kind": kind, "posthoc": bool(posthoc),
            "repairs": "final" if kind == "repair" else "", "epoch": int(epoch), "tap": tap, "choice": choice,
            "d": int(d), **_acc_cols("val", None if right is None else right["val"]),
            **_acc_cols("test", None if right is None else right["test"]), "seconds": float(seconds), "note": note,
        })


def _hidden_layers(model: TappedModel) -> list[str]:
    head = model.head
    return [n for n, m in weight_layers(model).items() if m is not head]


def _spectrum_of(model: TappedModel, x: torch.Tensor, tap: str, bs: int, dev: torch.device) -> Spectrum:
    stats = None
    for _sl, _lg, acts in iter_taps(model, x, [tap], bs, dev):
        stats = stats or FeatureStats(acts[tap].shape[1])
        stats.update(acts[tap])
    return stats.spectrum()


def _coords(model: TappedModel, x: torch.Tensor, tap: str, spec: Spectrum, bs: int, dev: torch.device) -> torch.Tensor:
    parts = [spec.project(acts[tap]).cpu() for _sl, _lg, acts in iter_taps(model, x, [tap], bs, dev)]
    return torch.cat(parts) if parts else torch.zeros(0, spec.dim, dtype=torch.float64)


def _ranks_text(ranks: dict[str, int], full: dict[str, int]) -> str:
    return ", ".join(f"{n} {r}/{full[n]}" if r < full[n] else f"{n} -" for n, r in ranks.items())


def repair_run(
    target: str | Path,
    *,
    oracle: bool = False,
    oracle_cache: str | Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 2048,
    layers: str = "hidden",
    rank_strategy: str = "greedy",
    layer_strategy: str = "greedy",
    ridge: float = 1.0,
    logistic_l2: float = 1e-3,
    d_rule: str = "1se",
    clean: str | None = None,
    clean_method: str = "consensus",
    export: bool = True,
    out: str | Path | None = None,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
) -> RepairReport:
    """The repair leaderboard of one run (module docstring); writes ``RUN/repair.json`` and
    ``RUN/repair.parquet`` (``write``) and the recommended module (``export``, default ``RUN/repaired``).

    Args:
        target: a run directory (final = last checkpoint) or one of its checkpoint files.
        oracle: train the clean-label oracle sub-run ``RUN/oracle`` if it is not there yet (an
            existing complete one is always used).
        oracle_cache: a directory of oracles shared between runs of the same samples and seeds.
        layers: weight truncation on the ``"hidden"`` layers (every weight layer but the head) or
            ``"all"``.
        rank_strategy / layer_strategy: ``"greedy"`` or ``"shared"`` (``weights.choose_ranks``,
            ``spectral.layerwise.fit_layerwise``).
        ridge: ridge strength of the refitted ridge head, relative: alpha = ridge * N * mean(lambda).
        logistic_l2: L2 strength of the refitted logistic head (on whitened coordinates).
        d_rule: ``"1se"`` or ``"argmax"`` for every d chosen on a grid.
        clean / clean_method: retrain without (``"remove"``) or relabelling (``"relabel"``) the
            samples ``clean_method`` flagged in ``RUN/label_issues.parquet`` (``noisescope
            label-issues RUN``); None only reads an existing cleaning sub-run.
    """
    if clean not in (None, "remove", "relabel"):
        raise ValueError(f"clean must be None, 'remove' or 'relabel', got {clean!r}")
    say = progress or (lambda _m: None)
    run_dir, epoch = resolve_target(target)
    run = load_run(run_dir)
    data = run.data
    if len(data.y_val) == 0:
        raise ValueError("repairs are chosen on noisy validation: this run has no validation split "
                         "(data.val_fraction = 0)")
    if layers not in ("hidden", "all"):
        raise ValueError(f"layers must be 'hidden' or 'all', got {layers!r}")
    ckpts = run.checkpoints()
    if not ckpts:
        raise FileNotFoundError(f"{run.path} has no checkpoints")
    epoch = max(ckpts) if epoch is None else epoch
    dev = torch.device(device)
    final = run.model(epoch).to(dev).eval()
    board = _Board(data, batch_size, dev)
    notes: list[str] = []
    n_train = len(data.y_train)

    board.add("final", "baseline", module=final, seconds=0.0, epoch=epoch, tap=final.feature_tap,
              choice="as trained", d=final.feature_dim)

    t0 = time.perf_counter()
    e_epoch, best_any = early_stop_epoch(run, dev)
    early = run.model(e_epoch).to(dev).eval()
    note = "" if best_any in (None, e_epoch) else f"best probed epoch {best_any} has no checkpoint"
    board.add("early_stop", "repair", module=early, seconds=time.perf_counter() - t0, epoch=e_epoch,
              tap=early.feature_tap, choice=f"epoch {e_epoch}", d=early.feature_dim, note=note)
    say(f"early stopping: epoch {e_epoch}")

    # ---- feature truncation: one analysis of every tap of the final model
    t0 = time.perf_counter()
    res = analyse(final, data, "auto", d_rule=d_rule, segregation=False, batch_size=batch_size, device=dev)
    ft = final.feature_tap
    if ft not in res:
        res.update(analyse(final, data, "feature", d_rule=d_rule, segregation=False, batch_size=batch_size,
                           device=dev))
    t_analysis = time.perf_counter() - t0
    say("spectral analysis of every tap")
    feat = res[ft]
    t0 = time.perf_counter()
    est = SpectralTruncation(head="original", d_rule=d_rule).fit_analysis(feat)
    board.add("feature_trunc:penult", "repair", module=est.to_module(final), posthoc=True, epoch=epoch, tap=ft,
              choice=f"d={est.d_}/{feat.spectrum.dim}", d=est.d_, seconds=t_analysis + time.perf_counter() - t0)
    d_val = est.d_
    t0 = time.perf_counter()
    bt = best_tap(res)
    est_bt = SpectralTruncation(head="refit", d_rule=d_rule).fit_analysis(bt)
    board.add("feature_trunc:best_tap", "repair", module=est_bt.to_module(final, bt.tap), posthoc=True, epoch=epoch,
              tap=bt.tap, choice=f"{bt.tap} d={est_bt.d_}/{bt.spectrum.dim} (probe)", d=est_bt.d_,
              seconds=t_analysis + time.perf_counter() - t0)

    t0 = time.perf_counter()
    lw = fit_layerwise(final, data, strategy=layer_strategy, batch_size=batch_size, device=dev, progress=say)
    board.add("feature_trunc:all_layers", "repair", module=lw.module, posthoc=True, epoch=epoch, tap="all",
              choice=f"{lw.describe()} ({layer_strategy})", seconds=time.perf_counter() - t0)

    # ---- weight truncation
    names = _hidden_layers(final) if layers == "hidden" else list(weight_layers(final))
    full = {n: min(final.get_submodule(n).weight.shape[0], final.get_submodule(n).weight[0].numel()) for n in names}
    t0 = time.perf_counter()
    choice = choose_ranks(final, lambda m: int(correct(m, data.x_val, data.y_val, batch_size, dev).sum()),
                          len(data.y_val), strategy=rank_strategy, layers=names)
    cut = {n: r for n, r in choice.ranks.items() if r < full[n]}
    board.add("weight_trunc:val", "repair", module=truncate_weights(final, cut).eval() if cut else final,
              posthoc=True, epoch=epoch, tap=layers,
              choice=f"{_ranks_text(choice.ranks, full)} ({rank_strategy})", seconds=time.perf_counter() - t0)
    say(f"weight truncation: {choice.ranks}")
    t0 = time.perf_counter()
    ww = fixed_share_ranks(final, 0.8, layers=names)
    board.add("weight_trunc:ww0.8", "repair", module=truncate_weights(final, ww).eval(), posthoc=True, epoch=epoch,
              tap=layers, choice=_ranks_text(ww, full), seconds=time.perf_counter() - t0)

    # ---- refitted heads on the truncated penultimate features
    t0 = time.perf_counter()
    spec = feat.spectrum
    z_tr = _coords(final, data.x_train, ft, spec, batch_size, dev)
    z_val = _coords(final, data.x_val, ft, spec, batch_size, dev)
    t_coords = time.perf_counter() - t0
    grid = np.arange(1, spec.dim + 1)
    n_val = len(data.y_val)
    t0 = time.perf_counter()
    alpha = float(ridge) * n_train * float(spec.eigvals.mean())
    rr = ridge_readout(z_tr, data.y_train, spec.eigvals, data.num_classes, alpha)
    d_r = choose_d(cumulative_correct(z_val, data.y_val, rr, grid), grid, n_val, d_rule)
    mod = TruncatedModel(final, ft, SpectralHead.from_readout(spec, rr, d_r).to(dev)).eval()
    board.add("refit:ridge", "repair", module=mod, posthoc=True, epoch=epoch, tap=ft,
              choice=f"d={d_r}/{spec.dim}, alpha={ridge:g} N mean(lambda)", d=d_r,
              seconds=t_analysis + t_coords + time.perf_counter() - t0)
    t0 = time.perf_counter()
    lgrid = d_candidates(spec.dim, per_octave=2)
    heads = logistic_readouts(z_tr, data.y_train, spec.eigvals, data.num_classes, lgrid, l2=logistic_l2)
    counts = [int((heads[d].scores(z_val, d).argmax(1) == data.y_val.cpu()).sum()) for d in lgrid]
    d_l = choose_d(np.asarray(counts), np.asarray(lgrid), n_val, d_rule)
    mod = TruncatedModel(final, ft, SpectralHead.from_readout(spec, heads[d_l], d_l).to(dev)).eval()
    board.add("refit:logistic", "repair", module=mod, posthoc=True, epoch=epoch, tap=ft,
              choice=f"d={d_l}/{spec.dim}, l2={logistic_l2:g}", d=d_l,
              seconds=t_analysis + t_coords + time.perf_counter() - t0)
    say(f"refitted heads: ridge d={d_r}, logistic d={d_l}")
    del z_tr, z_val

    # ---- label-free d
    t0 = time.perf_counter()
    control = None
    if 0 in ckpts:
        control = _spectrum_of(run.model(0).to(dev).eval(), data.x_train, ft, batch_size, dev).eigvals
    else:
        notes.append("no epoch-0 checkpoint: label_free:control_edge not measured")
    lf_raw = label_free_d(spec.eigvals, n_samples=n_train, control_eigvals=control)
    lf = {rule: int(min(max(dl, 1), spec.dim)) for rule, dl in lf_raw.items()}  # the d each row uses
    for rule, dl in lf_raw.items():
        if dl != lf[rule]:
            notes.append(f"label_free:{rule}: the rule gives d={dl}; d={lf[rule]} used (d lies in [1, {spec.dim}])")
    t_lf = t_analysis + time.perf_counter() - t0
    for rule, dl in lf.items():
        t1 = time.perf_counter()
        e = SpectralTruncation(d=dl, head="original").fit_analysis(feat)
        board.add(f"label_free:{rule}", "repair", module=e.to_module(final), posthoc=True, epoch=epoch, tap=ft,
                  choice=f"d={dl} (noisy-val d={d_val})", d=dl, seconds=t_lf + time.perf_counter() - t1)

    # ---- cleaning + retraining
    _cleaning_row(board, run, notes, clean, clean_method, say)

    # ---- references
    t0 = time.perf_counter()
    raw = analyse(None, data, d_rule=d_rule, segregation=False, batch_size=batch_size, device=dev)[INPUT_TAP]
    est_raw = SpectralTruncation(head="refit", d_rule=d_rule).fit_analysis(raw)
    secs = time.perf_counter() - t0
    right = {k: (est_raw.predict(x.flatten(1).float()) == y.cpu()).numpy()
             for k, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test))}
    board.add("raw_input", "reference", right=right, seconds=secs, tap=INPUT_TAP,
              choice=f"d={est_raw.d_}/{raw.spectrum.dim} (probe)", d=est_raw.d_)

    opath, osecs = ensure_oracle(run, train=oracle, cache=oracle_cache, progress=say)
    if opath is not None:
        orun = load_run(opath)
        oe, _ = early_stop_epoch(orun, dev)
        omodel = orun.model(oe).to(dev).eval()
        board.add("oracle", "oracle", module=omodel, seconds=float("nan") if osecs is None else osecs, epoch=oe,
                  tap=omodel.feature_tap, choice=f"clean labels, epoch {oe} (best clean val)",
                  d=omodel.feature_dim, source=opath)
    else:
        board.add("oracle", "oracle", note=ORACLE_MISSING)

    report = _finish(run, board, epoch, e_epoch, notes)
    report.meta = {"run": str(run.path), "final_epoch": epoch, "early_epoch": e_epoch,
                   "settings": {"layers": layers, "rank_strategy": rank_strategy, "layer_strategy": layer_strategy,
                                "ridge": ridge, "logistic_l2": logistic_l2, "d_rule": d_rule,
                                "clean": clean, "clean_method": clean_method},
                   "label_free_d": lf, "label_free_d_rule": lf_raw, "noisy_val_d": d_val,
                   "oracle": None if opath is None else str(opath),
                   "model": model_spec(run)}
    if export:
        name = report.recommended or DEFAULT
        report.export = export_repair(report, name, Path(out) if out else run.path / EXPORT_DIR)
    if write:
        write_report(report)
    return report


def _cleaning_row(board: _Board, run: Run, notes: list[str], mode: str | None, method: str,
                  progress: Callable[[str], None]) -> None:
    """Cleaning + retraining (``workflows.clean``): the samples ``method`` flagged in the run's
    ``label_issues.parquet`` (``workflows.label_issues``) removed or relabelled, the config retrained
    with the run's training seed as ``RUN/cleaned/<mode>-<method>-s<seed>``, its early-stopped
    model (best noisy-validation epoch) scored. Retrains only when ``mode`` is given; an existing
    complete sub-run is used either way."""
    from noisescope.workflows.clean import retrain_cleaned
    from noisescope.workflows.label_issues import flagged_mask, read_label_issues

    try:
        read_label_issues(run.path)
    except FileNotFoundError:
        board.add("cleaning", "repair", note=CLEANING_MISSING)
        notes.append(f"cleaning: {CLEANING_MISSING} (then `noisescope repair RUN --clean remove`)")
        return
    seed = run.config.train.seed
    modes = [mode] if mode else ["remove", "relabel"]
    sub = next((run.path / "cleaned" / f"{m}-{method}-s{seed}" for m in modes
                if _complete(run.path / "cleaned" / f"{m}-{method}-s{seed}")), None)
    seconds = float("nan")
    if sub is None and mode:
        progress(f"retraining without the samples flagged by {method} ({mode})")
        t0 = time.perf_counter()
        res = retrain_cleaned(run.path, flagged_mask(run.path, method), mode=mode, seeds=(seed,), method=method)
        seconds = time.perf_counter() - t0
        sub = res.runs[(mode, seed)]
    if sub is None:
        board.add("cleaning", "repair", note="not measured: pass --clean remove (or relabel): retrains the config")
        return
    info = json.loads((sub / "cleaning.json").read_text())
    crun = load_run(sub)
    ce, _ = early_stop_epoch(crun, board.dev)
    board.add("cleaning", "repair", module=crun.model(ce).to(board.dev).eval(), epoch=ce, seconds=seconds,
              tap=crun.config.model.arch,
              choice=f"{info['mode']} {info['n_flagged']} flagged by {method}, retrained, epoch {ce}",
              note=f"sub-run {sub}", source=sub)


def gap_closed(acc: float, acc_es: float, acc_oracle: float) -> float:
    """(acc - acc_es) / (acc_oracle - acc_es) on clean test: the share of the early-stopping ->
    oracle gap a model closes (docs/definitions.md); NaN unless the oracle beats early stopping."""
    gap = acc_oracle - acc_es
    return (acc - acc_es) / gap if gap > 0 else float("nan")


def _finish(run: Run, board: _Board, epoch: int, e_epoch: int, notes: list[str]) -> RepairReport:
    right = board.correct
    fin, es = right["final"], right["early_stop"]
    orc = right.get("oracle")
    acc_es = float(es["test"].mean())
    gap = float(orc["test"].mean()) - acc_es if orc is not None else float("nan")
    kinds = {r["method"]: r["kind"] for r in board.rows}
    cands = {m: right[m]["val"] for m, k in kinds.items() if k not in NOT_CANDIDATES and m in right}
    post = {m: v for m, v in cands.items()
            if m == "final" or any(r["method"] == m and r["posthoc"] for r in board.rows)}
    decision = recommend(cands, default=DEFAULT)
    decision_p = recommend(post, default="final")
    for r in board.rows:
        m = r["method"]
        c = right.get(m)
        r.update(val_gain=float("nan"), val_gain_se=float("nan"), verdict="", val_p=float("nan"), es_b=-1, es_c=-1,
                 es_diff=float("nan"), es_p=float("nan"), gap_closed=float("nan"))
        if c is None:
            continue
        if m in cands:
            if m != "final":
                v = repair_verdict(c["val"], fin["val"], name=m)
                r.update(val_gain=v.gain, val_gain_se=v.se)
            r["verdict"] = decision.outcome(m)
            comp = next((x for x in decision.comparisons if x.second == m), None)
            if comp is not None:
                r["val_p"] = comp.p_value
        if m != "early_stop":
            mc = mcnemar(c["test"], es["test"])
            r.update(es_b=mc.b, es_c=mc.c, es_diff=mc.difference, es_p=mc.p_value)
        if orc is not None:
            r["gap_closed"] = gap_closed(float(c["test"].mean()), acc_es, float(orc["test"].mean()))
    if orc is not None and not gap > 0:
        notes.append(f"the oracle does not beat early stopping on clean test (gap {100 * gap:+.1f} points): "
                     "gap_closed is not defined")
    table = pd.DataFrame(board.rows, columns=COLUMNS)
    return RepairReport(run.path, table, epoch, e_epoch, decision, decision_p, None, board.modules, board.correct,
                        decision_warning(decision), notes, sources=dict(board.sources))


def export_repair(report: RepairReport, method: str, path: str | Path) -> Path:
    """Write the module of row ``method`` as a plain module (:func:`load_repair` reads it back).
    ``network.json`` / ``truncation.json`` / ``projected.json`` name the run and epoch the
    weights come from (``source_run``, ``source_epoch``: the early-stopping epoch, a cleaning
    or oracle sub-run's epoch, or the repaired final epoch)."""
    if method not in report.modules:
        raise ValueError(f"row {method!r} has no module to export; rows with one: {sorted(report.modules)}")
    row = report.row(method)
    src_run, src_epoch = report.sources.get(method, (report.path, int(row["epoch"])))
    if src_epoch < 0:
        src_epoch = report.final_epoch
    spec = report.meta.get("model")
    if method in report.sources:  # a sub-run: its own build spec (its input normalization is fitted on its data)
        spec = model_spec(load_run(src_run))
    meta = {"model": spec, "repair": method, "choice": row["choice"],
            "source_run": str(src_run), "source_epoch": int(src_epoch), "repaired_run": str(report.path),
            "recommended": method == report.recommended,
            "reason": report.verdict_line(), "val_acc": row["val_acc"], "test_acc": row["test_acc"]}
    if method != report.recommended:
        meta["note"] = f"not the recommended model ({report.recommended}): exported for inspection"
    return export_module(report.modules[method], path, meta)


def _decision_json(d: Recommendation | None) -> dict | None:
    return None if d is None else jsonable(dataclasses.asdict(d))


def report_json(report: RepairReport) -> dict:
    return {**{k: v for k, v in report.meta.items() if k != "model"},
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "recommended": report.recommended, "decision": _decision_json(report.decision),
            "verdict_line": report.verdict_line(),
            "recommended_posthoc": report.recommended_posthoc,
            "decision_posthoc": _decision_json(report.decision_posthoc),
            "export": None if report.export is None else str(report.export), "warning": report.warning,
            "notes": report.notes,
            "rows": jsonable(report.table.to_dict("records"))}


def write_report(report: RepairReport) -> None:
    write_json(report.path / JSON_FILE, report_json(report))
    atomic_write(report.path / TABLE_FILE, lambda p: report.table.to_parquet(p, index=False))


def read_table(path: str | Path) -> pd.DataFrame | None:
    """A run's stored leaderboard (``RUN/repair.parquet``) or None."""
    p = Path(path) / TABLE_FILE
    return pd.read_parquet(p) if p.is_file() else None


# --------------------------------------------------------------------------- several seeds
