"""Loss modules: thin stateful wrappers around the loss functions, named as in ``torch.nn``.

``CrossEntropyLoss`` and ``MSELoss`` call ``tinytl/functional.py`` (cross_entropy runs
the fused softmax_xent kernel in the plain case); the others call
``tinytl/nn/functional.py``. Every loss takes ``reduction="none" | "mean" | "sum"``.
"""
from __future__ import annotations

import numpy as np

from .. import functional as _F
from ..tensor import Tensor
from . import functional as F
from .module import Module


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        reduction = _F._legacy_reduction(size_average, reduce, reduction)
        _F._check_reduction(reduction)
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction='{self.reduction}'"

    def _weight_buffer(self, name, w):
        """A class or element weight kept as a buffer, as torch's weighted losses do (it
        moves with ``.to(device)``)."""
        if w is not None and not isinstance(w, Tensor):
            w = Tensor(np.asarray(w, dtype=np.float32) if not hasattr(w, "dtype") else w)
        if w is not None and w.dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}: {name} must be floating point, got dtype {w.dtype}")
        self.register_buffer(name, w)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of raw logits (N, C) (or (N, C, d1, ...)) against integer
    labels (N,) or class probabilities of the logits' shape.

    Args:
        weight: a rescaling weight per class, shape (C,), or None.
        ignore_index: labels equal to it contribute nothing (nor to the mean's divisor).
        reduction: "mean" (default; with weights, the sum over the sum of the weights of
            the labels not ignored), "sum" or "none".
        label_smoothing: e in [0, 1]: the target becomes (1 - e) onehot + e / C.

    As ``torch.nn.CrossEntropyLoss``; see ``tinytl.functional.cross_entropy``.
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(size_average, reduce, reduction)
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self._weight_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return _F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                                reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (e.g. a LogSoftmax's output) at integer
    labels, with ``weight`` and ``ignore_index`` as CrossEntropyLoss. As ``torch.nn.NLLLoss``."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self._weight_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class MSELoss(_Loss):
    """Squared error between input and target of the same shape: mean (default), sum or
    per element ("none"). As ``torch.nn.MSELoss``."""

    def forward(self, input, target):
        return _F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Absolute error |input - target|, reduced. As ``torch.nn.L1Loss``."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """0.5 d^2 / beta for |d| < beta, else |d| - 0.5 beta. As ``torch.nn.SmoothL1Loss(beta=1.0)``."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be non-negative, got {beta!r}")
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """0.5 d^2 for |d| < delta, else delta (|d| - 0.5 delta). As ``torch.nn.HuberLoss(delta=1.0)``."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        if not delta > 0:
            raise ValueError(f"HuberLoss: delta must be positive, got {delta!r}")
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities in [0, 1] (logs clamped at -100), optional
    per-element ``weight``. As ``torch.nn.BCELoss``."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self._weight_buffer("weight", weight)

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of sigmoid(logits), computed stably from the logits, with an
    optional ``weight`` and a ``pos_weight`` per class (the weight of positive examples).
    As ``torch.nn.BCEWithLogitsLoss``."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self._weight_buffer("weight", weight)
        self._weight_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class KLDivLoss(Module):
    """KL divergence of log-probabilities ``input`` from ``target`` (probabilities, or log
    ones with ``log_target``). reduction="batchmean" gives the KL per sample; "mean" (the
    default, as torch) divides by every element and warns. As ``torch.nn.KLDivLoss``."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
        super().__init__()
        reduction = _F._legacy_reduction(size_average, reduce, reduction)
        if reduction not in F._KL_REDUCTIONS:
            raise ValueError(f"KLDivLoss: reduction must be one of {F._KL_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)

    def extra_repr(self):
        return f"reduction='{self.reduction}'"
