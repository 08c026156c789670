"""``tl.nn.functional``: the differentiable ops, as in ``torch.nn.functional``.

They live in ``tinytl/functional.py``; this module only re-exports them.
"""
from ..functional import cross_entropy, linear, mse_loss, relu

__all__ = ["linear", "relu", "cross_entropy", "mse_loss"]
