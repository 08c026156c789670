"""``tl.cuda``: ask whether a GPU can be used (never imports CuPy until asked)."""
from . import backend


def is_available() -> bool:
    """True when CuPy imports and sees a CUDA GPU."""
    return backend.cuda_is_available()


def device_count() -> int:
    """Number of CUDA GPUs CuPy sees (0 without CuPy or a GPU)."""
    if not backend.cuda_is_available():
        return 0
    return backend.cupy_if_loaded().cuda.runtime.getDeviceCount()
