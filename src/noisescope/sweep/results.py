"""Results across the runs of a sweep, as pandas tables.

* :func:`load_sweep` -- every run's tidy metrics table stacked into one DataFrame, with the run
  id and the swept values as extra columns (``noisescope.load_sweep``).
* :func:`sweep_table` -- one row per run: id, swept values, state, last epoch, headline numbers
  (the run's ``summary.json``, see :func:`noisescope.run.summarize`), error if it failed.

Swept values that are lists or tables (``model.options.widths = [[64], [256]]``) become compact
JSON strings (``"[64]"``) so the columns can be grouped and sorted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from noisescope.metrics import COLUMNS, DTYPES
from noisescope.runs.store import RunStore
from noisescope.sweep.runner import read_manifest, run_dir


def param_value(value: Any) -> Any:
    """Scalars unchanged; lists and tables as compact JSON text."""
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return value


def sweep_params(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per planned run: ``run`` (the id) and one column per swept key."""
    manifest = read_manifest(sweep_dir)
    keys = manifest.get("keys", [])
    rows = [{"run": r["id"], **{k: param_value(r["params"].get(k)) for k in keys}}
            for r in manifest["runs"]]
    return pd.DataFrame(rows, columns=["run", *keys])


def load_sweep(sweep_dir: str | Path, states: tuple[str, ...] | None = None) -> pd.DataFrame:
    """All runs' metrics in one table.

    Args:
        sweep_dir: a sweep directory (holding ``sweep.json``).
        states: keep only runs in these states (e.g. ``("complete",)``); None keeps every run
            that has metrics, including partial ones.

    Returns:
        columns ``run``, the swept keys (e.g. ``noise.rate``, ``train.seed``), then the metrics
        schema (``epoch, probe, tap, subset, metric, index, value``; see probes/base.py).
    """
    params = sweep_params(sweep_dir)
    keys = [c for c in params.columns if c != "run"]
    frames = []
    for rec in params.to_dict("records"):
        store = RunStore(run_dir(sweep_dir, rec["run"]))
        if states is not None and store.status().get("state") not in states:
            continue
        m = store.metrics()
        if m.empty:
            continue
        m.insert(0, "run", rec["run"])
        for i, k in enumerate(keys, start=1):
            m.insert(i, k, rec[k])
        frames.append(m)
    if not frames:
        empty = {"run": pd.Series(dtype="string"), **{k: pd.Series(dtype=params[k].dtype) for k in keys}}
        empty.update({c: pd.Series(dtype=DTYPES[c]) for c in COLUMNS})
        return pd.DataFrame(empty)
    return pd.concat(frames, ignore_index=True)


def _flat_summary(summary: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in summary.items():
        if k == "double_descent":
            out["double_descent"] = bool(v)
            if v:
                out["dd_gain"] = v.get("gain")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
    return out


def sweep_table(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per planned run: id, swept values, state, epoch, headline numbers, error."""
    from noisescope.probes.dynamics import summarize

    params = sweep_params(sweep_dir)
    rows = []
    for rec in params.to_dict("records"):
        store = RunStore(run_dir(sweep_dir, rec["run"]))
        status = store.status()
        summary = store.read_json("summary.json")
        if summary is None and store.has_metrics():
            summary = summarize(store.metrics())
        rows.append({**rec, "state": status.get("state", "missing"), "epoch": status.get("epoch", -1),
                     **_flat_summary(summary or {}), "error": status.get("error", "")})
    return pd.DataFrame(rows)


def find_sweeps(root: str | Path) -> list[Path]:
    """Sweep directories under ``root`` (``root`` itself if it is one), sorted by name."""
    root = Path(root)
    if (root / "sweep.json").exists():
        return [root]
    return sorted(p.parent for p in root.glob("*/sweep.json"))
