"""Tests for tinytl/utils/data.py: datasets, samplers, collation, the DataLoader and its fast path.

Behaviour is tested without torch; where torch is importable the same calls are made on
torch.utils.data and the batches, collated structures, dtypes, lengths and split sizes compared.
"""
import collections
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tinytl as tl
from tinytl import _random
from tinytl.utils.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset, IterableDataset,
                               RandomSampler, SequentialSampler, Subset, SubsetRandomSampler, TensorDataset,
                               WeightedRandomSampler, default_collate, default_convert, random_split)

Point = collections.namedtuple("Point", ["x", "y"])


def make(n=10, d=3):
    X = np.arange(n * d, dtype=np.float32).reshape(n, d)
    y = np.arange(n, dtype=np.int64) * 10
    return X, y


def arrays(batch):
    return [b.numpy() for b in batch]


def same_batches(a, b):
    """Two epochs of [xb, yb] batches are identical: values, dtypes, shapes, order."""
    assert len(a) == len(b)
    for ba, bb in zip(a, b):
        assert isinstance(ba, list) and isinstance(bb, list) and len(ba) == len(bb)
        for ta, tb in zip(ba, bb):
            assert isinstance(ta, tl.Tensor) and isinstance(tb, tl.Tensor)
            assert ta.dtype == tb.dtype and ta.shape == tb.shape
            np.testing.assert_array_equal(ta.numpy(), tb.numpy())


def slow(dataset, **kw):
    """The same loader on the per-example path (a collate_fn that is not the default one)."""
    return DataLoader(dataset, collate_fn=lambda batch: default_collate(batch), **kw)


# ------------------------------------------------------------------ datasets

def test_tensor_dataset_rows_and_arrays():
    X, y = make()
    ds = TensorDataset(tl.tensor(X), y)            # a Tensor and an array
    assert len(ds) == 10 and len(ds.tensors) == 2
    assert all(isinstance(t, tl.Tensor) for t in ds.tensors)
    x3, y3 = ds[3]
    np.testing.assert_array_equal(x3.numpy(), X[3])
    assert y3.item() == 30
    assert ds.tensors[1].data is y or np.shares_memory(ds.tensors[1].data, y)   # no copy


@pytest.mark.parametrize("args,err,match", [
    ((np.zeros((3, 2)), np.zeros(4)), ValueError, "Size mismatch between tensors"),
    ((), ValueError, "at least one tensor"),
    ((np.float32(1.0),), ValueError, "at least one dimension"),
    (([[1, 2], [3]],), (TypeError, ValueError), "tensor 0"),
])
def test_tensor_dataset_errors(args, err, match):
    with pytest.raises(err, match=match):
        TensorDataset(*args)


def test_subset_concat_chain_and_add():
    X, y = make(6)
    ds = TensorDataset(X, y)
    sub = Subset(ds, [4, 0, 2])
    assert len(sub) == 3 and sub[0][1].item() == 40 and sub[-1][1].item() == 20
    cat = ds + sub
    assert isinstance(cat, ConcatDataset) and len(cat) == 9 and cat.cumulative_sizes == [6, 9]
    assert [cat[i][1].item() for i in (0, 5, 6, 8, -1, -9)] == [0, 50, 40, 20, 20, 0]
    with pytest.raises(ValueError, match="absolute value"):
        cat[-10]
    with pytest.raises(IndexError):
        cat[9]
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])

    class Stream(IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

        def __len__(self):
            return self.n
    chain = Stream(2) + Stream(3)
    assert isinstance(chain, ChainDataset) and list(chain) == [0, 1, 0, 1, 2] and len(chain) == 5
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([Stream(2)])
    with pytest.raises(NotImplementedError):
        Dataset()[0]


# ----------------------------------------------------------------- samplers

def test_samplers():
    data = list(range(7))
    assert list(SequentialSampler(data)) == data and len(SequentialSampler(data)) == 7
    tl.manual_seed(0)
    perm = list(RandomSampler(data))
    assert sorted(perm) == data and all(type(i) is int for i in perm)
    long = list(RandomSampler(data, num_samples=17))       # two permutations, then 3 of a third
    assert len(long) == 17 and sorted(long[:7]) == data and sorted(long[7:14]) == data
    assert len(set(long[14:])) == 3
    rep = list(RandomSampler(data, replacement=True, num_samples=200))
    assert len(rep) == 200 and set(rep) == set(data)        # with replacement, repeats
    sub = list(SubsetRandomSampler([10, 20, 30]))
    assert sorted(sub) == [10, 20, 30]
    w = list(WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 100))
    assert set(w) == {1, 3} and w.count(3) > w.count(1)
    assert sorted(WeightedRandomSampler([1, 1, 0, 1], 3, replacement=False)) == [0, 1, 3]
    assert list(BatchSampler(SequentialSampler(range(5)), 2, drop_last=False)) == [[0, 1], [2, 3], [4]]
    assert list(BatchSampler(SequentialSampler(range(5)), 2, drop_last=True)) == [[0, 1], [2, 3]]
    assert list(BatchSampler(iter([3, 1, 4, 1, 5]), 2, False)) == [[3, 1], [4, 1], [5]]   # any iterable
    assert len(BatchSampler(range(5), 2, False)) == 3 and len(BatchSampler(range(5), 2, True)) == 2


