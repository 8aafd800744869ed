"""The rule of each claim of the scorecard, in words for readers: what ``noisescope verdict
--rules`` and the report print.

The definition is docs/definitions.md, section "Claim rules"; these are the same texts, word
for word (``tests/test_verdict.py`` compares them), shipped with the package because docs/ is
not. Edit both together. Plain text: no markup, no code names.
"""

from __future__ import annotations

#: claim key -> its rule, one paragraph
CLAIM_RULES: dict[str, str] = {
    "clean_before_noisy": (
        "t_clean and t_noisy are the first probed epochs at which the training accuracy reaches 0.5: of the "
        "clean samples, and of the noisy samples against their observed (wrong) labels. Supported when t_clean "
        "< t_noisy, or when the noisy samples never reach 0.5; not supported when t_noisy < t_clean; "
        "inconclusive when both first reach it at the same probe (the schedule cannot order them) or the clean "
        "samples never do. Key number: the noisy samples' accuracy against their observed labels at t_clean."
    ),
    "test_error_rises": (
        "From the early-stopping epoch e (the best noisy-validation accuracy) to the final epoch. "
        "Memorization rose when the noisy samples' accuracy against their observed labels rose by more than "
        "the width of its 95% Wilson interval at e (by more than 0.10 when n is unknown). Supported when "
        "memorization rose and the clean test accuracy fell by more than the width of its Wilson interval at "
        "e; not supported when memorization rose but the test accuracy did not fall that much; inconclusive "
        "when memorization did not rise (nothing to attribute a rise to) or the test n is unknown. Key "
        "number: test accuracy at e minus test accuracy at the final epoch."
    ),
    "double_descent": (
        "Read on the clean test loss (as Kubo et al. do), with the test error beside it. Each curve is smoothed "
        "over 5 probe points; a double descent is a minimum, a later peak and a later second minimum, and the "
        "curve stays below the peak by as much to its last point (the second descent holds). The first "
        "descent, from the untrained model's value to the first minimum, is judged like the dips. A dip is "
        "clear when it reaches both 0.03 and 2 standard errors (from the spread of the per-sample loss, or the "
        "binomial error), noise when it is within 1 standard error, unclear in between. Supported when the loss "
        "curve's double descent is clear; inconclusive when it is unclear; when it is absent: not supported if at"
        " least 90% of the noisy labels were memorized by the final epoch (of all training labels in a run "
        "without noise) or their fit has stopped rising (it rose above its minimum by more than that minimum's "
        "Wilson interval width, and from the probe nearest half the final epoch to the final one it moved by no "
        "more than its Wilson interval width: training longer would not fit more), else "
        "inconclusive (train longer: the second descent follows memorization). A run without the loss spread is "
        "read on the test error. Key number: the re-generalization gain, peak minus second minimum of the "
        "deciding curve."
    ),
    "separation_outward": (
        "At the final signals epoch, the separation cosine between the clean and the noisy class means (noisy "
        "samples grouped by true label) of each tap, shallow to deep; lower means more separated. Inconclusive "
        "when less than half of the noisy labels are memorized there (nothing to separate). The drop from the "
        "shallowest to the deepest tap has the standard error of its mean over classes. Supported when the cosine"
        " never rises by more than 0.02 from one tap to the next and the drop exceeds 0.05 by more than 2 "
        "standard errors; not supported when it rises by more than 0.02 somewhere or the drop lies more than 2 "
        "standard errors below 0.05; inconclusive within that band or with fewer than two taps. Key number: "
        "shallowest minus deepest cosine."
    ),
    "large_activation": (
        "At the final signals epoch each tap's max/median activation ratio is flagged large, not large or "
        "undecided against the threshold 100 (the median's relative error decides the borderline). Among the "
        "large taps, take the one with the largest ratio. Supported when it lies in the shallow half of the "
        "taps and its neuron follows the input (R^2 from the input at least its eta^2 with the label, not both "
        "below 0.1). Not supported when no tap is large, when the largest is in the deep half, or when its "
        "neuron follows the label or neither. Inconclusive with one tap, with undecided flags and no large "
        "tap, or when the neuron's dependence is undecided. Key number: the largest ratio."
    ),
    "test_alignment": (
        "At the final signals epoch on the deepest signals tap, the mean alignment (cosine to the clean minus "
        "cosine to the noisy class mean of the prediction) of correctly and of wrongly predicted test samples, "
        "each with its standard error. Inconclusive when less than half of the noisy labels are memorized (no "
        "noisy signal to align with). Supported when the correct mean lies more than 2 standard errors above 0 "
        "and the wrong mean more than 2 below; not supported when either lies more than 2 standard errors on the "
        "wrong side of 0; inconclusive otherwise, or when a mean is missing or rests on fewer than 10 samples. "
        "Key number: mean alignment of correct minus wrong predictions."
    ),
    "effective_rank_grows": (
        "Effective rank of the feature tap's training spectrum at the spectral epoch nearest early stopping and "
        "at the final spectral epoch, and its growth ratio g = final / early with a standard error from both "
        "spectra's sampling errors (delta method, Gaussian features). When memorization rose between them (as "
        "for \"test error rises\"): supported when g lies above 1.10 + 2 SE, not supported when below 1.10 - 2 SE, "
        "inconclusive in between or when the training sample count is unknown; inconclusive when memorization "
        "did not rise. Key number: final over early-stopping effective rank."
    ),
    "noise_in_tail": (
        "At the final spectral epoch on the feature tap, the fit of the training samples (against observed "
        "labels) when the features are truncated to d* (chosen on noisy validation) against the untruncated "
        "fit. Supported when truncation at least halves the noisy samples' fit and lowers the clean samples' "
        "fit by at most 5 points (both judged on Wilson intervals); not supported when the noisy fit survives "
        "or the clean fit goes too; inconclusive when fewer than half of the noisy labels were memorized or an "
        "interval straddles a boundary. Key number: the noisy fit at d*."
    ),
    "rank_risk_valley": (
        "Only with a planted signal dimension k* (synthetic data). On the clean-test accuracy curve of the "
        "spectral linear probe of the feature tap at the final spectral epoch, d_opt is the "
        "one-standard-error choice of d. Supported when d_opt is within max(2, 20% of k*) of k* and the "
        "accuracy falls beyond the optimum by more than its Wilson interval width: a valley of risk near k*. "
        "Not supported otherwise; inconclusive when the test n is unknown. Key number: d_opt."
    ),
    "truncation_vs_early_stop": (
        "The final model truncated to d* (original head) against the early-stopped model on the clean test "
        "set; a difference decides only outside its own uncertainty (a tie is inconclusive). With both models' "
        "per-sample correctness (from the checkpoints): supported when the truncated accuracy is higher and "
        "McNemar's exact p < 0.05; not supported when it is lower and p < 0.05; inconclusive otherwise. From "
        "the metrics alone: supported when its Wilson interval lies wholly above the early-stopped one; not "
        "supported when it lies wholly below; inconclusive otherwise. "
        "Key number: truncated minus early-stopped test accuracy."
    ),
    "systematic_noise_in_signal": (
        "Only with systematic (pair-flip) noise. With the numbers of \"noise in the tail\": supported when at "
        "least half of the noisy labels are memorized and the lower Wilson bound of the noisy fit at d* stays "
        "above half its untruncated value (truncation does not remove systematic noise: it sits in the top "
        "components); not supported when the noise-in-the-tail rule says supported; inconclusive otherwise. "
        "Key number: the noisy fit at d*."
    ),
    "no_tail_at_init": (
        "At epoch 0 (the untrained network) on the feature tap: supported when the noise-dominated components "
        "(noise share at least the threshold tau) hold less than 1% of the variance; not supported otherwise. "
        "Key number: that variance share."
    ),
    "wider_larger_tail": (
        "Only with a sweep over width. The tail size of a run is the share of the feature tap's variance "
        "beyond d* at its final spectral epoch. Supported when it never decreases with width and the widest "
        "run's exceeds the narrowest's; not supported when the widest's does not exceed the narrowest's; "
        "inconclusive otherwise (not monotone). Scored once per seed."
    ),
}


