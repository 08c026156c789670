"""``tl.nn.functional``: the differentiable ops of ``torch.nn.functional``, same names.

``linear``, ``relu``, ``cross_entropy`` and ``mse_loss`` live in ``tinytl/functional.py``
(the first wave's fused ops) and are re-exported here. The rest are written here in
the same form: the forward with the array module (``xp``: NumPy or CuPy), then a
backward closure beside it, recorded as ONE graph node per call by ``_make``. A layer
therefore costs one node, not a chain of small ones, and its backward is the
closed-form derivative (e.g. LayerNorm's), not an autograd of its pieces.

Sections: activations (softmax, log_softmax, gelu, silu, leaky_relu), dropout,
normalization (layer_norm, batch_norm), losses (nll_loss, binary_cross_entropy,
binary_cross_entropy_with_logits, l1_loss, smooth_l1_loss, huber_loss, kl_div).

Read next: ``tinytl/nn/activation.py``, ``normalization.py``, ``losses.py``.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import backend
from .._random import generator as _generator
from ..functional import (_check_reduction, _legacy_reduction, _loss_backward, _same_device, _seed, _tensor,
                          cross_entropy, linear, mse_loss, relu)
from ..ops import sigmoid, tanh  # noqa: F401 (torch.nn.functional has them too)
from ..tensor import Tensor, _make

__all__ = ["linear", "relu", "tanh", "sigmoid", "cross_entropy", "mse_loss", "softmax", "log_softmax", "gelu", "silu",
           "leaky_relu", "dropout", "layer_norm", "batch_norm", "nll_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "erf",
           "grad_reverse"]


def _dim(dim, ndim: int, fn: str) -> int:
    """``dim`` as a non-negative axis; IndexError as torch's when out of range."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{fn}: dim must be an int, got {type(dim).__name__}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{fn}: dim {dim} is out of range for a {ndim}-D input "
                         f"(expected to be in range of [{-n}, {n - 1}])")
    return int(dim) % n


def _float_input(x, fn: str) -> Tensor:
    x = _tensor(x, f"{fn}: input")
    if x.dtype.kind != "f":
        raise TypeError(f"{fn}: input must be a floating-point tensor, got dtype {x.dtype}")
    return x


# ------------------------------------------------------------ activations ----

def _softmax_dim(dim, ndim, fn):
    if dim is None:   # torch's legacy rule, with its warning
        warnings.warn(f"Implicit dimension choice for {fn} has been deprecated. "
                      "Change the call to include dim=X as an argument.", UserWarning, stacklevel=3)
        dim = 0 if ndim in (0, 1, 3) else 1
    return _dim(dim, ndim, fn)


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along ``dim``.

    Backward: dx = y * (g - sum(g * y, dim)). As ``torch.nn.functional.softmax``
    (``dtype`` casts the input first)."""
    x = _float_input(input, "softmax")
    if dtype is not None:
        x = _cast(x, dtype)
    ax = _softmax_dim(dim, x.ndim, "softmax")
    xp = backend.get_array_module(x.data)
    if x.ndim == 0:
        y = xp.ones_like(x.data)
    else:
        e = xp.exp(x.data - x.data.max(axis=ax, keepdims=True))
        y = e / e.sum(axis=ax, keepdims=True)

    def backward(g):
        if x.ndim == 0:
            return (xp.zeros_like(g),)
        return (y * (g - (g * y).sum(axis=ax, keepdims=True)),)
    return _make(y, (x,), backward, "softmax")


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m), m = max x (stable) along ``dim``.

    Backward: dx = g - softmax(x) * sum(g, dim). As ``torch.nn.functional.log_softmax``."""
    x = _float_input(input, "log_softmax")
    if dtype is not None:
        x = _cast(x, dtype)
    ax = _softmax_dim(dim, x.ndim, "log_softmax")
    xp = backend.get_array_module(x.data)
    if x.ndim == 0:
        y = xp.zeros_like(x.data)
    else:
        shifted = x.data - x.data.max(axis=ax, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=ax, keepdims=True))

    def backward(g):
        if x.ndim == 0:
            return (xp.zeros_like(g),)
        return (g - xp.exp(y) * g.sum(axis=ax, keepdims=True),)
    return _make(y, (x,), backward, "log_softmax")