@pytest.mark.parametrize("make_sampler,err,match", [
    (lambda: RandomSampler(range(3), replacement=1), TypeError, "replacement"),
    (lambda: RandomSampler(range(3), num_samples=0), ValueError, "num_samples"),
    (lambda: RandomSampler(range(3), num_samples=2.5), TypeError, "num_samples"),
    (lambda: RandomSampler([]), ValueError, "num_samples"),
    (lambda: RandomSampler(range(3), generator=np.random.default_rng(0)), TypeError, "generator"),
    (lambda: BatchSampler(range(3), 0, False), ValueError, "batch_size"),
    (lambda: BatchSampler(range(3), 2.0, False), TypeError, "batch_size"),
    (lambda: BatchSampler(range(3), 2, None), TypeError, "drop_last"),
    (lambda: WeightedRandomSampler([[1.0, 2.0]], 2), ValueError, "1d"),
    (lambda: WeightedRandomSampler([1.0, -1.0], 2), ValueError, "non-negative"),
    (lambda: WeightedRandomSampler([0.0, 0.0], 2), ValueError, "not all zero"),
    (lambda: WeightedRandomSampler([1.0, 0.0], 2, replacement=False), ValueError, "non-zero"),
    (lambda: WeightedRandomSampler([1.0], 0), ValueError, "num_samples"),
])
def test_sampler_errors(make_sampler, err, match):
    with pytest.raises(err, match=match):
        make_sampler()


# ------------------------------------------------------------- random_split

