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

_REDUCTIONS = ("none", "mean", "sum")
_FEW_LABELS = 64     # up to this many labels, _labels checks their range in Python (see there)


def _tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray) or backend.is_cupy_array(x):
        return Tensor(x)
    raise TypeError(f"{name} must be a Tensor or an array, got {type(x).__name__}")


def _same_device(op: str, *tensors):
    dev = tensors[0].device.type
    for t in tensors[1:]:
        if t is not None and t.device.type != dev:
            raise RuntimeError(f"{op}: expected all tensors on the same device, got '{dev}' and '{t.device.type}'")


# ---------------------------------------------------------------- linear ----

def linear(x, weight: Tensor, bias: Tensor | None = None, relu: bool = False, name: str | None = None) -> Tensor:
    """y = x @ weight.T + bias, then max(y, 0) when ``relu`` (fused in one kernel).

    PyTorch: ``torch.nn.functional.linear`` (then ``relu``). For backward the node keeps
    only what the gradients it will compute need (decided now, from ``requires_grad``):
    the input x for dL/dW = g.T @ x, only when the weight trains; the weight (a parameter,
    alive anyway) for dL/dx = g @ W; the bias gradient g.sum(0) needs nothing; the ReLU keeps
    a packed 1-bit mask of y > 0 (written by the forward kernel), not y.

    Forward and backward are one kernel call each (``kernels.linear_forward`` /
    ``linear_backward``): on the CPU at small batches that is tinytl's own GEMM with the bias,
    the ReLU and its mask applied while the output tile is in registers (csrc/gemm.cpp).

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
    b = None if bias is None else bias.data
    recorded = _records(x, weight, bias)
    mask = None           # the ReLU's packed mask, written by the forward kernel when backward will run
    if relu and recorded:
        mask = backend.get_array_module(W).empty(_kernels.relu_mask_shape(X.shape[0], W.shape[0]), dtype=np.uint8)
    # one kernel call: on the CPU, tinytl's GEMM with bias and ReLU applied in registers (small
    # batches), or the BLAS and then the epilogue (kernels/cpu.py chooses)
    y = K.linear_forward(X, W, b, relu, None, mask)
    # what the closure keeps: each only when its gradient will be computed
    need_b = bias is not None and bias.requires_grad
    keep_x = X if weight.requires_grad else None      # for dL/dW
    need_x = x.requires_grad                          # dL/dx = g @ W
    keep_w = weight       # for dL/dx and for its layout (a parameter: it lives anyway)

    def backward(g):
        # one kernel call: g is masked once, the bias gradient summed in the same pass; dL/dW
        # comes in the weight's own memory layout (SGD then walks both arrays in the same order)
        return K.linear_backward(g, mask, relu, keep_x, keep_w.data, need_b, need_x)

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


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """torch's deprecated size_average / reduce arguments, mapped to a reduction (with
    torch's warning) when either is given; otherwise ``reduction`` itself."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "mean" if (size_average and reduce) else ("sum" if reduce else "none")
    import warnings
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{ret}' instead.",
                  UserWarning, stacklevel=3)
    return ret


def _labels(target, n: int, c: int, xp, ignore_index: int = -100):
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
        # a NumPy reduction costs ~1 us of call overhead, a few labels as Python ints far less
        if n <= _FEW_LABELS:
            labels = t.tolist()
            lo, hi = min(labels), max(labels)
        else:
            lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= c:
            if bool((t == ignore_index).any()):
                return None       # labels to ignore: the general path
            i = int(np.flatnonzero((t < 0) | (t >= c))[0])
            raise ValueError(f"cross_entropy: target[{i}] = {t[i]} is not a class index in [0, {c})")
        if 0 <= ignore_index < c and bool((t == ignore_index).any()):
            return None
    elif n and 0 <= ignore_index < c and bool((t == ignore_index).any()):
        return None
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


