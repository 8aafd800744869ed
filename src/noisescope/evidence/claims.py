"""The claims scorecard: each claim of the two papers, scored on one run's tidy metrics table.

Every claim is a pure function ``claim_<key>(metrics, **context) -> Claim`` whose docstring
states its rule; :func:`scorecard` runs them all. Status is one of ``"supported"``,
``"not supported"``, ``"inconclusive"`` (measured, but the numbers cannot decide) and
``"not measured"`` (this run lacks the rows or the setting; ``command`` says how to measure it).

Shared definitions:

* final epoch: the last epoch with rows of the probe the claim reads.
* early-stopping epoch: ``early_stop_epoch`` if given, else the epoch of the best noisy
  validation accuracy (dynamics ``val`` ``acc``), ties -> the earlier epoch.
* sample counts n (Wilson intervals): ``n_by_subset[subset]`` if given, else the last
  ``metric == "n"`` row of that subset; a claim whose rule needs an n it cannot find is
  inconclusive.
* "memorization rose" between epochs a < b: the noisy training accuracy against observed labels
  (dynamics ``noisy_train_obs``) rose by more than the width of its Wilson interval at a (by
  more than 0.10 when its n is unknown).
* tap order (shallow -> deep): ``taps`` if given, else the order in which the probe's rows name
  them. The feature tap: ``feature_tap`` if given, else the spectral tap with ``trunc_acc``
  rows (the penultimate tap), else the deepest spectral tap.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pandas as pd

from noisescope.evidence.claims_common import (
    CLAIM_TEXT,
    INCONCLUSIVE,
    KUBO,
    MALIGNANT,
    MISSING,
    NOT_MEASURED,
    NOT_SUPPORTED,
    STATUSES,
    SUPPORTED,
    Claim,
)
from noisescope.evidence.claims_kubo import (
    claim_clean_before_noisy,
    claim_double_descent,
    claim_large_activation,
    claim_separation_outward,
    claim_test_alignment,
    claim_test_error_rises,
)
from noisescope.evidence.claims_tail import (
    claim_effective_rank_grows,
    claim_no_tail_at_init,
    claim_noise_in_tail,
    claim_rank_risk_valley,
    claim_systematic_noise_in_signal,
    claim_truncation_vs_early_stop,
    claim_wider_larger_tail,
)
from noisescope.io import jsonable

__all__ = [
    "CLAIM_FUNCTIONS", "CLAIM_TEXT", "CONTEXT_KEYS", "INCONCLUSIVE", "KUBO", "MALIGNANT", "MISSING", "NOT_MEASURED",
    "NOT_SUPPORTED", "STATUSES", "SUPPORTED", "Claim", "claim_clean_before_noisy", "claim_double_descent",
    "claim_effective_rank_grows", "claim_large_activation", "claim_no_tail_at_init", "claim_noise_in_tail",
    "claim_rank_risk_valley", "claim_separation_outward", "claim_systematic_noise_in_signal",
    "claim_test_alignment", "claim_test_error_rises", "claim_truncation_vs_early_stop", "claim_wider_larger_tail",
    "jsonable", "scorecard", "scorecard_frame",
]

CLAIM_FUNCTIONS: dict[str, Callable[..., Claim]] = {
    "clean_before_noisy": claim_clean_before_noisy,
    "test_error_rises": claim_test_error_rises,
    "double_descent": claim_double_descent,
    "separation_outward": claim_separation_outward,
    "large_activation": claim_large_activation,
    "test_alignment": claim_test_alignment,
    "effective_rank_grows": claim_effective_rank_grows,
    "noise_in_tail": claim_noise_in_tail,
    "rank_risk_valley": claim_rank_risk_valley,
    "truncation_vs_early_stop": claim_truncation_vs_early_stop,
    "systematic_noise_in_signal": claim_systematic_noise_in_signal,
    "no_tail_at_init": claim_no_tail_at_init,
    "wider_larger_tail": claim_wider_larger_tail,
}

CONTEXT_KEYS = ("n_by_subset", "early_stop_epoch", "double_descent", "taps", "feature_tap", "k_star",
                "test_correct", "noise_model", "by_width")


def scorecard(metrics: pd.DataFrame, **context: Any) -> list[Claim]:
    """Every claim on one run's metrics table, in the order of :data:`CLAIM_FUNCTIONS`.

    Context (all optional): ``n_by_subset`` (subset -> n), ``early_stop_epoch``,
    ``double_descent`` (the detection dict or None; absent = not measured), ``taps`` (signals
    taps shallow -> deep), ``feature_tap``, ``k_star``, ``test_correct``
    ({"truncated", "early_stop"} -> per-sample clean-test correctness), ``noise_model``,
    ``by_width`` (width -> metrics table). Each claim receives the keys its function accepts.
    """
    unknown = set(context) - set(CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"scorecard: unknown context {sorted(unknown)}; known: {list(CONTEXT_KEYS)}")
    out = []
    for fn in CLAIM_FUNCTIONS.values():
        params = inspect.signature(fn).parameters
        out.append(fn(metrics, **{k: v for k, v in context.items() if k in params}))
    return out


def scorecard_frame(claims: list[Claim]) -> pd.DataFrame:
    """Claims -> DataFrame (key, paper, text, status, summary, rule, command, numbers), with
    ``numbers`` as a JSON string (non-finite values as null)."""
    cols = ["key", "paper", "text", "status", "summary", "rule", "command", "numbers"]
    rows = []
    for c in claims:
        d = asdict(c)
        d["numbers"] = json.dumps(jsonable(d["numbers"]), sort_keys=True)
        rows.append({k: d[k] for k in cols})
    return pd.DataFrame(rows, columns=cols).astype("string")