def _cast(x: Tensor, dtype) -> Tensor:
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    old = x.dtype
    return _make(x.data.astype(dtype), (x,), lambda g: (g.astype(old),), "cast")


# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
# (1969), 631-638: the coefficients of SPECFUN's CALERF, in three ranges of |x|.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRT_1_PI = 5.6418958354775628695e-1


def _erfc_abs(y, xp):
    """erfc(y) for y = |x| >= 0.46875 (Cody's second and third ranges), float64 arrays."""
    mid = xp.clip(y, 0.46875, 4.0)
    num, den = _ERF_C[8] * mid, mid
    for i in range(7):
        num, den = (num + _ERF_C[i]) * mid, (den + _ERF_D[i]) * mid
    r_mid = (num + _ERF_C[7]) / (den + _ERF_D[7])
    far = xp.clip(y, 4.0, 27.0)
    z = 1.0 / (far * far)
    num, den = _ERF_P[5] * z, z
    for i in range(4):
        num, den = (num + _ERF_P[i]) * z, (den + _ERF_Q[i]) * z
    r_far = (_SQRT_1_PI - z * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / far
    r = xp.where(y <= 4.0, r_mid, r_far)
    # exp(-y^2) as exp(-s^2) * exp(-(y - s)(y + s)), s = y rounded down to 1/16: no error
    # from rounding y^2 (Cody's trick)
    s = xp.floor(y * 16.0) / 16.0
    return xp.where(y < 27.0, xp.exp(-s * s) * xp.exp(-(y - s) * (y + s)) * r, 0.0)


def _erf_parts(x, xp):
    """(erf(x), erfc(x)) of an array, computed in float64 (Cody 1969, three ranges)."""
    x = x.astype(np.float64)
    y = xp.abs(x)
    small = xp.minimum(y, 0.46875)
    t = small * small
    num, den = _ERF_A[4] * t, t
    for i in range(3):
        num, den = (num + _ERF_A[i]) * t, (den + _ERF_B[i]) * t
    erf_small = x * (num + _ERF_A[3]) / (den + _ERF_B[3])
    ec = _erfc_abs(y, xp)                 # erfc(|x|) for |x| > 0.46875
    is_small = y <= 0.46875
    erf = xp.where(is_small, erf_small, xp.where(x < 0, ec - 1.0, 1.0 - ec))
    erfc = xp.where(is_small, 1.0 - erf_small, xp.where(x < 0, 2.0 - ec, ec))
    return erf, erfc


def erf(input) -> Tensor:
    """The error function erf(x) = 2/sqrt(pi) int_0^x exp(-t^2) dt, elementwise, without SciPy.

    Cody's rational Chebyshev approximations (1969), evaluated in float64 whatever the
    input's dtype; measured against ``math.erf`` over 2e5 points in [-8, 8]: at most
    2.3e-16 relative error in float64 (1 ulp), and exactly rounded float32 results
    except at 1-ulp ties. Backward: 2/sqrt(pi) exp(-x^2)."""
    x = _float_input(input, "erf")
    xp = backend.get_array_module(x.data)
    y = _erf_parts(x.data, xp)[0].astype(x.dtype)
    return _make(y, (x,), lambda g: (g * (2.0 * _SQRT_1_PI) * xp.exp(-x.data * x.data),), "erf")


_SQRT_2_PI = math.sqrt(2.0 / math.pi)


def gelu(input, approximate: str = "none") -> Tensor:
    """GELU(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); with approximate="tanh",
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). As ``torch.nn.functional.gelu``.

    The exact form is x erfc(-x / sqrt 2) / 2 with Cody's erfc (float64 inside, so
    float32 outputs are correctly rounded): unlike 1 + erf(x / sqrt 2), it keeps its
    relative accuracy in the far negative tail (torch's float64 gelu, which uses 1 + erf,
    loses it there: at x = -8 the two differ by 2e-16 absolute, 2% relative).
    Backward: Phi(x) + x phi(x) (exact); the derivative of the tanh form (tanh)."""
    x = _float_input(input, "gelu")
    xp = backend.get_array_module(x.data)
    X = x.data
    if approximate == "none":
        X64 = X.astype(np.float64)
        cdf64 = 0.5 * _erf_parts(X64 * (-1.0 / math.sqrt(2.0)), xp)[1]      # Phi(x) = erfc(-x / sqrt 2) / 2
        y = (X64 * cdf64).astype(X.dtype)                                   # one rounding in float32
        cdf = cdf64.astype(X.dtype)

        def backward(g):
            pdf = xp.exp(-0.5 * X * X) * (1.0 / math.sqrt(2.0 * math.pi))
            return (g * (cdf + X * pdf),)
    elif approximate == "tanh":
        k = 0.044715
        t = xp.tanh(_SQRT_2_PI * (X + k * X * X * X))
        y = 0.5 * X * (1.0 + t)

        def backward(g):
            return (g * (0.5 * (1.0 + t) + 0.5 * X * (1.0 - t * t) * _SQRT_2_PI * (1.0 + 3.0 * k * X * X)),)
    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _make(y, (x,), backward, "gelu")


def _sigmoid(X, xp):
    """1 / (1 + exp(-x)) without overflow for large |x|."""
    e = xp.exp(-xp.abs(X))
    return xp.where(X >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(X.dtype)


def silu(input, inplace: bool = False) -> Tensor:
    """SiLU(x) = x * sigmoid(x) (swish). Backward: s (1 + x (1 - s)), s = sigmoid(x).
    As ``torch.nn.functional.silu`` (``inplace`` is accepted; the result is a new tensor)."""
    x = _float_input(input, "silu")
    xp = backend.get_array_module(x.data)
    s = _sigmoid(x.data, xp)
    return _make(x.data * s, (x,), lambda g: (g * (s * (1.0 + x.data * (1.0 - s))),), "silu")


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x where x > 0, else negative_slope * x. Backward: 1 or negative_slope.
    As ``torch.nn.functional.leaky_relu`` (``inplace`` accepted; the result is a new tensor)."""
    x = _float_input(input, "leaky_relu")
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {type(negative_slope).__name__}")
    xp = backend.get_array_module(x.data)
    pos = x.data > 0
    y = xp.where(pos, x.data, x.data * negative_slope)
    return _make(y, (x,), lambda g: (xp.where(pos, g, g * negative_slope),), "leaky_relu")


# ---------------------------------------------------------------- dropout ----

def _check_p(p, fn: str) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{fn}: dropout probability has to be between 0 and 1, but got p={p!r}")
    return float(p)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (inverted
    dropout: the expectation is unchanged, so eval needs no rescaling); identity when
    ``training`` is False or p == 0, all zeros when p == 1. As ``torch.nn.functional.dropout``.

    The mask is drawn from tinytl's global generator (``tl.manual_seed`` reproduces it),
    on the CPU, and moved to the input's device. Backward: g * mask / (1 - p).
    ``inplace`` is accepted for torch's signature; the result is a new tensor."""
    p = _check_p(p, "dropout")
    x = _float_input(input, "dropout")
    if not training or p == 0.0:
        return x
    xp = backend.get_array_module(x.data)
    if p == 1.0:
        scaled = xp.zeros_like(x.data)
    else:
        keep = _generator().random(x.shape) >= p          # kept with probability 1 - p
        scaled = backend.to_device(keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p)), x.device)
    return _make(x.data * scaled, (x,), lambda g: (g * scaled,), "dropout")


