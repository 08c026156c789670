"""CPU kernels: the fused C++ twins of ``reference.py``, through ``tinytl._C``.

Same names, signatures and order as ``reference.py``; the maths is in ``csrc/``
(one file per kernel) and every argument check in ``csrc/bindings.cpp``.

This layer only does what the binding refuses to do silently:
- it allocates ``out`` when it is None;
- it makes read-only *inputs* C-contiguous (a strided view of the right dtype is
  copied, as NumPy would); dtypes are never converted here.
In-place arguments (``out``, ``param``, ``buf``, the Adam moments) are passed as they are: a copy
would lose the write, so a wrong one is an error from the binding.

Read next: ``csrc/bindings.cpp`` (the checks), then ``csrc/linear.cpp``.
"""
import numpy as np

from .. import _C  # ImportError propagates: kernels/__init__.py falls back to the reference

_contig = np.ascontiguousarray
_copy = np.array  # a fresh array is C-contiguous and aligned
_empty_like = np.empty_like
_C_linear_forward_epilogue = _C.linear_forward_epilogue
_C_linear_backward_epilogue = _C.linear_backward_epilogue
_C_softmax_xent = _C.softmax_xent
_C_sgd_step = _C.sgd_step
_C_adam_step = _C.adam_step


def _input(a):
    """``a`` itself when it is a C-contiguous, aligned ndarray, else such a copy (same dtype)."""
    try:
        f = a.flags
    except AttributeError:  # not an ndarray: let NumPy make one, the binding checks its dtype
        return _contig(a)
    if f.c_contiguous and f.aligned:
        return a
    return _copy(a, order="C")


# ---------------------------------------------------------------- linear ----

def linear_forward_epilogue(y, bias, relu, out=None, mask=None):
    """out = max(y + bias, 0) if relu else y + bias; mask (written) = packed out > 0 (see reference.py)."""
    y = _input(y)
    if bias is not None:
        bias = _input(bias)
    return _C_linear_forward_epilogue(y, bias, relu, _empty_like(y) if out is None else out, mask)


def linear_backward_epilogue(grad, mask, relu, bias_grad, out=None):
    """g = grad * unpack(mask) if relu else grad; returns (g, g.sum(0) if bias_grad else None)."""
    grad = _input(grad)
    return _C_linear_backward_epilogue(grad, None if mask is None else _input(mask), relu, bias_grad,
                                       _empty_like(grad) if out is None else out)


# ------------------------------------------------- softmax cross-entropy ----

def softmax_xent(logits, target, reduction="mean", out=None):
    """(loss, dloss/dlogits) of softmax cross-entropy (see reference.py)."""
    logits = _input(logits)
    return _C_softmax_xent(logits, _input(target), reduction,
                           _empty_like(logits) if out is None else out)


# ------------------------------------------------------------------- sgd ----

def sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step, stream=False):
    """torch.optim.SGD's update, in place on ``param`` (and ``buf``); see reference.py.

    ``stream=True`` writes the new parameter values with streaming (non-temporal)
    stores: the same values, faster when other cores' caches hold the parameter
    (after a multi-threaded GEMM read it), slower otherwise (csrc/sgd.cpp).
    """
    return _C_sgd_step(param, _input(grad), buf, lr, momentum, dampening, weight_decay, nesterov, first_step,
                       stream)


# ------------------------------------------------------------------ adam ----

def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
              amsgrad, maximize, decoupled_weight_decay):
    """torch.optim.Adam's / AdamW's update, in place on ``param`` and the moments (see reference.py).

    One pass over the elements (csrc/adam.cpp) where the reference makes several.
    """
    return _C_adam_step(param, _input(grad), exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
                        weight_decay, amsgrad, maximize, decoupled_weight_decay)
