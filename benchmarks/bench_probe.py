"""Benchmark: the all-d spectral linear probe on 50,000 x 512 features, 10 classes.

Figures, all from one run on one machine:

1. the whole probe (streaming float64 statistics + eigendecomposition + scoring every d from 1
   to 512 on 10k noisy-validation and 10k test features) against its floor: one float64
   covariance pass over the same 50k training features (target <= 2x);
2. against scikit-learn PCA + RidgeClassifier refitted for each d, which gives the same
   answers (target >= 20x faster); measured on a spread subset of d and extrapolated to all
   512 (said in the output);
3. against scikit-learn PCA + LogisticRegression on a 20-value grid of d (what most people
   would run): the ratio;
4. peak resident memory of the streaming probe as N grows 10k..200k (each N in a fresh
   process, features generated batch by batch, never held): target flat in N.

Usage: python benchmarks/bench_probe.py [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

DIM, C = 512, 10


def _threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def make_batches(n: int, seed: int, batch: int = 4096, rate: float = 0.4):
    """Yield (x (b, 512) float32, y_obs (b,), y_true (b,)) of a spiked 10-class feature set."""
    import torch

    g0 = torch.Generator().manual_seed(1234)  # the same class geometry for every split
    means = torch.randn(C, 24, generator=g0) * 0.8
    basis, _ = torch.linalg.qr(torch.randn(DIM, 24, generator=g0))
    scales = torch.linspace(1.0, 0.05, DIM)
    g = torch.Generator().manual_seed(seed)
    for s in range(0, n, batch):
        b = min(batch, n - s)
        y = torch.randint(0, C, (b,), generator=g)
        flip = torch.rand(b, generator=g) < rate
        y_obs = torch.where(flip, (y + torch.randint(1, C, (b,), generator=g)) % C, y)
        x = means[y] @ basis.T + torch.randn(b, DIM, generator=g) * scales
        yield x.float(), y_obs, y


def materialize(n: int, seed: int):
    import torch

    xs, ys, ts = zip(*make_batches(n, seed), strict=True)
    return torch.cat(xs), torch.cat(ys), torch.cat(ts)


def probe_streaming(train_batches, evals) -> dict:
    """The probe from streams: FeatureStats pass, eigh, cumulative scoring of every d
    (the same steps and precision as ``noisescope.spectral.analysis.analyse``)."""
    import numpy as np
    import torch

    from noisescope.spectral.linear_probe import check_grid, choose_d, cumulative_correct, fit_ridge_readout
    from noisescope.spectral.stats import FeatureStats

    st = FeatureStats(DIM, C)
    for x, y, _t in train_batches:
        st.update(x, y)
    spec = st.spectrum()
    ro = fit_ridge_readout(st, spec)
    grid = check_grid(None, DIM)
    acc = {}
    for name, batches in evals.items():
        correct = torch.zeros(len(grid), dtype=torch.int64)
        n = 0
        for x, y in batches:
            correct += cumulative_correct(spec.project(x, dtype=torch.float32), y, ro, grid)
            n += len(y)
        acc[name] = correct.numpy() / n
    d_star = choose_d(acc["val"] * 1e6, grid, rule="argmax") if "val" in acc else None
    return {"acc": acc, "d_star": d_star, "grid": np.asarray(grid)}


def covariance_floor(x, batch: int = 4096) -> float:
    """One float64 covariance pass (mean + X^T X) over x; returns seconds."""
    import torch

    t = time.perf_counter()
    s1 = torch.zeros(DIM, dtype=torch.float64)
    s2 = torch.zeros(DIM, DIM, dtype=torch.float64)
    for s in range(0, len(x), batch):
        xb = x[s : s + batch].double()
        s1 += xb.sum(0)
        s2.addmm_(xb.T, xb)
    mu = s1 / len(x)
    _ = s2 / len(x) - torch.outer(mu, mu)
    return time.perf_counter() - t


def _hwm_mib() -> float:
    """Peak resident set size of this process (VmHWM; unlike ru_maxrss it is not inherited
    from the parent across fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def memory_child(n: int) -> None:
    """Run the streaming probe on n generated training samples; print peak RSS (MiB)."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    val = list((x, y) for x, y, _ in make_batches(10_000, 2))
    base = _hwm_mib()
    t = time.perf_counter()
    probe_streaming(make_batches(n, 1), {"val": val})
    peak = _hwm_mib()
    print(json.dumps({"n": n, "peak_mib": peak, "before_mib": base, "seconds": time.perf_counter() - t}))


def main() -> None:
    ap = argparse.ArgumentParser(description="spectral probe benchmark")
    ap.add_argument("--quick", action="store_true", help="N=10k train, fewer baseline fits, N up to 50k")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ridge-d", type=int, default=6, help="d values measured for PCA+RidgeClassifier")
    ap.add_argument("--logistic-fits", type=int, default=5, help="fits measured of the 20-value grid")
    ap.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    _threads(a.threads)
    if a.memory_child:
        memory_child(a.memory_child)
        return
    import numpy as np
    import torch
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    torch.set_num_threads(a.threads)
    n = 10_000 if a.quick else 50_000
    n_eval = 10_000
    print(f"machine: {os.cpu_count()}-core CPU, torch {torch.__version__}, {a.threads} threads, no GPU")
    print(f"features: train {n} x {DIM} float32, noisy val {n_eval}, test {n_eval}, {C} classes, every d 1..{DIM}")
    x, y, _ = materialize(n, 1)
    xv, yv, _ = materialize(n_eval, 2)
    xt, _, yt = materialize(n_eval, 3)

    # 1. the probe vs its floor (best of 3 each, interleaved)
    floor_t, probe_t = [], []
    for _ in range(3):
        floor_t.append(covariance_floor(x))
        t = time.perf_counter()
        res = probe_streaming(
            ((x[s : s + 4096], y[s : s + 4096], None) for s in range(0, n, 4096)),
            {"val": [(xv[s : s + 4096], yv[s : s + 4096]) for s in range(0, n_eval, 4096)],
             "test": [(xt[s : s + 4096], yt[s : s + 4096]) for s in range(0, n_eval, 4096)]},
        )
        probe_t.append(time.perf_counter() - t)
    floor, probe = min(floor_t), min(probe_t)
    print(f"\n[1] covariance pass (floor, float64): {floor:.3f} s | whole probe, all {DIM} d: {probe:.3f} s"
          f" | ratio {probe / floor:.2f}x (target <= 2x)")
    print(f"    d* (noisy val) = {res['d_star']}, test acc at d* {res['acc']['test'][res['d_star'] - 1]:.4f}, "
          f"at d={DIM} {res['acc']['test'][-1]:.4f}")

    # 2. sklearn PCA + RidgeClassifier refitted per d (same answers)
    xn, xtn = x.double().numpy(), xt.double().numpy()
    ds = np.unique(np.linspace(1, DIM, a.ridge_d).round().astype(int))
    t = time.perf_counter()
    diffs = []
    for d in ds:
        pca = PCA(n_components=int(d), svd_solver="full").fit(xn)
        clf = RidgeClassifier(alpha=0.0, solver="auto").fit(pca.transform(xn), y.numpy())
        diffs.append(abs(clf.score(pca.transform(xtn), yt.numpy()) - res["acc"]["test"][d - 1]))
    per_d = (time.perf_counter() - t) / len(ds)
    ridge_all = per_d * DIM
    print(f"\n[2] sklearn PCA+RidgeClassifier: {per_d:.3f} s per d (measured d={ds.tolist()}), "
          f"extrapolated to all {DIM} d: {ridge_all:.1f} s | probe is {ridge_all / probe:.0f}x faster (target >= 20x)")
    print(f"    same answers: max |test acc difference| over measured d = {max(diffs):.5f} "
          f"({max(diffs) * n_eval:.0f} of {n_eval} samples)")

    # 3. sklearn PCA + LogisticRegression on a 20-value grid
    grid20 = np.unique(np.geomspace(1, DIM, 20).round().astype(int))
    while len(grid20) < 20:  # geomspace rounds small values together: fill in
        grid20 = np.unique(np.concatenate([grid20, [int(grid20[-2]) + 1]]))
    pick = grid20[np.linspace(0, len(grid20) - 1, min(a.logistic_fits, 20)).round().astype(int)]
    pca_full = PCA(n_components=DIM, svd_solver="full").fit(xn)  # one PCA for the whole grid
    z, zt = pca_full.transform(xn), pca_full.transform(xtn)
    t = time.perf_counter()
    pca_t = 0.0
    for d in pick:
        clf = LogisticRegression(max_iter=200).fit(z[:, :d], y.numpy())
        clf.score(zt[:, :d], yt.numpy())
    per_fit = (time.perf_counter() - t) / len(pick)
    t = time.perf_counter()
    PCA(n_components=DIM, svd_solver="full").fit(xn)
    pca_t = time.perf_counter() - t
    logit_all = pca_t + per_fit * 20
    print(f"\n[3] sklearn PCA (once) + LogisticRegression(lbfgs, max_iter=200) on a 20-value grid of d: "
          f"PCA {pca_t:.2f} s + {per_fit:.2f} s per fit (measured {len(pick)} fits at d={pick.tolist()}) "
          f"-> {logit_all:.1f} s for the grid | probe (all {DIM} d) is {logit_all / probe:.0f}x faster")

    # 4. peak memory vs N (fresh process per N)
    sizes = [10_000, 50_000] if a.quick else [10_000, 50_000, 100_000, 200_000]
    print("\n[4] peak RSS of the streaming probe (fresh process per N; features generated in 4096-row batches)")
    rows = []
    for nn in sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(nn), "--threads", str(a.threads)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"    N={nn:>7}: peak {r['peak_mib']:.0f} MiB (before the probe {r['before_mib']:.0f} MiB), "
              f"{r['seconds']:.1f} s")
    growth = rows[-1]["peak_mib"] - rows[0]["peak_mib"]
    print(f"    growth from N={sizes[0]} to N={sizes[-1]}: {growth:+.1f} MiB "
          f"(an (N, 512) float32 copy at N={sizes[-1]} would be {sizes[-1] * DIM * 4 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
