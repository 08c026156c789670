"""Datasets, samplers and the DataLoader, with ``torch.utils.data``'s names and rules.

This file teaches four things:

1. **A dataset answers two questions.** A map-style dataset is any object with
   ``__len__`` (how many examples) and ``__getitem__`` (example ``i``); it need
   not inherit from ``Dataset``. An ``IterableDataset`` instead yields its
   examples from ``__iter__`` (a stream with no random access).

2. **A sampler decides the order; a batch sampler cuts it.** ``SequentialSampler``
   yields ``0, 1, ..., N-1``; ``RandomSampler`` one permutation per epoch (drawn
   from tinytl's global generator, reseeded by ``tl.manual_seed``, or from the
   ``generator=`` given); ``BatchSampler`` groups the indices into lists of
   ``batch_size``. ``DataLoader`` builds these from ``batch_size``/``shuffle``
   exactly as torch does, and the epoch's draw happens at the first ``next()``.

3. **Collation turns a list of examples into a batch.** ``default_collate``
   stacks tensors (and NumPy arrays) along a new first dimension, turns Python
   floats into a float64 tensor and ints into an int64 one, keeps strings as
   they are, and recurses into tuples, lists, dicts and namedtuples, so a
   dataset of ``(x, y)`` pairs gives ``[xb, yb]`` batches, as in torch.

4. **The fast path.** Calling ``__getitem__`` once per row and stacking costs
   about a microsecond per row in Python: seconds per epoch of MNIST. When the
   dataset is a ``TensorDataset`` (or a ``Subset`` of one), the collate function
   is the default and the sampler is a built-in one, the loader instead draws
   the same indices and gathers each batch with one fancy-indexing call per
   tensor (``np.take``). The batches are exactly those of the slow path: same
   values, dtypes, order and random draws (``tests/test_utils_data.py`` checks).

Differences from torch, each because tinytl has no such machinery: there are no
worker processes (``num_workers > 0`` is accepted and loads in the main process,
``worker_init_fn`` is never called); ``pin_memory`` does nothing (batches are
CPU tensors: move them with ``xb.to(device)``); batches never carry a graph
(``requires_grad`` is False even if the dataset's tensors require a gradient).

Read next: ``tinytl/data.py`` (the first wave's array loader, which this one
matches in speed), then ``examples/``.
"""
from __future__ import annotations

import bisect
import collections.abc
import copy
import itertools
import math
import warnings

import numpy as np

from .. import backend
from .._random import rng_of
from ..tensor import Tensor

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "ConcatDataset", "ChainDataset", "Subset",
           "random_split", "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler",
           "WeightedRandomSampler", "BatchSampler", "DataLoader", "default_collate", "default_convert"]


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


def _check_positive_int(fn: str, name: str, value):
    if not _is_int(value):
        raise TypeError(f"{fn}: {name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{fn}: {name} must be a positive int, got {value}")
    return int(value)


def _check_bool(fn: str, name: str, value):
    if not _is_bool(value):
        raise TypeError(f"{fn}: {name} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


# ================================================================= datasets ===

class Dataset:
    """A map-style dataset: ``len(ds)`` examples, ``ds[i]`` the i-th (as ``torch.utils.data.Dataset``).

    Subclass it and define ``__getitem__`` and ``__len__``; any object with those two
    methods works as well. ``ds1 + ds2`` is ``ConcatDataset([ds1, ds2])``.

    Example::

        class Squares(Dataset):
            def __len__(self):
                return 100
            def __getitem__(self, i):
                return tl.tensor([float(i)]), i * i
    """

    def __init__(self):
        pass

    def __getitem__(self, index):
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other) -> "ConcatDataset":
        return ConcatDataset([self, other])

    # Dataset[T] in type hints and in `class MyData(Dataset[int])`, as torch's generic class allows.
    def __class_getitem__(cls, item):
        return cls


