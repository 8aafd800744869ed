"""The claims scorecard of a run or a sweep: ``noisescope verdict RUN_OR_SWEEP`` and the
report's first section.

A run's claims come from :func:`noisescope.workflows.verdict.run_verdict`. For a sweep every run is
scored the same way, then per claim: how many runs reached each status, and for each
configuration (the swept fields other than seeds) the mean and spread over its seeds of the
claim's key number (:data:`KEY_NUMBERS`, ``evidence.aggregate_seeds``: mean, sample standard
deviation and t-interval; a single seed shows no spread). A sweep over width alone also scores
"wider networks grow a larger tail" once per seed. The statuses are counted, never averaged:
three "supported" and one "not supported" is what it says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from noisescope.evidence.claims import STATUSES, Claim, claim_wider_larger_tail, jsonable
from noisescope.evidence.intervals import NON_NEGATIVE, UNIT, aggregate_seeds


def _get(nums: dict, *keys: str) -> float:
    v = nums
    for k in keys:
        if not isinstance(v, dict) or v.get(k) is None:
            return float("nan")
        v = v[k]
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _diff(a: str, b: str) -> Callable[[dict], float]:
    return lambda n: _get(n, a) - _get(n, b)


def _ends(key: str) -> Callable[[dict], float]:
    """First minus last value of a per-tap dict (shallow minus deep)."""
    def f(n: dict) -> float:
        vals = list((n.get(key) or {}).values())
        return float(vals[0]) - float(vals[-1]) if len(vals) >= 2 else float("nan")
    return f


def _largest(key: str) -> Callable[[dict], float]:
    def f(n: dict) -> float:
        vals = [float(v) for v in (n.get(key) or {}).values() if v is not None]
        return max(vals) if vals else float("nan")
    return f


def _ratio(a: str, b: str) -> Callable[[dict], float]:
    return lambda n: _get(n, a) / _get(n, b) if _get(n, b) else float("nan")


def _descent_gain(n: dict) -> float:
    """Peak minus second minimum of the curve the double-descent claim was read on (its
    ``read_on``: the test loss, else the test error); an older verdict's top-level ``gain``."""
    on = n.get("read_on")
    if isinstance(on, str) and isinstance(n.get(on), dict):
        return _get(n[on], "gain")
    return _get(n, "gain")


#: claim key -> (what the number is, how to read it from ``Claim.numbers``, its domain: the
#: t-interval over seeds is clipped to it, ``evidence.intervals.aggregate_seeds``)
KEY_NUMBERS: dict[str, tuple[str, Callable[[dict], float], tuple[float, float]]] = {
    "clean_before_noisy": ("noisy fit (observed labels) when the clean fit reached 0.5",
                           lambda n: _get(n, "noisy_obs_acc_at_t_clean"), UNIT),
    "test_error_rises": ("test acc fall after early stopping", _diff("test_acc_early_stop", "test_acc_final"),
                         (-1.0, 1.0)),
    "double_descent": ("re-generalization gain (test loss, else error)", _descent_gain, (-math.inf, math.inf)),
    "separation_outward": ("cosine drop shallow -> deep", _ends("separation"), (-2.0, 2.0)),
    "large_activation": ("largest max/median ratio", _largest("ratio"), NON_NEGATIVE),
    "test_alignment": ("alignment correct - wrong", _diff("alignment_correct", "alignment_wrong"), (-4.0, 4.0)),
    "effective_rank_grows": ("effective rank ratio final / early stop",
                             _ratio("effective_rank_to", "effective_rank_from"), NON_NEGATIVE),
    "noise_in_tail": ("noisy fit at d*", lambda n: _get(n, "noisy_at_d"), UNIT),
    "rank_risk_valley": ("d (1se) on the clean-test probe curve", lambda n: _get(n, "d_opt"), NON_NEGATIVE),
    "truncation_vs_early_stop": ("test acc truncated - early stop", _diff("acc_truncated", "acc_early_stop"),
                                 (-1.0, 1.0)),
    "systematic_noise_in_signal": ("noisy fit at d*", lambda n: _get(n, "noisy_at_d"), UNIT),
    "no_tail_at_init": ("noise-dominated variance share at init", lambda n: _get(n, "variance_share"), UNIT),
}


