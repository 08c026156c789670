"""Making tensors, with torch's names, signatures and defaults.

``tl.zeros(2, 3)``, ``tl.ones((2, 3), dtype=tl.float64, device=dev)``, ``tl.full``, ``tl.empty``,
the ``*_like`` forms, ``tl.eye``, ``tl.arange``, ``tl.linspace``, the random draws ``tl.rand``,
``tl.randn``, ``tl.randint``, ``tl.randperm``, and the conversions ``tl.from_numpy`` (shares the
array's memory, as torch) and ``tl.as_tensor`` (shares it when no conversion is needed).

Every function takes ``dtype=`` (default float32 for floats, int64 for integers, as torch),
``device=`` ('cpu', 'cuda' or a ``tl.device``) and ``requires_grad=``. Random draws come from
tinytl's global generator (``tl.manual_seed`` makes them reproducible) or from
``generator=`` (a ``tl.Generator``); they are drawn on the host and moved, so a seed gives
the same numbers on every device (not the numbers torch would draw).

Read next: ``tinytl/ops.py``.
"""
from __future__ import annotations

import numpy as np

from . import backend, dtypes
from ._random import rng_of
from .tensor import Tensor


def _size(size, fn: str):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{fn}(): argument 'size' must be a tuple of ints, but found element of type "
                            f"{type(s).__name__}")
        if s < 0:
            raise RuntimeError(f"{fn}(): Trying to create tensor with negative dimension {s}: {list(size)}")
    return tuple(int(s) for s in size)


def _out(arr: np.ndarray, device, requires_grad: bool, fn: str) -> Tensor:
    dev = backend.check_device("cpu" if device is None else device)
    if requires_grad and arr.dtype.kind != "f":
        raise RuntimeError(f"{fn}(): only Tensors of floating point dtype can require gradients, got {arr.dtype}")
    return Tensor(backend.to_device(arr, dev), requires_grad=requires_grad)


def _float_dtype(dtype, fn):
    d = dtypes.as_dtype(dtype, f"{fn}()")
    if d.kind != "f":
        raise TypeError(f"{fn}(): dtype must be a floating point dtype, got {d}")
    return d


# ------------------------------------------------------------------ filled ----

def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of zeros of shape ``size`` (torch.zeros): ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return _out(np.zeros(_size(size, "zeros"), dtypes.as_dtype(dtype, "zeros()")), device, requires_grad, "zeros")


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ones (torch.ones)."""
    return _out(np.ones(_size(size, "ones"), dtypes.as_dtype(dtype, "ones()")), device, requires_grad, "ones")


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """An uninitialised tensor (torch.empty): its values are whatever the memory held."""
    return _out(np.empty(_size(size, "empty"), dtypes.as_dtype(dtype, "empty()")), device, requires_grad, "empty")


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value`` (torch.full); without a dtype, a bool
    value gives bool, an int int64, a float float32."""
    if dtype is None:
        dtype = dtypes.bool if isinstance(fill_value, (bool, np.bool_)) else dtypes.int64 \
            if isinstance(fill_value, (int, np.integer)) else None
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    shape = _size((size,) if not isinstance(size, (tuple, list)) else (tuple(size),), "full")
    return _out(np.full(shape, fill_value, dtypes.as_dtype(dtype, "full()")), device, requires_grad, "full")


def _like(fn, input, dtype, device):
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}(): argument 'input' must be Tensor, not {type(input).__name__}")
    return input.shape, input.dtype if dtype is None else dtypes.as_dtype(dtype, f"{fn}()"), \
        input.device if device is None else device


def zeros_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """zeros of ``input``'s shape, dtype and device unless given (torch.zeros_like)."""
    shape, dtype, device = _like("zeros_like", input, dtype, device)
    return _out(np.zeros(shape, dtype), device, requires_grad, "zeros_like")


def ones_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """ones of ``input``'s shape, dtype and device unless given (torch.ones_like)."""
    shape, dtype, device = _like("ones_like", input, dtype, device)
    return _out(np.ones(shape, dtype), device, requires_grad, "ones_like")