class IterableDataset(Dataset):
    """A dataset that yields its examples from ``__iter__`` (a stream), as ``torch.utils.data.IterableDataset``.

    A DataLoader over it takes ``batch_size`` consecutive examples per batch (no sampler,
    no shuffle: the stream decides the order). ``ds1 + ds2`` is ``ChainDataset([ds1, ds2])``.
    """

    def __iter__(self):
        raise NotImplementedError("Subclasses of IterableDataset should implement __iter__.")

    def __getitem__(self, index):
        raise TypeError(f"{type(self).__name__} is an IterableDataset: it has no random access "
                        "(iterate over it instead)")

    def __add__(self, other) -> "ChainDataset":
        return ChainDataset([self, other])


def _as_data_tensor(t, i: int) -> Tensor:
    """Argument ``i`` of TensorDataset as a Tensor with at least one dimension."""
    if not isinstance(t, Tensor):
        if backend.is_cupy_array(t):
            t = Tensor(t)
        else:
            try:
                arr = np.asarray(t)
            except (TypeError, ValueError) as e:
                raise TypeError(f"TensorDataset: tensor {i} must be a Tensor or an array, "
                                f"got {type(t).__name__} ({e})") from e
            if arr.dtype == object:
                raise TypeError(f"TensorDataset: tensor {i} must be numeric (got dtype object: "
                                "ragged lists or arbitrary Python objects)")
            t = Tensor(arr)
    if t.ndim == 0:
        raise ValueError(f"TensorDataset: tensor {i} must have at least one dimension "
                         "(one row per example), got a scalar")
    return t


