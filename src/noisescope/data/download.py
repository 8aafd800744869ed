"""Where dataset files live, and checksum-verified downloads from their canonical addresses.

Search order for a dataset folder ``<dir>`` (``"mnist"``, ``"fashion-mnist"``, ``"cifar-10"``,
``"cifar-100"``):

1. an explicit ``root`` argument (the folder holding the files),
2. ``$NOISESCOPE_DATA/<dir>``,
3. ``~/.cache/noisescope/<dir>``,
4. ``/usr/share/datasets/<dir>`` (Debian's ``dataset-fashion-mnist`` installs here).

Downloads (only when asked, ``download=True``) go to ``$NOISESCOPE_DATA/<dir>`` when that
variable is set, else ``~/.cache/noisescope/<dir>``. Each file is streamed to a temporary
file in the target folder, its MD5/SHA-256 checked, and only then renamed into place, so a
failed or tampered download never leaves a partial or wrong file behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DIR = Path("/usr/share/datasets")


class DataNotFoundError(FileNotFoundError):
    """Dataset files are missing (and no download was asked for, or it failed)."""


class ChecksumError(ValueError):
    """A downloaded file's checksum does not match the expected value."""


class DataFileError(ValueError):
    """A data file exists but cannot be used: unreadable, empty, truncated, corrupt or unsafe.

    The message is one line: the file's path, what is wrong with it, and what to do. It is a
    ``ValueError``, so the command line reports it as a one-line data error.
    """


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset and its expected checksum (md5 and/or sha256, hex)."""

    filename: str
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    """A dataset's folder name, files and canonical download addresses (tried in order)."""

    dirname: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    homepage: str


SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist",
        (
            RemoteFile("train-images-idx3-ubyte.gz", md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", md5="d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", md5="9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", md5="ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": Source(
        "fashion-mnist",
        (
            RemoteFile("train-images-idx3-ubyte.gz", md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            RemoteFile("train-labels-idx1-ubyte.gz", md5="25c81989df183df01b3e8a0aad5dffbe"),
            RemoteFile("t10k-images-idx3-ubyte.gz", md5="bef4ecab320f06d8554ea6380940ec79"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", md5="bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "https://github.com/zalandoresearch/fashion-mnist",
    ),
    "cifar-10": Source(
        "cifar-10",
        (RemoteFile("cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a"),),
        ("https://www.cs.toronto.edu/~kriz/",),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar-100": Source(
        "cifar-100",
        (RemoteFile("cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85"),),
        ("https://www.cs.toronto.edu/~kriz/",),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}


def cache_dir(dirname: str) -> Path:
    """The writable folder for ``dirname``: ``$NOISESCOPE_DATA/<dir>`` or the user cache."""
    env = os.environ.get("NOISESCOPE_DATA")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "noisescope"
    return base / dirname


def search_dirs(dirname: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for ``dirname``'s files, in order (see the module docstring)."""
    dirs: list[Path] = []
    if root is not None:
        dirs.append(Path(root).expanduser())
    env = os.environ.get("NOISESCOPE_DATA")
    if env:
        dirs.append(Path(env).expanduser() / dirname)
    dirs.append(Path.home() / ".cache" / "noisescope" / dirname)
    dirs.append(SYSTEM_DIR / dirname)
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_file(dirs: Sequence[Path], candidates: Sequence[str]) -> Path | None:
    """First existing file named one of ``candidates`` in the first folder that has one."""
    for d in dirs:
        for name in candidates:
            p = d / name
            if p.is_file():
                return p
    return None


def missing_error(
    dataset: str,
    missing: Sequence[str],
    dirs: Sequence[Path],
    source: Source,
    download_hint: bool = True,
) -> DataNotFoundError:
    """The one message users see when files are absent: which files, and where to put them."""
    where = ", ".join(str(d) for d in dirs)
    msg = (
        f"{dataset}: missing file(s) {', '.join(missing)}. Put them in one of: {where} "
        f"(or set NOISESCOPE_DATA=/some/dir and put them in /some/dir/{source.dirname})"
    )
    if download_hint:
        msg += (
            f", or pass download=True (config: data.options.download = true) to fetch them, "
            f"checksum-verified, "
            f"from {source.mirrors[0]} ({source.homepage})"
        )
    return DataNotFoundError(msg + ".")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_file(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``dest`` from the first URL that works, verify it, then move it into place.

    Args:
        urls: one URL or several mirrors, tried in order.
        dest: final path; its folder is created if needed.
        md5, sha256: expected hex digests (at least one is required).
        timeout: seconds per connection attempt.

    Returns:
        ``dest`` as a Path.

    Raises:
        ChecksumError: every mirror that answered served a file with the wrong checksum
            (nothing is left at ``dest`` nor in its folder).
        DataNotFoundError: no mirror could be reached.
    """
    if md5 is None and sha256 is None:
        raise ValueError("download_file needs an expected md5 or sha256 checksum")
    urls = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    bad_checksum = False
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            h_md5, h_sha = hashlib.md5(), hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                for block in iter(lambda r=r: r.read(1 << 20), b""):
                    out.write(block)
                    h_md5.update(block)
                    h_sha.update(block)
            got = {"md5": h_md5.hexdigest(), "sha256": h_sha.hexdigest()}
            want = {"md5": md5, "sha256": sha256}
            wrong = [k for k, v in want.items() if v is not None and got[k] != v.lower()]
            if wrong:
                bad_checksum = True
                k = wrong[0]
                errors.append(f"{url}: {k} {got[k]} != expected {want[k]}")
                continue
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    detail = "; ".join(errors)
    if bad_checksum:
        raise ChecksumError(
            f"checksum mismatch downloading {dest.name} (nothing was saved): {detail}"
        )
    raise DataNotFoundError(f"could not download {dest.name} to {dest.parent}: {detail}")


def fetch(source: Source, dest_dir: str | os.PathLike | None = None, timeout: float = 60.0
          ) -> list[Path]:
    """Download (and verify) every file of ``source`` not already in ``dest_dir``.

    A missing network gives one :class:`DataNotFoundError` naming the files, the addresses
    tried and the folders where they can be put by hand.
    """
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir(source.dirname)
    paths = []
    for f in source.files:
        dest = dest_dir / f.filename
        if not dest.is_file():
            urls = [m + f.filename for m in source.mirrors]
            try:
                download_file(urls, dest, md5=f.md5, sha256=f.sha256, timeout=timeout)
            except DataNotFoundError as exc:
                missing = [
                    g.filename for g in source.files if not (dest_dir / g.filename).is_file()
                ]
                dirs = search_dirs(source.dirname)
                err = missing_error(source.dirname, missing, dirs, source, download_hint=False)
                raise DataNotFoundError(f"{err} The download failed: {exc}") from exc
        paths.append(dest)
    return paths
