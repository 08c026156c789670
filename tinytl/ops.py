"""The tensor surface under PyTorch's names: elementwise maths, comparisons, reductions,
shapes, indexing, sorting, in-place updates, conversions and Python's protocols.

Each differentiable op has the form of ``tinytl/functional.py``: the forward with the
array module ``xp`` (NumPy or CuPy), then a closure mapping the output's gradient to
one gradient per input, passed to ``_make``. Ops whose outputs are integers or booleans
(comparisons, argmax, indices) record nothing. The functions are attached to ``Tensor``
as methods in one place, at the end of this file; ``tinytl/__init__.py`` exports the
torch-named top-level functions (``tl.max``, ``tl.where``, ``tl.cat``, ...).

Gradients follow PyTorch's choices where it has one: ``max``/``min`` without a dim share
the gradient evenly among tied maxima, with a dim they give it to the returned index (the
first); ``maximum``/``minimum`` halve it between tied operands; ``clamp`` passes it where
``min <= x <= max``; ``abs`` and ``sign`` give 0 at 0; ``norm`` gives 0 at the origin.

In-place operations (``add_``, ``x += y``, ``x[i] = v``, ``zero_``, ...) write into the
tensor's array, so every view and alias of it sees the change, as in torch. tinytl has
no version counters, so its rule is simpler than torch's: while grad mode is on, an
in-place method on a tensor that requires grad (or with an operand that does) raises
RuntimeError (on a leaf with torch's own message); the augmented operators ``+= -= *= /=``
in that case record ``x = x + y`` as a new graph node instead (the running-loss idiom
``total += loss`` then works, but other references to the old ``x`` keep its value).
Under ``tl.no_grad()`` they all update in place: ``w -= lr * w.grad`` updates ``w``.

Read next: ``tinytl/creation.py`` (zeros, rand, arange, ...).
"""
from __future__ import annotations

import builtins
import copy as _copy
import math
from collections import namedtuple

import numpy as np

from . import backend, dtypes
from . import device as _device
from .tensor import Tensor, _as_tensor, _grad_mode, _make, _unbroadcast, add, div, matmul, mul, neg, sub

# named pairs, as torch.return_types.max etc.
return_types = type("return_types", (), {n: namedtuple(n, ["values", "indices"])
                                         for n in ("max", "min", "sort", "topk", "kthvalue", "median", "mode")})


# ------------------------------------------------------------- helpers ----

def _xp(t):
    return backend.get_array_module(t.data)


def _input(x, fn: str, name: str = "input") -> Tensor:
    """``x`` as a Tensor: a Tensor, or an array (so ``tl.max(outputs.data, 1)``, the tutorials'
    idiom, works although tinytl's ``.data`` is the array itself); anything else raises TypeError."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray) or backend.is_cupy_array(x):
        return Tensor(x)
    raise TypeError(f"{fn}(): argument '{name}' must be Tensor, not {type(x).__name__}")


def _float(x: Tensor) -> Tensor:
    """x itself when floating, else a float32 copy (torch.exp(int tensor) is float32)."""
    return x if x.dtype.kind == "f" else Tensor(x.data.astype(dtypes.get_default_dtype()))


def _array(x, like: Tensor, fn: str):
    """An operand's array on ``like``'s device (numbers stay numbers)."""
    if isinstance(x, Tensor):
        if x.device.type != like.device.type:
            raise RuntimeError(f"{fn}: expected all tensors on the same device, got '{like.device.type}' and "
                               f"'{x.device.type}'")
        return x.data
    if isinstance(x, (builtins.bool, builtins.int, builtins.float, np.number, np.bool_)):
        return x
    return _as_tensor(x, like).data


def _dim(d, ndim: int, fn: str) -> int:
    """``d`` in [0, ndim), from torch's range [-ndim, ndim - 1] (a 0-d tensor has dims -1 and 0)."""
    if isinstance(d, builtins.bool) or not isinstance(d, (builtins.int, np.integer)):
        raise TypeError(f"{fn}(): argument 'dim' must be int, not {type(d).__name__}")
    n = builtins.max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"{fn}(): Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {d})")
    return builtins.int(d) % n


