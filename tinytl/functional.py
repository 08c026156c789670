"""Differentiable neural-network ops: each a forward and a backward, side by side.

These are stateless functions on Tensors (the layers in ``tinytl/nn/`` hold
the parameters and call them). The heavy lifting is a GEMM from the array
library (BLAS on the CPU, cuBLAS on a GPU) plus a fused kernel chosen by
``tinytl.kernels.for_array``: reference NumPy, C++ or CUDA.

Read next: ``tinytl/kernels/reference.py`` for the maths of each kernel.
"""
from __future__ import annotations

import numpy as np

from . import backend
from . import kernels as _kernels
from .tensor import UNIT_SEED, Tensor, _make, _records

_REDUCTIONS = ("mean", "sum")


def _tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray) or backend.is_cupy_array(x):
        return Tensor(x)
    raise TypeError(f"{name} must be a Tensor or an array, got {type(x).__name__}")


def _same_device(op: str, *tensors):
    dev = tensors[0].device
    for t in tensors[1:]:
        if t is not None and t.device != dev:
            raise RuntimeError(f"{op}: expected all tensors on the same device, got '{dev}' and '{t.device}'")


# ---------------------------------------------------------------- linear ----

def linear(x, weight: Tensor, bias: Tensor | None = None, relu: bool = False, name: str | None = None) -> Tensor:
    """y = x @ weight.T + bias, then max(y, 0) when ``relu`` (fused in one kernel).

    PyTorch: ``torch.nn.functional.linear`` (then ``relu``). For backward the node keeps
    only what the gradients it will compute need (decided now, from ``requires_grad``):
    the input x for dL/dW = g.T @ x, only when the weight trains; the weight for
    dL/dx = g @ W, only when x needs a gradient; the bias gradient g.sum(0) needs nothing;
    the ReLU keeps a packed 1-bit mask of y > 0 (written by the forward kernel), not y.

    Args:
        x: input of shape (N, in_features).
        weight: (out_features, in_features), as in PyTorch.
        bias: (out_features,) or None.
        relu: apply a ReLU in the same pass (Linear followed by ReLU).
        name: the calling layer's name, for error messages.
    """
    x = _tensor(x, "linear: x")
    W, X = weight.data, x.data
    if X.ndim != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(f"{name or 'linear'}: expected input of shape (N, {W.shape[1]}), got {tuple(X.shape)}")
    if X.dtype != W.dtype:
        raise TypeError(f"{name or 'linear'}: input dtype {X.dtype} does not match weight dtype {W.dtype} "
                        f"(convert the input, or the model with .float()/.double())")
    if backend.is_cupy_array(X) != backend.is_cupy_array(W):
        _same_device(name or "linear", x, weight)
    K = _kernels.for_array(W)
    WT = W.T              # (in, out): C-contiguous when W is stored transposed, as Linear does
    y = X @ WT
    b = None if bias is None else bias.data
    recorded = _records(x, weight, bias)
    mask = None           # the ReLU's packed mask, written by the forward kernel when backward will run
    if relu and recorded:
        mask = backend.get_array_module(W).empty(_kernels.relu_mask_shape(*y.shape), dtype=np.uint8)
    if b is not None or relu:
        y = K.linear_forward_epilogue(y, b, relu, y, mask)
    # what the closure keeps: each only when its gradient will be computed
    need_b = bias is not None and bias.requires_grad
    keep_x = X if weight.requires_grad else None      # for dL/dW
    keep_w = weight if x.requires_grad else None      # for dL/dx (a parameter: it lives anyway)
    transposed = WT.flags.c_contiguous

    def backward(g):
        g, gb = K.linear_backward_epilogue(g, mask, relu, need_b) if (relu or need_b) else (g, None)
        gx = g @ keep_w.data if keep_w is not None else None
        gW = None
        if keep_x is not None:
            # the gradient in the weight's own memory layout: (X.T @ g).T for a transposed
            # weight (row-major GEMM, and SGD then walks both arrays in the same order)
            gW = (keep_x.T @ g).T if transposed else g.T @ keep_x
        return gx, gW, gb

    parents = (x, weight) if bias is None else (x, weight, bias)
    return _make(y, parents, backward, name or "linear")


# ------------------------------------------------------------------ relu ----

def relu(x) -> Tensor:
    """max(x, 0); the gradient passes where the output is > 0 (``torch.nn.functional.relu``).

    Backward keeps the 1-bit mask y > 0, packed (np.packbits of the flattened output,
    least significant bit first: the layout of kernels/reference.py with one row), not y.
    """
    x = _tensor(x, "relu: x")
    xp = backend.get_array_module(x.data)
    y = xp.maximum(x.data, 0)
    if not _records(x):
        return _make(y, (x,), None, "relu")
    shape, n = y.shape, y.size
    mask = xp.packbits((y > 0).ravel(), bitorder="little")

    def backward(g):
        keep = xp.unpackbits(mask, bitorder="little")[:n] if n else xp.zeros(0, np.uint8)   # (CuPy: no empty packs)
        return (g * keep.reshape(shape).view(bool),)
    return _make(y, (x,), backward, "relu")


