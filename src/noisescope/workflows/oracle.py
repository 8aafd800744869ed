"""The clean-label oracle of a run: the same config retrained on the true labels of the same
samples (``noise.model = \"none\"``), cached as the sub-run ``RUN/oracle`` (the upper bound of
every repair)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from noisescope.io import write_json
from noisescope.runs.run import Run
from noisescope.workflows.repair_export import ORACLE_DIR


def oracle_config(run: Run, epochs: int | None = None) -> dict:
    """The run's config retrained on clean labels: ``noise.model = "none"`` (the same samples and
    split: the split never depends on the noise), the dynamics probe only (early stopping), kept
    as the sub-run ``RUN/oracle``; ``epochs`` shortens its training (default: the run's)."""
    d = run.config.to_dict()
    if epochs is not None:
        d["train"] = {**d["train"], "epochs": int(epochs)}
    d["noise"] = {"model": "none", "rate": 0.0, "seed": d["noise"]["seed"], "options": {}}
    d["probe"] = {**d["probe"], "probes": ["dynamics"], "options": {}}
    d["run"] = {**d["run"], "root": str(run.path), "name": ORACLE_DIR, "checkpoint_every": 0, "checkpoint_epochs": []}
    return d


def _oracle_key(cfg: dict) -> str:
    ident = {**cfg, "run": {k: v for k, v in cfg["run"].items() if k not in ("root", "name")}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def _complete(path: Path) -> bool:
    try:
        return json.loads((path / "status.json").read_text()).get("state") == "complete"
    except (OSError, ValueError):
        return False


def ensure_oracle(run: Run, train: bool = False, cache: str | Path | None = None,
                  progress: Callable[[str], None] | None = None,
                  epochs: int | None = None) -> tuple[Path | None, float | None]:
    """(``RUN/oracle`` when it is complete, its training seconds when known).

    A complete sub-run is reused. With ``cache``, a complete oracle of the same clean config
    (e.g. trained for another noise model or rate of the same samples and seeds) under
    ``cache/<key>`` is copied in; a newly trained one is copied there. ``train=False`` never trains.
    ``epochs``: train a new oracle for this many epochs instead of the run's (a reduced-cost
    oracle, e.g. the demo's; the cache key includes it).
    """
    from noisescope.config import from_dict
    from noisescope.runs.lifecycle import run_experiment

    path = run.path / ORACLE_DIR
    timing = run.path / "oracle.json"
    cfg = oracle_config(run, epochs)
    key = _oracle_key(cfg)
    seconds = None
    if timing.is_file():
        seconds = json.loads(timing.read_text()).get("seconds")
    if _complete(path):
        return path, seconds
    cached = Path(cache) / key if cache else None
    if cached is not None and _complete(cached):
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(cached, path)
        side = cached.parent / f"{key}.json"
        info = json.loads(side.read_text()) if side.is_file() else {}
        write_json(timing, {"seconds": info.get("seconds"), "key": key, "copied_from": str(cached)})
        return path, info.get("seconds")
    if not train:
        return None, None
    if progress:
        progress("training the clean-label oracle")
    t0 = time.perf_counter()
    run_experiment(from_dict(cfg))
    seconds = time.perf_counter() - t0
    write_json(timing, {"seconds": seconds, "key": key})
    if cached is not None:
        if cached.exists():
            shutil.rmtree(cached)
        shutil.copytree(path, cached)
        write_json(cached.parent / f"{key}.json", {"seconds": seconds, "source": str(path)})
    return path, seconds


# --------------------------------------------------------------------------- the report
