"""Dropout: zeroes inputs at random while training, the identity in ``eval()``.

Read next: ``tinytl/nn/functional.py`` (``dropout``: inverted scaling, the mask drawn
from tinytl's global generator, so ``tl.manual_seed`` reproduces it).
"""
from __future__ import annotations

from . import functional as F
from .module import Module


class Dropout(Module):
    """Zero each element with probability ``p`` during training and scale the rest by
    1 / (1 - p); the identity in eval mode. As ``torch.nn.Dropout(p=0.5, inplace=False)``.

    Raises:
        ValueError: p outside [0, 1].
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        F._check_p(p, "Dropout")
        self.p = p
        self.inplace = inplace

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
