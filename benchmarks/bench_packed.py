"""Packed multi-model training (``noisescope.packed``) vs the same K runs one after another.

K MLPs (3 hidden layers of one width) on Fashion-MNIST-shaped data (random uint8 1x28x28,
normalized to float by the pipeline, 10 classes), batch 128, Adam 1e-3; members differ in
seed (init and data order) and in their labels. For each (width, K), in one process:

* sequential: K ``torch.optim.Adam`` runs one after another, each a ``TensorPipeline``
  epoch (the unpacked loop: zero_grad, cross-entropy, backward, step);
* packed: one ``train_packed_epoch`` over K pipelines.

The two are interleaved after a short warm-up (4 batches) and the median of ``--epochs``
timed epochs is reported. A timed "epoch" is a window of ``--batches`` batches (default 20)
scaled to the 79 batches of a 10,000-sample epoch (``--batches 0``: whole epochs; every
step of an epoch costs the same). On a CPU the speedup uses process CPU time with one torch
thread, which other jobs on a shared machine disturb far less than wall time (both printed).

Printed: seconds per epoch, runs per hour (``--run-epochs``-epoch runs, default 50 as in the
demo), the speedup (sequential time / packed time), memory per member (parameters +
gradients + optimizer state; packed: ``packed_nbytes / K``, which includes its scratch
buffers), and the process's peak RSS (CPU) or ``torch.cuda.max_memory_allocated`` per
variant (GPU).

Then the end-to-end figure (``--sweep``, on by default): a sweep of ``--sweep-k`` seeds
(``[grid] train.seed``) of a 3x``--sweep-width`` MLP on ``--sweep-n`` Fashion-MNIST samples
(the 10,000-image subset: 9,000 train + 1,000 noisy validation, 40% symmetric noise, Adam,
batch 128, ``--sweep-epochs`` epochs, the dynamics probe every epoch, a checkpoint policy
as the defaults), run twice through ``run_sweep`` with the local executor in this process:
``[sweep] pack = false`` (the runs one after another, each ``run_experiment``) and
``pack = true`` (one packed run, :func:`noisescope.runs.packed_runs.run_packed`). Everything a
sweep does is timed: data preparation, training, probes, every file written. Printed: seconds,
runs per hour and the ratio, after a small warm-up sweep of each kind (imports, allocator).

    python benchmarks/bench_packed.py [--quick] [--threads 1] [--widths 64 256 512]
        [--ks 1 2 4 8 16] [--epochs 2] [--batches 20] [--n 10000] [--run-epochs 50] [--gpu-only]
        [--no-sweep | --only-sweep] [--sweep-k 8] [--sweep-width 64] [--sweep-n 10000]
        [--sweep-epochs 3] [--sweep-repeats 1]

``--gpu-only`` runs on CUDA when available and prints "not measured" otherwise.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from noisescope.models import build_model
from noisescope.packed import PackedModels, PackedOptimizer, member_pipelines, packed_nbytes, train_packed_epoch
from noisescope.pipeline import TensorPipeline


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_models(k: int, width: int, device: torch.device) -> list[torch.nn.Module]:
    out = []
    for s in range(k):
        torch.manual_seed(1000 + s)
        out.append(build_model("mlp", (1, 28, 28), 10, widths=[width] * 3).to(device))
    return out


def sequential_epoch(models, opts, pipes, epoch: int, batches: int | None) -> None:
    for m, o, p in zip(models, opts, pipes, strict=True):
        m.train()
        p.set_epoch(epoch)
        for xb, yb, _ in itertools.islice(p, batches):
            loss = F.cross_entropy(m(xb), yb)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def measure(width: int, k: int, x, ys, epochs: int, batches: int | None, device: torch.device) -> dict:
    seeds = list(range(k))
    kw = dict(mean=0.286, std=0.353)
    # sequential baseline: K independent runs
    models = make_models(k, width, device)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    pipes = [TensorPipeline(x, ys[s], 128, seed=s, device=device, **kw) for s in seeds]
    # packed: the same K members
    packed = PackedModels(make_models(k, width, device), device=device)
    popt = PackedOptimizer(packed, "adam", lr=1e-3)
    ppipes = member_pipelines(x, ys[:k], seeds, 128, device=device, **kw)
    t_seq: list[float] = []
    t_pack: list[float] = []
    c_seq: list[float] = []
    c_pack: list[float] = []
    mem: dict[str, float] = {}
    per_epoch = len(pipes[0])
    scale = per_epoch / min(batches, per_epoch) if batches else 1.0  # window -> one epoch
    # warm-up (allocator, kernels, engine check): 4 batches per member, not timed
    m = 4 * 128
    sequential_epoch(models, opts, [TensorPipeline(x[:m], ys[s][:m], 128, seed=s, device=device, **kw)
                                    for s in seeds], 0, None)
    train_packed_epoch(packed, member_pipelines(x[:m], [y[:m] for y in ys[:k]], seeds, 128, device=device, **kw),
                       popt, epoch=0)
    for e in range(1, epochs + 1):
        for name in ("seq", "pack"):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            if name == "seq":
                sequential_epoch(models, opts, pipes, e, batches)
            else:
                train_packed_epoch(packed, ppipes, popt, epoch=e, max_batches=batches)
            sync(device)
            dt, dc = (time.perf_counter() - t0) * scale, (time.process_time() - c0) * scale
            (t_seq if name == "seq" else t_pack).append(dt)
            (c_seq if name == "seq" else c_pack).append(dc)
            if device.type == "cuda":
                mem[name] = torch.cuda.max_memory_allocated(device) / 2**20
    n_params = sum(p.numel() for p in models[0].parameters())
    seq_bytes = n_params * 4 * 4  # param, grad, exp_avg, exp_avg_sq (float32)
    return {
        "seq": statistics.median(t_seq),
        "pack": statistics.median(t_pack),
        "seq_cpu": statistics.median(c_seq),
        "pack_cpu": statistics.median(c_pack),
        "seq_bytes": seq_bytes,
        "pack_bytes": packed_nbytes(packed, popt) / k,
        "mem": mem,
    }


def sweep_raw(k: int, width: int, n: int, epochs: int, device: torch.device, threads: int) -> dict:
    return {
        "data": {"name": "fashion_mnist", "subset": n, "val_fraction": 0.1, "seed": 0},
        "noise": {"model": "symmetric", "rate": 0.4, "seed": 0},
        "model": {"arch": "mlp", "options": {"widths": [width] * 3}},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": epochs, "seed": 0,
                  "device": device.type},
        "probe": {"schedule": "every", "probes": ["dynamics"]},
        "grid": {"train": {"seed": list(range(k))}},
        "sweep": {"threads_per_run": threads},
    }


def time_sweep(raw: dict, root: Path, name: str, pack: bool) -> tuple[float, float, list[str]]:
    """(wall s, process CPU s, packing lines) of one sweep run to completion."""
    from noisescope.sweep import LocalExecutor, run_sweep, sweep_from_dict

    raw = {**raw, "sweep": {**raw["sweep"], "root": str(root), "name": name, "pack": pack}}
    spec = sweep_from_dict(raw)
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_sweep(spec, LocalExecutor(1))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if len(result.ids("complete")) != len(spec.points):
        raise RuntimeError(f"sweep {name}: not every run completed: {result.outcomes}")
    return wall, cpu, result.packing


def sweep_figure(args: argparse.Namespace, device: torch.device) -> None:
    k, width, n, epochs = args.sweep_k, args.sweep_width, args.sweep_n, args.sweep_epochs
    print(f"\nend to end: a sweep of {k} seeds, MLP 3x{width}, Fashion-MNIST subset {n} (90% train), "
          f"{epochs} epochs, dynamics probe every epoch, local executor in this process, device {device}")
    raw = sweep_raw(k, width, n, epochs, device, args.threads)
    cpu = device.type == "cpu"
    with tempfile.TemporaryDirectory(prefix="bench_packed_") as tmp:
        root = Path(tmp)
        warm = sweep_raw(2, width, 1000, 1, device, args.threads)
        for pack in (False, True):  # imports, kernels, allocator
            time_sweep(warm, root, f"warm-{pack}", pack)
        times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        lines: list[str] = []
        for r in range(args.sweep_repeats):
            for pack in (False, True) if r % 2 == 0 else (True, False):
                wall, cpu_s, packing = time_sweep(raw, root, f"r{r}-{pack}", pack)
                times[pack].append((wall, cpu_s))
                lines = packing if pack else lines
    clock = 1 if cpu else 0  # CPU time on a CPU (robust to other jobs), wall time on a GPU
    print("packing: " + "; ".join(lines))
    print(f"{'variant':<28} {'wall s':>8} {'CPU s':>8} {'runs/h':>8} {'ratio':>6}")
    med = {p: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for p, ts in times.items()}
    base = med[False][clock]
    for pack, label in ((False, "one after another (pack=false)"), (True, "packed sweep (pack=true)")):
        wall, cpu_s = med[pack]
        t = (wall, cpu_s)[clock]
        print(f"{label:<28} {wall:>8.2f} {cpu_s:>8.2f} {k * 3600 / t:>8.0f} {base / t:>5.2f}x")
    print(f"runs/h = {k} runs of {epochs} epochs per hour from {'process CPU' if cpu else 'wall'} time "
          f"(median of {args.sweep_repeats}); ratio = one-after-another time / packed time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 256, 512])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per variant (median), interleaved")
    ap.add_argument("--batches", type=int, default=20,
                    help="time windows of this many batches, scaled to one epoch (0 = whole epochs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run-epochs", type=int, default=50, help="epochs of one run, for runs/h (the demo: 50)")
    ap.add_argument("--quick", action="store_true", help="n=3000, widths 64 256, K 1 4 8, 3 epochs")
    ap.add_argument("--gpu-only", action="store_true", help="run on CUDA only; 'not measured' without one")
    ap.add_argument("--no-sweep", action="store_true", help="skip the end-to-end sweep figure")
    ap.add_argument("--only-sweep", action="store_true", help="only the end-to-end sweep figure")
    ap.add_argument("--sweep-k", type=int, default=8, help="seeds in the end-to-end sweep")
    ap.add_argument("--sweep-width", type=int, default=64)
    ap.add_argument("--sweep-n", type=int, default=10_000, help="Fashion-MNIST subset (train + validation)")
    ap.add_argument("--sweep-epochs", type=int, default=3)
    ap.add_argument("--sweep-repeats", type=int, default=1, help="timed sweeps per variant (median), interleaved")
    args = ap.parse_args()
    if args.quick:
        args.n, args.widths, args.ks, args.epochs, args.batches = 3000, [64, 256], [1, 4, 8], 3, 0
    if args.gpu_only:
        if not torch.cuda.is_available():
            print("GPU: not measured (no CUDA device)")
            return
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
    torch.set_num_threads(args.threads)
    if args.only_sweep:
        sweep_figure(args, device)
        return
    window = f"windows of {args.batches} batches scaled to an epoch" if args.batches else "whole epochs"
    print(f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", torch {torch.__version__}, torch threads {torch.get_num_threads()}, n {args.n}, batch 128, "
          f"Adam, MLP 3 hidden layers, median of {args.epochs} timed {window}")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.n, 1, 28, 28), dtype=torch.uint8, generator=g).to(device)
    ys = [torch.randint(0, 10, (args.n,), generator=g).to(device) for _ in range(max(args.ks))]
    cpu = device.type == "cpu"
    clock = "CPU" if cpu else "wall"
    print(f"speedup and runs/h from {clock} time per epoch"
          + (" (process CPU time: robust to other jobs on a shared machine; wall time shown too)" if cpu else ""))
    head = (f"{'width':>5} {'K':>3} {'seq wall':>8} {'pack wall':>9} {'seq ' + clock:>8} {'pack ' + clock:>9} "
            f"{'seq runs/h':>10} {'pack runs/h':>11} {'speedup':>7} {'seq MiB/mbr':>11} {'pack MiB/mbr':>12}")
    if not cpu:
        head += f" {'seq peak MiB':>12} {'pack peak MiB':>13}"
    print(head)
    for width in args.widths:
        for k in args.ks:
            r = measure(width, k, x, ys, args.epochs, args.batches or None, device)
            seq_t, pack_t = (r["seq_cpu"], r["pack_cpu"]) if cpu else (r["seq"], r["pack"])
            seq_rph = k * 3600 / (seq_t * args.run_epochs)  # K runs of run_epochs, one after another
            pack_rph = k * 3600 / (pack_t * args.run_epochs)  # K runs of run_epochs, packed
            line = (f"{width:>5} {k:>3} {r['seq']:>8.3f} {r['pack']:>9.3f} {seq_t:>8.3f} {pack_t:>9.3f} "
                    f"{seq_rph:>10.1f} {pack_rph:>11.1f} {seq_t / pack_t:>6.2f}x "
                    f"{r['seq_bytes'] / 2**20:>11.2f} {r['pack_bytes'] / 2**20:>12.2f}")
            if not cpu:
                line += f" {r['mem'].get('seq', float('nan')):>12.1f} {r['mem'].get('pack', float('nan')):>13.1f}"
            print(line, flush=True)
    if cpu:
        print(f"peak RSS of the whole process: {peak_rss_mib():.0f} MiB")
    print(f"times in s per epoch (median); runs/h = {args.run_epochs}-epoch runs of {args.n} samples per hour; "
          "MiB/mbr = parameters + gradients + optimizer state (+ packed scratch) per member")
    if not args.no_sweep:
        sweep_figure(args, device)


if __name__ == "__main__":
    main()
