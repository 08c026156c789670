"""Fuzzing tinytl.io.load: whatever the bytes, only CheckpointError (a ValueError) comes out,
and memory stays bounded by the size of the file."""
import io as _io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinytl import io as tio

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLACK = 2 * 2 ** 20           # the interpreter's own bookkeeping during one load

BASE = {
    "w": np.arange(12, dtype=np.float32).reshape(3, 4),
    "b": np.arange(3, dtype=np.int64),
    "s": np.array(True),
    "e": np.zeros((0, 2), np.float16),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def valid_st(folder):
    p = folder / "valid.safetensors"
    tio.save(BASE, p)
    return p.read_bytes()


@pytest.fixture(scope="module")
def valid_npz(folder):
    p = folder / "valid.npz"
    tio.save(BASE, p)
    return p.read_bytes()


def load_bytes(folder, raw, suffix=".safetensors"):
    """Load ``raw`` from a file; return the arrays or the CheckpointError. Checks memory stays bounded."""
    p = folder / ("case" + suffix)
    p.write_bytes(raw)
    tracemalloc.start()
    try:
        try:
            result = tio.load(p)
        except tio.CheckpointError as e:              # any other exception fails the test
            assert str(p) in str(e)
            result = e
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(raw) + SLACK, f"load of a {len(raw)}-byte file peaked at {peak} bytes"
    if not isinstance(result, Exception):
        for name, arr in result.items():
            assert isinstance(name, str) and isinstance(arr, np.ndarray)
            assert arr.flags.c_contiguous and arr.flags.writeable
    return result


def frame(header_bytes, data=b"", n=None):
    header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes) if n is None else n) + header_bytes + data


# ---------------------------------------------------------------- safetensors

@FUZZ
@given(raw=st.binary(max_size=512))
def test_random_bytes(folder, raw):
    load_bytes(folder, raw)


@FUZZ
@given(body=st.binary(max_size=256), data=st.binary(max_size=64), lie=st.none() | st.integers(0, 2 ** 64 - 1))
def test_random_header_bytes_behind_a_brace(folder, body, data, lie):
    load_bytes(folder, frame(b"{" + body, data, n=lie))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20)


@FUZZ
@given(header=st.dictionaries(st.text(max_size=8), json_values, max_size=4), data=st.binary(max_size=64))
def test_random_json_headers(folder, header, data):
    load_bytes(folder, frame(json.dumps(header).encode(), data))


dims = st.integers(0, 5) | st.integers(-3, 2 ** 66) | st.sampled_from([2 ** 31, 2 ** 32, 2 ** 63, 2 ** 64 - 1])
dtypes = st.sampled_from(list(tio.DTYPES) + ["BF16", "F8_E4M3", "f32", "", "I128"]) | st.integers(0, 9)
offsets = st.integers(-2, 120) | st.integers(0, 2 ** 64)


@FUZZ
@given(st.data())
def test_mutated_headers(folder, valid_st, data):
    """Start from a valid file and change dtypes, shapes, offsets, names and the data length."""
    n = struct.unpack("<Q", valid_st[:8])[0]
    header = json.loads(valid_st[8:8 + n])
    body = valid_st[8 + n:]
    for name in [k for k in header if k != "__metadata__"]:
        e = header[name]
        choice = data.draw(st.sampled_from(["keep", "dtype", "shape", "offsets", "all", "drop", "junk"]))
        if choice in ("dtype", "all"):
            e["dtype"] = data.draw(dtypes)
        if choice in ("shape", "all"):
            e["shape"] = data.draw(st.lists(dims, max_size=5) | st.just([2 ** 32] * 3) | json_values)
        if choice in ("offsets", "all"):
            e["data_offsets"] = data.draw(st.lists(offsets, min_size=2, max_size=2) | json_values)
        if choice == "drop":
            del header[name]
        if choice == "junk":
            header[name] = data.draw(json_values)
    if data.draw(st.booleans()):                       # the metadata (and its checksum) can lie too
        header["__metadata__"] = data.draw(json_values)
    text = json.dumps(header).encode()
    if data.draw(st.booleans()):                       # a duplicated tensor name
        dup = data.draw(st.sampled_from(sorted(BASE)))
        text = text[:-1] + b', "%s": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}' % dup.encode()
    cut = data.draw(st.integers(0, len(body)))
    extra = data.draw(st.binary(max_size=16))
    result = load_bytes(folder, frame(text, body[:cut] + extra))
    if not isinstance(result, Exception):              # whatever loaded agrees with its header
        for name, arr in result.items():
            assert arr.dtype == tio.DTYPES[header[name]["dtype"]].newbyteorder("=")
            assert list(arr.shape) == header[name]["shape"]


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(1, 255)), min_size=1, max_size=4),
       cut=st.none() | st.integers(0, 10 ** 6))
