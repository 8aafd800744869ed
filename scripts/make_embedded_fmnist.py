"""Build the Fashion-MNIST subset embedded in noisescope (``src/noisescope/assets/``).

Deterministic: the rows are exactly those ``load_dataset("fashion_mnist", subset=TRAIN,
test_subset=TEST, seed=SEED)`` takes from the full dataset (a seeded class-balanced subset of
the training set with ``seed``, of the test set with ``seed + 1``), written as gzip IDX files
(compression level 9, no name, timestamp 0) so the same inputs give byte-identical outputs.
The source files must be the full dataset (60000 + 10000 images); their MD5 (of the .gz, which
Debian re-compresses) and the SHA-256 of their content are recorded. Beside the data it writes
``fashion_mnist_embedded.json`` (the recipe, the source files' MD5 / SHA-256, every asset's size
and SHA-256, the class counts and the source rows of both splits) and the MIT licence notice.

    python scripts/make_embedded_fmnist.py [--source /usr/share/datasets/fashion-mnist]
        [--out src/noisescope/assets] [--train 10000] [--test 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import struct
from pathlib import Path

import numpy as np
import torch

from noisescope.data.download import SOURCES
from noisescope.data.embedded import LICENSE, MANIFEST, asset_name
from noisescope.data.idx import FILES, parse_idx
from noisescope.data.splits import balanced_subset

LICENSE_TEXT = """\
Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist)

The files fashion_mnist_embedded-*.gz in this folder are a subset of Fashion-MNIST
(10000 training and 5000 test images with their labels; fashion_mnist_embedded.json lists
the rows taken), distributed under the following licence.

The MIT License (MIT)

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def idx_gz(arr: np.ndarray) -> bytes:
    """uint8 array -> gzip'd IDX bytes (type 0x08, big-endian dims), deterministic."""
    if arr.dtype != np.uint8:
        raise ValueError(f"only uint8 arrays are written, got {arr.dtype}")
    body = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(body)
    return buf.getvalue()


def build(source: Path, out: Path, n_train: int, n_test: int, seed: int) -> dict:
    """Write the assets to ``out`` and return the manifest (see the module docstring)."""
    expected = {f.filename: f.md5 for f in SOURCES["fashion-mnist"].files}
    src_files, arrays = {}, {}
    for key, stem in FILES.items():
        path = source / f"{stem}.gz"
        packed = path.read_bytes()
        md5 = hashlib.md5(packed).hexdigest()
        raw = gzip.decompress(packed)
        src_files[key] = {"file": path.name, "gz_md5": md5, "canonical_gz": md5 == expected[path.name],
                          "content_sha256": hashlib.sha256(raw).hexdigest()}
        if md5 != expected[path.name]:
            print(f"note: {path} is not the canonical .gz (MD5 {md5}; re-compressed, e.g. by Debian); "
                  "its decompressed content is recorded by SHA-256")
        arrays[key] = parse_idx(raw, str(path))
    shapes = {k: a.shape for k, a in arrays.items()}
    if shapes != {"train_images": (60000, 28, 28), "train_labels": (60000,), "test_images": (10000, 28, 28),
                  "test_labels": (10000,)}:
        raise SystemExit(f"{source}: not the full Fashion-MNIST (shapes {shapes})")
    y_train = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    y_test = torch.from_numpy(arrays["test_labels"].astype(np.int64))
    rows = {
        "train": balanced_subset(y_train, n_train, seed, 10).numpy(),
        "test": balanced_subset(y_test, n_test, seed + 1, 10).numpy(),
    }
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for key in FILES:
        split = key.split("_")[0]
        data = idx_gz(arrays[key][rows[split]])
        name = asset_name(key)
        (out / name).write_bytes(data)
        files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (out / LICENSE).write_text(LICENSE_TEXT, encoding="utf-8")
    counts = {s: np.bincount(arrays[f"{s}_labels"][r], minlength=10).tolist() for s, r in rows.items()}
    manifest = {
        "dataset": "Fashion-MNIST",
        "licence": "MIT",
        "copyright": "Copyright (c) 2017 Zalando SE",
        "licence_file": LICENSE,
        "homepage": SOURCES["fashion-mnist"].homepage,
        "of": {"train": len(y_train), "test": len(y_test)},
        "selection": {
            "recipe": (f"load_dataset('fashion_mnist', subset={n_train}, test_subset={n_test}, seed={seed}): "
                       f"balanced_subset(y_train, {n_train}, seed={seed}) and "
                       f"balanced_subset(y_test, {n_test}, seed={seed + 1}), rows sorted ascending"),
            "seed": seed, "train": n_train, "test": n_test,
        },
        "source_files": src_files,
        "files": files,
        "class_counts": counts,
        "index_sha256": {s: hashlib.sha256(r.astype("<i8").tobytes()).hexdigest() for s, r in rows.items()},
        "train_index": rows["train"].tolist(),
        "test_index": rows["test"].tolist(),
    }
    # the row lists go on one line each: the file stays small and readable
    head = {k: v for k, v in manifest.items() if not k.endswith("_index")}
    text = json.dumps(head, indent=1)[:-2] + "".join(
        f',\n "{s}_index": {json.dumps(manifest[f"{s}_index"], separators=(",", ":"))}' for s in ("train", "test")
    ) + "\n}"
    assert json.loads(text) == manifest
    (out / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return manifest


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--out", type=Path, default=root / "src" / "noisescope" / "assets")
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--test", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    m = build(args.source, args.out, args.train, args.test, args.seed)
    total = sum(f["bytes"] for f in m["files"].values())
    for name, f in m["files"].items():
        print(f"{args.out / name}: {f['bytes']} bytes, sha256 {f['sha256']}")
    print(f"total {total} bytes ({total / 2**20:.2f} MiB); train {m['class_counts']['train']}, "
          f"test {m['class_counts']['test']}")


if __name__ == "__main__":
    main()
