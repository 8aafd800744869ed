"""Record the golden metrics tables (run once, by hand, when numbers are meant to change)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from configs import GOLDEN  # noqa: E402

from noisescope import load_config, load_run, run_experiment  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    for name, overrides in GOLDEN.items():
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(None, [*overrides, f"run.root={tmp}", f"run.name={name}"])
            path = run_experiment(cfg)
            m = load_run(path).metrics
            m.to_parquet(Path(__file__).parent / f"{name}.parquet", index=False)
            print(name, len(m), "rows")


if __name__ == "__main__":
    main()
