"""IDX files, the format of MNIST: read with full validation, write atomically.

Layout: two zero bytes, a dtype code, the number of dimensions, then one
big-endian uint32 per dimension, then the data in big-endian C order.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnkit.errors import DataError

# dtype code -> numpy big-endian dtype, as in the format's definition.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
MAX_DIMS = 8


# The largest payload an IDX file may declare (4 GiB: all of MNIST is 55 MB). The header's
# dimensions are checked against it, and against the file, before a byte of data is read.
MAX_IDX_BYTES = 4 << 30
# Deflate expands at most ~1032:1, so a gzip that small cannot hold the declared payload.
MAX_GZIP_RATIO = 1100


def _header(stream, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """dtype, dims and header length, read from the start of the (decompressed) stream."""
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"{name} is too short to be an IDX file ({len(head)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", head)
    if zero != 0:
        raise DataError(f"{name} has a wrong magic number 0x{head.hex()}: IDX files start with two zero bytes")
    if code not in IDX_DTYPES:
        raise DataError(f"{name} has an unknown IDX dtype code 0x{code:02x}")
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(f"{name} declares {ndim} dimensions; IDX data has 1 to {MAX_DIMS}")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{name} is truncated inside its header")
    return IDX_DTYPES[code], struct.unpack(f">{ndim}I", raw_dims), 4 + 4 * ndim


def _length_error(name: str, dims, expected: int, actual: int | str) -> DataError:
    state = "truncated" if isinstance(actual, int) and actual < expected else "longer than its header says"
    return DataError(f"{name} is {state}: dimensions {'x'.join(map(str, dims))} need {expected} bytes, the file has {actual}")


def _read_stream(stream, name: str, stored_size: int | None, compressed_size: int | None) -> np.ndarray:
    """Parse an IDX stream, reading no more than its header declares (plus one byte to see the end)."""
    dtype, dims, header = _header(stream, name)
    # Python integers: a numpy product of large dimensions wraps around and can match a short file.
    payload = math.prod(dims) * dtype.itemsize
    expected = header + payload
    if stored_size is not None and stored_size != expected:
        raise _length_error(name, dims, expected, stored_size)
    if payload > MAX_IDX_BYTES:
        raise DataError(f"{name} declares dimensions {'x'.join(map(str, dims))} ({payload} bytes of data); "
                        f"cnnkit reads IDX files of up to {MAX_IDX_BYTES >> 30} GiB")
    if compressed_size is not None and expected > compressed_size * MAX_GZIP_RATIO + 1024:
        raise _length_error(name, dims, expected, f"{compressed_size} compressed bytes, too few to hold that")
    data = bytearray(payload)
    view, got = memoryview(data), 0
    while got < payload:
        n = stream.readinto(view[got:])
        if not n:
            raise _length_error(name, dims, expected, header + got)
        got += n
    if stream.read(1):
        raise _length_error(name, dims, expected, f"more than {expected} bytes")
    array = np.frombuffer(data, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes into an array; every malformed header or length is a DataError."""
    import io

    return _read_stream(io.BytesIO(raw), name, len(raw), None)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (.gz or plain), checking the header before reading the data it declares."""
    path = Path(path)
    size = path.stat().st_size
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return _read_stream(stream, str(path), None, size)
        with open(path, "rb") as stream:
            return _read_stream(stream, str(path), size, None)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise DataError(f"cannot read IDX file {path}: {exc}", "the gzip stream is corrupt or truncated") from None


def encode_idx(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= MAX_DIMS:
        raise DataError(f"IDX cannot store {array.ndim} dimensions")
    header = struct.pack(">HBB", 0, _CODES[native], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_DTYPES[_CODES[native]], copy=False).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write atomically: a temporary file in the same directory, fsync, then rename."""
    from cnnkit.fileio import atomic_write_bytes

    path = Path(path)
    compress = path.suffix == ".gz" if compress is None else compress
    payload = encode_idx(array)
    if compress:
        # mtime=0 keeps the output byte-identical from run to run.
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)
    return path
