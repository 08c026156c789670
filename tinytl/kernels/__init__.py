"""Kernel dispatch: the one point where the engine picks an implementation.

Three twins implement every kernel with the same names and signatures:
``reference`` (pure NumPy, the specification), ``cpu`` (fused C++ in
``tinytl._C``) and ``cuda`` (CUDA C compiled at run time by CuPy).

On the CPU the C++ kernels are used when the compiled module loads; otherwise
tinytl warns once and falls back to the reference. ``TINYTL_KERNELS=numpy``
forces the reference kernels (useful to compare, or to debug);
``TINYTL_KERNELS=cpp`` requires the C++ ones: ``import tinytl`` then raises
ImportError instead of falling back (CI's sanitizer run uses it, so that an
instrumented build that fails to load cannot pass by testing nothing).

``for_array(a)`` returns the kernel module for the device ``a`` lives on.
"""
from __future__ import annotations

import os
import warnings

from .. import backend
from . import reference

_requested = os.environ.get("TINYTL_KERNELS", "").strip().lower() or "auto"
_cpu_error = None

if _requested not in ("auto", "cpp", "numpy"):
    warnings.warn(f"TINYTL_KERNELS={_requested!r} is not one of 'auto', 'cpp', 'numpy'; using 'auto'",
                  RuntimeWarning, stacklevel=2)
    _requested = "auto"

if _requested == "numpy":
    cpu_kernels = reference
else:
    try:
        from . import cpu as cpu_kernels
    except ImportError as e:  # the extension was not built or cannot load
        if _requested == "cpp":
            raise ImportError(f"TINYTL_KERNELS=cpp requires the compiled kernels (tinytl._C), which could not "
                              f"be loaded: {e}") from e
        _cpu_error = e
        cpu_kernels = reference
        warnings.warn(
            f"tinytl: the compiled kernels (tinytl._C) could not be loaded ({e}); "
            "falling back to the pure-NumPy reference kernels, which are slower. "
            "Reinstall with a C++ compiler available to get them.",
            RuntimeWarning, stacklevel=2)

_cuda_kernels = None


def cuda_kernels():
    """The CUDA kernel module (imports cupy and compiles kernels lazily)."""
    global _cuda_kernels
    if _cuda_kernels is None:
        from . import cuda as _cuda_kernels_module
        _cuda_kernels = _cuda_kernels_module
    return _cuda_kernels


def for_array(a):
    """Kernel module for the device the array ``a`` lives on."""
    if backend.is_cupy_array(a):
        return cuda_kernels()
    return cpu_kernels


def relu_mask_shape(n: int, m: int) -> tuple:
    """Shape of the packed ReLU mask of an (n, m) output: (n, ceil(m / 8)) uint8 (layout in reference.py)."""
    return (n, (m + 7) // 8)


def backend_info() -> dict:
    """Which kernels are active: {'cpu': 'cpp'|'numpy', 'cpu_threads': n, 'requested': ..., 'cpu_error': ...}.

    ``cpu_threads``: the most threads one large C++ kernel call may use
    (``TINYTL_NUM_THREADS``, else the CPUs this process may run on).
    """
    threads = 1
    if cpu_kernels is not reference:
        from .. import _C
        threads = _C.max_threads()
    return {
        "cpu": "numpy" if cpu_kernels is reference else "cpp",
        "cpu_threads": threads,
        "requested": _requested,
        "cpu_error": None if _cpu_error is None else str(_cpu_error),
        "cuda_loaded": _cuda_kernels is not None,
    }
