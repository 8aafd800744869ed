"""Verdicts with evidence: `noisescope truncate` says "no repair" when truncation cannot help,
`noisescope verdict` scores every claim of a run and aggregates a sweep, the report opens with
the scorecard, and the spectral probe's truncated-fit rows agree with the dynamics."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner
from width80 import assert_fits

from noisescope.cli import app
from noisescope.cli.common import console
from noisescope.config import from_dict
from noisescope.evidence.claims import CLAIM_FUNCTIONS, CLAIM_TEXT
from noisescope.metrics import Row, curve, rows_to_frame, select, vector
from noisescope.runs.lifecycle import run_experiment
from noisescope.runs.run import load_run

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(root, name, **over):
    raw = {
        "data": {"name": "synthetic", "val_fraction": 0.2,
                 "options": {"n_train": 500, "n_test": 200, "dim": 16, "k_star": 3, "num_classes": 3}},
        "noise": {"model": "symmetric", "rate": 0.3},
        "model": {"arch": "mlp", "options": {"widths": [20, 12]}},
        "train": {"epochs": 4, "batch_size": 64, "lr": 3e-3, "device": "cpu"},
        "probe": {"schedule": "every", "probes": ["dynamics", "spectral", "signals"],
                  "options": {"signals": {"dependence_samples": 200, "input_pcs": 5}}},
        "run": {"root": str(root), "name": name, "checkpoint_every": 2},
    }
    for section, values in over.items():
        raw[section] = {**raw[section], **values}
    return from_dict(raw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny noisy run with every probe and checkpoints at epochs 0, 2, 4."""
    return run_experiment(tiny_config(tmp_path_factory.mktemp("runs"), "noisy"))


@pytest.fixture
def wide_console(monkeypatch):
    """A wide console, so that table cells hold each claim on one line."""
    monkeypatch.setattr(console, "width", 400)


def test_truncate_on_a_run_where_truncation_cannot_help_prints_no_repair_and_why(tmp_path):
    cfg = tiny_config(tmp_path, "clean", noise={"model": "none", "rate": 0.0},
                      data={"val_fraction": 0.25, "options": {"n_train": 600, "n_test": 200, "dim": 12, "k_star": 3,
                                                              "num_classes": 3, "signal": 8.0}},
                      model={"options": {"widths": [16]}}, train={"epochs": 8},
                      probe={"probes": ["dynamics"], "options": {}}, run={"checkpoint_every": 4})
    path = run_experiment(cfg)
    out = tmp_path / "trunc"
    res = CliRunner().invoke(app, ["truncate", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "truncation.json").read_text())
    # why it cannot help, deterministically: the final model gets every validation sample right,
    # so no truncation can gain anything on noisy validation
    m = load_run(path).metrics
    assert curve(m, "dynamics", "acc", subset="val")[8] == 1.0 and info["source_epoch"] == 8
    assert info["val_gain"] <= 0 and info["val_gain_se"] >= 0
    text = " ".join(res.output.split())
    assert "not better than the final model" in text  # truncation vs final, in words
    assert "keeping early_stop" in text and "not recommended" in text  # the rule keeps early stopping
    assert "raw_input" in text and "McNemar" in text
    assert info["recommended"] is False and info["choice"] == "early_stop"
    assert "not recommended" in info["note"] and (out / "model.safetensors").exists()
    assert {r["comparison"] for r in info["paired_tests"]} == {"truncated vs final", "truncated vs early_stop"}
    assert "n=150" in text and "n=200" in text  # n of noisy validation and of the clean test set


def test_the_comparison_gives_every_accuracy_its_wilson_interval_and_n(tiny_noisy):
    from noisescope.models import build_model
    from noisescope.spectral.compare import compare_truncation

    torch.manual_seed(0)
    model = build_model("mlp", tiny_noisy.input_shape, tiny_noisy.num_classes, widths=[12])
    t = compare_truncation(model, tiny_noisy, early=model)
    assert set(t["n_val"]) == {100} and set(t["n_test"]) == {200}
    assert (t["val_low"] <= t["val_acc"]).all() and (t["val_acc"] <= t["val_high"]).all()
    assert (t["test_low"] <= t["test_acc"]).all() and (t["test_acc"] <= t["test_high"]).all()


