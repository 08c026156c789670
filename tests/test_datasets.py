"""Tests for tinytl/datasets.py: MNIST-1D generation and its cache, IDX files, MNIST folders."""
import gzip
import os
import random
import struct
import sys

import numpy as np
import pytest

from tinytl import datasets

N = 500          # small: generating 500 examples takes ~0.1 s


# ---------------------------------------------------------------- MNIST-1D

try:
    import mnist1d.data as mnist1d_data
except ImportError:       # the generator tests skip; the error-message test still runs
    mnist1d_data = None
needs_mnist1d = pytest.mark.skipif(mnist1d_data is None, reason="needs the mnist1d package")


@pytest.fixture
def count_calls(monkeypatch):
    """Count calls of mnist1d.data.make_dataset (still calling the real one)."""
    calls = []
    real = mnist1d_data.make_dataset

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(mnist1d_data, "make_dataset", spy)
    return calls


@needs_mnist1d
def test_shapes_and_dtypes():
    d = datasets.mnist1d(num_samples=N, cache_dir=False)
    assert set(d) == {"x", "y", "x_test", "y_test"}
    assert d["x"].shape == (400, 40) and d["x_test"].shape == (100, 40)
    assert d["y"].shape == (400,) and d["y_test"].shape == (100,)
    assert d["x"].dtype == d["x_test"].dtype == np.float32
    assert d["y"].dtype == d["y_test"].dtype == np.int64
    assert set(np.unique(d["y"]).tolist()) <= set(range(10))


@needs_mnist1d
def test_matches_make_dataset_and_is_deterministic():
    a = datasets.mnist1d(num_samples=N, seed=3, cache_dir=False)
    b = datasets.mnist1d(num_samples=N, seed=3, cache_dir=False)
    c = datasets.mnist1d(num_samples=N, seed=4, cache_dir=False)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["x"], c["x"])
    args = mnist1d_data.get_dataset_args()
    args.num_samples, args.seed = N, 3
    ref = mnist1d_data.make_dataset(args)
    np.testing.assert_array_equal(a["x"], ref["x"].astype(np.float32))
    np.testing.assert_array_equal(a["y_test"], ref["y_test"])


@needs_mnist1d
def test_train_split_and_kwargs():
    d = datasets.mnist1d(num_samples=N, train_split=0.5, final_seq_length=30, cache_dir=False)
    assert d["x"].shape == (250, 30) and d["x_test"].shape == (250, 30)
    with pytest.raises(TypeError, match="unknown parameter"):
        datasets.mnist1d(num_samples=N, cache_dir=False, not_a_param=1)


@needs_mnist1d
def test_global_random_state_is_left_alone():
    np.random.seed(11)
    random.seed(11)
    expect_np, expect_py = np.random.random(), random.random()
    np.random.seed(11)
    random.seed(11)
    datasets.mnist1d(num_samples=N, cache_dir=False)     # make_dataset reseeds both globally
    assert np.random.random() == expect_np and random.random() == expect_py


@needs_mnist1d
def test_cache_hit_skips_generation(tmp_path, count_calls):
    a = datasets.mnist1d(num_samples=N, seed=1, cache_dir=tmp_path)
    assert len(count_calls) == 1
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    b = datasets.mnist1d(num_samples=N, seed=1, cache_dir=tmp_path)
    assert len(count_calls) == 1                     # served from the cache
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == b[k].dtype
    # any other parameter is another file
    datasets.mnist1d(num_samples=N, seed=1, cache_dir=tmp_path, iid_noise_scale=0.05)
    datasets.mnist1d(num_samples=N, seed=2, cache_dir=tmp_path)
    assert len(count_calls) == 3 and len(list(tmp_path.glob("*.npz"))) == 3


