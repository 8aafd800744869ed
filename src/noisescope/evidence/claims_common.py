"""What every claim of the scorecard shares: :class:`Claim`, the statuses and the helpers that
read a run's tidy metrics table (``claims_kubo`` and ``claims_tail`` hold the claims,
``claims`` the scorecard; the shared definitions are in the ``claims`` module docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from noisescope.evidence.claim_rules import claim_rule
from noisescope.evidence.intervals import Accuracy
from noisescope.metrics import curve, select

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED = "supported", "not supported", "inconclusive", "not measured"
STATUSES = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED)
KUBO, MALIGNANT = "kubo", "malignant_tail"
MISSING: Any = object()  # sentinel: a context value that was not given


@dataclass
class Claim:
    """One claim of a paper, scored on a run.

    Attributes:
        key: short identifier; text: the claim; paper: ``"kubo"`` or ``"malignant_tail"``;
        status: see the module docstring; numbers: what the rule used; rule: the rule, in words
        (docs/definitions.md, "Claim rules");
        command: how to measure it (``"not measured"`` only); summary: one sentence with numbers.
    """

    key: str
    text: str
    paper: str
    status: str
    numbers: dict = field(default_factory=dict)
    rule: str = ""
    command: str = ""
    summary: str = ""

    def __str__(self) -> str:
        return f"[{self.status}] {self.text}: {self.summary}"


# ----------------------------------------------------------------------------- helpers
def _final(m: pd.DataFrame, probe: str) -> int | None:
    e = select(m, probe=probe)["epoch"]
    return None if e.empty else int(e.max())


def _taps(m: pd.DataFrame, probe: str, taps: list[str] | None) -> list[str]:
    if taps is not None:
        return list(taps)
    t = select(m, probe=probe)["tap"]
    return [x for x in pd.unique(t.astype(str)) if x != ""]


def _only(m: pd.DataFrame, *metrics: str) -> pd.DataFrame:
    """The rows of the named metrics (one scan; later selections run on far fewer rows)."""
    return m[m["metric"].isin(metrics)]


def _feature_tap(m: pd.DataFrame, feature_tap: str | None) -> str | None:
    if feature_tap is not None:
        return feature_tap
    head = select(m, probe="spectral", metric="trunc_d_star")["tap"]
    if not head.empty:
        return str(head.iloc[-1])
    taps = [t for t in _taps(m, "spectral", None) if t != "input"]  # "input": the raw-input reference
    return taps[-1] if taps else None


def _n(m: pd.DataFrame, subset: str, n_by_subset: dict[str, int] | None) -> int | None:
    if n_by_subset and subset in n_by_subset and n_by_subset[subset] is not None:
        return int(n_by_subset[subset])
    rows = select(m, metric="n", subset=subset, index=-1).dropna(subset=["value"])
    return None if rows.empty else int(rows.sort_values("epoch")["value"].iloc[-1])


def _early_stop(m: pd.DataFrame, early_stop_epoch: int | None) -> int | None:
    if early_stop_epoch is not None:
        return int(early_stop_epoch)
    val = curve(m, "dynamics", "acc", subset="val").dropna()
    return None if val.empty else int(val.index[int(val.to_numpy().argmax())])


def _scalar(m: pd.DataFrame, probe: str, metric: str, epoch: int, subset: str | None = None,
            tap: str | None = None) -> float:
    s = curve(m, probe, metric, subset=subset, tap=tap)
    return float(s.get(epoch, np.nan)) if not s.empty else float("nan")


def _width(value: float, n: int | None) -> float | None:
    if n is None or not math.isfinite(value):
        return None
    return Accuracy.from_value(min(1.0, max(0.0, value)), n).width


def _memorization_rose(m: pd.DataFrame, a: int, b: int, n_by_subset: dict | None) -> tuple[bool, dict]:
    noisy = curve(m, "dynamics", "acc", subset="noisy_train_obs")
    va, vb = float(noisy.get(a, np.nan)), float(noisy.get(b, np.nan))
    w = _width(va, _n(m, "noisy_train_obs", n_by_subset))
    need = 0.10 if w is None else w
    return bool(math.isfinite(va) and math.isfinite(vb) and vb - va > need), {
        "noisy_obs_acc_from": va, "noisy_obs_acc_to": vb, "memorization_margin": need}


# key -> (claim text, paper, the claim function's docstring); filled by claims_kubo / claims_tail
CLAIM_TEXT: dict[str, tuple[str, str, str]] = {}


def _claim(key: str, status: str, numbers: dict, summary: str, command: str = "") -> Claim:
    """A scored claim; its rule is the reader's text of docs/definitions.md
    (``evidence.claim_rules``), the function's docstring only for a claim without one."""
    text, paper, doc = CLAIM_TEXT[key]
    return Claim(key, text, paper, status, numbers, claim_rule(key, doc), command if status == NOT_MEASURED else "",
                 summary)


def _nearest(epochs: list[int], target: int) -> int:
    return min(epochs, key=lambda e: (abs(e - target), e))


NEEDS_DYNAMICS = "noisescope run CONFIG --set 'probe.probes=[\"dynamics\"]'"
NEEDS_SPECTRAL = "noisescope probe RUN"
NEEDS_SIGNALS = "noisescope signals RUN"
