"""Which labels are wrong, on a stored run: `find_label_issues`, `noisescope label-issues`, the
report section and cleaning as a repair (workflows/label_issues.py, workflows/clean.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from noisescope.cli import app
from noisescope.config import ConfigError, from_dict
from noisescope.data.base import NoisyDataset
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.run import Run, load_run
from noisescope.workflows import label_issues as li
from noisescope.workflows.clean import cleaned_data, retrain_cleaned
from noisescope.workflows.label_issues import RUN_METHODS, find_label_issues, flagged_mask

pytestmark = pytest.mark.usefixtures("one_thread")
HAS_CLEANLAB = li.cleanlab_available()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An easy planted case: well-separated synthetic classes, 30% symmetric noise, an MLP
    trained past early stopping, the dynamics probe (and its margins record) every epoch."""
    root = tmp_path_factory.mktemp("runs")
    cfg = from_dict({
        "data": {"name": "synthetic", "val_fraction": 0.2,
                 "options": {"n_train": 700, "n_test": 300, "dim": 20, "k_star": 4, "num_classes": 4,
                             "signal": 3.0}},
        "noise": {"model": "symmetric", "rate": 0.3},
        "model": {"arch": "mlp", "options": {"widths": [32, 32]}},
        "train": {"epochs": 8, "batch_size": 64, "lr": 3e-3, "device": "cpu"},
        "probe": {"schedule": "every", "probes": ["dynamics"]},
        "run": {"root": str(root), "name": "li", "checkpoint_every": 4},
    })
    return run_experiment(cfg)


@pytest.fixture(scope="module")
def result(run_dir):
    return find_label_issues(run_dir, methods="all")


def expected_methods() -> list[str]:
    return [m for m in RUN_METHODS if m != "cleanlab_cv" and (HAS_CLEANLAB or m != "cleanlab")]


def test_label_issues_writes_the_ranked_table_with_every_column(run_dir, result):
    table = pd.read_parquet(run_dir / "label_issues.parquet")
    methods = [*expected_methods(), "consensus"]
    for col in ["rank", "index", "observed", "predicted"] + [f"{p}_{m}" for m in methods for p in ("score", "flag")]:
        assert col in table, col
    n = len(load_run(run_dir).data.y_train)
    assert len(table) == n and sorted(table["index"]) == list(range(n))
    assert table["rank"].tolist() == list(range(1, n + 1))
    assert table["score_consensus"].is_monotonic_decreasing  # ranked by the consensus
    data = load_run(run_dir).data
    assert (table["observed"].to_numpy() == data.y_train.numpy()[table["index"].to_numpy()]).all()
    info = json.loads((run_dir / "label_issues.json").read_text())
    assert set(info["seconds"]) == set(expected_methods())
    assert info["noise"] == {"model": "symmetric", "synthetic": True, "mask_known": True,
                             "realized_rate": pytest.approx(float(data.noise_mask.float().mean()))}
    assert info["settings"]["checkpoint_epoch"] == info["settings"]["early_stop_epoch"]
    assert {r["detector"] for r in info["evaluation"]} == set(methods)


def test_the_best_detector_finds_the_planted_noise(result):
    ev = result.evaluation.set_index("detector")
    assert ev["auroc"].drop("consensus").max() > 0.8
    assert ev.loc["disagreement", "auroc"] > 0.8 and ev.loc["aum_early", "auroc"] > 0.8
    # estimated vs realized noise rate are both reported
    assert ev["estimated_rate"].notna().all() and (ev["noise_rate"] == ev["noise_rate"].iloc[0]).all()


