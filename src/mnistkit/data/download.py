"""`mnistkit download NAME`: fetch a dataset's files into its data directory, verified by checksum.

Where each dataset comes from lives in its registry entry (``DatasetSpec.download``). Each file is
downloaded to a temporary name, checked against its published digest and only then renamed into
place, so an interrupted or corrupt download never looks like a dataset. Without internet the error
says exactly which files to put where.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from mnistkit.data.datasets import get_dataset_spec, list_datasets
from mnistkit.errors import DataFormatError, MnistkitError
from mnistkit.fileio import atomic_write_bytes


def downloadable() -> list[str]:
    return [spec.name for spec in list_datasets() if spec.download is not None]


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
    spec = get_dataset_spec(name)
    if spec.download is None:
        where = (f"get its files from {spec.source} and put them in {data_dir}" if spec.source.startswith("http")
                 else "its files are your own")
        raise MnistkitError(f"`mnistkit download` knows {downloadable()}; for '{name}', {where}")
    files = spec.download.files_for(classes or spec.classes)
    mirrors = mirrors or list(spec.download.mirrors)
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
