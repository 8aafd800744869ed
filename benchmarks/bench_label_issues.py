"""Benchmark: what ``noisescope label-issues`` costs against the run's own training time, and
the label-issue detectors against cleanlab's confident learning.

**Cost on a run** (default): a Fashion-MNIST run (10k class-balanced subset, 10% noisy validation,
transition-matrix noise of about 25%: 75% kept, 15% to class c+1, 10% to class c+3; MLP 2x256,
Adam lr 1e-3, batch 128, ``--epochs`` epochs, the dynamics probe every epoch so the run writes
its margins record) is trained once (or ``--run RUN`` is read), then each measure is taken in a
*fresh* Python process, as a user pays it, ``--repeats`` times in interleaved rounds:

* ``python: default`` / ``python: all``: ``find_label_issues(RUN)`` / ``(RUN, "all")`` timed
  inside the process (imports excluded; the imports are their own row);
* ``CLI: default`` / ``CLI: all``: the wall time of ``noisescope label-issues RUN --top 0``
  (``-m all``), start-up included;
* ``CLI start-up``: ``noisescope --help`` (Python, typer, the command modules and torch).

Every figure is printed in seconds and as % of the run's training time read from the run's
records (``workflows.label_issues.run_seconds``: env.json's start to status.json's last write,
probes included). ``--src DIR`` (repeatable) measures another source tree too (e.g. a
``git worktree`` of an older commit), in the same rounds, for before/after on one machine.

**Detectors vs cleanlab** (``--detectors``): N = 10,000 synthetic features, D = 512, C = 10
Gaussian classes (class means in a random 24-dim subspace, per-dimension noise scales decaying
from 1 to 0.05), 30% of the labels moved to another class uniformly (seeded). Every figure is
the best of ``--repeats`` runs in this process; each detector's ratio is to the cleanlab
pipeline measured in the same run:

* cleanlab pipeline = 5-fold stratified cross-validated predicted probabilities of a
  scikit-learn ``LogisticRegression`` (multinomial, lbfgs, C = 1, max_iter = 200, on
  standardized features) + ``cleanlab.filter.find_label_issues`` (prune_by_noise_rate);
* the margin detectors need a trained linear head: here a closed-form least-squares head on all
  N (timed separately, "head fit"), standing in for the network's head;
* AUM / first-fit take a synthetic (50, N) margin table (50 recorded epochs): only their cost
  is measured (no AUROC: the table is made up, not recorded from training).

Usage: python benchmarks/bench_label_issues.py [--run RUN | --epochs 50] [--src DIR]
       [--repeats 3] [--threads 1];  python benchmarks/bench_label_issues.py --detectors [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N, DIM, C, RATE = 10_000, 512, 10, 0.3


def _threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def make_features(n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    means = torch.randn(C, 24, generator=g) * 0.8
    basis, _ = torch.linalg.qr(torch.randn(DIM, 24, generator=g))
    scales = torch.linspace(1.0, 0.05, DIM)
    y = torch.randint(0, C, (n,), generator=g)
    flip = torch.rand(n, generator=g) < RATE
    y_obs = torch.where(flip, (y + torch.randint(1, C, (n,), generator=g)) % C, y)
    x = means[y] @ basis.T + torch.randn(n, DIM, generator=g) * scales
    return x.float(), y_obs, y


def best_of(repeats: int, fn):
    """(min seconds, last result) of ``repeats`` calls."""
    best, res = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t)
    return best, res


def detectors_main(a: argparse.Namespace) -> None:
    """The synthetic-features comparison of every detector with cleanlab's pipeline."""
    import numpy as np
    import torch

    from noisescope.detect import (
        LabelIssueDetector,
        assigned_margin,
        aum_score,
        auroc,
        average_precision,
        cross_val_pred_probs,
        disagreement_score,
        fine_score,
        first_fit_epoch_score,
        knn_score,
        truncated_distance_score,
    )
    torch.set_num_threads(a.threads)
    n = 3000 if a.quick else N
    reps = 1 if a.quick else a.repeats
    x, y, t = make_features(n)
    mask = y != t
    print(f"machine: {os.cpu_count()}-core CPU, torch {torch.__version__}, {a.threads} thread(s), no GPU")
    print(f"features: {n} x {DIM} float32, {C} classes, realized noise rate {float(mask.double().mean()):.3f}; "
          f"best of {reps}")

    # ---------------------------------------------------------------- the cleanlab pipeline
    from noisescope.detect import cleanlab_issues, cleanlab_scores

    try:
        import cleanlab  # noqa: F401
    except ImportError:
        print("cleanlab is not installed (pip install noisescope[cleanlab]): no baseline, no ratios")
        cleanlab_issues = None
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make_model():
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=200))

    def train_fn(model, x_tr, y_tr):
        model.fit(x_tr, y_tr)
        return model.predict_proba

    xn = x.numpy()
    rows = []
    base = None
    if cleanlab_issues is not None:
        t0 = time.perf_counter()
        cv = cross_val_pred_probs(make_model, train_fn, xn, y.numpy(), k=5, seed=0)
        cv_s = time.perf_counter() - t0
        find_s, flags = best_of(reps, lambda: cleanlab_issues(y, cv.pred_probs))
        base = cv_s + find_s
        s = cleanlab_scores(y, cv.pred_probs)
        print(f"\ncleanlab pipeline: 5-fold LogisticRegression pred_probs {cv_s:.2f} s "
              f"(fit {cv.fit_seconds.sum():.2f} s, predict {cv.predict_seconds.sum():.2f} s) + "
              f"find_label_issues {find_s:.3f} s = {base:.2f} s (baseline, one run)")
        rows.append(("cleanlab: CV pred_probs + find_label_issues", base, s, flags))
        rows.append(("  find_label_issues alone (given pred_probs)", find_s, None, None))

    # ---------------------------------------------------------------- noisescope detectors
    def head_fit():
        x1 = torch.cat([x.double(), torch.ones(n, 1, dtype=torch.float64)], 1)
        sol = torch.linalg.lstsq(x1, torch.nn.functional.one_hot(y, C).double()).solution
        return sol[:-1].T.contiguous(), sol[-1].contiguous()

    head_s, (w, b) = best_of(reps, head_fit)
    logits = x.double() @ w.T + b
    g = torch.Generator().manual_seed(1)
    ramp = torch.linspace(0, 1, 50)[:, None]  # 50 "epochs" drifting towards the head's margins
    margins = (ramp * assigned_margin(logits, y) + 0.1 * torch.randn(50, n, generator=g)).float()

    def spectrum():
        from noisescope.detect._util import spectrum_of

        return spectrum_of(x)

    spec_s, spec = best_of(reps, spectrum)
    rows.append(("spectrum (FeatureStats + eigh), shared by the spectral methods", spec_s, None, None))
    rows.append(("least-squares head fit (for the margin methods)", head_s, None, None))
    fixed = {
        "truncated_distance_score(d=9), given the spectrum": lambda: truncated_distance_score(x, spec, y, 9),
        "knn_score(k=10, raw 512-d features)": lambda: knn_score(x, y, k=10),
        "knn_score(k=10, d=9), given the spectrum": lambda: knn_score(x, y, k=10, d=9, spectrum=spec),
        "fine_score": lambda: fine_score(x, y),
        "disagreement_score (head logits)": lambda: disagreement_score(logits, y, kind="logits"),
        "aum_score (50 x N margins)": lambda: aum_score(margins),
        "first_fit_epoch_score (50 x N margins)": lambda: first_fit_epoch_score(margins),
    }
    for name, fn in fixed.items():
        sec, s = best_of(reps, fn)
        rows.append((name, sec, None if "margins)" in name else s, None))  # synthetic margins: no AUROC
    for method in ("truncated_distance", "knn", "fine", "tail_margin", "truncated_margin", "disagreement"):
        def run(method=method):
            return LabelIssueDetector(method).fit(x, y, head=(w, b))

        sec, det = best_of(reps, run)
        d = f", d={det.d_}" if det.d_ is not None else ""
        rows.append((f"LabelIssueDetector({method!r}{', auto d' if d else ''}) end to end{d}", sec,
                     det.score_samples(), det.find_issues()))

    print(f"\n{'what':<66} {'seconds':>8} {'ratio':>7} {'AUROC':>6} {'AP':>6} {'flagged':>7}")
    for name, sec, s, flags in rows:
        ratio = f"{sec / base:.3f}" if base else "-"
        au = f"{auroc(s, mask):.3f}" if s is not None else ""
        apr = f"{average_precision(s, mask):.3f}" if s is not None else ""
        fl = f"{float(np.mean(np.asarray(flags))):.3f}" if flags is not None else ""
        print(f"{name:<66} {sec:>8.3f} {ratio:>7} {au:>6} {apr:>6} {fl:>7}")
    print("\nratio = seconds / the cleanlab pipeline's seconds in this run; flagged = fraction flagged by "
          "the method's own rule (realized noise rate above)")


