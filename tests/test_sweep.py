"""Sweeps: grid expansion, executors (local sequential, local processes, Ray), resumption,
failure capture, load_sweep and the CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from noisescope.config import ConfigError, from_dict
from noisescope.runs.build import config_hash
from noisescope.runs.store import RunStore
from noisescope.sweep import LocalExecutor, load_sweep, run_sweep, sweep_from_dict, sweep_table
from noisescope.sweep import runner as runner_mod
from noisescope.sweep.runner import run_dir

BASE = {
    "data": {"name": "synthetic", "val_fraction": 0.2, "seed": 0,
             "options": {"n": 300, "n_test": 200, "dim": 12, "k_star": 3, "num_classes": 3}},
    "noise": {"model": "symmetric", "rate": 0.2, "seed": 0},
    "model": {"arch": "mlp", "options": {"widths": [32]}},
    "train": {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "epochs": 3, "seed": 0, "device": "cpu"},
    "probe": {"schedule": "every", "probes": ["dynamics"], "batch_size": 512},
}


def tiny_raw(tmp_path, grid=None, **sweep) -> dict:
    """The tests here are about unpacked runs (their kill hooks wrap run_experiment): packing
    off unless asked for; packed sweeps are tested in test_packed_runs.py."""
    raw = copy.deepcopy(BASE)
    raw["grid"] = grid if grid is not None else {"noise": {"rate": [0.1, 0.3]}, "train": {"seed": [0, 1]}}
    raw["sweep"] = {"root": str(tmp_path), "name": "s", "pack": False, **sweep}
    return raw


# -- grid expansion ---------------------------------------------------------------------------
def test_grid_counts_and_stable_ids():
    raw = copy.deepcopy(BASE)
    raw["grid"] = {"noise": {"rate": [0.0, 0.2, 0.4]}, "train.seed": [0, 1]}
    raw["zip"] = [{"model": {"options": {"widths": [[8], [16, 16]]}}, "train": {"lr": [1e-3, 2e-3]}}]
    spec = sweep_from_dict(raw)
    assert len(spec.points) == 3 * 2 * 2
    assert spec.keys == ["noise.rate", "train.seed", "model.options.widths", "train.lr"]
    ids = [p.id for p in spec.points]
    assert len(set(ids)) == len(ids)
    # the id is the hash of the resolved config, built here independently of the grid
    p = spec.points[7]
    manual = copy.deepcopy(BASE)
    manual["noise"]["rate"] = p.params["noise.rate"]
    manual["train"].update(seed=p.params["train.seed"], lr=p.params["train.lr"])
    manual["model"]["options"]["widths"] = p.params["model.options.widths"]
    assert p.id == config_hash(from_dict(manual))
    # zipped: widths and lr move together
    assert {(json.dumps(q.params["model.options.widths"]), q.params["train.lr"]) for q in spec.points} == {
        ("[8]", 1e-3), ("[16, 16]", 2e-3)}
    # same points in another order, with quoted keys: the same ids; the last axis varies fastest
    raw2 = copy.deepcopy(raw)
    raw2["grid"] = {"train.seed": [1, 0], "noise.rate": [0.4, 0.0, 0.2]}
    spec2 = sweep_from_dict(raw2)
    assert {q.id for q in spec2.points} == set(ids)
    assert [(q.params["train.seed"], q.params["noise.rate"]) for q in spec2.points[:3]] == [
        (1, 0.4), (1, 0.4), (1, 0.0)]
    assert sweep_from_dict(copy.deepcopy(raw)).points[5].id == ids[5]  # deterministic


def test_list_valued_fields_are_not_axes():
    raw = copy.deepcopy(BASE)
    raw["probe"]["probes"] = ["dynamics"]
    raw["run"] = {"checkpoint_epochs": [1, 2]}
    spec = sweep_from_dict(raw)
    assert len(spec.points) == 1 and spec.axes == []
    cfg = spec.points[0].config
    assert cfg.model.options["widths"] == [32] and cfg.run.checkpoint_epochs == [1, 2]


@pytest.mark.parametrize("change, needle", [
    (lambda r: r["grid"].update({"noise": {"rat": [0.1]}}), "grid.noise.rat"),
    (lambda r: r["grid"].update({"noise": {"rate": 0.1}}), "grid.noise.rate must be a list"),
    (lambda r: r["grid"].update({"noise": {"rate": []}}), "grid.noise.rate is an empty list"),
    (lambda r: r["grid"].update({"nois": {"rate": [0.1]}}), "unknown section [nois]"),
    (lambda r: r["grid"].update({"train": {"lr": {"a": [1]}}}), "grid.train.lr must be a list"),
    (lambda r: r["grid"].update({"train.lr.a": [1]}), "train.lr is not a table"),
    (lambda r: r["grid"].update({"noise": {"rate": [0.1, 1.5]}}),
     "grid point 2 (noise.rate=1.5 train.seed=0): noise.rate must lie"),
    (lambda r: r["grid"].update({"noise": {"rate": [0.1, 0.1]}}), "resolve to the same config"),
    (lambda r: r["grid"].update({"run": {"name": ["a", "b"]}}), "grid.run.name can't be swept"),
    (lambda r: r.update(zip=[{"train": {"lr": [1e-3, 1e-2], "seed": [0]}}]), "zip[0]: zipped lists must have equal"),
    (lambda r: r.update(zip={"noise": {"rate": [0.1]}}), "noise.rate is swept twice"),
    (lambda r: r["sweep"].update(executor="slurm"), "sweep.executor must be one of"),
    (lambda r: r["sweep"].update(gpus_per_run=1.5), "sweep.gpus_per_run"),
    (lambda r: r["sweep"].update(wokers=2), "unknown key sweep.wokers"),
    (lambda r: r.update(run={"name": "x"}), "run.name can't be set in a sweep"),
])
def test_grid_errors_name_the_field(tmp_path, change, needle):
    raw = tiny_raw(tmp_path)
    change(raw)
    with pytest.raises(ConfigError) as err:
        sweep_from_dict(raw)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


# -- running ----------------------------------------------------------------------------------
class Stop(KeyboardInterrupt):
    pass


def _values(sweep_dir, run_id) -> np.ndarray:
    m = RunStore(run_dir(sweep_dir, run_id)).metrics()
    return m.sort_values(["epoch", "probe", "subset", "metric"], kind="stable")["value"].to_numpy()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A 4-run sweep killed in its third run and restarted (sequential, in this process)."""
    tmp = tmp_path_factory.mktemp("ref")
    spec = sweep_from_dict(tiny_raw(tmp))
    real = runner_mod.run_experiment
    victim = spec.points[2].id
    seen: dict[str, list[int]] = {}

    def killing(cfg, on_epoch=None, prepared=None):
        def hook(report):
            seen.setdefault(cfg.run.name, []).append(report.epoch)
            if cfg.run.name == victim and report.epoch == 2 and not restarted:
                raise Stop
        return real(cfg, on_epoch=hook, prepared=prepared)

    runner_mod.run_experiment = killing
    try:
        restarted = False
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec, LocalExecutor(1))
        states = {p.id: RunStore(run_dir(spec.directory, p.id)).status()["state"] for p in spec.points}
        seen_first = copy.deepcopy(seen)
        seen.clear()
        restarted = True
        result = run_sweep(spec, LocalExecutor(1))
    finally:
        runner_mod.run_experiment = real
    return spec, states, seen_first, seen, result


