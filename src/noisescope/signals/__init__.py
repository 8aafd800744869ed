"""Internal signals of Kubo et al.: how clean and noisy samples separate layer by layer,
the single very large activation, and how test predictions align with the clean or the
noisy training signal (docs/definitions.md, "Internal signals").

Functional cores on tensors live in one module per concept; the thin stateful shell that is
fed the shared pass and writes tidy rows is :class:`noisescope.probes.signals.SignalsProbe`.

* :mod:`~noisescope.signals.groups` -- streaming class-wise sums by group (clean, noisy by
  true label, noisy by observed label) and the resulting class means S_clean,c, S_noisy,c.
* :mod:`~noisescope.signals.separation` -- cos(S_clean,c, S_noisy,c) per class and averaged.
* :mod:`~noisescope.signals.large_activation` -- max |a|, its neuron, the median |a| (streaming
  histogram, relative error <= 2**-8), their ratio; eta^2 and held-out R^2 dependence.
* :mod:`~noisescope.signals.alignment` -- per-test-sample alignment score and its summaries.
* :mod:`~noisescope.report.signals_figures` -- heatmap and curves from the metrics table.
"""

from __future__ import annotations

from noisescope.signals.alignment import alignment_scores, summarize_alignment
from noisescope.signals.groups import GROUPS, ClassSums, class_means
from noisescope.signals.large_activation import (
    AbsHistogram,
    NeuronMax,
    correlation_ratio,
    heldout_r2,
    input_components,
)
from noisescope.signals.separation import cosine, separation

__all__ = [
    "GROUPS",
    "AbsHistogram",
    "ClassSums",
    "NeuronMax",
    "alignment_scores",
    "class_means",
    "correlation_ratio",
    "cosine",
    "heldout_r2",
    "input_components",
    "separation",
    "summarize_alignment",
]
