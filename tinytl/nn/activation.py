"""Activation layers (and DANN's GradientReversal): Tanh, Sigmoid, LeakyReLU, GELU, SiLU, Softmax, LogSoftmax (``torch.nn``'s names).

Each holds its options and calls one op of ``tinytl/nn/functional.py``; ``extra_repr``
prints them as torch does. (ReLU lives in ``layers.py``, where Sequential fuses it.)

Read next: ``tinytl/nn/normalization.py``.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import functional as F
from ..tensor import Tensor
from .module import Module


class Tanh(Module):
    """tanh(x), elementwise. As ``torch.nn.Tanh``."""

    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)), elementwise. As ``torch.nn.Sigmoid``."""

    def forward(self, x):
        return F.sigmoid(x)


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x. As ``torch.nn.LeakyReLU(negative_slope=0.01)``."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got {type(negative_slope).__name__}")
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    """x * Phi(x) (approximate="none", erf form) or its tanh approximation
    (approximate="tanh"). As ``torch.nn.GELU``."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """x * sigmoid(x). As ``torch.nn.SiLU``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.silu(x)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Softmax(Module):
    """exp(x) / sum exp(x) along ``dim``. As ``torch.nn.Softmax(dim=None)``."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along ``dim``, computed stably. As ``torch.nn.LogSoftmax(dim=None)``."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.log_softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class GradientReversal(Module):
    """``grad_reverse`` as a layer: identity forward, -coeff x the gradient backward.

    Args:
        coeff: λ (assign ``layer.coeff`` to change it, e.g. from a ``DANNSchedule``).
    """

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        F.grad_reverse(Tensor(np.zeros(1)), coeff)        # the same check, now
        self.coeff = float(coeff)

    def forward(self, x):
        return F.grad_reverse(x, self.coeff)

    def extra_repr(self):
        return f"coeff={self.coeff}"
