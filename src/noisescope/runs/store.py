"""The run store: one directory per run, every file written atomically.

Layout::

    RUN/
      config.json       the fully resolved config (Config.to_dict())
      env.json          python / package versions, git commit, device, threads, start time
      noise.json        the realized noise: model, params, rate, C x C transition counts
      status.json       {"state": "running"|"complete"|"failed", "epoch": last finished epoch}
      metrics.parquet   the tidy table of noisescope/metrics.py (epoch, probe, tap, subset, metric,
                        index, value); while a run trains, each epoch's rows go to a small
                        file in metrics.parts/ (no rewrite of the whole table), merged into
                        metrics.parquet when the run completes (RunStore.compact)
      summary.json      headline numbers written when the run completes
      records/NAME/epoch_XXXXXX.parquet
                        per-sample records of a probed epoch (e.g. ``margins``: epoch, index,
                        margin of every training sample), one file per epoch, rewritten whole
                        when an epoch is recomputed
      checkpoints/
        epoch_0000.safetensors   model weights at chosen epochs (state_dict)
        resume.safetensors       model + optimizer state after the last finished epoch, and
                                 the probes' cross-epoch state (JSON in its metadata)
      figures/          PNGs

A run killed at any moment resumes from ``resume.safetensors`` and loses at most the epoch
in progress.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from noisescope.io import CorruptFileError, atomic_write, read_json, write_json
from noisescope.metrics import DTYPES, KEY, Row, empty_frame, rows_to_frame
from noisescope.version import __version__


def git_commit(start: Path | None = None) -> str:
    """The commit of the git checkout holding ``start`` (default: this package), or 'unknown'."""
    start = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=start, capture_output=True, text=True, timeout=5,
        )
        if commit != "unknown" and dirty.stdout.strip():
            commit += "-dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Versions, git commit and device of this process (for env.json)."""
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    device = torch.device(device)
    info: dict[str, Any] = {
        "noisescope": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": pkg("numpy"),
        "scikit-learn": pkg("scikit-learn"),
        "pandas": pkg("pandas"),
        "safetensors": pkg("safetensors"),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class RunStore:
    """Reads and writes one run directory (see the module docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- plain files -------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def figure_dir(self) -> Path:
        return self.path / "figures"

    def exists(self) -> bool:
        return (self.path / "config.json").exists()

    def write_json(self, name: str, obj: Any) -> None:
        write_json(self.path / name, obj)

    def read_json(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        return read_json(p) if p.exists() else default

    def status(self) -> dict[str, Any]:
        return self.read_json("status.json", {"state": "missing", "epoch": -1})

    def set_status(self, state: str, epoch: int, **extra: Any) -> None:
        self.write_json("status.json", {"state": state, "epoch": int(epoch), **extra})

    # -- metrics -----------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.parquet"

    @property
    def parts_dir(self) -> Path:
        return self.path / "metrics.parts"

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("*.parquet"))

    def has_metrics(self) -> bool:
        return self.metrics_path.exists() or bool(self._parts())

    def metrics(self) -> pd.DataFrame:
        """The whole table: ``metrics.parquet`` plus the parts appended since its last compaction.

        Rows are unique on (epoch, probe, tap, subset, metric, index); if a kill left a part
        that the compacted file already holds, the later copy wins.
        """
        files = ([self.metrics_path] if self.metrics_path.exists() else []) + self._parts()
        if not files:
            return empty_frame()
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).astype(DTYPES)
        if len(files) > 1:
            frame = frame.drop_duplicates(KEY, keep="last").reset_index(drop=True)
        return frame

    def append_metrics(self, rows: list[Row]) -> None:
        """Add rows as a new part file: O(rows), whatever the table's size (the training loop
        appends once per epoch). :meth:`compact` merges the parts into ``metrics.parquet``."""
        if not rows:
            return
        frame = rows_to_frame(rows)
        name = f"{len(self._parts()):08d}.parquet"
        atomic_write(self.parts_dir / name, lambda p: frame.to_parquet(p, index=False))

    def compact(self, frame: pd.DataFrame | None = None) -> None:
        """Write the table (default: the current one) as one ``metrics.parquet`` and drop the parts."""
        frame = self.metrics() if frame is None else frame
        parts = self._parts()
        atomic_write(self.metrics_path, lambda p: frame.to_parquet(p, index=False))
        for part in parts:
            part.unlink(missing_ok=True)
        for tmp in self.parts_dir.glob(".*.tmp") if self.parts_dir.is_dir() else []:
            tmp.unlink(missing_ok=True)  # left by a killed writer
        if self.parts_dir.is_dir() and not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()

    def replace_metrics(self, probes: str | list[str], epochs: list[int], rows: list[Row]) -> None:
        """Replace the rows of ``probes`` at ``epochs`` by ``rows`` (a replay from checkpoints)."""
        probes = [probes] if isinstance(probes, str) else list(probes)
        old = self.metrics()
        keep = old[~(old["probe"].isin(probes) & old["epoch"].isin(list(epochs)))]
        self.compact(pd.concat([keep, rows_to_frame(rows)], ignore_index=True).astype(DTYPES))

    def truncate_metrics(self, after_epoch: int) -> None:
        """Drop rows with epoch > after_epoch (used when resuming)."""
        frame = self.metrics()
        if len(frame) and int(frame["epoch"].max()) > after_epoch:
            self.compact(frame[frame["epoch"] <= after_epoch].reset_index(drop=True))

    # -- per-sample records -------------------------------------------------------------
    @property
    def records_dir(self) -> Path:
        return self.path / "records"

    def write_record(self, name: str, epoch: int, frame: pd.DataFrame) -> None:
        """One probed epoch's per-sample table ``name`` (rewritten whole if it exists)."""
        atomic_write(self.records_dir / name / f"epoch_{epoch:06d}.parquet",
                     lambda p: frame.to_parquet(p, index=False))

    def record_names(self) -> list[str]:
        return sorted(p.name for p in self.records_dir.iterdir() if p.is_dir()) if self.records_dir.is_dir() else []

    def record(self, name: str) -> pd.DataFrame:
        """Every epoch of the per-sample table ``name``, in epoch order (empty if none)."""
        files = sorted((self.records_dir / name).glob("epoch_*.parquet"))
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def truncate_records(self, after_epoch: int) -> None:
        """Drop per-sample tables of epochs > after_epoch (used when resuming)."""
        for name in self.record_names():
            for f in (self.records_dir / name).glob("epoch_*.parquet"):
                if int(f.stem.split("_")[1]) > after_epoch:
                    f.unlink(missing_ok=True)

    # -- checkpoints -------------------------------------------------------------------
    def save_weights(self, model: torch.nn.Module, epoch: int) -> Path:
        path = self.checkpoint_dir / f"epoch_{epoch:04d}.safetensors"
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        atomic_write(path, lambda p: save_file(state, str(p), metadata={"epoch": str(epoch)}))
        return path

    def delete_weights(self, epoch: int) -> None:
        (self.checkpoint_dir / f"epoch_{epoch:04d}.safetensors").unlink(missing_ok=True)

    def checkpoints(self) -> dict[int, Path]:
        """Epoch -> weights file, sorted by epoch."""
        found = {
            int(p.stem.split("_")[1]): p for p in self.checkpoint_dir.glob("epoch_*.safetensors")
        }
        return dict(sorted(found.items()))

    def load_weights(self, model: torch.nn.Module, epoch: int) -> torch.nn.Module:
        ckpts = self.checkpoints()
        if epoch not in ckpts:
            raise FileNotFoundError(
                f"{self.path} has no checkpoint for epoch {epoch}; saved epochs: {list(ckpts)}"
            )
        path = ckpts[epoch]
        try:
            model.load_state_dict(load_file(str(path)))
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise unreadable_checkpoint(path, exc, "restore it from a copy, or train the run again under "
                                                   "another run.name") from None
        return model

    def save_resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    probe_state: dict | None = None) -> None:
        """Model + optimizer state after ``epoch`` finished, and the probes' cross-epoch state
        (JSON-serialisable, see ``ProbeContext.state``), as one safetensors file."""
        tensors, meta = flatten_state(model, optimizer)
        meta["epoch"] = str(epoch)
        meta["probe_state"] = json.dumps(probe_state or {})
        path = self.checkpoint_dir / "resume.safetensors"
        atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))

    def load_resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, dict]:
        """Restore the resume state; returns (the epoch it was saved after, the probes'
        cross-epoch state), or (-1, {}) if there is none."""
        path = self.checkpoint_dir / "resume.safetensors"
        if not path.exists():
            return -1, {}
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
            tensors = load_file(str(path))
            unflatten_state(model, optimizer, tensors, meta)
            return int(meta["epoch"]), json.loads(meta.get("probe_state", "{}"))
        except (SafetensorError, OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise unreadable_checkpoint(path, exc, "delete it to restart the run from epoch 0") from None

    def remove_stale_temporaries(self) -> int:
        """Delete ``.*.tmp`` files a killed writer left in the run directory (call only while
        holding the run's lock); returns how many were removed."""
        removed = 0
        for tmp in self.path.rglob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed


def unreadable_checkpoint(path: Path, exc: BaseException, fix: str) -> CorruptFileError:
    """The one-line error for a checkpoint that can't be loaded (``SafetensorError: header too
    large``, a truncated file, tensors of another model)."""
    reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CorruptFileError(f"checkpoint {path} is unreadable ({reason[:120]}); {fix}")


def flatten_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Model and optimizer state as flat tensors + string metadata (safetensors-compatible)."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in opt["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val) and val.dim() > 0:
                tensors[f"optim.{pid}.{name}"] = val.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[name] = float(val)
    meta = {"param_groups": json.dumps(opt["param_groups"]), "scalars": json.dumps(scalars)}
    return tensors, meta


def unflatten_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, str],
) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = val
    for pid, vals in json.loads(meta["scalars"]).items():
        for name, v in vals.items():
            state.setdefault(int(pid), {})[name] = torch.tensor(v)
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
