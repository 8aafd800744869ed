"""Configs of the golden runs: tiny, all three probes, a few epochs.

``python tests/golden/record.py`` writes ``tests/golden/<name>.parquet`` (the metrics table);
``tests/test_golden.py`` re-runs each config and compares every number within a tolerance that
follows its conditioning (see its docstring). Recorded before
the one-way-layers redesign, so it pins the numbers the redesign must keep.
"""

GOLDEN = {
    "synthetic": [
        "data.name=synthetic", "data.options={n = 800, dim = 24, k_star = 4, num_classes = 4}",
        "noise.rate=0.3", "model.options={widths = [32, 32]}", "train.epochs=4", "train.batch_size=64",
        "probe.schedule=every", 'probe.probes=["dynamics", "spectral", "signals"]',
        "probe.options={signals = {dependence_samples = 200, input_pcs = 5}, spectral = {d_rule = \"argmax\"}}",
        "run.checkpoint_every=2",
    ],
    "digits": [
        "data.name=digits", "data.subset=600", "noise.model=pairflip", "noise.rate=0.3",
        "model.options={widths = [48, 48]}", "train.epochs=3", "train.batch_size=64",
        "probe.schedule=every", 'probe.probes=["dynamics", "spectral", "signals"]',
        "probe.options={signals = {dependence_samples = 200, input_pcs = 5}, spectral = {d_rule = \"argmax\"}}",
    ],
}