def test_scrambled_true_labels_leave_every_score_unchanged(run_dir, result, monkeypatch):
    data = load_run(run_dir).data
    g = torch.Generator().manual_seed(5)
    scrambled = NoisyDataset(**{**data.__dict__, "y_train_true": torch.randint(0, data.num_classes,
                                                                               data.y_train.shape, generator=g),
                                "y_val_true": torch.zeros_like(data.y_val_true)})
    monkeypatch.setattr(Run, "data", property(lambda self: scrambled))
    other = find_label_issues(run_dir, methods="all", write=False)
    for m, s in result.scores.items():
        np.testing.assert_array_equal(other.scores[m], s, err_msg=m)
        np.testing.assert_array_equal(other.flags[m], result.flags[m], err_msg=m)
    assert not np.allclose(other.evaluation["auroc"], result.evaluation["auroc"])  # only the evaluation moves


def test_final_checkpoint_and_method_subset(run_dir):
    res = find_label_issues(run_dir, methods=["knn", "aum"], checkpoint="final", d=3, write=False)
    assert res.methods == ["knn", "aum"] and res.info["settings"]["checkpoint_epoch"] == 8
    assert res.info["d_chosen"]["knn"] == 3
    with pytest.raises(ValueError, match="saved epochs"):
        find_label_issues(run_dir, checkpoint=3, write=False)
    with pytest.raises(ValueError, match="unknown method"):
        find_label_issues(run_dir, methods=["nope"], write=False)
    with pytest.raises(ValueError, match="cleanlab_cv"):
        find_label_issues(run_dir, methods=["cleanlab_cv"], write=False)


def test_cli_exits_0_and_prints_the_tables(run_dir):
    res = CliRunner().invoke(app, ["label-issues", str(run_dir), "--top", "5", "-m", "knn,disagreement",
                                   "--method", "aum_early"])
    assert res.exit_code == 0, res.output
    for word in ("top 5 suspects", "AUROC", "knn", "aum_early", "consensus", "label_issues.parquet"):
        assert word in res.output
    assert "truncated_distance" not in res.output


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "3"], "saved epochs"),
    (["--checkpoint", "soon"], "--checkpoint"),
    (["--method", "bogus"], "--method"),
    (["--cleanlab-cv", "1"], "--cleanlab-cv"),
    (["--d", "0"], "--d"),
])
def test_cli_bad_input_is_one_line_and_exit_2(run_dir, args, message):
    res = CliRunner().invoke(app, ["label-issues", str(run_dir), *args])
    assert res.exit_code == 2 and message in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_cli_refuses_a_directory_that_is_no_run(tmp_path):
    res = CliRunner().invoke(app, ["label-issues", str(tmp_path)])
    assert res.exit_code == 2 and "not a noisescope run" in res.output


def test_without_cleanlab_its_methods_are_skipped_with_the_reason(run_dir, monkeypatch):
    monkeypatch.setattr(li, "cleanlab_available", lambda: False)
    res = find_label_issues(run_dir, methods="all", write=False)
    assert "cleanlab" not in res.scores and "pip install" in res.skipped["cleanlab"]
    with pytest.raises(ValueError, match="cleanlab is not installed"):
        find_label_issues(run_dir, methods=["cleanlab"], write=False)


@pytest.mark.skipif(not HAS_CLEANLAB, reason="cleanlab not installed (optional peer: pip install noisescope[cleanlab])")
def test_cleanlab_on_early_stopped_and_cross_validated_probabilities(run_dir):
    res = find_label_issues(run_dir, methods=["disagreement", "cleanlab"], cleanlab_cv=2, write=False)
    assert res.methods == ["disagreement", "cleanlab", "cleanlab_cv"]
    # self-confidence on the early-stopped probabilities is the disagreement score by definition
    np.testing.assert_allclose(res.scores["cleanlab"], res.scores["disagreement"], atol=1e-6)
    cv = res.info["cleanlab_cv"]
    assert cv["folds"] == 2 and cv["epochs_per_fold"] == res.info["settings"]["early_stop_probed_epoch"]
    assert len(cv["fit_seconds"]) == 2 and res.info["seconds"]["cleanlab_cv"] >= sum(cv["fit_seconds"])
    assert res.evaluation.set_index("detector").loc["cleanlab_cv", "auroc"] > 0.8