def _dims(dim, ndim: int, fn: str, axis=None):
    """The dims to reduce as a sorted tuple (None: all). Takes NumPy's ``axis`` as an alias."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{fn}(): pass dim or axis, not both")
        dim = axis
    if dim is None:
        return None
    ds = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    out = tuple(sorted(_dim(d, ndim, fn) for d in ds))
    if len(set(out)) != len(out):
        raise RuntimeError(f"{fn}(): dim {ds} has a dimension that appears multiple times in the list of dims")
    return None if not out or ndim == 0 else out


def _keep(keepdim, keepdims) -> builtins.bool:
    return builtins.bool(keepdim if keepdims is None else keepdims)


def _arr(y, xp):
    """Reductions over every axis give NumPy scalars: keep arrays throughout (in-place ops need them)."""
    return y if xp is not np or isinstance(y, np.ndarray) else np.asarray(y)


def _expand(g, axes, keep, shape, xp):
    """A reduced gradient broadcast back to ``shape``."""
    if axes is None:
        axes = tuple(range(len(shape)))
    if not keep and axes:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, shape)


def _count(shape, axes) -> builtins.int:
    return math.prod(shape) if axes is None else math.prod(shape[a] for a in axes)


def _no_grad_out(data) -> Tensor:
    """A result without a gradient (booleans, indices)."""
    return Tensor(data)


# ------------------------------------------------------- elementwise maths ----

def _unary(name, forward, derivative):
    """An elementwise op y = f(x) whose derivative is ``derivative(x, y)``."""
    def op(input):
        x = _float(_input(input, name))
        xp = _xp(x)
        y = forward(xp, x.data)
        return _make(y, (x,), lambda g: (g * derivative(xp, x.data, y),), name)
    op.__name__ = name
    return op


def _sigmoid(xp, a):
    e = xp.exp(-xp.abs(a))                  # never overflows
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))


exp = _unary("exp", lambda xp, a: xp.exp(a), lambda xp, a, y: y)
exp.__doc__ = "e**x; d/dx = e**x (torch.exp)."
log = _unary("log", lambda xp, a: xp.log(a), lambda xp, a, y: 1 / a)
log.__doc__ = "Natural logarithm; d/dx = 1/x (torch.log)."
sqrt = _unary("sqrt", lambda xp, a: xp.sqrt(a), lambda xp, a, y: 0.5 / y)
sqrt.__doc__ = "x**0.5; d/dx = 1 / (2 sqrt(x)) (torch.sqrt)."
tanh = _unary("tanh", lambda xp, a: xp.tanh(a), lambda xp, a, y: 1 - y * y)
tanh.__doc__ = "tanh(x); d/dx = 1 - tanh(x)**2 (torch.tanh)."
sigmoid = _unary("sigmoid", _sigmoid, lambda xp, a, y: y * (1 - y))
sigmoid.__doc__ = "1 / (1 + e**-x), computed without overflow; d/dx = s (1 - s) (torch.sigmoid)."


def abs(input):
    """|x|; d/dx = sign(x), 0 at 0 (torch.abs). Integer tensors stay integer."""
    x = _input(input, "abs")
    xp = _xp(x)
    return _make(xp.abs(x.data), (x,), lambda g: (g * xp.sign(x.data),), "abs")


def sign(input):
    """-1, 0 or 1 by the sign of x; its gradient is 0 everywhere (torch.sign)."""
    x = _input(input, "sign")
    xp = _xp(x)
    return _make(xp.sign(x.data), (x,), lambda g: (xp.zeros_like(g),), "sign")


def clamp(input, min=None, max=None):
    """min(max(x, min), max) (torch.clamp; ``clip`` is its alias). ``min``/``max``: numbers or tensors.

    d/dx = 1 where min <= x <= max (both ends included, as torch), else 0; a tensor bound
    receives the gradient where it is the output (x < min, x > max)."""
    x = _input(input, "clamp")
    if min is None and max is None:
        raise RuntimeError("clamp(): At least one of 'min' or 'max' must not be None")
    xp = _xp(x)
    lo = None if min is None else _array(min, x, "clamp")
    hi = None if max is None else _array(max, x, "clamp")
    y = x.data
    if lo is not None:
        y = xp.maximum(y, lo)
    if hi is not None:
        y = xp.minimum(y, hi)
    parents = (x,) + tuple(b for b in (min, max) if isinstance(b, Tensor))

    def backward(g):
        inside = True
        if lo is not None:
            inside = inside & (x.data >= lo)
        if hi is not None:
            inside = inside & (x.data <= hi)
        grads = [_unbroadcast(g * inside, x.shape)]
        if isinstance(min, Tensor):
            grads.append(_unbroadcast(g * (x.data < lo), min.shape))
        if isinstance(max, Tensor):
            grads.append(_unbroadcast(g * (x.data > hi), max.shape))
        return tuple(grads)
    return _make(y, parents, backward, "clamp")


clip = clamp


def _pair(name, a, b):
    """Two operands as tensors on one device (either may be a number, not both)."""
    if not isinstance(a, Tensor):
        b = _input(b, name, "other")
        a = _as_tensor(a, b)
    else:
        b = _as_tensor(b, a) if not isinstance(b, Tensor) else b
        _array(b, a, name)
    return a, b


def pow(input, exponent):
    """input ** exponent (torch.pow): either may be a tensor, broadcasting.

    d/dbase = exponent * base**(exponent - 1); d/dexponent = base**exponent * log(base),
    taken as 0 where base == 0 and exponent >= 0 (as torch)."""
    if isinstance(input, Tensor) and not isinstance(exponent, Tensor):
        if not isinstance(exponent, (builtins.int, builtins.float, np.number)):
            raise TypeError(f"pow(): argument 'exponent' must be a number or a Tensor, not "
                            f"{type(exponent).__name__}")
        x = input if isinstance(exponent, (builtins.int, np.integer)) else _float(input)
        e = exponent

        def backward(g):
            if e == 0:
                return (g * 0,)
            return (g * (e * x.data ** (e - 1)),)
        y = x.data ** e
        if isinstance(y, np.generic):
            y = np.asarray(y)
        return _make(y, (x,), backward, "pow")
    a, b = _pair("pow", input, exponent)
    if a.dtype.kind != "f" and b.dtype.kind == "f":
        a = _float(a)
    xp = backend.get_array_module(a.data, b.data)
    y = a.data ** b.data

    def backward(g):
        ga = gb = None
        if a.requires_grad:
            ga = _unbroadcast(g * b.data * a.data ** (b.data - 1), a.shape)
        if b.requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):
                lg = xp.where((a.data == 0) & (b.data >= 0), 0, y * xp.log(xp.where(a.data == 0, 1, a.data)))
            gb = _unbroadcast(g * lg, b.shape)
        return ga, gb
    return _make(y, (a, b), backward, "pow")


def _rpow(self, base):
    """base ** self for a number base (torch's __rpow__); d/dself = base**self * log(base)."""
    return pow(_as_tensor(base, self if isinstance(base, (builtins.int, np.integer)) else _float(self)), self)


def maximum(input, other):
    """Elementwise max (torch.maximum); the gradient goes to the larger, halved on ties."""
    return _extremum("maximum", input, other, 1)


def minimum(input, other):
    """Elementwise min (torch.minimum); the gradient goes to the smaller, halved on ties."""
    return _extremum("minimum", input, other, -1)


def _extremum(name, input, other, s):
    a, b = _pair(name, input, other)
    xp = backend.get_array_module(a.data, b.data)
    y = xp.maximum(a.data, b.data) if s > 0 else xp.minimum(a.data, b.data)

    def backward(g):
        wins = (a.data > b.data) if s > 0 else (a.data < b.data)
        share = xp.where(wins, 1.0, xp.where(a.data == b.data, 0.5, 0.0)).astype(g.dtype)
        return (_unbroadcast(g * share, a.shape) if a.requires_grad else None,
                _unbroadcast(g * (1 - share), b.shape) if b.requires_grad else None)
    return _make(y, (a, b), backward, name)


def where(condition, input=None, other=None):
    """``input`` where ``condition`` holds, else ``other`` (torch.where; broadcasting; numbers allowed).

    Differentiable in ``input`` and ``other``: each gets the gradient where it was chosen.
    ``where(condition)`` alone is ``nonzero(condition, as_tuple=True)``."""
    cond = _input(condition, "where", "condition")
    if input is None and other is None:
        xp = _xp(cond)
        return tuple(_no_grad_out(i) for i in xp.nonzero(cond.data))
    if cond.dtype != np.bool_:
        raise TypeError(f"where(): argument 'condition' must be a bool tensor, got dtype {cond.dtype}")
    like = input if isinstance(input, Tensor) else other if isinstance(other, Tensor) else cond
    a = _as_tensor(input, like) if not isinstance(input, Tensor) else input
    b = _as_tensor(other, like) if not isinstance(other, Tensor) else other
    for t in (a, b):
        _array(t, cond, "where")
    xp = _xp(cond)
    c = cond.data

    def backward(g):
        return (None, _unbroadcast(xp.where(c, g, 0), a.shape) if a.requires_grad else None,
                _unbroadcast(xp.where(c, 0, g), b.shape) if b.requires_grad else None)
    return _make(xp.where(c, a.data, b.data), (cond, a, b), backward, "where")


def add_op(input, other, *, alpha=1):
    """input + alpha * other (torch.add)."""
    return add(_input(input, "add"), other if alpha == 1 else other * alpha)


def sub_op(input, other, *, alpha=1):
    """input - alpha * other (torch.sub)."""
    return sub(_input(input, "sub"), other if alpha == 1 else other * alpha)


def mm(input, mat2):
    """The product of two matrices (torch.mm: 2-D only; ``matmul`` broadcasts)."""
    a, b = _input(input, "mm"), _input(mat2, "mm", "mat2")
    if a.ndim != 2 or b.ndim != 2:
        raise RuntimeError(f"mm(): both arguments must be 2-D matrices, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


# ------------------------------------------------------------ comparisons ----

def _comparison(name, ufunc):
    def op(input, other):
        if not isinstance(other, (Tensor, builtins.int, builtins.float, builtins.bool, np.number, np.bool_,
                                  np.ndarray)) and not backend.is_cupy_array(other):
            return NotImplemented
        x = _input(input, name)
        return _no_grad_out(getattr(_xp(x), ufunc)(x.data, _array(other, x, name)))
    op.__name__ = name
    op.__doc__ = f"Elementwise ``{ufunc}`` (torch.{name}): a bool tensor, with no gradient."
    return op


eq = _comparison("eq", "equal")
ne = _comparison("ne", "not_equal")
lt = _comparison("lt", "less")
le = _comparison("le", "less_equal")
gt = _comparison("gt", "greater")
ge = _comparison("ge", "greater_equal")


def _logical(name, ufunc):
    def op(input, other):
        x = _input(input, name)
        if isinstance(other, Tensor) or isinstance(other, (builtins.bool, builtins.int, np.integer, np.bool_)):
            return _no_grad_out(getattr(_xp(x), ufunc)(x.data, _array(other, x, name)))
        return NotImplemented
    return op


def logical_not(input):
    """not x, elementwise (torch.logical_not; ``~mask`` for a bool tensor)."""
    x = _input(input, "logical_not")
    return _no_grad_out(_xp(x).logical_not(x.data))


def _invert(self):
    if self.dtype == np.bool_:
        return logical_not(self)
    if self.dtype.kind not in "iu":
        raise TypeError(f"~ (bitwise_not): needs an integer or bool tensor, got dtype {self.dtype}")
    return _no_grad_out(_xp(self).invert(self.data))


def isnan(input):
    """x != x, elementwise (torch.isnan)."""
    x = _input(input, "isnan")
    return _no_grad_out(_xp(x).isnan(x.data))


def isfinite(input):
    x = _input(input, "isfinite")
    return _no_grad_out(_xp(x).isfinite(x.data))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> builtins.bool:
    """|input - other| <= atol + rtol |other| everywhere (torch.allclose)."""
    x = _input(input, "allclose")
    return builtins.bool(_xp(x).allclose(x.data, _array(other, x, "allclose"), rtol=rtol, atol=atol,
                                         equal_nan=equal_nan))


def equal(input, other) -> builtins.bool:
    """True when both have the same shape and elements (torch.equal)."""
    x, y = _input(input, "equal"), _input(other, "equal", "other")
    return x.shape == y.shape and builtins.bool((x.data == _array(y, x, "equal")).all())


def all(input, dim=None, keepdim=False):
    """Whether every element is non-zero (torch.all), over ``dim`` or everything."""
    x = _input(input, "all")
    return _no_grad_out(_arr(x.data.astype(np.bool_).all(axis=_dims(dim, x.ndim, "all"), keepdims=keepdim), _xp(x)))


def any(input, dim=None, keepdim=False):
    """Whether some element is non-zero (torch.any), over ``dim`` or everything."""
    x = _input(input, "any")
    return _no_grad_out(_arr(x.data.astype(np.bool_).any(axis=_dims(dim, x.ndim, "any"), keepdims=keepdim), _xp(x)))


# ------------------------------------------------------------- reductions ----

def sum(input, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Sum over ``dim`` (an int or a tuple; all dims when None) (torch.sum).

    Integer and bool tensors sum to int64, as torch. NumPy's ``axis``/``keepdims`` are accepted
    too. The gradient broadcasts back over the summed dims."""
    x = _input(input, "sum")
    axes, keep, xp = _dims(dim, x.ndim, "sum", axis), _keep(keepdim, keepdims), _xp(x)
    data = x.data
    if dtype is not None:
        data = data.astype(dtypes.as_dtype(dtype, "sum()"))
    elif data.dtype.kind in "biu":
        data = data.astype(np.int64)
    y = _arr(data.sum(axis=axes, keepdims=keep), xp)
    return _make(y, (x,), lambda g: (_expand(g, axes, keep, x.shape, xp).astype(x.dtype),), "sum")


def mean(input, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Mean over ``dim`` (all dims when None) (torch.mean); floating tensors only, as torch."""
    x = _input(input, "mean")
    if dtype is not None:
        x = x.to(dtypes.as_dtype(dtype, "mean()"))
    if x.dtype.kind != "f":
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point "
                           f"or complex dtype. Got: {x.dtype} (convert it first, e.g. x.float().mean())")
    axes, keep, xp = _dims(dim, x.ndim, "mean", axis), _keep(keepdim, keepdims), _xp(x)
    n = _count(x.shape, axes)
    if n == 0:
        raise ValueError("mean(): cannot take the mean of zero elements")
    y = _arr(x.data.mean(axis=axes, keepdims=keep), xp)
    return _make(y, (x,), lambda g: (_expand(g / n, axes, keep, x.shape, xp),), "mean")


def _correction(fn, unbiased, correction):
    if unbiased is not None and correction is not None:
        raise TypeError(f"{fn}(): pass unbiased or correction, not both")
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=None):
    """sum((x - mean)**2) / (N - correction) over ``dim`` (torch.var).

    ``correction`` defaults to 1 (Bessel's, the unbiased estimate); ``unbiased=False`` means 0.
    d/dx = 2 (x - mean) / (N - correction)."""
    return _moment("var", input, dim, unbiased, keepdim, correction, axis, keepdims, False)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=None):
    """sqrt(var) (torch.std); d/dx = (x - mean) / ((N - correction) std)."""
    return _moment("std", input, dim, unbiased, keepdim, correction, axis, keepdims, True)


