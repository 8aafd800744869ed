"""Memory of 50,000 CIFAR-shaped images held by the training pipeline: uint8 vs float32.

Image data stay uint8 on the device since the one-way-layers redesign; the model standardizes
each batch (``models.base.InputNorm``). Before, inputs were standardized to float32 up front.
Each variant is measured in a fresh subprocess: resident memory (host) after building the
``TensorPipeline`` and one epoch of batches, minus the baseline after imports; on a GPU,
``torch.cuda.max_memory_allocated``. Baseline in the same run: the float32 variant.

Usage: .venv/bin/python benchmarks/bench_input_memory.py [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch
from noisescope.pipeline import TensorPipeline
from noisescope.data.transforms import Normalizer
dtype, device = sys.argv[1], sys.argv[2]
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
torch.set_num_threads(1)
base = rss_mb()
g = torch.Generator().manual_seed(0)
x = torch.randint(0, 256, (50_000, 3, 32, 32), generator=g, dtype=torch.uint8)
y = torch.randint(0, 10, (50_000,), generator=g)
if dtype == "float32":
    x = Normalizer.fit(x)(x)  # the old way: standardized float32 up front
pipe = TensorPipeline(x, y, 512, seed=0, device=device)
del x
n = 0
for xb, yb, _ in pipe:
    n += len(yb)
out = {"rss_mb": rss_mb() - base, "batches_of": n}
if device.startswith("cuda"):
    out["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    res = {}
    for dtype in ("float32", "uint8"):
        out = subprocess.run([sys.executable, "-c", CHILD, dtype, args.device], capture_output=True, text=True,
                             check=True)
        res[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
    key = "cuda_mb" if args.device.startswith("cuda") else "rss_mb"
    where = "device memory (max allocated)" if key == "cuda_mb" else "host resident memory"
    print(f"50,000 x 3 x 32 x 32 images in TensorPipeline on {args.device}, {where}:")
    print(f"  float32 standardized up front (before)  {res['float32'][key]:8.1f} MiB   (baseline)")
    print(f"  uint8, standardized per batch (now)     {res['uint8'][key]:8.1f} MiB   "
          f"{res['float32'][key] / res['uint8'][key]:.2f}x less")
    print(f"  raw sizes: uint8 {50_000 * 3072 / 2**20:.1f} MiB, float32 {50_000 * 3072 * 4 / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