def test_verdict_prints_every_claim_and_writes_verdict_json(run_dir, wide_console):
    res = CliRunner().invoke(app, ["verdict", str(run_dir)])
    assert res.exit_code == 0, res.output
    for key in CLAIM_FUNCTIONS:
        assert CLAIM_TEXT[key][0] in res.output, key
    # a not-measured claim says how: the commands whole, each on a line of its own
    lines = res.output.splitlines()
    assert "noisescope sweep malignant_width" in lines and "noisescope verdict sweeps/malignant_width" in lines
    data = json.loads((run_dir / "verdict.json").read_text())
    assert [c["key"] for c in data["claims"]] == list(CLAIM_FUNCTIONS)
    assert all(c["status"] in ("supported", "not supported", "inconclusive", "not measured") for c in data["claims"])
    ctx = data["context"]
    assert ctx["feature_tap"] == "layer2" and ctx["taps"] == ["layer1", "layer2"] and ctx["k_star"] == 3
    assert ctx["test_correct"]["truncated"]["n"] == 200 and "double_descent" in ctx
    paired = next(c for c in data["claims"] if c["key"] == "truncation_vs_early_stop")
    assert paired["numbers"]["method"] == "McNemar exact (paired)"


def test_the_report_opens_with_the_scorecard(run_dir, tmp_path):
    from noisescope.report import build_report

    text = build_report(run_dir, tmp_path / "r.html", progress=False).read_text()
    first = re.search(r'<section id="([^"]+)">', text).group(1)
    assert first == "scorecard"
    sec = text[text.index('<section id="scorecard">'):text.index("</section>", text.index('id="scorecard"'))]
    assert sec.count('class="st-') == len(CLAIM_FUNCTIONS)
    truncation = text[text.index('<section id="truncation">'):]
    assert "raw-input reference" in truncation and re.search(r"\[0\.\d{3}, [01]\.\d{3}\] n=\d+", truncation)


def test_fit_acc_rows_at_epoch_0_and_final_match_the_dynamics_at_full_d(run_dir):
    m = load_run(run_dir).metrics
    dim = 12  # the feature tap's width: the head reads layer2
    for epoch in (0, 4):
        for subset in ("clean_train", "noisy_train_obs"):
            fit = vector(m, "spectral", "fit_acc", epoch, subset, "layer2")
            assert list(fit.index) == list(range(1, dim + 1))
            dyn = curve(m, "dynamics", "acc", subset=subset)[epoch]
            assert fit[dim] == pytest.approx(dyn, abs=1e-6), (epoch, subset)
        share = select(m, metric="tail_margin_share", epoch=epoch, tap="layer2")
        assert set(share["subset"]) == {"clean_train", "noisy_train_obs"}
    assert select(m, metric="fit_acc", tap="layer1").empty  # only the tap the head reads
    for metric in ("noise_dominated_count", "noise_dominated_variance_share"):
        rows = select(m, metric=metric, epoch=4)
        assert set(rows["tap"]) == {"layer1", "layer2"} and rows["value"].notna().all()


