"""Probes: measurements taken on the probe schedule (epoch 0 = the untrained control).

A probe is any object with a ``name`` and ``__call__(model, data, ctx) -> list[Row]``.
Probes are looked up by name in :data:`REGISTRY` (lazy ``module:attr`` strings so optional
parts never slow down import).
"""

from __future__ import annotations

from importlib import import_module

from noisescope.probes.base import Probe, ProbeContext, Row, rows_to_frame

REGISTRY: dict[str, str] = {
    "dynamics": "noisescope.probes.dynamics:DynamicsProbe",
    "spectral": "noisescope.spectral.probe:SpectralProbe",
    "signals": "noisescope.signals.probe:SignalsProbe",
}


def make_probe(name: str, **options: object) -> Probe:
    """Instantiate the probe registered as ``name`` with its options."""
    if name not in REGISTRY:
        raise ValueError(f"unknown probe {name!r}; choose from {sorted(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    return getattr(import_module(module), attr)(**options)


__all__ = ["Probe", "ProbeContext", "Row", "REGISTRY", "make_probe", "rows_to_frame"]
