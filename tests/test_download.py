"""Checksum-verified downloads against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import fake_cifar10, fake_mnist

from noisescope.data import download as dl
from noisescope.data import load_dataset
from noisescope.data.download import ChecksumError, DataNotFoundError, download_file


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        QuietHandler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/www on 127.0.0.1:<free port>; yields (base_url, folder)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    QuietHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISESCOPE_DATA", str(tmp_path / "nsdata"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(dl, "SYSTEM_DIR", tmp_path / "system")
    return tmp_path / "nsdata"


def digest(path: Path, algo: str) -> str:
    return hashlib.new(algo, path.read_bytes()).hexdigest()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def test_download_verifies_and_falls_back_to_next_mirror(server, tmp_path):
    base, www = server
    payload = np.random.default_rng(0).bytes(300_000)
    (www / "f.bin").write_bytes(payload)
    dest = tmp_path / "out" / "f.bin"
    got = download_file([base + "missing/f.bin", base + "f.bin"], dest,
                        sha256=digest(www / "f.bin", "sha256"))
    assert got == dest and dest.read_bytes() == payload
    assert QuietHandler.requests == ["/missing/f.bin", "/f.bin"]
    dest.unlink()
    download_file(base + "f.bin", dest, md5=digest(www / "f.bin", "md5"))
    assert dest.read_bytes() == payload


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    base, www = server
    (www / "f.bin").write_bytes(b"tampered content")
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match="checksum mismatch downloading f.bin"):
        download_file(base + "f.bin", out / "f.bin", sha256="0" * 64)
    assert list(out.iterdir()) == []  # no partial or temporary file left behind


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="could not download f.bin"):
        download_file(closed_port_url() + "f.bin", tmp_path / "f.bin", md5="0" * 32, timeout=5)
    assert not (tmp_path / "f.bin").exists()
    with pytest.raises(ValueError, match="checksum"):
        download_file("http://127.0.0.1/x", tmp_path / "x")


def test_mnist_download_flow(server, data_home, monkeypatch):
    base, www = server
    arrays = fake_mnist(www)
    files = tuple(dl.RemoteFile(f.filename, md5=digest(www / f.filename, "md5"))
                  for f in dl.SOURCES["mnist"].files)
    monkeypatch.setitem(dl.SOURCES, "mnist", dl.Source("mnist", files, (base,), "local"))
    with pytest.raises(DataNotFoundError, match="download=True"):
        load_dataset("mnist")
    ds = load_dataset("mnist", download=True)
    assert (data_home / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    np.testing.assert_array_equal(ds.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    n = len(QuietHandler.requests)
    load_dataset("mnist", download=True)  # already there: no new request
    assert len(QuietHandler.requests) == n == 4


def test_cifar10_archive_download_flow(server, data_home, tmp_path, monkeypatch):
    base, www = server
    raw = fake_cifar10(tmp_path / "build" / "cifar-10-batches-py")
    with tarfile.open(www / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = digest(www / "cifar-10-python.tar.gz", "md5")
    src = dl.Source("cifar-10", (dl.RemoteFile("cifar-10-python.tar.gz", md5=md5),), (base,), "x")
    monkeypatch.setitem(dl.SOURCES, "cifar-10", src)
    ds = load_dataset("cifar10", download=True)
    assert (data_home / "cifar-10" / "cifar-10-batches-py" / "test_batch").is_file()
    assert ds.x_train.shape == (20, 3, 32, 32)
    assert torch.equal(ds.y_test, torch.tensor(raw["test_batch"][1]))


def test_no_network_message_names_files_and_folders(data_home, monkeypatch):
    src = dl.Source("mnist", dl.SOURCES["mnist"].files, (closed_port_url(),), "local")
    monkeypatch.setitem(dl.SOURCES, "mnist", src)
    with pytest.raises(DataNotFoundError) as exc:
        load_dataset("mnist", download=True)
    msg = str(exc.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(data_home / "mnist") in msg
    assert "The download failed" in msg
    assert not any((data_home / "mnist").glob("*.part"))
