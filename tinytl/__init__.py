"""tinytl: a small, readable and fast deep-learning engine for transfer learning.

Start reading at ``tinytl/tensor.py`` (the autograd), then
``tinytl/functional.py``, ``tinytl/nn/``, ``tinytl/optim/`` and
``tinytl/transfer/``; ``docs/tour.md`` walks through them in order.

The torch-named top-level functions (``tl.zeros``, ``tl.max``, ``tl.cat``, ``tl.float32``,
``tl.device``, ...) come from ``creation.py``, ``ops.py``, ``dtypes.py`` and ``device.py``.
"""
from . import backend, kernels
from ._random import Generator, manual_seed
from .tensor import (Tensor, detect_anomaly, enable_grad, inference_mode, is_anomaly_enabled, is_grad_enabled,
                     no_grad, set_grad_enabled, tensor)
from .tensor import div, matmul, mul, neg
from .ops import (abs, all, allclose, amax, amin, any, argmax, argmin, argsort, cat, chunk, clamp, clip, clone,
                  concat, concatenate, eq, equal, exp, flatten, ge, gt, is_tensor, isfinite, isnan, le, log,
                  logical_not, logsumexp, lt, max, maximum, mean, min, minimum, mm, ne, norm, numel, permute, pow,
                  reshape, return_types, sigmoid, sign, sort, split, sqrt, squeeze, stack, std, sum, swapaxes, t,
                  tanh, topk, transpose, unbind, unflatten, unique, unsqueeze, var, where)
from .ops import add_op as add, sub_op as sub
from .creation import (arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, ones,
                       ones_like, rand, rand_like, randint, randn, randn_like, randperm, zeros, zeros_like)
from .dtypes import (bool, double, float, float16, float32, float64, get_default_dtype, half, int, int8, int16,
                     int32, int64, long, short, uint8)
from .device import device
from ._printing import set_printoptions
from . import functional, nn, optim, cuda, backends
from .functional import relu
from .nn.functional import log_softmax, softmax

import numpy as _np

dtype = _np.dtype      # isinstance(x.dtype, tl.dtype), as torch.dtype
multiply, divide, negative, true_divide = mul, div, neg, div

__version__ = "0.1.0"

_LAZY = {"io", "transfer", "data", "datasets", "utils", "explain", "callbacks", "attacks", "memory"}


def save(obj, path, metadata=None):
    """Save a Module's state dict or a dict of arrays (safetensors, or .npz by extension), atomically."""
    from . import io
    return io.save(obj, path, metadata=metadata)


def load(path):
    """Load a checkpoint as a dict of NumPy arrays (never runs code from the file)."""
    from . import io
    return io.load(path)


def __getattr__(name):
    # transfer, io, data, datasets, utils, explain, callbacks, attacks and memory are imported on first
    # use: `import tinytl` stays fast.
    if name in _LAZY:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tinytl' has no attribute '{name}'")


__all__ = ["Tensor", "tensor", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled", "inference_mode",
           "detect_anomaly", "is_anomaly_enabled", "manual_seed", "Generator", "save", "load", "nn", "optim",
           "functional", "cuda", "backends", "backend", "kernels", "io", "transfer", "data", "datasets",
           "utils", "explain", "callbacks", "attacks", "memory", "__version__",
           # tensors: creation (creation.py)
           "zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like", "empty_like", "rand", "randn",
           "rand_like", "randn_like", "randint", "randperm", "arange", "linspace", "eye", "from_numpy", "as_tensor",
           "is_tensor", "numel",
           # dtypes and devices (dtypes.py, device.py), printing
           "dtype", "float32", "float", "float64", "double", "float16", "half", "int64", "long", "int32", "int",
           "int16", "short", "int8", "uint8", "bool", "get_default_dtype", "device", "set_printoptions",
           # maths (ops.py, tensor.py, functional.py)
           "add", "sub", "mul", "multiply", "div", "divide", "true_divide", "neg", "negative", "matmul", "mm",
           "pow", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "softmax", "log_softmax", "sign", "clamp",
           "clip", "maximum",
           "minimum", "where", "eq", "ne", "lt", "le", "gt", "ge", "logical_not", "isnan", "isfinite", "allclose",
           "equal", "all", "any",
           # reductions
           "sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp", "norm",
           "return_types",
           # shapes, joining, sorting
           "reshape", "flatten", "unflatten", "unsqueeze", "squeeze", "permute", "transpose", "swapaxes", "t",
           "cat", "concat", "concatenate", "stack", "chunk", "split", "unbind", "clone", "sort", "argsort", "topk",
           "unique"]