@pytest.mark.parametrize("n,lengths,sizes", [
    (10, [0.5, 0.3, 0.2], [5, 3, 2]),
    (11, [0.5, 0.3, 0.2], [6, 3, 2]),
    (7, [1 / 3, 1 / 3, 1 / 3], [3, 2, 2]),
    (5, [0.1, 0.1, 0.8], [1, 0, 4]),            # 0, 0, 4 floored, the remainder to the first
    (10, [7, 3], [7, 3]),
    (3, [1.0], [3]),
])
def test_random_split_sizes_and_cover(n, lengths, sizes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # a split of length 0 warns
        parts = random_split(list(range(n)), lengths, generator=tl.Generator().manual_seed(1))
    assert [len(p) for p in parts] == sizes and all(isinstance(p, Subset) for p in parts)
    assert sorted(i for p in parts for i in p.indices) == list(range(n))


def test_random_split_reproducible_and_errors():
    a = random_split(range(20), [0.5, 0.5], generator=tl.Generator().manual_seed(3))
    b = random_split(range(20), [0.5, 0.5], generator=tl.Generator().manual_seed(3))
    assert a[0].indices == b[0].indices and a[1].indices == b[1].indices
    tl.manual_seed(4)
    c = random_split(range(20), [10, 10])
    tl.manual_seed(4)
    assert random_split(range(20), [10, 10])[0].indices == c[0].indices
    state = _random.generator().bit_generator.state
    for lengths, err in [([5, 4], ValueError), ([0.5, 0.6], ValueError), ([1.5, -0.5], ValueError),
                         ([11, -1], ValueError), ("ab", TypeError), ([], TypeError), ([True, 9], TypeError)]:
        with pytest.raises(err, match="random_split"):
            random_split(range(10), lengths)
    assert _random.generator().bit_generator.state == state        # nothing drawn
    with pytest.warns(UserWarning, match="index 0 is 0"):
        random_split(range(2), [0.0, 1.0])


# ---------------------------------------------------------------- collation

def test_default_collate_types():
    out = default_collate([(1.0, 2, True, "a", np.float32(1), np.int32(3)),
                           (3.0, 4, False, "b", np.float32(2), np.int32(4))])
    assert isinstance(out, list) and len(out) == 6
    assert out[0].dtype == np.float64 and out[0].tolist() == [1.0, 3.0]
    assert out[1].dtype == np.int64 and out[1].tolist() == [2, 4]
    assert out[2].dtype == np.bool_
    assert tuple(out[3]) == ("a", "b")
    assert out[4].dtype == np.float32 and out[5].dtype == np.int32
    assert default_collate(["a", "b"]) == ["a", "b"]
    arr = default_collate([np.ones((2, 3), np.float64), np.zeros((2, 3), np.float64)])
    assert arr.shape == (2, 2, 3) and arr.dtype == np.float64 and not arr.requires_grad
    d = default_collate([{"x": tl.tensor([1.0, 2.0]), "y": 0}, {"x": tl.tensor([3.0, 4.0]), "y": 1}])
    assert set(d) == {"x", "y"} and d["x"].shape == (2, 2) and d["y"].tolist() == [0, 1]
    p = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert type(p) is Point and p.x.dtype == np.int64 and p.y.dtype == np.float64
    nested = default_collate([[(1, 2), [3.0]], [(5, 6), [7.0]]])
    assert isinstance(nested, list) and nested[0][1].tolist() == [2, 6] and nested[1][0].tolist() == [3.0, 7.0]
    assert default_collate([1, 2.5]).dtype == np.float32          # torch.tensor([1, 2.5]): the default float


def test_default_collate_does_not_build_a_graph():
    w = tl.tensor([1.0, 2.0], requires_grad=True)
    out = default_collate([w * 2, w * 3])
    assert out.shape == (2, 2) and not out.requires_grad


@pytest.mark.parametrize("batch,err,match", [
    ([tl.tensor([1.0]), tl.tensor([1.0, 2.0])], RuntimeError, "equal size"),
    ([[1, 2], [3]], RuntimeError, "equal size"),
    ([object(), object()], TypeError, "default_collate"),
    ([np.array(["a"]), np.array(["b"])], TypeError, "default_collate"),
    ([None, None], TypeError, "default_collate"),
])
def test_default_collate_errors(batch, err, match):
    with pytest.raises(err, match=match):
        default_collate(batch)


def test_default_convert():
    assert default_convert(3) == 3 and default_convert("s") == "s"
    t = default_convert(np.array([1, 2]))
    assert isinstance(t, tl.Tensor) and t.dtype == np.int64
    out = default_convert((np.float32(1.5), 2))
    assert isinstance(out, list) and isinstance(out[0], tl.Tensor) and out[0].dtype == np.float32 and out[1] == 2
    p = default_convert(Point(np.array(0), 1))
    assert type(p) is Point and isinstance(p.x, tl.Tensor) and p.y == 1
    assert default_convert({"a": np.zeros(2)})["a"].shape == (2,)
    s = np.array(["a"])
    assert default_convert(s) is s


# --------------------------------------------------------------- DataLoader

@pytest.mark.parametrize("n,b,drop_last,sizes", [
    (10, 3, False, [3, 3, 3, 1]), (10, 3, True, [3, 3, 3]), (9, 3, False, [3, 3, 3]),
    (2, 5, False, [2]), (2, 5, True, []), (0, 4, False, []), (10, 1, False, [1] * 10),
])
def test_sequential_batches_and_len(n, b, drop_last, sizes):
    X, y = make(n)
    loader = DataLoader(TensorDataset(X, y), batch_size=b, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes) and [len(xb) for xb, _ in batches] == sizes
    if sizes and not drop_last:
        np.testing.assert_array_equal(np.concatenate([xb.numpy() for xb, _ in batches]), X)
        np.testing.assert_array_equal(np.concatenate([yb.numpy() for _, yb in batches]), y)
    for xb, yb in batches:
        assert xb.dtype == np.float32 and yb.dtype == np.int64 and xb.device == "cpu"
        assert not xb.requires_grad and not yb.requires_grad
    same_batches(batches, list(slow(TensorDataset(X, y), batch_size=b, drop_last=drop_last)))


def test_shuffle_reproducible_with_manual_seed_and_generator():
    X, y = make(50)
    ds = TensorDataset(X, y)
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    tl.manual_seed(0)
    e1, e2 = list(loader), list(loader)
    order1 = np.concatenate([yb.numpy() for _, yb in e1]) // 10
    assert sorted(order1.tolist()) == list(range(50))                 # one permutation per epoch
    assert not np.array_equal(order1, np.concatenate([yb.numpy() for _, yb in e2]) // 10)
    tl.manual_seed(0)
    same_batches(e1, list(loader))
    # the same permutation as the first wave's array loader under the same seed
    tl.manual_seed(0)
    old = np.concatenate([yb for _, yb in tl.data.DataLoader(X, y, batch_size=8, shuffle=True)])
    np.testing.assert_array_equal(old // 10, order1)
    # generator=: its own stream, untouched by the global one
    g1 = list(DataLoader(ds, batch_size=8, shuffle=True, generator=tl.Generator().manual_seed(5)))
    tl.manual_seed(123)
    g2 = list(DataLoader(ds, batch_size=8, shuffle=True, generator=tl.Generator().manual_seed(5)))
    same_batches(g1, g2)


def test_draws_happen_at_the_first_next():
    ds = TensorDataset(*make(20))
    tl.manual_seed(0)
    it = iter(DataLoader(ds, batch_size=4, shuffle=True))
    tl.manual_seed(1)
    first = next(it)
    tl.manual_seed(1)
    same_batches([first], [next(iter(DataLoader(ds, batch_size=4, shuffle=True)))])


SAMPLER_CASES = {
    "sequential": lambda ds: dict(batch_size=4),
    "shuffle": lambda ds: dict(batch_size=4, shuffle=True),
    "shuffle_drop_last": lambda ds: dict(batch_size=4, shuffle=True, drop_last=True),
    "replacement": lambda ds: dict(batch_size=5, sampler=RandomSampler(ds, replacement=True, num_samples=23)),
    "num_samples": lambda ds: dict(batch_size=6, sampler=RandomSampler(ds, num_samples=31)),
    "subset_random": lambda ds: dict(batch_size=3, sampler=SubsetRandomSampler([1, 5, 7, 2, 9, -1])),
    "weighted": lambda ds: dict(batch_size=4, sampler=WeightedRandomSampler(np.arange(len(ds)) + 1.0, 15)),
    "batch_sampler": lambda ds: dict(batch_sampler=BatchSampler(RandomSampler(ds), 3, drop_last=True)),
    "generator": lambda ds: dict(batch_size=4, shuffle=True, generator=tl.Generator().manual_seed(7)),
}


@pytest.mark.parametrize("wrap", ["tensor_dataset", "subset", "nested_subset"])
@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_fast_path_equals_slow_path(case, wrap, monkeypatch):
    X = np.random.default_rng(0).random((13, 2, 3)).astype(np.float32)
    ds = TensorDataset(X, np.arange(13) * 10, np.arange(13) % 2 == 0)
    if wrap == "subset":
        ds = Subset(ds, [12, 0, 3, 5, 7, 1, 2, 4, 6, 8, 9, 10])
    elif wrap == "nested_subset":
        ds = Subset(Subset(ds, list(range(12, -1, -1))), np.array([3, 1, 0, 2, 4, 5, 6, 7, 8, 9, 10]))
    tl.manual_seed(11)
    want = list(slow(ds, **SAMPLER_CASES[case](ds)))
    # the fast path never asks the TensorDataset for a row
    monkeypatch.setattr(TensorDataset, "__getitem__", lambda self, i: pytest.fail("slow path taken"))
    tl.manual_seed(11)
    loader = DataLoader(ds, **SAMPLER_CASES[case](ds))
    got = list(loader)
    same_batches(got, want)
    assert len(loader) == len(got)
    assert [t.dtype for t in got[0]] == [np.float32, np.int64, np.bool_]


def test_batches_are_copies():
    X, y = make(8)
    for shuffle in (False, True):
        xb, yb = next(iter(DataLoader(TensorDataset(X, y), batch_size=4, shuffle=shuffle)))
        xb.data[...] = -1
        assert (X >= 0).all()


def test_custom_datasets_and_collate_fn():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": np.array([i, i], dtype=np.float32), "y": i * i, "name": f"n{i}"}
    batches = list(DataLoader(Squares(), batch_size=2))
    assert len(batches) == 3 and batches[0]["x"].shape == (2, 2) and batches[0]["x"].dtype == np.float32
    assert batches[1]["y"].tolist() == [4, 9] and batches[2]["name"] == ["n4"]
    sums = list(DataLoader(Squares(), batch_size=2, collate_fn=lambda b: sum(e["y"] for e in b)))
    assert sums == [1, 13, 16]

    class Plain:                                   # no Dataset base class: duck typing is enough
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return tl.tensor([float(i)]), i
    xb, yb = next(iter(DataLoader(Plain(), batch_size=3)))
    assert xb.shape == (3, 1) and xb.dtype == np.float32 and yb.dtype == np.int64

    class Batched(Plain):                          # torch's __getitems__ protocol
        def __getitems__(self, indices):
            return [(tl.tensor([-1.0]), i) for i in indices]
    assert next(iter(DataLoader(Batched(), batch_size=3)))[0].tolist() == [[-1.0]] * 3


def test_unbatched_loading():
    X, y = make(3)
    items = list(DataLoader(TensorDataset(X, y), batch_size=None))
    assert len(items) == 3 and isinstance(items[0], list) and items[0][0].shape == (3,)
    assert list(DataLoader([1.5, 2.5], batch_size=None)) == [1.5, 2.5]       # numbers unchanged
    arr = list(DataLoader([np.zeros(2)], batch_size=None))[0]
    assert isinstance(arr, tl.Tensor)
    assert list(DataLoader(["a", "b"], batch_size=None, collate_fn=str.upper)) == ["A", "B"]


def test_iterable_dataset_loader():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter((np.full(2, i, np.float32), i) for i in range(7))
    batches = list(DataLoader(Stream(), batch_size=3))
    assert [len(yb) for _, yb in batches] == [3, 3, 1] and batches[2][1].tolist() == [6]
    assert len(list(DataLoader(Stream(), batch_size=3, drop_last=True))) == 2
    assert len(list(DataLoader(Stream(), batch_size=None))) == 7
    with pytest.raises(TypeError):
        len(DataLoader(Stream(), batch_size=3))                 # a stream without a length

    class Sized(Stream):
        def __len__(self):
            return 7
    assert len(DataLoader(Sized(), batch_size=3)) == 3 and len(DataLoader(Sized(), batch_size=3, drop_last=True)) == 2


def test_num_workers_loads_in_the_main_process():
    ds = TensorDataset(*make(10))
    tl.manual_seed(2)
    a = list(DataLoader(ds, batch_size=3, shuffle=True, num_workers=4, pin_memory=True,
                        worker_init_fn=lambda i: pytest.fail("no worker exists"),
                        persistent_workers=True, prefetch_factor=2, timeout=5))
    tl.manual_seed(2)
    same_batches(a, list(DataLoader(ds, batch_size=3, shuffle=True)))


BAD_LOADER_ARGS = [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-2), ValueError, "batch_size"),
    (dict(batch_size=2.0), TypeError, "batch_size"),
    (dict(batch_size=True), TypeError, "batch_size"),
    (dict(shuffle=True, sampler=[0, 1]), ValueError, "sampler option is mutually exclusive with shuffle"),
    (dict(batch_sampler=[[0]], batch_size=2), ValueError, "batch_sampler"),
    (dict(batch_sampler=[[0]], shuffle=True), ValueError, "batch_sampler"),
    (dict(batch_sampler=[[0]], sampler=[0]), ValueError, "batch_sampler"),
    (dict(batch_sampler=[[0]], drop_last=True), ValueError, "batch_sampler"),
    (dict(batch_size=None, drop_last=True), ValueError, "drop_last"),
    (dict(num_workers=-1), ValueError, "num_workers"),
    (dict(timeout=-1), ValueError, "timeout"),
    (dict(prefetch_factor=2), ValueError, "prefetch_factor"),
    (dict(persistent_workers=True), ValueError, "persistent_workers"),
    (dict(collate_fn=3), TypeError, "collate_fn"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(drop_last=1), TypeError, "drop_last"),
    (dict(generator=np.random.default_rng(0), shuffle=True), TypeError, "generator"),
    (dict(sampler=3), TypeError, "sampler"),
]


@pytest.mark.parametrize("kwargs,err,match", BAD_LOADER_ARGS, ids=[str(k) for k, _, _ in BAD_LOADER_ARGS])
def test_loader_argument_errors(kwargs, err, match):
    ds = TensorDataset(*make(4))
    state = _random.generator().bit_generator.state
    with pytest.raises(err, match=match):
        DataLoader(ds, **kwargs)
    assert _random.generator().bit_generator.state == state


def test_loader_dataset_errors():
    with pytest.raises(TypeError, match="dataset"):
        DataLoader(3)

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(3))
    for kw in (dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])):
        with pytest.raises(ValueError, match="IterableDataset"):
            DataLoader(Stream(), **kw)


