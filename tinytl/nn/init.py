"""``tl.nn.init``: weight initialisation in place, with ``torch.nn.init``'s names and rules.

Every function fills a Tensor or Parameter in place (``tensor.data[...] = values``, so a
Linear's transposed memory layout is kept and an optimizer built before still holds
the same arrays) and returns it. Random values are drawn on the CPU from tinytl's
global generator (``tl.manual_seed`` reproduces them), or from ``generator=`` (a
``tl.Generator``), in float64, then cast to the tensor's dtype and moved to its device.

Fans (``_calculate_fan_in_and_fan_out``): for a weight of shape (out, in, *kernel),
fan_in = in * prod(kernel), fan_out = out * prod(kernel).
Gains (``calculate_gain``): linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2),
leaky_relu sqrt(2 / (1 + slope^2)), selu 3/4.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import backend
from .._random import rng_of
from ..tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for ``nonlinearity``, as ``torch.nn.init.calculate_gain``.

    Raises:
        ValueError: an unknown nonlinearity, or a negative_slope that is not a number.
    """
    if nonlinearity in _LINEAR or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, numbers.Real):
            raise ValueError(f"calculate_gain: negative_slope {param} not a valid number")
        else:
            slope = param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity}")


def _check(tensor, fn):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{fn}: expected a Tensor or Parameter, got {type(tensor).__name__}")
    if tensor.dtype.kind != "f" and fn not in ("constant_", "zeros_", "ones_"):
        raise TypeError(f"{fn}: needs a floating-point tensor, got dtype {tensor.dtype}")


def _fill(tensor, values):
    """Write ``values`` (NumPy, any float dtype) into the tensor's memory; return the tensor."""
    tensor.data[...] = backend.to_device(np.asarray(values).astype(tensor.dtype), tensor.device)
    return tensor


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions "
                         f"(got shape {tuple(tensor.shape)})")
    receptive = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b)."""
    _check(tensor, "uniform_")
    return _fill(tensor, rng_of(generator, "uniform_").uniform(a, b, size=tensor.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std^2)."""
    _check(tensor, "normal_")
    return _fill(tensor, rng_of(generator, "normal_").normal(mean, std, size=tensor.shape))


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, generator=None):
    """Fill with N(mean, std^2) truncated to [a, b] (redrawn until inside: the exact
    truncated distribution). As ``torch.nn.init.trunc_normal_``."""
    _check(tensor, "trunc_normal_")
    if not a < b:
        raise ValueError(f"trunc_normal_: needs a < b, got a={a}, b={b}")
    rng = rng_of(generator, "trunc_normal_")
    v = rng.normal(mean, std, size=tensor.shape)
    bad = (v < a) | (v > b)
    for _ in range(1000):
        if not bad.any():
            break
        v[bad] = rng.normal(mean, std, size=int(bad.sum()))
        bad = (v < a) | (v > b)
    else:
        raise ValueError(f"trunc_normal_: [a, b] = [{a}, {b}] is too far from N({mean}, {std}^2) to sample")
    return _fill(tensor, v)


def constant_(tensor, val: float):
    """Fill with ``val``."""
    _check(tensor, "constant_")
    tensor.data[...] = val
    return tensor


def ones_(tensor):
    """Fill with 1."""
    return constant_(tensor, 1)


def zeros_(tensor):
    """Fill with 0."""
    return constant_(tensor, 0)


def eye_(tensor):
    """Fill a 2-D tensor with the identity matrix (ones on the diagonal)."""
    _check(tensor, "eye_")
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only tensors with 2 dimensions are supported, got shape {tuple(tensor.shape)}")
    return _fill(tensor, np.eye(*tensor.shape))


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    _check(tensor, "xavier_uniform_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return _fill(tensor, rng_of(generator, "xavier_uniform_").uniform(-a, a, size=tensor.shape))


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check(tensor, "xavier_normal_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return _fill(tensor, rng_of(generator, "xavier_normal_").normal(0.0, std, size=tensor.shape))


def _kaiming_std(tensor, a, mode, nonlinearity, fn):
    _check(tensor, fn)
    if 0 in tensor.shape:
        warnings.warn(f"{fn}: initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return None
    fan = _fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None):
    """He uniform: U(-bound, bound), bound = gain * sqrt(3 / fan), gain =
    calculate_gain(nonlinearity, a), fan = fan_in or fan_out by ``mode``.
    (torch's default: a leaky_relu gain with a = 0, i.e. sqrt(2).)"""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_uniform_")
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return _fill(tensor, rng_of(generator, "kaiming_uniform_").uniform(-bound, bound, size=tensor.shape))


def kaiming_normal_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None):
    """He normal: N(0, std^2), std = gain / sqrt(fan)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_normal_")
    if std is None:
        return tensor
    return _fill(tensor, rng_of(generator, "kaiming_normal_").normal(0.0, std, size=tensor.shape))
