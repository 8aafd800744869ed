"""Data loaders, file formats, splits and the noisy dataset (known answers)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from noisescope.data import (
    Normalizer,
    balanced_subset,
    load_dataset,
    make_noisy_dataset,
    normalize,
    stratified_split,
)
from noisescope.data import download as dl
from noisescope.data.cifar import UnsafePickleError, extract_archive, safe_load_pickle
from noisescope.data.download import DataNotFoundError
from noisescope.data.idx import read_idx
from noisescope.data.splits import apportion
from noisescope.noise import apply_noise

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def no_data_dirs(tmp_path, monkeypatch):
    """Point every search location at empty temporary folders."""
    monkeypatch.setenv("NOISESCOPE_DATA", str(tmp_path / "nsdata"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(dl, "SYSTEM_DIR", tmp_path / "system")
    return tmp_path


# ---------------------------------------------------------------- IDX (MNIST / Fashion-MNIST)


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    """Independent IDX writer: magic 0 0 type ndim, big-endian uint32 dims, big-endian data."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    head = bytes([0, 0, code[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body = head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if gz:
        body = gzip.compress(body)
    path.write_bytes(body)


def fake_mnist(folder: Path, n: int = 30, n_test: int = 20, gz: bool = True) -> dict:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for name, a in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), a, gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_reads_real_format(tmp_path, gz, no_data_dirs):
    arrays = fake_mnist(tmp_path / "m", gz=gz)
    ds = load_dataset("mnist", root=tmp_path / "m")
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.y_train.dtype == torch.int64 and ds.num_classes == 10


def test_idx_other_dtypes_and_corruption(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    write_idx(tmp_path / "a.idx", a, gz=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)
    f = np.linspace(-1, 1, 6, dtype=np.float32)
    write_idx(tmp_path / "f.idx.gz", f, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx.gz"), f)
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "cut.idx").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "cut.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad.idx")


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist_from_system_dir():
    ds = load_dataset("fashion_mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8
    assert torch.equal(torch.bincount(ds.y_train), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.y_test), torch.full((10,), 1000))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


def test_missing_files_message_names_files_and_folders(no_data_dirs):
    with pytest.raises(DataNotFoundError) as exc:
        load_dataset("mnist")
    msg = str(exc.value)
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(no_data_dirs / "nsdata" / "mnist") in msg
    assert str(no_data_dirs / "system" / "mnist") in msg
    assert "download=True" in msg
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10")