def test_cleaning_by_removal_makes_sub_runs_and_the_comparison(run_dir, result):
    flagged = flagged_mask(run_dir, "disagreement")
    assert flagged.sum() == result.flags["disagreement"].sum()
    res = retrain_cleaned(run_dir, flagged, mode="remove", seeds=[0, 1], method="disagreement", epochs=3)
    sub = run_dir / "cleaned" / "remove-disagreement-s1"
    assert res.runs[("remove", 1)] == sub
    assert load_run(sub).status["state"] == "complete" and load_run(sub).config.train.seed == 1
    data = cleaned_data(sub)
    parent = load_run(run_dir).data
    assert len(data.y_train) == len(parent.y_train) - int(flagged.sum())
    assert torch.equal(data.x_val, parent.x_val) and torch.equal(data.y_test, parent.y_test)
    t = res.table
    assert t["model"].tolist() == ["final", "early_stop", "cleaned_remove_final", "cleaned_remove_early_stop",
                                   "cleaned_remove_final", "cleaned_remove_early_stop"]
    assert (t["n_test"] == len(parent.y_test)).all()
    assert ((t.test_low <= t.test_acc) & (t.test_acc <= t.test_high)).all()
    early = t[t.model == "early_stop"].iloc[0]
    assert early.b == 0 and early.c == 0 and early.p_value == 1.0  # McNemar against itself
    s = res.summary.set_index("model")
    assert s.loc["cleaned_remove_final", "n_seeds"] == 2 and s.loc["final", "note"] == "a single seed shows no spread"
    assert (run_dir / "cleaned" / "comparison-disagreement.parquet").exists()
    with pytest.raises(ConfigError, match="different flagged set"):
        retrain_cleaned(run_dir, ~flagged & (np.arange(len(flagged)) % 2 == 0), seeds=[0],
                        method="disagreement", epochs=3)
    with pytest.raises(ValueError, match="bool mask"):
        retrain_cleaned(run_dir, flagged.astype(int), method="x")


def test_relabelling_uses_the_early_stopped_predictions(run_dir, result):
    flagged = flagged_mask(run_dir, "consensus")
    res = retrain_cleaned(run_dir, flagged, mode="relabel", seeds=[0], method="consensus", epochs=2)
    data = cleaned_data(res.runs[("relabel", 0)])
    table = pd.read_parquet(run_dir / "label_issues.parquet").set_index("index").sort_index()
    pred = table["predicted"].to_numpy()
    assert torch.equal(data.y_train[torch.from_numpy(flagged)], torch.from_numpy(pred[flagged]))
    parent = load_run(run_dir).data
    assert torch.equal(data.y_train[torch.from_numpy(~flagged)], parent.y_train[torch.from_numpy(~flagged)])


