"""A run killed at any file operation resumes exactly: every probe's rows and every weight
file equal an uninterrupted run's, bit for bit, at the same thread count.

The kill is simulated in-process: a ``BaseException`` raised just before, or just after, the
k-th ``os.replace`` (every file noisescope writes goes through ``io.atomic_write``) or just
before the k-th ``Path.unlink`` of the store (parts dropped by compaction, superseded
checkpoints). Every k of a run is tried, so kills land between ``config.json`` and
``noise.json``, inside epochs (after the metric part, between weights and resume state),
during compaction and after it. A new ``run_experiment`` then resumes, as a relaunched process
would. Real ``kill -9`` of a process at random times is in ``test_kill_resume_process``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import noisescope.io
import noisescope.runs.store
from noisescope.config import load_config
from noisescope.metrics import KEY
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.store import RunStore

pytestmark = pytest.mark.usefixtures("one_thread")

OVERRIDES = [
    "data.options={n=240, n_test=80, dim=12, k_star=3, num_classes=3}", "noise.rate=0.3",
    "model.options={widths=[16, 16]}", "train.epochs=3", "train.batch_size=64",
    'probe.probes=["dynamics", "spectral", "signals"]',
    "probe.options={signals={dependence_samples=60, input_pcs=3}, spectral={d_max=16}}",
    "run.checkpoint_every=2",
]


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in noisescope catches it."""


def config(root: Path, name: str):
    return load_config(None, [*OVERRIDES, f"run.root={root}", f"run.name={name}"])


def snapshot(path: Path) -> tuple[list[tuple], dict[str, dict[str, torch.Tensor]]]:
    store = RunStore(path)
    m = store.metrics().sort_values(KEY).reset_index(drop=True)
    rows = [tuple(r) for r in m.itertuples(index=False)]
    weights = {p.name: load_file(str(p)) for p in sorted(store.checkpoint_dir.glob("*.safetensors"))}
    margins = store.record("margins")
    weights["margins"] = {"margin": torch.tensor(margins["margin"].to_numpy()),
                          "epoch": torch.tensor(margins["epoch"].to_numpy())}
    return rows, weights


def same(a, b) -> bool:
    rows_a, w_a = a
    rows_b, w_b = b
    if len(rows_a) != len(rows_b) or set(w_a) != set(w_b):
        return False
    for ra, rb in zip(rows_a, rows_b, strict=True):
        if ra[:-1] != rb[:-1] or not (ra[-1] == rb[-1] or (np.isnan(ra[-1]) and np.isnan(rb[-1]))):
            return False
    return all(torch.equal(w_a[f][k], w_b[f][k]) for f in w_a for k in w_a[f])


class Injector:
    """Raise Killed at the k-th file operation (``k`` counts from 1; 0 = never)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, k: int, where: str) -> None:
        self.k, self.where, self.count = k, where, 0
        real_replace, real_unlink = os.replace, Path.unlink

        def replace(src, dst):
            self.tick("before")
            real_replace(src, dst)
            self.tick("after")

        def unlink(p, missing_ok=False):
            if not str(p).endswith(".tmp"):
                self.tick("before")
            real_unlink(p, missing_ok=missing_ok)

        monkeypatch.setattr(noisescope.io.os, "replace", replace)
        monkeypatch.setattr(noisescope.runs.store.Path, "unlink", unlink)

    def tick(self, when: str) -> None:
        if when != self.where:
            return
        self.count += 1
        if self.count == self.k:
            raise Killed(f"killed {when} file operation {self.k}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    path = run_experiment(config(root, "ref"))
    return snapshot(path)


def count_operations(tmp_path: Path, monkeypatch, where: str) -> int:
    with monkeypatch.context() as mp:
        inj = Injector(mp, 0, where)
        run_experiment(config(tmp_path / f"count-{where}", "count"))
    return inj.count


def test_every_kill_point_of_a_run_with_all_three_probes_resumes_bit_for_bit(reference, tmp_path, monkeypatch):
    tried = 0
    for where in ("before", "after"):
        total = count_operations(tmp_path, monkeypatch, where)
        assert total >= 20, f"only {total} file operations {where} in the run"
        for k in range(1, total + 1):
            root = tmp_path / f"{where}{k}"
            with monkeypatch.context() as mp:
                Injector(mp, k, where)
                with pytest.raises(Killed):
                    run_experiment(config(root, "r"))
            path = run_experiment(config(root, "r"))  # the relaunch
            assert same(snapshot(path), reference), f"kill {where} file operation {k} of {total} changed the run"
            assert not list(path.rglob("*.tmp")), f"kill {where} {k}: temporary files survived"
            assert not (path / "metrics.parts").exists(), f"kill {where} {k}: metrics.parts survived"
            assert RunStore(path).status()["state"] == "complete"
            tried += 1
    assert tried >= 40
