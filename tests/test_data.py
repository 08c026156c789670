"""Tests for tinytl/data.py: batching, len, drop_last, shuffling, seeds, validation."""
import numpy as np
import pytest

import tinytl as tl
from tinytl.data import DataLoader


def make(n=10, d=3):
    X = np.arange(n * d, dtype=np.float32).reshape(n, d)
    y = np.arange(n, dtype=np.int64)
    return X, y


# ---------------------------------------------------------------- batching

@pytest.mark.parametrize("n,b,drop_last,sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, False, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
    (0, 4, False, []),
])
def test_batch_sizes_and_len(n, b, drop_last, sizes):
    X, y = make(n)
    loader = DataLoader(X, y, batch_size=b, drop_last=drop_last)
    assert len(loader) == len(sizes)
    got = [(len(xb), len(yb)) for xb, yb in loader]
    assert got == [(s, s) for s in sizes]


def test_unshuffled_batches_are_in_order_and_match():
    X, y = make(10)
    batches = list(DataLoader(X, y, batch_size=4))
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), X)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in batches]), y)
    for xb, yb in batches:
        assert xb.dtype == np.float32 and yb.dtype == np.int64
        assert xb.shape[1:] == (3,)


def test_y_none_yields_arrays_alone():
    X, _ = make(7)
    batches = list(DataLoader(X, batch_size=3, shuffle=True, seed=0))
    assert all(isinstance(b, np.ndarray) for b in batches)
    assert sorted(np.concatenate(batches)[:, 0].tolist()) == sorted(X[:, 0].tolist())


def test_multidimensional_x_and_y():
    X = np.random.default_rng(0).random((8, 2, 5, 5)).astype(np.float32)
    Y = np.random.default_rng(1).random((8, 4))
    for xb, yb in DataLoader(X, Y, batch_size=3, shuffle=True, seed=1):
        assert xb.shape[1:] == (2, 5, 5) and yb.shape[1:] == (4,)
        # each row of xb still goes with its own row of yb
        for xr, yr in zip(xb, yb):
            i = int(np.flatnonzero((X == xr).all(axis=(1, 2, 3)))[0])
            np.testing.assert_array_equal(Y[i], yr)