# ---------------------------------------------------------------- CIFAR pickles


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote: str/bytes as BINSTRING, protocol 2."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_binstring(self, obj):
        b = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    dispatch[bytes] = _save_binstring
    dispatch[str] = _save_binstring


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 2 names its module numpy._core; the official files name numpy.core
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def fake_cifar10(folder: Path, per_batch: int = 4) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        data = cifar_images(per_batch, k)
        lab = [(k + i) % 10 for i in range(per_batch)]
        d = {b"batch_label": f"batch {k}".encode(), b"labels": lab, b"data": data,
             b"filenames": [f"img_{k}_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(py2_pickle(d))
        out[name] = (data, lab)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck"]
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [c.encode() for c in classes],
            b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return out


def test_cifar10_reader_real_format(tmp_path, no_data_dirs):
    raw = fake_cifar10(tmp_path / "c" / "cifar-10-batches-py")
    assert b"cnumpy.core.multiarray\n_reconstruct" in (tmp_path / "c/cifar-10-batches-py/test_batch"
                                                         ).read_bytes()
    ds = load_dataset("cifar10", root=tmp_path / "c")
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    data, lab = raw["data_batch_2"]
    img = ds.x_train[4 + 1]  # second image of the second batch
    # row layout: 1024 red, 1024 green, 1024 blue, each 32x32 row-major
    assert img[0, 0, 0] == data[1, 0] and img[1, 0, 0] == data[1, 1024]
    assert img[2, 31, 31] == data[1, 3071] and img[0, 1, 2] == data[1, 32 + 2]
    assert ds.y_train[4:8].tolist() == lab
    assert ds.y_test.tolist() == raw["test_batch"][1]
    assert ds.classes[1] == "automobile"


def test_cifar100_fine_and_coarse(tmp_path, no_data_dirs):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in [("train", 6), ("test", 3)]:
        d = {b"data": cifar_images(n, n), b"fine_labels": [99 - i for i in range(n)],
             b"coarse_labels": [19 - i for i in range(n)], b"filenames": [b"x"] * n}
        (folder / name).write_bytes(py2_pickle(d))
    meta = {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(py2_pickle(meta))
    fine = load_dataset("cifar100", root=tmp_path)
    assert fine.num_classes == 100 and fine.y_train.tolist() == [99, 98, 97, 96, 95, 94]
    assert fine.classes[99] == "f99"
    coarse = load_dataset("cifar100", root=tmp_path, label_type="coarse")
    assert coarse.num_classes == 20 and coarse.y_test.tolist() == [19, 18, 17]
    assert coarse.classes[0] == "c0"


class Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_cifar_reader_refuses_code_execution(tmp_path, no_data_dirs):
    folder = tmp_path / "cifar-10-batches-py"
    fake_cifar10(folder)
    marker = tmp_path / "pwned"
    evil = {b"data": cifar_images(2, 0), b"labels": [0, 1], b"x": Evil(str(marker))}
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    refused = r"refusing to unpickle: it asks for (posix|os)\.system"
    with pytest.raises(UnsafePickleError, match=refused):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()
    (tmp_path / "eval.pkl").write_bytes(
        b"cbuiltins\neval\n(Vprint('hi')\ntR.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_load_pickle(tmp_path / "eval.pkl")
    # object arrays are refused too (they would unpickle arbitrary objects)
    (tmp_path / "obj.pkl").write_bytes(pickle.dumps(np.array([1, None], dtype=object)))
    with pytest.raises(UnsafePickleError):
        safe_load_pickle(tmp_path / "obj.pkl")


def test_archive_extraction_refuses_path_traversal(tmp_path):
    import tarfile

    payload = tmp_path / "p.txt"
    payload.write_text("x")
    with tarfile.open(tmp_path / "bad.tar.gz", "w:gz") as tar:
        tar.add(payload, arcname="../escape.txt")
    with pytest.raises(ValueError, match="unsafe archive member"):
        extract_archive(tmp_path / "bad.tar.gz", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


# ---------------------------------------------------------------- synthetic, digits, arrays


def test_synthetic_shapes_meta_and_seed():
    a = load_dataset("synthetic", n=300, n_test=100, dim=40, k_star=5, num_classes=4, seed=3)
    b = load_dataset("synthetic", n=300, n_test=100, dim=40, k_star=5, num_classes=4, seed=3)
    c = load_dataset("synthetic", n=300, n_test=100, dim=40, k_star=5, num_classes=4, seed=4)
    assert a.meta["k_star"] == 5 and a.meta["clusters_per_class"] == 2
    assert a.x_train.shape == (300, 40) and a.x_test.shape == (100, 40)
    assert a.x_train.dtype == torch.float32 and a.num_classes == 4
    assert torch.equal(torch.bincount(a.y_train), torch.full((4,), 75))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_synthetic_spectrum_and_probe_valley_at_k_star():
    k, dim = 9, 200
    ds = load_dataset("synthetic", n=1000, n_test=2000, dim=dim, k_star=k, seed=0)
    noisy = make_noisy_dataset(ds, "symmetric", 0.4, val_fraction=0.0, seed=0)
    x = noisy.x_train.double()
    mu = x.mean(0)
    evals, vecs = torch.linalg.eigh((x - mu).T @ (x - mu) / len(x))
    evals, vecs = evals.flip(0), vecs.flip(1)
    # k* spikes clearly above the bulk (population: signal^2 + noise^2 = 3.25 vs 1)
    assert evals[k - 1] > 2.5 and evals[k] < 2.0
    z, zt = (x - mu) @ vecs, (ds.x_test.double() - mu) @ vecs
    onehot = torch.nn.functional.one_hot(noisy.y_train, 10).double()

    def probe(d: int) -> float:
        ones, ones_t = torch.ones(len(z), 1, dtype=z.dtype), torch.ones(len(zt), 1, dtype=z.dtype)
        w = torch.linalg.lstsq(torch.cat([z[:, :d], ones], 1), onehot).solution
        pred = (torch.cat([zt[:, :d], ones_t], 1) @ w).argmax(1)
        return float((pred == ds.y_test).double().mean())

    grid = [1, 3, 5, 7, 9, 11, 15, 25, 50, 100, 200]
    acc = {d: probe(d) for d in grid}
    best = max(acc.values())
    assert acc[k] >= best - 0.01  # the optimum sits at k*
    assert acc[k] - acc[3] > 0.3  # too few directions miss signal
    assert acc[k] - acc[dim] > 0.1  # the noise directions overfit the noisy labels


def test_digits():
    ds = load_dataset("digits", seed=0)
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.x_train.dtype == torch.uint8
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert len(ds.y_test) == round(0.25 * 1797)
    assert int(ds.x_train.max()) == 255
    from sklearn.datasets import load_digits

    ref = load_digits()
    grey = set(np.unique(ref.images).tolist())
    assert set(torch.unique(ds.x_train).tolist()) <= {round(v * 255 / 16) for v in grey}
    again = load_dataset("digits", seed=0)
    assert torch.equal(ds.y_test, again.y_test)


def test_arrays_from_numpy_torch_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5))
    y = np.arange(100) % 4
    ds = load_dataset("arrays", x_train=x, y_train=y, test_fraction=0.2)
    assert ds.num_classes == 4 and len(ds.y_test) == 20 and len(ds.y_train) == 80
    assert ds.x_train.dtype == torch.float32
    ds2 = load_dataset("arrays", x_train=torch.from_numpy(x), y_train=torch.from_numpy(y),
                       x_test=x[:10], y_test=y[:10].astype(float), num_classes=6)
    assert ds2.num_classes == 6 and len(ds2.y_train) == 100
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:7], y_test=y[:7])
    ds3 = load_dataset("arrays", path=tmp_path / "d.npz")
    assert len(ds3.y_test) == 7 and torch.allclose(ds3.x_train.double(), torch.from_numpy(x))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x_train": np.zeros((5, 2)), "y_train": np.zeros(4)},
         "x_train has 5 rows but y_train has 4"),
        ({"x_train": np.zeros((4, 2)), "y_train": [0, 1, -1, 0]}, "must be >= 0"),
        ({"x_train": np.zeros((4, 2)), "y_train": [0, 1.5, 1, 0]}, "integer class indices"),
        ({"x_train": np.full((4, 2), np.nan), "y_train": [0, 1, 1, 0]}, "NaN"),
        ({"x_train": np.zeros(4), "y_train": [0, 1, 1, 0]}, "at least 2 dims"),
        ({"x_train": np.zeros((4, 2)), "y_train": [0, 1, 1, 0], "num_classes": 1},
         "labels go up to 1"),
    ],
)
def test_arrays_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("arrays", **kwargs)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; choose from"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="has no option 'kstar'; its options: n"):
        load_dataset("synthetic", kstar=3)


