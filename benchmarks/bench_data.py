"""Data loading and label-noise costs.

1. CIFAR-10-shaped batches (5 x 10,000 + 10,000 random uint8 images, the real dict layout,
   pickle protocol 2 as in the official files): ``load_dataset("cifar10")`` with the safe
   restricted unpickler vs plain ``pickle.load(encoding="bytes")`` of the same files (the
   unsafe baseline every tutorial uses).
2. Fashion-MNIST (60,000 + 10,000 IDX .gz) from /usr/share/datasets, when installed.
3. Each noise model on 50,000 labels, C = 10 (instance: 512-dim reference embedding).

Times are the minimum over ``--repeats`` runs (the machine may be shared).
Usage: .venv/bin/python benchmarks/bench_data.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import pickle
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from noisescope.data import load_dataset
from noisescope.noise import apply_noise


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def write_cifar(folder: Path, per_batch: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"batch_label": b"x", b"labels": rng.integers(0, 10, per_batch).tolist(),
             b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
             b"filenames": [b"img.png"] * per_batch}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: these small ops gain nothing from more, and "
                         "oversubscribed OpenMP threads on a shared machine slow them badly)")
    args = ap.parse_args()
    reps = 1 if args.quick else args.repeats
    per_batch = 2000 if args.quick else 10000
    n_labels = 10000 if args.quick else 50000
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cifar-10-batches-py"
        write_cifar(folder, per_batch)
        t_safe = best(lambda: load_dataset("cifar10", root=tmp), reps)

        def plain() -> None:
            for f in sorted(folder.iterdir()):
                with open(f, "rb") as fh:
                    pickle.load(fh, encoding="bytes")

        t_plain = best(plain, reps)
    print(f"cifar10-shaped ({6 * per_batch} images): safe load_dataset {t_safe:.2f} s, "
          f"plain pickle.load {t_plain:.2f} s (ratio {t_safe / t_plain:.2f}x)")

    if Path("/usr/share/datasets/fashion-mnist").is_dir():
        t_fm = best(lambda: load_dataset("fashion_mnist"), reps)
        print(f"fashion_mnist (70000 images, IDX .gz): {t_fm:.2f} s")

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n_labels,), generator=g)
    x_ref = torch.randn(n_labels, 512, generator=g)
    mat = (0.6 * torch.eye(10) + 0.04).tolist()
    cases = {
        "symmetric": dict(model="symmetric", rate=0.4),
        "symmetric exact": dict(model="symmetric", rate=0.4, exact=True),
        "pairflip cifar10": dict(model="pairflip", rate=0.4, class_map="cifar10"),
        "transition": dict(model="transition", matrix=mat),
        "transition exact": dict(model="transition", matrix=mat, exact=True),
        "instance": dict(model="instance", rate=0.4, x_ref=x_ref),
    }
    for name, kw in cases.items():
        t = best(lambda kw=kw: apply_noise(y, 10, seed=0, **kw), reps)
        print(f"noise {name:<18} {n_labels} labels: {1e3 * t:8.1f} ms")


if __name__ == "__main__":
    main()
