"""Tests for tinytl/io.py: round trips, interop, malformed files, checksum, atomic saves."""
import hashlib
import json
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from tinytl import io as tio

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool"]
FORMATS = ["safetensors", "npz"]


def sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def all_dtypes_state():
    state = {}
    for i, dt in enumerate(DTYPES):
        state[f"{dt}.matrix"] = sample(dt, (3, 5), seed=i)
        state[f"{dt}.scalar"] = sample(dt, (), seed=i)
        state[f"{dt}.empty"] = sample(dt, (0,), seed=i)
        state[f"{dt}.empty3d"] = sample(dt, (2, 0, 4), seed=i)
    return state


def assert_same(loaded, expected):
    assert list(sorted(loaded)) == list(sorted(expected))
    for k, v in expected.items():
        got = loaded[k]
        assert got.dtype == np.asarray(v).dtype, k
        assert got.shape == np.shape(v), k
        np.testing.assert_array_equal(got, v)
        assert got.flags.c_contiguous and got.flags.writeable and got.flags.owndata, k
        assert got.dtype.isnative, k


def path_for(tmp_path, fmt, stem="w"):
    return tmp_path / f"{stem}.{fmt}"


def no_temp_files(folder, keep):
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_all_dtypes_and_shapes(tmp_path, fmt):
    state = all_dtypes_state()
    p = path_for(tmp_path, fmt)
    tio.save(state, p)
    assert_same(tio.load(p), state)
    assert_same(tio.load(str(p)), state)                  # str and PathLike both work


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_empty_dict(tmp_path, fmt):
    p = path_for(tmp_path, fmt)
    tio.save({}, p)
    assert tio.load(p) == {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_contiguous_big_endian_and_fortran_inputs(tmp_path, fmt):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    state = {"strided": base[::2, ::3], "fortran": np.asfortranarray(base),
             "big_endian": base.astype(">f4"), "transposed": base.T}
    p = path_for(tmp_path, fmt)
    tio.save(state, p)
    out = tio.load(p)
    for k, v in state.items():
        np.testing.assert_array_equal(out[k], v)
        assert out[k].flags.c_contiguous and out[k].dtype.isnative
    assert out["big_endian"].dtype == np.float32


@pytest.mark.parametrize("fmt", FORMATS)
def test_tensor_like_values_and_state_dict_objects(tmp_path, fmt):
    class FakeTensor:
        def __init__(self, a):
            self.data = a

    class FakeModule:
        def state_dict(self):
            return {"0.weight": np.ones((2, 3), np.float32), "0.bias": FakeTensor(np.zeros(2, np.float32))}

    p = path_for(tmp_path, fmt)
    tio.save({"t": FakeTensor(np.arange(3.0)), "g": np.float32(2.5)}, p)
    out = tio.load(p)
    np.testing.assert_array_equal(out["t"], [0, 1, 2])
    assert out["g"].shape == () and out["g"] == np.float32(2.5)
    tio.save(FakeModule(), p)
    assert set(tio.load(p)) == {"0.weight", "0.bias"}


def test_cuda_array_interface_objects_are_copied_to_host(tmp_path):
    class FakeDeviceArray:                  # what tinytl sees from CuPy: the interface and .get()
        __cuda_array_interface__ = {}

        def get(self):
            return np.arange(4, dtype=np.int32)

    p = tmp_path / "w.safetensors"
    tio.save({"x": FakeDeviceArray()}, p)
    np.testing.assert_array_equal(tio.load(p)["x"], np.arange(4))


def test_tinytl_module_and_tensors_round_trip(tmp_path, device):
    import tinytl as tl
    tl.manual_seed(0)
    model = tl.nn.Sequential(tl.nn.Linear(4, 3), tl.nn.ReLU(), tl.nn.Linear(3, 2)).to(device)
    p = tmp_path / "model.safetensors"
    tio.save(model, p)
    assert_same(tio.load(p), model.state_dict())
    t = tl.tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3), device=device)
    tio.save({"t": t}, p)
    np.testing.assert_array_equal(tio.load(p)["t"], np.arange(6.0).reshape(2, 3))


def test_top_level_save_and_load(tmp_path):
    import tinytl as tl
    state = {"a": np.arange(3, dtype=np.float32)}
    tl.save(state, tmp_path / "a.safetensors", metadata={"note": "x"})
    assert_same(tl.load(tmp_path / "a.safetensors"), state)


