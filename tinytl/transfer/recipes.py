"""The fine-tuning recipes for few labels: discriminative learning rates, gradual unfreezing,
L2-SP, feature extraction, linear probes and LP-FT."""
from __future__ import annotations

import fnmatch
import math
from collections import OrderedDict

import numpy as np

from .. import backend
from .._random import generator
from ..nn import CrossEntropyLoss, Module, Sequential
from ..optim import SGD
from ..tensor import Tensor, as_array, no_grad
from ._checks import _check_count, _check_module, _check_positive


# ---------------------------------------------------- parameter groups ----

def _default_groups(model: Module) -> list:
    """One group per module that directly owns parameters, input to output."""
    groups, seen = [], set()
    for mname, mod in model.named_modules():
        ps = []
        for k, p in mod._parameters.items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                ps.append((f"{mname}.{k}" if mname else k, p))
        if ps:
            groups.append((mname or type(mod).__name__, ps))
    return groups


def _resolve_groups(model: Module, groups, fn: str) -> list:
    """[(group name, [(param name, Parameter)])], ordered input to output.

    Each item of ``groups`` may be a sub-Module, a glob pattern (str), a list
    of patterns, or a list of Parameters. Every parameter must be in exactly
    one group.
    """
    _check_module(model, "model", fn)
    if groups is None:
        out = _default_groups(model)
        if not out:
            raise ValueError(f"{fn}: model has no parameters")
        return out
    if isinstance(groups, (str, Module)) or not hasattr(groups, "__iter__"):
        raise TypeError(f"{fn}: groups must be a list (one item per layer group), got {type(groups).__name__}")
    own = OrderedDict(model.named_parameters())
    name_of = {id(p): n for n, p in own.items()}
    out, taken = [], {}
    for i, item in enumerate(groups):
        if isinstance(item, Module):
            ps = [(name_of.get(id(p)), p) for p in item.parameters()]
            label = type(item).__name__
        elif isinstance(item, str) or (isinstance(item, (list, tuple)) and item
                                       and all(isinstance(s, str) for s in item)):
            pats = [item] if isinstance(item, str) else list(item)
            ps = [(n, p) for n, p in own.items() if any(fnmatch.fnmatchcase(n, pat) for pat in pats)]
            label = ",".join(pats)
        elif isinstance(item, (list, tuple)) and all(isinstance(p, Tensor) for p in item):
            ps = [(name_of.get(id(p)), p) for p in item]
            label = f"group {i}"
        else:
            raise TypeError(f"{fn}: groups[{i}] must be a Module, a glob pattern, a list of patterns or a "
                            f"list of Parameters, got {item!r}")
        if not ps:
            raise ValueError(f"{fn}: groups[{i}] ({label}) holds no parameter")
        for n, p in ps:
            if n is None:
                raise ValueError(f"{fn}: groups[{i}] holds a parameter that is not in model")
            if n in taken:
                raise ValueError(f"{fn}: parameter '{n}' is in groups[{taken[n]}] and groups[{i}]")
            taken[n] = i
        out.append((label, ps))
    left = [n for n in own if n not in taken]
    if left:
        raise ValueError(f"{fn}: parameters {left} are in no group (they would never train)")
    return out


def discriminative_lr(model: Module, base_lr: float, decay: float = 2.6, groups=None) -> list:
    """Parameter groups whose learning rate shrinks layer by layer toward the input (ULMFiT).

    The group closest to the output gets ``base_lr``; the k-th group below
    it gets ``base_lr / decay**k``: general low-level features move little,
    task-specific top layers move most. Frozen parameters are included (SGD
    skips them while frozen), so the same optimizer keeps working when
    ``unfreeze`` or ``GradualUnfreezing`` makes them trainable.

    Args:
        model: the Module.
        base_lr: the learning rate of the top group.
        decay: the ratio between neighbouring groups (ULMFiT uses 2.6; 1 = no decay).
        groups: None (one group per module that directly owns parameters, in
            registration order, input to output) or a list, input to output, of
            sub-Modules, glob patterns, lists of patterns or lists of Parameters.

    Returns:
        A list of dicts ``{"params", "lr", "name"}`` for ``tl.optim.SGD(groups, lr=base_lr, ...)``.
    """
    base_lr = _check_positive(base_lr, "base_lr", "discriminative_lr")
    decay = _check_positive(decay, "decay", "discriminative_lr")
    resolved = _resolve_groups(model, groups, "discriminative_lr")
    n = len(resolved)
    return [{"params": [p for _, p in ps], "lr": base_lr / decay ** (n - 1 - i), "name": label}
            for i, (label, ps) in enumerate(resolved)]