def test_import_is_lazy_and_names_resolve():
    code = ("import sys, tinytl as tl; assert 'tinytl.utils' not in sys.modules; "
            "from tinytl.utils.data import DataLoader; assert tl.utils.data.DataLoader is DataLoader; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_loop_over_a_loader():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    tl.manual_seed(0)
    model = tl.nn.Sequential(tl.nn.Linear(5, 16), tl.nn.ReLU(), tl.nn.Linear(16, 2))
    opt = tl.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = tl.nn.CrossEntropyLoss()
    train, val = random_split(TensorDataset(X, y), [0.75, 0.25], generator=tl.Generator().manual_seed(0))
    losses = []
    for epoch in range(5):
        total = 0.0
        for xb, yb in DataLoader(train, batch_size=32, shuffle=True):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total)
    assert losses[-1] < losses[0]


# ------------------------------------------------------------ torch parity

def torch_sig(obj):
    """A comparable description of a collated structure (containers, dtypes, shapes, values)."""
    torch = sys.modules.get("torch")
    if isinstance(obj, tl.Tensor):
        return ("tensor", str(obj.dtype), tuple(obj.shape), obj.numpy().tolist())
    if torch is not None and isinstance(obj, torch.Tensor):
        return ("tensor", str(obj.dtype).replace("torch.", ""), tuple(obj.shape), obj.tolist())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return (type(obj).__name__,) + tuple(torch_sig(o) for o in obj)
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [torch_sig(o) for o in obj])
    if isinstance(obj, dict):
        return ("dict", [(k, torch_sig(v)) for k, v in obj.items()])
    return (type(obj).__name__, obj)