def _class_targets(fn, target, shape, c: int, ignore_index: int, xp, squeezed: bool = False):
    """Integer class targets of ``shape`` (a 0-d target where ``squeezed``) as a flat int64
    array, and the mask of those that count (!= ignore_index); every other value must be
    in [0, C). Checked on any device (one read back on a GPU)."""
    t = target.data if isinstance(target, Tensor) else target
    if not (isinstance(t, np.ndarray) or backend.is_cupy_array(t)):
        t = np.asarray(t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{fn}: target must hold integer class labels, got dtype {t.dtype}")
    want = () if squeezed else tuple(shape)
    if tuple(t.shape) != want:
        raise ValueError(f"{fn}: target must have shape {want} to match the input, got {tuple(t.shape)}")
    if backend.is_cupy_array(t) != (xp is not np):
        raise RuntimeError(f"{fn}: input is on '{'cpu' if xp is np else 'cuda'}' but target is on "
                           f"'{backend.device_of(t)}'")
    t = t.reshape(-1).astype(np.int64, copy=False)
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= c))
    if t.size and bool(bad.any()):
        i = int(backend.to_numpy(xp.flatnonzero(bad))[0])
        raise ValueError(f"{fn}: target[{i}] = {int(t[i])} is not a class index in [0, {c})")
    return t, keep


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of raw logits ``input`` (N, C) (or (N, C, d1, ...), or (C,))
    against integer class labels (N,) or class probabilities of the input's shape.

    With p = log_softmax(z) and C classes, as ``torch.nn.functional.cross_entropy``:
    - labels: loss_i = -w[t_i] ((1 - e) p_i[t_i] + (e / C) sum_c w_c/w[t_i] p_ic) with
      e = label_smoothing, w = weight (ones by default), 0 where t_i == ignore_index;
      "mean" divides the sum by sum_i w[t_i] over the labels not ignored;
    - probabilities T: loss_i = -sum_c w_c T'_ic p_ic, T' = (1 - e) T + e / C; "mean"
      divides by N.
    In both, loss = -sum_c A_ic p_ic for a coefficient matrix A, and the gradient is
    softmax(z_i) sum_c A_ic - A_i (over the mean's divisor).

    The plain case (labels, no weight, no smoothing, no label equal to ignore_index,
    (N, C) logits) runs in one fused kernel that also computes the gradient; the
    rest is array math in one graph node. ``size_average`` and ``reduce`` are torch's
    deprecated spellings of ``reduction``.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    logits = _tensor(input, "cross_entropy: input")
    Z = logits.data
    if Z.dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be float32 or float64, got {Z.dtype}")
    xp = backend.get_array_module(Z)
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing!r}")
    t_arr = target.data if isinstance(target, Tensor) else target
    soft = (getattr(t_arr, "dtype", np.dtype(np.int64)).kind == "f"      # class probabilities
            and np.ndim(t_arr) == Z.ndim)
    if (Z.ndim == 2 and not soft and weight is None and label_smoothing == 0.0 and reduction != "none"
            and Z.shape[0] > 0):
        t = _labels(target, Z.shape[0], Z.shape[1], xp, ignore_index)
        out = None if t is None else _softmax_xent(logits, t, reduction, xp)
        if out is not None:
            return out
    if Z.ndim == 0 or (Z.ndim == 1 and (soft or np.ndim(t_arr) != 0)):
        raise ValueError(f"cross_entropy: logits must have shape (N, C) (or (C,) with a 0-d target), "
                         f"got {tuple(Z.shape)}")
    if Z.shape[0] == 0:
        raise ValueError("cross_entropy: logits have an empty batch (N = 0)")
    return _cross_entropy_general(logits, target, soft, weight, ignore_index, reduction,
                                  float(label_smoothing), xp)


def _softmax_xent(logits, t, reduction, xp):
    """The plain case: loss and gradient from the fused softmax_xent kernel (None when
    the GPU kernel finds a label outside [0, C): the general path ignores or reports it)."""
    Z = logits.data
    try:
        loss, grad = _kernels.for_array(Z).softmax_xent(Z, t, reduction)
    except ValueError as e:   # a bad label found on the GPU (or one to ignore): the general path
        if xp is np or not str(e).startswith("softmax_xent: target["):
            raise
        return None

    @_loss_backward
    def backward(g):
        s = _seed(g, grad.dtype, xp)
        return (grad if s is None else grad * s,)
    return _make(loss, (logits,), backward, "cross_entropy")