def test_verdict_on_a_sweep_counts_statuses_and_summarizes_seeds(run_dir, tmp_path, wide_console):
    from noisescope.report import build_report
    from noisescope.runs.store import RunStore
    from noisescope.sweep import sweep_from_dict
    from noisescope.sweep.runner import run_dir as sweep_run_dir
    from noisescope.sweep.runner import write_manifest

    base = json.loads((run_dir / "config.json").read_text())
    base.pop("run", None)
    spec = sweep_from_dict({**base, "grid": {"train": {"seed": [0, 1]}}, "sweep": {"root": str(tmp_path), "name": "v"}})
    write_manifest(spec, spec.directory)
    for p in spec.points:  # two "seeds": copies of the run (same weights, so the statuses agree)
        store = RunStore(sweep_run_dir(spec.directory, p.id))
        shutil.copytree(run_dir, store.path)
        (store.path / "verdict.json").unlink(missing_ok=True)
        store.write_json("config.json", p.config.to_dict())
    res = CliRunner().invoke(app, ["verdict", str(spec.directory), "--no-models"])
    assert res.exit_code == 0, res.output
    data = json.loads((spec.directory / "verdict.json").read_text())
    assert len(data["runs"]) == 2 and len(data["claims"]) == len(CLAIM_FUNCTIONS)
    for c in data["claims"]:
        assert sum(c[s] for s in ("supported", "not supported", "inconclusive", "not measured")) == 2
        assert c["status"].startswith("2 ")  # identical copies: both runs agree
    large = next(c for c in data["claims"] if c["key"] == "large_activation")
    assert large["number"] == "largest max/median ratio" and "(sd, 2 seeds; 95% t-interval" in large["by_configuration"]
    assert all((sweep_run_dir(spec.directory, p.id) / "verdict.json").exists() for p in spec.points)
    assert "all 2 runs" in res.output and "Clean samples are learned before noisy ones" in res.output
    # at 80 columns: no line too wide, no word or number split or cut
    out = assert_fits(["verdict", str(spec.directory), "--no-models"])
    assert "mean +- sd over seeds [95% t-interval]" in " ".join(out.split())
    text = build_report(spec.directory, tmp_path / "s.html", progress=False, max_runs=0).read_text()
    assert re.search(r'<section id="([^"]+)">', text).group(1) == "sweep-scorecard"


# ----------------------------------------------------------------------------- report pieces
def test_effective_rank_is_tabulated_at_init_early_stopping_and_final():
    from noisescope.report.sections import rank_table

    rows = [Row(e, "spectral", "effective_rank", v, "train", "phi") for e, v in ((0, 30.0), (3, 12.0), (9, 40.0))]
    t = rank_table(rows_to_frame(rows), early_stop=4).set_index("metric")
    assert t.loc["effective_rank", ["init (epoch 0)", "early stopping (epoch 3)", "final (epoch 9)"]].tolist() == [
        30.0, 12.0, 40.0]


def test_a_single_seed_shows_intervals_and_no_spread_several_show_mean_and_sd():
    from noisescope.report.sections import comparison_display

    f1 = pd.DataFrame({"method": ["final"], "epoch": [9], "tap": ["a"], "d": [np.nan], "val_acc": [0.5],
                       "test_acc": [0.6], "n_val": [100], "n_test": [1000]})
    one = comparison_display([f1]).iloc[0]
    assert one["clean test acc"] == "0.600 [0.569, 0.630] n=1000" and "seeds" not in one
    two = comparison_display([f1, f1.assign(test_acc=0.7)]).iloc[0]
    assert two["seeds"] == "2" and two["clean test acc"].startswith(f"0.650 ± {np.std([0.6, 0.7], ddof=1):.3f}")


def test_large_activation_table_says_undecided_and_follows_neither(tmp_path):
    from noisescope.report.sections import large_activation

    rows = []
    for e in (0, 1):
        for tap, ratio, r2, eta in (("l1", 100.1, 0.05, 0.04), ("l2", 300.0, 0.6, 0.1)):
            rows += [Row(e, "signals", "large_act_max", ratio, "train", tap),
                     Row(e, "signals", "large_act_median", 1.0, "train", tap),
                     Row(e, "signals", "large_act_ratio", ratio, "train", tap),
                     Row(e, "signals", "large_act_neuron", 3, "train", tap),
                     Row(e, "signals", "large_act_tracked_max", ratio, "train", tap),
                     Row(e, "signals", "large_act_tracked_neuron", 3, "train", tap),
                     Row(e, "signals", "r2_input", r2, "train", tap),
                     Row(e, "signals", "eta2_true", eta, "train", tap),
                     Row(e, "signals", "eta2_obs", eta, "train", tap)]
    sec = large_activation(rows_to_frame(rows), tmp_path)
    table = sec.tables[0]
    assert "undecided" in table and "neither" in table and ">large<" in table.replace(" ", "")
    assert "follows the input" in " ".join(sec.notes)


