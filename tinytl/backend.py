"""The one place that knows NumPy from CuPy.

Everything else in tinytl asks this module which array library an array belongs
to (``get_array_module``), which device it lives on (``device_of``), and how to
move it (``to_device``). CuPy is imported lazily, on the first use of a GPU, so
``import tinytl`` never pays for it.

Read next: ``tinytl/kernels/__init__.py`` (which kernels run on which device).
"""
from __future__ import annotations

import importlib

import numpy as np

DEVICES = ("cpu", "cuda")

_cupy = None          # the cupy module once imported
_cupy_error = None    # why importing it failed, if it did


def _import_cupy():
    """Import cupy on first use; remember a failure so we do not retry each call."""
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            _cupy = importlib.import_module("cupy")
        except Exception as e:  # ImportError, or a CUDA library failing to load
            _cupy_error = e
    return _cupy


def cupy_if_loaded():
    """The cupy module if it has been imported already, else None (never imports it)."""
    return _cupy


def cuda_is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    cp = _import_cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _require_cuda():
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError(
            "device 'cuda' needs CuPy, which could not be imported "
            f"({type(_cupy_error).__name__}: {_cupy_error}). Install the extra that "
            "matches your CUDA toolkit: pip install 'tinytl[cuda12]' or 'tinytl[cuda13]'.")
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise RuntimeError(f"device 'cuda': CuPy is installed but no CUDA GPU or driver was found ({e})") from e
    if n == 0:
        raise RuntimeError("device 'cuda': CuPy is installed but no CUDA GPU was found")
    return cp


def check_device(device) -> str:
    """Normalise a device name ('cpu', 'cuda', 'cuda:0') or a ``tl.device`` (a str subclass) and validate it."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', or a tl.device, got {type(device).__name__}")
    name = device.split(":", 1)[0]
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if name == "cuda":
        _require_cuda()
    return name


def is_cupy_array(a) -> bool:
    """True when ``a`` is a CuPy array (never imports CuPy: without it loaded, nothing is one)."""
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def get_array_module(*arrays):
    """numpy, or cupy if any argument is a cupy array (Chainer's rule)."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def device_of(array) -> str:
    """'cuda' for a CuPy array, else 'cpu'."""
    return "cuda" if is_cupy_array(array) else "cpu"


def to_device(array, device: str):
    """Return ``array`` on ``device`` (no copy when it is already there).

    The copy keeps an F-contiguous array F-contiguous both ways (Linear stores its weight
    transposed), as cupy.asarray does; cupy.asnumpy on its own would give C order."""
    device = check_device(device)
    if device == "cpu":
        return _cupy.asnumpy(array, order="A") if is_cupy_array(array) else array
    cp = _require_cuda()
    return array if isinstance(array, cp.ndarray) else cp.asarray(array)


def to_numpy(array) -> np.ndarray:
    """The array as a NumPy array on the host (a copy from the GPU; no copy on the CPU)."""
    return _cupy.asnumpy(array) if is_cupy_array(array) else np.asarray(array)
