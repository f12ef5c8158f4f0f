"""Reader for the IDX format that MNIST and its look-alikes ship in.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the data. We read only unsigned bytes (type 0x08), which is
what every MNIST-style dataset uses, and check the header against the payload before trusting it.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from mnistkit.errors import DataFormatError

UBYTE = 0x08


def read_bytes(path: str | Path) -> bytes:
    """Read a file, transparently decompressing gzip (recognised by its magic bytes, not its name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return raw


def parse_idx(data: bytes, source: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking magic number, dimensions and byte count."""
    if len(data) < 4:
        raise DataFormatError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype, dims = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dims == 0:
        raise DataFormatError(
            f"{source}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000080N); "
            "this is not an IDX file"
        )
    if dtype != UBYTE:
        raise DataFormatError(f"{source}: IDX type code 0x{dtype:02x}, expected 0x08 (unsigned bytes)")
    if ndim is not None and dims != ndim:
        raise DataFormatError(f"{source}: {dims} dimensions in the header, expected {ndim}")
    header_len = 4 + 4 * dims
    if len(data) < header_len:
        raise DataFormatError(f"{source}: header truncated ({len(data)} bytes, need {header_len})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = int(np.prod(shape, dtype=np.int64))
    found = len(data) - header_len
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise DataFormatError(
            f"{source}: {what}: header says shape {shape} = {expected} bytes of data, found {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def read_idx(path: str | Path, ndim: int | None = None, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip or raw). If ``sha256`` is given, the file's bytes on disk must match it."""
    path = Path(path)
    if sha256 is not None:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise DataFormatError(f"{path}: cannot read ({exc.strerror})") from None
        if digest != sha256:
            raise DataFormatError(
                f"{path}: SHA-256 mismatch: expected {sha256}, found {digest}; the file is corrupt"
            )
    return parse_idx(read_bytes(path), source=str(path), ndim=ndim)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX (gzip-compressed when the name ends in .gz). Used by tests and tools."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UBYTE, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6)
    path.write_bytes(payload)
