"""The one tidy metrics table: its schema, one selector, curve helpers, one figure saver.

Every number any probe produces is one row (the run's ``metrics.parquet``):

======== ======= ==============================================================
column   dtype   meaning
======== ======= ==============================================================
epoch    int64   training epoch the model had completed (0 = untrained)
probe    string  probe name: ``dynamics``, ``spectral``, ``signals``, ``train``, ...
tap      string  tap name, ``""`` when the metric is about the whole model
subset   string  data subset: ``clean_train``, ``noisy_train_obs``,
                 ``noisy_train_true``, ``val``, ``test``, ``train``, ``""``
metric   string  metric name, e.g. ``loss``, ``acc``, ``eigval``, ``probe_acc``
index    int64   position for vector metrics (class c, component k, dim d), else -1
value    float64 the number
======== ======= ==============================================================

Read it with :func:`select` (never with ad-hoc boolean masks) and :func:`curve`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ["epoch", "probe", "tap", "subset", "metric", "index", "value"]
KEY = COLUMNS[:-1]  # each number is identified by these columns
DTYPES = {
    "epoch": "int64",
    "probe": "string",
    "tap": "string",
    "subset": "string",
    "metric": "string",
    "index": "int64",
    "value": "float64",
}


@dataclass(frozen=True)
class Row:
    """One number in the tidy metrics table (see the module docstring)."""

    epoch: int
    probe: str
    metric: str
    value: float
    subset: str = ""
    tap: str = ""
    index: int = -1


def empty_frame() -> pd.DataFrame:
    """A metrics table with no rows and the documented columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=DTYPES[c]) for c in COLUMNS})


def rows_to_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """Rows -> DataFrame with exactly the documented columns and dtypes."""
    frame = pd.DataFrame(
        [(r.epoch, r.probe, r.tap, r.subset, r.metric, r.index, float(r.value)) for r in rows],
        columns=COLUMNS,
    )
    return frame.astype(DTYPES)


def select(m: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Rows of ``m`` matching every given column: ``select(m, probe="dynamics", subset="val")``.

    Each keyword names a column (``probe``, ``metric``, ``subset``, ``tap``, ``epoch``,
    ``index``); its value is one value or a list/tuple/set of accepted values. ``None`` means
    "any". Returns a copy with a fresh index.
    """
    unknown = set(where) - set(KEY)
    if unknown:
        raise ValueError(f"select: unknown column(s) {sorted(unknown)}; columns are {KEY}")
    keep = pd.Series(True, index=m.index)
    for col, val in where.items():
        if val is None:
            continue
        if isinstance(val, (list, tuple, set, frozenset)):
            keep &= m[col].isin(list(val))
        else:
            keep &= m[col] == val
    return m[keep].reset_index(drop=True)


def curve(m: pd.DataFrame, probe: str, metric: str, subset: str | None = None,
          tap: str | None = None, index: int | None = None) -> pd.Series:
    """Epoch-indexed series (sorted) of one scalar metric; ``index`` defaults to -1 (scalars)."""
    sel = select(m, probe=probe, metric=metric, subset=subset, tap=tap,
                 index=-1 if index is None else index)
    return sel.groupby("epoch")["value"].last().sort_index()


def dynamics_curve(m: pd.DataFrame, subset: str, metric: str = "acc") -> pd.Series:
    """Epoch-indexed series of a dynamics-probe metric for one subset."""
    return curve(m, "dynamics", metric, subset=subset)


def vector(m: pd.DataFrame, probe: str, metric: str, epoch: int, subset: str | None = None,
           tap: str | None = None) -> pd.Series:
    """Index-indexed series of a vector metric (eigenvalues, probe accuracy per d, ...) at one epoch."""
    sel = select(m, probe=probe, metric=metric, epoch=epoch, subset=subset, tap=tap)
    sel = sel[sel["index"] >= 0]
    return sel.set_index("index")["value"].sort_index()


def save_figure(fig: Any, path: str | Path, dpi: int = 110,
                writer: Callable[[Path, Callable[[Path], None]], None] | None = None) -> Path:
    """Save a matplotlib figure as PNG atomically and close it; returns the path."""
    import matplotlib.pyplot as plt

    from noisescope.io import atomic_write

    path = Path(path)
    (writer or atomic_write)(path, lambda p: fig.savefig(p, dpi=dpi, format="png"))
    plt.close(fig)
    return path
