"""Leave-one-out R^2 of a one-variable linear regression (the Loftus test statistic).

For pairs (x_i, y_i), i = 1..n: fit y = a + b x by least squares on the n - 1 other pairs,
predict y_i, and report 1 - sum_i (y_i - yhat_(-i))^2 / sum_i (y_i - mean(y))^2 (the
predictive R^2, Q^2 or 1 - PRESS / TSS: ``r2_score(y, cross_val_predict(LinearRegression(), x, y,
cv=LeaveOneOut()))`` in scikit-learn). It can be negative: worse than predicting the mean.
Computed in closed form from the hat matrix, e_(-i) = e_i / (1 - h_ii).
"""

from __future__ import annotations

import numpy as np


def loo_r2(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> float:
    """Leave-one-out R^2 of y ~ a + b x (see the module docstring); needs n >= 3 and x not constant."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    n = x.size
    if n < 3:
        raise ValueError(f"leave-one-out R^2 needs at least 3 points, got {n}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx <= 0:
        raise ValueError("x is constant: the regression is undefined")
    slope = float(xc @ (y - y.mean())) / sxx
    resid = y - y.mean() - slope * xc
    leverage = 1.0 / n + xc * xc / sxx
    if np.any(leverage >= 1 - 1e-12):
        raise ValueError("a point has leverage 1 (all other x equal): its left-out fit is undefined")
    press = float(np.sum((resid / (1.0 - leverage)) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    if tss <= 0:
        raise ValueError("y is constant: R^2 is undefined")
    return 1.0 - press / tss