COLLATE_CASES = [
    [1.0, 2.5], [1, 2], [True, False], [1, 2.5], ["a", "b"], [b"a", b"b"],
    [np.float32(1), np.float32(2)], [np.int32(1), np.int32(2)], [np.bool_(True), np.bool_(False)],
    [np.arange(3, dtype=np.float64), np.ones(3)], [np.zeros((2, 2), np.int16), np.ones((2, 2), np.int16)],
    [np.array(1.5), np.array(2.5)],
    [(1.0, 2), (3.0, 4)], [[1, "x"], [2, "y"]], [{"a": 1.0, "b": [1, 2]}, {"a": 2.0, "b": [3, 4]}],
    [Point(1.0, np.ones(2, np.float32)), Point(2.0, np.zeros(2, np.float32))],
    [((1, 2), {"k": (3.0,)}), ((4, 5), {"k": (6.0,)})],
]


@pytest.mark.parametrize("batch", COLLATE_CASES, ids=lambda b: repr(b)[:40])
def test_collate_matches_torch(batch):
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate, default_convert as torch_convert
    assert torch_sig(default_collate(batch)) == torch_sig(torch_collate(batch))
    assert torch_sig(default_convert(batch)) == torch_sig(torch_convert(batch))
    assert torch_sig(default_convert(batch[0])) == torch_sig(torch_convert(batch[0]))


