"""The bring-your-own-model example runs end to end (examples/byo_model.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "byo_model.py"


def _load():
    spec = importlib.util.spec_from_file_location("byo_model", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_byo_example_quick(tmp_path):
    out = _load().main(epochs=3, seed=0, out_dir=str(tmp_path), verbose=False)
    assert out["reload_identical"] is True
    assert (tmp_path / "repaired" / "model.safetensors").exists()
    assert 1 <= out["d"] <= 128
    for key in ("final_test", "truncated_test", "inner_test", "probe_test_body", "probe_test_embed"):
        assert 0.0 <= out[key] <= 1.0


@pytest.mark.slow
def test_byo_example_repairs_a_memorizing_network():
    out = _load().main(epochs=100, seed=0, verbose=False)
    assert out["memorized"] > 0.95
    # the probe on a tap chosen by the user, d by noisy validation, beats the converged model
    assert out["inner_test"] > out["final_test"] + 0.05
    assert out["truncated_test"] > out["final_test"]