# -------------------------------------------------------------------- cost on a stored run
SRC = Path(__file__).resolve().parents[1] / "src"


def train_run(root: Path, epochs: int, threads: int) -> Path:
    """Train the benchmark's Fashion-MNIST run (module docstring) under ``root``; its path."""
    import numpy as np
    import torch

    from noisescope.config import from_dict
    from noisescope.runs.lifecycle import run_experiment

    torch.set_num_threads(threads)
    c = 10
    matrix = np.eye(c) * 0.75
    for i in range(c):
        matrix[i, (i + 1) % c] += 0.15
        matrix[i, (i + 3) % c] += 0.10
    cfg = from_dict({
        "data": {"name": "fashion_mnist", "subset": 10000, "val_fraction": 0.1},
        "noise": {"model": "transition", "options": {"matrix": matrix.tolist()}},
        "model": {"arch": "mlp", "options": {"widths": [256, 256]}},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": epochs, "device": "cpu"},
        "probe": {"schedule": "every", "probes": ["dynamics"]},
        "run": {"root": str(root), "name": f"bench-fmnist-mlp2x256-e{epochs}"},
    })
    t = time.perf_counter()
    path = run_experiment(cfg)
    print(f"trained {path} in {time.perf_counter() - t:.1f} s (wall, measured here)")
    return Path(path)


