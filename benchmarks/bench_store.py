"""Cost of writing a run's metrics during training: per-epoch parts (what RunStore does) against
rewriting the whole table every epoch (what it did before), for a probe that writes ~7,300 rows
per epoch (the demo's three probes on an MLP 3x512).

    python benchmarks/bench_store.py [--epochs 100] [--rows 7300]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

from noisescope.io import atomic_write
from noisescope.metrics import Row, rows_to_frame
from noisescope.runs.store import RunStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--rows", type=int, default=7300)
    args = ap.parse_args()
    per_epoch = [[Row(e, "spectral", "eigval", 1.0 / (i + 1), "train", "layer3", i) for i in range(args.rows)]
                 for e in range(args.epochs)]
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        t0 = time.perf_counter()
        for rows in per_epoch:
            store.append_metrics(rows)
        t_parts = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.compact()
        t_compact = time.perf_counter() - t0

        path = store.path / "rewrite.parquet"
        table = rows_to_frame([])
        t0 = time.perf_counter()
        for rows in per_epoch:  # the old way: read the table, add the epoch, write it all again
            table = pd.concat([pd.read_parquet(path) if path.exists() else table, rows_to_frame(rows)],
                              ignore_index=True)
            atomic_write(path, lambda p, t=table: t.to_parquet(p, index=False))
        t_rewrite = time.perf_counter() - t0
    n = args.epochs
    print(f"{n} epochs x {args.rows} rows")
    print(f"per-epoch parts:        {t_parts:.2f} s ({t_parts / n * 1e3:.1f} ms/epoch) + compaction {t_compact:.2f} s")
    print(f"whole-table rewrite:    {t_rewrite:.2f} s (last epoch alone grows with the table)")
    print(f"ratio rewrite / parts:  {t_rewrite / (t_parts + t_compact):.2f}x")


if __name__ == "__main__":
    main()