class TensorDataset(Dataset):
    """Rows of tensors that share their first dimension: ``ds[i]`` is ``(t0[i], t1[i], ...)``.

    As ``torch.utils.data.TensorDataset(*tensors)``. NumPy arrays (and array-likes) are
    accepted too and wrapped as tensors without a copy; ``ds.tensors`` is the tuple of
    tensors. A DataLoader over a TensorDataset gathers whole batches at once (see the
    module docstring).

    Raises:
        ValueError: no tensor given, a 0-d tensor, or first dimensions that differ
            ("Size mismatch between tensors"; torch raises an AssertionError).

    Example::

        ds = TensorDataset(X, y)          # X (N, 784) float32, y (N,) int64
        loader = DataLoader(ds, batch_size=64, shuffle=True)
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        tensors = tuple(_as_data_tensor(t, i) for i, t in enumerate(tensors))
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(f"TensorDataset: Size mismatch between tensors: every tensor needs the same "
                             f"first dimension (one row per example), got shapes {shapes}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class ConcatDataset(Dataset):
    """Map-style datasets one after the other, as ``torch.utils.data.ConcatDataset(datasets)``.

    ``cumulative_sizes[k]`` is the total length of the first k+1 datasets; index ``i`` goes to
    the first dataset whose cumulative size exceeds it. Negative indices count from the end.
    """

    @staticmethod
    def cumsum(sequence):
        r, s = [], 0
        for e in sequence:
            s += len(e)
            r.append(s)
        return r

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset (use ChainDataset)")
        self.cumulative_sizes = self.cumsum(self.datasets)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if idx < 0:
            if -idx > n:
                raise ValueError(f"ConcatDataset: absolute value of index should not exceed dataset "
                                 f"length, got {idx} for length {n}")
            idx = n + idx
        if idx >= n:
            raise IndexError(f"ConcatDataset: index {idx} is out of range for length {n}")
        k = bisect.bisect_right(self.cumulative_sizes, idx)
        return self.datasets[k][idx if k == 0 else idx - self.cumulative_sizes[k - 1]]


class ChainDataset(IterableDataset):
    """Iterable datasets one after the other, as ``torch.utils.data.ChainDataset(datasets)``."""

    def __init__(self, datasets):
        self.datasets = datasets

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError("ChainDataset only supports IterableDataset")
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


class Subset(Dataset):
    """The examples of ``dataset`` at ``indices``, in that order: ``Subset(ds, idx)[i]`` is ``ds[idx[i]]``.

    As ``torch.utils.data.Subset(dataset, indices)``; ``random_split`` returns Subsets.
    A DataLoader over a Subset of a TensorDataset takes the fast path.
    """

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices):
        # What a DataLoader calls for one batch (torch's protocol): passed on when the dataset has it.
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` at random into non-overlapping Subsets of the given lengths.

    As ``torch.utils.data.random_split``. ``lengths`` are either ints that sum to
    ``len(dataset)``, or fractions that sum to 1: then each split gets
    ``floor(len(dataset) * frac)`` examples and the remainder is handed out one
    by one, round-robin, from the first split (torch's rule: 10 examples split
    ``[0.5, 0.3, 0.2]`` give 5, 3, 2; 11 give 6, 3, 2). A split of length 0 warns.
    The order is one permutation drawn from ``generator`` (a ``tl.Generator``), or
    from the global generator that ``tl.manual_seed`` reseeds.

    Args:
        dataset: a map-style dataset (anything with ``__len__``).
        lengths: a sequence of non-negative ints, or of fractions in [0, 1].
        generator: a ``tl.Generator`` or None.

    Returns:
        a list of ``Subset``, one per length.

    Example::

        train, val = random_split(ds, [0.8, 0.2], generator=tl.Generator().manual_seed(0))
    """
    rng = rng_of(generator, "random_split")
    try:
        n = len(dataset)
    except TypeError as e:
        raise TypeError(f"random_split: dataset must have a length (a map-style dataset), "
                        f"got {type(dataset).__name__}") from e
    if isinstance(lengths, np.ndarray) and lengths.ndim == 1:
        lengths = lengths.tolist()
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, collections.abc.Sequence) or not lengths:
        raise TypeError(f"random_split: lengths must be a non-empty sequence of ints or fractions, "
                        f"got {lengths!r}")
    for i, v in enumerate(lengths):
        if _is_bool(v) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise TypeError(f"random_split: lengths[{i}] must be an int or a fraction, got {v!r}")
    total = sum(lengths)
    if math.isclose(total, 1) and total <= 1:
        sizes = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"random_split: Fraction at index {i} is not between 0 and 1 (got {frac})")
            sizes.append(int(math.floor(n * frac)))
        for i in range(n - sum(sizes)):       # the remainder, round-robin from the first split
            sizes[i % len(sizes)] += 1
        for i, size in enumerate(sizes):
            if size == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an empty dataset.")
    else:
        for i, v in enumerate(lengths):
            if not _is_int(v) and not float(v).is_integer():
                raise ValueError(f"random_split: lengths must be ints summing to len(dataset) = {n} or "
                                 f"fractions summing to 1, got {list(lengths)} (sum {total})")
            if v < 0:
                raise ValueError(f"random_split: lengths[{i}] must be non-negative, got {v}")
        sizes = [int(v) for v in lengths]
    if sum(sizes) != n:
        raise ValueError(f"random_split: Sum of input lengths does not equal the length of the input "
                         f"dataset: lengths {list(lengths)} sum to {total}, len(dataset) = {n}")
    indices = rng.permutation(n).tolist()
    ends = list(itertools.accumulate(sizes))
    return [Subset(dataset, indices[end - size:end]) for end, size in zip(ends, sizes)]


# ================================================================= samplers ===

