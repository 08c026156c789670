"""tinytl: a small, readable and fast deep-learning engine for transfer learning.

Start reading at ``tinytl/tensor.py`` (the autograd), then
``tinytl/functional.py``, ``tinytl/nn/``, ``tinytl/optim.py`` and
``tinytl/transfer/``; ``docs/tour.md`` walks through them in order.
"""
from . import backend, kernels
from ._random import Generator, manual_seed
from .tensor import Tensor, detect_anomaly, enable_grad, is_anomaly_enabled, is_grad_enabled, no_grad, tensor
from . import functional, nn, optim, cuda

__version__ = "0.1.0"

_LAZY = {"io", "transfer", "data", "datasets", "memory"}


def save(obj, path, metadata=None):
    """Save a Module's state dict or a dict of arrays (safetensors, or .npz by extension), atomically."""
    from . import io
    return io.save(obj, path, metadata=metadata)


def load(path):
    """Load a checkpoint as a dict of NumPy arrays (never runs code from the file)."""
    from . import io
    return io.load(path)


def __getattr__(name):
    # transfer, io, data, datasets and memory are imported on first use: `import tinytl` stays fast.
    if name in _LAZY:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tinytl' has no attribute '{name}'")


__all__ = ["Tensor", "tensor", "no_grad", "enable_grad", "is_grad_enabled", "detect_anomaly",
           "is_anomaly_enabled", "manual_seed", "Generator", "save", "load", "nn", "optim", "functional", "cuda",
           "backend", "kernels", "io", "transfer", "data", "datasets", "memory", "__version__"]