# ---------------------------------------------------------- normalization ----

def _norm_backward(g, xhat, inv_std, axes, count):
    """d/dx of xhat = (x - mean) * inv_std, the statistics taken over ``axes`` (count
    elements): inv_std * (g - mean(g) - xhat * mean(g * xhat))."""
    mg = g.sum(axis=axes, keepdims=True) / count
    mgx = (g * xhat).sum(axis=axes, keepdims=True) / count
    return inv_std * (g - mg - xhat * mgx)


def _affine(op, x, xhat, weight, bias, param_shape, sum_axes, inv_std, norm_axes, count):
    """y = xhat * weight + bias, recorded with the backward of the whole normalisation as
    one node. ``norm_axes`` None means the statistics were constants (BatchNorm in eval)."""
    w = None if weight is None else weight.data.reshape(param_shape)
    y = xhat if w is None else xhat * w
    if bias is not None:
        y = y + bias.data.reshape(param_shape)
    parents = tuple(t for t in (x, weight, bias) if t is not None)

    def backward(g):
        grads = [None]
        if x.requires_grad:
            gxhat = g if w is None else g * w
            grads[0] = (gxhat * inv_std if norm_axes is None
                        else _norm_backward(gxhat, xhat, inv_std, norm_axes, count))
        if weight is not None:
            grads.append((g * xhat).sum(axis=sum_axes).reshape(weight.shape) if weight.requires_grad else None)
        if bias is not None:
            grads.append(g.sum(axis=sum_axes).reshape(bias.shape) if bias.requires_grad else None)
        return tuple(grads)
    return _make(y, parents, backward, op)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5, name: str = "layer_norm") -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dimensions:
    y = (x - mean) / sqrt(var + eps) * weight + bias, var biased (divided by the count).
    As ``torch.nn.functional.layer_norm``. One graph node; backward in closed form."""
    x = _float_input(input, name)
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(int(n) for n in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k:]) != normalized_shape:
        raise ValueError(f"{name}: normalized_shape={list(normalized_shape)} expects an input of shape "
                         f"[*, {', '.join(map(str, normalized_shape))}], got {list(x.shape)}")
    for t, what in ((weight, "weight"), (bias, "bias")):
        if t is not None and tuple(t.shape) != normalized_shape:
            raise ValueError(f"{name}: {what} must have shape {normalized_shape}, got {tuple(t.shape)}")
    _same_device(name, x, weight, bias)
    xp = backend.get_array_module(x.data)
    axes = tuple(range(x.ndim - k, x.ndim))
    count = int(np.prod(normalized_shape))
    mu = x.data.mean(axis=axes, keepdims=True)
    xc = x.data - mu
    var = (xc * xc).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = xc * inv_std
    sum_axes = tuple(range(x.ndim - k))
    return _affine(name, x, xhat, weight, bias, normalized_shape, sum_axes, inv_std, axes, count)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, name: str = "batch_norm") -> Tensor:
    """Batch normalisation over the channel dimension 1 of an (N, C) or (N, C, L) input.

    training: statistics of this batch (mean, biased variance over N and L) normalise it;
    the running ones, when given, are updated in place:
    running = (1 - momentum) * running + momentum * batch (running_var takes the unbiased
    batch variance, times n / (n - 1)). Not training: the running statistics normalise.
    As ``torch.nn.functional.batch_norm``. One graph node; backward in closed form."""
    x = _float_input(input, name)
    if x.ndim < 2:
        raise ValueError(f"{name}: expected an input of shape (N, C) or (N, C, L), got {tuple(x.shape)}")
    C = x.shape[1]
    for t, what in ((running_mean, "running_mean"), (running_var, "running_var"), (weight, "weight"),
                    (bias, "bias")):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"{name}: {what} must have shape ({C},) for an input of {C} channels, "
                             f"got {tuple(t.shape)}")
    _same_device(name, x, running_mean, running_var, weight, bias)
    xp = backend.get_array_module(x.data)
    axes = (0,) + tuple(range(2, x.ndim))
    pshape = (1, C) + (1,) * (x.ndim - 2)
    count = x.data.size // max(C, 1)
    if training:
        if count <= 1:
            raise ValueError(f"{name}: expected more than 1 value per channel when training, got input of "
                             f"shape {tuple(x.shape)}")
        mu = x.data.mean(axis=axes, keepdims=True)
        xc = x.data - mu
        var = (xc * xc).mean(axis=axes, keepdims=True)
        inv_std = 1.0 / xp.sqrt(var + eps)
        norm_axes = axes
        if running_mean is not None:
            m = float(momentum)
            running_mean.data[...] = ((1.0 - m) * running_mean.data
                                      + m * mu.reshape(C).astype(running_mean.dtype))
        if running_var is not None:
            m = float(momentum)
            unbiased = var.reshape(C) * (count / (count - 1))
            running_var.data[...] = (1.0 - m) * running_var.data + m * unbiased.astype(running_var.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{name}: running_mean and running_var are needed when not training")
        mu = running_mean.data.reshape(pshape).astype(x.dtype)
        xc = x.data - mu
        inv_std = (1.0 / xp.sqrt(running_var.data.reshape(pshape).astype(x.dtype) + eps))
        norm_axes = None
    xhat = xc * inv_std
    return _affine(name, x, xhat, weight, bias, pshape, axes, inv_std, norm_axes, count)


# ----------------------------------------------------------------- losses ----
# Every loss takes reduction="none" | "mean" | "sum", as torch. The pointwise ones share
# _pointwise: the loss array and, for backward, each input's derivative per element.

def _pair(fn, input, target):
    input = _tensor(input, f"{fn}: input")
    target = _tensor(target, f"{fn}: target")
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{fn}: target size {tuple(target.shape)} must be the same as the input size "
                         f"{tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise TypeError(f"{fn}: input must be a floating-point tensor, got dtype {input.dtype}")
    _same_device(fn, input, target)
    if target.dtype != input.dtype:
        target = Tensor(target.data.astype(input.dtype)) if not target.requires_grad else target
    return input, target


def _constant(t, fn, what, like: Tensor):
    """An optional weight-like argument as an array on ``like``'s device and dtype (no gradient)."""
    if t is None:
        return None
    a = t.data if isinstance(t, Tensor) else t
    if not (isinstance(a, np.ndarray) or backend.is_cupy_array(a)):
        a = np.asarray(a)
    if backend.device_of(a) != like.device:
        raise RuntimeError(f"{fn}: {what} is on '{backend.device_of(a)}' but input is on '{like.device}'")
    return a.astype(like.dtype, copy=False)


