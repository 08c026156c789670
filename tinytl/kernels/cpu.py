"""CPU kernels: the fused C++ twins of ``reference.py``, through ``tinytl._C``.

Same names, signatures and order as ``reference.py``; the maths is in ``csrc/``
(one file per kernel) and every argument check in ``csrc/bindings.cpp``.

This layer only does what the binding refuses to do silently:
- it allocates ``out`` when it is None;
- it makes read-only *inputs* C-contiguous (a strided view of the right dtype is
  copied, as NumPy would); dtypes are never converted here.
In-place arguments (``out``, ``param``, ``buf``, the Adam moments) are passed as they are: a copy
would lose the write, so a wrong one is an error from the binding.

It also chooses, per call, between tinytl's own small-batch GEMM (``linear_forward`` /
``linear_backward``, csrc/gemm.cpp, the epilogue fused) and NumPy's BLAS followed by the
epilogue kernel, from the shape (``_gemm_fused``; the crossover is measured, see there).

Read next: ``csrc/bindings.cpp`` (the checks), then ``csrc/linear.cpp`` and ``csrc/gemm.cpp``.
"""
import os as _os
import warnings as _warnings

import numpy as np

from .. import _C  # ImportError propagates: kernels/__init__.py falls back to the reference
from .reference import _linear_products  # the BLAS path's GEMMs: the reference's own

_isa = _os.environ.get("TINYTL_GEMM_ISA")
if _isa is not None and _isa not in ("avx512", "avx2", "scalar"):
    _warnings.warn(f"TINYTL_GEMM_ISA={_isa!r} is not one of 'avx512', 'avx2', 'scalar'; the GEMM uses the best "
                   f"instruction set the CPU has ({_C.gemm_isa()})", RuntimeWarning, stacklevel=2)

_contig = np.ascontiguousarray
_copy = np.array  # a fresh array is C-contiguous and aligned
_empty_like = np.empty_like
_empty = np.empty
_matmul = np.matmul
_C_linear_forward_epilogue = _C.linear_forward_epilogue
_C_linear_backward_epilogue = _C.linear_backward_epilogue
_C_linear_forward = _C.linear_forward
_C_linear_backward = _C.linear_backward
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


# The crossover between tinytl's GEMM and the BLAS. tinytl's runs on one core at up to 80-90% of
# its FMA peak from the first rows and saves the epilogue's separate pass; OpenBLAS, on two
# threads, is slow on a few rows (packing, call and thread costs) and faster on large products.
# Measured with bench/gemm_crossover.py (bench/README.md, "GEMM crossover"), per dtype and per
# call (the forward; the backward's weight and input gradients), at up to 256 rows: float32
# forwards ran fused at 0.68-1.0x the BLAS path's time up to 8.4 MFLOP per GEMM, 1.0-1.15x at
# 16.8 and 1.15-1.9x above; float32 backwards at 0.64-1.13x from 32 rows up to 8.4 MFLOP
# (0.8-1.37x at 8 rows: a few microseconds either way) and 1.11-1.28x at 16.8; float64
# forwards like float32's, float64 backwards mostly slower than the BLAS from the smallest
# size (0.87-1.9x). Whole float32 steps agree: fused/BLAS 0.90 at 784-128-10 b32, 0.62 at
# 40-128-128-5 b64, 1.07 at 784-128-10 b128 (25.7 MFLOP: the BLAS's).
GEMM_MAX_ROWS = 256
GEMM_MAX_FLOPS = {  # (dtype, call) -> the most floating-point operations per GEMM served fused
    (np.dtype(np.float32), "forward"): 16e6, (np.dtype(np.float32), "backward"): 8e6,
    (np.dtype(np.float64), "forward"): 16e6, (np.dtype(np.float64), "backward"): 0.0,
}


def _gemm_fused(call, m, k, n, dtype, weight):
    """True when the fused GEMM serves an (m, k) @ (k, n) product of a Linear layer in ``call``
    ('forward' or 'backward'): the weight in Linear's (Fortran) layout, aligned and of the same
    dtype, at most GEMM_MAX_ROWS rows and GEMM_MAX_FLOPS[dtype, call]. Anything else goes to the
    BLAS, which takes any layout."""
    f = weight.flags
    return (m <= GEMM_MAX_ROWS and 2 * m * k * n <= GEMM_MAX_FLOPS.get((dtype, call), 0) and weight.dtype == dtype
            and weight.ndim == 2 and f.f_contiguous and f.aligned)


def linear_forward(x, weight, bias, relu, out=None, mask=None):
    """out = relu?(x @ weight.T + bias); mask (written) = packed out > 0 (see reference.py).

    One C++ call (the GEMM with the epilogue in registers) when ``_gemm_fused``; else the
    BLAS GEMM, then ``linear_forward_epilogue`` over its output.
    """
    x = _input(x)
    if bias is not None:
        bias = _input(bias)
    if x.ndim == 2 and weight.ndim == 2 and _gemm_fused("forward", x.shape[0], x.shape[1], weight.shape[0], x.dtype,
                                                           weight) \
            and (out is None or out.flags.c_contiguous):   # the BLAS takes any out=, the fused path C order
        return _C_linear_forward(x, weight, bias, relu,
                                 _empty((x.shape[0], weight.shape[0]), x.dtype) if out is None else out, mask)
    y = _matmul(x, weight.T) if out is None else _matmul(x, weight.T, out=out)
    if bias is None and not relu:
        return y
    return _C_linear_forward_epilogue(y, bias, relu, y, mask)


def linear_backward(grad, mask, relu, x, weight, bias_grad, input_grad):
    """(g @ weight | None, g.T @ x in weight's layout | None, g.sum(0) | None), g = grad * mask (see reference.py).

    One C++ call when ``_gemm_fused`` (g is masked once, as it is packed, and the bias
    gradient summed in the same pass); else the epilogue kernel, then the BLAS GEMMs.
    """
    grad = _input(grad)
    if x is not None:
        x = _input(x)
    if mask is not None:
        mask = _input(mask)
    if grad.ndim == 2 and weight.ndim == 2 and _gemm_fused("backward", grad.shape[0], weight.shape[1], grad.shape[1],
                                                           grad.dtype, weight):
        return _C_linear_backward(grad, mask, relu, x, weight, bias_grad, input_grad)
    g, gb = _C_linear_backward_epilogue(grad, mask, relu, bias_grad, _empty_like(grad)) if (relu or bias_grad) \
        else (grad, None)
    return (*_linear_products(g, x, weight, input_grad), gb)


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
