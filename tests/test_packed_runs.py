"""Packed runs (noisescope.runs.packed_runs) and packed sweeps: each member is an ordinary run.

Tolerance: every member's metrics (dynamics, spectral and signals probes, training loss and
lr), per-sample margins and checkpoint weights (resume state included) equal those of the
same config trained unpacked with run_experiment to rtol 1e-4, atol 1e-5 (weights: rtol 1e-5,
atol 1e-6), for Adam and SGD with momentum, members differing in train.seed, noise.seed, lr
and weight decay, 3 epochs. Observed on the CPU reference machine (1 thread): metrics max
|diff| 6.4e-7 (Adam) / 1.2e-7 (SGD), max relative 3.3e-6; margins 1.2e-7; weights and
optimizer state 3.0e-8. Batched and single matmuls round differently (and the packed probe
pass shares the first layer's product), nothing else differs; longer training amplifies
such differences as it amplifies any rounding. Kill-and-resume of a packed sweep is exact:
bit for bit equal to an uninterrupted packed sweep (NOISESCOPE_ALL_KILL_POINTS=1 tries every
file operation).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import noisescope.io
import noisescope.runs.store
from noisescope.config import ConfigError, from_dict
from noisescope.metrics import KEY
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.packed_runs import pack_reason, run_packed
from noisescope.runs.run import load_run
from noisescope.runs.store import RunStore
from noisescope.sweep import LocalExecutor, plan_packs, read_manifest, run_sweep, sweep_from_dict
from noisescope.sweep.runner import RunTask, run_dir

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL, ATOL = 1e-4, 1e-5
BASE = {
    "data": {"name": "synthetic", "val_fraction": 0.2, "seed": 0,
             "options": {"n": 240, "n_test": 80, "dim": 12, "k_star": 3, "num_classes": 3}},
    "noise": {"model": "symmetric", "rate": 0.3, "seed": 0},
    "model": {"arch": "mlp", "options": {"widths": [16, 16]}},
    "train": {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "epochs": 3, "seed": 0, "device": "cpu"},
    "probe": {"schedule": "every", "probes": ["dynamics", "spectral", "signals"], "batch_size": 512,
              "options": {"signals": {"dependence_samples": 60, "input_pcs": 3}, "spectral": {"d_max": 16}}},
    "run": {"checkpoint_every": 2},
}
# members: (train.seed, noise.seed, train.lr, train.weight_decay)
MEMBERS = [(0, 0, 3e-3, 0.0), (1, 2, 1e-3, 0.0), (2, 1, 2e-3, 1e-2)]


def config(root: Path, name: str, member, **train):
    raw = copy.deepcopy(BASE)
    seed, nseed, lr, wd = member
    raw["train"].update(seed=seed, lr=lr, weight_decay=wd, **train)
    raw["noise"]["seed"] = nseed
    raw["run"].update(root=str(root), name=name)
    return from_dict(raw)


def sorted_metrics(path: Path):
    return RunStore(path).metrics().sort_values(KEY).reset_index(drop=True)


def weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: load_file(str(p)) for p in sorted(RunStore(path).checkpoint_dir.glob("*.safetensors"))}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_members_equal_unpacked_runs(tmp_path, optimizer):
    packed_cfgs = [config(tmp_path / "packed", f"m{i}", m, optimizer=optimizer) for i, m in enumerate(MEMBERS)]
    paths = run_packed(packed_cfgs)
    assert paths == [tmp_path / "packed" / f"m{i}" for i in range(len(MEMBERS))]
    worst = 0.0
    for i, m in enumerate(MEMBERS):
        ref = run_experiment(config(tmp_path / "single", f"m{i}", m, optimizer=optimizer))
        got, want = sorted_metrics(paths[i]), sorted_metrics(ref)
        assert set(got["probe"]) == {"dynamics", "spectral", "signals", "train"}
        assert got[KEY].equals(want[KEY])
        np.testing.assert_allclose(got["value"], want["value"], rtol=RTOL, atol=ATOL, equal_nan=True)
        worst = max(worst, float(np.nanmax(np.abs(got["value"].to_numpy() - want["value"].to_numpy()))))
        a, b = RunStore(paths[i]).record("margins"), RunStore(ref).record("margins")
        assert a[["epoch", "index"]].equals(b[["epoch", "index"]])
        np.testing.assert_allclose(a["margin"], b["margin"], rtol=RTOL, atol=ATOL)
        wa, wb = weights(paths[i]), weights(ref)
        assert wa.keys() == wb.keys()  # the same best-validation checkpoint kept
        assert {"epoch_0000.safetensors", "epoch_0002.safetensors", "epoch_0003.safetensors",
                "resume.safetensors"} <= wa.keys()
        for f in wa:
            assert wa[f].keys() == wb[f].keys(), f
            for k in wa[f]:
                torch.testing.assert_close(wa[f][k], wb[f][k], rtol=1e-5, atol=1e-6, msg=f"{f} {k}")
        # the directory an unpacked run writes, file for file
        names = lambda p: sorted(str(q.relative_to(p)) for q in p.rglob("*") if q.is_file())  # noqa: E731
        assert names(paths[i]) == names(ref)
        for f in ("noise.json", "status.json"):
            assert RunStore(paths[i]).read_json(f) == RunStore(ref).read_json(f)
        assert RunStore(paths[i]).read_json("config.json")["train"] == RunStore(ref).read_json("config.json")["train"]
        sa, sb = RunStore(paths[i]).read_json("summary.json"), RunStore(ref).read_json("summary.json")
        assert sa.keys() == sb.keys() and sa["best_val_epoch"] == sb["best_val_epoch"]
    print(f"{optimizer}: max |packed - unpacked| over all metrics {worst:.2e}")
    # load_run sees an ordinary run
    run = load_run(paths[1])
    assert run.status["state"] == "complete" and run.config.train.seed == 1 and run.config.noise.seed == 2
    assert run.model().num_classes == 3 and len(run.curve("test")) == 4
    # a complete pack is left as it is
    before = weights(paths[0])
    assert run_packed(packed_cfgs) == paths
    assert all(torch.equal(before[f][k], v) for f, w in weights(paths[0]).items() for k, v in w.items())


def test_an_unpacked_run_resumes_a_packed_members_directory(tmp_path):
    """Killed after epoch 2 of 3, one member is finished by run_experiment (unpacked): its
    resume state is in the unpacked format."""

    class Stop(BaseException):
        pass

    def stop(report):
        if report.epoch == 2:
            raise Stop

    cfgs = [config(tmp_path / "packed", f"m{i}", m) for i, m in enumerate(MEMBERS[:2])]
    with pytest.raises(Stop):
        run_packed(cfgs, on_epoch=[None, stop])  # member 1 stops the pack after its epoch-2 commit
    assert [RunStore(p).status()["state"] for p in (tmp_path / "packed" / "m0", tmp_path / "packed" / "m1")] == [
        "failed", "failed"]
    path = run_experiment(cfgs[1])
    ref = run_experiment(config(tmp_path / "single", "m1", MEMBERS[1]))
    got, want = sorted_metrics(path), sorted_metrics(ref)
    assert got[KEY].equals(want[KEY])
    np.testing.assert_allclose(got["value"], want["value"], rtol=RTOL, atol=ATOL, equal_nan=True)


def test_a_diverging_member_fails_alone(tmp_path):
    members = [(0, 0, 0.05, 0.0), (1, 0, 1e6, 0.0), (2, 0, 0.02, 0.0)]
    cfgs = [config(tmp_path, f"m{i}", m, optimizer="sgd") for i, m in enumerate(members)]
    paths = run_packed(cfgs)
    status = [RunStore(p).status() for p in paths]
    assert [s["state"] for s in status] == ["complete", "failed", "complete"]
    assert status[1]["error"] == "non-finite loss at epoch 1" and status[1]["epoch"] == 0
    for i in (0, 2):
        ref = run_experiment(config(tmp_path / "single", f"m{i}", members[i], optimizer="sgd"))
        np.testing.assert_allclose(sorted_metrics(paths[i])["value"], sorted_metrics(ref)["value"],
                                   rtol=RTOL, atol=ATOL, equal_nan=True)
    # in a sweep, the failed run is retried as a pack of one and fails again, the same way
    task = RunTask("m1", cfgs[1].to_dict())
    items, lines = plan_packs([task])
    assert lines == ["packed 1 run: m1 (retrying a run that diverged in a pack: non-finite loss at epoch 1)"]
    from noisescope.sweep import execute_pack

    [outcome] = execute_pack(items[0])
    assert outcome.state == "failed" and outcome.error == "non-finite loss at epoch 1"


def test_pack_reason_and_plan():
    def cfg(**changes):
        raw = copy.deepcopy(BASE)
        for dotted, v in changes.items():
            section, key = dotted.split("__")
            raw[section][key] = v
        return from_dict(raw)

    assert pack_reason([cfg(), cfg(train__seed=1, noise__seed=3, train__lr=0.1, train__weight_decay=0.1)]) is None
    assert "model.options" in pack_reason([cfg(), cfg(model__options={"widths": [8, 8]})])
    assert "train.batch_size" in pack_reason([cfg(), cfg(train__batch_size=32)])
    assert "noise.rate" in pack_reason([cfg(), cfg(noise__rate=0.1)])
    with pytest.raises(ConfigError, match="can't be packed"):
        run_packed([cfg(), cfg(train__epochs=2)])
    tasks = [RunTask(f"r{i}", c.to_dict()) for i, c in enumerate(
        [cfg(), cfg(train__seed=1), cfg(model__options={"widths": [8]}), cfg(train__seed=2)])]
    items, lines = plan_packs(tasks)
    assert [t.id for t in items] == ["r0+r1+r3", "r2"]
    assert lines[0] == "packed 3 runs: r0 r1 r3 (differing in train.seed)"
    assert lines[1].startswith("run separately: r2 (no other pending run differs from it only in")
    items, lines = plan_packs(tasks, pack=False)
    assert items == tasks and lines == ["run separately: 4 run(s) (sweep.pack = false)"]


def test_a_dead_worker_fails_the_unfinished_runs_of_its_pack(tmp_path):
    from noisescope.sweep.runner import PackTask, item_failure

    tasks = tuple(RunTask(f"r{i}", {"run": {"root": str(tmp_path), "name": f"r{i}"}}) for i in range(2))
    RunStore(tasks[0].path).set_status("complete", 3)
    RunStore(tasks[1].path).set_status("running", 2)
    out = item_failure(PackTask(tasks), RuntimeError("worker died"))
    assert [o.state for o in out] == ["complete", "failed"] and "worker died" in out[1].error
    assert RunStore(tasks[0].path).status()["state"] == "complete"
    assert RunStore(tasks[1].path).status() == {**RunStore(tasks[1].path).status(), "state": "failed", "epoch": 2}


# -- packed sweeps -----------------------------------------------------------------------------
def sweep_raw(root: Path, name: str = "s", **sweep) -> dict:
    raw = copy.deepcopy(BASE)
    raw["probe"]["probes"] = ["dynamics", "signals"]
    raw["grid"] = {"train": {"seed": [0, 1]}}
    raw["zip"] = [{"noise": {"seed": [0, 1]}, "train": {"lr": [3e-3, 1e-3]}}]
    raw["sweep"] = {"root": str(root), "name": name, **sweep}
    return raw


def snapshot(sweep_dir: Path, ids: list[str]) -> dict:
    out = {}
    for i in ids:
        path = run_dir(sweep_dir, i)
        m = sorted_metrics(path)
        margins = RunStore(path).record("margins")
        out[i] = ([tuple(r) for r in m.itertuples(index=False)], weights(path),
                  margins.to_numpy().tobytes(), RunStore(path).status()["state"])
    return out


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for i in a:
        (rows_a, w_a, m_a, s_a), (rows_b, w_b, m_b, s_b) = a[i], b[i]
        if s_a != s_b or m_a != m_b or len(rows_a) != len(rows_b) or w_a.keys() != w_b.keys():
            return False
        for ra, rb in zip(rows_a, rows_b, strict=True):
            if ra[:-1] != rb[:-1] or not (ra[-1] == rb[-1] or (np.isnan(ra[-1]) and np.isnan(rb[-1]))):
                return False
        if not all(w_a[f].keys() == w_b[f].keys() and all(torch.equal(w_a[f][k], w_b[f][k]) for k in w_a[f])
                   for f in w_a):
            return False
    return True


@pytest.fixture(scope="module")
def packed_sweep(tmp_path_factory):
    """The uninterrupted packed sweep: 2 seeds x 2 (noise draw, lr) = 4 runs, one pack."""
    root = tmp_path_factory.mktemp("sweep")
    spec = sweep_from_dict(sweep_raw(root))
    result = run_sweep(spec, LocalExecutor(1))
    return spec, result, snapshot(spec.directory, [p.id for p in spec.points])


def test_packed_sweep_runs_are_ordinary_runs(packed_sweep):
    from noisescope.report import build_report

    spec, result, _snap = packed_sweep
    ids = [p.id for p in spec.points]
    assert sorted(result.ids("complete")) == sorted(ids)
    assert result.packing == [f"packed 4 runs: {' '.join(ids)} (differing in noise.seed, train.lr, train.seed)"]
    manifest = read_manifest(spec.directory)
    assert manifest["packing"] == result.packing and manifest["invocations"][-1]["packing"] == result.packing
    assert manifest["settings"]["pack"] is True
    for p in spec.points:
        run = load_run(run_dir(spec.directory, p.id))
        assert run.config.train.seed == p.params["train.seed"] and run.summary["epochs"] == 3
    out = build_report(spec.directory, progress=False, max_runs=1)
    assert out.exists() and out.stat().st_size > 10_000
    again = run_sweep(spec, LocalExecutor(1))
    assert sorted(again.ids("skipped")) == sorted(ids) and again.packing == []


def test_packed_sweep_matches_unpacked_sweep_and_falls_back(packed_sweep, tmp_path):
    """Packing off: the same runs one by one, to the float tolerance; a grid whose other
    axis changes the shapes runs its points separately and says so."""
    spec, _result, _snap = packed_sweep
    raw = sweep_raw(tmp_path, pack=False)
    raw["grid"] = {"train": {"seed": [0]}}
    raw["zip"] = [{"noise": {"seed": [0, 1]}, "train": {"lr": [3e-3, 1e-3]}}]
    alone = sweep_from_dict(raw)
    result = run_sweep(alone, LocalExecutor(1))
    assert result.packing == ["run separately: 2 run(s) (sweep.pack = false)"]
    for p in alone.points:
        np.testing.assert_allclose(sorted_metrics(run_dir(alone.directory, p.id))["value"],
                                   sorted_metrics(run_dir(spec.directory, p.id))["value"],
                                   rtol=RTOL, atol=ATOL, equal_nan=True)
    raw = sweep_raw(tmp_path, name="shapes")
    raw["train"]["epochs"] = 1
    raw["grid"] = {"model": {"options": {"widths": [[8], [16]]}}}
    raw.pop("zip")
    shapes = sweep_from_dict(raw)
    result = run_sweep(shapes, LocalExecutor(1))
    assert len(result.ids("complete")) == 2 and all(line.startswith("run separately:") for line in result.packing)


def two_packs(root: Path, name: str) -> dict:
    """2 noise rates x 2 seeds: two packs of two."""
    r = sweep_raw(root, name=name, threads_per_run=1)
    r["probe"]["probes"] = ["dynamics"]
    r["train"]["epochs"] = 2
    r["grid"] = {"noise": {"rate": [0.1, 0.3]}, "train": {"seed": [0, 1]}}
    r.pop("zip")
    return r


def test_packs_run_in_worker_processes(tmp_path):
    """Two packs on two local worker processes: the same bits as the same sweep run in this
    process, one pack after the other."""
    here, there = sweep_from_dict(two_packs(tmp_path, "here")), sweep_from_dict(two_packs(tmp_path, "there"))
    a = run_sweep(here, LocalExecutor(1))
    b = run_sweep(there, LocalExecutor(2))
    assert len(a.packing) == len(b.packing) == 2 and all(line.startswith("packed 2 runs") for line in b.packing)
    ids = [p.id for p in here.points]
    assert sorted(b.ids("complete")) == sorted(ids)
    assert same(snapshot(here.directory, ids), snapshot(there.directory, ids))


@pytest.mark.slow  # starting Ray takes 10-50 s here
def test_packs_run_as_ray_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "180")
    ray = pytest.importorskip("ray")
    from noisescope.sweep import RayExecutor

    here, there = sweep_from_dict(two_packs(tmp_path, "here")), sweep_from_dict(two_packs(tmp_path, "there"))
    run_sweep(here, LocalExecutor(1))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(there, RayExecutor(cpus_per_run=1))
    finally:
        ray.shutdown()
    ids = [p.id for p in here.points]
    assert sorted(result.ids("complete")) == sorted(ids), result.outcomes
    assert len(result.packing) == 2
    assert same(snapshot(here.directory, ids), snapshot(there.directory, ids))


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in noisescope catches it."""


