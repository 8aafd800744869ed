"""The Fashion-MNIST subset shipped inside noisescope, and the choice between it and the full data."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import fake_mnist

from noisescope.data import DataFileError, DataNotFoundError, check_dataset, embedded, load_dataset, make_noisy_dataset
from noisescope.data import download as dl
from noisescope.data.idx import FILES, read_idx

FMNIST = Path("/usr/share/datasets/fashion-mnist")
HAVE_FULL = all((FMNIST / f"{stem}.gz").is_file() for stem in FILES.values())
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_data_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISESCOPE_DATA", str(tmp_path / "nsdata"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(dl, "SYSTEM_DIR", tmp_path / "system")
    return tmp_path


@pytest.fixture(scope="module")
def emb():
    return load_dataset("fashion_mnist", source="embedded")


@pytest.fixture(scope="module")
def manifest():
    return embedded.load_manifest()


def test_embedded_subset_has_the_recorded_shapes_dtypes_and_balance(emb, manifest):
    assert emb.x_train.shape == (10000, 1, 28, 28) and emb.x_train.dtype == torch.uint8
    assert emb.x_test.shape == (5000, 1, 28, 28) and emb.x_test.dtype == torch.uint8
    assert emb.y_train.dtype == torch.int64 and emb.y_test.dtype == torch.int64
    assert torch.equal(torch.bincount(emb.y_train), torch.full((10,), 1000))
    assert torch.equal(torch.bincount(emb.y_test), torch.full((10,), 500))
    assert emb.num_classes == 10 and emb.classes[0] == "T-shirt/top" and emb.classes[9] == "Ankle boot"
    rows = emb.train_index
    assert rows.tolist() == manifest["train_index"] and torch.equal(rows, torch.sort(rows).values)
    assert len(torch.unique(rows)) == 10000 and 0 <= int(rows.min()) and int(rows.max()) < 60000
    assert emb.source.startswith("Fashion-MNIST, embedded class-balanced subset")
    assert "10000 train / 5000 test of 60000 / 10000" in emb.source
    assert float(emb.x_train.float().std()) > 50  # real images, not blanks


def test_embedded_files_match_the_checksums_in_the_manifest(manifest):
    total = 0
    for key in FILES:
        name = embedded.asset_name(key)
        raw = embedded.asset(name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == manifest["files"][name]["sha256"]
        assert len(raw) == manifest["files"][name]["bytes"]
        total += len(raw)
    assert total < 7_000_000  # a few MB shipped in the package
    for split in ("train", "test"):
        rows = np.asarray(manifest[f"{split}_index"], dtype="<i8")
        assert hashlib.sha256(rows.tobytes()).hexdigest() == manifest["index_sha256"][split]
    licence = embedded.asset(embedded.LICENSE).read_text()
    assert "MIT" in licence and "Copyright (c) 2017 Zalando SE" in licence
    assert manifest["licence"] == "MIT" and manifest["licence_file"] == embedded.LICENSE


@pytest.mark.skipif(not HAVE_FULL, reason="Fashion-MNIST not installed")
def test_embedded_images_are_byte_identical_to_the_recorded_source_rows(emb, manifest):
    full = {k: read_idx(FMNIST / f"{stem}.gz") for k, stem in FILES.items()}
    tr, te = np.asarray(manifest["train_index"]), np.asarray(manifest["test_index"])
    assert emb.x_train[:, 0].numpy().tobytes() == full["train_images"][tr].tobytes()
    assert emb.x_test[:, 0].numpy().tobytes() == full["test_images"][te].tobytes()
    np.testing.assert_array_equal(emb.y_train.numpy(), full["train_labels"][tr])
    np.testing.assert_array_equal(emb.y_test.numpy(), full["test_labels"][te])
    for key, stem in FILES.items():  # the installed files hold the content the subset was cut from
        content = hashlib.sha256(gzip.decompress((FMNIST / f"{stem}.gz").read_bytes())).hexdigest()
        assert manifest["source_files"][key]["content_sha256"] == content


@pytest.mark.skipif(not HAVE_FULL, reason="Fashion-MNIST not installed")
def test_embedded_equals_the_seeded_subset_of_the_full_data_so_the_demo_trains_on_the_same_samples(emb):
    full = load_dataset("fashion_mnist", source="full", subset=10000, test_subset=5000, seed=0)
    assert full.source.startswith("Fashion-MNIST, full (60000 train / 10000 test) from ")
    sub = load_dataset("fashion_mnist", source="embedded", subset=10000, test_subset=5000, seed=0)
    for attr in ("x_train", "y_train", "train_index", "x_test", "y_test"):
        assert torch.equal(getattr(sub, attr), getattr(full, attr)), attr
    a = make_noisy_dataset(load_dataset("fashion_mnist", source="full"), "symmetric", 0.4, subset=10000,
                           val_fraction=0.1, seed=0, noise_options={"exact": True})
    b = make_noisy_dataset(emb, "symmetric", 0.4, subset=10000, val_fraction=0.1, seed=0,
                           noise_options={"exact": True})
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train) and torch.equal(a.y_val, b.y_val)


def test_auto_falls_back_to_the_embedded_subset_and_says_why(no_data_dirs):
    ds = load_dataset("fashion_mnist")
    assert len(ds.y_train) == 10000 and "embedded" in ds.source
    assert "the full dataset was not found (searched " in ds.source
    assert str(no_data_dirs / "system" / "fashion-mnist") in ds.source
    assert "apt-get install dataset-fashion-mnist" in ds.source and "\n" not in ds.source
    assert "fallback" in ds.meta


def test_the_demo_split_runs_on_the_embedded_subset(no_data_dirs):
    nd = make_noisy_dataset(load_dataset("fashion_mnist"), "symmetric", 0.4, subset=10000, val_fraction=0.1,
                            seed=0, noise_options={"exact": True})
    assert (len(nd.y_train), len(nd.y_val), len(nd.y_test)) == (9000, 1000, 5000)
    assert nd.source.startswith("Fashion-MNIST, embedded") and check_dataset(nd) == []
    too_big = r"must lie in \[1, 10000\], got 11000: the data are the Fashion-MNIST, embedded"
    with pytest.raises(ValueError, match=too_big):
        load_dataset("fashion_mnist", subset=11000)


def test_auto_prefers_the_full_dataset_where_found(no_data_dirs):
    folder = no_data_dirs / "nsdata" / "fashion-mnist"
    fake_mnist(folder)
    ds = load_dataset("fashion_mnist")
    assert len(ds.y_train) == 30 and ds.source == f"Fashion-MNIST, full (30 train / 20 test) from {folder}"
    assert len(load_dataset("fashion_mnist", source="embedded").y_train) == 10000


def test_asking_for_the_full_data_never_falls_back(no_data_dirs, tmp_path):
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion_mnist", source="full")
    with pytest.raises(DataNotFoundError):
        load_dataset("fashion_mnist", root=tmp_path / "nowhere")  # an explicit folder means the full data


def test_source_option_is_validated():
    with pytest.raises(ValueError, match="source must be one of auto, full, embedded, got 'web'"):
        load_dataset("fashion_mnist", source="web")
    with pytest.raises(ValueError, match="drop root/download"):
        load_dataset("fashion_mnist", source="embedded", download=True)
    with pytest.raises(ValueError, match="has no option 'source'"):
        load_dataset("mnist", source="embedded")


def test_an_altered_embedded_file_is_refused_by_checksum(tmp_path, monkeypatch):
    name = embedded.asset_name("test_labels")
    raw = bytearray(embedded.asset(name).read_bytes())
    raw[-10] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(raw))
    real = embedded.asset
    monkeypatch.setattr(embedded, "asset", lambda n: tmp_path / n if n == name else real(n))
    with pytest.raises(DataFileError, match=f"{name}: SHA-256 .* differs from the recorded"):
        load_dataset("fashion_mnist", source="embedded")


def load_script():
    spec = importlib.util.spec_from_file_location("make_embedded_fmnist", REPO / "scripts" / "make_embedded_fmnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not HAVE_FULL, reason="Fashion-MNIST not installed")
def test_the_script_is_deterministic_and_records_what_it_took(tmp_path):
    script = load_script()
    a = script.build(FMNIST, tmp_path / "a", 50, 20, seed=3)
    script.build(FMNIST, tmp_path / "b", 50, 20, seed=3)
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    assert json.loads((tmp_path / "a" / embedded.MANIFEST).read_text()) == a
    assert a["class_counts"]["train"] == [5] * 10 and a["class_counts"]["test"] == [2] * 10
    full_labels = read_idx(FMNIST / "train-labels-idx1-ubyte.gz")
    got = read_idx(tmp_path / "a" / embedded.asset_name("train_labels"))
    np.testing.assert_array_equal(got, full_labels[a["train_index"]])


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FULL, reason="Fashion-MNIST not installed")
def test_the_script_rebuilds_the_shipped_assets_byte_for_byte(tmp_path):
    load_script().build(FMNIST, tmp_path, 10000, 5000, seed=0)
    for f in sorted(tmp_path.iterdir()):
        assert f.read_bytes() == embedded.asset(f.name).read_bytes(), f.name