# ---------------------------------------------------------------- metadata and layout

@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_round_trip(tmp_path, fmt):
    p = path_for(tmp_path, fmt)
    tio.save({"a": np.zeros(2)}, p, metadata={"arch": "mlp", "note": "héllo ✓"})
    meta = tio.load_metadata(p)
    assert meta["arch"] == "mlp" and meta["note"] == "héllo ✓"
    assert set(meta) == ({"arch", "note"} if fmt == "npz" else {"arch", "note", "format", "tinytl.sha256"})
    tensors, meta2 = tio.read_header(p)
    assert meta2 == meta
    assert tensors == {"a": ("float64", (2,), 16)}


def test_safetensors_layout_by_hand(tmp_path):
    state = {"b": np.arange(3, dtype=np.int16), "a": np.ones((2, 2), np.float32), "c": np.array(True)}
    p = tmp_path / "w.safetensors"
    tio.save(state, p, metadata={"k": "v"})
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    text = raw[8:8 + n]
    assert text.startswith(b"{") and text.rstrip(b" ").endswith(b"}")
    header = json.loads(text)
    data = raw[8 + n:]
    meta = header.pop("__metadata__")
    assert meta == {"format": "pt", "k": "v", "tinytl.sha256": hashlib.sha256(data).hexdigest()}
    assert header == {
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "I16", "shape": [3], "data_offsets": [16, 22]},
        "c": {"dtype": "BOOL", "shape": [], "data_offsets": [22, 23]},
    }
    assert data == state["a"].astype("<f4").tobytes() + state["b"].astype("<i2").tobytes() + b"\x01"


def test_read_header_reads_no_data(tmp_path, monkeypatch):
    p = tmp_path / "w.safetensors"
    tio.save({"x": np.zeros((100, 100), np.float32), "y": np.zeros(3, np.uint8)}, p)
    tensors, meta = tio.read_header(p)
    assert tensors == {"x": ("float32", (100, 100), 40000), "y": ("uint8", (3,), 3)}
    assert "tinytl.sha256" in meta
    monkeypatch.setattr(tio, "_read_into", lambda *a: pytest.fail("read_header read tensor data"))
    tio.read_header(p)


def test_npz_files_from_numpy_load_and_ours_load_in_numpy(tmp_path):
    state = {"w": np.arange(12.0).reshape(3, 4), "f": np.asfortranarray(np.arange(6).reshape(2, 3)),
             "be": np.arange(4, dtype=">i4"), "s": np.float32(3)}
    for writer in (np.savez, np.savez_compressed):
        p = tmp_path / f"{writer.__name__}.npz"
        writer(p, **state)
        out = tio.load(p)
        for k, v in state.items():
            np.testing.assert_array_equal(out[k], v)
            assert out[k].flags.c_contiguous and out[k].dtype.isnative
    p = tmp_path / "ours.npz"
    tio.save(state, p, metadata={"k": "v"})
    with np.load(p, allow_pickle=False) as z:
        for k, v in state.items():
            np.testing.assert_array_equal(z[k], v)


# ---------------------------------------------------------------- interop with safetensors / PyTorch