def _moment(fn, input, dim, unbiased, keepdim, correction, axis, keepdims, root):
    x = _float(_input(input, fn))
    if isinstance(dim, builtins.bool):              # x.var(False): the unbiased flag, positionally
        dim, unbiased = None, dim
    c = _correction(fn, unbiased, correction)
    axes, keep, xp = _dims(dim, x.ndim, fn, axis), _keep(keepdim, keepdims), _xp(x)
    d = x.data - x.data.mean(axis=axes, keepdims=True)
    denom = builtins.max(_count(x.shape, axes) - c, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = _arr((d * d).sum(axis=axes, keepdims=keep) / denom, xp)
        y = xp.sqrt(v) if root else v

    def backward(g):
        with np.errstate(divide="ignore", invalid="ignore"):
            if root:    # torch's std backward: 0 where std is 0 (a constant), not 0/0
                s = xp.where(y == 0, 0.0, g / (denom * y)).astype(y.dtype, copy=False)
            else:       # inf/nan at 0 degrees of freedom, as torch
                s = g * (2.0 / np.float64(denom))
            return (_expand(s, axes, keep, x.shape, xp) * d,)
    return _make(y, (x,), backward, fn)


def _evenly(xp, x, y, axes, keep):
    """d y / d x for y = max or min of x over ``axes``: 1 shared evenly among the tied extrema."""
    hit = x == _expand(y, axes, keep, x.shape, xp)
    return hit / hit.sum(axis=axes, keepdims=True)


def _extreme(fn, input, dim, keepdim, axis, keepdims, other, largest):
    x = _input(input, fn)
    if isinstance(dim, Tensor) or other is not None:
        return (maximum if largest else minimum)(x, dim if other is None else other)
    if axis is not None:
        dim = axis
    xp = _xp(x)
    if dim is None:
        if x.data.size == 0:
            raise RuntimeError(f"{fn}(): Expected reduction dim to be specified for input.numel() == 0. "
                               f"Specify the reduction dim with the 'dim' argument.")
        y = _arr(x.data.max() if largest else x.data.min(), xp)
        return _make(y, (x,), lambda g: (g * _evenly(xp, x.data, y, None, False),), fn)
    d, keep = _dim(dim, x.ndim, fn), _keep(keepdim, keepdims)
    if x.ndim == 0:
        return getattr(return_types, fn)(x * 1 if x.requires_grad else x, _no_grad_out(xp.zeros((), np.int64)))
    idx = (xp.argmax if largest else xp.argmin)(x.data, axis=d, keepdims=True)
    vals = xp.take_along_axis(x.data, idx, axis=d)
    onehot = xp.arange(x.shape[d]).reshape((-1,) + (1,) * (x.ndim - d - 1)) == idx

    def backward(g):
        return (onehot * (g if keep else xp.expand_dims(g, d)),)
    if not keep:
        vals, idx = vals.squeeze(d), idx.squeeze(d)
    return getattr(return_types, fn)(_make(vals, (x,), backward, fn), _no_grad_out(idx.astype(np.int64)))


def max(input, dim=None, keepdim=False, *, other=None, axis=None, keepdims=None):
    """torch.max: ``max(x)`` the largest element (gradient shared evenly among ties);
    ``max(x, dim, keepdim=False)`` the pair ``(values, indices)`` along ``dim`` (gradient to
    the returned index, the first maximum); ``max(x, other_tensor)`` is ``maximum``."""
    return _extreme("max", input, dim, keepdim, axis, keepdims, other, True)


def min(input, dim=None, keepdim=False, *, other=None, axis=None, keepdims=None):
    """torch.min: as ``max`` with the smallest elements."""
    return _extreme("min", input, dim, keepdim, axis, keepdims, other, False)


def amax(input, dim=(), keepdim=False):
    """The largest values over ``dim`` (an int or tuple; all when empty) (torch.amax); the
    gradient is shared evenly among ties."""
    return _amax("amax", input, dim, keepdim, True)


def amin(input, dim=(), keepdim=False):
    """The smallest values over ``dim`` (torch.amin)."""
    return _amax("amin", input, dim, keepdim, False)


def _amax(fn, input, dim, keepdim, largest):
    x = _input(input, fn)
    axes, xp = _dims(dim, x.ndim, fn), _xp(x)
    y = _arr(x.data.max(axis=axes, keepdims=keepdim) if largest else x.data.min(axis=axes, keepdims=keepdim), xp)
    return _make(y, (x,), lambda g: (_expand(g, axes, keepdim, x.shape, xp) * _evenly(xp, x.data, y, axes, keepdim),),
                 fn)


def argmax(input, dim=None, keepdim=False):
    """Index of the largest element (the first on ties): over the flattened tensor when
    ``dim`` is None, else along ``dim`` (torch.argmax). int64, no gradient."""
    return _argext("argmax", input, dim, keepdim, True)


def argmin(input, dim=None, keepdim=False):
    """Index of the smallest element (torch.argmin)."""
    return _argext("argmin", input, dim, keepdim, False)


def _argext(fn, input, dim, keepdim, largest):
    x = _input(input, fn)
    xp = _xp(x)
    f = xp.argmax if largest else xp.argmin
    if dim is None:
        i = f(x.data.reshape(-1))
        return _no_grad_out(_arr(i, xp).astype(np.int64).reshape((1,) * x.ndim if keepdim else ()))
    d = _dim(dim, x.ndim, fn)
    if x.ndim == 0:
        return _no_grad_out(xp.zeros((), np.int64))
    return _no_grad_out(f(x.data, axis=d, keepdims=keepdim).astype(np.int64))


def logsumexp(input, dim, keepdim=False):
    """log(sum(exp(x))) over ``dim``, computed from x - max (torch.logsumexp);
    d/dx = softmax(x) along ``dim``."""
    x = _float(_input(input, "logsumexp"))
    axes, xp = _dims(dim, x.ndim, "logsumexp"), _xp(x)
    m = x.data.max(axis=axes, keepdims=True) if x.data.size else xp.zeros((1,) * x.ndim, x.dtype)
    m = xp.where(xp.isfinite(m), m, 0)
    s = xp.exp(x.data - m).sum(axis=axes, keepdims=True)
    lse = xp.log(s) + m
    y = _arr(lse if keepdim else (lse.reshape(()) if axes is None else lse.squeeze(axes)), xp)
    return _make(y, (x,), lambda g: (_expand(g, axes, keepdim, x.shape, xp) * xp.exp(x.data - lse),),
                 "logsumexp")


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """The vector p-norm (sum |x|**p)**(1/p) over ``dim`` (all elements when None) (torch.norm).

    ``p``: 'fro' or 2 (Euclidean, the default), 1, any other number, ``inf`` (max |x|),
    ``-inf`` (min |x|), 0 (the number of non-zeros). The gradient is 0 at the origin; for
    ``inf`` it is shared evenly among the tied largest |x|, as torch."""
    x = _float(_input(input, "norm"))
    if dtype is not None:
        x = x.to(dtypes.as_dtype(dtype, "norm()"))
    if p == "fro":
        p = 2
    if isinstance(p, str) or not isinstance(p, (builtins.int, builtins.float, np.number)):
        raise ValueError(f"norm(): p must be 'fro' or a number (1, 2, inf, ...), got {p!r} "
                         f"(the nuclear norm is not implemented)")
    axes, xp = _dims(dim, x.ndim, "norm"), _xp(x)
    a = xp.abs(x.data)
    s = xp.sign(x.data)
    red = dict(axis=axes, keepdims=keepdim)
    if p == math.inf or p == -math.inf:
        y = _arr(a.max(**red) if p > 0 else a.min(**red), xp)
        return _make(y, (x,), lambda g: (_expand(g, axes, keepdim, x.shape, xp) * s *
                                          _evenly(xp, a, y, axes, keepdim),), "norm")
    if p == 0:
        return _no_grad_out(_arr((a != 0).sum(**red).astype(x.dtype), xp))
    if p == 1:
        return _make(_arr(a.sum(**red), xp), (x,), lambda g: (_expand(g, axes, keepdim, x.shape, xp) * s,), "norm")
    y = _arr((a ** p).sum(**red) ** (1.0 / p), xp)

    def backward(g):
        ye = _expand(y, axes, keepdim, x.shape, xp)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = x.data / ye if p == 2 else s * a ** (p - 1) / ye ** (p - 1)
        return (_expand(g, axes, keepdim, x.shape, xp) * xp.where(ye == 0, 0, d),)
    return _make(y, (x,), backward, "norm")


# ------------------------------------------------------------------ shapes ----

def _size_args(shape, fn: str):
    """``f(2, 3)``, ``f((2, 3))`` or ``f([2, 3])`` -> (2, 3), every entry an int."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if isinstance(s, builtins.bool) or not isinstance(s, (builtins.int, np.integer)):
            raise TypeError(f"{fn}(): argument 'size' must be a tuple of ints, but found element of type "
                            f"{type(s).__name__}")
    return tuple(builtins.int(s) for s in shape)


def _infer(shape, numel: builtins.int, fn: str):
    """Resolve one -1 in ``shape`` for ``numel`` elements; raise as torch when it cannot fit."""
    if builtins.sum(1 for s in shape if s == -1) > 1:
        raise RuntimeError(f"{fn}(): only one dimension can be inferred, got shape {list(shape)}")
    if builtins.any(s < -1 for s in shape):
        raise RuntimeError(f"{fn}(): invalid shape dimension {builtins.min(shape)} in {list(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"{fn}(): shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(f"{fn}(): shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def reshape(input, *shape):
    """The same elements with a new shape; one entry may be -1 (torch.reshape)."""
    x = _input(input, "reshape")
    new = _infer(_size_args(shape, "reshape"), x.data.size, "reshape")
    old = x.shape
    return _make(x.data.reshape(new), (x,), lambda g: (g.reshape(old),), "reshape")


def view(self, *shape):
    """``reshape`` under torch's name (Tensor.view). tinytl does not track strides, so a
    view of a non-contiguous tensor copies where torch would raise; ``view(dtype)`` is not
    supported."""
    if len(shape) == 1 and dtypes.is_dtype(shape[0]):
        raise TypeError("view(dtype) is not supported by tinytl: use .to(dtype)")
    x = _input(self, "view")
    new = _infer(_size_args(shape, "view"), x.data.size, "view")
    old = x.shape
    return _make(x.data.reshape(new), (x,), lambda g: (g.reshape(old),), "view")


def view_as(self, other):
    return view(self, other.shape)


def reshape_as(self, other):
    return reshape(self, other.shape)


def flatten(input, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim into one (torch.flatten); a 0-d tensor becomes 1-d."""
    x = _input(input, "flatten")
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = _dim(start_dim, x.ndim, "flatten"), _dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    return reshape(x, x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def unflatten(input, dim, sizes):
    """Split ``dim`` into ``sizes`` (one may be -1) (torch.unflatten)."""
    x = _input(input, "unflatten")
    d = _dim(dim, x.ndim, "unflatten")
    sizes = _infer(_size_args((sizes,), "unflatten"), x.shape[d], "unflatten")
    return reshape(x, x.shape[:d] + sizes + x.shape[d + 1:])


def unsqueeze(input, dim):
    """A new dim of size 1 at ``dim``, in [-ndim - 1, ndim] (torch.unsqueeze)."""
    x = _input(input, "unsqueeze")
    d = _dim(dim, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def squeeze(input, dim=None):
    """Drop dims of size 1: all of them, or those in ``dim`` (an int or tuple; a dim whose size
    is not 1 is left alone, as torch)."""
    x = _input(input, "squeeze")
    ds = range(x.ndim) if dim is None else _dims(dim, x.ndim, "squeeze") or ()
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if not (i in ds and n == 1)))


def permute(input, *dims):
    """The dims reordered as ``dims``, a permutation (torch.permute); the gradient permutes back."""
    x = _input(input, "permute")
    dims = _size_args(dims, "permute")
    if len(dims) != x.ndim:
        raise RuntimeError(f"permute(): number of dims don't match: the input has {x.ndim}, dims has {len(dims)}")
    dims = tuple(_dim(d, x.ndim, "permute") for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"permute(): repeated dim in {dims}")
    inv = tuple(np.argsort(dims))
    xp = _xp(x)
    return _make(xp.transpose(x.data, dims), (x,), lambda g: (xp.transpose(g, inv),), "permute")


def transpose(input, dim0, dim1):
    """Swap dims ``dim0`` and ``dim1`` (torch.transpose; ``swapaxes`` is its alias)."""
    x = _input(input, "transpose")
    d = list(range(x.ndim))
    i, j = _dim(dim0, x.ndim, "transpose"), _dim(dim1, x.ndim, "transpose")
    if x.ndim == 0:
        return x
    d[i], d[j] = d[j], d[i]
    return permute(x, d)


swapaxes = transpose


def t(input):
    """The transpose of a tensor of at most 2 dims (torch.t)."""
    x = _input(input, "t")
    if x.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {x.ndim}D")
    return transpose(x, 0, 1) if x.ndim == 2 else x


def _reverse_dims(self):
    """``.T``: the dims reversed (a matrix transpose for 2-D tensors)."""
    return permute(self, tuple(range(self.ndim))[::-1])


def size(self, dim=None):
    """The shape (a tuple), or the size of ``dim`` (torch.Tensor.size)."""
    return self.shape if dim is None else self.shape[_dim(dim, self.ndim, "size")]


def numel(input) -> builtins.int:
    """The number of elements (torch.numel)."""
    return builtins.int(_input(input, "numel").data.size)


def cat(tensors, dim=0):
    """Join tensors along an existing dim (torch.cat; ``concat``/``concatenate`` are aliases);
    every other dim must agree. The gradient is split back."""
    ts = _sequence(tensors, "cat")
    d = _dim(dim, ts[0].ndim, "cat")
    for i, x in enumerate(ts):
        if x.ndim != ts[0].ndim or x.shape[:d] + x.shape[d + 1:] != ts[0].shape[:d] + ts[0].shape[d + 1:]:
            raise RuntimeError(f"cat(): sizes of tensors must match except in dimension {d}: tensor 0 has shape "
                               f"{ts[0].shape}, tensor {i} has shape {x.shape}")
    xp = _xp(ts[0])
    edges = np.cumsum([0] + [x.shape[d] for x in ts])

    def backward(g):
        return tuple(g[(slice(None),) * d + (slice(int(a), int(b)),)] if x.requires_grad else None
                     for x, a, b in zip(ts, edges[:-1], edges[1:]))
    return _make(xp.concatenate([x.data for x in ts], axis=d), ts, backward, "cat")


concat = concatenate = cat


def stack(tensors, dim=0):
    """Join same-shaped tensors along a new dim (torch.stack)."""
    ts = _sequence(tensors, "stack")
    for i, x in enumerate(ts):
        if x.shape != ts[0].shape:
            raise RuntimeError(f"stack(): expects each tensor to be equal size, but got {ts[0].shape} at entry 0 "
                               f"and {x.shape} at entry {i}")
    d = _dim(dim, ts[0].ndim + 1, "stack")
    return cat([unsqueeze(x, d) for x in ts], d)


def _sequence(tensors, fn):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{fn}(): argument 'tensors' must be a tuple or list of Tensors, "
                        f"not {type(tensors).__name__}")
    if not tensors:
        raise RuntimeError(f"{fn}(): expected a non-empty list of Tensors")
    ts = tuple(_input(x, fn, f"tensors[{i}]") for i, x in enumerate(tensors))
    for x in ts[1:]:
        _array(x, ts[0], f"{fn}()")
    return ts