def empty_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape, dtype, device = _like("empty_like", input, dtype, device)
    return _out(np.empty(shape, dtype), device, requires_grad, "empty_like")


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``fill_value`` in ``input``'s shape, dtype and device unless given (torch.full_like)."""
    shape, dtype, device = _like("full_like", input, dtype, device)
    return _out(np.full(shape, fill_value, dtype), device, requires_grad, "full_like")


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """The n x m identity matrix (m = n by default) (torch.eye)."""
    for name, v in (("n", n), ("m", n if m is None else m)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise RuntimeError(f"eye(): {name} must be a non-negative integer, got {v!r}")
    return _out(np.eye(n, m, dtype=dtypes.as_dtype(dtype, "eye()")), device, requires_grad, "eye")


# ----------------------------------------------------------------- ranges ----

def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """start, start + step, ... up to but excluding ``end`` (torch.arange): ``arange(5)``,
    ``arange(1, 4)``, ``arange(0, 1, 0.25)``. int64 when every argument is an integer, else float32."""
    if end is None:
        start, end = 0, start
    nums = (start, end, step)
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.number)) for v in nums):
        raise TypeError(f"arange(): start, end and step must be numbers, got {nums}")
    if step == 0:
        raise RuntimeError("arange(): step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"arange(): upper bound and larger bound inconsistent with step sign "
                           f"(start={start}, end={end}, step={step})")
    if dtype is None:
        dtype = dtypes.int64 if all(isinstance(v, (int, np.integer)) for v in nums) else None
    d = dtypes.as_dtype(dtype, "arange()")
    n = int(np.ceil((end - start) / step))
    return _out((start + np.arange(n, dtype=np.float64 if d.kind == "f" else np.int64) * step).astype(d),
                device, requires_grad, "arange")


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``steps`` values evenly spaced from ``start`` to ``end`` inclusive (torch.linspace)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise RuntimeError(f"linspace(): number of steps must be non-negative, got {steps!r}")
    d = _float_dtype(dtype, "linspace")
    return _out(np.linspace(start, end, steps).astype(d), device, requires_grad, "linspace")


# ----------------------------------------------------------------- random ----

def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform draws in [0, 1) (torch.rand), from tinytl's generator or ``generator``."""
    d = _float_dtype(dtype, "rand")
    rng = rng_of(generator, "rand")
    arr = rng.random(_size(size, "rand"), dtype=d if d != np.float16 else np.float32).astype(d, copy=False)
    return _out(arr, device, requires_grad, "rand")


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal draws (torch.randn)."""
    d = _float_dtype(dtype, "randn")
    rng = rng_of(generator, "randn")
    arr = rng.standard_normal(_size(size, "randn"), dtype=d if d != np.float16 else np.float32).astype(d, copy=False)
    return _out(arr, device, requires_grad, "randn")


def rand_like(input, *, dtype=None, device=None, requires_grad=False, generator=None) -> Tensor:
    shape, dtype, device = _like("rand_like", input, dtype, device)
    return rand(shape, generator=generator, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(input, *, dtype=None, device=None, requires_grad=False, generator=None) -> Tensor:
    shape, dtype, device = _like("randn_like", input, dtype, device)
    return randn(shape, generator=generator, dtype=dtype, device=device, requires_grad=requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Integers drawn uniformly from [low, high) (torch.randint): ``randint(high, size)`` or
    ``randint(low, high, size)``; int64 unless ``dtype``."""
    if size is None:
        if high is None:
            raise TypeError("randint(): missing the 'size' argument (randint(high, size) or randint(low, high, size))")
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if not high > low:
        raise RuntimeError(f"randint(): random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    size = _size((size,) if not isinstance(size, (tuple, list)) else (tuple(size),), "randint")
    d = dtypes.int64 if dtype is None else dtypes.as_dtype(dtype, "randint()")
    arr = rng_of(generator, "randint").integers(low, high, size).astype(d)
    return _out(arr, device, requires_grad, "randint")


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A random permutation of 0..n-1 (torch.randperm); int64 unless ``dtype``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise RuntimeError(f"randperm(): n must be a non-negative integer, got {n!r}")
    d = dtypes.int64 if dtype is None else dtypes.as_dtype(dtype, "randperm()")
    return _out(rng_of(generator, "randperm").permutation(int(n)).astype(d), device, requires_grad, "randperm")


# ------------------------------------------------------------ conversions ----

def from_numpy(ndarray) -> Tensor:
    """A CPU tensor sharing ``ndarray``'s memory (torch.from_numpy): writes to one show in the other."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy(): expected np.ndarray (got {type(ndarray).__name__})")
    if ndarray.dtype not in dtypes._NAMES:
        raise TypeError(f"from_numpy(): can't convert np.ndarray of type {ndarray.dtype}. The only supported types "
                        f"are: {', '.join(dtypes._NAMES.values())}")
    return Tensor(ndarray)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """``data`` as a tensor, sharing memory when it is already an array (or Tensor) of that
    dtype on that device (torch.as_tensor); otherwise a converted copy, as ``tl.tensor``."""
    from .tensor import tensor
    if isinstance(data, Tensor):
        return data.to(*(a for a in (device, dtype) if a is not None))
    if isinstance(data, np.ndarray) or backend.is_cupy_array(data):
        d = data.dtype if dtype is None else dtypes.as_dtype(dtype, "as_tensor()")
        dev = backend.check_device(backend.device_of(data) if device is None else device)
        arr = data.astype(d, copy=False)
        return Tensor(backend.to_device(arr, dev))
    return tensor(data, dtype=dtype, device="cpu" if device is None else device)
