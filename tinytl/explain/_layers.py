"""Catching each layer's output with forward hooks, for ``layer_similarity`` and ``probe_layers``.

A hook is set on each chosen module (by default every module without children), the model
runs its own forward pass (in eval mode, under no_grad; the training flags are restored
after), and the hooks hand back each layer's output, one batch at a time. With hooks set, a
``Sequential`` does not fuse a Linear and its ReLU, so each layer's own output is seen.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend
from ..nn import Module
from ..tensor import Tensor, as_array, no_grad


def _positive_int(value, arg: str, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{fn}: {arg} must be a positive integer, got {value!r}")
    return int(value)


def _batch_bounds(n: int, batch_size: int):
    """Consecutive [start, stop) of batch_size rows; a last batch of under 4 rows joins the one before."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 4:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _leaf_layers(model: Module) -> "OrderedDict[str, Module]":
    """Every module without children, by dotted name (the model itself if it has none)."""
    out = OrderedDict((n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children()))
    return out or OrderedDict([("output", model)])


def _select_layers(model: Module, layers, arg: str, fn: str) -> "OrderedDict[str, Module]":
    if layers is None:
        return _leaf_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    named = dict(model.named_modules())
    out = OrderedDict()
    for name in layers:
        if name not in named or name == "":
            known = [n for n in named if n]
            raise ValueError(f"{fn}: {arg} names no layer '{name}' (the model's layers: {', '.join(known)})")
        out[name] = named[name]
    if not out:
        raise ValueError(f"{fn}: {arg} is empty")
    return out


def _model_input(model: Module, X, fn: str, arg: str = "X"):
    """X as an array on the model's device and in its dtype (batch first)."""
    X = as_array(X, arg, fn)
    if X.ndim < 1 or X.shape[0] == 0:
        raise ValueError(f"{fn}: {arg} must have one row per example, got shape {tuple(X.shape)}")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{fn}: {arg} must hold numbers, got dtype {X.dtype}")
    p = next(iter(model.parameters()), None)
    if p is not None:
        X = backend.to_device(X, p.device).astype(p.dtype, copy=False)
    elif X.dtype.kind != "f":
        X = X.astype(np.float32)
    return X


class _Eval:
    """Run a model in eval mode, restoring every module's training flag after."""

    def __init__(self, model):
        self.modes = [(m, m.training) for m in model.modules()]
        self.model = model

    def __enter__(self):
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes:
            object.__setattr__(m, "training", mode)
        return False


def _activations(model: Module, X, layers: "OrderedDict[str, Module]", batch_size: int, fn: str):
    """Yield, per batch of X, {layer name: its output as an (rows, features) array}, by hooks."""
    X = _model_input(model, X, fn)
    for s, e in _batch_bounds(X.shape[0], batch_size):
        seen = OrderedDict()

        def hook_for(name):
            def hook(module, args, output):
                if name in seen:
                    raise ValueError(f"{fn}: layer '{name}' ran twice in one forward pass (a shared module); "
                                     "its activations are ambiguous, name other layers")
                out = output.data if isinstance(output, Tensor) else output
                if not (isinstance(out, np.ndarray) or backend.is_cupy_array(out)):
                    raise TypeError(f"{fn}: layer '{name}' returned a {type(output).__name__}, not a Tensor")
                seen[name] = out.reshape(out.shape[0], -1)
            return hook
        handles = [m.register_forward_hook(hook_for(name)) for name, m in layers.items()]
        try:
            with _Eval(model), no_grad():
                model(Tensor(X[s:e]))
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in layers if n not in seen]
        if missing:
            raise ValueError(f"{fn}: layer(s) {', '.join(missing)} did not run in the model's forward pass")
        yield seen


def _gather(model, X, layers, batch_size, fn):
    """{layer: all its activations on X}, in the order the layers ran."""
    parts = None
    for acts in _activations(model, X, layers, batch_size, fn):
        if parts is None:
            parts = OrderedDict((n, []) for n in acts)
        for n, a in acts.items():
            parts[n].append(a)
    xp = backend.get_array_module(next(iter(parts.values()))[0])
    return OrderedDict((n, xp.concatenate(v)) for n, v in parts.items())