def _cross_entropy_general(logits, target, soft, weight, ignore_index, reduction, eps, xp):
    """Weights, ignore_index, label smoothing, probability targets, (N, C, d...) logits, "none"."""
    Z = logits.data
    squeeze = Z.ndim == 1
    X = Z[None] if squeeze else Z
    C = X.shape[1]
    zf = xp.moveaxis(X, 1, -1).reshape(-1, C)             # (M, C): one row per prediction
    out_shape = () if squeeze else (X.shape[0],) + X.shape[2:]
    w = None
    if weight is not None:
        w = weight.data if isinstance(weight, Tensor) else weight
        if not (isinstance(w, np.ndarray) or backend.is_cupy_array(w)):
            w = np.asarray(w)
        if tuple(w.shape) != (C,):
            raise ValueError(f"cross_entropy: weight must have shape ({C},), got {tuple(w.shape)}")
        if backend.device_of(w) != logits.device:
            raise RuntimeError(f"cross_entropy: weight is on '{backend.device_of(w)}', logits on '{logits.device}'")
        w = w.astype(Z.dtype, copy=False)
    shifted = zf - zf.max(axis=1, keepdims=True)
    logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    if soft:                                               # probabilities: A = w * T'
        T = target.data if isinstance(target, Tensor) else target
        if tuple(T.shape) != tuple(Z.shape):
            raise ValueError(f"cross_entropy: probability targets must have the logits' shape "
                             f"{tuple(Z.shape)}, got {tuple(T.shape)}")
        if backend.device_of(T) != logits.device:
            raise RuntimeError(f"cross_entropy: target is on '{backend.device_of(T)}', logits on '{logits.device}'")
        A = xp.moveaxis(T[None] if squeeze else T, 1, -1).reshape(-1, C).astype(Z.dtype)
        if eps:
            A = A * (1.0 - eps) + eps / C
        if w is not None:
            A = A * w
        denom = float(zf.shape[0])
    else:                                                  # labels: A = w[t] ((1-e) onehot + e/C ...)
        t, keep = _class_targets("cross_entropy", target, out_shape, C, ignore_index, xp, squeezed=squeeze)
        rows = xp.arange(zf.shape[0])
        safe = xp.where(keep, t, 0)
        kf = keep.astype(Z.dtype)
        wt = kf if w is None else w[safe] * kf
        A = xp.zeros_like(zf)
        A[rows, safe] = wt * (1.0 - eps)
        if eps:
            A += (eps / C) * (kf[:, None] if w is None else kf[:, None] * w[None, :])
        denom = wt.sum()                                   # sum of the weights not ignored
    per = -(A * logp).sum(axis=1)
    a_sum = A.sum(axis=1, keepdims=True)

    def grad_of(scale_rows):                                # scale_rows: (M, 1) or a scalar
        gz = (xp.exp(logp) * a_sum - A) * scale_rows
        gz = xp.moveaxis(gz.reshape(X.shape[:1] + X.shape[2:] + (C,)), -1, 1)
        return gz.reshape(Z.shape)
    if reduction == "none":
        return _make(per.reshape(out_shape), (logits,), lambda g: (grad_of(g.reshape(-1, 1)),), "cross_entropy")
    total = per.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total / denom                          # NaN when every label is ignored, as torch

    @_loss_backward
    def backward(g):
        s = _seed(g, Z.dtype, xp)
        f = 1.0 if s is None else s
        if reduction == "mean":
            f = f / denom
        return (grad_of(f),)
    return _make(xp.asarray(total, dtype=Z.dtype), (logits,), backward, "cross_entropy")


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """(input - target)^2 per element: its mean ("mean"), sum ("sum") or itself ("none");
    d/dinput = 2 (input - target) (/ numel for "mean"). As ``torch.nn.functional.mse_loss``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    input = _tensor(input, "mse_loss: input")
    target = _tensor(target, "mse_loss: target")
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape {target.shape} differ")
    if input.data.size == 0:
        raise ValueError("mse_loss: input is empty")
    _same_device("mse_loss", input, target)
    diff = input.data - target.data
    xp = backend.get_array_module(diff)
    if reduction == "none":
        def backward_none(g):
            gi = 2.0 * diff * g
            return (gi if input.requires_grad else None, -gi if target.requires_grad else None)
        return _make(diff * diff, (input, target), backward_none, "mse_loss")
    scale = 2.0 / diff.size if reduction == "mean" else 2.0
    loss = (diff * diff).sum()
    if reduction == "mean":
        loss = loss / diff.size

    @_loss_backward
    def backward(g):
        s = _seed(g, diff.dtype, xp)
        gi = diff * (scale if s is None else s * scale)
        return (gi if input.requires_grad else None, -gi if target.requires_grad else None)
    return _make(xp.asarray(loss, dtype=diff.dtype), (input, target), backward, "mse_loss")
