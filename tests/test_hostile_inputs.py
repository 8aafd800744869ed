"""Hostile inputs (issue 17, section 6): each ends in one line naming the field or file and the
fix, exit status 2, and nothing written or lost; a diverged run stops and says so; a run
interrupted by a full / read-only disk resumes exactly afterwards; stray temporary files of a
killed writer are removed at the next start."""

from __future__ import annotations

import errno
import hashlib
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import noisescope.io as nio
from noisescope import load_config, load_run, run_experiment
from noisescope.cli import app
from noisescope.io import CorruptFileError

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

SMALL = [
    "data.name=synthetic",
    "data.options={n=240, n_test=120, dim=8, k_star=2, num_classes=3}",
    "model.options={widths=[16]}",
    "train.epochs=2",
    "train.batch_size=64",
    'probe.probes=["dynamics"]',
    "run.name=r",
]


def cli(*args: str):
    return runner.invoke(app, list(args))


def run_cli(root: Path, *extra: str, config: str = "synthetic_demo"):
    args = ["run", config, "--quiet"]
    for s in [*SMALL, f"run.root='{root}'", *extra]:
        args += ["--set", s]
    return cli(*args)


def one_line_error(result, *words: str) -> str:
    """The single ``error:`` line of a refused command (exit 2, no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


def snapshot(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (symlinks as their target) under ``path``."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(path))] = "-> " + os.readlink(p)
        elif p.is_file() and p.name != ".lock":
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    """A complete 2-epoch run (checkpoints at epochs 0 and 2, resume state)."""
    root = tmp_path_factory.mktemp("hostile")
    return run_experiment(load_config("synthetic_demo", [*SMALL, f"run.root='{root}'"]))


def copy_run(done_run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "runs" / "r"
    shutil.copytree(done_run, dest)
    return dest


# -- where the run goes -----------------------------------------------------------------------
def test_run_root_pointing_at_a_file_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    line = one_line_error(run_cli(afile), "run.root", "is a file, not a directory")
    assert "set run.root to a directory" in line
    assert afile.read_text() == "keep me\n" and sorted(tmp_path.iterdir()) == [afile]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_run_root_under_proc_is_refused():
    one_line_error(run_cli(Path("/proc/noisescope-test")), "run.root", "kernel file system")
    assert not Path("/proc/noisescope-test").exists()


# -- sizes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "field"), [
    ("model.options={widths=[1099511627776]}", "model.options"),
    ("data.options={n=100000000000, n_test=10, dim=8, k_star=2, num_classes=3}", "data.options"),
])
def test_a_model_or_data_larger_than_memory_is_refused_before_anything_is_written(tmp_path, override, field):
    line = one_line_error(run_cli(tmp_path / "runs", override), field, "GiB", "memory")
    assert "lower" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_config_file_is_refused():
    one_line_error(cli("run", "/dev/zero"), "/dev/zero", "MiB", "not a config file")


# -- damaged files ----------------------------------------------------------------------------
def _corrupt(path: Path) -> None:
    path.write_bytes(b"\xff" * 7 + b"\x7f" + b"junk")  # header length 2^63: "header too large"


@pytest.mark.parametrize("command", [["probe"], ["truncate"], ["signals", "--recompute"]])
def test_a_corrupt_checkpoint_is_named_by_every_command_that_loads_it(done_run, tmp_path, command):
    run = copy_run(done_run, tmp_path)
    _corrupt(run / "checkpoints" / "epoch_0002.safetensors")
    before = snapshot(run)
    one_line_error(cli(*command, str(run)), "epoch_0002.safetensors", "unreadable", "header too large")
    assert snapshot(run) == before


def test_a_corrupt_checkpoint_in_load_run_model(done_run, tmp_path):
    run = copy_run(done_run, tmp_path)
    _corrupt(run / "checkpoints" / "epoch_0002.safetensors")
    with pytest.raises(CorruptFileError, match=r"epoch_0002\.safetensors is unreadable .*restore it"):
        load_run(run).model()
    assert isinstance(load_run(run).model(0), torch.nn.Module)  # the other checkpoints still load


def test_a_corrupt_resume_state_is_named_and_nothing_is_lost(done_run, tmp_path):
    run = copy_run(done_run, tmp_path)
    nio.write_json(run / "status.json", {"state": "running", "epoch": 1})
    _corrupt(run / "checkpoints" / "resume.safetensors")
    before = {k: v for k, v in snapshot(run).items() if k != "status.json"}
    one_line_error(run_cli(tmp_path / "runs"), "resume.safetensors", "delete it to restart")
    assert {k: v for k, v in snapshot(run).items() if k != "status.json"} == before
    assert nio.read_json(run / "status.json")["state"] == "failed"


def test_a_status_json_symlinked_to_a_text_file(done_run, tmp_path):
    run = copy_run(done_run, tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("not json\n")
    (run / "status.json").unlink()
    (run / "status.json").symlink_to(text)
    before = snapshot(run)
    one_line_error(run_cli(tmp_path / "runs"), "status.json", "not valid JSON")
    assert snapshot(run) == before and text.read_text() == "not json\n"


# -- divergence -------------------------------------------------------------------------------
def test_a_diverged_run_stops_with_one_line_and_its_status_says_so(tmp_path):
    result = run_cli(tmp_path / "runs", "train.lr=1e30", "train.epochs=4",
                     'probe.probes=["dynamics", "signals"]')
    line = one_line_error(result, "diverged at epoch", "train.lr")
    epoch = int(line.split("diverged at epoch ")[1].split(":")[0])
    status = nio.read_json(tmp_path / "runs" / "r" / "status.json")
    assert status["state"] == "failed" and status["diverged_at"] == epoch and status["epoch"] == epoch - 1
    assert "diverged at epoch" in status["error"]
    metrics = load_run(tmp_path / "runs" / "r").metrics
    assert metrics["epoch"].max() == epoch - 1  # nothing of the diverged epoch was stored


def test_the_held_out_r2_of_a_non_finite_network_is_nan_not_a_lapack_assert():
    from noisescope.signals.large_activation import heldout_r2

    z = torch.randn(20, 3)
    z[0, 0] = float("inf")
    assert math.isnan(heldout_r2(z, torch.randn(20), torch.arange(20) < 15))
    assert math.isfinite(heldout_r2(torch.randn(20, 3), torch.randn(20), torch.arange(20) < 15))


# -- the disk refuses a write mid-run ---------------------------------------------------------
class _RefusingOs:
    """``os`` for noisescope.io whose ``replace`` onto the ``nth`` resume state raises ``code``."""

    def __init__(self, code: int, nth: int) -> None:
        self.code, self.nth, self.seen = code, nth, 0

    def replace(self, src, dst):
        if Path(dst).name == "resume.safetensors":
            self.seen += 1
            if self.seen == self.nth:
                raise OSError(self.code, os.strerror(self.code), str(dst))
        return os.replace(src, dst)

    def __getattr__(self, name):
        return getattr(os, name)


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "the disk is full"),
    (errno.EFBIG, "too large"),
    (errno.EACCES, "permission denied"),
])
def test_a_refused_write_mid_run_is_one_line_and_the_run_resumes_exactly(done_run, tmp_path, monkeypatch,
                                                                           code, words):
    fake = _RefusingOs(code, nth=3)  # epochs 0 and 1 are stored; epoch 2's resume state is refused
    monkeypatch.setattr(nio, "os", fake)
    line = one_line_error(run_cli(tmp_path / "runs"), "resume.safetensors", words, "run the same command again")
    assert "[Errno" not in line
    monkeypatch.undo()
    run = tmp_path / "runs" / "r"
    assert not list(run.rglob(".*.tmp"))
    assert nio.read_json(run / "status.json")["epoch"] == 1  # the last epoch whose resume state was stored
    result = run_cli(tmp_path / "runs")
    assert result.exit_code == 0, result.output
    a = load_run(run).metrics.sort_values(["epoch", "probe", "tap", "subset", "metric", "index"])
    b = load_run(done_run).metrics.sort_values(["epoch", "probe", "tap", "subset", "metric", "index"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_a_library_error_wrapping_an_os_error_is_a_write_error(tmp_path):
    """safetensors reports a full disk as ``SafetensorError('... (os error 28)')``."""
    from safetensors import SafetensorError

    def write(p: Path) -> None:
        p.write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(nio.WriteError, match="the disk is full") as info:
        nio.atomic_write(tmp_path / "w.safetensors", write)
    assert info.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


# -- data that can't make a run ---------------------------------------------------------------
@pytest.mark.parametrize(("override", "words"), [
    ("data.options={n=6, n_test=50, dim=8, k_star=2, num_classes=2}", ("only 1 training samples",
                                                                       "data.val_fraction = 0.5")),
    ("data.val_fraction=0.999", ("training", "data.val_fraction = 0.999", "lower it")),
    ("data.options={n=240, n_test=0, dim=8, k_star=2, num_classes=3}", ("test split is empty",
                                                                        "data.options.n_test")),
])
def test_a_split_that_cannot_train_or_test_names_its_field(tmp_path, override, words):
    extra = ["data.val_fraction=0.5"] if "n=6," in override else []
    one_line_error(run_cli(tmp_path / "runs", *extra, override), *words)
    assert not (tmp_path / "runs").exists()


def test_a_directory_as_label_file_says_so(tmp_path):
    one_line_error(run_cli(tmp_path / "runs", "noise.model='file'", "noise.rate=0",
                           "noise.options={path='.'}"),
                   "is a directory", "noise.options.path")
    assert not (tmp_path / "runs").exists()


def test_checkpoint_epochs_beyond_the_run_are_refused(tmp_path):
    one_line_error(run_cli(tmp_path / "runs", "run.checkpoint_epochs=[100]"),
                   "run.checkpoint_epochs", "beyond train.epochs = 2")
    assert not (tmp_path / "runs").exists()


# -- a killed writer's leftovers --------------------------------------------------------------
def test_stray_temporaries_are_removed_at_the_next_start(done_run, tmp_path):
    fresh = tmp_path / "runs" / "r"
    fresh.mkdir(parents=True)
    for name in (".noise.json.abc123.tmp", ".config.json.def456.tmp"):
        (fresh / name).write_text("{")
    assert run_cli(tmp_path / "runs").exit_code == 0
    assert not list(fresh.rglob(".*.tmp")) and nio.read_json(fresh / "status.json")["state"] == "complete"
    done = copy_run(done_run, tmp_path / "b")
    (done / "figures").mkdir(exist_ok=True)
    (done / "figures" / ".dynamics.png.x1y2.tmp").write_bytes(b"\x89PNG")
    assert run_cli(tmp_path / "b" / "runs").exit_code == 0
    assert not list(done.rglob(".*.tmp"))


def test_the_console_script_turns_any_uncaught_user_error_into_one_line(done_run, tmp_path):
    """``noisescope runs`` reads every run's status.json; a damaged one is named, not a traceback."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / "noisescope"
    if not script.exists():
        pytest.skip("the noisescope console script is not installed next to this python")
    run = copy_run(done_run, tmp_path)
    (run / "status.json").write_text("garbage")
    out = subprocess.run([str(script), "runs", str(tmp_path / "runs")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 2, out.stderr
    err = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and "status.json is not valid JSON" in err[0], out.stderr