@needs_mnist1d
def test_cache_file_holds_no_pickle(tmp_path):
    datasets.mnist1d(num_samples=N, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(["x", "y", "x_test", "y_test"])


@needs_mnist1d
@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty", "wrong_dtype"])
def test_corrupt_cache_is_regenerated(tmp_path, count_calls, damage):
    good = datasets.mnist1d(num_samples=N, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, x=good["x"].astype(np.float64), y=good["y"], x_test=good["x_test"], y_test=good["y_test"])
    again = datasets.mnist1d(num_samples=N, cache_dir=tmp_path)
    assert len(count_calls) == 2
    for k in good:
        np.testing.assert_array_equal(good[k], again[k])
    datasets.mnist1d(num_samples=N, cache_dir=tmp_path)     # and the rewritten file is good
    assert len(count_calls) == 2


@needs_mnist1d
def test_cache_folder_from_environment(tmp_path, monkeypatch, count_calls):
    monkeypatch.setenv("TINYTL_CACHE", str(tmp_path / "env"))
    datasets.mnist1d(num_samples=N)
    assert len(list((tmp_path / "env").glob("mnist1d_*.npz"))) == 1


def test_cache_folder_order(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYTL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.cache_folder() == tmp_path / "xdg" / "tinytl"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")            # ignored, per the XDG spec
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_folder() == tmp_path / "home" / ".cache" / "tinytl"
    monkeypatch.setenv("TINYTL_CACHE", str(tmp_path / "t"))
    assert datasets.cache_folder() == tmp_path / "t"
    assert datasets.cache_folder(tmp_path / "arg") == tmp_path / "arg"


@needs_mnist1d
def test_unwritable_cache_warns_and_still_returns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.warns(RuntimeWarning, match="cache"):
        d = datasets.mnist1d(num_samples=N, cache_dir=blocker / "sub")
    assert d["x"].shape == (400, 40)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)     # what Python does for a blocked import
    with pytest.raises(ImportError, match=r"pip install 'tinytl\[data\]'"):
        datasets.mnist1d(num_samples=N, cache_dir=False)


@pytest.mark.parametrize("kwargs,exc", [
    (dict(num_samples=5), ValueError), (dict(num_samples=50.0), TypeError),
    (dict(seed=-1), ValueError), (dict(seed="a"), TypeError),
    (dict(train_split=0.0), ValueError), (dict(train_split=1.5), ValueError),
    (dict(cache_dir=True), TypeError), (dict(cache_dir=3), TypeError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        datasets.mnist1d(**kwargs)


# ---------------------------------------------------------------- IDX files

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr, code=None):
    arr = np.asarray(arr)
    code = IDX_CODES[arr.dtype.type] if code is None else code
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((4, 3, 2)) * 50).astype(dtype)
    out = datasets.load_idx(write(tmp_path / "a.idx", idx_bytes(arr), gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (4, 3, 2)
    np.testing.assert_array_equal(out, arr)
    out[0] = 0                                         # a normal, writeable array


def test_idx_gzip_detected_by_magic_not_extension(tmp_path):
    arr = np.arange(6, dtype=np.uint8)
    np.testing.assert_array_equal(datasets.load_idx(write(tmp_path / "x.gz", idx_bytes(arr))), arr)
    np.testing.assert_array_equal(datasets.load_idx(write(tmp_path / "y-ubyte", idx_bytes(arr), gz=True)), arr)


def test_idx_one_dim_and_empty(tmp_path):
    one = datasets.load_idx(write(tmp_path / "a", idx_bytes(np.array([7, 8], np.uint8))))
    np.testing.assert_array_equal(one, [7, 8])
    assert datasets.load_idx(write(tmp_path / "b", idx_bytes(np.zeros((0, 5), np.int16)))).shape == (0, 5)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    data = idx_bytes(np.arange(24, dtype=np.int32).reshape(2, 3, 4))
    with pytest.raises(ValueError, match=r"expected 96 bytes of data, found 95"):
        datasets.load_idx(write(tmp_path / "t", data[:-1], gz))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_extra_bytes(tmp_path, gz):
    data = idx_bytes(np.arange(24, dtype=np.int32).reshape(2, 3, 4))
    with pytest.raises(ValueError, match=r"expected 96 bytes of data, found (97|more than 96)"):
        datasets.load_idx(write(tmp_path / "t", data + b"\0", gz))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("head,word", [
    (b"\x01\x00\x08\x01", "magic"), (b"\x00\x07\x08\x01", "magic"),
    (b"\x00\x00\x0a\x01", "type code"), (b"\x00\x00\xff\x01", "type code"),
    (b"\x00\x00\x08\x00", "dimensions"), (b"\x00\x00\x08\x09", "dimensions"),
    (b"\x00\x00", "header"), (b"", "header"), (b"\x00\x00\x08\x03\x00\x00", "header"),
])
def test_idx_bad_header(tmp_path, gz, head, word):
    path = write(tmp_path / "bad", head + b"\0" * 4 if word not in ("header",) else head, gz)
    with pytest.raises(ValueError, match=word) as e:
        datasets.load_idx(path)
    assert str(path) in str(e.value)


def test_idx_huge_claim_is_refused_without_allocating(tmp_path):
    # 3 dims of 2**32 - 1 declared, 10 bytes present: refused before any allocation
    head = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1)
    for gz in (False, True):
        with pytest.raises(ValueError, match="found 10"):
            datasets.load_idx(write(tmp_path / f"huge{gz}", head + b"\0" * 10, gz))


def test_idx_gzip_bomb_is_bounded(tmp_path):
    # header claims 100 bytes; the stream inflates to 50 MB of zeros: we read at most 101
    data = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 100) + b"\0" * 50_000_000
    path = write(tmp_path / "bomb", data, gz=True)
    assert os.path.getsize(path) < 100_000
    with pytest.raises(ValueError, match="found more than 100"):
        datasets.load_idx(path)


def test_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    with pytest.raises(ValueError, match="gzip|bytes"):
        datasets.load_idx(write(tmp_path / "c", good[:len(good) // 2]))


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        datasets.load_idx(tmp_path / "nope")


# ---------------------------------------------------------------- MNIST folders

def mnist_folder(path, kind, n, gz, rows=28, cols=28):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, rows, cols), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write(path / f"{kind}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
    write(path / f"{kind}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("kind", ["train", "t10k"])
def test_load_mnist(tmp_path, kind, gz):
    images, labels = mnist_folder(tmp_path, kind, 12, gz)
    x, y = datasets.load_mnist(tmp_path, kind=kind)
    assert x.shape == (12, 784) and x.dtype == np.float32
    assert y.shape == (12,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x, images.reshape(12, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


def test_load_mnist_test_alias(tmp_path):
    mnist_folder(tmp_path, "t10k", 3, False)
    assert datasets.load_mnist(str(tmp_path), kind="test")[0].shape == (3, 784)


def test_load_mnist_missing_file_is_named(tmp_path):
    mnist_folder(tmp_path, "train", 3, False)
    os.remove(tmp_path / "train-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        datasets.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        datasets.load_mnist(tmp_path, kind="t10k")
    with pytest.raises(FileNotFoundError, match="folder"):
        datasets.load_mnist(tmp_path / "nope")


def test_load_mnist_bad_kind_and_mismatch(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        datasets.load_mnist(tmp_path, kind="val")
    mnist_folder(tmp_path, "train", 5, False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="5 images .* 4 labels"):
        datasets.load_mnist(tmp_path)
