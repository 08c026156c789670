"""CUDA kernels: the twins of ``reference.py`` for CuPy arrays, written in CUDA C.

Same names, signatures and order as ``reference.py`` and ``cpu.py``. The kernels are in
``tinytl/kernels/cuda/`` (one ``.cu`` file per section below), shipped as package data
and compiled at run time by CuPy (NVRTC) on first use, then cached (CuPy also keeps
the binaries on disk, so a new process does not compile again).

This file plays the part ``csrc/bindings.cpp`` plays for the CPU, with the same rules:
- every argument is checked before anything is written, with the same exception types
  and messages (TypeError for a dtype, ValueError for a shape, layout, overlap or label,
  each naming the argument);
- read-only inputs are made C-contiguous and aligned (a RawKernel ignores strides);
  arguments written in place (``out``, ``param``, ``buf``) never are, since a copy would
  lose the write: a wrong one is an error;
- sizes are passed as ``np.int64`` and scalars in the kernel's dtype (a Python int would
  arrive as ``long long`` and a float as ``double``, whatever the kernel expects).
Every array must be a ``cupy.ndarray`` on the current device: nothing is moved silently.

CuPy is imported through ``tinytl.backend`` on the first call, never at ``import tinytl``.

Launches per call: linear_forward_epilogue 1; linear_backward_epilogue 1, or 2 when the
bias gradient spans several strips of rows (N > 256); softmax_xent 3 (label check, rows, loss sum)
plus one device-to-host read of the label check; sgd_step 1; sgd_step_many 1 for a
whole list of parameters; adam_step 1. The reductions (bias gradient, loss) add in a fixed order:
the results are deterministic.

Read next: ``tinytl/kernels/cuda/linear.cu``.
"""
import functools
import importlib.resources

import numpy as np

from .. import backend
from .reference import _linear_products  # the GEMMs of linear_backward: cuBLAS through CuPy

_THREADS = 256               # threads per block of the elementwise kernels
_TILE = (32, 8)              # blockDim of the linear backward kernels (TILE_X, TILE_Y in linear.cu)
_NULL = np.uint64(0)         # a null pointer argument: 8 zero bytes, passed as they are
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


# ------------------------------------------------------ compile and launch ----

def _source(file):
    """The code CuPy compiles: ``cuda/<file>.cu``, with a #line so errors point into it."""
    text = importlib.resources.files(__package__).joinpath("cuda", f"{file}.cu").read_text(encoding="utf-8")
    return f'#line 1 "tinytl/kernels/cuda/{file}.cu"\n{text}'


@functools.lru_cache(maxsize=None)
def _module(file):
    """One RawModule per .cu file: both dtypes' kernels come from one NVRTC compile."""
    cp = backend._require_cuda()
    return cp.RawModule(code=_source(file), options=("--std=c++17",))


@functools.lru_cache(maxsize=None)
def _kernel(file, name, device):
    """The kernel ``name`` (e.g. ``sgd_step_f32``) of ``cuda/<file>.cu``, loaded on ``device``."""
    return _module(file).get_function(name)


def _typed(file, name, dtype, device):
    return _kernel(file, f"{name}_{_SUFFIX[dtype]}", device)


@functools.lru_cache(maxsize=None)
def _max_blocks(device):
    """Blocks of 256 threads that fill every SM of ``device`` (2048 threads each)."""
    cp = backend.cupy_if_loaded()
    return 8 * cp.cuda.runtime.getDeviceProperties(device)["multiProcessorCount"]


