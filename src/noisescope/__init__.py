"""noisescope: train on noisy labels, see where the noise is memorized, repair by spectral
truncation. See docs/definitions.md for the science and docs/architecture.md for the layers.

The package root is the top of the layer table: it lazily exposes the user-facing entry points.
"""

from __future__ import annotations

from noisescope.version import __version__

__all__ = ["__version__", "load_run", "load_config", "load_sweep", "run_experiment"]


def __getattr__(name: str):  # lazy: keep `import noisescope` cheap
    if name == "load_run":
        from noisescope.runs.run import load_run

        return load_run
    if name == "load_config":
        from noisescope.config import load_config

        return load_config
    if name == "run_experiment":
        from noisescope.runs.lifecycle import run_experiment

        return run_experiment
    if name == "load_sweep":
        from noisescope.sweep import load_sweep

        return load_sweep
    raise AttributeError(f"module 'noisescope' has no attribute {name!r}")
