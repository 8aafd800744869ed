"""Device-resident pipeline vs a standard DataLoader with per-sample transforms.

Same data (CIFAR-10-shaped uint8 images, random), same run, same recipe: shuffle, random
crop with 4-pixel zero padding, horizontal flip, per-channel normalization, batch 128.

1. Data path alone: every augmented, normalized batch of one epoch, no model.
   TensorPipeline (batched tensor ops on the device) vs ``torch.utils.data.DataLoader`` over
   a map-style dataset whose ``__getitem__`` transforms one sample, in two flavours: the
   standard torchvision CIFAR-10 recipe (PIL image: pad, crop, flip, to tensor, normalize)
   and the same with torch tensor ops (the faster, more generous baseline). Each runs with
   0 and with ``--workers`` worker processes; the faster counts. Target: >= 10x on CPU.
2. One training epoch of a small PreAct-ResNet18 (width ``--width``), both ways (the
   DataLoader in its tensor flavour).
3. On a CUDA GPU only: PreAct-ResNet18 k = 64 training epoch on 50,000 CIFAR-shaped images
   with bf16 autocast, channels_last and torch.compile; images/s, the fraction of the GPU's
   dense bf16 peak, and the projected time of Nakkiran's 4000-epoch run (target < 3 h, H100).

Each figure is the minimum over a few epochs, as wall time and as CPU time (this process's
threads plus the loader's finished worker processes): on a shared machine the CPU time is
the steadier measure of cost.
Usage: .venv/bin/python benchmarks/bench_pipeline.py [--quick] [--threads 1] [--gpu-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader

from noisescope import accel
from noisescope.augment import Augment
from noisescope.models.resnet import build_preact_resnet18
from noisescope.pipeline import TensorPipeline

MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10 channel statistics (pixel / 255)
STD = (0.2470, 0.2435, 0.2616)
BATCH = 128
# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets.
BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L4": 121e12}


class PerSampleCifar(torch.utils.data.Dataset):
    """The usual recipe, one sample at a time: pad, random crop, random flip, scale, normalize.

    ``mode="tensor"``: torch ops on a (C, H, W) uint8 tensor (like torchvision's tensor
    transforms). ``mode="pil"``: what ``torchvision.datasets.CIFAR10`` with ``RandomCrop(32,
    padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()`` and ``Normalize`` does: an HWC
    uint8 array made into a PIL image, padded, cropped and mirrored in PIL, then converted.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, mode: str = "tensor", pad: int = 4
    ) -> None:
        self.y, self.pad, self.mode = y, pad, mode
        self.x = x if mode == "tensor" else x.permute(0, 2, 3, 1).contiguous().numpy()
        self.mean = torch.tensor(MEAN).view(-1, 1, 1)
        self.std = torch.tensor(STD).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        p = self.pad
        oy, ox = torch.randint(0, 2 * p + 1, (2,)).tolist()
        flip = bool(torch.rand(()) < 0.5)
        if self.mode == "tensor":
            img = self.x[i]
            _, h, w = img.shape
            img = F.pad(img, (p, p, p, p))[:, oy : oy + h, ox : ox + w]
            if flip:
                img = img.flip(-1)
            img = img.float().div_(255.0)
        else:
            pil = Image.fromarray(self.x[i])
            w, h = pil.size
            pil = ImageOps.expand(pil, border=p, fill=0).crop((ox, oy, ox + w, oy + h))
            if flip:
                pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            arr = np.asarray(pil)
            img = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
        return (img - self.mean) / self.std, self.y[i], i