def test_flipped_bytes_and_truncation(folder, valid_st, flips, cut):
    raw = bytearray(valid_st)
    n = struct.unpack("<Q", valid_st[:8])[0]
    for pos, mask in flips:
        raw[pos % len(raw)] ^= mask
    if cut is not None:
        del raw[cut % (len(raw) + 1):]
    result = load_bytes(folder, bytes(raw))
    if len(raw) == len(valid_st) and raw[:8 + n] == valid_st[:8 + n] and raw != valid_st:
        # only tensor data changed: the checksum catches every such change
        assert isinstance(result, tio.CheckpointError) and "checksum" in str(result)


def test_terabyte_claims_allocate_nothing(folder):
    lies = [
        {"a": {"dtype": "F32", "shape": [2 ** 38], "data_offsets": [0, 2 ** 40]}},
        {"a": {"dtype": "U8", "shape": [2 ** 20, 2 ** 20], "data_offsets": [0, 2 ** 40]}},
        {"a": {"dtype": "F64", "shape": [2 ** 62], "data_offsets": [0, 2 ** 65]}},
    ]
    for header in lies:
        result = load_bytes(folder, frame(json.dumps(header).encode(), b"\0" * 256))
        assert isinstance(result, tio.CheckpointError)
    result = load_bytes(folder, frame(b"{}", b"", n=2 ** 40))       # a header length of 1 TB
    assert isinstance(result, tio.CheckpointError)


# ---------------------------------------------------------------- npz

@FUZZ
@given(raw=st.binary(max_size=512))
def test_random_bytes_npz(folder, raw):
    load_bytes(folder, raw, ".npz")


@FUZZ
@given(raw=st.binary(max_size=512))
def test_random_bytes_behind_a_zip_signature(folder, raw):
    load_bytes(folder, b"PK\x03\x04" + raw, ".npz")


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(1, 255)), min_size=1, max_size=4),
       cut=st.none() | st.integers(0, 10 ** 6))
def test_flipped_bytes_and_truncation_npz(folder, valid_npz, flips, cut):
    raw = bytearray(valid_npz)
    for pos, mask in flips:
        raw[pos % len(raw)] ^= mask
    if cut is not None:
        del raw[cut % (len(raw) + 1):]
    load_bytes(folder, bytes(raw), ".npz")


@FUZZ
@given(shape=st.lists(dims, max_size=4).map(tuple), descr=st.sampled_from(["<f4", ">f8", "|b1", "<i8", "|O", "<c8"]),
       fortran=st.booleans(), payload=st.binary(max_size=64),
       method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_lying_npy_headers(folder, shape, descr, fortran, payload, method):
    buf = _io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    except ValueError:                                 # a header too long for version 1.0
        return
    zbuf = _io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", compression=method) as zf:
        zf.writestr("a.npy", buf.getvalue() + payload)
    result = load_bytes(folder, zbuf.getvalue(), ".npz")
    if not isinstance(result, Exception):
        assert result["a"].shape == shape and result["a"].nbytes == len(payload)
