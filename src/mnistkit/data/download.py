"""`mnistkit download NAME`: fetch a dataset's files into its data directory, verified by checksum.

Each file is downloaded to a temporary name, checked against its published digest and only then
renamed into place, so an interrupted or corrupt download never looks like a dataset. Without
internet the error says exactly which files to put where.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mnistkit.checkpoint import atomic_write_bytes
from mnistkit.errors import DataFormatError, MnistkitError


@dataclass(frozen=True)
class RemoteFile:
    name: str
    digest: str  # "md5:..." or "sha256:..." as published; "" when the publisher gives none


IDX_SOURCES: dict[str, tuple[list[str], list[RemoteFile]]] = {
    "mnist": (["https://ossci-datasets.s3.amazonaws.com/mnist/"], [
        RemoteFile("train-images-idx3-ubyte.gz", "sha256:0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971"),
        RemoteFile("train-labels-idx1-ubyte.gz", "sha256:1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "sha256:1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "sha256:b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b"),
    ]),
    "fashion-mnist": (["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                       "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"], [
        RemoteFile("train-images-idx3-ubyte.gz", "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        RemoteFile("train-labels-idx1-ubyte.gz", "md5:25c81989df183df01b3e8a0aad5dffbe"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "md5:bef4ecab320f06d8554ea6380940ec79"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "md5:bb300cfdad3c16e7a12a480ee83cd310"),
    ]),
    "kmnist": (["https://codh.rois.ac.jp/kmnist/dataset/kmnist/"], [
        RemoteFile("train-images-idx3-ubyte.gz", "md5:bdb82020997e1d708af4cf47b453dcf7"),
        RemoteFile("train-labels-idx1-ubyte.gz", "md5:e144d726b3acfaa3e44228e80efcd344"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "md5:5c965bf0a639b31b8f53240b1b52f4d7"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "md5:7320c461ea6c1c855c0b718fb2a4b134"),
    ]),
}
QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/"


def sources_for(name: str, classes: list[str] | None = None) -> tuple[list[str], list[RemoteFile]]:
    if name == "quickdraw":
        from mnistkit.data.quickdraw import DEFAULT_CLASSES

        # Google publishes no checksums for these; the loader validates their shape instead.
        return [QUICKDRAW_URL], [RemoteFile(f"{c}.npy", "") for c in (classes or DEFAULT_CLASSES)]
    if name not in IDX_SOURCES:
        raise MnistkitError(f"`mnistkit download` knows {sorted([*IDX_SOURCES, 'quickdraw'])}; '{name}' is local-only")
    return IDX_SOURCES[name]


def check_digest(data: bytes, digest: str, source: str) -> None:
    if not digest:
        return
    algorithm, expected = digest.split(":", 1)
    found = hashlib.new(algorithm, data).hexdigest()
    if found != expected:
        raise DataFormatError(f"{source}: {algorithm} checksum mismatch: expected {expected}, found {found}")


def fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) or file URLs we built)
        return response.read()


def download(name: str, data_dir: str | Path, classes: list[str] | None = None, mirrors: list[str] | None = None,
             timeout: float = 60.0, log=print) -> list[Path]:
    """Download every missing file of dataset ``name`` into ``data_dir``; files already there are kept."""
    default_mirrors, files = sources_for(name, classes)
    mirrors = mirrors or default_mirrors
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written, failures = [], []
    for remote in files:
        target = directory / remote.name
        if target.exists():
            log(f"  {target} already present")
            continue
        for mirror in mirrors:
            url = mirror + remote.name
            try:
                log(f"  fetching {url}")
                data = fetch(url, timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            check_digest(data, remote.digest, url)
            atomic_write_bytes(target, data)
            written.append(target)
            break
        else:
            missing = [f.name for f in files if not (directory / f.name).exists()]
            raise DataFormatError(
                f"cannot download {name} ({failures[-1]}). Without internet, get these files elsewhere from "
                f"{mirrors[0]} and put them in {directory}: {', '.join(missing)}"
            )
    return written
