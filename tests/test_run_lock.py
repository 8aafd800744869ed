"""One writer per run: a second process on a run directory gets one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from noisescope.cli import app

HOLD = """
import sys, time
from noisescope.runlock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_on_a_run_directory_is_refused_with_one_line_and_nothing_written(tmp_path: Path):
    run_dir = tmp_path / "runs" / "busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = ["run", "synthetic_demo", "--set", f"run.root={tmp_path / 'runs'}", "--set", "run.name=busy",
                "--set", "train.epochs=1", "--set", "data.options={n=300, dim=20, k_star=3, num_classes=3}",
                "--set", "model.options={widths=[32]}", "--quiet"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        error = [ln for ln in lines if ln.startswith("error:")]
        assert len(error) == 1 and f"pid {holder.pid}" in error[0] and "in use" in error[0]
        assert not (run_dir / "config.json").exists() and not (run_dir / "status.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: the next writer takes the lock over and runs
    time.sleep(0.1)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (run_dir / "config.json").exists() and not (run_dir / ".lock").exists()


def test_a_run_directory_moved_to_another_root_is_the_same_run(tmp_path: Path):
    import shutil

    from noisescope.config import load_config
    from noisescope.runs.lifecycle import run_experiment
    from noisescope.runs.run import load_run

    overrides = ["data.options={n=200, dim=10, k_star=2, num_classes=2}", "model.options={widths=[16]}",
                 "train.epochs=1", "run.name=moved"]
    first = run_experiment(load_config(None, [*overrides, f"run.root={tmp_path / 'a'}"]))
    before = load_run(first).metrics
    (tmp_path / "b").mkdir()
    shutil.move(str(first), str(tmp_path / "b" / "moved"))
    # the same config except where it lives: recognised as this run (complete), not refused
    path = run_experiment(load_config(None, [*overrides, f"run.root={tmp_path / 'b'}"]))
    assert path == tmp_path / "b" / "moved"
    assert load_run(path).status["state"] == "complete"
    assert load_run(path).metrics.equals(before)