def chunk(input, chunks, dim=0):
    """Split into ``chunks`` pieces of ceil(size / chunks) along ``dim`` (torch.chunk)."""
    x = _input(input, "chunk")
    d = _dim(dim, x.ndim, "chunk")
    step = -(-x.shape[d] // chunks)
    return split(x, builtins.max(step, 1), d)


def split(input, split_size_or_sections, dim=0):
    """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or of the listed sizes (torch.split)."""
    x = _input(input, "split")
    d = _dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (builtins.int, np.integer)):
        s = builtins.int(split_size_or_sections)
        sizes = [builtins.min(s, n - i) for i in range(0, n, s)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split(): split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {d}), but got split_sizes={sizes}")
    edges = np.cumsum([0] + sizes)
    return tuple(x[(slice(None),) * d + (slice(int(a), int(b)),)] for a, b in zip(edges[:-1], edges[1:]))


def unbind(input, dim=0):
    """The slices along ``dim``, as a tuple (torch.unbind)."""
    x = _input(input, "unbind")
    d = _dim(dim, x.ndim, "unbind")
    return tuple(x[(slice(None),) * d + (i,)] for i in range(x.shape[d]))


def expand(self, *sizes):
    """A broadcast of the tensor to ``sizes`` (-1 keeps a dim) (Tensor.expand); the gradient sums back."""
    sizes = _size_args(sizes, "expand")
    if len(sizes) < self.ndim:
        raise RuntimeError(f"expand(): the number of sizes provided ({len(sizes)}) must be greater or equal to "
                           f"the number of dimensions in the tensor ({self.ndim})")
    lead = len(sizes) - self.ndim
    shape = tuple(self.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    xp = _xp(self)
    try:
        y = xp.broadcast_to(self.data, shape)
    except ValueError:
        raise RuntimeError(f"expand(): the expanded size {list(sizes)} does not match the existing size "
                           f"{list(self.shape)}") from None
    return _make(y, (self,), lambda g: (_unbroadcast(g, self.shape),), "expand")


def expand_as(self, other):
    return expand(self, other.shape)


def repeat(self, *sizes):
    """The tensor tiled ``sizes`` times along each dim (Tensor.repeat, numpy.tile)."""
    sizes = _size_args(sizes, "repeat")
    if len(sizes) < self.ndim:
        raise RuntimeError("repeat(): number of dimensions of repeat dims can not be smaller than the number of "
                           "dimensions of tensor")
    xp = _xp(self)
    shape = (1,) * (len(sizes) - self.ndim) + self.shape
    y = xp.tile(self.data.reshape(shape), sizes)

    def backward(g):
        split_shape = [v for r, n in zip(sizes, shape) for v in (r, n)]
        return (g.reshape(split_shape).sum(axis=tuple(range(0, 2 * len(sizes), 2))).reshape(self.shape),)
    return _make(y, (self,), backward, "repeat")


# ---------------------------------------------------------------- indexing ----

def _index(x: Tensor, index):
    """``index`` in the form the array module takes, checked against ``x``'s shape as torch checks
    it (IndexError naming the index, dim and size; CuPy would wrap an out-of-bounds index
    silently). Returns (index, basic): ``basic`` when no element can be picked twice (no
    integer arrays), so the backward can assign instead of accumulating."""
    items = []
    for it in (index if isinstance(index, tuple) else (index,)):
        if isinstance(it, Tensor):
            it = it.data
        elif isinstance(it, list):
            it = np.asarray(it, dtype=np.int64 if not it else None)
        if isinstance(it, np.ndarray) or backend.is_cupy_array(it):
            if it.dtype.kind not in "biu":
                raise IndexError(f"getitem: tensors used as indices must be long, int, byte or bool tensors, "
                                 f"got dtype {it.dtype}")
            if backend.is_cupy_array(it) != backend.is_cupy_array(x.data):
                it = backend.to_device(backend.to_numpy(it), x.device.type)
        elif not (it is None or it is Ellipsis or isinstance(it, (slice, builtins.int, np.integer))):
            raise IndexError(f"getitem: only integers, slices, None, Ellipsis, and integer or boolean "
                             f"tensors are valid indices, got {type(it).__name__}")
        items.append(it)

    def width(it):        # how many of x's dims an index entry consumes
        if it is None or it is Ellipsis or isinstance(it, builtins.bool):
            return 0
        return it.ndim if getattr(it, "dtype", None) == np.bool_ else 1
    used = builtins.sum(width(it) for it in items)
    if used > x.ndim:
        raise IndexError(f"getitem: too many indices for tensor of dimension {x.ndim}")
    dim, basic = 0, True
    for k, it in enumerate(items):
        if it is Ellipsis:
            dim += x.ndim - used
        elif getattr(it, "dtype", None) == np.bool_:
            if tuple(it.shape) != tuple(x.shape[dim:dim + it.ndim]):
                raise IndexError(f"getitem: the shape of the mask {list(it.shape)} at index {dim} does not match "
                                 f"the shape of the indexed tensor {list(x.shape[dim:dim + it.ndim])}")
            dim += it.ndim
        elif width(it):
            n = x.shape[dim]
            if isinstance(it, slice):
                pass
            elif isinstance(it, (builtins.int, np.integer)):
                if not -n <= it < n:
                    raise IndexError(f"getitem: index {it} is out of bounds for dimension {dim} with size {n}")
                items[k] = builtins.int(it)
            else:
                basic = False
                if it.size:
                    lo, hi = builtins.int(it.min()), builtins.int(it.max())
                    if hi >= n or lo < -n:
                        bad = hi if hi >= n else lo
                        raise IndexError(f"getitem: index {bad} is out of bounds for dimension {dim} with size {n}")
            dim += 1
    return (tuple(items) if isinstance(index, tuple) else items[0]), basic


def getitem(self, index):
    """self[index] (torch's indexing: ints, slices, None, Ellipsis, integer arrays, lists or
    tensors, boolean masks). The gradient scatters back; an element picked twice by integer
    arrays receives the sum of its gradients."""
    x = self
    index, basic = _index(x, index)
    xp = _xp(x)

    def backward(g):
        out = xp.zeros_like(x.data)
        if basic:
            out[index] = g
        else:
            xp.add.at(out, index, g)
        return (out,)
    data = x.data[index]
    if basic and not (isinstance(data, np.ndarray) or backend.is_cupy_array(data)):
        # NumPy gives a scalar for one element: index with a trailing Ellipsis for a 0-d *view*,
        # so x[0].add_(1) (under no_grad) writes into x, as in torch
        data = x.data[(index if isinstance(index, tuple) else (index,)) + (Ellipsis,)]
    return _make(_arr(data, xp), (x,), backward, "getitem")


def setitem(self, index, value):
    """self[index] = value, in place (see the module docstring for the in-place rule)."""
    _check_inplace(self, "setitem", value)
    index, _ = _index(self, index)
    v = _array(value, self, "setitem")
    if self.dtype.kind in "biu" and _is_float(v):
        raise RuntimeError(f"setitem: a float value cannot be written into a tensor of dtype {self.dtype}")
    self.data[index] = v


# ------------------------------------------------------------------ sorting ----

def _argsort(xp, a, axis, descending):
    if descending:
        a = -(a.astype(np.int64) if a.dtype.kind in "bu" else a)
    return xp.argsort(a, axis=axis, kind="stable") if xp is np else xp.argsort(a, axis=axis)


def sort(input, dim=-1, descending=False, stable=False):
    """The elements sorted along ``dim``, as the pair (values, indices) (torch.sort); tinytl's
    sort is always stable (equal elements keep their order). The gradient goes back to where
    each value came from."""
    x = _input(input, "sort")
    if x.ndim == 0:
        return return_types.sort(x * 1 if x.requires_grad else x, _no_grad_out(_xp(x).zeros((), np.int64)))
    d, xp = _dim(dim, x.ndim, "sort"), _xp(x)
    order = _argsort(xp, x.data, d, descending)
    inv = xp.argsort(order, axis=d)
    values = _make(xp.take_along_axis(x.data, order, axis=d), (x,),
                   lambda g: (xp.take_along_axis(g, inv, axis=d),), "sort")
    return return_types.sort(values, _no_grad_out(order.astype(np.int64)))


def argsort(input, dim=-1, descending=False, stable=False):
    """The indices that sort ``input`` along ``dim`` (torch.argsort); stable."""
    return sort(input, dim, descending, stable).indices


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (or smallest) elements along ``dim`` and their indices (torch.topk),
    in sorted order. The gradient goes back to where each value came from."""
    x = _input(input, "topk")
    d = _dim(dim, x.ndim, "topk")
    n = x.shape[d] if x.ndim else 1
    if isinstance(k, builtins.bool) or not isinstance(k, (builtins.int, np.integer)) or not 0 <= k <= n:
        raise RuntimeError(f"topk(): k ({k}) must be an integer in [0, {n}], the size of dimension {d}")
    xp = _xp(x)
    if x.ndim == 0:
        return return_types.topk(x * 1 if x.requires_grad else x, _no_grad_out(xp.zeros((), np.int64)))
    order = _argsort(xp, x.data, d, largest)
    inv = xp.argsort(order, axis=d)
    take = (slice(None),) * d + (slice(0, builtins.int(k)),)
    idx = order[take]

    def backward(g):
        pad = list(x.shape)
        pad[d] = n - k
        full = xp.concatenate([g, xp.zeros(pad, g.dtype)], axis=d)
        return (xp.take_along_axis(full, inv, axis=d),)
    values = _make(xp.take_along_axis(x.data, idx, axis=d), (x,), backward, "topk")
    return return_types.topk(values, _no_grad_out(idx.astype(np.int64)))


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct elements, sorted (torch.unique; sorted=False sorts too, as torch on the CPU),
    with the inverse indices (shaped as ``input``) and the counts when asked. No gradient."""
    x = _input(input, "unique")
    xp = _xp(x)
    if dim is None:
        res = xp.unique(x.data.reshape(-1), return_inverse=return_inverse, return_counts=return_counts)
    else:
        res = xp.unique(x.data, axis=_dim(dim, x.ndim, "unique"), return_inverse=return_inverse,
                        return_counts=return_counts)
    if not (return_inverse or return_counts):
        return _no_grad_out(res)
    res = list(res)
    if return_inverse:
        res[1] = res[1].reshape(x.shape if dim is None else (x.shape[_dim(dim, x.ndim, "unique")],))
    return tuple(_no_grad_out(r.astype(np.int64) if i else r) for i, r in enumerate(res))


# ---------------------------------------------------------------- in place ----

def _check_inplace(t: Tensor, fn: str, other=None):
    """The in-place rule (module docstring): refuse while grad mode is on and a gradient is involved."""
    if not _grad_mode.enabled:
        return
    if t.requires_grad:
        if t.is_leaf:
            raise RuntimeError(f"{fn}: a leaf Variable that requires grad is being used in an in-place operation.")
        raise RuntimeError(f"{fn}: in-place operation on a tensor that requires grad (it is part of a graph); "
                           f"tinytl refuses these while grad mode is on: use the out-of-place form "
                           f"(x = x + y), or run it under tl.no_grad()")
    if isinstance(other, Tensor) and other.requires_grad:
        raise RuntimeError(f"{fn}: in-place operation with an operand that requires grad: tinytl does not record "
                           f"in-place operations in the graph; use the out-of-place form (x = x + y)")


def _is_float(v):
    return isinstance(v, (builtins.float, np.floating)) or getattr(getattr(v, "dtype", None), "kind", "") == "f"


def _write(self: Tensor, fn: str, value):
    """Write ``value`` (an array or number of self's shape after broadcasting) into self's array."""
    if self.dtype.kind in "biu" and _is_float(value):
        raise RuntimeError(f"{fn}: result type Float can't be cast to the desired output type {self.dtype}")
    shape = tuple(getattr(value, "shape", ()))
    if shape != tuple(self.shape):
        try:
            full = np.broadcast_shapes(shape, tuple(self.shape))
        except ValueError:
            raise RuntimeError(f"{fn}: the shape {list(shape)} cannot be broadcast to the tensor's shape "
                               f"{list(self.shape)}") from None
        if full != tuple(self.shape):
            raise RuntimeError(f"{fn}: output with shape {list(self.shape)} doesn't match the broadcast shape "
                               f"{list(full)}")
    if not isinstance(self.data, np.ndarray) and not backend.is_cupy_array(self.data):
        self.data = np.array(self.data)         # a NumPy scalar (a reduction's result) has no memory to write
    self.data[...] = value


def _inplace(fn, ufunc):
    def method(self, other, *, alpha=None):
        _check_inplace(self, fn, other)
        xp = _xp(self)
        o = _array(other, self, fn)
        if alpha is not None:
            o = o * alpha
        with np.errstate(divide="ignore", invalid="ignore"):
            _write(self, fn, getattr(xp, ufunc)(self.data, o))
        return self
    method.__name__ = fn
    method.__doc__ = f"In place: self = self {ufunc} other (Tensor.{fn}); returns self. See the in-place rule above."
    return method


add_ = _inplace("add_", "add")
sub_ = _inplace("sub_", "subtract")
mul_ = _inplace("mul_", "multiply")
div_ = _inplace("div_", "true_divide")


def _augmented(fn, inplace, out_of_place):
    """``x += y``: in place, unless grad mode records a gradient through it (then x = x + y)."""
    def method(self, other):
        """In place (every alias sees it), as torch; while grad mode is on and self or other
        requires grad: a RuntimeError on a leaf (torch's message), else recorded as
        ``x = x op other``, a new graph node (other references keep the old tensor)."""
        if _grad_mode.enabled and (self.requires_grad or (isinstance(other, Tensor) and other.requires_grad)):
            if self.requires_grad and self.is_leaf:
                raise RuntimeError(f"{fn}: a leaf Variable that requires grad is being used in an in-place "
                                   f"operation.")
            return out_of_place(self, other)
        return inplace(self, other)
    method.__name__ = fn
    return method


def copy_(self, src):
    """Copy ``src``'s values into self (broadcasting, cast to self's dtype) (Tensor.copy_)."""
    _check_inplace(self, "copy_", src)
    v = src.data if isinstance(src, Tensor) else src
    if isinstance(src, Tensor) and src.device.type != self.device.type:
        v = backend.to_device(v, self.device.type)
    elif not isinstance(src, Tensor):
        v = _array(src, self, "copy_")
    v = v.astype(self.dtype) if hasattr(v, "astype") else v
    _write(self, "copy_", v)
    return self


def fill_(self, value):
    """Set every element to ``value`` (Tensor.fill_)."""
    _check_inplace(self, "fill_", value)
    _write(self, "fill_", value.data.astype(self.dtype) if isinstance(value, Tensor) else value)
    return self


def zero_(self):
    """Set every element to 0 (Tensor.zero_)."""
    return fill_(self, 0)


def clamp_(self, min=None, max=None):
    """clamp in place (Tensor.clamp_)."""
    _check_inplace(self, "clamp_")
    from .tensor import no_grad
    with no_grad():
        y = clamp(self, min, max)
    _write(self, "clamp_", y.data)
    return self


def requires_grad_(self, requires_grad=True):
    """Set requires_grad in place and return self (Tensor.requires_grad_)."""
    if not requires_grad and not self.is_leaf:
        raise RuntimeError("requires_grad_(): you can only change requires_grad flags of leaf variables.")
    if requires_grad and self.dtype.kind != "f":
        raise RuntimeError(f"requires_grad_(): only Tensors of floating point dtype can require gradients, "
                           f"got {self.dtype}")
    self.requires_grad = builtins.bool(requires_grad)
    return self


# -------------------------------------------------------------- conversions ----

def _cast(x: Tensor, dtype) -> Tensor:
    """x in ``dtype``; differentiable between float dtypes (the gradient is cast back)."""
    if x.dtype == dtype:
        return x
    y = x.data.astype(dtype)
    if dtype.kind != "f" or x.dtype.kind != "f":
        return _no_grad_out(y)
    return _make(y, (x,), lambda g: (g.astype(x.dtype),), "to")


def to(self, *args, **kwargs):
    """torch's ``Tensor.to``: ``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)``
    (other's device and dtype), with keywords ``device=``, ``dtype=``, ``non_blocking=`` (ignored),
    ``copy=``. Returns self when nothing changes (unless copy=True); differentiable."""
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to(): unexpected keyword argument(s) {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, (str, builtins.int)) and not isinstance(a, builtins.bool):
            device = a
        elif dtypes.is_dtype(a):
            dtype = a
        elif a is not None:
            raise TypeError(f"to(): expected a device, a dtype or a Tensor, got {type(a).__name__}")
    out = self
    if device is not None:
        dev = backend.check_device(_device.device(device) if isinstance(device, builtins.int) else device)
        if dev != self.device.type:
            src = self.device.type
            out = _make(backend.to_device(self.data, dev), (self,), lambda g: (backend.to_device(g, src),), "to")
    if dtype is not None:
        out = _cast(out, dtypes.as_dtype(dtype, "to()"))
    if copy and out is self:
        out = clone(self)
    return out


def _caster(dtype, name):
    def method(self):
        return _cast(self, dtype)
    method.__name__ = name
    method.__doc__ = f"self.to({dtypes.name(dtype)}) (Tensor.{name})."
    return method


def type_(self, dtype=None, non_blocking=False):
    """Tensor.type: without an argument, the type's name ('tinytl.FloatTensor', or
    'tinytl.cuda.FloatTensor' on a GPU; torch says 'torch.FloatTensor'); with a dtype (or
    such a name, 'torch.' or 'tinytl.'), the tensor cast to it."""
    if dtype is None:
        gpu = ".cuda" if self.device.type == "cuda" else ""
        return f"tinytl{gpu}.{dtypes._TYPE_NAMES.get(self.dtype, str(self.dtype))}"
    if isinstance(dtype, str):
        name = dtype.rsplit(".", 1)[-1]
        match = [d for d, n in dtypes._TYPE_NAMES.items() if n == name]
        if not match:
            raise ValueError(f"type(): invalid type {dtype!r}")
        out = _cast(self, match[0])
        return out.to("cuda") if ".cuda." in dtype else out
    return _cast(self, dtypes.as_dtype(dtype, "type()"))


def clone(input):
    """A copy of the data, still in the graph (torch.clone): the gradient passes through."""
    x = _input(input, "clone")
    return _make(x.data.copy(), (x,), lambda g: (g,), "clone")


def contiguous(self):
    """Tensor.contiguous: self when its data is C-contiguous, else a C-ordered copy
    (differentiable), so writing into the result never writes into the original."""
    if self.data.flags.c_contiguous:
        return self
    xp = _xp(self)
    return _make(xp.ascontiguousarray(self.data), (self,), lambda g: (g,), "contiguous")


def is_floating_point(self) -> builtins.bool:
    return self.dtype.kind == "f"


def is_tensor(obj) -> builtins.bool:
    """True for a tinytl Tensor (torch.is_tensor)."""
    return isinstance(obj, Tensor)


# ---------------------------------------------------------- Python protocols ----

def _one(self, what):
    if self.data.size != 1:
        raise ValueError(f"{what}: only one element tensors can be converted to Python scalars "
                         f"(got shape {self.shape})")
    return self.data.reshape(()).item()


def _bool(self):
    if self.data.size != 1:
        raise RuntimeError(f"Boolean value of Tensor with {'no values' if self.data.size == 0 else 'more than one value'}"
                           f" is ambiguous")
    return builtins.bool(self.data.reshape(()).item())


def _index_protocol(self):
    if self.dtype.kind not in "iu" or self.data.size != 1:
        raise TypeError("only integer tensors of a single element can be converted to an index")
    return builtins.int(self.data.reshape(()).item())


def _format(self, spec):
    """f"{loss:.4f}": a 0-d tensor formats as its value (as torch); others as their repr."""
    if self.ndim == 0:
        return format(self.data.item(), spec)
    return object.__format__(self, spec)


def _iter(self):
    if self.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return (self[i] for i in range(self.shape[0]))


def _len(self):
    if self.ndim == 0:
        raise TypeError("len() of a 0-d tensor")
    return self.shape[0]


def _deepcopy(self, memo):
    """A deep copy of a graph leaf: its data, requires_grad and grad copied; a Parameter stays one."""
    if not self.is_leaf:
        raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                           "protocol at the moment. If you were attempting to deepcopy a module, this may be "
                           "because of a torch.nn.utils.weight_norm usage, see "
                           "https://github.com/pytorch/pytorch/pull/103001")
    if id(self) in memo:
        return memo[id(self)]
    new = type(self).__new__(type(self))
    for cls in type(self).__mro__:           # every slot, through its descriptor (Parameter has properties)
        for s in getattr(cls, "__slots__", ()):
            slot = cls.__dict__.get(s)
            if s == "__weakref__" or slot is None:
                continue
            try:
                v = slot.__get__(self)
            except AttributeError:
                continue
            slot.__set__(new, _copy.deepcopy(v, memo) if s in ("data", "grad") else v)
    memo[id(self)] = new
    return new