def _pointwise(op, inputs, loss, derivs, reduction, divisor=None):
    """A loss from per-element values ``loss``; ``derivs()`` gives d loss_i / d input_i for
    each of ``inputs`` (None where not needed), called only in backward. "mean" divides
    the sum by ``divisor`` (default: the number of elements)."""
    _check_reduction(reduction)
    xp = backend.get_array_module(loss)
    if reduction == "none":
        def backward(g):
            return tuple(None if d is None else d * g for d in derivs())
        return _make(loss, inputs, backward, op)
    n = loss.size if divisor is None else divisor
    total = loss.sum()
    if reduction == "mean":
        total = total / n if n else xp.asarray(float("nan"), dtype=loss.dtype)
    k = 1.0 / n if (reduction == "mean" and n) else 1.0

    @_loss_backward
    def backward(g):
        s = _seed(g, loss.dtype, xp)
        f = k if s is None else s * k
        return tuple(None if d is None else d * f for d in derivs())
    return _make(xp.asarray(total, dtype=loss.dtype), inputs, backward, op)


def _needs(t):
    return isinstance(t, Tensor) and t.requires_grad


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """|input - target| per element, reduced. Backward: sign(input - target).
    As ``torch.nn.functional.l1_loss``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    input, target = _pair("l1_loss", input, target)
    xp = backend.get_array_module(input.data)
    d = input.data - target.data

    def derivs():
        s = xp.sign(d)
        return (s if _needs(input) else None, -s if _needs(target) else None)
    return _pointwise("l1_loss", (input, target), xp.abs(d), derivs, reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target); beta = 0
    is the L1 loss. As ``torch.nn.functional.smooth_l1_loss``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not isinstance(beta, numbers.Real) or beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be a non-negative number, got {beta!r}")
    if beta == 0:
        return l1_loss(input, target, reduction=reduction)
    input, target = _pair("smooth_l1_loss", input, target)
    xp = backend.get_array_module(input.data)
    d = input.data - target.data
    a = xp.abs(d)
    inside = a < beta
    loss = xp.where(inside, 0.5 * d * d / beta, a - 0.5 * beta)

    def derivs():
        gd = xp.where(inside, d / beta, xp.sign(d))
        return (gd if _needs(input) else None, -gd if _needs(target) else None)
    return _pointwise("smooth_l1_loss", (input, target), loss, derivs, reduction)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (d = input - target): the
    smooth L1 loss times delta. As ``torch.nn.functional.huber_loss``."""
    _check_reduction(reduction)
    if not isinstance(delta, numbers.Real) or not delta > 0:
        raise ValueError(f"huber_loss: delta must be a positive number, got {delta!r}")
    input, target = _pair("huber_loss", input, target)
    xp = backend.get_array_module(input.data)
    d = input.data - target.data
    a = xp.abs(d)
    inside = a < delta
    loss = xp.where(inside, 0.5 * d * d, delta * (a - 0.5 * delta))

    def derivs():
        gd = xp.where(inside, d, delta * xp.sign(d))
        return (gd if _needs(input) else None, -gd if _needs(target) else None)
    return _pointwise("huber_loss", (input, target), loss, derivs, reduction)