def test_lists_are_accepted():
    loader = DataLoader([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [0, 1, 0], batch_size=2)
    (x0, y0), (x1, y1) = loader
    np.testing.assert_array_equal(x0, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(y1, [0])


def test_loader_can_be_iterated_many_times():
    X, y = make(10)
    loader = DataLoader(X, y, batch_size=4)
    assert [len(list(loader)) for _ in range(3)] == [3, 3, 3]


# ---------------------------------------------------------------- shuffling

def epoch_order(loader):
    return np.concatenate([yb for _, yb in loader])


def test_shuffle_covers_every_index_once_per_epoch():
    X, y = make(103)
    loader = DataLoader(X, y, batch_size=10, shuffle=True, seed=3)
    for _ in range(3):
        order = epoch_order(loader)
        assert sorted(order.tolist()) == list(range(103))
        assert not np.array_equal(order, y)            # 103! orders: not the identity
        for xb, yb in loader:                          # rows and labels stay paired
            np.testing.assert_array_equal(xb, X[yb])


def test_shuffle_drop_last_drops_a_random_remainder():
    X, y = make(10)
    loader = DataLoader(X, y, batch_size=3, shuffle=True, seed=0, drop_last=True)
    seen = [epoch_order(loader) for _ in range(20)]
    assert all(len(s) == 9 and len(set(s.tolist())) == 9 for s in seen)
    assert len(set().union(*(s.tolist() for s in seen))) == 10   # every example gets its turn


def test_new_permutation_each_epoch():
    X, y = make(50)
    loader = DataLoader(X, y, batch_size=8, shuffle=True, seed=0)
    orders = [epoch_order(loader) for _ in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.array_equal(orders[a], orders[b])


def test_seed_reproducible_and_independent_of_global_state():
    X, y = make(50)
    a = DataLoader(X, y, batch_size=8, shuffle=True, seed=7)
    tl.manual_seed(123)
    first = [epoch_order(a) for _ in range(3)]
    b = DataLoader(X, y, batch_size=8, shuffle=True, seed=7)
    tl.manual_seed(999)
    np.random.seed(5)
    second = [epoch_order(b) for _ in range(3)]
    for p, q in zip(first, second):
        np.testing.assert_array_equal(p, q)
    c = DataLoader(X, y, batch_size=8, shuffle=True, seed=8)
    assert not np.array_equal(epoch_order(c), first[0])


def test_manual_seed_makes_unseeded_loader_reproducible():
    X, y = make(50)
    loader = DataLoader(X, y, batch_size=8, shuffle=True)
    tl.manual_seed(0)
    first = [epoch_order(loader) for _ in range(3)]
    tl.manual_seed(0)
    second = [epoch_order(loader) for _ in range(3)]
    for p, q in zip(first, second):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(first[0], first[1])


def test_permutation_is_drawn_when_the_epoch_starts():
    X, y = make(30)
    loader = DataLoader(X, y, batch_size=5, shuffle=True)
    tl.manual_seed(1)
    it = iter(loader)
    tl.manual_seed(2)                   # reseeding after iter() does not change this epoch
    order = np.concatenate([yb for _, yb in it])
    tl.manual_seed(1)
    np.testing.assert_array_equal(order, epoch_order(loader))


def test_shuffled_batches_are_not_overwritten_by_the_next():
    X, y = make(20)
    loader = DataLoader(X, y, batch_size=4, shuffle=True, seed=0)
    kept = list(loader)
    copies = [(xb.copy(), yb.copy()) for xb, yb in kept]
    for (xb, yb), (xc, yc) in zip(kept, copies):
        np.testing.assert_array_equal(xb, xc)
        np.testing.assert_array_equal(yb, yc)
        np.testing.assert_array_equal(xb, X[yb])


# ---------------------------------------------------------------- device

def test_device_cpu_yields_numpy():
    X, y = make(6)
    for xb, yb in DataLoader(X, y, batch_size=4, device="cpu"):
        assert isinstance(xb, np.ndarray) and isinstance(yb, np.ndarray)


def test_device_cuda(device):
    X, y = make(6)
    for xb, yb in DataLoader(X, y, batch_size=4, shuffle=True, seed=0, device=device):
        assert tl.backend.device_of(xb) == device and tl.backend.device_of(yb) == device
        np.testing.assert_array_equal(tl.backend.to_numpy(xb), X[tl.backend.to_numpy(yb)])


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-2), ValueError, "batch_size"),
    (dict(batch_size=2.0), TypeError, "batch_size"),
    (dict(batch_size=True), TypeError, "batch_size"),
    (dict(batch_size="4"), TypeError, "batch_size"),
    (dict(shuffle=1), TypeError, "shuffle"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(drop_last=None), TypeError, "drop_last"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(device="tpu"), ValueError, "device"),
])
def test_bad_arguments_raise_naming_them(kwargs, exc, word):
    X, y = make(6)
    with pytest.raises(exc, match=word):
        DataLoader(X, y, **kwargs)


def test_mismatched_lengths_raise():
    X, y = make(6)
    with pytest.raises(ValueError, match="first dimension"):
        DataLoader(X, y[:5])


@pytest.mark.parametrize("bad", [np.float32(3.0), 5, None])
def test_scalar_x_raises(bad):
    with pytest.raises((ValueError, TypeError), match="X"):
        DataLoader(bad)


def test_ragged_x_raises():
    with pytest.raises(TypeError, match="X"):
        DataLoader([[1, 2], [3]])


def test_scalar_y_raises():
    X, _ = make(6)
    with pytest.raises(ValueError, match="y"):
        DataLoader(X, 3)


def test_repr():
    X, y = make(10)
    r = repr(DataLoader(X, y, batch_size=4, shuffle=True, seed=2))
    assert r.startswith("DataLoader(") and "batch_size=4" in r and "shuffle=True" in r
    assert "seed=2" in r and "batches=3" in r and "(10, 3)" in r
