"""Array conversion shared by the evidence modules."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A 1-D numpy copy of a tensor (any device), array, list or scalar."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=dtype).reshape(-1)