def test_signals_probe_writes_the_large_activation_flag_as_one_zero_or_nan():
    from noisescope.evidence.rules import large_activation_flag

    m = select(load_signals_rows(), metric=["large_act_ratio", "large_act_flag"])
    piv = m.pivot_table(index=["epoch", "tap"], columns="metric", values="value", dropna=False)
    for _key, r in piv.iterrows():
        word = large_activation_flag(r["large_act_ratio"])
        expect = {"large": 1.0, "not large": 0.0}.get(word)
        assert (np.isnan(r["large_act_flag"]) if expect is None else r["large_act_flag"] == expect)


def load_signals_rows() -> pd.DataFrame:
    from conftest import make_blobs

    from noisescope.data.base import NoisyDataset
    from noisescope.models import build_model
    from noisescope.probes import make_probe
    from noisescope.probes.base import ProbeContext

    x, y = make_blobs(300, 8, 3, seed=1)
    data = NoisyDataset(x_train=x[:200], y_train=y[:200], y_train_true=y[:200], x_val=x[200:250], y_val=y[200:250],
                        y_val_true=y[200:250], x_test=x[250:], y_test=y[250:], num_classes=3, name="blobs",
                        noise={"model": "none", "rate": 0.0})
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes, widths=[16])
    return rows_to_frame(make_probe("signals", dependence_samples=100, input_pcs=3)(model, data, ProbeContext(0)))


# ----------------------------------------------------------------------------- readable at 80 columns
def test_verdict_fits_80_columns_in_under_60_lines(run_dir):
    out = assert_fits(["verdict", str(run_dir)])
    lines = out.splitlines()
    assert len(lines) < 60, out
    assert sum(line.startswith(("supported", "not supported", "inconclusive", "not measured"))
               for line in lines) == len(CLAIM_FUNCTIONS)
    assert "rule:" not in out and "``" not in out  # rules only on request, never RST markup
    # the pair-flip command is longer than 80 columns: broken between arguments with a backslash,
    # so pasted into a shell it is still the one command
    i = next(i for i, line in enumerate(lines) if line.startswith("noisescope run CONFIG"))
    assert lines[i].endswith(" \\") and lines[i + 1].startswith("    --set")
    joined = (lines[i][:-2] + " " + lines[i + 1].strip())
    cmd = next(c for c in scorecard_commands(run_dir) if c.startswith("noisescope run CONFIG"))
    assert joined == cmd


def scorecard_commands(run_dir) -> list[str]:
    data = json.loads((run_dir / "verdict.json").read_text())
    return [c["command"] for c in data["claims"] if c["command"]]


def test_verdict_rules_come_from_docs_definitions_and_fit_80_columns(run_dir):
    out = assert_fits(["verdict", str(run_dir), "--rules", "--no-models"])
    assert out.count("rule: ") == len(CLAIM_FUNCTIONS)
    for marker in ("``", "(module docstring)", "noisescope.probes", ":func:"):
        assert marker not in out
    assert "t_clean and t_noisy are the first probed epochs" in " ".join(out.split())


def test_claim_rules_match_docs_definitions_word_for_word():
    from pathlib import Path

    from noisescope.evidence.claim_rules import CLAIM_RULES

    doc = (Path(__file__).parents[1] / "docs" / "definitions.md").read_text()
    section = doc[doc.index("### Claim rules"):]
    section = section[:section.index("\n## ")] if "\n## " in section else section
    items = dict(re.findall(r"^- `(\w+)`: (.*?)(?=^- `|\Z)", section, re.S | re.M))
    assert set(items) == set(CLAIM_RULES) == set(CLAIM_FUNCTIONS)
    for key, text in CLAIM_RULES.items():
        assert " ".join(items[key].split()) == " ".join(text.split()), key
    # every claim scored today carries that text
    from noisescope.evidence.claims import scorecard

    for c in scorecard(pd.DataFrame(columns=["epoch", "probe", "tap", "subset", "metric", "index", "value"])):
        assert c.rule == CLAIM_RULES[c.key]