# ----------------------------------------------------------------- losses ----

def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _labels(target, n: int, c: int, xp):
    """Validate class labels: integers, shape (N,), values in [0, C). Returns an int64 array.

    The range is checked here on the CPU; on a GPU, softmax_xent's kernel checks it
    before it writes anything (reading min and max back here would wait for the GPU
    twice more per step), and raises a ValueError naming the first bad label."""
    t = target.data if isinstance(target, Tensor) else target
    if not (isinstance(t, np.ndarray) or backend.is_cupy_array(t)):
        t = np.asarray(t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class labels, got dtype {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"cross_entropy: target must have shape ({n},) to match the logits, got {tuple(t.shape)}")
    if backend.is_cupy_array(t) != (xp is not np):
        raise RuntimeError(f"cross_entropy: logits are on '{'cpu' if xp is np else 'cuda'}' but target is on "
                           f"'{backend.device_of(t)}'")
    if n and xp is np:  # on a GPU the kernel checks the labels, with one read back instead of two
        if int(t.min()) < 0 or int(t.max()) >= c:
            i = int(np.flatnonzero((t < 0) | (t >= c))[0])
            raise ValueError(f"cross_entropy: target[{i}] = {t[i]} is not a class index in [0, {c})")
    if t.dtype != np.int64:
        t = t.astype(np.int64)
    return t


def _seed(g, dtype, xp):
    """A loss's incoming gradient g as a multiplier that keeps ``dtype``, or None for a
    seed of exactly one (nothing to multiply): on the CPU a Python float (NumPy 2
    promotion rules); on a GPU the device array itself, cast if needed (reading it back
    would wait for the GPU)."""
    if g is UNIT_SEED:
        return None
    if xp is np:
        g = float(g)
        return None if g == 1.0 else g
    return g if g.dtype == dtype else g.astype(dtype)


def _loss_backward(backward):
    """Mark a loss's backward closure as taking ``UNIT_SEED`` (see tensor.backward)."""
    backward.takes_unit_seed = True
    return backward


def cross_entropy(logits, target, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of raw ``logits`` (N, C) against integer labels (N,).

    loss = mean_i [logsumexp(z_i) - z_i[t_i]]; its gradient, softmax(z) - onehot(t)
    (over N for "mean"), is computed in the same fused kernel as the loss.
    """
    _check_reduction(reduction)
    logits = _tensor(logits, "cross_entropy: logits")
    Z = logits.data
    if Z.ndim != 2:
        raise ValueError(f"cross_entropy: logits must have shape (N, C), got {tuple(Z.shape)}")
    if Z.shape[0] == 0:
        raise ValueError("cross_entropy: logits have an empty batch (N = 0)")
    if Z.dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be float32 or float64, got {Z.dtype}")
    xp = backend.get_array_module(Z)
    t = _labels(target, Z.shape[0], Z.shape[1], xp)
    try:
        loss, grad = _kernels.for_array(Z).softmax_xent(Z, t, reduction)
    except ValueError as e:   # a bad label found on the GPU: the CPU's words
        if xp is np or not str(e).startswith("softmax_xent: target["):
            raise
        raise ValueError("cross_entropy: " + str(e).removeprefix("softmax_xent: ")) from None

    @_loss_backward
    def backward(g):
        s = _seed(g, grad.dtype, xp)
        return (grad if s is None else grad * s,)
    return _make(loss, (logits,), backward, "cross_entropy")


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """Mean (or sum) of squared differences; d/dinput = 2 (input - target) (/ numel)."""
    _check_reduction(reduction)
    input = _tensor(input, "mse_loss: input")
    target = _tensor(target, "mse_loss: target")
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape {target.shape} differ")
    if input.data.size == 0:
        raise ValueError("mse_loss: input is empty")
    _same_device("mse_loss", input, target)
    diff = input.data - target.data
    scale = 2.0 / diff.size if reduction == "mean" else 2.0
    loss = (diff * diff).sum()
    if reduction == "mean":
        loss = loss / diff.size

    xp = backend.get_array_module(diff)

    @_loss_backward
    def backward(g):
        s = _seed(g, diff.dtype, xp)
        gi = diff * (scale if s is None else s * scale)
        return (gi if input.requires_grad else None, -gi if target.requires_grad else None)
    return _make(xp.asarray(loss, dtype=diff.dtype), (input, target), backward, "mse_loss")
