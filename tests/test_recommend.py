"""The one recommendation rule of every leaderboard (``evidence.rules.recommend``): known answers."""

from __future__ import annotations

import numpy as np
import pytest

from noisescope.evidence.paired import mcnemar_counts
from noisescope.evidence.rules import (
    DEFAULT_BEST,
    NO_DECISION,
    RECOMMENDED,
    compare_on_val,
    decision_warning,
    recommend,
)


def _pair(base: np.ndarray, win: int, lose: int = 0, skip: int = 0) -> np.ndarray:
    """``base`` right on ``win`` more samples (its wrong ones, after the first ``skip``) and wrong
    on ``lose`` of its right ones: b = win, c = lose against ``base``."""
    out = base.copy()
    out[np.flatnonzero(~base)[skip:skip + win]] = True
    out[np.flatnonzero(base)[:lose]] = False
    return out


@pytest.fixture
def es() -> np.ndarray:
    """600 of 1000 right, in a seeded random order."""
    return np.random.default_rng(0).permutation(np.arange(1000) < 600)


def test_a_six_sample_lead_over_early_stopping_is_no_decision(es):
    # the case: 602 vs 596 correct of 1000, early stopping kept
    tap = _pair(es, 10, 4)
    dec = recommend({"early_stop": es, "feature_trunc:best_tap": tap, "final": _pair(es, 0, 200)})
    assert dec.status == NO_DECISION and dec.choice == "early_stop" and dec.best == "feature_trunc:best_tap"
    assert dec.decisive.second == "early_stop" and (dec.decisive.b, dec.decisive.c) == (10, 4)
    assert dec.line == ("no decision: feature_trunc:best_tap and early_stop differ by 6 of 1000 validation "
                        f"samples (McNemar p={mcnemar_counts(10, 4).p_value:.2g}); keeping early_stop")
    assert dec.outcome("early_stop") == "kept" and dec.outcome("feature_trunc:best_tap") == "undecided"
    assert dec.outcome("final") == "beaten" and not dec.decided and not dec.replaces_default


def test_the_one_sample_digits_case_says_no_decision():
    rng = np.random.default_rng(1)
    es = rng.random(135) < 0.62
    cleaning = _pair(es, 1)  # right on one more sample, nothing lost
    dec = recommend({"early_stop": es, "cleaning": cleaning})
    assert dec.status == NO_DECISION and dec.choice == "early_stop"
    assert "differ by 1 of 135 validation samples (McNemar p=1)" in dec.line


def test_a_candidate_is_recommended_only_when_it_beats_every_other(es):
    strong = _pair(es, 60)  # b = 60, c = 0 against early stopping: p ~ 1e-18
    runner = _pair(es, 56)  # the same wins but four: strong beats it on 4 samples only
    dec = recommend({"early_stop": es, "runner": runner, "strong": strong})
    assert dec.status == NO_DECISION and dec.choice == "early_stop"
    assert dec.decisive.second == "runner" and (dec.decisive.b, dec.decisive.c) == (4, 0)
    assert "strong and runner differ by 4 of 1000" in dec.line
    assert dec.outcome("runner") == "not beaten"  # strong does not beat it
    # without the close runner-up, strong beats everything: recommended, the closest win named
    clear = recommend({"early_stop": es, "weak": _pair(es, 20), "strong": strong})
    assert clear.status == RECOMMENDED and clear.choice == "strong" and clear.replaces_default
    assert clear.decisive.second == "weak" and clear.decisive.p_value < 0.05
    assert clear.line.startswith("recommended: strong: beats every other candidate on noisy validation; closest: "
                                 "strong 660 vs weak 620 of 1000 correct, McNemar p=")
    assert clear.outcome("strong") == "recommended" and clear.outcome("early_stop") == "beaten"


def test_the_default_is_kept_when_it_is_the_most_accurate(es):
    dec = recommend({"early_stop": es, "final": _pair(es, 0, 100), "tie": _pair(es, 3, 3)})
    assert dec.status == DEFAULT_BEST and dec.choice == dec.best == "early_stop" and dec.decided
    assert dec.line == "keeping early_stop: the most accurate on noisy validation (600 of 1000 correct; next tie 600)"
    assert recommend({"early_stop": es}).line == "keeping early_stop: no other candidate"
    # another default (the final model) works the same way
    assert recommend({"final": es, "x": _pair(es, 2)}, default="final").status == NO_DECISION


def test_candidates_with_the_same_validation_predictions_are_grouped(es):
    strong = _pair(es, 60)
    dec = recommend({"early_stop": es, "a": strong, "b": strong.copy()})
    assert dec.status == RECOMMENDED and dec.choice == "a" and dec.same_as == {"b": "a"}
    assert dec.outcome("b") == "= a" and [c.second for c in dec.comparisons] == ["early_stop"]


def test_compare_on_val_is_mcnemar_with_the_small_count_guard(es):
    assert compare_on_val("a", _pair(es, 6), "b", es).beats  # p = 2 / 2**6 = 0.031
    assert not compare_on_val("a", _pair(es, 5), "b", es).beats  # p = 0.0625
    assert not compare_on_val("a", _pair(es, 6, 1), "b", es).beats  # p = 0.125
    # at a lax level the guard of the repair verdict decides: b = 3, c = 1 has p = 0.625 < 0.7,
    # but the gain 2/n does not exceed its guarded standard error sqrt(4 + 1 - 4/n)/n
    lax = compare_on_val("a", _pair(es, 3, 1), "b", es, alpha=0.7)
    assert lax.p_value < 0.7 and lax.gain < lax.se and not lax.beats
    c = compare_on_val("a", _pair(es, 40, 10), "b", es)
    assert (c.k_first, c.k_second, c.b, c.c, c.n) == (630, 600, 40, 10, 1000) and c.beats


def test_the_warning_offers_samples_only_for_a_lead(es):
    close = recommend({"early_stop": es, "x": _pair(es, 10, 4)})
    msg = decision_warning(close)
    assert msg is not None and "0.6-point difference" in msg and "samples would resolve it" in msg
    # the default is best: nothing at stake that more samples would resolve
    assert decision_warning(recommend({"early_stop": es, "worse": _pair(es, 0, 30)})) is None
    small = recommend({"early_stop": es[:50], "x": _pair(es[:50], 1)})
    assert "only 50 samples" in decision_warning(small)


def test_bad_input_names_the_problem(es):
    with pytest.raises(ValueError, match="default 'early_stop' is not among"):
        recommend({"final": es})
    with pytest.raises(ValueError, match="'x' has 10"):
        recommend({"early_stop": es, "x": es[:10]})
    with pytest.raises(ValueError, match="alpha"):
        recommend({"early_stop": es}, alpha=0)
