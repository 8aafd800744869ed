"""Record the spectral probe's rows on a small fixed run (tests/spectral_fast_reference.csv).

Recorded with the float64 implementation of main b3e4eff (before the fast path of issue 20);
``tests/test_spectral_fast.py`` checks today's rows against it. Re-record only on purpose:
``.venv/bin/python tests/spectral_fast_record.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from spectral_data import spiked_noisy  # noqa: E402

from noisescope.metrics import rows_to_frame  # noqa: E402
from noisescope.models.mlp import build_mlp  # noqa: E402
from noisescope.probes import ProbeContext, make_probe  # noqa: E402

REFERENCE = HERE / "spectral_fast_reference.csv"


def fixed_run() -> tuple[object, object]:
    """A seeded spiked data set (D = 40, k* = 6, 40% noise) and an MLP 64-48 fitted by 40
    full-batch SGD steps in float64, then cast to float32 (so the weights agree across CPUs to
    ~1e-7; the first tap is rank-deficient: 64 units on 40 inputs)."""
    data = spiked_noisy(n=2000, n_val=600, n_test=600, dim=40, seed=3)
    torch.manual_seed(0)
    model = build_mlp((40,), 10, widths=[64, 48]).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = data.x_train.double()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model.head(model.blocks(x)), data.y_train).backward()
        opt.step()
    return data, model.float().eval()


def probe_rows(**options: object):
    """The spectral probe's rows (every tap, every d, segregation) as a data frame; ``options``
    go to the probe (e.g. ``eval_grid="all", gram="float64"``: the every-d float64 way)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data, model = fixed_run()
        rows = make_probe("spectral", **options)(model, data, ProbeContext(epoch=3, batch_size=512))
    finally:
        torch.set_num_threads(before)
    return rows_to_frame(rows)


if __name__ == "__main__":
    df = probe_rows()
    df.to_csv(REFERENCE, index=False, float_format="%.17g")
    print(f"{len(df)} rows -> {REFERENCE}")
