"""Loss modules: thin stateful wrappers around the losses in ``tinytl/functional.py``."""
from __future__ import annotations

from .. import functional as F
from .module import Module


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        F._check_reduction(reduction)
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction='{self.reduction}'"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of raw logits (N, C) against integer labels (N,).

    Args:
        reduction: "mean" (default) or "sum" over the batch.
    """

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean (or summed) squared error between input and target of the same shape.

    Args:
        reduction: "mean" (default, over every element) or "sum".
    """

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)
