"""The Kubo et al. presets load, validate and configure the signals probe."""

from __future__ import annotations

import pytest

from noisescope.config import load_config
from noisescope.probes import make_probe


@pytest.mark.parametrize(("preset", "arch", "hidden"), [
    ("kubo_mlp3", "mlp3", 2), ("kubo_mlp5", "mlp5", 4), ("kubo_mlp7", "mlp7", 6),
    ("kubo_fmnist_cpu", "mlp7", 6),
])
def test_kubo_presets(preset: str, arch: str, hidden: int) -> None:
    cfg = load_config(preset)
    assert cfg.model.arch == arch
    assert cfg.noise.model == "symmetric" and cfg.noise.rate == pytest.approx(0.3)
    assert cfg.train.optimizer == "adam"
    assert cfg.probe.probes == ["dynamics", "signals"]
    probe = make_probe("signals", **cfg.probe.options["signals"])
    assert probe.name == "signals" and probe.threshold == 100.0
    from noisescope.models import build_model

    shape = (3, 32, 32) if cfg.data.name == "cifar10" else (1, 28, 28)
    model = build_model(cfg.model.arch, shape, 10, **cfg.model.options)
    assert len(model.taps()) == hidden