def fake_cifar(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return x, torch.randint(0, 10, (n,), generator=g)


def device_pipeline(x, y, device, channels_last: bool = False) -> TensorPipeline:
    return TensorPipeline(x, y, BATCH, shuffle=True, seed=0, device=device,
                          augment=Augment(4, True),
                          mean=MEAN, std=STD, channels_last=channels_last)


def loader(x, y, workers: int, mode: str = "tensor") -> DataLoader:
    return DataLoader(PerSampleCifar(x, y, mode), batch_size=BATCH, shuffle=True,
                      num_workers=workers)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its finished children (loader workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def best_time(epoch: Callable[[int], None], repeats: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one epoch, each the minimum over ``repeats`` epochs."""
    walls, cpus = [], []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), cpu_seconds()
        epoch(r)
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return min(walls), min(cpus)


def drain(batches: Iterable, sync: Callable[[], None] = lambda: None) -> Callable[[int], None]:
    def run(epoch: int) -> None:
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        n = 0
        for xb, _yb, _idx in batches:
            n += len(xb)
        sync()
    return run


def train_epochs(model, batches, opt, plan: accel.AccelPlan) -> Callable[[int], None]:
    step = accel.compiled(model, plan)

    def run(epoch: int) -> None:
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        model.train()
        meter = accel.DeviceMean(plan.device)
        for xb, yb, _idx in batches:
            xb, yb = xb.to(plan.device, non_blocking=True), yb.to(plan.device, non_blocking=True)
            with accel.autocast(plan):
                loss = F.cross_entropy(step(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            meter.add(loss, len(yb))
        meter.value()  # the one host sync per epoch
    return run


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def row(name: str, wall: float, cpu: float, n: int) -> None:
    print(f"   {name:<31} {wall:8.3f} s wall  {cpu:8.3f} s CPU  {n / wall:9.0f} img/s")


def cpu_benchmarks(args: argparse.Namespace) -> None:
    n_data, n_model, repeats = (10_000, 1_000, 2) if args.quick else (50_000, 3_000, 2)
    x, y = fake_cifar(n_data)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"\n1. data path, one epoch of {n_data} CIFAR-shaped images, batch {BATCH}, "
          f"crop(pad 4) + flip + normalize, min of {repeats}")
    cpu = torch.device("cpu")
    t_dev = best_time(drain(device_pipeline(x, y, cpu)), repeats)
    row("TensorPipeline (cpu)", *t_dev, n_data)
    base = {}
    for mode in ("tensor", "pil"):
        for workers in sorted({0, args.workers}):
            base[mode, workers] = best_time(drain(loader(x, y, workers, mode)), repeats)
            row(f"DataLoader, {mode}, {workers} workers", *base[mode, workers], n_data)
    for mode in ("tensor", "pil"):
        w = min((k for k in base if k[0] == mode), key=lambda k: base[k][0])
        print(f"   speed-up vs fastest {mode:<6} DataLoader ({w[1]} workers): "
              f"{base[w][0] / t_dev[0]:5.1f} x wall, {base[w][1] / t_dev[1]:5.1f} x CPU time")
    best = min((k for k in base if k[0] == "tensor"), key=lambda k: base[k][0])[1]

    print(f"\n2. one training epoch, PreAct-ResNet18 width {args.width}, {n_model} images, "
          f"Adam, fp32, min of {repeats}")
    xm, ym = x[:n_model], y[:n_model]
    plan = accel.plan(cpu)
    times = {}
    for name, batches in (("TensorPipeline", device_pipeline(xm, ym, cpu)),
                          (f"DataLoader ({best} workers)", loader(xm, ym, best))):
        torch.manual_seed(0)
        model = build_preact_resnet18((3, 32, 32), 10, width=args.width)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        times[name] = best_time(train_epochs(model, batches, opt, plan), repeats)
        row(name, *times[name], n_model)
    (w_a, c_a), (w_b, c_b) = times.values()
    print(f"   speed-up: {w_b / w_a:.2f} x wall, {c_b / c_a:.2f} x CPU time")


def gpu_benchmark(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        print("\n3. GPU: not measured (no CUDA device on this machine)")
        return
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    n = 50_000
    x, y = fake_cifar(n)
    torch.manual_seed(0)
    model = build_preact_resnet18((3, 32, 32), 10, width=64)
    plan = accel.plan(dev, precision="bf16", compile=not args.no_compile, model=model)
    accel.configure_backends(plan)
    model = accel.prepare_model(model, plan)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = device_pipeline(x, y, dev, channels_last=plan.channels_last)
    from torch.utils.flop_counter import FlopCounterMode

    probe = torch.randn(BATCH, 3, 32, 32, device=dev)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(probe), torch.zeros(BATCH, dtype=torch.long, device=dev)).backward()
    opt.zero_grad(set_to_none=True)
    flops_per_image = counter.get_total_flops() / BATCH
    run = train_epochs(model, batches, opt, plan)
    run(0)  # warm-up: compilation, cuDNN autotuning
    torch.cuda.synchronize()
    t = best_time(run, 2)
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    achieved = flops_per_image * n / t
    print(f"\n3. GPU {name}: PreAct-ResNet18 k=64, {n} images, batch {BATCH}, Adam, "
          f"plan {plan.to_dict()}")
    print(f"   epoch {t:.2f} s, {n / t:.0f} img/s, {flops_per_image / 1e9:.2f} GFLOP/img (fwd+bwd)")
    if peak:
        print(f"   {achieved / 1e12:.1f} TFLOP/s = {100 * achieved / peak:.1f}% of dense bf16 peak")
    print(f"   4000 epochs: {4000 * t / 3600:.2f} h (target < 3 h on one H100)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer images, one repeat")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1 suits a shared CPU: no spinning threads)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers to compare")
    ap.add_argument("--width", type=int, default=8, help="ResNet width k for section 2")
    ap.add_argument("--gpu-only", action="store_true", help="skip the CPU sections")
    ap.add_argument("--no-compile", action="store_true", help="GPU section without torch.compile")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.gpu_only:
        cpu_benchmarks(args)
    gpu_benchmark(args)


if __name__ == "__main__":
    main()
