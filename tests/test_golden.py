"""The redesign changes structure, not numbers: golden runs recorded before it reproduce.

Every row of each golden table (tests/golden/*.parquet, see tests/golden/configs.py) must be
present in the re-run with the same value to 1e-6 (NaN matches NaN); rows added since
(new metrics) are allowed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from noisescope import load_config, load_run, run_experiment
from noisescope.metrics import KEY

GOLDEN_DIR = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN_DIR))
from configs import GOLDEN  # noqa: E402


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_golden_run_reproduces_every_recorded_metric_to_1e_6(name, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(None, [*GOLDEN[name], f"run.root={tmp_path}", f"run.name={name}"])
        now = load_run(run_experiment(cfg)).metrics
    finally:
        torch.set_num_threads(before)
    gold = pd.read_parquet(GOLDEN_DIR / f"{name}.parquet")
    merged = gold.merge(now, on=KEY, how="left", suffixes=("_gold", "_now"), indicator=True)
    missing = merged[merged["_merge"] != "both"]
    assert missing.empty, f"{len(missing)} golden rows missing, e.g. {missing[KEY].head(3).to_dict('records')}"
    a, b = merged["value_gold"].to_numpy(float), merged["value_now"].to_numpy(float)
    same = np.isclose(a, b, rtol=1e-6, atol=1e-6) | (np.isnan(a) & np.isnan(b)) | (a == b)
    bad = merged[~same]
    example = bad[[*KEY, "value_gold", "value_now"]].head(5).to_dict("records")
    assert bad.empty, f"{len(bad)} rows differ, e.g. {example}"
