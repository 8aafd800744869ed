"""Cost of all internal-signal probes (SignalsProbe on every tap) vs one plain eval forward
pass over the same data.

The probe streams the training probe set once (class sums by group, per-neuron max, |a|
histogram on every tap, the dependence subsample's rows kept) and the test set once
(alignment). Each variant is compared with ``model(x)`` under ``torch.no_grad`` in eval mode
over the same samples (train only, or train + test), same batch size. Target: ratio <= 1.5.
The input PCA of the dependence analysis is computed once per run (cached in the probe
state) and is not part of the per-epoch figure: the warm-up call pays it.

Usage: .venv/bin/python benchmarks/bench_signals.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from noisescope.data.base import NoisyDataset
from noisescope.models.mlp import build_mlp
from noisescope.probes.base import ProbeContext
from noisescope.probes.signals import SignalsProbe


def make_data(n_train: int, n_test: int, classes: int = 10, seed: int = 0) -> NoisyDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train, 1, 28, 28, generator=g)
    y_true = torch.randint(0, classes, (n_train,), generator=g)
    flip = torch.rand(n_train, generator=g) < 0.3
    y_obs = y_true.clone()
    y_obs[flip] = (y_true[flip] + torch.randint(1, classes, (int(flip.sum()),), generator=g)) % classes
    xt = torch.rand(n_test, 1, 28, 28, generator=g)
    yt = torch.randint(0, classes, (n_test,), generator=g)
    return NoisyDataset(x, y_obs, y_true, x[:10], y_obs[:10], y_true[:10], xt, yt, classes, "bench")


def timed_interleaved(fns: dict[str, object], rounds: int) -> dict[str, float]:
    """Best time of each callable over ``rounds`` rounds, the callables run back to back in
    every round (after one warm-up round), so a change in machine load hits all alike; on a
    shared machine the minimum is the least disturbed measurement."""
    best = {name: float("inf") for name in fns}
    for r in range(rounds + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r > 0:
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data, one repeat")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: stable timings on a shared machine)")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--depth", type=int, default=6, help="hidden layers (6 = MLP7)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_train, n_test, repeats = (2000, 2000, 2) if args.quick else (10000, 10000, 5)
    batch = 2048
    data = make_data(n_train, n_test)
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=args.depth, width=args.width).eval()

    def plain(parts: tuple[torch.Tensor, ...]):
        @torch.no_grad()
        def run() -> None:
            for x in parts:
                for s in range(0, len(x), batch):
                    model(x[s:s + batch])
        return run

    variants = {  # name: (probe, baseline over the same samples)
        "separation + large act (train)": (
            SignalsProbe(dependence=False, alignment=False), "plain eval forward, train"),
        "+ dependence (train)": (SignalsProbe(alignment=False), "plain eval forward, train"),
        "all signals (train + test)": (SignalsProbe(), "plain eval forward, train + test"),
    }
    fns = {"plain eval forward, train": plain((data.x_train,)),
           "plain eval forward, train + test": plain((data.x_train, data.x_test))}
    for name, (probe, _base) in variants.items():
        state: dict = {}  # the input PCA is cached here by the warm-up round

        def run(probe=probe, state=state) -> None:
            probe(model, data, ProbeContext(epoch=1, batch_size=batch, state=state))

        fns[name] = run
    best = timed_interleaved(fns, repeats)
    print(f"machine: {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}")
    print(f"model: MLP, {args.depth} hidden x {args.width}, taps: {len(model.taps())}; "
          f"data: {n_train} train + {n_test} test, batch {batch}; best of {repeats} rounds")
    for name in list(fns)[:2]:
        print(f"{name:34s}  {best[name] * 1e3:8.1f} ms")
    for name, (_probe, base) in variants.items():
        print(f"{name:34s}  {best[name] * 1e3:8.1f} ms   ratio {best[name] / best[base]:5.2f}x")
    print("target: all signals <= 1.5x the plain pass over the same data")


if __name__ == "__main__":
    main()