#: claim key -> fingerprint of the claim function's docstring (the developer's statement of the
#: rule) the reader's text above was last checked against. ``tests/test_verdict.py`` fails when a
#: docstring changes: then re-read the rule, update its text here and in docs/definitions.md, and
#: the fingerprint (:func:`docstring_fingerprint`).
CHECKED_AGAINST: dict[str, str] = {
    "clean_before_noisy": "df29615873d6",
    "test_error_rises": "fe04d1dd3196",
    "double_descent": "ba31bbdd0352",
    "separation_outward": "56f56bbb4403",
    "large_activation": "e6f977837ee8",
    "test_alignment": "58cc7bdcffee",
    "effective_rank_grows": "b7359b1d1d7f",
    "noise_in_tail": "c30d71831750",
    "rank_risk_valley": "b4ffb9f8d7a9",
    "truncation_vs_early_stop": "eabc3ac2dbaf",
    "systematic_noise_in_signal": "d74b0c43890c",
    "no_tail_at_init": "7106545fa96e",
    "wider_larger_tail": "90b56d2ae793",
}


def docstring_fingerprint(doc: str) -> str:
    """The first 12 hex digits of the SHA-256 of a docstring with its white space collapsed."""
    import hashlib

    return hashlib.sha256(" ".join(doc.split()).encode()).hexdigest()[:12]


def claim_rule(key: str, fallback: str = "") -> str:
    """The reader's rule of claim ``key`` (:data:`CLAIM_RULES`), else ``fallback``."""
    return CLAIM_RULES.get(key, fallback)
