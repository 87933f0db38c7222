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


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise DataError(f"cannot read IDX file {path}: {exc}", "the gzip stream is corrupt or truncated") from None


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes into an array; every malformed header or length is a DataError."""
    if len(raw) < 4:
        raise DataError(f"{name} is too short to be an IDX file ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise DataError(f"{name} has a wrong magic number 0x{raw[:4].hex()}: IDX files start with two zero bytes")
    if code not in IDX_DTYPES:
        raise DataError(f"{name} has an unknown IDX dtype code 0x{code:02x}")
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(f"{name} declares {ndim} dimensions; IDX data has 1 to {MAX_DIMS}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_DTYPES[code]
    # Python integers: a numpy product of large dimensions wraps around and can match a short file.
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{name} is {state}: dimensions {'x'.join(map(str, dims))} need {expected} bytes, the file has {len(raw)}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


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
