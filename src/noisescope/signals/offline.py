"""Internal signals of a finished run, recomputed from its saved checkpoints.

Useful when a run was trained without the ``signals`` probe, or to look at other taps or
options afterwards. The rows go to ``<run>/signals.parquet`` (same schema as
``metrics.parquet``), never into the run's own metrics.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from noisescope.probes.base import ProbeContext, rows_to_frame
from noisescope.signals.probe import SignalsProbe
from noisescope.store import atomic_write

OUTPUT = "signals.parquet"


def recompute(run_path: str | Path, epochs: list[int] | None = None,
              batch_size: int = 2048, **options: object) -> pd.DataFrame:
    """Run :class:`SignalsProbe` on each checkpoint of a run (in epoch order, so neuron
    identity is tracked across them) and save the rows to ``<run>/signals.parquet``.

    Args:
        run_path: a run directory.
        epochs: checkpoint epochs to use (None = all saved).
        batch_size: evaluation batch size.
        **options: :class:`SignalsProbe` options; default: the run config's
            ``probe.options.signals``.

    Returns:
        The tidy rows as a DataFrame.
    """
    from noisescope.run import load_run

    run = load_run(run_path)
    chosen = run.checkpoint_epochs(epochs)
    opts = dict(run.config.probe.options.get("signals", {}))
    opts.update(options)
    probe = SignalsProbe(**opts)
    state: dict = {}
    rows = []
    for epoch in chosen:
        model = run.model(epoch)
        ctx = ProbeContext(epoch=epoch, batch_size=batch_size, state=state)
        rows.extend(probe(model, run.data, ctx))
    frame = rows_to_frame(rows)
    atomic_write(Path(run_path) / OUTPUT, lambda p: frame.to_parquet(p, index=False))
    return frame


def load_signals(run_path: str | Path) -> pd.DataFrame:
    """The signals rows of a run: recomputed ones if present, else those in its metrics."""
    path = Path(run_path) / OUTPUT
    if path.exists():
        from noisescope.probes.base import DTYPES

        return pd.read_parquet(path).astype(DTYPES)
    from noisescope.run import load_run

    metrics = load_run(run_path).metrics
    return metrics[metrics["probe"] == "signals"].reset_index(drop=True)
