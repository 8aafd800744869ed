"""The repair leaderboard over several runs (seeds) and sweeps, aggregated per setting."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from noisescope.evidence.intervals import UNIT, aggregate_seeds
from noisescope.runs.run import Run, load_run
from noisescope.workflows.repair import RepairReport, read_table, repair_run
from noisescope.workflows.repair_export import SEED_KEYS


def setting_key(run: Run) -> str:
    """The run's config without its seeds and location: runs that differ only in seeds share it."""
    d = run.config.to_dict()
    for sec, key in SEED_KEYS:
        d[sec].pop(key, None)
    d.pop("run", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def setting_label(run: Run) -> str:
    c = run.config
    return f"{c.data.name} {c.noise.model} {c.noise.rate:g} {c.model.arch} ({setting_key(run)})"


CHOSEN = ("recommended", "kept")  # verdicts of the row the recommendation rule chose
AGG_COLUMNS = ["setting", "method", "kind", "n_seeds", "test_mean", "test_sd", "test_low", "test_high", "val_mean",
               "val_gain_mean", "verdicts", "beats_es", "es_diff_mean", "es_p_max", "gap_closed_mean", "seconds_mean",
               "choices"]


def aggregate(tables: dict[str, pd.DataFrame], setting: str = "") -> pd.DataFrame:
    """Mean, sample sd and 95% t-interval over seeds (runs) of each method's clean test accuracy,
    how often the recommendation rule chose it (``verdicts``: "k/n", rows whose verdict is
    "recommended" or "kept"), how many seeds beat early stopping on clean test with McNemar
    p < 0.05 ("k/n"), and the mean share of the early-stopping-to-oracle gap closed."""
    if not tables:
        raise ValueError("no leaderboard to aggregate")
    df = pd.concat([t.assign(run=r) for r, t in tables.items()], ignore_index=True)
    rows = []
    for method in dict.fromkeys(df["method"]):
        g = df[df.method == method]
        meas = g[g["n_test"] > 0]
        s = aggregate_seeds(meas["test_acc"].tolist(), domain=UNIT) if len(meas) else None
        n = len(meas)
        rep = g[g.verdict.fillna("") != ""]
        beats = int(((meas.es_p < 0.05) & (meas.es_diff > 0)).sum())
        rows.append({
            "setting": setting, "method": method, "kind": g["kind"].iloc[0], "n_seeds": n,
            "test_mean": s.mean if s else float("nan"), "test_sd": s.std if s else float("nan"),
            "test_low": s.low if s else float("nan"), "test_high": s.high if s else float("nan"),
            "val_mean": float(meas["val_acc"].mean()) if n else float("nan"),
            "val_gain_mean": float(meas["val_gain"].mean()) if n else float("nan"),
            "verdicts": f"{int(rep.verdict.isin(CHOSEN).sum())}/{len(rep)}" if len(rep) else "",
            "beats_es": f"{beats}/{n}" if method != "early_stop" and n else "",
            "es_diff_mean": float(meas["es_diff"].mean()) if n else float("nan"),
            "es_p_max": float(meas["es_p"].max()) if n else float("nan"),
            "gap_closed_mean": float(meas["gap_closed"].mean()) if n else float("nan"),
            "seconds_mean": float(meas["seconds"].mean()) if n else float("nan"),
            "choices": "; ".join(dict.fromkeys(str(c) for c in g["choice"] if c)) if n else
            str(g["note"].iloc[0]),
        })
    return pd.DataFrame(rows, columns=AGG_COLUMNS)


def find_runs(targets: list[str | Path]) -> list[Path]:
    """Run directories from run paths and sweep directories (a sweep keeps its runs in
    ``SWEEP/runs/<id>``)."""
    out: list[Path] = []
    for t in targets:
        p = Path(t)
        if not (p / "config.json").is_file() and (p / "runs").is_dir():
            out += sorted(q for q in (p / "runs").iterdir() if (q / "config.json").is_file())
        else:
            out.append(p)
    return out


def repair_many(targets: list[str | Path], reuse: bool = False,
                on_run: Callable[[Path, RepairReport | None], None] | None = None,
                **kwargs: object) -> tuple[dict[Path, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Leaderboards of several runs (or every run of sweep directories) and their aggregate per
    setting (runs whose configs differ only in seeds).

    Returns ({run: leaderboard}, {setting label: aggregate table}). ``reuse`` reads a run's
    stored ``repair.parquet`` instead of recomputing it."""
    tables: dict[Path, pd.DataFrame] = {}
    labels: dict[Path, str] = {}
    for path in find_runs(targets):
        run = load_run(path)
        if run.status.get("state") != "complete":
            continue
        labels[path] = setting_label(run)
        stored = read_table(path) if reuse else None
        if stored is not None:
            tables[path] = stored
            if on_run:
                on_run(path, None)
            continue
        rep = repair_run(path, **kwargs)
        tables[path] = rep.table
        if on_run:
            on_run(path, rep)
    groups: dict[str, dict[str, pd.DataFrame]] = {}
    for path, t in tables.items():
        groups.setdefault(labels[path], {})[str(path)] = t
    return tables, {lab: aggregate(ts, lab) for lab, ts in groups.items()}
