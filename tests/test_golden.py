"""The redesign changes structure, not numbers: golden runs recorded before it reproduce, on any CPU.

Every row of each golden table (tests/golden/*.parquet, see tests/golden/configs.py) must be
present in the re-run (NaN matches NaN; rows added since, new metrics, are allowed) and agree
within a tolerance that follows how well conditioned the number is. The runs train in float32,
so another CPU kernel set (``ATEN_CPU_CAPABILITY=default / avx2 / avx512``, another vendor's
blocking) legitimately moves every weight by a few float32 roundings; after a few epochs the
features, and so their covariance C, differ by a relative perturbation we bound by

    EPS = 1e-5   (||Delta C|| <= EPS * lambda_1; about 80 float32 unit roundoffs: the largest
                  difference measured between four kernel sets is ~5e-8 * lambda_1)

and each metric's tolerance is what that perturbation can do to it (``tolerance`` below):

* **exact** (integers: argmaxes and counts: ``d_star``, ``trunc_d_star``, ``n``, neuron / row
  indices, flags): equal.
* **accuracies** (``acc``, ``probe_acc``, ``trunc_acc``, ``fit_acc``, ``*_d_star``): one sample
  of the subset may flip (atol 1/n); a sample sitting on a decision boundary is legitimate.
* **well-conditioned summaries** (losses, spectrum summaries such as effective rank, the
  signals' separations, alignments, ratios): rtol = atol = EPS.
* **eigenvalues**: Weyl's bound |Delta lambda_k| <= ||Delta C||: atol EPS * lambda_1 (rtol EPS).
* **per-component noise share rho_k** (ill-conditioned in a near-degenerate tail, where the
  eigenvectors are free to rotate): first-order perturbation of rho_k = v_k' S v_k / (n lambda_k)
  with ||Delta v_k|| <= ||Delta C|| / gap_k (gap_k = distance from lambda_k to its nearest other
  eigenvalue) and S <= n C gives

      tol_k = EPS * (2 lambda_1 sqrt(lambda_1 / lambda_k) / gap_k + 2 lambda_1 / lambda_k),

  capped at 1 (rho_k is in [0, 1]; exactly degenerate or zero-variance components are then
  unconstrained), and the invariant that no rotation inside an eigenspace changes,
  sum_k lambda_k rho_k = tr(S_noisy) / n, compared at atol EPS * sum_k lambda_k.
* **quantities of the top-d subspace** (``tail_fraction``, ``segregation`` at d_star;
  ``tail_margin_share`` at trunc_d_star): Davis-Kahan, ||Delta P_d|| <= ||Delta C|| / gap_d with
  gap_d = lambda_d - lambda_{d+1}: tol = EPS * (1 + 4 lambda_1 / gap_d).
* **noise-dominated count / variance share** (rho_k >= tau): may change by the components whose
  rho_k lies within tol_k of tau (and their variance share).

All eigenvalues and gaps are the golden table's own (the conditioning of the recorded problem).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from noisescope import load_config, load_run, run_experiment
from noisescope.evidence.tail import noise_dominated_threshold
from noisescope.metrics import KEY

GOLDEN_DIR = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN_DIR))
from configs import GOLDEN  # noqa: E402

EPS = 1e-5
EXACT = {"d_star", "trunc_d_star", "n", "alignment_n_correct", "alignment_n_wrong", "large_act_flag",
         "large_act_neuron", "large_act_row", "large_act_same_neuron", "large_act_tracked_neuron"}
ACCURACY = {"acc", "probe_acc", "probe_acc_d_star", "trunc_acc", "trunc_acc_d_star", "fit_acc"}


def _spectrum(gold: pd.DataFrame, epoch: int, tap: str) -> np.ndarray:
    """The golden eigenvalues lambda_1 >= ... >= lambda_D of (epoch, tap), (D,)."""
    e = gold[(gold["probe"] == "spectral") & (gold["metric"] == "eigval") & (gold["epoch"] == epoch)
             & (gold["tap"] == tap)].sort_values("index")
    return e["value"].to_numpy(float)


def _gaps(lam: np.ndarray) -> np.ndarray:
    """(D,) distance from each eigenvalue to its nearest other one."""
    d = np.abs(lam[:, None] - lam[None, :])
    np.fill_diagonal(d, np.inf)
    return d.min(1) if len(lam) > 1 else np.full(len(lam), np.inf)


def share_tolerance(lam: np.ndarray) -> np.ndarray:
    """(D,) tolerance of rho_k for the spectrum ``lam`` (module docstring), capped at 1."""
    lam1 = max(float(lam.max()), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tol = EPS * (2 * lam1 * np.sqrt(lam1 / lam) / _gaps(lam) + 2 * lam1 / lam)
    return np.where(np.isfinite(tol) & (lam > 0), np.minimum(tol, 1.0), 1.0)


def subspace_tolerance(lam: np.ndarray, d: float) -> float:
    """Tolerance of a quantity of the top-d subspace: EPS * (1 + 4 lambda_1 / gap_d)."""
    d = int(d) if np.isfinite(d) else 0
    if not 1 <= d < len(lam):
        return EPS  # d = D (no tail) or no subspace: nothing ill-conditioned
    gap = lam[d - 1] - lam[d]
    return min(EPS * (1 + 4 * lam[0] / gap), 1.0) if gap > 0 else 1.0


def tolerance(gold: pd.DataFrame) -> np.ndarray:
    """(rows,) absolute tolerance of every golden row (module docstring)."""
    value = gold["value"].to_numpy(float)
    tol = EPS + EPS * np.abs(value)  # well-conditioned summaries
    metric = gold["metric"].to_numpy()
    tol[np.isin(metric, list(EXACT))] = 0.0
    n = gold[(gold["probe"] == "dynamics") & (gold["metric"] == "n")].groupby("subset")["value"].min()
    for i in np.nonzero(np.isin(metric, list(ACCURACY)))[0]:
        tol[i] = 1.0 / n.get(gold["subset"].iat[i], n.min()) + 1e-9
    spec = gold[gold["probe"] == "spectral"]
    for (epoch, tap), g in spec.groupby(["epoch", "tap"]):
        lam = _spectrum(gold, epoch, tap)
        if not len(lam):
            continue
        at = {m: g[g["metric"] == m] for m in g["metric"].unique()}
        if "eigval" in at:
            rows = at["eigval"].index
            tol[rows] = EPS * lam[0] + EPS * np.abs(value[rows])
        if "noise_share" in at:
            rows = at["noise_share"].sort_values("index").index
            rho_tol = share_tolerance(lam)
            tol[rows] = rho_tol
            rho = value[rows]
            if "noise_rate" in at and {"noise_dominated_count", "noise_dominated_variance_share"} <= set(at):
                rate = float(at["noise_rate"]["value"].iat[0])
                if rate > 0:
                    near = np.abs(rho - noise_dominated_threshold(rate)) <= rho_tol
                    tol[at["noise_dominated_count"].index] = float(near.sum())
                    share = float(lam[near].clip(min=0).sum() / lam.clip(min=0).sum())
                    tol[at["noise_dominated_variance_share"].index] = share + EPS
        for name, d_metric in (("tail_fraction", "d_star"), ("segregation", "d_star"),
                               ("tail_margin_share", "trunc_d_star")):
            if name in at and d_metric in at:
                d = at[d_metric][at[d_metric]["subset"] == "val"]["value"]
                tol[at[name].index] = subspace_tolerance(lam, float(d.iat[0]) if len(d) else np.nan)
    return tol


def share_invariants(table: pd.DataFrame) -> pd.Series:
    """sum_k lambda_k rho_k per (epoch, tap): tr(S_noisy) / n, unchanged by rotations inside
    an eigenspace."""
    spec = table[table["probe"] == "spectral"]
    lam = spec[spec["metric"] == "eigval"].set_index(["epoch", "tap", "index"])["value"]
    rho = spec[spec["metric"] == "noise_share"].set_index(["epoch", "tap", "index"])["value"]
    both = pd.concat({"lam": lam, "rho": rho}, axis=1).dropna()
    return (both["lam"] * both["rho"]).groupby(level=[0, 1]).sum()


def compare(gold: pd.DataFrame, now: pd.DataFrame) -> list[str]:
    """What differs beyond tolerance (empty when the re-run reproduces the golden table)."""
    gold = gold.reset_index(drop=True)
    merged = gold.merge(now, on=KEY, how="left", suffixes=("_gold", "_now"), indicator=True)
    missing = merged[merged["_merge"] != "both"]
    if not missing.empty:
        return [f"{len(missing)} golden rows missing, e.g. {missing[KEY].head(3).to_dict('records')}"]
    a, b = merged["value_gold"].to_numpy(float), merged["value_now"].to_numpy(float)
    tol = tolerance(gold)
    same = (np.abs(a - b) <= tol) | (np.isnan(a) & np.isnan(b)) | (a == b)
    problems = []
    bad = merged.assign(tol=tol)[~same]
    if not bad.empty:
        example = bad[[*KEY, "value_gold", "value_now", "tol"]].head(5).to_dict("records")
        problems.append(f"{len(bad)} rows differ beyond their tolerance, e.g. {example}")
    inv_gold, inv_now = share_invariants(gold), share_invariants(now)
    total = gold[(gold["probe"] == "spectral") & (gold["metric"] == "eigval")].groupby(["epoch", "tap"])["value"]
    inv_tol = EPS * total.apply(lambda v: v.clip(lower=0).sum())
    diff = (inv_gold - inv_now.reindex(inv_gold.index)).abs()
    off = diff[~(diff <= inv_tol.reindex(inv_gold.index))]
    if not off.empty:
        problems.append(f"sum_k lambda_k rho_k differs at {off.to_dict()} (tolerance EPS * sum lambda)")
    return problems


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_golden_run_reproduces_every_recorded_metric_within_its_conditioning(name, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(None, [*GOLDEN[name], f"run.root={tmp_path}", f"run.name={name}"])
        now = load_run(run_experiment(cfg)).metrics
    finally:
        torch.set_num_threads(before)
    gold = pd.read_parquet(GOLDEN_DIR / f"{name}.parquet")
    problems = compare(gold, now)
    assert not problems, "; ".join(problems)


def test_the_tolerances_follow_the_conditioning():
    """Known answers: a well-separated component gets a tight tolerance, a nearly degenerate
    pair a loose one; a subspace cut inside a degenerate cluster is unconstrained."""
    lam = np.array([10.0, 5.0, 1.0, 1.0 + 1e-7, 0.0])
    tol = share_tolerance(lam)
    assert tol[0] == pytest.approx(EPS * (2 * 10 / 5 + 2))
    assert tol[1] < 1e-3
    assert tol[2] == tol[3] == 1.0  # gap 1e-7: the pair can rotate freely
    assert tol[4] == 1.0  # no variance: rho_k is 0 by convention, anything goes
    assert subspace_tolerance(lam, 2) == pytest.approx(EPS * (1 + 4 * 10 / 4))
    assert subspace_tolerance(lam, 3) == 1.0
    assert subspace_tolerance(lam, 5) == EPS


def test_a_changed_number_is_caught_and_a_tail_wobble_is_not():
    """The comparison is not vacuous: the digits golden with one loss moved by 1e-4 fails. In the
    tail, a rotation of two neighbouring components (their noise shares moved in opposite
    directions within their tolerances, sum_k lambda_k rho_k kept) passes; the same move of one
    component alone breaks the invariant; a move by 1.5 times its tolerance fails."""
    gold = pd.read_parquet(GOLDEN_DIR / "digits.parquet")
    assert compare(gold, gold) == []
    moved = gold.copy()
    i = moved.index[(moved["metric"] == "loss") & (moved["probe"] == "dynamics")][0]
    moved.loc[i, "value"] += 1e-4
    assert compare(gold, moved)
    tol = tolerance(gold)
    epoch = int(gold["epoch"].max())
    shares = gold[(gold["metric"] == "noise_share") & (gold["tap"] == "layer2")
                  & (gold["epoch"] == epoch)].sort_values("index").index
    lam = _spectrum(gold, epoch, "layer2")
    k = int(np.argmax(np.where(tol[shares] < 1.0, tol[shares], 0)))  # the loosest constrained one
    j, partner = shares[k], shares[k - 1]
    assert 1e-3 < tol[j] < 1.0  # a tail component: far looser than any summary
    step = 0.5 * tol[j]
    assert step * lam[k] / lam[k - 1] < tol[partner]
    rotated = gold.copy()
    rotated.loc[j, "value"] += step
    rotated.loc[partner, "value"] -= step * lam[k] / lam[k - 1]
    assert compare(gold, rotated) == []
    alone = gold.copy()
    alone.loc[j, "value"] += step
    assert compare(gold, alone) and "lambda_k rho_k" in compare(gold, alone)[0]
    far = gold.copy()
    far.loc[j, "value"] += 1.5 * tol[j]
    assert "rows differ" in compare(gold, far)[0]
