"""``tl.nn.utils``: gradient clipping and flat parameter vectors, as ``torch.nn.utils``.

``.grad`` of a tinytl tensor is an array (NumPy or CuPy), so clipping scales the arrays
in place; the total norm is returned as a Tensor, as torch does.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..tensor import Tensor, _make

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]


def _params(parameters, fn):
    if isinstance(parameters, Tensor):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(f"{fn}: parameters must be a Tensor or an iterable of Tensors, "
                        f"got {type(parameters).__name__}") from None
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{fn}: expected Tensors, got a {type(p).__name__}")
    return params


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    """Scale the gradients so that their total norm is at most ``max_norm``.

    total = ||(||g_1||_p, ..., ||g_k||_p)||_p over the parameters that have a gradient
    (p = norm_type, inf for the largest |g|); every gradient is multiplied by
    min(1, max_norm / (total + 1e-6)), in place. As ``torch.nn.utils.clip_grad_norm_``.

    Returns:
        The total norm before clipping, a 0-d Tensor (0. when no parameter has a gradient).

    Raises:
        RuntimeError: with ``error_if_nonfinite``, when the total norm is NaN or Inf
            (nothing is scaled).
    """
    params = _params(parameters, "clip_grad_norm_")
    grads = [p.grad for p in params if p.grad is not None]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return Tensor(np.asarray(0.0, np.float32))
    xp = backend.get_array_module(grads[0])
    if norm_type == math.inf:
        norms = [float(xp.abs(g).max()) if g.size else 0.0 for g in grads]
        total = max(norms)
    else:
        norms = [float((xp.abs(g.astype(np.float64)) ** norm_type).sum()) ** (1.0 / norm_type) for g in grads]
        total = float(np.sum(np.asarray(norms) ** norm_type) ** (1.0 / norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is non-finite "
                           f"({total}), so it cannot be clipped. Set error_if_nonfinite=False to skip this check")
    coef = min(max_norm / (total + 1e-6), 1.0)
    for p in params:
        if p.grad is not None:
            p.grad *= p.grad.dtype.type(coef)
    dtype = grads[0].dtype
    return Tensor(backend.to_device(np.asarray(total, dtype=dtype), backend.device_of(grads[0])))


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient into [-clip_value, clip_value], in place.
    As ``torch.nn.utils.clip_grad_value_``."""
    params = _params(parameters, "clip_grad_value_")
    v = float(clip_value)
    for p in params:
        if p.grad is not None:
            xp = backend.get_array_module(p.grad)
            xp.clip(p.grad, -v, v, out=p.grad)


def parameters_to_vector(parameters) -> Tensor:
    """All parameters flattened and concatenated into one vector (differentiable: the
    gradient splits back). As ``torch.nn.utils.parameters_to_vector``."""
    params = _params(parameters, "parameters_to_vector")
    if not params:
        raise ValueError("parameters_to_vector: no parameters given")
    dev = params[0].device
    for p in params:
        if p.device != dev:
            raise RuntimeError(f"parameters_to_vector: parameters on '{dev}' and '{p.device}'")
    xp = backend.get_array_module(params[0].data)
    sizes = [p.data.size for p in params]
    vec = xp.concatenate([p.data.reshape(-1) for p in params])

    def backward(g):
        out, i = [], 0
        for p, n in zip(params, sizes):
            out.append(g[i:i + n].reshape(p.shape))
            i += n
        return tuple(out)
    return _make(vec, tuple(params), backward, "parameters_to_vector")


def vector_to_parameters(vec, parameters) -> None:
    """Copy consecutive slices of the vector ``vec`` into the parameters, in place.
    As ``torch.nn.utils.vector_to_parameters``."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected a Tensor, but got {type(vec).__name__}")
    params = _params(parameters, "vector_to_parameters")
    total = sum(p.data.size for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: vec must have shape ({total},) for these parameters, "
                         f"got {tuple(vec.shape)}")
    i = 0
    for p in params:
        n = p.data.size
        p.data[...] = backend.to_device(vec.data[i:i + n], p.device).reshape(p.shape).astype(p.dtype, copy=False)
        i += n