class Injector:
    """Raise Killed at the k-th file operation (as tests/test_kill_resume.py); k = 0: never,
    and record every operation's target."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, k: int, where: str) -> None:
        self.k, self.where, self.count, self.log = k, where, 0, []
        real_replace, real_unlink = os.replace, Path.unlink

        def replace(src, dst):
            self.tick("before", dst)
            real_replace(src, dst)
            self.tick("after", dst)

        def unlink(p, missing_ok=False):
            if not str(p).endswith(".tmp"):
                self.tick("before", p)
            real_unlink(p, missing_ok=missing_ok)

        monkeypatch.setattr(noisescope.io.os, "replace", replace)
        monkeypatch.setattr(noisescope.runs.store.Path, "unlink", unlink)

    def tick(self, when: str, target) -> None:
        if when != self.where:
            return
        self.count += 1
        self.log.append(str(target))
        if self.count == self.k:
            raise Killed(f"killed {when} file operation {self.k}")


def kill_points(log: list[str], members: int) -> list[int]:
    """Kill points (1-based) worth trying: after the first member's resume write of every
    epoch (so between two members' resume writes) and after the second-to-last one's; the
    first status write of every epoch; one mid-epoch metric part; the first and a middle
    member's finalization (compaction, summary, status); the first and last operation; every
    20th."""
    resume = [k for k, t in enumerate(log, start=1) if t.endswith("resume.safetensors")]
    points = {1, len(log), *resume[::members], resume[members - 2]}
    points.update(k + members for k in resume[::members])  # the first status write after them
    parts = [k for k, t in enumerate(log, start=1) if "metrics.parts" in t]
    points.add(parts[len(parts) // 2])
    final = [k for k, t in enumerate(log, start=1) if t.endswith("metrics.parquet")]
    points.update(k + d for k in (final[0], final[len(final) // 2]) for d in (0, 1, 2))
    points.update(range(1, len(log) + 1, 20))
    return sorted(points)


def count_operations(root: Path, monkeypatch, where: str) -> list[str]:
    with monkeypatch.context() as mp:
        inj = Injector(mp, 0, where)
        run_sweep(sweep_from_dict(sweep_raw(root)), LocalExecutor(1))
    return inj.log


def test_killed_packed_sweep_resumes_bit_for_bit(packed_sweep, tmp_path, monkeypatch):
    """Kills at many file operations of a packed sweep (after the k-th os.replace; a few
    before the k-th replace or unlink), each followed by a rerun of the sweep: every run's
    metrics, checkpoints (resume state included) and margins equal the uninterrupted
    packed sweep's bit for bit. NOISESCOPE_ALL_KILL_POINTS=1 tries every point (slow)."""
    spec, _result, reference = packed_sweep
    ids = [p.id for p in spec.points]
    every = bool(os.environ.get("NOISESCOPE_ALL_KILL_POINTS"))
    tried = 0
    for where in ("after", "before"):
        log = count_operations(tmp_path / f"count-{where}", monkeypatch, where)
        resumes = [k for k, t in enumerate(log, start=1) if t.endswith("resume.safetensors")]
        assert len(resumes) == len(ids) * 4  # epochs 0..3
        points = list(range(1, len(log) + 1)) if every else kill_points(log, len(ids))
        if where == "after":  # between the first two members' resume writes of every epoch
            assert set(resumes[:: len(ids)]) <= set(points) and log[resumes[0]].endswith("resume.safetensors")
        elif not every:
            points = points[::4]
        for k in points:
            root = tmp_path / f"{where}{k}"
            with monkeypatch.context() as mp:
                Injector(mp, k, where)
                with pytest.raises(Killed):
                    run_sweep(sweep_from_dict(sweep_raw(root)), LocalExecutor(1))
            run_sweep(sweep_from_dict(sweep_raw(root)), LocalExecutor(1))  # the relaunch
            assert same(snapshot(root / "s", ids), reference), \
                f"kill {where} file operation {k} of {len(log)} ({log[k - 1]}) changed the sweep"
            assert not list((root / "s").rglob("*.tmp")), f"kill {where} {k}: temporary files survived"
            tried += 1
    assert tried >= 20
