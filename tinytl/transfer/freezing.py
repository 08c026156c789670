"""Which weights train: ``freeze`` / ``unfreeze`` by glob patterns over parameter names, and ``summary``."""
from __future__ import annotations

import fnmatch
from collections import OrderedDict


from ..nn import Module
from ..tensor import Tensor
from ._checks import _check_module


# ------------------------------------------------- freeze and unfreeze ----

def _select(model: Module, patterns, fn: str) -> "OrderedDict[str, Tensor]":
    """The parameters whose names match any of ``patterns`` (all of them when none)."""
    _check_module(model, "model", fn)
    params = OrderedDict(model.named_parameters())
    if not patterns:
        return params
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"{fn}: patterns must be strings such as '0.*' or '*.bias', got {type(p).__name__}")
    unmatched = [p for p in patterns if not fnmatch.filter(params, p)]
    if unmatched:
        raise ValueError(f"{fn}: pattern(s) {unmatched} match no parameter; the names are: {list(params)}")
    return OrderedDict((n, p) for n, p in params.items() if any(fnmatch.fnmatchcase(n, pat) for pat in patterns))


def freeze(model: Module, *patterns: str) -> list:
    """Freeze parameters: no gradient is computed for them and SGD leaves them alone.

    Args:
        model: the Module.
        *patterns: fnmatch globs over parameter names ("0.*", "*.bias",
            "encoder.*"); none means every parameter. Every pattern must match
            at least one name (checked before anything changes).

    Returns:
        The names of the parameters that were trainable and are now frozen.
        Their stale gradients are dropped (``grad = None``).
    """
    changed = []
    for name, p in _select(model, patterns, "freeze").items():
        if p.requires_grad:
            changed.append(name)
        p.requires_grad = False
        p.grad = None
    return changed


def unfreeze(model: Module, *patterns: str) -> list:
    """Make parameters trainable again (the optimizer restarts their momentum).

    Args:
        model: the Module.
        *patterns: fnmatch globs over parameter names; none means every parameter.

    Returns:
        The names of the parameters that were frozen and are now trainable.
    """
    changed = []
    for name, p in _select(model, patterns, "unfreeze").items():
        if not p.requires_grad:
            changed.append(name)
            p.requires_grad = True
    return changed


# ------------------------------------------------------------- summary ----

class Summary(str):
    """The text of ``summary(model)`` (a str), with the numbers as attributes.

    Attributes:
        rows: a list of (name, shape, count, trains) per parameter.
        trainable, frozen, total: parameter counts.
    """

    def __new__(cls, rows):
        rows = list(rows)
        trainable = sum(c for _, _, c, t in rows if t)
        total = sum(c for _, _, c, _ in rows)
        w = max([len("parameter")] + [len(r[0]) for r in rows])
        ws = max([len("shape")] + [len(str(r[1])) for r in rows])
        lines = [f"{'parameter':<{w}}  {'shape':<{ws}}  {'count':>10}  trains"]
        lines.append("-" * len(lines[0]))
        for name, shape, count, trains in rows:
            lines.append(f"{name:<{w}}  {str(shape):<{ws}}  {count:>10,}  {'yes' if trains else 'no'}")
        lines.append("-" * len(lines[0]))
        lines.append(f"trainable {trainable:,} | frozen {total - trainable:,} | total {total:,}")
        obj = super().__new__(cls, "\n".join(lines))
        obj.rows, obj.trainable, obj.total, obj.frozen = rows, trainable, total, total - trainable
        return obj


def summary(model: Module) -> Summary:
    """A table of the parameters: name, shape, count, trains yes/no, and totals.

    Args:
        model: the Module.

    Returns:
        A ``Summary`` (a str: print it) with ``rows``, ``trainable``,
        ``frozen`` and ``total`` attributes.
    """
    _check_module(model, "model", "summary")
    return Summary((n, tuple(p.shape), int(p.data.size), bool(p.requires_grad))
                   for n, p in model.named_parameters())