_BCE_EPS = float(np.float32(1e-12))   # torch's EPSILON in the BCE backward, a float32 constant


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean") -> Tensor:
    """-w (t log x + (1 - t) log(1 - x)) for probabilities x in [0, 1], each log clamped
    at >= -100 as torch (so x = 0 or 1 gives a finite loss).
    Backward (torch's): w (x - t) / max(x (1 - x), 1e-12); for the target,
    w (log(1 - x) - log x) with the same clamps. As ``torch.nn.functional.binary_cross_entropy``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    input, target = _pair("binary_cross_entropy", input, target)
    xp = backend.get_array_module(input.data)
    X, T = input.data, target.data
    if X.size and not bool(((X >= 0) & (X <= 1)).all()):
        raise ValueError("binary_cross_entropy: all elements of input should be between 0 and 1 "
                         "(apply a sigmoid first, or use binary_cross_entropy_with_logits)")
    w = _constant(weight, "binary_cross_entropy", "weight", input)
    if w is not None:
        w = xp.broadcast_to(w, X.shape)
    with np.errstate(divide="ignore"):          # log 0 = -inf, clamped to -100
        log_x = xp.maximum(xp.log(X), -100.0)
        log_1mx = xp.maximum(xp.log1p(-X), -100.0)
    loss = -(T * log_x + (1.0 - T) * log_1mx)
    if w is not None:
        loss = loss * w

    def derivs():
        gx = gt = None
        if _needs(input):
            gx = (X - T) / xp.maximum(X * (1.0 - X), _BCE_EPS)
            gx = gx if w is None else gx * w
        if _needs(target):
            gt = log_1mx - log_x
            gt = gt if w is None else gt * w
        return gx, gt
    return _pointwise("binary_cross_entropy", (input, target), loss, derivs, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None) -> Tensor:
    """BCE of sigmoid(x) computed stably from the logits x:
    (1 - t) x + l softplus(-x), l = 1 + (pos_weight - 1) t (l = 1 without pos_weight),
    times ``weight``; softplus(-x) = max(-x, 0) + log1p(exp(-|x|)). ``pos_weight``
    broadcasts along the last (class) dimension. Backward: w (l sigmoid(x) - pos_weight t)
    for x; w (-x + (pos_weight - 1) softplus(-x)) for t.
    As ``torch.nn.functional.binary_cross_entropy_with_logits``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    fn = "binary_cross_entropy_with_logits"
    input, target = _pair(fn, input, target)
    xp = backend.get_array_module(input.data)
    X, T = input.data, target.data
    w = _constant(weight, fn, "weight", input)
    pw = _constant(pos_weight, fn, "pos_weight", input)
    if w is not None:
        w = xp.broadcast_to(w, X.shape)
    if pw is not None:
        try:
            pw = xp.broadcast_to(pw, X.shape)
        except ValueError:
            raise ValueError(f"{fn}: pos_weight of shape {tuple(pw.shape)} does not broadcast to the input "
                             f"shape {tuple(X.shape)} (give one weight per class, the last dimension)") from None
    softplus_neg = xp.maximum(-X, 0.0) + xp.log1p(xp.exp(-xp.abs(X)))
    lw = 1.0 if pw is None else 1.0 + (pw - 1.0) * T
    loss = (1.0 - T) * X + lw * softplus_neg
    if w is not None:
        loss = loss * w

    def derivs():
        gx = gt = None
        if _needs(input):
            s = _sigmoid(X, xp)
            gx = (s - T) if pw is None else (lw * s - pw * T)
            gx = gx if w is None else gx * w
        if _needs(target):
            gt = -X if pw is None else -X + (pw - 1.0) * softplus_neg
            gt = gt if w is None else gt * w
        return gx, gt
    return _pointwise(fn, (input, target), loss, derivs, reduction)


