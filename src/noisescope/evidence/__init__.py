"""Verdicts with evidence: intervals, paired tests, decision rules, the tail rule and the
claims scorecard (a math layer: torch / numpy / scipy / pandas, ``noisescope.metrics`` and
``noisescope.spectral`` only).

* ``intervals``: Wilson interval, :class:`Accuracy`, :func:`aggregate_seeds` (t-interval).
* ``paired``: McNemar's exact test, the paired accuracy difference with its standard error.
* ``rules``: ``choose_d`` (1se / argmax), ``repair_verdict``, ``recommend`` (the one
  recommendation rule of every leaderboard), ``resolution_warning``,
  ``large_activation_flag``, ``neuron_follows``.
* ``tail``: truncated-fit curves, tail margin share, noise position in words, ``tail_verdict``.
* ``claims``: ``scorecard``, ``scorecard_frame`` over one function per claim of the two papers
  (``claims_kubo``, ``claims_tail``; ``claims_common`` holds :class:`Claim` and the helpers).

Names are loaded lazily (PEP 562), so ``noisescope.spectral.linear_probe`` can import
``noisescope.evidence.rules`` while ``evidence.tail`` imports ``noisescope.spectral``
without an import cycle, and scipy is imported only when a test statistic is computed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "intervals": ["Accuracy", "SeedSummary", "aggregate_seeds", "binomial_se", "wilson_interval"],
    "paired": ["McNemar", "PairedDifference", "mcnemar", "paired_difference", "paired_se"],
    "rules": ["Comparison", "Recommendation", "Verdict", "choose_d", "compare_on_val", "decision_warning",
              "large_activation_flag", "neuron_follows", "recommend", "repair_verdict", "resolution_warning"],
    "tail": ["NoisePosition", "TailMarginAccumulator", "TailVerdict", "TruncatedFit", "TruncatedFitAccumulator",
             "margin_fit", "noise_position", "noise_position_words", "tail_margin_share", "tail_verdict",
             "tail_verdict_from_fit", "truncated_fit"],
    "claims": ["Claim", "scorecard", "scorecard_frame"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'noisescope.evidence' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"noisescope.evidence.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