def _grid(n, device):
    """A grid-stride launch over n elements: one thread each, up to a full GPU."""
    return (max(1, min(-(-n // _THREADS), _max_blocks(device))),)


def _cdiv(a, b):
    return -(-a // b)


# ------------------------------------------------------------------ checks ----

def _current_device():
    return backend._require_cuda().cuda.runtime.getDevice()


def _gpu(fn, a, name, device, optional=False):
    """``a`` itself if it is a CuPy array on ``device``, else a TypeError/ValueError naming it."""
    cp = backend.cupy_if_loaded()
    if not isinstance(a, cp.ndarray):
        what = "a cupy.ndarray or None" if optional else "a cupy.ndarray"
        hint = " (it is on the CPU: move it with cupy.asarray or Tensor.to('cuda'))" if isinstance(a, np.ndarray) else ""
        raise TypeError(f"{fn}: {name} must be {what}, got {type(a).__module__}.{type(a).__name__}{hint}")
    if a.device.id != device:
        raise ValueError(f"{fn}: {name} is on cuda:{a.device.id} but the current device is cuda:{device}; "
                         f"call under `with cupy.cuda.Device({a.device.id}):` or move it")
    return a


def _input(fn, a, name, device, optional=False):
    """A read-only input: ``a`` if C-contiguous and aligned, else such a copy (same dtype)."""
    a = _gpu(fn, a, name, device, optional)
    if a.flags.c_contiguous and (a.size == 0 or a.data.ptr % a.itemsize == 0):
        return a
    return a.copy(order="C")


def _is_f32(fn, a, name):
    """The dtype every floating argument of the call shares: float32 or float64."""
    if a.dtype == np.float32:
        return True
    if a.dtype == np.float64:
        return False
    raise TypeError(f"{fn}: {name} must be a float32 or float64 array, got dtype {a.dtype}")


def _check_dtype(fn, a, name, f32, ref):
    want = "float32" if f32 else "float64"
    if a.dtype != want:
        raise TypeError(f"{fn}: {name} must be {want} (the dtype of {ref}), got dtype {a.dtype}")


def _check_written(fn, a, name):
    """Layout of an argument written in place: it cannot be copied, so it must fit."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous")
    if a.size and a.data.ptr % a.itemsize:
        raise ValueError(f"{fn}: {name} must be aligned")


def _check_shape(fn, a, name, want):
    if a.shape != want:
        raise ValueError(f"{fn}: {name} must have shape {want}, got {a.shape}")


def _check_overlap(fn, out, oname, a, aname, allow_same):
    """``out`` may be exactly ``a`` (when allow_same) or apart from it, never partly over it."""
    o, i, on, an = out.data.ptr, a.data.ptr, out.nbytes, a.nbytes
    if on == 0 or an == 0 or o + on <= i or i + an <= o:
        return
    if allow_same and o == i and on == an:
        return
    raise ValueError(f"{fn}: {oname} overlaps {aname}" +
                     (" partially; pass the same array or a separate one" if allow_same else "; pass a separate array"))


# ---------------------------------------------------------------- linear ----

def _check_mask(fn, mask, n, m, device):
    """The packed ReLU mask (reference.py's layout): a C-contiguous uint8 cupy array (n, ceil(m / 8))."""
    mask = _gpu(fn, mask, "mask", device)
    if mask.dtype != np.uint8:
        raise TypeError(f"{fn}: mask must be a uint8 array (the packed ReLU mask), got dtype {mask.dtype}")
    _check_written(fn, mask, "mask")
    _check_shape(fn, mask, "mask", (n, (m + 7) // 8))
    return mask


def linear_forward_epilogue(y, bias, relu, out=None, mask=None):
    """out = max(y + bias, 0) if relu else y + bias; mask (written) = packed out > 0 (see reference.py).

    One launch: elementwise, or one thread per mask byte (8 columns) when writing the mask."""
    fn = "linear_forward_epilogue"
    dev = _current_device()
    y = _input(fn, y, "y", dev)
    f32 = _is_f32(fn, y, "y")
    if bias is not None:
        bias = _input(fn, bias, "bias", dev, optional=True)
        _check_dtype(fn, bias, "bias", f32, "y")
    out = backend.cupy_if_loaded().empty_like(y) if out is None else _gpu(fn, out, "out", dev)
    _check_dtype(fn, out, "out", f32, "y")
    _check_written(fn, out, "out")
    if y.ndim != 2:
        raise ValueError(f"{fn}: y must have shape (N, M), got {y.shape}")
    n, m = y.shape
    if bias is not None:
        _check_shape(fn, bias, "bias", (m,))
    _check_shape(fn, out, "out", (n, m))
    _check_overlap(fn, out, "out", y, "y", True)
    if bias is not None:
        _check_overlap(fn, out, "out", bias, "bias", False)
    if mask is not None:
        if not relu:
            raise ValueError(f"{fn}: mask is written only with relu=True")
        mask = _check_mask(fn, mask, n, m, dev)
        for a, name in ((y, "y"), (out, "out")) + (() if bias is None else ((bias, "bias"),)):
            _check_overlap(fn, mask, "mask", a, name, False)

    if n * m == 0 or (bias is None and not relu and out.data.ptr == y.data.ptr):
        return out  # nothing to do
    work = n * m if mask is None else mask.size
    _typed("linear", fn, y.dtype, dev)(
        _grid(work, dev), (_THREADS,),
        (y, _NULL if bias is None else bias, np.int32(bool(relu)), out, _NULL if mask is None else mask,
         np.int64(n), np.int64(m)))
    return out


def linear_backward_epilogue(grad, mask, relu, bias_grad, out=None):
    """g = grad * unpack(mask) if relu else grad; returns (g, g.sum(0) if bias_grad else None).

    Tiles of 32 columns x a strip of rows; the bias gradient is added in double, in an
    order fixed by (N, M): deterministic. One launch, two when N spans several strips.
    """
    fn = "linear_backward_epilogue"
    cp = backend.cupy_if_loaded()
    dev = _current_device()
    grad = _input(fn, grad, "grad", dev)
    f32 = _is_f32(fn, grad, "grad")
    out = cp.empty_like(grad) if out is None else _gpu(fn, out, "out", dev)
    _check_dtype(fn, out, "out", f32, "grad")
    _check_written(fn, out, "out")
    if grad.ndim != 2:
        raise ValueError(f"{fn}: grad must have shape (N, M), got {grad.shape}")
    n, m = grad.shape
    _check_shape(fn, out, "out", (n, m))
    _check_overlap(fn, out, "out", grad, "grad", True)
    if relu:
        if mask is None:
            raise ValueError(f"{fn}: mask is required when relu=True (the forward's packed ReLU mask)")
        mask = _check_mask(fn, _input(fn, mask, "mask", dev), n, m, dev)  # read-only: made contiguous
        _check_overlap(fn, out, "out", mask, "mask", False)

    bg = cp.empty(m, grad.dtype) if bias_grad else None
    if n * m == 0:
        if bg is not None:
            bg.fill(0)  # the sum over no rows
        return out, bg
    if bg is None and not relu and out.data.ptr == grad.data.ptr:
        return out, None  # nothing to do
    # One strip (one launch) up to 256 rows, where a second launch would cost more than
    # the work; above, strips of at least 64 rows and at most 1024 strips. A function of
    # n alone, so the order of the additions (and the bits of the result) does not
    # depend on the GPU.
    rows = n if n <= 256 else max(64, _cdiv(n, 1024))
    strips = _cdiv(n, rows)
    partial = cp.empty(strips * m, np.float64) if (bg is not None and strips > 1) else None
    _typed("linear", fn, grad.dtype, dev)(
        (_cdiv(m, _TILE[0]), strips), _TILE,
        (grad, _NULL if not relu else mask, np.int32(bool(relu)), _NULL if bg is None else bg, _NULL if partial is None else partial, out,
         np.int64(n), np.int64(m), np.int64(rows)))
    if partial is not None:
        _typed("linear", "linear_backward_epilogue_sum_strips", grad.dtype, dev)(
            (_cdiv(m, _TILE[0]),), _TILE, (partial, np.int64(strips), bg, np.int64(m)))
    return out, bg


# The twins that are, on the GPU, cuBLAS's GEMM followed by other kernels of this file (no
# .cu kernel of their own): name -> the kernels they launch.
COMPOSED = {"linear_forward": ("linear_forward_epilogue",), "linear_backward": ("linear_backward_epilogue",)}


def linear_forward(x, weight, bias, relu, out=None, mask=None):
    """out = relu?(x @ weight.T + bias); mask (written) = packed out > 0 (see reference.py).

    cuBLAS's GEMM (cupy.matmul), then ``linear_forward_epilogue``'s launch: on the GPU the
    GEMM is not tinytl's. cuBLASLt's epilogues (bias, ReLU, a ReLU bit-mask) would be the twin
    of csrc/gemm.cpp's fusion; not built without a GPU to measure it on.
    """
    cp = backend.cupy_if_loaded()
    y = cp.matmul(x, weight.T) if out is None else cp.matmul(x, weight.T, out=out)
    if bias is None and not relu:
        return y
    return linear_forward_epilogue(y, bias, relu, y, mask)


def linear_backward(grad, mask, relu, x, weight, bias_grad, input_grad):
    """(g @ weight | None, g.T @ x in weight's layout | None, g.sum(0) | None), g = grad * mask (see reference.py).

    ``linear_backward_epilogue``'s launch(es), then cuBLAS's GEMMs.
    """
    g, gb = linear_backward_epilogue(grad, mask, relu, bias_grad) if (relu or bias_grad) else (grad, None)
    return (*_linear_products(g, x, weight, input_grad), gb)


# ------------------------------------------------- softmax cross-entropy ----

def softmax_xent(logits, target, reduction="mean", out=None):
    """(loss, dloss/dlogits) of softmax cross-entropy (see reference.py).

    The labels are checked on the GPU and read back (one synchronisation) before anything
    is written; then one launch for the rows (a warp per row up to C = 1024, a block per
    row above) and one that adds the row losses in a fixed order: deterministic.
    """
    fn = "softmax_xent"
    cp = backend.cupy_if_loaded()
    dev = _current_device()
    logits = _input(fn, logits, "logits", dev)
    f32 = _is_f32(fn, logits, "logits")
    out = cp.empty_like(logits) if out is None else _gpu(fn, out, "out", dev)
    _check_dtype(fn, out, "out", f32, "logits")
    target = _input(fn, target, "target", dev)
    if target.dtype != np.int64:
        raise TypeError(f"{fn}: target must be an int64 array of class indices, got dtype {target.dtype}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{fn}: reduction must be 'mean' or 'sum', got '{reduction}'")
    _check_written(fn, out, "out")
    if logits.ndim != 2:
        raise ValueError(f"{fn}: logits must have shape (N, C), got {logits.shape}")
    n, c = logits.shape
    if n == 0:
        raise ValueError(f"{fn}: logits have an empty batch (N = 0)")
    if c == 0:
        raise ValueError(f"{fn}: logits have no classes (C = 0)")
    _check_shape(fn, target, "target", (n,))
    _check_shape(fn, out, "out", (n, c))
    _check_overlap(fn, out, "out", logits, "logits", True)
    _check_overlap(fn, out, "out", target, "target", False)
    first_bad = cp.full((), n, np.int64)
    _kernel("softmax_xent", "softmax_xent_check_target", dev)(
        _grid(n, dev), (_THREADS,), (target, np.int64(n), np.int64(c), first_bad))
    i = int(first_bad)  # waits for the check
    if i < n:
        raise ValueError(f"{fn}: target[{i}] = {int(target[i])} is not a class index in [0, {c})")

    dtype = logits.dtype
    scale = dtype.type(1) / dtype.type(n) if reduction == "mean" else dtype.type(1)
    if c <= 1024:
        block = (32, 8)                            # a warp per row, 8 rows per block
    else:
        block = (256 if c <= 16384 else 1024, 1)   # a block per row
    row_loss = cp.empty(n, np.float64)
    _typed("softmax_xent", fn, dtype, dev)(
        (_cdiv(n, block[1]),), block, (logits, target, out, row_loss, np.int64(n), np.int64(c), scale))
    loss = cp.empty((), dtype)
    threads = min(1024, max(32, 1 << (n - 1).bit_length()))  # from n alone: a fixed order of additions
    _typed("softmax_xent", "softmax_xent_loss", dtype, dev)(
        (1,), (threads,), (row_loss, np.int64(n), np.int32(reduction == "mean"), loss))
    return loss, out


# ------------------------------------------------------------------- sgd ----

def _sgd_scalars(dtype, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """The kernel's scalar arguments, cast to its dtype as NumPy casts them in reference.py."""
    t = dtype.type
    return (t(lr), t(momentum), t(1 - dampening), t(weight_decay), np.int32(weight_decay != 0),
            np.int32(momentum != 0), np.int32(bool(nesterov)), np.int32(bool(first_step)))


def sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step, stream=False):
    """torch.optim.SGD's update, in place on ``param`` (and ``buf``); see reference.py. One launch.

    ``stream`` (a CPU cache hint) is accepted for the common signature and ignored.
    """
    fn = "sgd_step"
    dev = _current_device()
    param = _gpu(fn, param, "param", dev)
    f32 = _is_f32(fn, param, "param")
    grad = _input(fn, grad, "grad", dev)
    _check_dtype(fn, grad, "grad", f32, "param")
    if momentum != 0:
        if buf is not None:
            buf = _gpu(fn, buf, "buf", dev, optional=True)
        if buf is None:
            raise ValueError(f"{fn}: buf is required when momentum != 0")
        _check_dtype(fn, buf, "buf", f32, "param")
    else:
        buf = None  # not read, whatever it is (as in reference.py)
    _check_written(fn, param, "param")
    if buf is not None:
        _check_written(fn, buf, "buf")
    _check_shape(fn, grad, "grad", param.shape)
    if buf is not None:
        _check_shape(fn, buf, "buf", param.shape)
    _check_overlap(fn, param, "param", grad, "grad", True)
    if buf is not None:
        _check_overlap(fn, buf, "buf", param, "param", False)
        _check_overlap(fn, buf, "buf", grad, "grad", False)

    if param.size:
        _typed("sgd", fn, param.dtype, dev)(
            _grid(param.size, dev), (_THREADS,),
            (param, grad, _NULL if buf is None else buf,
             *_sgd_scalars(param.dtype, lr, momentum, dampening, weight_decay, nesterov, first_step),
             np.int64(param.size)))
    return param


def sgd_step_many(params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """``sgd_step`` on every (params[k], grads[k], bufs[k]) with the same options, in ONE launch.

    The reference is the loop ``for p, g, b in zip(params, grads, bufs): sgd_step(p, g, b, ...)``
    (``bufs`` is None when momentum == 0). All arrays share one dtype; each one is checked as
    sgd_step checks it, under the name ``params[k]`` etc., before anything is written.
    The pointers of params and bufs and a table of (tensor, start) chunks go to the GPU in
    one array, cached while the same arrays come back (an optimizer's parameters do); the
    gradients' pointers in a small one of their own, as they are new arrays every step.
    Returns ``params``.
    """
    fn = "sgd_step_many"
    dev = _current_device()
    params, grads = list(params), list(grads)
    if len(grads) != len(params):
        raise ValueError(f"{fn}: grads must have one array per parameter ({len(params)}), got {len(grads)}")
    has_momentum = momentum != 0
    if has_momentum:
        if bufs is None:
            raise ValueError(f"{fn}: bufs is required when momentum != 0")
        bufs = list(bufs)
        if len(bufs) != len(params):
            raise ValueError(f"{fn}: bufs must have one array per parameter ({len(params)}), got {len(bufs)}")
    if not params:
        return params
    f32 = _is_f32(fn, _gpu(fn, params[0], "params[0]", dev), "params[0]")
    for k, p in enumerate(params):
        p = _gpu(fn, p, f"params[{k}]", dev)
        _check_dtype(fn, p, f"params[{k}]", f32, "params[0]")
        g = grads[k] = _input(fn, grads[k], f"grads[{k}]", dev)
        _check_dtype(fn, g, f"grads[{k}]", f32, "params[0]")
        _check_written(fn, p, f"params[{k}]")
        _check_shape(fn, g, f"grads[{k}]", p.shape)
        _check_overlap(fn, p, f"params[{k}]", g, f"grads[{k}]", True)
        if has_momentum:
            b = _gpu(fn, bufs[k], f"bufs[{k}]", dev)
            _check_dtype(fn, b, f"bufs[{k}]", f32, "params[0]")
            _check_written(fn, b, f"bufs[{k}]")
            _check_shape(fn, b, f"bufs[{k}]", p.shape)
            _check_overlap(fn, b, f"bufs[{k}]", p, f"params[{k}]", False)
            _check_overlap(fn, b, f"bufs[{k}]", g, f"grads[{k}]", False)

    sizes = tuple(p.size for p in params)
    chunk = max(4096, 1 << (_cdiv(sum(sizes), 1 << 16) - 1).bit_length())  # at most ~65536 chunks
    table = _sgd_table(dev, tuple(p.data.ptr for p in params),
                       tuple(b.data.ptr for b in bufs) if has_momentum else (), sizes, chunk)
    g_ptrs = _pointers(dev, tuple(g.data.ptr for g in grads))
    k = len(params)
    chunks = (table.size - 3 * k) // 2
    if chunks:
        _typed("sgd", fn, params[0].dtype, dev)(
            (min(chunks, _max_blocks(dev)),), (_THREADS,),
            (table[0:k], g_ptrs, table[k:2 * k], table[2 * k:3 * k],
             table[3 * k:3 * k + chunks], table[3 * k + chunks:], np.int64(chunks), np.int64(chunk),
             *_sgd_scalars(params[0].dtype, lr, momentum, dampening, weight_decay, nesterov, first_step)))
    return params


# The tables sgd_step_many reads live on the GPU; making one costs host work and a copy
# to the device, so they are cached by the addresses they hold. The parameters and
# momentum buffers of an optimizer stay where they are from step to step (one table for
# the run); the gradients are new arrays each step, at addresses CuPy's memory pool
# often gives again, so theirs is a separate, small table.

@functools.lru_cache(maxsize=16)
def _sgd_table(device, p_ptrs, b_ptrs, sizes, chunk):
    """One int64 array on ``device``: the pointers of params and bufs (zeros without
    momentum), the sizes, then for each chunk its tensor and its first element."""
    k = len(sizes)
    counts = -(-np.asarray(sizes, np.int64) // chunk)
    tensor = np.repeat(np.arange(k, dtype=np.int64), counts)
    start = (np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)) * chunk
    ptrs = np.array(p_ptrs + (b_ptrs or (0,) * k), np.uint64).view(np.int64)
    return _on(device, np.concatenate([ptrs, np.asarray(sizes, np.int64), tensor, start]))


@functools.lru_cache(maxsize=64)
def _pointers(device, ptrs):
    """The addresses ``ptrs`` as an int64 array on ``device``."""
    return _on(device, np.array(ptrs, np.uint64).view(np.int64))


def _on(device, a):
    cp = backend.cupy_if_loaded()
    with cp.cuda.Device(device):
        return cp.asarray(a)


# ------------------------------------------------------------------ adam ----

def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
              amsgrad, maximize, decoupled_weight_decay):
    """torch.optim.Adam's / AdamW's update, in place on ``param`` and the moments; see reference.py.

    One launch. The scalars (bias corrections from ``step``) are computed here in double,
    as reference.py computes them, and cast to the kernel's dtype.
    """
    fn = "adam_step"
    dev = _current_device()
    param = _gpu(fn, param, "param", dev)
    f32 = _is_f32(fn, param, "param")
    grad = _input(fn, grad, "grad", dev)
    _check_dtype(fn, grad, "grad", f32, "param")
    exp_avg = _gpu(fn, exp_avg, "exp_avg", dev)
    _check_dtype(fn, exp_avg, "exp_avg", f32, "param")
    exp_avg_sq = _gpu(fn, exp_avg_sq, "exp_avg_sq", dev)
    _check_dtype(fn, exp_avg_sq, "exp_avg_sq", f32, "param")
    if amsgrad:
        if max_exp_avg_sq is not None:
            max_exp_avg_sq = _gpu(fn, max_exp_avg_sq, "max_exp_avg_sq", dev, optional=True)
        if max_exp_avg_sq is None:
            raise ValueError(f"{fn}: max_exp_avg_sq is required when amsgrad is True")
        _check_dtype(fn, max_exp_avg_sq, "max_exp_avg_sq", f32, "param")
    else:
        max_exp_avg_sq = None  # not read, whatever it is (as in reference.py)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"{fn}: step must be an int, got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"{fn}: step must be >= 1 (the number of this step), got {step}")
    arrays = [(param, "param"), (grad, "grad"), (exp_avg, "exp_avg"), (exp_avg_sq, "exp_avg_sq")]
    if max_exp_avg_sq is not None:
        arrays.append((max_exp_avg_sq, "max_exp_avg_sq"))
    for a, name in arrays:
        if name != "grad":
            _check_written(fn, a, name)
    for a, name in arrays[1:]:
        _check_shape(fn, a, name, param.shape)
    # every array apart from every other (AdamW scales param before the gradient is read)
    for k, (a, name) in enumerate(arrays):
        for b, bname in arrays[:k]:
            _check_overlap(fn, a, name, b, bname, False)

    if param.size:
        t = param.dtype.type
        wd_mode = 0 if weight_decay == 0 else 2 if decoupled_weight_decay else 1
        _typed("adam", fn, param.dtype, dev)(
            _grid(param.size, dev), (_THREADS,),
            (param, grad, exp_avg, exp_avg_sq, _NULL if max_exp_avg_sq is None else max_exp_avg_sq,
             t(-1 if maximize else 1), t(1 - lr * weight_decay), t(weight_decay), t(1 - beta1), t(beta2),
             t(1 - beta2), t(-(lr / (1 - beta1 ** step))), t((1 - beta2 ** step) ** 0.5), t(eps),
             np.int32(wd_mode), np.int32(bool(amsgrad)), np.int64(param.size)))
    return param