class GradualUnfreezing:
    """Unfreeze a model from the top down, one layer group every ``every`` epochs (ULMFiT).

    At construction everything but the top group (closest to the output) is
    frozen. Build the optimizer over *all* parameters (SGD skips frozen ones,
    and starts fresh momentum for each group as it thaws)::

        sched = GradualUnfreezing(model, every=1)
        opt = tl.optim.SGD(discriminative_lr(model, 0.01), lr=0.01, momentum=0.9)
        for epoch in range(epochs):
            train_one_epoch(model, opt)
            sched.on_epoch_end()

    Args:
        model: the Module.
        every: epochs between two unfreezings.
        groups: as in ``discriminative_lr`` (default: one group per module
            that directly owns parameters), listed input to output.

    Attributes:
        unfrozen_groups: how many groups (from the top) are trainable.
        epochs_done: epochs counted by ``on_epoch_end``.
    """

    def __init__(self, model: Module, every: int = 1, groups=None):
        self.every = _check_positive(every, "every", "GradualUnfreezing", integer=True)
        self.groups = _resolve_groups(model, groups, "GradualUnfreezing")
        self.epochs_done = 0
        for _, ps in self.groups[:-1]:
            for _, p in ps:
                p.requires_grad = False
                p.grad = None
        for _, p in self.groups[-1][1]:
            p.requires_grad = True
        self.unfrozen_groups = 1

    def step(self, epoch: int) -> list:
        """Unfreeze the groups due at the start of ``epoch`` (0-based): 1 + epoch // every of them.

        Args:
            epoch: the epoch about to start (the number of epochs done).

        Returns:
            The names of the parameters unfrozen by this call (never refreezes).
        """
        epoch = _check_count(epoch, "epoch", "GradualUnfreezing.step")
        target = min(len(self.groups), 1 + epoch // self.every)
        changed = []
        while self.unfrozen_groups < target:
            self.unfrozen_groups += 1
            for name, p in self.groups[-self.unfrozen_groups][1]:
                if not p.requires_grad:
                    p.requires_grad = True
                    changed.append(name)
        return changed

    def on_epoch_end(self) -> list:
        """Count one finished epoch and unfreeze what is due; returns the names unfrozen."""
        self.epochs_done += 1
        return self.step(self.epochs_done)

    def __repr__(self):
        return (f"GradualUnfreezing({self.unfrozen_groups}/{len(self.groups)} groups trainable, "
                f"every={self.every})")


def l2sp_groups(model: Module, head: Module, alpha: float, weight_decay: float = 0.0) -> list:
    """SGD parameter groups for L2-SP (Li et al., 2018): the backbone is pulled toward
    its pretrained weights w0, the new head toward zero.

    The penalty is alpha/2 ||w - w0||^2 on the backbone (no plain weight decay
    there) and weight_decay/2 ||w||^2 on the head. SGD captures w0 when it is
    *built*: load or transfer the pretrained weights first, then build it.

    Args:
        model: the whole model (the head's parameters are excluded from the
            backbone group), or the backbone alone.
        head: the new head (a Module).
        alpha: L2-SP strength (> 0).
        weight_decay: plain weight decay on the head (>= 0).

    Returns:
        ``[{"params": backbone, "l2sp": alpha, "weight_decay": 0.0, "name": "backbone"},
        {"params": head, "weight_decay": weight_decay, "name": "head"}]``.
    """
    _check_module(model, "model", "l2sp_groups")
    _check_module(head, "head", "l2sp_groups")
    alpha = _check_positive(alpha, "alpha", "l2sp_groups")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float, np.number)) \
            or not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"l2sp_groups: weight_decay must be a number >= 0, got {weight_decay!r}")
    head_params = list(head.parameters())
    if not head_params:
        raise ValueError("l2sp_groups: head has no parameters")
    head_ids = {id(p) for p in head_params}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    if not backbone:
        raise ValueError("l2sp_groups: model has no parameters outside head")
    return [{"params": backbone, "l2sp": alpha, "weight_decay": 0.0, "name": "backbone"},
            {"params": head_params, "weight_decay": float(weight_decay), "name": "head"}]


# ------------------------------------------- features and linear probes ----

def _first_param(model: Module):
    return next(iter(model.parameters()), None)


def _as_array(x, arg: str, fn: str):
    x = as_array(x, arg, fn)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{fn}: {arg} is empty (shape {tuple(x.shape)})")
    return x


def _batch(array, idx, like):
    """``array[idx]`` as a Tensor on the device of the parameter ``like``."""
    b = array[idx] if backend.is_cupy_array(array) else array[backend.to_numpy(idx)]
    return Tensor(backend.to_device(b, "cpu" if like is None else like.device))


def _batches(n: int, batch_size: int, shuffle: bool, rng):
    order = rng.permutation(n) if shuffle else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def extract_features(backbone: Module, X, batch_size: int = 256) -> np.ndarray:
    """Run ``backbone`` on ``X`` without recording a graph; return the outputs as NumPy.

    Computing a frozen backbone's features once and training a head on them
    (feature caching) makes each epoch of a linear probe cost only the head.
    The backbone runs in eval mode; its training flags are restored after.

    Args:
        backbone: the Module (usually frozen). Inputs move to its device.
        X: the inputs (NumPy array, CuPy array or Tensor), batch first.
        batch_size: rows per forward pass (bounds the memory used).

    Returns:
        A NumPy array with one row of features per row of X.
    """
    _check_module(backbone, "backbone", "extract_features")
    X = _as_array(X, "X", "extract_features")
    batch_size = _check_positive(batch_size, "batch_size", "extract_features", integer=True)
    like = _first_param(backbone)
    modes = [(m, m.training) for m in backbone.modules()]
    backbone.eval()
    try:
        with no_grad():
            outs = [backend.to_numpy(backbone(_batch(X, idx, like)).data)
                    for idx in _batches(len(X), batch_size, False, None)]
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return np.concatenate(outs)