# ---------------------------------------------------------------- splits and noisy dataset


def test_apportion_sums_and_bounds():
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([0.1, 0.3, 0.0, 0.6, 0.25])
    for total in [0, 1, 7, 100, 1001]:
        a = apportion(w, total, g)
        assert int(a.sum()) == total and a[2] == 0
        assert ((a - total * w / w.sum()).abs() < 1).all()


def test_balanced_subset_equal_counts_and_seeded():
    y = torch.from_numpy(np.random.default_rng(0).integers(0, 5, 2000))
    a = balanced_subset(y, 500, seed=1)
    assert torch.equal(torch.bincount(y[a], minlength=5), torch.full((5,), 100))
    assert len(torch.unique(a)) == 500 and torch.equal(a, torch.sort(a).values)
    assert torch.equal(a, balanced_subset(y, 500, seed=1))
    assert not torch.equal(a, balanced_subset(y, 500, seed=2))
    odd = balanced_subset(y, 503, seed=1)
    counts = torch.bincount(y[odd], minlength=5)
    assert int(counts.sum()) == 503 and int(counts.max() - counts.min()) == 1
    with pytest.raises(ValueError, match="only .* exist; choose subset <="):
        balanced_subset(y, 1990, seed=0)


def test_load_dataset_subset_records_source_rows():
    full = load_dataset("digits", seed=3)  # the seed also fixes digits' train/test split
    ds = load_dataset("digits", subset=200, test_subset=50, seed=3)
    assert torch.equal(torch.bincount(ds.y_train), torch.full((10,), 20))
    assert torch.equal(torch.bincount(ds.y_test), torch.full((10,), 5))
    assert torch.equal(full.x_train[ds.train_index], ds.x_train)
    assert ds.meta["subset"] == {"size": 200, "seed": 3, "of": len(full.y_train)}


def test_stratified_split_disjoint_and_proportional():
    y = torch.from_numpy(np.random.default_rng(1).integers(0, 7, 3001))
    keep, held = stratified_split(y, 0.15, seed=0)
    assert len(held) == round(0.15 * 3001)
    assert len(np.intersect1d(keep.numpy(), held.numpy())) == 0
    assert torch.equal(torch.sort(torch.cat([keep, held])).values, torch.arange(3001))
    sizes = torch.bincount(y, minlength=7).double()
    assert ((torch.bincount(y[held], minlength=7) - 0.15 * sizes).abs() < 1).all()
    k2, h2 = stratified_split(y, 0.15, seed=0)
    assert torch.equal(h2, held)
    assert not torch.equal(stratified_split(y, 0.15, seed=1)[1], held)