class Sampler:
    """Base class of samplers: ``iter(sampler)`` yields dataset indices (as ``torch.utils.data.Sampler``).

    Subclass it and define ``__iter__`` (and ``__len__`` when known). Any iterable of
    indices can be passed to ``DataLoader(sampler=...)``; a sampler that yields lists
    of indices is a batch sampler (``batch_sampler=``).
    """

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError("Subclasses of Sampler should implement __iter__.")

    def __class_getitem__(cls, item):
        return cls


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``, as ``torch.utils.data.SequentialSampler(data_source)``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def _index_array(self) -> np.ndarray:
        return np.arange(len(self.data_source))

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """Random indices into ``data_source``, as ``torch.utils.data.RandomSampler``.

    Without replacement, an epoch is one permutation of ``range(n)`` (``num_samples > n``:
    whole permutations one after the other, then the head of one more); with replacement,
    ``num_samples`` independent uniform draws. The draws come from ``generator`` (a
    ``tl.Generator``) or, when None, from the global generator reseeded by ``tl.manual_seed``,
    made when the epoch starts (the first ``next()``). The numbers differ from torch's
    (another random-number algorithm); the distribution is the same.

    Args:
        data_source: the dataset (anything with ``__len__``).
        replacement: draw with replacement.
        num_samples: indices per epoch (default ``len(data_source)``).
        generator: a ``tl.Generator`` or None.
    """

    def __init__(self, data_source, replacement: bool = False, num_samples=None, generator=None):
        if not _is_bool(replacement):
            raise TypeError(f"RandomSampler: replacement should be a boolean value, but got "
                            f"replacement={replacement!r}")
        rng_of(generator, "RandomSampler")                # a wrong type fails now
        self.data_source = data_source
        self.replacement = bool(replacement)
        self._num_samples = num_samples
        self.generator = generator
        if num_samples is not None and not _is_int(num_samples):
            raise TypeError(f"RandomSampler: num_samples should be a positive integer value, but got "
                            f"num_samples={num_samples!r}")
        if self.num_samples <= 0:
            raise ValueError(f"RandomSampler: num_samples should be a positive integer value, but got "
                             f"num_samples={self.num_samples} (an empty dataset cannot be shuffled)")

    @property
    def num_samples(self) -> int:
        """The indices per epoch: ``num_samples``, or ``len(data_source)`` when it was None."""
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def _index_array(self) -> np.ndarray:
        """The epoch's indices, drawn now (what ``__iter__`` yields)."""
        rng, n, m = rng_of(self.generator, "RandomSampler"), len(self.data_source), self.num_samples
        if self.replacement:
            return rng.integers(0, n, size=m)
        parts = [rng.permutation(n) for _ in range(m // n)]
        if m % n:
            parts.append(rng.permutation(n)[:m % n])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __iter__(self):
        yield from self._index_array().tolist()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order (one permutation per epoch), as torch's.

    ``SubsetRandomSampler(indices, generator=None)`` yields ``indices[p[0]], indices[p[1]], ...``
    for a permutation ``p`` drawn at the start of each epoch from ``generator`` or the global
    generator.
    """

    def __init__(self, indices, generator=None):
        rng_of(generator, "SubsetRandomSampler")
        self.indices = indices
        self.generator = generator

    def _index_array(self):
        """The epoch's indices as an int array (drawn now), or None (nothing drawn) when the
        indices are not integers (then only ``__iter__`` can yield them)."""
        ind = np.asarray(self.indices)
        if ind.ndim != 1 or ind.dtype.kind not in "iu":
            return None
        return ind[rng_of(self.generator, "SubsetRandomSampler").permutation(len(ind))]

    def __iter__(self):
        for i in rng_of(self.generator, "SubsetRandomSampler").permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """Indices ``0..len(weights)-1`` drawn with probability ``weights[i] / sum(weights)``.

    As ``torch.utils.data.WeightedRandomSampler(weights, num_samples, replacement=True,
    generator=None)``; without replacement an index is drawn at most once per epoch, so
    ``num_samples`` may not exceed the number of non-zero weights.
    """

    def __init__(self, weights, num_samples: int, replacement: bool = True, generator=None):
        fn = "WeightedRandomSampler"
        num_samples = _check_positive_int(fn, "num_samples", num_samples)
        replacement = _check_bool(fn, "replacement", replacement)
        rng_of(generator, fn)
        w = np.asarray(weights.numpy() if isinstance(weights, Tensor) else weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"{fn}: weights should be a 1d sequence but given weights have shape {w.shape}")
        if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"{fn}: weights must be finite, non-negative and not all zero")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"{fn}: without replacement num_samples ({num_samples}) cannot exceed the "
                             f"number of non-zero weights ({np.count_nonzero(w)})")
        self.weights, self.num_samples, self.replacement, self.generator = w, num_samples, replacement, generator

    def _index_array(self) -> np.ndarray:
        rng = rng_of(self.generator, "WeightedRandomSampler")
        return rng.choice(len(self.weights), size=self.num_samples, replace=self.replacement,
                          p=self.weights / self.weights.sum())

    def __iter__(self):
        yield from self._index_array().tolist()

    def __len__(self) -> int:
        return self.num_samples


_BUILTIN_SAMPLERS = (SequentialSampler, RandomSampler, SubsetRandomSampler, WeightedRandomSampler)


def _builtin_indices(sampler):
    """The epoch's index array of a built-in sampler (drawn now), or None (nothing drawn)."""
    return sampler._index_array() if type(sampler) in _BUILTIN_SAMPLERS else None


class BatchSampler(Sampler):
    """Lists of ``batch_size`` consecutive indices of ``sampler``, as ``torch.utils.data.BatchSampler``.

    The last list is shorter when ``len(sampler)`` is not a multiple of ``batch_size``,
    unless ``drop_last``. ``DataLoader(batch_size=b, shuffle=s)`` builds
    ``BatchSampler(RandomSampler(ds) if s else SequentialSampler(ds), b, drop_last)``.

    Example::

        list(BatchSampler(SequentialSampler(range(5)), 2, drop_last=False))  # [[0, 1], [2, 3], [4]]
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        self.batch_size = _check_positive_int("BatchSampler", "batch_size", batch_size)
        self.drop_last = _check_bool("BatchSampler", "drop_last", drop_last)
        self.sampler = sampler

    def __iter__(self):
        b = self.batch_size
        idx = _builtin_indices(self.sampler)
        if idx is not None:                         # a whole epoch's indices at once: slice them
            stop = len(idx) - len(idx) % b if self.drop_last else len(idx)
            for start in range(0, stop, b):
                yield idx[start:start + b].tolist()
            return
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == b:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n, b = len(self.sampler), self.batch_size
        return n // b if self.drop_last else -(-n // b)


# ================================================================ collation ===

_COLLATE_ERR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _is_str_or_object(dtype) -> bool:
    return dtype.kind in "SaUO"


def _stack(batch) -> Tensor:
    arrays = [t.data for t in batch]
    shape = np.shape(arrays[0])
    for i, a in enumerate(arrays):
        if np.shape(a) != shape:
            raise RuntimeError(f"default_collate: stack expects each tensor to be equal size, but got "
                               f"{list(shape)} at entry 0 and {list(np.shape(a))} at entry {i}")
    return Tensor(backend.get_array_module(*arrays).stack(arrays))


def _int_batch(batch) -> Tensor:
    arr = np.asarray(batch)
    if arr.dtype.kind == "b":
        return Tensor(arr)                          # all bools: a bool tensor
    if arr.dtype.kind == "f":
        return Tensor(arr.astype(np.float32))       # an int first, then floats: torch's default float
    return Tensor(np.asarray(batch, dtype=np.int64))


def default_collate(batch):
    """Merge a list of examples into a batch, as ``torch.utils.data.default_collate``.

    By the type of the first element ``batch[0]``:

    - Tensor: stacked into a new first dimension, ``(B, *shape)`` (a RuntimeError when the
      shapes differ);
    - NumPy array: converted to tensors, then stacked (string and object arrays: TypeError);
      NumPy scalar: one tensor of its dtype;
    - Python float: a float64 tensor; int: an int64 tensor; bool: a bool tensor;
    - str or bytes: kept as they are (the batch itself);
    - dict (any Mapping): collated key by key; namedtuple: field by field, same type;
    - tuple or list: transposed and collated element-wise, returned as a list (a tuple of
      examples ``(x, y)`` gives ``[xb, yb]``); the elements must have equal lengths.

    Anything else raises TypeError. The result is CPU tensors (for NumPy data) that
    require no gradient.
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack(batch)
    if isinstance(elem, np.ndarray):
        if _is_str_or_object(elem.dtype):
            raise TypeError(_COLLATE_ERR.format(elem.dtype))
        return _stack([Tensor(b) for b in batch])
    if isinstance(elem, (np.bool_, np.number)):
        return Tensor(np.asarray(batch))
    if isinstance(elem, float):
        return Tensor(np.asarray(batch, dtype=np.float64))
    if isinstance(elem, int):
        return _int_batch(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                clone = copy.copy(elem)
                clone.update(collated)
                return clone
            return type(elem)(collated)
        except TypeError:
            return collated
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):       # namedtuple
        return type(elem)(*(default_collate(samples) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of equal size")
        transposed = list(zip(*batch))
        if isinstance(elem, tuple):
            return [default_collate(samples) for samples in transposed]
        collated = [default_collate(samples) for samples in transposed]
        try:
            if isinstance(elem, collections.abc.MutableSequence):
                clone = copy.copy(elem)
                for i, c in enumerate(collated):
                    clone[i] = c
                return clone
            return type(elem)(collated)
        except TypeError:
            return collated
    raise TypeError(_COLLATE_ERR.format(type(elem)))


def default_convert(data):
    """NumPy arrays and scalars inside ``data`` to tensors, the rest unchanged (``torch.utils.data.default_convert``).

    What a DataLoader applies to each example when batching is off (``batch_size=None``):
    no stacking, Python numbers stay numbers, tuples become lists, dicts, lists and
    namedtuples are converted element-wise.
    """
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)) and not isinstance(data, (np.str_, np.bytes_)):
        if isinstance(data, np.ndarray) and _is_str_or_object(data.dtype):
            return data
        return Tensor(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        converted = {key: default_convert(data[key]) for key in data}
        try:
            if isinstance(data, collections.abc.MutableMapping):
                clone = copy.copy(data)
                clone.update(converted)
                return clone
            return type(data)(converted)
        except TypeError:
            return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        converted = [default_convert(d) for d in data]
        try:
            if isinstance(data, collections.abc.MutableSequence):
                clone = copy.copy(data)
                for i, c in enumerate(converted):
                    clone[i] = c
                return clone
            return type(data)(converted)
        except TypeError:
            return converted
    return data


# =============================================================== DataLoader ===

def _fast_plan(dataset):
    """``(arrays, maps)`` when batches of ``dataset`` can be gathered by fancy indexing: a
    TensorDataset of NumPy arrays, possibly inside Subsets (``maps``: their index arrays,
    outermost first); None otherwise. Draws nothing."""
    maps = []
    while type(dataset) is Subset:
        ind = np.asarray(dataset.indices)
        if ind.ndim != 1 or (ind.dtype.kind not in "iu" and ind.size):
            return None
        maps.append(ind.astype(np.int64, copy=False))
        dataset = dataset.dataset
    if type(dataset) is not TensorDataset:
        return None
    arrays = [t.data for t in dataset.tensors]
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return None
    return arrays, maps


class DataLoader:
    """Batches of a dataset, as ``torch.utils.data.DataLoader``, with torch's arguments and rules.

    ``for xb, yb in DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True)`` yields
    ``[xb, yb]`` lists of CPU tensors (``default_collate`` of the ``(x, y)`` rows), a new
    order each epoch; ``len(loader)`` is the number of batches.

    Args:
        dataset: a map-style dataset (``__len__`` and ``__getitem__``) or an ``IterableDataset``.
        batch_size: examples per batch (a positive int), or None to turn batching off (each
            example is passed through ``default_convert``, or ``collate_fn``, on its own).
        shuffle: a new random order each epoch (a ``RandomSampler`` with ``generator``).
        sampler: an iterable of indices (a ``Sampler``); excludes ``shuffle``.
        batch_sampler: an iterable of lists of indices; excludes ``batch_size``, ``shuffle``,
            ``sampler`` and ``drop_last``.
        num_workers: accepted for compatibility (a non-negative int); tinytl has no worker
            processes, so every value loads in the main process, as 0 does (``worker_init_fn``,
            ``multiprocessing_context``, ``prefetch_factor`` and ``persistent_workers`` are
            checked as torch checks them, then unused).
        collate_fn: merges a list of examples into a batch (default ``default_collate``).
        pin_memory: accepted; no effect (batches are CPU tensors; move them with ``xb.to(device)``).
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        timeout: a non-negative number, unused (no workers to wait for).
        generator: a ``tl.Generator`` for the shuffling draws; None uses the global generator
            (``tl.manual_seed`` makes the batch order reproducible).

    Raises:
        ValueError: ``shuffle`` with a ``sampler``; ``batch_sampler`` with ``batch_size``,
            ``shuffle``, ``sampler`` or ``drop_last``; ``drop_last`` with ``batch_size=None``;
            ``shuffle``/``sampler``/``batch_sampler`` with an ``IterableDataset``; negative values.
        TypeError: an argument of the wrong type. All raised before anything is drawn.

    A TensorDataset (or a Subset of one) with the default collate and a built-in sampler is
    gathered a whole batch at a time (``np.take``), with exactly the batches the per-example
    path would give: as fast as ``tl.data.DataLoader``.
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers: int = 0, collate_fn=None, pin_memory: bool = False, drop_last: bool = False,
                 timeout: float = 0, worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers: bool = False, pin_memory_device: str = "",
                 in_order: bool = True):
        fn = "DataLoader"
        iterable = isinstance(dataset, IterableDataset)
        if not iterable and not callable(getattr(dataset, "__getitem__", None)):
            raise TypeError(f"{fn}: dataset must be a map-style dataset (__len__ and __getitem__) or an "
                            f"IterableDataset, got {type(dataset).__name__}")
        if batch_size is not None:
            batch_size = _check_positive_int(fn, "batch_size", batch_size)
        if shuffle is not None and not _is_bool(shuffle):
            raise TypeError(f"{fn}: shuffle must be a bool or None, got {shuffle!r}")
        drop_last = _check_bool(fn, "drop_last", drop_last)
        for name, v in (("pin_memory", pin_memory), ("persistent_workers", persistent_workers),
                        ("in_order", in_order)):
            _check_bool(fn, name, v)
        if not _is_int(num_workers):
            raise TypeError(f"{fn}: num_workers must be a non-negative int, got {num_workers!r}")
        if num_workers < 0:
            raise ValueError(f"{fn}: num_workers option should be non-negative; use num_workers=0 to "
                             f"disable multiprocessing (got {num_workers})")
        if _is_bool(timeout) or not isinstance(timeout, (int, float, np.integer, np.floating)):
            raise TypeError(f"{fn}: timeout must be a non-negative number, got {timeout!r}")
        if timeout < 0:
            raise ValueError(f"{fn}: timeout option should be non-negative, got {timeout}")
        for name, f in (("collate_fn", collate_fn), ("worker_init_fn", worker_init_fn)):
            if f is not None and not callable(f):
                raise TypeError(f"{fn}: {name} must be callable or None, got {type(f).__name__}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(f"{fn}: prefetch_factor option could only be specified in multiprocessing: "
                             "let num_workers > 0 to enable it, otherwise set prefetch_factor to None")
        if prefetch_factor is not None:
            _check_positive_int(fn, "prefetch_factor", prefetch_factor)
        if persistent_workers and num_workers == 0:
            raise ValueError(f"{fn}: persistent_workers option needs num_workers > 0")
        if multiprocessing_context is not None and num_workers == 0:
            raise ValueError(f"{fn}: multiprocessing_context can only be used with multi-process loading "
                             "(num_workers > 0), but got num_workers=0")
        rng_of(generator, fn)
        for name, s in (("sampler", sampler), ("batch_sampler", batch_sampler)):
            if s is not None and not isinstance(s, collections.abc.Iterable):
                raise TypeError(f"{fn}: {name} must be an iterable of indices or None, got {type(s).__name__}")

        # torch's rules, in torch's order
        if iterable:
            for name, v in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if v not in (None, False):
                    raise ValueError(f"{fn} with IterableDataset: expected unspecified {name} option, "
                                     f"but got {name}={v!r}")
        if sampler is not None and shuffle:
            raise ValueError(f"{fn}: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(f"{fn}: batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError(f"{fn}: batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if sampler is None and not iterable:
            if not hasattr(dataset, "__len__"):
                raise TypeError(f"{fn}: dataset has no __len__: give a sampler (or make it an IterableDataset)")
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset = dataset
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.num_workers, self.pin_memory, self.timeout = num_workers, pin_memory, timeout
        self.worker_init_fn, self.multiprocessing_context = worker_init_fn, multiprocessing_context
        self.prefetch_factor, self.persistent_workers = prefetch_factor, persistent_workers
        self.pin_memory_device, self.in_order, self.generator = pin_memory_device, in_order, generator
        self._auto_collation = batch_sampler is not None or (iterable and batch_size is not None)
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if self._auto_collation else default_convert)

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset):
            n = len(self.dataset)                   # TypeError when the stream has no length, as torch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler if self._auto_collation else self.sampler)

    def __iter__(self):
        if isinstance(self.dataset, IterableDataset):
            return self._iterable_batches()
        return self._map_batches()

    def _iterable_batches(self):
        it, collate = iter(self.dataset), self.collate_fn
        if not self._auto_collation:
            for x in it:
                yield collate(x)
            return
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield collate(batch)

    def _map_batches(self):
        if not self._auto_collation:
            for i in self.sampler:
                yield self.collate_fn(self.dataset[i])
            return
        # read at each epoch (not fixed at __init__): attributes a user set since are obeyed
        fast = self.collate_fn is default_collate and type(self.batch_sampler) is BatchSampler
        plan = _fast_plan(self.dataset) if fast else None
        idx = _builtin_indices(self.batch_sampler.sampler) if plan is not None else None   # the draw
        if idx is not None:
            yield from self._gathered(plan, idx)
            return
        dataset, collate = self.dataset, self.collate_fn
        getitems = getattr(dataset, "__getitems__", None)
        for indices in self.batch_sampler:
            yield collate(getitems(indices) if callable(getitems) else [dataset[i] for i in indices])

    def _gathered(self, plan, idx):
        """The fast path: the batches of BatchSampler over ``idx``, each gathered at once."""
        arrays, maps = plan
        b = self.batch_sampler.batch_size
        stop = len(idx) - len(idx) % b if self.batch_sampler.drop_last else len(idx)
        contiguous = (not maps and type(self.batch_sampler.sampler) is SequentialSampler
                      and len(idx) <= len(arrays[0]))      # else np.take raises the IndexError
        for start in range(0, stop, b):
            if contiguous:                          # rows start..start+b: a copy of a slice
                yield [Tensor(a[start:start + b].copy()) for a in arrays]
                continue
            rows = idx[start:start + b]
            for m in maps:                          # Subset(Subset(tds, i1), i2)[j] = tds[i1[i2[j]]]
                rows = np.take(m, rows)
            yield [Tensor(np.take(a, rows, axis=0)) for a in arrays]

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"sampler={type(self.sampler).__name__}, drop_last={self.drop_last})")