def test_killed_sweep_restarts_only_what_is_missing(reference):
    spec, states, seen_first, seen, result = reference
    ids = [p.id for p in spec.points]
    assert [states[i] for i in ids] == ["complete", "complete", "interrupted", "missing"]
    assert seen_first[ids[2]] == [0, 1, 2]
    assert sorted(result.ids("skipped")) == sorted(ids[:2])
    assert sorted(result.executed) == sorted(ids[2:])
    assert set(seen) == set(ids[2:])
    assert seen[ids[2]] == [3]  # resumed after the last finished epoch (2), not from scratch
    assert seen[ids[3]] == [0, 1, 2, 3]
    table = sweep_table(spec.directory)
    assert list(table["state"]) == ["complete"] * 4
    manifest = json.loads((spec.directory / "sweep.json").read_text())
    assert [r["id"] for r in manifest["runs"]] == ids and manifest["keys"] == ["noise.rate", "train.seed"]
    assert manifest["invocations"][-1]["executed"] == 2


def test_process_pool_maps_and_survives_a_dying_worker():
    import math
    import os

    ex = LocalExecutor(2, start_method="spawn")
    got = dict(ex.map(math.sqrt, [1.0, 4.0, 9.0], failure=lambda t, e: -1.0))
    assert got == {1.0: 1.0, 4.0: 2.0, 9.0: 3.0}
    # a worker that dies (as on a segfault or the OOM killer) becomes a recorded failure
    out = sorted(LocalExecutor(2).map(os._exit, [3, 4], failure=lambda t, e: type(e).__name__))  # fork server
    assert out == [(3, "BrokenProcessPool"), (4, "BrokenProcessPool")]


