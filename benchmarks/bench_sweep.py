"""Parallel efficiency of sweeps: 8 small CPU-bound runs, local executor at 1 and 2 workers, and
Ray on 2 CPUs.

    efficiency(k workers) = T(1 worker) / (k * T(k workers))     target >= 0.8 for k = 2 on 2 cores

Every run uses one torch thread (``sweep.threads_per_run = 1``), so one worker is one core.
The baseline (1 worker) runs sequentially in this process, measured in the same invocation.
The parallel timings include the workers' start-up (spawning Python, importing torch, sklearn
and torch._dynamo on the first run: ~5 s per worker on a quiet machine), which a real sweep pays
too, so runs must be long enough to amortize it (default: ~5-8 s each); Ray's own start
(``ray.init``) is reported separately. The machine's load average is printed with each figure:
on a shared machine, read the numbers with it.

    python benchmarks/bench_sweep.py            # ~4 minutes on 2 quiet cores
    python benchmarks/bench_sweep.py --quick    # ~1 minute, start-up dominated (smoke test)
    python benchmarks/bench_sweep.py --rounds 3 # best of 3 interleaved rounds (shared machines)
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per worker, the baseline included (before numpy loads)

RAW = {
    "data": {"name": "synthetic", "val_fraction": 0.1, "seed": 0,
             "options": {"n": 8000, "n_test": 1000, "dim": 100, "k_star": 10, "num_classes": 10}},
    "noise": {"model": "symmetric", "rate": 0.3, "seed": 0},
    "model": {"arch": "mlp", "options": {"widths": [256, 256]}},
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 30, "seed": 0, "device": "cpu"},
    "probe": {"schedule": "every_k", "every": 10, "probes": ["dynamics"]},
    # 8 runs: 4 noise rates x 2 seeds
    "grid": {"noise": {"rate": [0.0, 0.2, 0.4, 0.6]}, "train": {"seed": [0, 1]}},
    "sweep": {"threads_per_run": 1, "pack": False},  # executor efficiency: every run its own task
}


def load() -> str:
    return "load avg {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def timed_sweep(raw: dict, root: Path, name: str, executor) -> float:
    from noisescope.sweep import run_sweep, sweep_from_dict

    raw = copy.deepcopy(raw)
    raw["sweep"].update(root=str(root), name=name)
    spec = sweep_from_dict(raw)
    t0 = time.perf_counter()
    result = run_sweep(spec, executor)
    seconds = time.perf_counter() - t0
    done = result.ids("complete")
    if len(done) != len(spec.points):
        raise SystemExit(f"{name}: only {len(done)} of {len(spec.points)} runs completed: "
                         f"{[o.error for o in result.outcomes.values() if o.error]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a minute in all)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 30, quick 4)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the local runs (best kept)")
    parser.add_argument("--start-method", default="forkserver", choices=["forkserver", "spawn"],
                        help="how the local executor starts its workers")
    args = parser.parse_args()

    import torch

    from noisescope.sweep import LocalExecutor

    torch.set_num_threads(1)
    raw = copy.deepcopy(RAW)
    raw["train"]["epochs"] = args.epochs or (4 if args.quick else 30)
    if args.quick:  # a smoke test: runs this short are dominated by the workers' start-up
        raw["data"]["options"]["n"] = 4000
    print(f"8 runs: synthetic n={raw['data']['options']['n']} dim=100 (90% train), MLP 2x256, "
          f"{raw['train']['epochs']} epochs each, 1 torch thread per run; {os.cpu_count()} CPUs")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        # warm the caches of this process (imports, data generation) so the baseline is fair
        warm = copy.deepcopy(raw)
        warm["grid"] = {"train": {"seed": [99]}}
        warm["train"]["epochs"] = 1
        timed_sweep(warm, root, "warm", LocalExecutor(1))

        t1s, t2s = [], []
        local2 = LocalExecutor(2, threads=1, start_method=args.start_method)
        for r in range(args.rounds):  # interleaved, so a burst of load elsewhere hits both
            print(f"[{load()}] round {r + 1}: local, 1 worker (sequential, in process) ...", flush=True)
            t1s.append(timed_sweep(raw, root, f"local1-{r}", LocalExecutor(1)))
            print(f"  {t1s[-1]:.1f} s  ({t1s[-1] / 8:.2f} s per run)")
            note = " (includes starting the fork server)" if r == 0 and args.start_method == "forkserver" else ""
            print(f"[{load()}] round {r + 1}: local, 2 worker processes ({args.start_method}) ...", flush=True)
            t2s.append(timed_sweep(raw, root, f"local2-{r}", local2))
            print(f"  {t2s[-1]:.1f} s{note}  speed-up {t1s[-1] / t2s[-1]:.2f}x  parallel efficiency "
                  f"{t1s[-1] / (2 * t2s[-1]):.2f}  [{load()}]")
        results["local-1"] = t1 = min(t1s)
        results["local-2"] = t2 = min(t2s)
        print(f"local, best of {args.rounds}: speed-up {t1 / t2:.2f}x  parallel efficiency {t1 / (2 * t2):.2f} "
              "(target >= 0.8)")
        if not args.no_ray:
            try:
                import ray
            except ImportError:
                print("Ray not installed: pip install 'noisescope[ray]' (skipped)")
            else:
                from noisescope.sweep import RayExecutor

                os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")
                t0 = time.perf_counter()
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                t_init = time.perf_counter() - t0
                try:
                    results["ray-2"] = tr = timed_sweep(raw, root, "ray2", RayExecutor(cpus_per_run=1))
                finally:
                    ray.shutdown()
                print(f"[{load()}] Ray on 2 CPUs: {tr:.1f} s (+ {t_init:.1f} s ray.init)  speed-up "
                      f"{t1 / tr:.2f}x  parallel efficiency {t1 / (2 * tr):.2f} "
                      f"(with init: {t1 / (2 * (tr + t_init)):.2f})")
    print("summary: " + ", ".join(f"{k} {v:.1f} s" for k, v in results.items()))


if __name__ == "__main__":
    main()