def key_number(claim: Claim) -> float:
    """The claim's key number (:data:`KEY_NUMBERS`), NaN when not measured or absent."""
    spec = KEY_NUMBERS.get(claim.key)
    if spec is None or claim.status == "not measured":
        return float("nan")
    v = spec[1](claim.numbers or {})
    return v if math.isfinite(v) else float("nan")


def status_counts(statuses: list[str]) -> str:
    """``"3 supported, 1 inconclusive"`` in the order of STATUSES."""
    return ", ".join(f"{statuses.count(s)} {s}" for s in STATUSES if statuses.count(s))


@dataclass
class SweepVerdict:
    """The scorecard of a sweep (module docstring).

    Attributes:
        path: the sweep directory; per_run: run id -> its claims; groups: configuration label
        -> run ids (its seeds); table: one row per claim (see :func:`aggregate`);
        notes: runs that could not be scored, and why; sweep_claims: claims scored across runs
        (claim key -> one claim per seed, e.g. the width sweep's).
    """

    path: Path
    per_run: dict[str, list[Claim]]
    groups: dict[str, list[str]]
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    sweep_claims: dict[str, list[Claim]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"sweep": str(self.path), "groups": self.groups,
                "claims": jsonable(self.table.to_dict("records")),
                "runs": {r: [jsonable({"key": c.key, "status": c.status, "summary": c.summary, "numbers": c.numbers})
                             for c in cl] for r, cl in self.per_run.items()},
                "sweep_claims": {k: [jsonable({"status": c.status, "summary": c.summary, "numbers": c.numbers})
                                     for c in cl] for k, cl in self.sweep_claims.items()},
                "notes": self.notes}


def aggregate(per_run: dict[str, list[Claim]], groups: dict[str, list[str]],
              sweep_claims: dict[str, list[Claim]] | None = None) -> pd.DataFrame:
    """One row per claim: key, claim, paper, n_runs, one column per status (its count), status
    (the counts in words), number (what the key number is), by_configuration (per
    configuration: its statuses and the key number's mean +- sd over seeds, in words) and
    configs (the same as a list of dicts: config, status, and when measured mean, sd, low,
    high, n_seeds, clipped and number, the short form ``mean +- sd [low, high]``). A claim scored
    across runs (``sweep_claims``) replaces that claim's per-run rows (each run alone says
    "not measured")."""
    sweep_claims = sweep_claims or {}
    keys: list[str] = []
    info: dict[str, Claim] = {}
    for claims in per_run.values():
        for c in claims:
            if c.key not in info:
                keys.append(c.key)
                info[c.key] = c
    rows = []
    for key in keys:
        if sweep_claims.get(key):
            cl = sweep_claims[key]
            statuses = [c.status for c in cl]
            rows.append({"key": key, "claim": cl[0].text, "paper": cl[0].paper, "n_runs": len(per_run),
                         **{s: statuses.count(s) for s in STATUSES}, "status": status_counts(statuses),
                         "number": "", "by_configuration": " | ".join(c.summary for c in cl),
                         "configs": [{"config": f"seed {i + 1}", "status": c.status, "summary": c.summary}
                                     for i, c in enumerate(cl)]})
            continue
        by_run = {r: next((c for c in cl if c.key == key), None) for r, cl in per_run.items()}
        statuses = [c.status for c in by_run.values() if c is not None]
        label, _fn, domain = KEY_NUMBERS.get(key, ("", None, (-math.inf, math.inf)))
        parts, configs = [], []
        for g, runs in groups.items():
            cl = [by_run[r] for r in runs if by_run.get(r) is not None]
            if not cl:
                continue
            text = status_counts([c.status for c in cl])
            vals = [key_number(c) for c in cl]
            entry: dict[str, Any] = {"config": g, "status": text}
            if label and any(math.isfinite(v) for v in vals):
                seeds = aggregate_seeds(vals, domain=domain)
                text += f"; {label}: {seeds}"
                entry.update(mean=seeds.mean, sd=seeds.std, low=seeds.low, high=seeds.high, n_seeds=seeds.n_seeds,
                             clipped=seeds.clipped, number=seeds.short())
            parts.append(f"{g}: {text}" if g else text)
            configs.append(entry)
        rows.append({"key": key, "claim": info[key].text, "paper": info[key].paper, "n_runs": len(statuses),
                     **{s: statuses.count(s) for s in STATUSES}, "status": status_counts(statuses),
                     "number": label, "by_configuration": " | ".join(parts), "configs": configs})
    return pd.DataFrame(rows)