# ------------------------------------------------- attached to Tensor here ----

_methods = {
    # arithmetic (add, sub, mul, div, neg, matmul: tensor.py)
    "add": add_op, "sub": sub_op, "subtract": sub_op,
    "mul": mul, "multiply": mul, "div": div, "divide": div, "true_divide": div, "neg": neg, "negative": neg,
    "matmul": matmul, "mm": mm,
    "__pow__": pow, "__rpow__": _rpow, "pow": pow, "__abs__": abs, "__pos__": lambda self: self,
    "abs": abs, "exp": exp, "log": log, "sqrt": sqrt, "tanh": tanh, "sigmoid": sigmoid, "sign": sign,
    "clamp": clamp, "clip": clamp, "maximum": maximum, "minimum": minimum,
    # comparisons and logic
    "__eq__": eq, "__ne__": ne, "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
    "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
    "__and__": _logical("logical_and", "bitwise_and"), "__or__": _logical("logical_or", "bitwise_or"),
    "__xor__": _logical("logical_xor", "bitwise_xor"), "__invert__": _invert, "logical_not": logical_not,
    "isnan": isnan, "isfinite": isfinite, "all": all, "any": any, "allclose": allclose, "equal": equal,
    # reductions
    "sum": sum, "mean": mean, "var": var, "std": std, "max": max, "min": min, "amax": amax, "amin": amin,
    "argmax": argmax, "argmin": argmin, "logsumexp": logsumexp, "norm": norm,
    # shapes
    "reshape": reshape, "view": view, "view_as": view_as, "reshape_as": reshape_as, "flatten": flatten,
    "unflatten": unflatten, "unsqueeze": unsqueeze, "squeeze": squeeze, "permute": permute,
    "transpose": transpose, "swapaxes": transpose, "t": t, "T": property(_reverse_dims), "size": size,
    "dim": lambda self: self.ndim, "ndimension": lambda self: self.ndim, "numel": numel, "nelement": numel,
    "chunk": chunk, "split": split, "unbind": unbind, "expand": expand, "expand_as": expand_as, "repeat": repeat,
    "__getitem__": getitem, "__setitem__": setitem,
    # sorting
    "sort": sort, "argsort": argsort, "topk": topk, "unique": unique,
    # in place
    "add_": add_, "sub_": sub_, "mul_": mul_, "div_": div_, "copy_": copy_, "fill_": fill_, "zero_": zero_,
    "clamp_": clamp_, "clip_": clamp_, "requires_grad_": requires_grad_,
    "__iadd__": _augmented("+=", add_, add), "__isub__": _augmented("-=", sub_, sub),
    "__imul__": _augmented("*=", mul_, mul), "__itruediv__": _augmented("/=", div_, div),
    # conversions
    "to": to, "type": type_, "clone": clone, "contiguous": contiguous, "is_floating_point": is_floating_point,
    "float": _caster(dtypes.float32, "float"), "double": _caster(dtypes.float64, "double"),
    "half": _caster(dtypes.float16, "half"), "long": _caster(dtypes.int64, "long"),
    "int": _caster(dtypes.int32, "int"), "bool": _caster(dtypes.bool, "bool"),
    "byte": _caster(dtypes.uint8, "byte"), "short": _caster(dtypes.int16, "short"),
    "cpu": lambda self: to(self, "cpu"), "cuda": lambda self, device=None, non_blocking=False: to(self, "cuda"),
    "__repr__": lambda self: _printing().format_tensor(self),
    # Python protocols
    "__float__": lambda self: builtins.float(_one(self, "float()")),
    "__int__": lambda self: builtins.int(_one(self, "int()")),
    "__bool__": _bool, "__index__": _index_protocol, "__format__": _format, "__iter__": _iter, "__len__": _len,
    "__deepcopy__": _deepcopy, "__hash__": object.__hash__,
}


def _printing():
    from . import _printing as p
    return p


for _name, _fn in _methods.items():
    setattr(Tensor, _name, _fn)