def test_collate_of_tensors_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate
    rows = np.random.default_rng(0).random((4, 3))
    ours = default_collate([(tl.tensor(r), tl.tensor(np.int64(i))) for i, r in enumerate(rows)])
    theirs = torch_collate([(torch.tensor(r), torch.tensor(i)) for i, r in enumerate(rows)])
    assert torch_sig(ours) == torch_sig(theirs)


@pytest.mark.parametrize("n,b,drop_last", [(10, 3, False), (10, 3, True), (64, 64, False), (5, 8, True),
                                           (7, 1, False)])
def test_sequential_loader_matches_torch(n, b, drop_last):
    torch = pytest.importorskip("torch")
    import torch.utils.data as td
    X = np.random.default_rng(n).random((n, 2, 2)).astype(np.float32)
    y = np.arange(n)
    ours = list(DataLoader(TensorDataset(X, y), batch_size=b, drop_last=drop_last))
    theirs = list(td.DataLoader(td.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=b,
                                drop_last=drop_last))
    assert torch_sig(ours) == torch_sig(theirs)
    assert len(DataLoader(TensorDataset(X, y), batch_size=b, drop_last=drop_last)) == len(theirs)
    # batch_size=None, Subset, ConcatDataset and BatchSampler give what torch gives, in the same order
    sub = [3 % n, 0, n - 1]
    assert torch_sig(list(DataLoader(Subset(TensorDataset(X, y), sub), batch_size=None))) == torch_sig(
        list(td.DataLoader(td.Subset(td.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), sub),
                           batch_size=None)))
    cat, tcat = ConcatDataset([list(range(n)), [0.5] * 3]), td.ConcatDataset([list(range(n)), [0.5] * 3])
    assert [cat[i] for i in range(-len(cat), len(cat))] == [tcat[i] for i in range(-len(tcat), len(tcat))]
    assert list(BatchSampler(SequentialSampler(range(n)), b, drop_last)) == list(
        td.BatchSampler(td.SequentialSampler(range(n)), b, drop_last))


