"""Adversarial fine-tuning: a transfer recipe that makes the fine-tuned model robust.

Madry et al. (2018) train on the worst case in the eps-ball: min over the weights of the
expected max over ||delta|| <= eps of the loss at x + delta, the inner max approximated by
PGD on the current model at every step. ``adversarial_finetune`` runs that min-max on the
labelled target set of a transfer, mixing adversarial and clean examples in each batch
(Goodfellow et al., 2015, mixed them too), and respects what the transfer tools set up:
frozen parameters stay frozen and untouched, a replaced head trains like any other layer.

Read next: ``tinytl/attacks.py`` (the attacks it trains against).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .._random import generator
from ..nn import CrossEntropyLoss, Module
from ..optim import SGD, Adam, Optimizer
from ..tensor import Tensor
from ._checks import _check_count, _check_module, _check_positive

__all__ = ["adversarial_finetune"]

OPTIMIZERS = ("sgd", "adam")


def _rows(array, idx, device):
    """``array[idx]`` as an array on ``device`` (idx a NumPy index array)."""
    b = array[backend.to_device(idx, "cuda")] if backend.is_cupy_array(array) else array[idx]
    return backend.to_device(b, device)


def adversarial_finetune(model: Module, X, y, *, attack, ratio: float = 0.5, epochs: int, lr=None,
                         batch_size: int = 64, seed=None, optimizer="sgd", momentum: float = 0.9,
                         weight_decay: float = 0.0, loss_fn=None) -> Module:
    """Fine-tune ``model`` on (X, y) against ``attack`` (Madry et al., 2018), in place.

    Every batch of B examples (reshuffled each epoch): the first round(ratio * B) are
    replaced by ``attack(model, x, y)``, crafted on the model as it is at that step (the
    attack runs it in eval mode and leaves its parameters and gradients as they were);
    then one optimizer step on the loss of the whole mixed batch:

        min_w  E[ (1 - ratio) * L(w; x, y) + ratio * max_{||d|| <= eps} L(w; x + d, y) ]

    ``ratio=1`` is Madry's pure adversarial training, ``ratio=0`` plain fine-tuning.

    Only trainable parameters move: the optimizer is built over those with
    ``requires_grad`` (frozen ones get no gradient, no weight decay and keep their freeze
    state), so it composes with ``freeze``, ``replace_head`` and the other recipes. An
    ``Optimizer`` already built (e.g. over ``l2sp_groups``) may be passed instead.

    Args:
        model: the Module to fine-tune (e.g. a pretrained backbone with a new head).
        X, y: the labelled inputs (N, ...) float and integer labels (N,) (NumPy, CuPy or Tensors).
        attack: a callable ``(model, x, y) -> x_adv``, e.g.
            ``functools.partial(tl.attacks.pgd, eps=0.3, alpha=0.1, steps=7)``.
        ratio: the fraction of each batch replaced by adversarial examples, in [0, 1].
        epochs: passes over the data (>= 0).
        lr: the learning rate (required unless ``optimizer`` is an Optimizer).
        batch_size: examples per step.
        seed: seed of the shuffling (None: tinytl's global generator).
        optimizer: "sgd" (default; ``momentum`` and ``weight_decay`` apply), "adam", or an
            ``tl.optim`` Optimizer over the model's parameters.
        momentum, weight_decay: for "sgd" (``weight_decay`` also for "adam").
        loss_fn: default ``nn.CrossEntropyLoss()``.

    Returns:
        ``model``, fine-tuned; each module's training flag is restored as it was.

    Raises:
        ValueError / TypeError: a bad argument, before anything trains.
    """
    fn = "adversarial_finetune"
    _check_module(model, "model", fn)
    if not callable(attack):
        raise TypeError(f"{fn}: attack must be a callable (model, x, y) -> x_adv, e.g. "
                        f"functools.partial(tl.attacks.pgd, eps=..., alpha=..., steps=...), got "
                        f"{type(attack).__name__}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.number)) or not math.isfinite(ratio) \
            or not 0 <= ratio <= 1:
        raise ValueError(f"{fn}: ratio must be a number in [0, 1], got {ratio!r}")
    epochs = _check_count(epochs, "epochs", fn)
    batch_size = _check_positive(batch_size, "batch_size", fn, integer=True)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"{fn}: seed must be None or an integer >= 0, got {seed!r}")
    X = X.data if isinstance(X, Tensor) else X
    y = y.data if isinstance(y, Tensor) else y
    X = X if (isinstance(X, np.ndarray) or backend.is_cupy_array(X)) else np.asarray(X)
    y = y if (isinstance(y, np.ndarray) or backend.is_cupy_array(y)) else np.asarray(y)
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"{fn}: X is empty (shape {tuple(X.shape)})")
    if X.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: X must be float32 or float64, got dtype {X.dtype}")
    if y.dtype.kind not in "iu" or tuple(y.shape) != (X.shape[0],):
        raise ValueError(f"{fn}: y must hold integer labels of shape ({X.shape[0]},), got dtype {y.dtype} and "
                         f"shape {tuple(y.shape)}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if isinstance(optimizer, Optimizer):
        opt = optimizer
        known = {id(p) for g in opt.param_groups for p in g["params"]}
        if not any(id(p) in known for p in trainable):
            raise ValueError(f"{fn}: the optimizer holds none of the model's trainable parameters")
    else:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"{fn}: optimizer must be one of {OPTIMIZERS} or a tl.optim Optimizer, got "
                             f"{optimizer!r}")
        if lr is None:
            raise TypeError(f"{fn}: lr is required with optimizer={optimizer!r}")
        lr = _check_positive(lr, "lr", fn)
        if not trainable:
            raise ValueError(f"{fn}: model has no trainable parameter (all are frozen)")
        opt = (SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay) if optimizer == "sgd" else
               Adam(trainable, lr=lr, weight_decay=weight_decay))
    loss_fn = CrossEntropyLoss() if loss_fn is None else loss_fn
    rng = generator() if seed is None else np.random.default_rng(int(seed))
    device = trainable[0].device if trainable else next(iter(model.parameters())).device
    n = X.shape[0]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train()
        for _ in range(epochs):
            order = rng.permutation(n)
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                xb, yb = _rows(X, idx, device), _rows(y, idx, device)
                n_adv = int(round(ratio * len(idx)))
                if n_adv:
                    x_adv = attack(model, xb[:n_adv], yb[:n_adv])
                    x_adv = x_adv.data if isinstance(x_adv, Tensor) else x_adv
                    if tuple(x_adv.shape) != tuple(xb[:n_adv].shape):
                        raise ValueError(f"{fn}: the attack returned shape {tuple(x_adv.shape)} for a batch of "
                                         f"shape {tuple(xb[:n_adv].shape)}")
                    xp = backend.get_array_module(xb)
                    xb = xp.concatenate([backend.to_device(x_adv, device).astype(xb.dtype, copy=False),
                                         xb[n_adv:]])
                loss = loss_fn(model(Tensor(xb)), Tensor(yb))
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return model