_KL_REDUCTIONS = ("none", "batchmean", "mean", "sum")


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """Kullback-Leibler divergence with ``input`` = log q and ``target`` = p (or log p
    with ``log_target``): p (log p - log q) per element, 0 where p = 0.

    reduction="batchmean" divides the sum by the batch size (the mathematical KL per
    sample); "mean" divides by the number of elements, and warns as torch does.
    Backward: -p (or -exp(log p)) for the input; log p + 1 - log q for a target p > 0
    (at p = 0, where the derivative is -inf and torch gives NaN, -log q is returned).
    As ``torch.nn.functional.kl_div``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in _KL_REDUCTIONS:
        raise ValueError(f"kl_div: reduction must be one of {_KL_REDUCTIONS}, got {reduction!r}")
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      UserWarning, stacklevel=2)
    input, target = _pair("kl_div", input, target)
    xp = backend.get_array_module(input.data)
    X, T = input.data, target.data
    if log_target:
        pt = xp.exp(T)
        loss = pt * (T - X)
    else:
        pos = T > 0
        log_t = xp.log(xp.where(pos, T, 1.0))
        loss = xp.where(pos, T * log_t, 0.0) - T * X

    def derivs():
        gx = gt = None
        if _needs(input):
            gx = -(pt if log_target else T)
        if _needs(target):
            gt = pt * (T - X + 1.0) if log_target else xp.where(pos, log_t + 1.0, 0.0) - X
        return gx, gt
    if reduction != "batchmean":
        return _pointwise("kl_div", (input, target), loss, derivs, reduction)
    return _pointwise("kl_div", (input, target), loss, derivs, "mean", divisor=X.shape[0] if X.ndim else 1)


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (N, C) or (N, C, d1, ...)
    at the integer class ``target`` (N,) or (N, d1, ...):
    loss_i = -weight[t_i] * input[i, t_i], 0 where t_i == ignore_index; "mean" divides
    the sum by the sum of weight[t_i] over the targets not ignored (NaN if all are).
    As ``torch.nn.functional.nll_loss``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    from ..functional import _class_targets
    x = _float_input(input, "nll_loss")
    if x.ndim not in (1,) and x.ndim < 2:
        raise ValueError(f"nll_loss: input must have shape (N, C) or (N, C, d1, ...), got {tuple(x.shape)}")
    xp = backend.get_array_module(x.data)
    X = x.data
    squeeze = X.ndim == 1                       # (C,) with a 0-d target, as torch
    if squeeze:
        X = X[None]
    C = X.shape[1]
    Z = xp.moveaxis(X, 1, -1).reshape(-1, C)    # (M, C), M = N * d1 * ...
    t, keep = _class_targets("nll_loss", target, (X.shape[0],) + X.shape[2:], C, ignore_index, xp,
                             squeezed=squeeze)
    w = _constant(weight, "nll_loss", "weight", x)
    if w is not None and tuple(w.shape) != (C,):
        raise ValueError(f"nll_loss: weight must have shape ({C},), got {tuple(w.shape)}")
    safe = xp.where(keep, t, 0)
    rows = xp.arange(Z.shape[0])
    wt = keep.astype(X.dtype) if w is None else xp.where(keep, w[safe], 0.0).astype(X.dtype)
    per = -Z[rows, safe] * wt
    out_shape = (X.shape[0],) + X.shape[2:]

    def grad_rows(scale):
        gz = xp.zeros_like(Z)
        gz[rows, safe] = -wt * scale
        gz = xp.moveaxis(gz.reshape(X.shape[:1] + X.shape[2:] + (C,)), -1, 1)
        return gz.reshape(x.shape)
    if reduction == "none":
        per_shaped = per.reshape(()) if squeeze else per.reshape(out_shape)
        return _make(per_shaped, (x,), lambda g: (grad_rows(g.reshape(-1)),), "nll_loss")
    total = per.sum()
    denom = wt.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total / denom

    @_loss_backward
    def backward(g):
        s = _seed(g, X.dtype, xp)
        f = (1.0 if s is None else s)
        if reduction == "mean":
            f = f / denom
        return (grad_rows(f),)
    return _make(xp.asarray(total, dtype=X.dtype), (x,), backward, "nll_loss")


# ----------------------------------------------------------- gradient reversal ----

def grad_reverse(x, coeff: float = 1.0) -> Tensor:
    """The gradient reversal layer of DANN: y = x forward, dL/dx = -coeff * dL/dy backward.

    Everything before it is trained to *increase* the loss computed after it: the
    features learn to fool the domain discriminator that follows. (PyTorch has no
    built-in; TLlib's ``GradientReverseFunction`` is the same thing.)

    Args:
        x: a Tensor.
        coeff: λ >= 0, the scale of the reversed gradient (``DANNSchedule`` ramps it up).
    """
    fn = "grad_reverse"
    x = _tensor(x, f"{fn}: x")
    if isinstance(coeff, bool) or not isinstance(coeff, (int, float, np.integer, np.floating)) \
            or not math.isfinite(coeff) or coeff < 0:
        raise ValueError(f"{fn}: coeff must be a finite number >= 0, got {coeff!r}")
    c = -float(coeff)
    return _make(x.data, (x,), lambda g: (g * c,), "grad_reverse")


# x.softmax(dim) and x.log_softmax(dim), as torch's Tensor methods
Tensor.softmax = lambda self, dim=None, dtype=None: softmax(self, dim, dtype=dtype)
Tensor.log_softmax = lambda self, dim=None, dtype=None: log_softmax(self, dim, dtype=dtype)
