"""Minibatches: ``DataLoader`` cuts arrays into batches, shuffled once per epoch.

This file teaches three things:

1. **An epoch is one permutation.** With ``shuffle=True`` every ``iter(loader)``
   draws a fresh permutation of ``range(N)`` and cuts it into consecutive
   pieces of ``batch_size``: each example is seen exactly once per epoch, in a
   new order every epoch (sampling *with* replacement would see some examples
   twice and miss others).

2. **Where the randomness comes from.** ``seed=n`` gives the loader its own
   generator, created once, so its sequence of epochs is fixed whatever else
   the program draws. Without a seed the permutation is drawn from tinytl's
   global generator (``tinytl/_random.py``) at the start of each epoch, so
   ``tl.manual_seed(n)`` makes the whole run (initial weights *and* batch
   order) reproducible, like ``torch.manual_seed``.

3. **Copies cost time; views do not.** Without shuffling a batch is a slice
   ``X[i:i + batch_size]``: a view, no copy. With shuffling it is gathered by
   ``np.take`` (fancy indexing), which makes a fresh array for each batch, so a
   batch you keep is never overwritten by the next one.

Read next: ``tinytl/datasets.py`` (where the arrays come from), then
``examples/`` (loaders in training loops).
"""
from __future__ import annotations

import numpy as np

from . import _random, backend

__all__ = ["DataLoader"]


def _as_array(a, name: str) -> np.ndarray:
    """``a`` as a NumPy array with at least one dimension, or a clear error naming the argument."""
    if backend.is_cupy_array(a):
        raise TypeError(f"DataLoader: {name} must be a NumPy array (keep the data on the host "
                        "and pass device='cuda' to move each batch), got a CuPy array")
    if hasattr(a, "numpy") and callable(a.numpy) and not isinstance(a, np.ndarray):
        a = a.numpy()                                   # a tinytl (or torch) tensor
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as e:
        raise TypeError(f"DataLoader: {name} must be array-like, got {type(a).__name__} ({e})") from e
    if arr.dtype == object:
        raise TypeError(f"DataLoader: {name} must be a numeric array-like (got dtype object: "
                        "ragged lists or arbitrary Python objects)")
    if arr.ndim == 0:
        raise ValueError(f"DataLoader: {name} must have at least one dimension (one row per "
                         f"example), got a scalar")
    return arr


class DataLoader:
    """Iterate over ``(xb, yb)`` minibatches of arrays (or ``xb`` alone when ``y`` is None).

    Args:
        X: array-like of shape ``(N, ...)``: one row per example.
        y: array-like of shape ``(N,)`` or ``(N, ...)``, or None (unlabelled data).
        batch_size: examples per batch (a positive int); the last batch may be
            smaller unless ``drop_last``.
        shuffle: draw a new permutation of the examples at each epoch.
        seed: a non-negative int (the loader gets its own generator, created
            once), or None (each epoch draws from tinytl's global generator,
            reseeded by ``tl.manual_seed``).
        drop_last: drop the last batch when it has fewer than ``batch_size`` rows.
        device: None (leave batches as NumPy arrays), ``"cpu"`` or ``"cuda"``
            (each batch is moved with ``tinytl.backend.to_device``).

    ``len(loader)`` is the number of batches per epoch. Without shuffling the
    batches are views into ``X`` and ``y`` (no copy): writing into one writes
    into the data.

    Example::

        loader = DataLoader(x, y, batch_size=64, shuffle=True)
        for epoch in range(10):
            for xb, yb in loader:
                loss = loss_fn(model(xb), yb)
    """

    def __init__(self, X, y=None, batch_size: int = 32, shuffle: bool = False, seed=None,
                 drop_last: bool = False, device=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"DataLoader: batch_size must be a positive int, got {type(batch_size).__name__}")
        if batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size}")
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"DataLoader: {name} must be a bool, got {type(flag).__name__}")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"DataLoader: seed must be a non-negative int or None, got {type(seed).__name__}")
            if seed < 0:
                raise ValueError(f"DataLoader: seed must be a non-negative int or None, got {seed}")
        if device is not None:
            device = backend.check_device(device)     # raises now, not at the first batch

        X = _as_array(X, "X")
        if y is not None:
            y = _as_array(y, "y")
            if len(y) != len(X):
                raise ValueError(f"DataLoader: X and y must have the same first dimension "
                                 f"(one label per example), got X {X.shape} and y {y.shape}")

        self.X, self.y = X, y
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed, self.device = seed, device
        # The loader's own generator, created once: epoch k's order depends only on seed and k.
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def __len__(self) -> int:
        n, b = len(self.X), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        # The permutation is drawn here, when the epoch starts (not at the first next()).
        order = None
        if self.shuffle:
            rng = self._rng if self._rng is not None else _random.generator()
            order = rng.permutation(len(self.X))
        return self._batches(order)

    def _batches(self, order):
        X, y, b, device = self.X, self.y, self.batch_size, self.device
        for k in range(len(self)):
            if order is None:                       # fast path: contiguous slices (views)
                xb = X[k * b:(k + 1) * b]
                yb = None if y is None else y[k * b:(k + 1) * b]
            else:                                   # a gather: a fresh array per batch
                idx = order[k * b:(k + 1) * b]
                xb = np.take(X, idx, axis=0)
                yb = None if y is None else np.take(y, idx, axis=0)
            if device is not None:
                xb = backend.to_device(xb, device)
                yb = None if yb is None else backend.to_device(yb, device)
            yield xb if y is None else (xb, yb)

    def __repr__(self) -> str:
        x = f"X={self.X.shape} {self.X.dtype}"
        ys = "" if self.y is None else f", y={self.y.shape} {self.y.dtype}"
        extra = "" if self.seed is None else f", seed={self.seed}"
        extra += "" if self.device is None else f", device={self.device!r}"
        return (f"DataLoader({x}{ys}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}{extra}, batches={len(self)})")