def test_a_command_too_long_for_the_terminal_breaks_between_arguments():
    import shlex

    from noisescope.cli.verdict import command_lines

    cmd = ("noisescope run CONFIG --set 'noise.model=\"pairflip\"' --set noise.rate=0.3 "
           "--set 'probe.probes=[\"a\", \"b\"]'")
    lines = command_lines(cmd, 60)
    assert len(lines) >= 2 and all(len(line) <= 60 for line in lines)
    assert all(line.endswith(" \\") for line in lines[:-1])
    assert shlex.split(" ".join(line.removesuffix(" \\") for line in lines)) == shlex.split(cmd)
    assert command_lines("noisescope probe RUN", 60) == ["noisescope probe RUN"]


def test_sweep_key_numbers_stay_in_their_domain_and_clean_before_noisy_has_one():
    from noisescope.evidence.claims import Claim
    from noisescope.report.verdict import aggregate

    def claims(ratio: float, supported: bool) -> list[Claim]:
        return [Claim("large_activation", "large", "kubo", "supported" if supported else "not supported",
                      {"ratio": {"layer1": ratio, "layer2": 1.0}}),
                # the noisy labels never reached 0.5: no t_noisy, the key number is still there
                Claim("clean_before_noisy", "clean first", "kubo", "supported",
                      {"t_clean": 2, "t_noisy": None, "noisy_obs_acc_at_t_clean": 0.1 * ratio ** 0.1})]

    per_run = {"a": claims(1.5, True), "b": claims(2.0, True), "c": claims(250.0, False)}
    df = aggregate(per_run, {"noise.rate=0.4": ["a", "b", "c"]})
    large = df.set_index("key").loc["large_activation"]
    conf = large["configs"][0]
    # mean 84.5, sd 143.3: the plain t-interval would be [-271.5, 440.5]; a ratio is >= 0
    assert conf["mean"] == pytest.approx(84.5) and conf["low"] == 0.0 and conf["clipped"]
    assert conf["sd"] == pytest.approx(143.327, abs=1e-3)
    assert conf["high"] == pytest.approx(84.5 + 4.302653 * conf["sd"] / 3 ** 0.5, rel=1e-5)
    assert "[-" not in large["by_configuration"] and "clipped to the domain" in large["by_configuration"]
    assert large["supported"] == 2 and large["not supported"] == 1
    clean = df.set_index("key").loc["clean_before_noisy"]
    assert clean["configs"][0]["n_seeds"] == 3 and clean["configs"][0]["number"].startswith("0.1")
    # the 80-column view says "mixed" and counts the statuses per configuration
    from noisescope.cli.verdict import print_sweep_claims

    with console.capture() as cap:
        print_sweep_claims(df, "claims")
    text = " ".join(cap.get().split())
    assert "mixed" in text and "rate=0.4: 2 supported, 1 not supported; 84.500 +- 143.327 [0.000, 440.545]" in text


@pytest.mark.slow  # two HTML reports
def test_report_cli_prints_its_path_whole_at_80_columns(run_dir, tmp_path):
    out_file = tmp_path / ("a-long-directory-name-for-the-report-" + "x" * 40) / "report.html"
    out = assert_fits(["report", str(run_dir), "-o", str(out_file), "--quiet"], ignore=r"^\(\d+\.\d MB,$")
    assert str(out_file) in out.splitlines()  # whole, on a line of its own, to copy into a browser


def test_a_claim_whose_rule_changed_in_code_has_its_reader_text_rechecked():
    import inspect

    from noisescope.evidence.claim_rules import CHECKED_AGAINST, docstring_fingerprint

    stale = [key for key, fn in CLAIM_FUNCTIONS.items()
             if CHECKED_AGAINST.get(key) != docstring_fingerprint(inspect.getdoc(fn) or "")]
    assert not stale, (f"the rule of {stale} changed in code: update its reader text in "
                       "evidence/claim_rules.py and docs/definitions.md (Claim rules), then its fingerprint "
                       "in CHECKED_AGAINST (evidence.claim_rules.docstring_fingerprint)")
    assert docstring_fingerprint("a  rule\n b") == docstring_fingerprint("a rule b") != docstring_fingerprint("a")