@pytest.mark.parametrize("n", [1, 2, 5, 10, 11, 33, 100])
@pytest.mark.parametrize("lengths", [[0.5, 0.5], [0.8, 0.1, 0.1], [1 / 3] * 3, [0.05, 0.15, 0.3, 0.5], [0.7, 0.3]])
def test_random_split_sizes_match_torch(n, lengths):
    torch = pytest.importorskip("torch")
    import torch.utils.data as td
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = [len(p) for p in random_split(range(n), lengths, generator=tl.Generator().manual_seed(0))]
        theirs = [len(p) for p in td.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))]
    assert ours == theirs


@pytest.mark.parametrize("kwargs,err,match", BAD_LOADER_ARGS[:15],
                         ids=[str(k) for k, _, _ in BAD_LOADER_ARGS[:15]])
def test_torch_rejects_the_same_loader_arguments(kwargs, err, match):
    torch = pytest.importorskip("torch")
    import torch.utils.data as td
    ds = td.TensorDataset(torch.zeros(4, 3))
    kwargs = {k: (None if k == "generator" else v) for k, v in kwargs.items()}
    with pytest.raises((TypeError, ValueError)):
        list(td.DataLoader(ds, **kwargs))


def test_given_orders_match_torch():
    torch = pytest.importorskip("torch")
    import torch.utils.data as td
    X = np.random.default_rng(0).random((10, 3)).astype(np.float64)
    y = np.arange(10) % 3 == 0
    ours, theirs = TensorDataset(X, y), td.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    order = [3, 1, 4, 1, 5, 9, 2, 6]
    for kw in (dict(sampler=order, batch_size=3), dict(sampler=order, batch_size=3, drop_last=True),
               dict(batch_sampler=[[0, 9], [5], [2, 2, 7]]), dict(sampler=order, batch_size=None)):
        assert torch_sig(list(DataLoader(ours, **kw))) == torch_sig(list(td.DataLoader(theirs, **kw)))
        assert len(DataLoader(ours, **kw)) == len(td.DataLoader(theirs, **kw))


def test_device_tensors_and_moves(device):
    X, y = make(10)
    tl.manual_seed(0)
    cpu = list(DataLoader(TensorDataset(X, y), batch_size=4, shuffle=True))
    tl.manual_seed(0)
    dev = list(DataLoader(TensorDataset(tl.tensor(X, device=device), tl.tensor(y, device=device)),
                          batch_size=4, shuffle=True))
    for (xc, yc), (xd, yd) in zip(cpu, dev):
        assert xc.device == "cpu" and xd.device == device and yd.device == device
        np.testing.assert_array_equal(xd.numpy(), xc.numpy())
        np.testing.assert_array_equal(yd.numpy(), yc.numpy())
        assert xc.to(device).device == device                 # the user's move


def test_collate_fn_set_after_init_is_obeyed():
    loader = DataLoader(TensorDataset(*make(6)), batch_size=4)
    loader.collate_fn = lambda batch: len(batch)
    assert list(loader) == [4, 2]