def _width_of(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return float(max(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def config_groups(params: pd.DataFrame, runs: dict | list) -> dict[str, list[str]]:
    """Configuration label (the swept fields other than seeds, ``k=v, ...``) -> its run ids
    among ``runs`` (the seeds of that configuration), in manifest order."""
    from noisescope.report.sweep_sections import is_seed

    keys = [k for k in params.columns if k != "run" and not is_seed(k)]
    groups: dict[str, list[str]] = {}
    for rec in params.to_dict("records"):
        if rec["run"] in runs:
            groups.setdefault(", ".join(f"{k}={rec[k]}" for k in keys), []).append(rec["run"])
    return groups


def width_claims(params: pd.DataFrame, metrics: dict[str, pd.DataFrame]) -> dict[str, list[Claim]]:
    """{"wider_larger_tail": one claim per seed} when the sweep varies a width alone (besides
    seeds), else {}."""
    from noisescope.report.sweep_sections import is_seed

    keys = [k for k in params.columns if k != "run"]
    config_keys = [k for k in keys if not is_seed(k)]
    widths = [k for k in config_keys if "width" in k.split(".")[-1]]
    if len(widths) != 1 or len(config_keys) != 1:
        return {}
    seed_keys = [k for k in keys if is_seed(k)]
    by_seed: dict[tuple, dict[float, pd.DataFrame]] = {}
    for rec in params.to_dict("records"):
        w = _width_of(rec[widths[0]])
        if rec["run"] in metrics and w is not None:
            by_seed.setdefault(tuple(rec[k] for k in seed_keys), {}).setdefault(w, metrics[rec["run"]])
    by_seed = {k: v for k, v in by_seed.items() if len(v) >= 2}
    if not by_seed:
        return {}
    return {"wider_larger_tail": [claim_wider_larger_tail(pd.DataFrame(), by_width=bw) for bw in by_seed.values()]}


def sweep_verdict(path: str | Path, models: bool = True, device: str = "cpu", write: bool = True,
                  on_run: Callable[[str], None] | None = None) -> SweepVerdict:
    """Score every run of a sweep that has metrics and aggregate (module docstring); writes each
    run's ``verdict.json`` and the sweep's own unless ``write`` is False."""
    from noisescope.runs.run import load_run
    from noisescope.sweep.results import sweep_params
    from noisescope.sweep.runner import run_dir
    from noisescope.workflows.verdict import run_verdict

    path = Path(path)
    params = sweep_params(path)
    per_run: dict[str, list[Claim]] = {}
    metrics: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for rec in params.to_dict("records"):
        rid = rec["run"]
        try:
            run = load_run(run_dir(path, rid))
        except FileNotFoundError:
            notes.append(f"{rid}: not started")
            continue
        if run.metrics.empty:
            notes.append(f"{rid}: no metrics yet")
            continue
        try:
            per_run[rid] = run_verdict(run, models=models, device=device, write=write).claims
            metrics[rid] = run.metrics
        except Exception as exc:  # noqa: BLE001 - one broken run must not hide the others
            notes.append(f"{rid}: not scored ({type(exc).__name__}: {exc})")
        if on_run:
            on_run(rid)
    groups = config_groups(params, per_run)
    sweep_claims = width_claims(params, metrics)
    table = aggregate(per_run, groups, sweep_claims)
    verdict = SweepVerdict(path, per_run, groups, table, notes, sweep_claims)
    if write:
        from noisescope.io import write_json
        from noisescope.workflows.verdict import VERDICT_FILE

        write_json(path / VERDICT_FILE, verdict.to_json())
    return verdict
