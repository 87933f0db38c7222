"""Fuzzing the parsers that read untrusted input: IDX bytes and --kernel strings.

Whatever the input, the result is either a consistent value or the one error
type the CLI turns into an `error:` line; never another exception.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnkit.data.idx import IDX_DTYPES, encode_idx, parse_idx, read_idx
from cnnkit.errors import DataError, UsageError
from cnnkit.viz.kernels import PRESETS, kernel_text, parse_kernel
from hostile import idx_header

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_error(raw: bytes):
    try:
        return parse_idx(raw)
    except DataError as exc:
        assert exc.message  # says what is wrong
        return exc


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_parse_consistently_or_raise_data_error(raw):
    first, second = _parse_or_error(raw), _parse_or_error(raw)
    if isinstance(first, DataError):
        assert isinstance(second, DataError) and second.message == first.message
    else:
        np.testing.assert_array_equal(first, second)
        # A file that parses is exactly the encoding of what it parsed to.
        assert encode_idx(first) == raw


@st.composite
def idx_like(draw):
    """Headers that are nearly right: the dtype code, dimensions or length may be off."""
    code = draw(st.sampled_from([*IDX_DTYPES, 0x00, 0x0A, 0x0F, 0xFF]))
    ndim = draw(st.integers(0, 9))
    dims = draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim))
    itemsize = IDX_DTYPES[code].itemsize if code in IDX_DTYPES else 1
    right = int(np.prod(dims)) * itemsize if dims else 0
    length = max(0, right + draw(st.integers(-3, 3)))
    payload = draw(st.binary(min_size=length, max_size=length))
    zero = draw(st.sampled_from([0, 0, 0, 1, 0x0800]))
    raw = struct.pack(">HBB", zero, code, ndim) + struct.pack(f">{ndim}I", *dims) + payload
    return raw, zero == 0 and code in IDX_DTYPES and 1 <= ndim <= 8 and length == right, dims, code


@FAST
@given(idx_like())
def test_near_valid_headers_parse_exactly_when_valid(case):
    raw, valid, dims, code = case
    result = _parse_or_error(raw)
    if valid:
        assert not isinstance(result, DataError), result
        assert result.shape == tuple(dims) and result.dtype == IDX_DTYPES[code].newbyteorder("=")
    else:
        assert isinstance(result, DataError)


@FAST
@given(st.sampled_from(list(IDX_DTYPES)), st.lists(st.integers(0, 5), min_size=1, max_size=4), st.data())
def test_encode_then_parse_round_trips(code, dims, data):
    dtype = IDX_DTYPES[code].newbyteorder("=")
    raw = data.draw(st.binary(min_size=int(np.prod(dims)) * dtype.itemsize, max_size=int(np.prod(dims)) * dtype.itemsize))
    array = np.frombuffer(raw, dtype=dtype).reshape(dims)
    back = parse_idx(encode_idx(array))
    assert back.tobytes() == array.tobytes() and back.shape == array.shape


def test_dimensions_whose_product_wraps_around_are_refused():
    # 65536**4 == 2**64: a uint64 product wraps to 0 and would "match" a bare header.
    raw = idx_header(0x08, (65536,) * 4)
    with pytest.raises(DataError, match="truncated"):
        parse_idx(raw)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 60))
def test_corrupt_or_truncated_gzip_files_raise_data_error(tmp_path_factory, payload, cut):
    path = tmp_path_factory.mktemp("gz") / "x-images-idx3-ubyte.gz"
    good = gzip.compress(encode_idx(np.zeros((2, 3, 3), np.uint8)), mtime=0)
    # Flip bytes inside the deflate stream, or cut the file short, or write junk.
    mangled = good[:12] + bytes(b ^ 0x5A for b in good[12:12 + cut]) + good[12 + cut:]
    for raw in (payload, good[: len(good) - cut - 1], mangled):
        path.write_bytes(raw)
        try:
            array = read_idx(path)
        except DataError:
            continue
        assert isinstance(array, np.ndarray)


# --- the --kernel parser ---------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_kernel_text_parses_to_a_finite_matrix_or_raises_usage_error(text):
    try:
        kernel = parse_kernel(text)
    except UsageError as exc:
        assert exc.exit_code == 2 and exc.message
        return
    assert kernel.ndim == 2 and kernel.dtype == torch.float32 and torch.isfinite(kernel).all()
    assert torch.equal(parse_kernel(kernel_text(kernel)), kernel)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.data())
def test_written_matrices_parse_to_their_values(rows, cols, data):
    values = data.draw(st.lists(st.lists(st.floats(-1e6, 1e6, width=32), min_size=cols, max_size=cols), min_size=rows, max_size=rows))
    text = ";".join(",".join(repr(v) for v in row) for row in values)
    assert torch.equal(parse_kernel(text), torch.tensor(values, dtype=torch.float32))


@pytest.mark.parametrize("text", ["1,2;3", "1,2,3;4,5", "a,b;c,d", "", " ", "1,,2", "1;2;", "nan", "1,inf", "1e39", "vertical;1"])
def test_malformed_kernels_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_kernel(text)


def test_presets_are_the_tutorial_matrices():
    assert parse_kernel("vertical").tolist() == [[-1, 0, 1]] * 3
    assert parse_kernel("Horizontal").tolist() == [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]
    assert set(PRESETS) == {"vertical", "horizontal", "sobel-x", "sobel-y", "laplacian", "blur", "sharpen"}
    assert abs(float(parse_kernel("blur").sum()) - 1.0) < 1e-6
