"""Probes: measurements taken on the probe schedule (epoch 0 = the untrained control).

A probe has a ``name`` and ``start(model, data, ctx)`` giving a session fed by the shared pass
(:mod:`noisescope.probes.engine`); see :mod:`noisescope.probes.base`. Probes are looked up
by name in :data:`REGISTRY` (lazy ``module:attr`` strings so optional
parts never slow down import).
"""

from __future__ import annotations

from importlib import import_module

from noisescope.probes.base import Probe, ProbeContext
from noisescope.probes.engine import run_probes

REGISTRY: dict[str, str] = {
    "dynamics": "noisescope.probes.dynamics:DynamicsProbe",
    "spectral": "noisescope.probes.spectral:SpectralProbe",
    "signals": "noisescope.probes.signals:SignalsProbe",
    "weights": "noisescope.probes.weights:WeightsProbe",
}


def make_probe(name: str, **options: object) -> Probe:
    """Instantiate the probe registered as ``name`` with its options."""
    if name not in REGISTRY:
        raise ValueError(f"unknown probe {name!r}; choose from {sorted(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    return getattr(import_module(module), attr)(**options)


__all__ = ["Probe", "ProbeContext", "REGISTRY", "make_probe", "run_probes"]