def test_report_section_says_what_is_missing_then_shows_the_table(run_dir, tmp_path):
    find_label_issues(run_dir)  # the default ranking
    from noisescope.report.label_issues_section import label_issues_section, suspects_figure

    sec = label_issues_section(tmp_path, tmp_path / "scratch")
    assert "noisescope label-issues RUN" in sec.missing
    sec = label_issues_section(run_dir, tmp_path / "scratch")
    assert not sec.missing and "auroc" in sec.tables[0] and not sec.figures  # feature data: no thumbnails
    assert "consensus (default)" in sec.tables[0] and "P=R@n" in sec.tables[0] and "recall_at_rate" not in sec.tables[0]
    assert any("Default ranking and flags: the consensus" in n for n in sec.notes)
    g = torch.Generator().manual_seed(0)
    imgs = NoisyDataset(torch.randint(0, 255, (12, 1, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(12) % 3, torch.zeros(12, dtype=torch.long), torch.zeros(0, 1, 8, 8),
                        torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                        torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), 3, "imgs")
    table = pd.DataFrame({"rank": range(1, 13), "index": range(12), "observed": np.arange(12) % 3,
                          "predicted": np.zeros(12, dtype=int)})
    path = suspects_figure(table, imgs, tmp_path / "top.png", top=10)
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"


def test_the_default_is_the_consensus_of_the_recorded_and_one_pass_detectors(run_dir):
    res = find_label_issues(run_dir, write=False)
    assert res.methods == list(li.DEFAULT_METHODS) == res.consensus_of
    # aum_early is aum again when early stopping is the last epoch: the same ranking counts once
    both = find_label_issues(run_dir, methods=["aum", "aum_early"], write=False)
    same = np.array_equal(both.scores["aum"], both.scores["aum_early"])
    assert same == (both.info["settings"]["early_stop_probed_epoch"] == both.info["margins_epochs"][-1])
    assert both.consensus_of == (["aum"] if same else ["aum", "aum_early"])
    assert res.info["default"]["is_default"] and res.info["default"]["ranking"] == "consensus"
    assert res.table["score_consensus"].is_monotonic_decreasing
    assert res.info["flag_rules"]["consensus"] == li.FLAG_RULES["consensus"]
    # the one early-stopped pass gives the logits and the features together
    assert res.info["shared_seconds"]["features"] < res.info["shared_seconds"]["early_logits"] + 1
    assert not find_label_issues(run_dir, methods=["knn", "aum"], write=False).info["default"]["is_default"]


def test_consensus_counts_each_distinct_ranking_once():
    from noisescope.workflows.label_issues_scores import consensus, consensus_members

    a = np.array([1.0, 2.0, 3.0, 4.0])
    c = np.array([4.0, 3.0, 2.0, 1.0])
    flags = {"a": a > 2, "b": a > 2, "c": c > 2}
    # b = 2a is a's ranking again: it counts once, so a and c balance exactly
    score, flag = consensus({"a": a, "b": 2 * a, "c": c}, flags)
    assert consensus_members({"a": a, "b": 2 * a, "c": c}) == ["a", "c"]
    np.testing.assert_allclose(score, [0.625] * 4)
    assert flag.all()  # 1 of the 2 distinct detectors flags every sample (half is enough)
    # counted twice, the old rule tilted the consensus toward a
    assert consensus({"a": a, "c": c}, flags)[0].tolist() == score.tolist()
    # cleanlab's in-sample score is disagreement's by definition: dropped even when rounding differs
    s = {"disagreement": a, "cleanlab": a + np.array([0, 1e-9, 0, 0]), "aum": c, "cleanlab_cv": a}
    assert consensus_members(s) == ["disagreement", "aum"]


@pytest.mark.skipif(not HAS_CLEANLAB, reason="cleanlab not installed (optional peer: pip install noisescope[cleanlab])")
def test_cleanlab_cv_writes_its_own_files_and_leaves_the_default_alone(run_dir):
    first = find_label_issues(run_dir)
    before = pd.read_parquet(run_dir / li.PARQUET)
    res = CliRunner().invoke(app, ["label-issues", str(run_dir), "--cleanlab-cv", "2", "--top", "0"])
    assert res.exit_code == 0, res.output
    after = pd.read_parquet(run_dir / li.PARQUET)
    pd.testing.assert_frame_equal(before, after)  # same default ranking, same file content
    assert "score_cleanlab_cv" not in after
    cv = pd.read_parquet(run_dir / li.CV_PARQUET)
    assert cv["score_cleanlab_cv"].is_monotonic_decreasing and sorted(cv["index"]) == list(range(len(cv)))
    info = json.loads((run_dir / li.CV_JSON).read_text())
    assert info["cleanlab_cv"]["folds"] == 2
    assert flagged_mask(run_dir, "cleanlab_cv").sum() == cv["flag_cleanlab_cv"].sum()
    said = " ".join(res.output.split())
    assert "label_issues_cleanlab_cv.parquet" in said and "the default ranking is unchanged" in said
    assert first.consensus_of == json.loads((run_dir / li.JSON).read_text())["consensus_of"]
    # cleanlab_cv alone: its own files only, the default ranking's left as they were
    res = CliRunner().invoke(app, ["label-issues", str(run_dir), "-m", "cleanlab_cv", "--cleanlab-cv", "2"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "no consensus: only cleanlab_cv was computed" in said and "suspects of" not in said
    assert f"left {li.PARQUET} as it was" in said
    pd.testing.assert_frame_equal(before, pd.read_parquet(run_dir / li.PARQUET))


class _Clock:
    """A perf_counter that advances 0.125 s per call: the same timings on every render."""

    def __init__(self) -> None:
        self.t = 0.0

    def perf_counter(self) -> float:
        self.t += 0.125
        return self.t


def test_cli_output_fits_80_columns_and_says_what_is_default(run_dir, monkeypatch):
    from width80 import assert_fits

    from noisescope.workflows import label_issues_scores

    monkeypatch.setattr(li, "time", _Clock())
    monkeypatch.setattr(label_issues_scores, "time", _Clock())
    out = " ".join(assert_fits(["label-issues", str(run_dir), "--top", "5"]).split())
    assert "consensus *" in out and "* default: ranking and flags of the consensus" in out
    k = len(json.loads((run_dir / li.JSON).read_text())["consensus_of"])
    assert f"{k} distinct rankings" in out and f"flagged when {-(-k // 2)} of {k} flag" in out
    # precision and recall at n noisy samples are one number, said once and explained
    assert "P=R@n" in out and "R@r" not in out and "the same number (TP / n)" in out
    # every detector's noise-rate estimate beside the truth, and the run's time beside the seconds
    truth = float(load_run(run_dir).data.noise_mask.float().mean())
    assert f"(true {truth:.3f})" in out and "est." in out and "% run" in out
    assert "training run" in out and "% of it" in out
    info = json.loads((run_dir / li.JSON).read_text())
    assert info["percent_of_run"] == pytest.approx(100 * info["total_seconds"] / info["run_seconds_approx"])
    out = " ".join(assert_fits(["label-issues", str(run_dir), "--top", "0", "-m", "all"]).split())
    if HAS_CLEANLAB:
        assert "cleanlab counts once, as disagreement (same ranking)" in out
        assert "not the default detectors" in out


def test_run_prints_the_realized_rate_of_matrix_noise(tmp_path):
    toml = tmp_path / "t.toml"
    toml.write_text(f"""
[data]
name = "synthetic"
options = {{ n_train = 200, n_test = 50, dim = 8, k_star = 2, num_classes = 2 }}
[noise]
model = "transition"
options = {{ matrix = [[0.7, 0.3], [0.2, 0.8]] }}
[model]
arch = "mlp"
options = {{ widths = [8] }}
[train]
epochs = 1
device = "cpu"
[run]
root = "{tmp_path}"
name = "matrix"
""")
    res = CliRunner().invoke(app, ["run", str(toml)])
    assert res.exit_code == 0, res.output
    assert "noise transition (rate set by its matrix; realized 0." in " ".join(res.output.split())
    assert "rate 0 (" not in res.output


def test_a_caller_holding_the_data_skips_the_rebuild(run_dir, monkeypatch):
    import noisescope.runs.run as run_module

    data = load_run(run_dir).data
    want = find_label_issues(run_dir, write=False)

    def no_rebuild(cfg):
        raise AssertionError("the data was rebuilt")

    monkeypatch.setattr(run_module, "prepare_data", no_rebuild)
    got = find_label_issues(run_dir, write=False, data=data)
    for m, s in want.scores.items():
        np.testing.assert_array_equal(got.scores[m], s, err_msg=m)
    other = NoisyDataset(**{**data.__dict__, "name": "digits"})
    with pytest.raises(ValueError, match="trained on 'synthetic'"):
        find_label_issues(run_dir, write=False, data=other)
    with pytest.raises(AssertionError, match="rebuilt"):  # the guard works
        find_label_issues(run_dir, write=False)
