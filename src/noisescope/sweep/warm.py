"""Imported once by the local executor's fork server, so that every worker forked from it starts
with torch, noisescope and the lazily imported parts a run needs already loaded (importing them
costs seconds per process: torch, torch._dynamo on the first optimizer, scikit-learn, scipy).

Nothing here starts a thread or touches a device: forking the server stays safe.
"""

from __future__ import annotations

import torch

import noisescope.data  # noqa: F401
import noisescope.probes.dynamics  # noqa: F401
import noisescope.runs.lifecycle  # noqa: F401
import noisescope.sweep.runner  # noqa: F401

# the first optimizer imports torch._dynamo (~1-3 s); build one on a scalar to pay it here
torch.optim.Adam([torch.zeros(1, requires_grad=True)])
try:  # recorded in every run's env.json; imports scipy as well
    import sklearn  # noqa: F401
except ImportError:  # pragma: no cover
    pass
