"""``tl.nn``: modules (layers with parameters) and losses, named as in ``torch.nn``."""
from . import functional
from .layers import Flatten, Identity, Linear, ReLU, Sequential
from .losses import CrossEntropyLoss, MSELoss
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Identity", "Flatten", "Sequential",
           "CrossEntropyLoss", "MSELoss", "functional"]
