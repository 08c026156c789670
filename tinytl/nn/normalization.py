"""Normalization layers: LayerNorm and BatchNorm1d, as ``torch.nn``'s.

BatchNorm1d keeps its running statistics as *buffers* (``register_buffer``): state that
is saved in the state dict, moved by ``.to(device)`` and cast by ``.float()``, but is not
a parameter (no gradient, not seen by the optimizer). In ``train()`` it normalises with
the batch's statistics and updates the running ones; in ``eval()`` it uses the running ones.

Read next: ``tinytl/nn/functional.py`` (``layer_norm``, ``batch_norm``: one node each,
with the closed-form backward).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import functional as F
from .module import Module, Parameter


def _float_dtype(dtype, who):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{who}: dtype must be float32 or float64, got {dtype}")
    return dtype


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last dimensions
    ``normalized_shape`` (biased variance). As ``torch.nn.LayerNorm(normalized_shape,
    eps=1e-5, elementwise_affine=True, bias=True)``: weight starts at ones, bias at zeros.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 dtype=np.float32, device: str = "cpu"):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        try:
            normalized_shape = tuple(int(n) for n in normalized_shape)
        except TypeError:
            raise TypeError(f"LayerNorm: normalized_shape must be an int or a tuple of ints, "
                            f"got {normalized_shape!r}") from None
        if not normalized_shape or any(n <= 0 for n in normalized_shape):
            raise ValueError(f"LayerNorm: normalized_shape must be non-empty and positive, got {normalized_shape}")
        dtype = _float_dtype(dtype, "LayerNorm")
        self.normalized_shape = normalized_shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(backend.to_device(np.ones(normalized_shape, dtype), device))
            if bias:
                self.bias = Parameter(backend.to_device(np.zeros(normalized_shape, dtype), device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps, name="LayerNorm")

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class BatchNorm1d(Module):
    """Batch normalisation of (N, C) or (N, C, L) inputs over N (and L), per channel.

    y = (x - mean) / sqrt(var + eps) * weight + bias. In ``train()``: batch mean and
    biased batch variance, and the running statistics are updated as
    running = (1 - momentum) * running + momentum * batch (the unbiased batch variance
    for running_var), or with the cumulative average 1 / num_batches_tracked when
    ``momentum=None``. In ``eval()``: the running statistics (batch ones when
    ``track_running_stats=False``). As ``torch.nn.BatchNorm1d(num_features, eps=1e-5,
    momentum=0.1, affine=True, track_running_stats=True, *, bias=True)``.

    State dict: weight, bias, running_mean, running_var, num_batches_tracked (int64),
    torch's keys in torch's order; a state dict without num_batches_tracked (older
    checkpoints) loads, as in torch.
    """

    _optional_buffers = ("num_batches_tracked",)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=np.float32, device: str = "cpu", *, bias: bool = True):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral) or num_features <= 0:
            raise ValueError(f"BatchNorm1d: num_features must be a positive integer, got {num_features!r}")
        if momentum is not None and not (isinstance(momentum, numbers.Real) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"BatchNorm1d: momentum must be a number in [0, 1] or None, got {momentum!r}")
        dtype = _float_dtype(dtype, "BatchNorm1d")
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        C = self.num_features
        if affine:
            self.weight = Parameter(backend.to_device(np.ones(C, dtype), device))
            if bias:
                self.bias = Parameter(backend.to_device(np.zeros(C, dtype), device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(backend.to_device(np.zeros(C, dtype), device)))
            self.register_buffer("running_var", Tensor(backend.to_device(np.ones(C, dtype), device)))
            self.register_buffer("num_batches_tracked", Tensor(backend.to_device(np.array(0, np.int64), device)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        """Running mean 0, running variance 1, no batch tracked."""
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def _check_input(self, x):
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) not in (2, 3):
            raise ValueError(f"BatchNorm1d: expected 2D or 3D input (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L), got {len(shape)}D input of shape {shape}")
        if shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}): expected input of shape (N, {self.num_features}) "
                             f"or (N, {self.num_features}, L), got {shape}")

    def forward(self, x):
        self._check_input(x)
        factor = 0.0 if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        if self.training and self.track_running_stats:
            if (getattr(x, "shape", (0,))[0] * (x.shape[2] if len(x.shape) == 3 else 1)) <= 1:
                raise ValueError(f"BatchNorm1d: expected more than 1 value per channel when training, "
                                 f"got input of shape {tuple(x.shape)}")
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:     # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        track = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch, factor, self.eps, name="BatchNorm1d")

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")