def test_torch_state_dict_from_safetensors_torch_loads(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    sd["extra.half"] = torch.randn(2, 2).half()
    sd["extra.mask"] = torch.tensor([True, False])
    sd["extra.bytes"] = torch.arange(5, dtype=torch.uint8)
    sd["extra.scalar"] = torch.tensor(7, dtype=torch.int32)
    p = tmp_path / "torch.safetensors"
    st_torch.save_file(sd, str(p))                         # no tinytl checksum in this file
    out = tio.load(p)
    assert set(out) == set(sd)
    for k, v in sd.items():
        assert out[k].shape == tuple(v.shape)
        np.testing.assert_array_equal(out[k], v.numpy())
    assert out["1.num_batches_tracked"].dtype == np.int64
    assert "tinytl.sha256" not in tio.load_metadata(p)


def test_tinytl_files_load_in_safetensors_numpy_and_torch(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    safetensors = pytest.importorskip("safetensors")
    state = all_dtypes_state()
    p = tmp_path / "w.safetensors"
    tio.save(state, p, metadata={"arch": "mlp"})
    out = st_numpy.load_file(str(p))
    assert set(out) == set(state)
    for k, v in state.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape
        np.testing.assert_array_equal(out[k], v)
    with safetensors.safe_open(str(p), "np") as f:
        meta = f.metadata()
    assert meta["arch"] == "mlp" and meta["format"] == "pt" and len(meta["tinytl.sha256"]) == 64

    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    out = st_torch.load_file(str(p))
    for k, v in state.items():
        t = out[k]
        assert tuple(t.shape) == v.shape
        if v.dtype.kind == "u" and v.dtype.itemsize > 1:   # torch has few ops for uint16/32/64
            t = t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[v.dtype.itemsize])
            v = v.view(f"i{v.dtype.itemsize}")
        np.testing.assert_array_equal(t.numpy(), v)


def test_safetensors_numpy_writer_loads(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "z": np.zeros((0, 2), np.int64),
             "m": np.ones(3, np.float16)}
    p = tmp_path / "np.safetensors"
    st_numpy.save_file(state, str(p), metadata={"x": "y"})
    assert_same(tio.load(p), state)
    assert tio.load_metadata(p) == {"x": "y"}


# ---------------------------------------------------------------- what save refuses

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("state, error, fragment", [
    ({1: np.zeros(2)}, TypeError, "1"),
    ({"": np.zeros(2)}, ValueError, "empty"),
    ({"__metadata__": np.zeros(2)}, ValueError, "__metadata__"),
    ({"a\x00b": np.zeros(2)}, ValueError, "NUL"),
    ({"bad\ud800": np.zeros(2)}, ValueError, "UTF-8"),
    ({"ok": np.zeros(2), "objs": np.array([1, "x"], dtype=object)}, TypeError, "objs"),
    ({"cplx": np.zeros(2, np.complex64)}, TypeError, "cplx"),
    ({"text": np.array(["a", "b"])}, TypeError, "text"),
    ({"rec": np.zeros(2, dtype=[("x", "f4")])}, TypeError, "rec"),
    ({"when": np.zeros(2, "datetime64[s]")}, TypeError, "when"),
    ({"lst": [1.0, 2.0]}, TypeError, "lst"),
    ({"none": None}, TypeError, "none"),
], ids=lambda x: repr(x)[:30] if not isinstance(x, type) else x.__name__)
def test_save_refuses_bad_state_and_writes_nothing(tmp_path, fmt, state, error, fragment):
    p = path_for(tmp_path, fmt)
    with pytest.raises(error, match=fragment):
        tio.save(state, p)
    no_temp_files(tmp_path, [])
    tio.save({"old": np.ones(2)}, p)                        # an existing file is left untouched
    before = p.read_bytes()
    with pytest.raises(error, match=fragment):
        tio.save(state, p)
    assert p.read_bytes() == before
    no_temp_files(tmp_path, [p.name])


@pytest.mark.parametrize("obj, metadata, error", [
    ([np.zeros(2)], None, TypeError),
    (np.zeros(2), None, TypeError),
    ({"a": np.zeros(2)}, {"k": 1}, TypeError),
    ({"a": np.zeros(2)}, {2: "v"}, TypeError),
    ({"a": np.zeros(2)}, "k=v", TypeError),
    ({"a": np.zeros(2)}, {"tinytl.sha256": "0" * 64}, ValueError),
])
def test_save_refuses_bad_objects_and_metadata(tmp_path, obj, metadata, error):
    with pytest.raises(error):
        tio.save(obj, tmp_path / "w.safetensors", metadata=metadata)
    no_temp_files(tmp_path, [])


# ---------------------------------------------------------------- malformed safetensors

def raw_file(path, header, data=b"", n=None, pad=True):
    """Write a safetensors file by hand: header is a dict (JSON-encoded) or raw bytes."""
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        hb += b" " * (-len(hb) % 8)
    path.write_bytes(struct.pack("<Q", len(hb) if n is None else n) + hb + data)
    return path


def entry(dtype="F32", shape=(1,), offsets=(0, 4)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


MALFORMED = {
    "empty file": (b"", None, None, "shorter than"),
    "7 bytes": (b"\x08\x00\x00\x00\x00\x00\x00", None, None, "shorter than"),
    "header past end": ({"a": entry()}, b"\0" * 4, 4096, "runs past the end"),
    "header over cap": ({"a": entry()}, b"\0" * 4, 2 ** 40, "cap"),
    "header u64 max": ({}, b"", 2 ** 64 - 1, "cap"),
    "no brace": (b"[1, 2]", b"", None, "does not start with"),
    "leading space": (b' {"a": 1}', b"", None, "does not start with"),
    "not utf-8": (b'{"\xff\xfe": 1}', b"", None, "UTF-8"),
    "not json": (b'{"a": ', b"", None, "not valid JSON"),
    "nul padding": (b'{}\0\0\0\0\0\0', b"", None, "not valid JSON"),
    "deep nesting": (b'{"a":' + b"[" * 200000 + b"]" * 200000 + b"}", b"", None, "not valid JSON"),
    "huge int literal": (b'{"a": ' + b"9" * 5000 + b"}", b"", None, "not valid JSON"),
    "duplicate tensor": (b'{"a": %s, "a": %s}' % (json.dumps(entry()).encode(), json.dumps(entry()).encode()),
                         b"\0" * 4, None, "twice"),
    "duplicate field": (b'{"a": {"dtype": "F32", "dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
                        b"\0" * 4, None, "twice"),
    "entry not dict": ({"a": [1, 2]}, b"", None, "exactly"),
    "entry extra key": ({"a": {**entry(), "extra": 1}}, b"\0" * 4, None, "exactly"),
    "entry missing key": ({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, None, "exactly"),
    "empty name": ({"": entry()}, b"\0" * 4, None, "empty name"),
    "unknown dtype": ({"a": entry(dtype="BF16", offsets=(0, 2))}, b"\0" * 2, None, "unsupported dtype"),
    "dtype not str": ({"a": entry(dtype=4)}, b"\0" * 4, None, "unsupported dtype"),
    "lowercase dtype": ({"a": entry(dtype="f32")}, b"\0" * 4, None, "unsupported dtype"),
    "negative dim": ({"a": entry(shape=(-1, -4), offsets=(0, 16))}, b"\0" * 16, None, "negative"),
    "float dim": ({"a": entry(shape=(1.0,))}, b"\0" * 4, None, "list of integers"),
    "bool dim": ({"a": entry(shape=(True,))}, b"\0" * 4, None, "list of integers"),
    "shape not list": ({"a": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}}, b"\0" * 4, None,
                       "list of integers"),
    "shape overflows 64 bits": ({"a": entry(shape=(2 ** 32, 2 ** 32, 2 ** 32), offsets=(0, 0))}, b"", None,
                                "overflows 64 bits"),
    "shape overflow wraps to 0": ({"a": entry(dtype="U8", shape=(2 ** 32, 2 ** 32, 0), offsets=(0, 0))}, b"",
                                  None, "overflows 64 bits"),
    "dim 2**63 times 0": ({"a": entry(dtype="U8", shape=(2 ** 63, 0), offsets=(0, 0))}, b"", None,
                          "overflows 64 bits"),
    "too many dims": ({"a": entry(shape=[1] * 40)}, b"\0" * 4, None, "dimensions"),
    "size disagrees": ({"a": entry(shape=(3,), offsets=(0, 8))}, b"\0" * 8, None, "needs 12 bytes"),
    "offsets not ints": ({"a": entry(offsets=(0.0, 4.0))}, b"\0" * 4, None, "two integers"),
    "offsets length 3": ({"a": entry(offsets=(0, 4, 8))}, b"\0" * 4, None, "two integers"),
    "offsets not list": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": "0:4"}}, b"\0" * 4, None,
                         "two integers"),
    "end before begin": ({"a": entry(shape=(0,), offsets=(4, 0))}, b"\0" * 4, None, "increasing"),
    "negative begin": ({"a": entry(offsets=(-4, 0))}, b"", None, "increasing"),
    "overlap": ({"a": entry(shape=(2,), offsets=(0, 8)), "b": entry(shape=(2,), offsets=(4, 12))},
                b"\0" * 12, None, "overlaps"),
    "same offsets": ({"a": entry(), "b": entry()}, b"\0" * 4, None, "overlaps"),
    "gap": ({"a": entry(), "b": entry(offsets=(8, 12))}, b"\0" * 12, None, "gap of 4 bytes"),
    "not from 0": ({"a": entry(offsets=(4, 8))}, b"\0" * 8, None, "does not start at offset 0"),
    "past end of file": ({"a": entry(shape=(4,), offsets=(0, 16))}, b"\0" * 8, None, "past the end"),
    "trailing bytes": ({"a": entry()}, b"\0" * 8, None, "trailing"),
    "data without tensors": ({}, b"\0" * 8, None, "trailing"),
    "claims 1 TB": ({"a": entry(shape=(2 ** 38,), offsets=(0, 2 ** 40))}, b"\0" * 64, None, "past the end"),
    "metadata not dict": ({"__metadata__": ["x"]}, b"", None, "__metadata__"),
    "metadata value int": ({"__metadata__": {"x": 1}}, b"", None, "__metadata__"),
    "metadata null": ({"__metadata__": None}, b"", None, "__metadata__"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_safetensors_raise_checkpoint_error_naming_the_file(tmp_path, case):
    header, data, n, fragment = MALFORMED[case]
    p = tmp_path / "bad.safetensors"
    if case in ("empty file", "7 bytes"):
        p.write_bytes(header)
    else:
        raw_file(p, header, data, n=n)
    for reader in (tio.load, tio.read_header):
        with pytest.raises(tio.CheckpointError, match=fragment) as err:
            reader(p)
        assert isinstance(err.value, ValueError)
        assert str(p) in str(err.value) and err.value.path == str(p)


def test_header_claiming_a_terabyte_allocates_nothing(tmp_path):
    p = raw_file(tmp_path / "tb.safetensors",
                 {"a": entry(shape=(2 ** 38,), offsets=(0, 2 ** 40)), "b": entry(offsets=(2 ** 40, 2 ** 40 + 4))},
                 b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(tio.CheckpointError):
            tio.load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2 ** 20


def test_a_valid_hand_written_file_with_unsorted_offsets_loads(tmp_path):
    # safetensors.torch orders tensors by dtype, not by name: offsets need not follow names.
    data = np.float32(1.5).tobytes() + np.arange(2, dtype="<i8").tobytes() + b"\x01"
    p = raw_file(tmp_path / "ok.safetensors",
                 {"z": entry(), "a": entry(dtype="I64", shape=(2,), offsets=(4, 20)),
                  "m": entry(dtype="BOOL", shape=(), offsets=(20, 21)),
                  "e": entry(shape=(0, 3), offsets=(4, 4))}, data)
    out = tio.load(p)
    assert out["z"].tolist() == [1.5] and out["a"].tolist() == [0, 1] and out["m"].item() is True
    assert out["e"].shape == (0, 3)
    assert list(tio.read_header(p)[0]) == ["z", "e", "a", "m"]          # file order


def test_missing_file_raises_file_not_found(tmp_path):
    for name in ("missing.safetensors", "missing.npz"):
        with pytest.raises(FileNotFoundError):
            tio.load(tmp_path / name)
        with pytest.raises(FileNotFoundError):
            tio.read_header(tmp_path / name)


# ---------------------------------------------------------------- checksum

def test_checksum_detects_a_flipped_data_bit(tmp_path):
    p = tmp_path / "w.safetensors"
    tio.save({"a": np.arange(100, dtype=np.float32), "b": np.ones(7, np.uint8)}, p)
    raw = bytearray(p.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    for pos in (8 + n, len(raw) - 1, 8 + n + 200):
        bad = bytearray(raw)
        bad[pos] ^= 0x10
        p.write_bytes(bytes(bad))
        with pytest.raises(tio.CheckpointError, match="checksum") as err:
            tio.load(p)
        assert str(p) in str(err.value)
        tio.read_header(p)                               # the header alone is still fine


def test_checksum_is_not_required(tmp_path):
    data = np.arange(3, dtype="<f4").tobytes()
    p = raw_file(tmp_path / "plain.safetensors", {"a": entry(shape=(3,), offsets=(0, 12))}, data)
    np.testing.assert_array_equal(tio.load(p)["a"], [0, 1, 2])


# ---------------------------------------------------------------- malformed npz

def npz_bytes(tmp_path, **arrays):
    p = tmp_path / "src.npz"
    np.savez(p, **arrays)
    return p.read_bytes()


def zip_with(tmp_path, members, compression=zipfile.ZIP_STORED):
    p = tmp_path / "bad.npz"
    with zipfile.ZipFile(p, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return p


def npy_bytes(array, **header_changes):
    """A .npy file whose header can lie (e.g. shape=(2**40,))."""
    d = np.lib.format.header_data_from_array_1_0(array)
    d.update(header_changes)
    import io as _io
    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue() + array.tobytes(order="F" if d["fortran_order"] else "C")


def test_npz_fortran_order_arrays_including_0d(tmp_path):
    members = [("s.npy", npy_bytes(np.array(2.5, np.float32), fortran_order=True)),
               ("m.npy", npy_bytes(np.asfortranarray(np.arange(6, dtype=np.int16).reshape(3, 2))))]
    p = zip_with(tmp_path, members)
    out = tio.load(p)
    assert out["s"].shape == () and out["s"] == np.float32(2.5)
    np.testing.assert_array_equal(out["m"], np.arange(6).reshape(3, 2))
    assert out["m"].flags.c_contiguous and out["m"].flags.owndata


def test_torch_tensors_are_refused_with_a_clear_message(tmp_path):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="torch.Tensor"):
        tio.save({"t": torch.zeros(2)}, tmp_path / "w.safetensors")


class PickleBomb:
    """Unpickling this creates a file: proof that code from the checkpoint ran."""
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_npz_with_pickled_objects_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    PickleBomb.marker = marker
    p = tmp_path / "evil.npz"
    np.savez(p, w=np.ones(2), evil=np.array([PickleBomb()], dtype=object), allow_pickle=True)
    for reader in (tio.load, tio.read_header):
        with pytest.raises(tio.CheckpointError, match="pickle") as err:
            reader(p)
        assert str(p) in str(err.value)
    assert not marker.exists()
    with np.load(p, allow_pickle=True) as z:              # the payload is live: numpy would run it
        z["evil"]
    assert marker.exists()


@pytest.mark.parametrize("case", [
    "random bytes", "empty", "truncated", "not npy member", "bad npy magic", "huge shape", "short data",
    "trailing data", "negative dim", "duplicate member", "bz2 member", "bad crc", "complex dtype",
    "bad header literal", "bare .npy name",
])
def test_malformed_npz_raise_checkpoint_error_naming_the_file(tmp_path, case):
    good = npz_bytes(tmp_path, a=np.arange(10, dtype=np.float32))
    p = tmp_path / "bad.npz"
    a = np.arange(4, dtype=np.float32)
    if case == "random bytes":
        p.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(300)))
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        p.write_bytes(good[: len(good) // 2])
    elif case == "not npy member":
        zip_with(tmp_path, [("a.txt", b"hello")])
    elif case == "bad npy magic":
        zip_with(tmp_path, [("a.npy", b"NOTNUMPY" + b"\0" * 64)])
    elif case == "huge shape":
        zip_with(tmp_path, [("a.npy", npy_bytes(a, shape=(2 ** 40,)))])
    elif case == "short data":
        zip_with(tmp_path, [("a.npy", npy_bytes(a, shape=(5,)))])
    elif case == "trailing data":
        zip_with(tmp_path, [("a.npy", npy_bytes(a, shape=(3,)))])
    elif case == "negative dim":
        zip_with(tmp_path, [("a.npy", npy_bytes(a, shape=(-4,)))])
    elif case == "duplicate member":
        with pytest.warns(UserWarning):
            zip_with(tmp_path, [("a.npy", npy_bytes(a)), ("a.npy", npy_bytes(a))])
    elif case == "bz2 member":
        zip_with(tmp_path, [("a.npy", npy_bytes(a))], compression=zipfile.ZIP_BZIP2)
    elif case == "bad crc":
        raw = bytearray(good)
        raw[raw.index(np.arange(10, dtype=np.float32).tobytes()) + 5] ^= 1
        p.write_bytes(bytes(raw))
    elif case == "complex dtype":
        zip_with(tmp_path, [("c.npy", npy_bytes(np.zeros(2, np.complex64)))])
    elif case == "bad header literal":
        raw = npy_bytes(a).replace(b"'descr'", b"exit() ")   # a call: literal_eval refuses it
        zip_with(tmp_path, [("a.npy", raw)])
    elif case == "bare .npy name":
        zip_with(tmp_path, [(".npy", npy_bytes(a))])
    # read_header reads only the .npy headers, so it may not reach a corrupted data byte.
    for reader in (tio.load,) if case == "bad crc" else (tio.load, tio.read_header):
        with pytest.raises(tio.CheckpointError) as err:
            reader(p)
        assert isinstance(err.value, ValueError) and str(p) in str(err.value)


def test_npz_claiming_a_terabyte_allocates_nothing(tmp_path):
    p = zip_with(tmp_path, [("a.npy", npy_bytes(np.zeros(4, np.float32), shape=(2 ** 38,)))])
    tracemalloc.start()
    try:
        with pytest.raises(tio.CheckpointError):
            tio.load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2 ** 20


# ---------------------------------------------------------------- atomic saves

@pytest.mark.parametrize("fmt", FORMATS)
def test_failing_rename_leaves_old_file_and_no_temp(tmp_path, fmt, monkeypatch):
    p = path_for(tmp_path, fmt)
    tio.save({"old": np.ones(3)}, p)
    before = p.read_bytes()

    def broken_replace(src, dst):
        raise OSError("simulated rename failure")
    monkeypatch.setattr(tio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        tio.save({"new": np.zeros(1000)}, p)
    assert p.read_bytes() == before
    no_temp_files(tmp_path, [p.name])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_old_file_and_no_temp(tmp_path, fmt, error, monkeypatch):
    p = path_for(tmp_path, fmt)
    tio.save({"old": np.ones(3)}, p)
    before = p.read_bytes()
    writer_name = "_write_npz" if fmt == "npz" else "_write_safetensors"
    real_writer = getattr(tio, writer_name)

    def writer_that_dies(f, *args):
        f.write(b"half a checkpoint")
        real_writer(f, *args)
        f.flush()
        raise error
    monkeypatch.setattr(tio, writer_name, writer_that_dies)
    with pytest.raises(type(error)):
        tio.save({"new": np.zeros(1000)}, p)
    assert p.read_bytes() == before
    no_temp_files(tmp_path, [p.name])


def test_failing_fsync_leaves_old_file(tmp_path, monkeypatch):
    p = tmp_path / "w.safetensors"
    tio.save({"old": np.ones(3)}, p)
    before = p.read_bytes()

    def broken_fsync(fd):
        raise OSError("simulated I/O error")
    monkeypatch.setattr(tio.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated"):
        tio.save({"new": np.zeros(3)}, p)
    assert p.read_bytes() == before
    no_temp_files(tmp_path, [p.name])


@pytest.mark.parametrize("fmt", FORMATS)
def test_saving_over_the_file_just_loaded(tmp_path, fmt):
    p = path_for(tmp_path, fmt)
    tio.save({"w": np.arange(5.0)}, p)
    state = tio.load(p)
    state["w"] *= 2
    state["extra"] = np.ones(2, np.int32)
    tio.save(state, p)
    out = tio.load(p)
    np.testing.assert_array_equal(out["w"], np.arange(5.0) * 2)
    assert set(out) == {"w", "extra"}
    no_temp_files(tmp_path, [p.name])


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_permissions_are_kept_or_follow_the_umask(tmp_path):
    p = tmp_path / "w.safetensors"
    tio.save({"a": np.ones(1)}, p)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask
    os.chmod(p, 0o640)
    tio.save({"a": np.ones(2)}, p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640


KILLED_SAVER = textwrap.dedent("""
    import importlib.util, sys
    import numpy as np
    spec = importlib.util.spec_from_file_location("tinytl_io_under_test", sys.argv[1])
    tio = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tio)
    target, version = sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    while True:                      # keep saving new versions until killed
        version += 1
        tio.save({"big": np.full(10_000_000, version, np.float32),
                  "small": np.full(7, version, np.int64)}, target)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_save_leaves_old_or_new_version(tmp_path):
    """Kill a process saving a 40 MB checkpoint at random moments: the target is always whole."""
    target = tmp_path / "ckpt.safetensors"
    tio.save({"big": np.full(10_000_000, 0, np.float32), "small": np.full(7, 0, np.int64)}, target)
    rng = random.Random(1234)
    start, latest, seen = time.monotonic(), 0, set()
    for trial in range(10):
        child = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, tio.__file__, str(target),
                                  str(1000 * (trial + 1))], stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        out = tio.load(target)                               # never a CheckpointError
        assert set(out) == {"big", "small"} and out["big"].shape == (10_000_000,)
        version = int(out["small"][0])
        assert (out["small"] == version).all() and (out["big"] == version).all()
        assert version == latest or 1000 * (trial + 1) < version < 1000 * (trial + 2)
        latest = version
        seen.add(version)
        # A kill can strand the hidden temp file (nothing runs after SIGKILL), never the target.
        for leftover in tmp_path.iterdir():
            if leftover != target:
                assert leftover.name.startswith(".ckpt.safetensors.") and leftover.name.endswith(".tmp")
                leftover.unlink()
    assert time.monotonic() - start < 20
