"""Epoch-wise double descent on one curve (evidence.descent.read_descent): a second descent
must hold to the end of training."""

from __future__ import annotations

import numpy as np

from noisescope.evidence.descent import ABSENT, CLEAR, read_descent

EPOCHS = np.arange(12)
SE = np.full(12, 0.005)
#                 untrained  first min    rise to the peak    second descent, to the end
LASTING = np.array([2.3, 1.0, 0.8, 0.8, 1.2, 1.6, 1.6, 1.2, 1.0, 0.9, 0.9, 0.9])


def test_a_second_descent_that_lasts_to_the_end_is_clear():
    r = read_descent(EPOCHS, LASTING, SE, smooth=1)
    assert r["status"] == CLEAR and (r["first_min_epoch"], r["peak_epoch"]) == (2, 5)
    assert r["end_fall"] == r["fall"] == r["gain"] > 0.6


def test_a_dip_that_climbs_back_past_the_peak_is_not_a_second_descent():
    # the same curve, then the loss explodes (an overconfident memorizing network): the dip
    # at epochs 8-10 is a plateau's wiggle, not a re-generalization
    climbing = np.r_[LASTING[:-2], 2.4, 3.5]
    r = read_descent(EPOCHS, climbing, SE, smooth=1)
    assert r["status"] == ABSENT and r["end_fall"] < 0
    # the old rule (a later minimum below the peak, wherever the curve ends) fired on it
    from noisescope.evidence.descent import descent_triple

    assert descent_triple(EPOCHS, climbing, 1, SE, 0.03, 2.0, first_descent=True) is not None
    assert descent_triple(EPOCHS, climbing, 1, SE, 0.03, 2.0, first_descent=True, hold=True) is None
