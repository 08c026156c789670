"""Testing helpers: a numerical gradient check, as in HIPS autograd's ``check_grads``.

``gradcheck(fn, inputs)`` compares the gradients that backward computes with
central differences (f(x + eps) - f(x - eps)) / (2 eps), one element at a time.
Run it in float64: float32 has too few digits for finite differences.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .tensor import Tensor, no_grad


def numerical_grad(fn, inputs, index: int, eps: float = 1e-6) -> np.ndarray:
    """d sum(fn(*inputs)) / d inputs[index] by central differences, as a NumPy array
    (the input may live on any device: its elements are nudged where it is)."""
    x = inputs[index].data
    grad = np.zeros(x.shape, x.dtype)
    with no_grad():
        for i in np.ndindex(x.shape):    # indexes x itself (x.reshape(-1) may be a copy)
            old = x[i].copy()            # on a GPU x[i] is a 0-d view, which the nudge would move
            x[i] = old + eps
            plus = float(fn(*inputs).data.sum())
            x[i] = old - eps
            minus = float(fn(*inputs).data.sum())
            x[i] = old
            grad[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-7, rtol: float = 1e-5) -> bool:
    """Check backward's gradients of sum(fn(*inputs)) against central differences.

    Args:
        fn: a function of Tensors returning a Tensor.
        inputs: Tensors (float64, requires_grad=True for those to check), on any device.
        eps, atol, rtol: step and tolerances.

    Returns:
        True; raises AssertionError naming the input and the worst element otherwise.
    """
    for t in inputs:
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError("gradcheck: run it in float64 (got an input of dtype %s)" % t.dtype)
        if isinstance(t, Tensor):
            t.grad = None
    out = fn(*inputs)
    out.sum().backward() if out.data.size != 1 else out.backward()
    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        num = numerical_grad(fn, inputs, i, eps)
        ana = np.zeros_like(num) if t.grad is None else backend.to_numpy(t.grad)
        if not np.allclose(ana, num, atol=atol, rtol=rtol):
            err = np.abs(ana - num)
            j = np.unravel_index(int(err.argmax()), err.shape)
            raise AssertionError(f"gradcheck: input {i}, element {j}: backward gives {ana[j]!r}, "
                                 f"finite differences give {num[j]!r}")
    return True
