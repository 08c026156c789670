"""Layers: Linear, ReLU, Identity, Flatten, Unflatten and the Sequential container.

Each layer holds its parameters and calls a stateless op from
``tinytl/functional.py``. ``Sequential`` fuses a ``Linear`` directly followed
by a ``ReLU`` into one ``functional.linear(..., relu=True)`` call (one fused
epilogue kernel instead of two passes); the fusion is invisible from outside:
the layers, their names and the state dict are unchanged.

Read next: ``tinytl/nn/losses.py``, then ``tinytl/optim/``.
"""
from __future__ import annotations

import math
import sys
from collections import OrderedDict

import numpy as np

from .. import backend
from .. import functional as F
from .._random import generator
from ..tensor import Tensor, _call_tracked, reshape

_tensor_module = sys.modules[Tensor.__module__]   # tinytl/tensor.py (tinytl.tensor is the function)
from .module import Module, Parameter


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Linear(Module):
    """y = x @ weight.T + bias.

    Args:
        in_features, out_features: sizes of the input and output.
        bias: whether to learn an additive bias.
        dtype: float32 (default) or float64.
        device: 'cpu' or 'cuda'.

    Weight and bias start uniform in ±1/sqrt(in_features), as in PyTorch.

    ``weight`` has PyTorch's shape (out_features, in_features), but its memory
    is the C-contiguous (in_features, out_features) matrix seen through ``.T``
    (Fortran order): the forward GEMM ``x @ weight.T`` and the weight-gradient
    GEMM ``x.T @ g`` then run on plain row-major operands, which OpenBLAS does
    up to 1.5x faster on small layers (the input-gradient GEMM ``g @ W`` gets
    slower; bench/README.md, "Weight layout", has the figures). Shapes, values, the
    state dict and checkpoints are the same either way; a weight set from a
    C-ordered array works too, only on the slower GEMMs.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32,
                 device: str = "cpu"):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"Linear: dtype must be float32 or float64, got {dtype}")
        bound = 1.0 / math.sqrt(self.in_features)
        rng = generator()
        w = rng.uniform(-bound, bound, size=(self.out_features, self.in_features)).astype(dtype)
        self.weight = Parameter(backend.to_device(np.asfortranarray(w), device))
        if bias:
            b = rng.uniform(-bound, bound, size=(self.out_features,)).astype(dtype)
            self.bias = Parameter(backend.to_device(b, device))
        else:
            self.register_parameter("bias", None)

    def forward(self, x, relu: bool = False) -> Tensor:
        return F.linear(x, self.weight, self.bias, relu=relu, name="Linear+ReLU" if relu else "Linear")

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    """max(x, 0), elementwise."""

    def forward(self, x) -> Tensor:
        return F.relu(x)


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed head)."""

    def forward(self, x):
        return x


class Flatten(Module):
    """Flattens dimensions start_dim..end_dim into one (default: all but the batch)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        shape = x.shape
        s = self.start_dim % len(shape)
        e = self.end_dim % len(shape)
        new = shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]
        return reshape(x, new)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Expands dimension ``dim`` into ``unflattened_size`` (one entry may be -1):
    (N, 12) with Unflatten(1, (3, 4)) becomes (N, 3, 4). As ``torch.nn.Unflatten``."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Unflatten: dim must be an int, got {type(dim).__name__}")
        if not isinstance(unflattened_size, (tuple, list)) or not all(
                isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in unflattened_size):
            raise TypeError(f"Unflatten: unflattened_size must be a tuple of ints, got {unflattened_size!r}")
        self.dim = int(dim)
        self.unflattened_size = unflattened_size

    def forward(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        shape = x.shape
        if not -len(shape) <= self.dim < len(shape):
            raise IndexError(f"Unflatten: dim {self.dim} is out of range for an input of shape {shape}")
        d = self.dim % len(shape)
        sizes = tuple(int(n) for n in self.unflattened_size)
        known = int(np.prod([n for n in sizes if n != -1]))
        if (sizes.count(-1) > 1 or (-1 not in sizes and known != shape[d])
                or (-1 in sizes and (known == 0 or shape[d] % known))):
            raise ValueError(f"Unflatten: sizes {list(sizes)} don't multiply up to the size of dim {d} "
                             f"({shape[d]}) of the input of shape {shape}")
        return reshape(x, shape[:d] + sizes + shape[d + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Sequential(Module):
    """Calls its layers in order. Supports indexing, slicing, len, iteration,
    ``append`` and item assignment (``model[-1] = nn.Linear(128, 5)``).

    ``Sequential(a, b, c)`` names its layers "0", "1", "2";
    ``Sequential(OrderedDict(encoder=a, head=b))`` uses the given names. As in
    PyTorch, a slice keeps the layers' names: ``model[2:]`` of a 5-layer
    model holds "2", "3", "4", so its state dict keys match the full model's.
    """

    def __init__(self, *layers: Module):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], dict):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {name!r} is a {type(layer).__name__}, not a Module")
            self.add_module(name, layer)

    def _layers(self):
        return [m for m in self._modules.values()]

    def forward(self, x):
        layers = list(self._modules.values())
        i, n = 0, len(layers)
        while i < n:
            layer = layers[i]
            if type(layer) is Linear and i + 1 < n and type(layers[i + 1]) is ReLU:
                nxt = layers[i + 1]
                if not (layer._forward_pre_hooks or layer._forward_hooks
                        or nxt._forward_pre_hooks or nxt._forward_hooks):   # hooks see both layers
                    # Linear + ReLU fused into one kernel. Without hooks, Module.__call__ would
                    # only call forward (or, under detect_anomaly, _call_tracked): done here
                    # directly, a Python call fewer per layer (type(layer) is exactly Linear)
                    x = (layer.forward(x, relu=True) if not _tensor_module._anomaly
                         else _call_tracked(layer, (x,), {"relu": True}))
                    i += 2
                    continue
            x = layer(x)
            i += 1
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._layers())

    def _index(self, idx: int) -> int:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"Sequential index {idx} out of range for {n} layers")
        return idx % n

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return self._layers()[self._index(idx)]

    def __setitem__(self, idx, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: can only hold Modules, got {type(module).__name__}")
        key = list(self._modules.keys())[self._index(idx)]
        self.add_module(key, module)

    def append(self, module: Module):
        """Add a layer at the end; returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        numbers = [int(k) for k in self._modules if k.isdigit()]
        self.add_module(str(max(numbers) + 1 if numbers else len(self)), module)   # never replaces a layer
        return self