def test_workers_inherit_their_thread_share(monkeypatch):
    import os

    from noisescope.sweep.executors import thread_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # the user's choice wins
    with thread_env(1):
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "3"


def test_local_processes_give_identical_metrics(reference, tmp_path):
    spec, *_ = reference
    other = sweep_from_dict(tiny_raw(tmp_path, threads_per_run=1))
    result = run_sweep(other, LocalExecutor(2))
    assert sorted(result.ids("complete")) == sorted(p.id for p in spec.points)
    for p in spec.points:  # the interrupted-and-resumed reference equals uninterrupted runs
        np.testing.assert_array_equal(_values(other.directory, p.id), _values(spec.directory, p.id))


@pytest.mark.slow  # starting Ray takes 10-50 s here
def test_ray_executor_identical_metrics(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "180")  # a loaded machine starts Ray slowly
    ray = pytest.importorskip("ray")
    from noisescope.sweep import RayExecutor

    spec, *_ = reference
    other = sweep_from_dict(tiny_raw(tmp_path, executor="ray"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(other, RayExecutor(cpus_per_run=1))
    finally:
        ray.shutdown()
    assert sorted(result.ids("complete")) == sorted(p.id for p in spec.points), result.outcomes
    for p in spec.points:
        np.testing.assert_array_equal(_values(other.directory, p.id), _values(spec.directory, p.id))


def test_failing_run_is_recorded_and_the_rest_finish(tmp_path):
    # n_train = 2 < num_classes: the data loader raises inside that run only
    raw = tiny_raw(tmp_path, grid={"data": {"options": {"n": [300, 2]}}, "train": {"seed": [0, 1]}})
    spec = sweep_from_dict(raw)
    result = run_sweep(spec, LocalExecutor(1))
    bad = [p.id for p in spec.points if p.params["data.options.n"] == 2]
    assert sorted(result.ids("failed")) == sorted(bad)
    assert len(result.ids("complete")) == 2
    for i in bad:
        status = RunStore(run_dir(spec.directory, i)).status()
        assert status["state"] == "failed"
        assert "n" in status["error"] and "Traceback (most recent call last)" in status["traceback"]
    table = sweep_table(spec.directory).set_index("run")
    assert (table.loc[bad, "state"] == "failed").all()
    df = load_sweep(spec.directory)
    assert set(df["run"]) == set(result.ids("complete"))
    # again: failed runs are retried (and fail again), complete ones skipped; or not retried at all
    again = run_sweep(spec, LocalExecutor(1))
    assert sorted(again.ids("failed")) == sorted(bad) and len(again.ids("skipped")) == 2
    spec.settings.retry_failed = False
    assert len(run_sweep(spec, LocalExecutor(1)).ids("skipped")) == 4
    # the status table at 80 columns: each failed run's error in words below the table
    from width80 import assert_fits

    out = assert_fits(["sweeps", str(spec.directory)])
    for i in bad:
        line = next(line for line in out.splitlines() if line.startswith(f"{i} failed: "))
        assert len(line) > len(f"{i} failed: ") and "Traceback" not in line
    assert out.count(" failed ") == 2 and out.count(" done ") == 2


def test_load_sweep_table(reference):
    spec, *_ = reference
    df = load_sweep(spec.directory)
    assert list(df.columns[:3]) == ["run", "noise.rate", "train.seed"]
    assert list(df.columns[3:]) == ["epoch", "probe", "tap", "subset", "metric", "index", "value"]
    for p in spec.points:
        sub = df[df["run"] == p.id]
        assert (sub["noise.rate"] == p.params["noise.rate"]).all()
        own = RunStore(run_dir(spec.directory, p.id)).metrics()
        np.testing.assert_array_equal(sub["value"].to_numpy(), own["value"].to_numpy())
    # one groupby answers "final clean test accuracy per noise rate, over seeds"
    test = df[(df["metric"] == "acc") & (df["subset"] == "test") & (df["epoch"] == 3)]
    assert test.groupby("noise.rate")["value"].count().tolist() == [2, 2]
    with pytest.raises(FileNotFoundError, match="not a noisescope sweep"):
        load_sweep(spec.directory / "runs")


def test_moved_sweep_resumes(reference, tmp_path):
    import shutil

    spec, *_ = reference
    moved = tmp_path / "moved"
    shutil.copytree(spec.directory, moved / "s")
    raw = tiny_raw(moved)
    target = sweep_from_dict(raw)
    victim = target.points[0].id
    store = RunStore(run_dir(target.directory, victim))
    store.set_status("running", 2)  # as if killed after epoch 2
    result = run_sweep(target, LocalExecutor(1))
    assert result.executed == [victim] and result.ids("complete") == [victim]
    np.testing.assert_array_equal(_values(target.directory, victim), _values(spec.directory, victim))


# -- command line -------------------------------------------------------------------------------
def _toml(raw: dict) -> str:
    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    out = []
    for section, table in raw.items():
        out.append(f"[{section}]")
        out += [f"{k} = {val(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


def test_cli_sweep_and_sweeps(tmp_path):
    from typer.testing import CliRunner
    from width80 import assert_fits

    from noisescope.cli import app

    raw = tiny_raw(tmp_path, grid={"noise": {"rate": [0.1, 0.3]}, "model.options.widths": [[32], [24, 24]]})
    raw["train"]["epochs"] = 1
    path = tmp_path / "grid.toml"
    path.write_text(_toml(raw))
    cli = CliRunner()
    # every table at 80 columns: nothing too wide, no word or number split or cut
    out = assert_fits(["sweep", str(path), "--dry-run"])
    assert "4 runs" in out and out.count("pending") == 4 and "rate = noise.rate" in out
    res = cli.invoke(app, ["sweep", str(path), "--quiet"])  # runs them
    assert res.exit_code == 0, res.output
    out = assert_fits(["sweep", str(path), "--quiet"])  # finds them complete: the same table
    assert sweep_table(tmp_path / "s")["state"].tolist() == ["complete"] * 4
    assert out.count(" done ") == 4 and "complete" not in out and "False" not in out and "True" not in out
    out = assert_fits(["sweeps", str(tmp_path)])
    assert "noise.rate (2) x model.options.widths (2)" in " ".join(out.split())
    out = assert_fits(["sweeps", str(tmp_path / "s")])
    assert out.count(" done ") == 4 and "[24,24]" in out
    dd = [line.split()[-1] for line in out.splitlines()
          if line.split()[:1] and all(c in "0123456789abcdef" for c in line.split()[0]) and len(line.split()[0]) == 10]
    assert dd == ["no"] * 4  # double descent as a word, never "False"
    out = assert_fits(["runs", str(tmp_path / "s" / "runs")])  # `noisescope runs` lists the same runs
    assert out.count(" done ") == 4 and out.count("symmetric 0.1") == 2 and "False" not in out
    res = cli.invoke(app, ["sweep", str(path), "--set", "grid.noise.rate=[0.1, 2.0]"])
    assert res.exit_code == 2 and "noise.rate must lie in [0, 1)" in res.output
    res = cli.invoke(app, ["sweep", str(path), "--executor", "dask"])
    assert res.exit_code == 2 and "sweep.executor must be one of" in res.output


def test_runs_table_splits_in_two_when_one_does_not_fit():
    from noisescope.cli.sweep import runs_tables, table_width

    keys = [f"model.options.k{i}" for i in range(6)]
    table = pd.DataFrame([{"run": f"{i:010d}", **{k: 0.125 for k in keys}, "state": "complete", "epoch": 3,
                           "final_test_acc": 0.5, "early_stop_test_acc": 0.6, "final_noisy_train_obs_acc": 0.7,
                           "double_descent": np.bool_(False)} for i in range(2)])
    one = runs_tables(table, keys[:1], "t", 80)
    two = runs_tables(table, keys, "t", 80)
    assert len(one) == 1 and table_width(one[0]) <= 80
    assert len(two) == 2 and all(table_width(t) <= 80 for t in two)
    import io

    from rich.console import Console

    from noisescope.cli.common import cell

    con = Console(width=80, file=io.StringIO(), record=True)
    con.print(*two)
    text = con.export_text()
    assert "False" not in text and [line.split()[-1] for line in text.splitlines() if "done" in line] == ["no"] * 2
    assert cell(np.bool_(True)) == "yes" and cell(np.bool_(False)) == "no"


def test_a_run_preset_is_the_base_of_a_sweep():
    from noisescope.sweep import load_sweep_spec

    # fmnist_demo sets run.root and run.name for its one run; as a sweep's base they are dropped
    spec = load_sweep_spec("fmnist_demo", ["grid.train.seed=[0,1,2]"])
    assert len(spec.points) == 3 and spec.settings.name == "fmnist_demo"
    assert [p.params["train.seed"] for p in spec.points] == [0, 1, 2]
    with pytest.raises(ConfigError, match="run.root can't be set in a sweep"):
        load_sweep_spec("fmnist_demo", ["grid.train.seed=[0,1]", "run.root='elsewhere'"])


def test_ray_missing_error(monkeypatch):
    import builtins

    from noisescope.sweep.executors import make_executor

    real_import = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RuntimeError, match=r"pip install 'noisescope\[ray\]'"):
        make_executor("ray")


def test_preset_expands():
    from noisescope.sweep import load_sweep_spec

    spec = load_sweep_spec("sweep_demo")
    assert len(spec.points) == 6 and spec.settings.name == "sweep_demo"
    assert isinstance(pd.DataFrame([p.params for p in spec.points]), pd.DataFrame)


def test_unschedulable_ray_resources_are_refused():
    from noisescope.sweep.executors import ResourceError, check_resources

    check_resources({"CPU": 2.0, "GPU": 1.0}, 1, 0.25)
    with pytest.raises(ResourceError, match="gpus_per_run = 0.25 but the Ray cluster has 0 GPUs"):
        check_resources({"CPU": 2.0}, 1, 0.25)
    with pytest.raises(ResourceError, match="cpus_per_run = 4 but the Ray cluster has 2 CPUs"):
        check_resources({"CPU": 2.0}, 4, 0)


def test_the_runs_table_says_what_its_test_accuracies_rest_on():
    from noisescope.cli.sweep import interval_note
    from noisescope.evidence.intervals import Accuracy

    table = pd.DataFrame({"final_test_acc": [0.5, 0.9], "early_stop_test_acc": [0.6, np.nan],
                          "n_test": [100, 100]})
    widest = (Accuracy.from_value(0.5, 100).high - Accuracy.from_value(0.5, 100).low) / 2
    assert interval_note(table) == (f"test accuracies on n = 100 clean test samples per run; "
                                    f"95% Wilson half-width at most {widest:.3f}")
    assert "n = 100-2,000" in interval_note(table.assign(n_test=[100, 2000]))
    assert interval_note(table.drop(columns="n_test")) is None