PY_SNIPPET = """
import json, sys, time
import torch
torch.set_num_threads({threads})
t0 = time.perf_counter()
from noisescope.workflows.label_issues import find_label_issues
t1 = time.perf_counter()
find_label_issues({run!r}, {methods})
t2 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "call": t2 - t1}}))
"""


def _env(src: Path, threads: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads), "COLUMNS": "80"}
    env.pop("PYTHONSTARTUP", None)
    return env


def measure(src: Path, run: Path, what: str, threads: int) -> dict[str, float]:
    """One cold measure in a fresh process (module docstring): {name: seconds}."""
    env = _env(src, threads)
    if what.startswith("python"):
        methods = "None" if what.endswith("default") else '"all"'
        code = PY_SNIPPET.format(threads=threads, run=str(run), methods=methods)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    cli = [sys.executable, "-c", "from noisescope.cli import main; main()"]
    args = ["--help"] if what == "cli start-up" else ["label-issues", str(run), "--top", "0"]
    if what.endswith("all"):
        args += ["-m", "all"]
    t = time.perf_counter()
    subprocess.run(cli + args, env=env, capture_output=True, text=True, check=True)
    return {"wall": time.perf_counter() - t}


def cost_main(a: argparse.Namespace) -> None:
    """Cost of the default and of every detector on a run, as % of its training time."""
    import torch

    from noisescope.runs.run import load_run
    from noisescope.workflows.label_issues import run_seconds

    print(f"machine: {os.cpu_count()}-core CPU, load average {os.getloadavg()[0]:.1f} at the start, "
          f"torch {torch.__version__}, {a.threads} thread(s)")
    if a.run:
        run = Path(a.run)
    else:
        root = Path(a.root or tempfile.mkdtemp(prefix="bench-li-"))
        # trained by the oldest tree measured, so that every tree can read its config
        train_src = Path(a.src[-1]).resolve() if a.src else SRC
        cmd = [sys.executable, __file__, "--train-only", "--root", str(root), "--epochs", str(a.epochs),
               "--threads", str(a.threads)]
        out = subprocess.run(cmd, env=_env(train_src, a.threads), capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-2])
        run = Path(out.stdout.strip().splitlines()[-1])
    run_s = run_seconds(load_run(run))
    if not run_s:
        raise SystemExit(f"{run}: the run's time is not recorded (incomplete or resumed); train a fresh one")
    print(f"run {run}: training time from its records {run_s:.1f} s (env.json start to the last status write)")
    srcs = [SRC, *[Path(s).resolve() for s in a.src]]
    measures = ["cli start-up", "python default", "cli default", "python all", "cli all"]
    got: dict[tuple[str, str, str], list[float]] = {}
    for r in range(a.repeats):
        for src in srcs:
            for what in measures:
                for key, sec in measure(src, run, what, a.threads).items():
                    got.setdefault((str(src), what, key), []).append(sec)
        print(f"round {r + 1}/{a.repeats} done (load average {os.getloadavg()[0]:.1f})")
    print(f"\n{'source':<28} {'what':<30} {'median s':>9} {'min s':>7} {'% of run':>9}")
    for (src, what, key), secs in got.items():
        name = "this tree" if Path(src) == SRC else Path(src).parent.name + "/" + Path(src).name
        label = {"imports": f"{what}: imports", "call": f"{what}: call", "wall": what}[key]
        med = statistics.median(secs)
        print(f"{name[-28:]:<28} {label:<30} {med:>9.2f} {min(secs):>7.2f} {100 * med / run_s:>8.1f}%")
    print("\n% of run = median seconds / the run's training time from its records; python rows: inside one "
          "fresh process (imports separate); CLI rows: the whole command, start-up included")


def main() -> None:
    ap = argparse.ArgumentParser(description="label-issues cost on a run; detectors vs cleanlab (--detectors)")
    ap.add_argument("--detectors", action="store_true", help="the synthetic detectors-vs-cleanlab comparison")
    ap.add_argument("--quick", action="store_true", help="--detectors: N = 3,000 and one repeat")
    ap.add_argument("--run", help="a stored run to measure (default: train the benchmark's run)")
    ap.add_argument("--root", help="where to train the run (default: a temporary directory)")
    ap.add_argument("--epochs", type=int, default=50, help="epochs of the trained run")
    ap.add_argument("--src", action="append", default=[], help="another source tree to measure too (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    _threads(a.threads)
    if a.train_only:
        print(train_run(Path(a.root), a.epochs, a.threads))
        return
    if a.detectors:
        detectors_main(a)
    else:
        cost_main(a)


if __name__ == "__main__":
    main()