def test_make_noisy_dataset_val_noisy_test_clean():
    n = 2000
    x = np.arange(n, dtype=np.float32)[:, None].repeat(2, 1)  # row id encoded in the input
    y = np.arange(n) % 10
    ds = load_dataset("arrays", x_train=x, y_train=y, x_test=x[:100], y_test=y[:100])
    nd = make_noisy_dataset(ds, "symmetric", 0.3, val_fraction=0.2, seed=0, noise_seed=5,
                            noise_options={"exact": True})
    tr, va = nd.x_train[:, 0].long(), nd.x_val[:, 0].long()
    assert len(va) == 400 and len(np.intersect1d(tr.numpy(), va.numpy())) == 0
    assert torch.equal(torch.bincount(nd.y_val_true), torch.full((10,), 40))  # stratified
    ref = apply_noise(ds.y_train, 10, "symmetric", 0.3, seed=5, exact=True)
    assert torch.equal(nd.y_train, ref.labels[tr]) and torch.equal(nd.y_val, ref.labels[va])
    assert torch.equal(nd.y_train_true, ds.y_train[tr])
    assert torch.equal(nd.y_test, ds.y_test)  # test stays clean
    assert nd.noise["realized_rate"] == pytest.approx(0.3)
    assert nd.noise["val"]["realized_rate"] == pytest.approx(float((nd.y_val != nd.y_val_true)
                                                                   .float().mean()))
    assert 0.2 < nd.noise["val"]["realized_rate"] < 0.4
    assert nd.noise_mask.float().mean().item() == pytest.approx(nd.noise["train"]["realized_rate"])
    # the split does not depend on the noise
    clean = make_noisy_dataset(ds, "none", val_fraction=0.2, seed=0)
    assert torch.equal(clean.x_val, nd.x_val)


def test_make_noisy_dataset_file_noise_follows_subset_rows(tmp_path):
    full = load_dataset("digits", seed=1)
    human = (full.y_train + 1) % 10
    human[::2] = full.y_train[::2]  # half the rows noisy, by source row parity
    np.save(tmp_path / "human.npy", human.numpy())
    ds = load_dataset("digits", subset=300, seed=1)
    nd = make_noisy_dataset(ds, "file", val_fraction=0.0,
                            noise_options={"path": tmp_path / "human.npy"})
    odd = (ds.train_index % 2 == 1)
    assert torch.equal(nd.noise_mask, odd)


def test_normalizer_matches_numpy():
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (50, 3, 4, 4), dtype=np.uint8))
    norm = Normalizer.fit(x, chunk=7)
    ref = x.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(norm.mean, ref.mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(norm.std, ref.std(axis=(0, 2, 3)), rtol=1e-8)
    out = norm(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.double().mean((0, 2, 3)).numpy(), 0, atol=1e-5)
    ds = load_dataset("synthetic", n=200, n_test=50, dim=10, k_star=3, num_classes=4)
    nd = make_noisy_dataset(ds, val_fraction=0.1)
    normed, fitted = normalize(nd)
    assert len(fitted.mean) == 1  # features: one global scale keeps the geometry
    assert abs(float(normed.x_train.mean())) < 1e-5 and abs(float(normed.x_train.std()) - 1) < 1e-2
    assert torch.allclose(normed.x_val, (nd.x_val - fitted.mean[0]) / fitted.std[0])


def test_subset_in_make_noisy_dataset_equals_subset_at_load():
    a = make_noisy_dataset(load_dataset("digits", seed=2), "symmetric", 0.2, subset=400,
                           val_fraction=0.1, seed=2)
    b = make_noisy_dataset(load_dataset("digits", seed=2, subset=400), "symmetric", 0.2,
                           val_fraction=0.1, seed=2)
    assert len(a.y_train) + len(a.y_val) == 400
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert torch.equal(torch.bincount(torch.cat([a.y_train_true, a.y_val_true])),
                       torch.full((10,), 40))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_unpickler_reads_python3_pickles_of_the_same_dict(tmp_path, protocol):
    d = {b"data": cifar_images(3, 1), b"labels": [1, 2, 3], "name": "x", b"n": 3.5}
    (tmp_path / "b.pkl").write_bytes(pickle.dumps(d, protocol=protocol))
    out = safe_load_pickle(tmp_path / "b.pkl")
    assert out.keys() == d.keys() and out[b"labels"] == [1, 2, 3] and out["name"] == "x"
    np.testing.assert_array_equal(out[b"data"], d[b"data"])


def test_the_validation_split_is_independent_of_an_exact_noise_draw_with_the_same_seed():
    from noisescope.data.base import Dataset
    from noisescope.data.noisy import make_noisy_dataset

    n, c = 2000, 10
    y = torch.arange(n) % c
    x = torch.randn(n, 4)
    ds = Dataset(x_train=x, y_train=y, x_test=x[:100], y_test=y[:100], num_classes=c, name="toy")
    data = make_noisy_dataset(ds, noise="symmetric", rate=0.4, noise_seed=0, seed=0, val_fraction=0.2,
                              noise_options={"exact": True})
    val_noisy = float((data.y_val != data.y_val_true).float().mean())
    assert abs(val_noisy - 0.4) < 0.06  # was 1.0: the split and the noise drew the same samples
    assert abs(float(data.noise_mask.float().mean()) - 0.4) < 0.06
