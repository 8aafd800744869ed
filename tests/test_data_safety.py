"""Hostile, broken and degenerate data: refused with one line naming the file, never a crash."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import fake_cifar10, fake_mnist, write_idx

from noisescope.data import (
    DataFileError,
    DegenerateDataError,
    check_dataset,
    load_dataset,
    make_noisy_dataset,
)
from noisescope.data import download as dl
from noisescope.data.base import Dataset
from noisescope.data.cifar import extract_archive
from noisescope.data.idx import read_idx
from noisescope.data.safepickle import UnsafePickleError, read_torch_file, safe_load_pickle, safe_loads
from noisescope.noise import apply_noise
from noisescope.noise.file import read_label_file

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct


@pytest.fixture
def no_data_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISESCOPE_DATA", str(tmp_path / "nsdata"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(dl, "SYSTEM_DIR", tmp_path / "system")
    return tmp_path


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert isinstance(exc.value, ValueError)  # the command line turns ValueErrors into one-line data errors
    return msg


# ---------------------------------------------------------------- crafted pickles


class Crafted:
    """Pickles as ``func(*args)`` followed by BUILD ``state`` (what a hostile file can say)."""

    def __init__(self, func, args, state=None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def crafted_dtype(code: str, state: tuple) -> Crafted:
    return Crafted(np.dtype, (code, False, True), state)


def crafted_array(shape: tuple, dtype, data, version: int = 1) -> Crafted:
    return Crafted(_reconstruct, (np.ndarray, (0,), b"b"), (version, shape, dtype, False, data))


PLAIN_I8 = (3, "<", None, None, None, -1, -1, 0)

HOSTILE = {
    # an object array: its items would be arbitrary objects
    "object_array": np.array([1, None, "x"], dtype=object),
    # a void dtype whose state sets the "holds objects" flags: numpy would treat bytes as pointers
    "object_flags_void": crafted_array((2,), crafted_dtype("V8", (3, "|", None, None, None, 8, 1, 0x3F)),
                                       b"\x01" * 16),
    "object_flags_int": crafted_array((2,), crafted_dtype("i8", (3, "<", None, None, None, -1, -1, 0x3F)),
                                      b"\x01" * 16),
    # a field 1 TB past the item: numpy reads far out of bounds (segfaults in plain pickle.load)
    "field_out_of_bounds": crafted_array(
        (2,), crafted_dtype("V8", (3, "|", None, ("a",), {"a": (np.dtype("i8"), 1 << 40)}, 8, 1, 0)), b"\x01" * 16),
    # the item size claimed by the state disagrees with the type
    "elsize_lie": crafted_array((2,), crafted_dtype("i8", (3, "<", None, None, None, 1 << 20, 1, 0)), b"\x01" * 16),
    # a shape far larger than the data: must not allocate nor read past the buffer
    "shape_beyond_data": crafted_array((1 << 40,), crafted_dtype("i8", PLAIN_I8), b"\x01" * 16),
    "short_data": crafted_array((3,), crafted_dtype("i8", PLAIN_I8), b"\x01" * 16),
    "negative_shape": crafted_array((-2,), crafted_dtype("i8", PLAIN_I8), b""),
    # ndarray called directly with a foreign buffer
    "ndarray_call": Crafted(np.ndarray, ((4,), "i8", b"\x00" * 8)),
}


def test_hostile_numpy_pickles_are_refused_without_crashing(tmp_path):
    """Each file goes through the safe reader in a child process: a crash would show as a signal."""
    names = []
    for name, obj in HOSTILE.items():
        for protocol in (2, 5):
            (tmp_path / f"{name}.p{protocol}").write_bytes(pickle.dumps({b"data": obj}, protocol=protocol))
            names.append(f"{name}.p{protocol}")
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from noisescope.data.safepickle import safe_load_pickle
        out = {}
        for f in sorted(Path(sys.argv[1]).iterdir()):
            try:
                safe_load_pickle(f)
                out[f.name] = "loaded"
            except Exception as exc:
                out[f.name] = [type(exc).__name__, str(exc), isinstance(exc, ValueError)]
        print(json.dumps(out))
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, f"the safe reader crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    results = json.loads(proc.stdout)
    assert sorted(results) == sorted(names)
    for name, got in results.items():
        assert got != "loaded", f"{name} was loaded"
        kind, msg, is_value_error = got
        assert is_value_error and "\n" not in msg and str(tmp_path / name) in msg, (name, got)
    assert "object" in results["object_array.p2"][1]
    assert "object" in results["object_array.p5"][1]
    assert "needs" in results["short_data.p2"][1] and "needs" in results["shape_beyond_data.p2"][1]
    assert "refusing to call numpy.ndarray" in results["ndarray_call.p2"][1]
    assert "refusing dtype 'V8'" in results["field_out_of_bounds.p2"][1]
    assert "integer >= 0" in results["negative_shape.p2"][1]


class Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_os_system_in_a_pickle_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"labels": [1, 2], "x": Evil(str(marker))}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle: it asks for (posix|os)\.system") as exc:
        safe_load_pickle(tmp_path / "evil.pkl")
    assert str(tmp_path / "evil.pkl") in one_line(exc)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_safe_reader_round_trips_numeric_arrays_scalars_and_containers(protocol):
    obj = {
        "i8": np.arange(6, dtype=np.int64).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        "big_endian": np.arange(5, dtype=">i4"),
        "bool": np.array([True, False]),
        "half": np.array([0.5, -2.0], dtype=np.float16),
        "complex": np.array([1 + 2j]),
        "empty": np.zeros((0, 3), dtype=np.uint8),
        "empty_i8": np.array([], dtype=np.int64),
        "scalar": np.int64(7),
        "nested": OrderedDict(a=[np.float64(1.5), (np.arange(2), "s")]),
    }
    out = safe_loads(pickle.dumps(obj, protocol=protocol))
    for k in ("i8", "fortran", "big_endian", "bool", "half", "complex", "empty", "empty_i8"):
        np.testing.assert_array_equal(out[k], obj[k])
        assert out[k].dtype == obj[k].dtype.newbyteorder("=") and out[k].dtype.isnative
        assert out[k].flags.writeable and out[k].flags.c_contiguous
    assert out["scalar"] == 7 and isinstance(out["scalar"], np.int64)
    assert isinstance(out["nested"], OrderedDict) and out["nested"]["a"][0] == 1.5
    np.testing.assert_array_equal(out["nested"]["a"][1][0], [0, 1])


# ---------------------------------------------------------------- broken CIFAR batches and archives


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b"", "empty"),
        (lambda b: b"this is not a pickle", "corrupt"),
        (lambda b: pickle.dumps([1, 2, 3], protocol=2), "not a CIFAR batch"),
        (lambda b: pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, protocol=2),
         "must be a uint8 array"),
        (lambda b: pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2),
         r"labels must lie in \[0, 10\)"),
    ],
    ids=["truncated", "empty", "garbage", "not-a-dict", "wrong-shape", "label-range"],
)
def test_a_broken_cifar_batch_gives_one_line_naming_the_file(tmp_path, no_data_dirs, damage, expected):
    folder = tmp_path / "c" / "cifar-10-batches-py"
    fake_cifar10(folder)
    batch = folder / "data_batch_2"
    batch.write_bytes(damage(batch.read_bytes()))
    with pytest.raises(DataFileError, match=expected) as exc:
        load_dataset("cifar10", root=tmp_path / "c")
    assert str(batch) in one_line(exc)


def make_archive(tmp_path: Path) -> Path:
    fake_cifar10(tmp_path / "build" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_truncated_empty_or_foreign_archives_are_one_line_errors_and_leave_nothing(tmp_path, no_data_dirs):
    archive = make_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    raw = archive.read_bytes()
    cache = no_data_dirs / "nsdata" / "cifar-10"
    (root / archive.name).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFileError, match="truncated or corrupt") as exc:
        load_dataset("cifar10", root=root)
    assert str(root / archive.name) in one_line(exc)
    assert not cache.exists() or not any(cache.iterdir())  # no half-extracted folder left behind
    (root / archive.name).write_bytes(b"")
    with pytest.raises(DataFileError, match="empty"):
        load_dataset("cifar10", root=root)
    with tarfile.open(root / archive.name, "w:gz") as tar:  # a valid archive of the wrong thing
        tar.add(tmp_path / "build" / "cifar-10-batches-py" / "batches.meta", arcname="other/batches.meta")
    with pytest.raises(DataFileError, match="does not hold cifar-10-batches-py/") as exc:
        load_dataset("cifar10", root=root)
    one_line(exc)
    with pytest.raises(DataFileError, match="truncated or corrupt"):
        (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 50)
        extract_archive(tmp_path / "junk.tar.gz", tmp_path / "out")


# ---------------------------------------------------------------- CIFAR-N .pt label files


def cifar10n_dict(n: int = 40) -> dict:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, n)
    return {"clean_label": clean, "aggre_label": (clean + (np.arange(n) % 5 == 0)) % 10,
            "worse_label": (clean + 1) % 10, "random_label1": rng.integers(0, 10, n),
            "random_label2": rng.integers(0, 10, n), "random_label3": rng.integers(0, 10, n)}


def test_cifar10n_pt_file_is_read_as_shipped(tmp_path):
    d = cifar10n_dict()
    torch.save(d, tmp_path / "CIFAR-10_human.pt")
    assert (tmp_path / "CIFAR-10_human.pt").read_bytes()[:2] == b"PK"  # the zip format
    for key, name in [("aggre", "aggre_label"), ("worse", "worse_label"), ("random2", "random_label2"),
                      ("clean_label", "clean_label")]:
        np.testing.assert_array_equal(read_label_file(tmp_path / "CIFAR-10_human.pt", key), d[name])
    with pytest.raises(ValueError, match="several label sets"):
        read_label_file(tmp_path / "CIFAR-10_human.pt")
    y = torch.from_numpy(d["clean_label"])
    res = apply_noise(y, 10, "file", path=tmp_path / "CIFAR-10_human.pt", key="aggre")
    assert torch.equal(res.labels, torch.from_numpy(d["aggre_label"]))
    assert res.rate == pytest.approx(float(np.mean(d["aggre_label"] != d["clean_label"])))


def test_cifar100n_pt_file_with_int_lists_and_torch_tensors(tmp_path):
    n = 30
    fine = np.arange(n) % 100
    d = {"clean_label": fine, "noisy_label": (fine + 1) % 100,
         "clean_coarse_label": [int(v) % 20 for v in fine], "noisy_coarse_label": [(int(v) + 3) % 20 for v in fine]}
    torch.save(d, tmp_path / "CIFAR-100_human.pt")
    np.testing.assert_array_equal(read_label_file(tmp_path / "CIFAR-100_human.pt", "noisy"), d["noisy_label"])
    np.testing.assert_array_equal(read_label_file(tmp_path / "CIFAR-100_human.pt", "noisy_coarse"),
                                  d["noisy_coarse_label"])
    # tensors too: contiguous, a strided view, and narrow integer types
    base = torch.arange(3 * n).reshape(n, 3)
    tensors = {"a": torch.tensor(fine), "view": base[:, 1], "i32": torch.tensor(fine, dtype=torch.int32),
               "u8": torch.tensor(fine % 20, dtype=torch.uint8)}
    torch.save(tensors, tmp_path / "t.pt")
    got = read_torch_file(tmp_path / "t.pt")
    for k, t in tensors.items():
        np.testing.assert_array_equal(got[k], t.numpy())
        assert got[k].dtype == t.numpy().dtype
    np.testing.assert_array_equal(read_label_file(tmp_path / "t.pt", "view"), base[:, 1].numpy())


def test_legacy_torch_format_reads_arrays_and_refuses_tensors(tmp_path):
    d = cifar10n_dict()
    torch.save(d, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(read_label_file(tmp_path / "legacy.pt", "worse"), d["worse_label"])
    torch.save({"a": torch.arange(3)}, tmp_path / "legacy_t.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(DataFileError, match="legacy-format torch file holding tensors") as exc:
        read_label_file(tmp_path / "legacy_t.pt", "a")
    assert str(tmp_path / "legacy_t.pt") in one_line(exc)


def test_malicious_pt_file_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    d = cifar10n_dict()
    d["aggre_label"] = Evil(str(marker))
    torch.save(d, tmp_path / "CIFAR-10_human.pt")
    with pytest.raises(UnsafePickleError, match=r"asks for (posix|os)\.system") as exc:
        read_label_file(tmp_path / "CIFAR-10_human.pt", "aggre")
    assert str(tmp_path / "CIFAR-10_human.pt") in one_line(exc)
    assert not marker.exists()


def test_a_tensor_pointing_outside_its_storage_is_refused(tmp_path):
    from torch._utils import _rebuild_tensor_v2

    storage = torch.arange(3).untyped_storage()
    typed = torch.storage.TypedStorage(wrap_storage=storage, dtype=torch.int64, _internal=True)
    reach = Crafted(_rebuild_tensor_v2, (typed, 0, (1000,), (1,), False, OrderedDict()))
    torch.save({"a": reach}, tmp_path / "reach.pt")
    with pytest.raises(DataFileError, match="does not fit its storage") as exc:
        read_torch_file(tmp_path / "reach.pt")
    one_line(exc)


@pytest.mark.parametrize(
    "damage,expected",
    [(lambda b: b[: len(b) // 2], "truncated or corrupt zip"), (lambda b: b"", "empty"),
     (lambda b: b"not a torch file", "not a torch file")],
    ids=["truncated", "empty", "garbage"],
)
def test_a_broken_pt_file_gives_one_line_naming_it(tmp_path, damage, expected):
    torch.save(cifar10n_dict(), tmp_path / "h.pt")
    p = tmp_path / "h.pt"
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(DataFileError, match=expected) as exc:
        read_label_file(p, "aggre")
    assert str(p) in one_line(exc)


def test_broken_npz_json_and_csv_label_files_name_the_file(tmp_path):
    np.savez(tmp_path / "l.npz", aggre=np.arange(10))
    raw = (tmp_path / "l.npz").read_bytes()
    (tmp_path / "l.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "l.json").write_text('{"aggre": [1, 2')
    (tmp_path / "l.csv").write_text("aggre\n1\n2\nthree\n")
    for name, expected in [("l.npz", "truncated or corrupt"), ("l.json", "truncated or corrupt"),
                           ("l.csv", "row 4 has no number")]:
        with pytest.raises(DataFileError, match=expected) as exc:
            read_label_file(tmp_path / name, "aggre")
        assert str(tmp_path / name) in one_line(exc)


# ---------------------------------------------------------------- broken IDX files


def test_truncated_empty_and_inconsistent_idx_files_name_the_file(tmp_path, no_data_dirs):
    folder = tmp_path / "m"
    fake_mnist(folder)
    images = folder / "train-images-idx3-ubyte.gz"
    good = images.read_bytes()
    images.write_bytes(good[: len(good) // 2])  # a cut gzip stream
    with pytest.raises(DataFileError, match="truncated or corrupt") as exc:
        load_dataset("mnist", root=folder)
    assert str(images) in one_line(exc)
    raw = gzip.decompress(good)
    images.write_bytes(gzip.compress(raw[:-100]))  # a whole gzip of a cut IDX
    with pytest.raises(DataFileError, match=r"header says shape \(30, 28, 28\)"):
        load_dataset("mnist", root=folder)
    images.write_bytes(b"")
    with pytest.raises(DataFileError, match="empty"):
        read_idx(images)
    images.write_bytes(good)
    labels = folder / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.full(30, 12, dtype=np.uint8), gz=True)
    with pytest.raises(DataFileError, match=r"labels must lie in \[0, 10\), got \[12, 12\]") as exc:
        load_dataset("mnist", root=folder)
    assert str(labels) in one_line(exc)
    write_idx(labels, np.zeros(29, dtype=np.uint8), gz=True)
    with pytest.raises(DataFileError, match="30 images but .* 29 labels"):
        load_dataset("mnist", root=folder)


def test_a_corrupt_installed_fashion_mnist_is_an_error_not_a_silent_fallback(tmp_path, no_data_dirs):
    folder = no_data_dirs / "nsdata" / "fashion-mnist"
    fake_mnist(folder)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(DataFileError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("fashion_mnist")


# ---------------------------------------------------------------- degenerate data


def dataset(x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, c: int = 3) -> Dataset:
    return Dataset(x_train=x, y_train=y, x_test=xt, y_test=yt, num_classes=c, name="toy",
                   classes=["cat", "dog", "owl"][:c])


def toy(n: int = 60, c: int = 3, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    return dataset(torch.randn(n, 4, generator=g), y, torch.randn(30, 4, generator=g), torch.arange(30) % c, c)


def test_healthy_data_pass_with_no_warnings():
    nd = make_noisy_dataset(toy(), "symmetric", 0.2, val_fraction=0.2, seed=0)
    assert check_dataset(nd) == []
    assert check_dataset(toy()) == []


def test_a_class_without_training_samples_is_named():
    ds = toy()
    keep = ds.y_train != 2
    ds = dataset(ds.x_train[keep], ds.y_train[keep], ds.x_test, ds.y_test)
    with pytest.raises(DegenerateDataError, match=r"class 2 \('owl'\) has no training samples \(of 36") as exc:
        check_dataset(make_noisy_dataset(ds, "none", val_fraction=0.1))
    one_line(exc)
    with pytest.raises(DegenerateDataError, match=r"class 0 \('cat'\) has only 20 training samples"):
        check_dataset(toy(), min_per_class=21)


def test_constant_inputs_are_refused():
    ds = toy()
    flat = dataset(torch.ones_like(ds.x_train), ds.y_train, ds.x_test, ds.y_test)
    with pytest.raises(DegenerateDataError, match="all 60 training inputs are identical"):
        check_dataset(flat)
    images = torch.full((60, 1, 4, 4), 7, dtype=torch.uint8)
    with pytest.raises(DegenerateDataError, match="zero variance"):
        check_dataset(dataset(images, ds.y_train, images[:30], ds.y_test))
    with pytest.raises(DegenerateDataError, match="all 30 test inputs are identical"):
        check_dataset(dataset(ds.x_train, ds.y_train, torch.zeros(30, 4), ds.y_test))
    bad = ds.x_train.clone()
    bad[5, 1] = float("nan")
    with pytest.raises(DegenerateDataError, match="training inputs hold NaN"):
        check_dataset(dataset(bad, ds.y_train, ds.x_test, ds.y_test))


def test_splits_too_small_are_refused_or_warned():
    tiny = toy(n=4, c=3)
    nd = make_noisy_dataset(tiny, "none", val_fraction=0.1, seed=0)  # round(0.4) = 0 validation samples
    assert len(nd.y_val) == 0
    with pytest.raises(DegenerateDataError, match=r"noisy-validation split is empty \(val_fraction = 0.1 of 4"):
        check_dataset(nd)
    warnings = check_dataset(make_noisy_dataset(tiny, "none", val_fraction=0.0))
    assert len(warnings) == 1 and "no noisy-validation split" in warnings[0]
    with pytest.raises(DegenerateDataError, match="2 training samples for 3 classes"):
        check_dataset(dataset(torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(3, 4), torch.arange(3)))
    with pytest.raises(DegenerateDataError, match="the test split is empty"):
        check_dataset(dataset(torch.randn(6, 4), torch.arange(6) % 3, torch.zeros(0, 4), torch.zeros(0).long()))
    with pytest.raises(DegenerateDataError, match="at least 2"):
        check_dataset(dataset(torch.randn(6, 4), torch.zeros(6).long(), torch.randn(3, 4), torch.zeros(3).long(), 1))
    few_test = dataset(torch.randn(6, 4), torch.arange(6) % 3, torch.randn(2, 4), torch.tensor([0, 0]))
    assert check_dataset(few_test) == [
        "the test split has 2 samples for 3 classes: its accuracy is very coarse",
        "the test split has no sample of class 1 ('dog') and 1 more",
    ]


def test_a_class_no_observed_label_carries_is_a_warning():
    ds = toy()
    nd = make_noisy_dataset(ds, "none", val_fraction=0.2, seed=0)
    nd.y_train[nd.y_train == 1] = 0  # e.g. a label file that never uses class 1
    assert check_dataset(nd) == ["no training sample carries observed label class 1 ('dog'): the model never sees it"]