def _fit(model: Module, X, y, *, epochs, lr, batch_size, momentum, weight_decay, shuffle, seed, loss_fn, fn):
    """The plain training loop that linear_probe and lp_ft share."""
    epochs = _check_count(epochs, "epochs", fn)
    batch_size = _check_positive(batch_size, "batch_size", fn, integer=True)
    if len(X) != len(y):
        raise ValueError(f"{fn}: X has {len(X)} rows but y has {len(y)}")
    loss_fn = CrossEntropyLoss() if loss_fn is None else loss_fn
    opt = SGD(list(model.parameters()), lr=lr, momentum=momentum, weight_decay=weight_decay)
    rng = generator() if seed is None else np.random.default_rng(seed)
    like = _first_param(model)
    model.train()
    for _ in range(epochs):
        for idx in _batches(len(X), batch_size, shuffle, rng):
            loss = loss_fn(model(_batch(X, idx, like)), _batch(y, idx, like))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def linear_probe(backbone: Module, head: Module, X, y, *, epochs: int, lr: float, batch_size: int = 64,
                 momentum: float = 0.9, weight_decay: float = 0.0, shuffle: bool = True, seed=None,
                 loss_fn=None) -> Module:
    """Train only ``head`` on the cached features of ``backbone`` (which is not changed).

    Args:
        backbone: the pretrained feature extractor (run once, under no_grad).
        head: the Module to train (e.g. a Linear); trained in place.
        X, y: training inputs and targets (class labels for the default loss).
        epochs, lr, batch_size, momentum, weight_decay: SGD settings.
        shuffle: reshuffle the rows every epoch.
        seed: seed of the shuffling (default: tinytl's global generator).
        loss_fn: default ``nn.CrossEntropyLoss()``; e.g. ``nn.MSELoss()`` for regression.

    Returns:
        ``head``, trained.
    """
    _check_module(head, "head", "linear_probe")
    batch_size = _check_positive(batch_size, "batch_size", "linear_probe", integer=True)
    feats = extract_features(backbone, X, batch_size=max(256, int(batch_size)))
    y = _as_array(y, "y", "linear_probe")
    return _fit(head, feats, y, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                weight_decay=weight_decay, shuffle=shuffle, seed=seed, loss_fn=loss_fn, fn="linear_probe")


def lp_ft(backbone: Module, head: Module, X, y, *, probe_epochs: int, finetune_epochs: int, probe_lr: float,
          finetune_lr: float, batch_size: int = 64, momentum: float = 0.9, weight_decay: float = 0.0,
          shuffle: bool = True, seed=None, loss_fn=None) -> Sequential:
    """LP-FT (Kumar et al., 2022): a linear probe, then fine-tuning of everything.

    Fine-tuning with a random head sends large, noisy gradients into the
    pretrained features and distorts them; probing first gives the head a good
    start, so fine-tuning (with a small lr) only adjusts the features.

    Args:
        backbone: the pretrained feature extractor; unfrozen for the second phase.
        head: the new head.
        X, y: training inputs and targets.
        probe_epochs, probe_lr: the linear-probe phase (backbone frozen, features cached).
        finetune_epochs, finetune_lr: the fine-tuning phase (all parameters train).
        batch_size, momentum, weight_decay, shuffle, seed, loss_fn: as in ``linear_probe``.

    Returns:
        ``Sequential(*backbone layers, head)`` (sharing their parameters), fine-tuned.
    """
    _check_module(backbone, "backbone", "lp_ft")
    _check_module(head, "head", "lp_ft")
    _check_positive(probe_lr, "probe_lr", "lp_ft")
    _check_positive(finetune_lr, "finetune_lr", "lp_ft")
    linear_probe(backbone, head, X, y, epochs=probe_epochs, lr=probe_lr, batch_size=batch_size,
                 momentum=momentum, weight_decay=weight_decay, shuffle=shuffle, seed=seed, loss_fn=loss_fn)
    layers = list(backbone) if isinstance(backbone, Sequential) else [backbone]
    model = Sequential(*layers, head)
    model.unfreeze()
    X = _as_array(X, "X", "lp_ft")
    y = _as_array(y, "y", "lp_ft")
    return _fit(model, X, y, epochs=finetune_epochs, lr=finetune_lr, batch_size=batch_size, momentum=momentum,
                weight_decay=weight_decay, shuffle=shuffle, seed=None if seed is None else seed + 1,
                loss_fn=loss_fn, fn="lp_ft")
