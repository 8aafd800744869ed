"""Epoch time of the noisescope training loop vs a bare PyTorch loop and a DataLoader loop,
and the cost of the dynamics probe as a fraction of one training epoch.

Same model (MLP 3x512), same data (Fashion-MNIST-shaped random tensors, 10k x 1x28x28,
10 classes), same optimizer (Adam 1e-3), batch 128. Each variant is timed over several epochs,
interleaved, and the median is reported.

    python benchmarks/bench_train.py [--quick] [--n 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from noisescope.config import TrainConfig
from noisescope.data.base import NoisyDataset
from noisescope.models import build_model
from noisescope.pipeline import TensorPipeline
from noisescope.probes.base import ProbeContext
from noisescope.probes.dynamics import DynamicsProbe
from noisescope.training.loop import make_optimizer, train_epoch


def bare_epoch(model, opt, x, y, batch_size, epoch):
    """The loop anyone would write by hand: a permutation and index slicing."""
    model.train()
    g = torch.Generator().manual_seed(epoch)
    perm = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def dataloader_epoch(model, opt, loader):
    model.train()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="n=3000, 3 repeats")
    args = ap.parse_args()
    n, repeats = (3000, 3) if args.quick else (args.n, args.repeats)
    torch.manual_seed(0)
    x = torch.randn(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    cfg = TrainConfig(batch_size=128, lr=1e-3)

    def fresh():
        torch.manual_seed(0)
        m = build_model("mlp", (1, 28, 28), 10, widths=[512, 512, 512])
        return m, make_optimizer(m.parameters(), cfg)

    m_ns, o_ns = fresh()
    m_bare, o_bare = fresh()
    m_dl, o_dl = fresh()
    pipe = TensorPipeline(x, y, 128, shuffle=True, seed=0)
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
    times: dict[str, list[float]] = {"noisescope": [], "bare": [], "dataloader": [], "probe": []}
    n_val = n // 10
    data = NoisyDataset(x, y, y, x[:n_val], y[:n_val], y[:n_val], x[:n_val], y[:n_val], 10, "bench")
    probe = DynamicsProbe()
    def run_noisescope(r: int) -> None:
        pipe.set_epoch(r)
        train_epoch(m_ns, pipe, o_ns)

    variants = {
        "noisescope": run_noisescope,
        "bare": lambda r: bare_epoch(m_bare, o_bare, x, y, 128, r),
        "dataloader": lambda r: dataloader_epoch(m_dl, o_dl, loader),
        "probe": lambda r: probe(m_ns, data, ProbeContext(epoch=r)),
    }
    names = list(variants)
    for r in range(repeats + 1):  # round 0 is a warm-up; the order rotates every round
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            variants[name](r)
            if r:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"N={n}, MLP 3x512, batch 128, Adam, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {repeats} epochs")
    print(f"noisescope loop      {med['noisescope']:.3f} s/epoch")
    print(f"bare PyTorch loop    {med['bare']:.3f} s/epoch")
    print(f"DataLoader loop      {med['dataloader']:.3f} s/epoch")
    print(f"dynamics probe       {med['probe']:.3f} s (train {n} + val {n_val} + test {n_val})")
    print(f"overhead vs bare:        {med['noisescope'] / med['bare'] - 1:+.1%}  (target <= +10%)")
    print(f"speed-up vs DataLoader:  {med['dataloader'] / med['noisescope']:.2f}x")
    print(f"probe / training epoch:  {med['probe'] / med['noisescope']:.1%}")


if __name__ == "__main__":
    main()
