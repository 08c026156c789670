"""Data types under PyTorch's names: ``tl.float32``, ``tl.long``, ``tl.bool``, ...

A tinytl dtype IS a NumPy dtype (``tl.float32 is np.dtype('float32')``): a tensor's
``.dtype`` is its array's dtype, so ``x.dtype == tl.float32`` and
``x.dtype == np.float32`` are both True, and ``tl.tensor(..., dtype=np.float64)`` keeps
working. What differs from torch: ``print(x.dtype)`` shows ``float32``, not
``torch.float32`` (the tensor's repr says ``dtype=tinytl.float64``).

The default floating dtype is float32, as in PyTorch.

Read next: ``tinytl/device.py``.
"""
from __future__ import annotations

import builtins

import numpy as np

float32 = float = np.dtype(np.float32)
float64 = double = np.dtype(np.float64)
float16 = half = np.dtype(np.float16)
int64 = long = np.dtype(np.int64)
int32 = int = np.dtype(np.int32)
int16 = short = np.dtype(np.int16)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
bool = np.dtype(np.bool_)

_DEFAULT = float32
_NAMES = {d: n for n, d in [("bool", bool), ("uint8", uint8), ("int8", int8), ("int16", int16), ("int32", int32),
                            ("int64", int64), ("float16", float16), ("float32", float32), ("float64", float64)]}
# Tensor.type() strings, as torch's 'torch.FloatTensor' (here 'tinytl.FloatTensor')
_TYPE_NAMES = {float32: "FloatTensor", float64: "DoubleTensor", float16: "HalfTensor", int64: "LongTensor",
               int32: "IntTensor", int16: "ShortTensor", int8: "CharTensor", uint8: "ByteTensor", bool: "BoolTensor"}


def get_default_dtype() -> np.dtype:
    """The dtype of tensors made from Python floats: float32 (``torch.get_default_dtype``)."""
    return _DEFAULT


def is_dtype(x) -> "builtins.bool":
    """True for what ``as_dtype`` accepts: a NumPy dtype, a NumPy scalar type, or ``float``/``int``/``bool``."""
    return isinstance(x, np.dtype) or (isinstance(x, type) and (issubclass(x, np.generic) or
                                                                x in (builtins.float, builtins.int, builtins.bool)))


def as_dtype(x, fn: str = "dtype") -> np.dtype:
    """``x`` as one of the dtypes above; None gives the default float dtype.

    Python's ``float``/``int``/``bool`` mean float64/int64/bool (as ``torch.tensor(..., dtype=float)``).
    Raises TypeError naming ``fn`` for anything that is not a real or boolean dtype."""
    if x is None:
        return _DEFAULT
    try:
        d = np.dtype(x) if is_dtype(x) or isinstance(x, str) else None
    except TypeError:
        d = None
    if d is None or d not in _NAMES:
        raise TypeError(f"{fn}: dtype must be one of tl.{', tl.'.join(_NAMES.values())}, got {x!r}")
    return d


def name(d) -> str:
    """'tinytl.float32', as torch prints 'torch.float32'."""
    return "tinytl." + _NAMES.get(np.dtype(d), str(d))
