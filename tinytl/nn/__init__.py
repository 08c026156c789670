"""``tl.nn``: modules (layers with parameters), containers and losses, named as in ``torch.nn``;
``tl.nn.functional``, ``tl.nn.init`` and ``tl.nn.utils`` as torch's."""
from . import functional, init, utils
from .activation import GELU, GradientReversal, LeakyReLU, LogSoftmax, Sigmoid, SiLU, Softmax, Tanh
from .container import ModuleDict, ModuleList
from .dropout import Dropout
from .layers import Flatten, Identity, Linear, ReLU, Sequential, Unflatten
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss,
                     SmoothL1Loss)
from .module import Module, Parameter
from .normalization import BatchNorm1d, LayerNorm

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Identity", "Flatten", "Unflatten", "Sequential",
           "ModuleList", "ModuleDict", "Dropout", "Tanh", "Sigmoid", "LeakyReLU", "GELU", "SiLU", "Softmax", "LogSoftmax",
           "GradientReversal", "LayerNorm", "BatchNorm1d", "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "SmoothL1Loss",
           "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss", "functional", "init", "utils"]
