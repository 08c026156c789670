"""Transfer learning: reuse what a trained network learned on a new task.

The tools, in the order a transfer usually needs them:

- ``transfer_weights(src, dst)`` copies every weight whose name and shape
  match (from a Module, a state dict or a checkpoint file) and returns a
  ``TransferReport`` saying what was copied, what did not fit and why. A
  head of another size is *reported*, not silently kept or loudly fatal.
- ``replace_head(model, n)`` swaps the last ``Linear`` for a fresh one.
- ``freeze`` / ``unfreeze`` (glob patterns over parameter names) and
  ``summary`` decide and show which weights train.
- ``extract_features`` + ``linear_probe`` train a head on cached features of a
  frozen backbone; ``lp_ft`` probes first, then fine-tunes everything.
- ``discriminative_lr`` (smaller learning rates toward the input),
  ``GradualUnfreezing`` (unfreeze from the top, one group per epoch) and
  ``l2sp_groups`` (pull the backbone toward its pretrained weights) are the
  classic recipes for fine-tuning on few labels.

Freezing is ``Parameter.requires_grad = False``: the autograd records no
graph for a frozen prefix (its backward costs nothing) and ``SGD`` never
touches a frozen parameter (no weight decay, no momentum).

Read next: ``docs/transfer.md`` (when to use which), then ``examples/``.
"""
from __future__ import annotations

import fnmatch
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from . import backend
from ._random import generator
from .nn import CrossEntropyLoss, Linear, Module, Sequential
from .optim import SGD
from .tensor import Tensor, no_grad

__all__ = ["freeze", "unfreeze", "summary", "Summary", "replace_head", "transfer_weights", "TransferReport",
           "discriminative_lr", "GradualUnfreezing", "extract_features", "linear_probe", "lp_ft",
           "l2sp_groups"]


# ------------------------------------------------------------- checks ----

def _check_module(obj, arg: str, fn: str) -> Module:
    if not isinstance(obj, Module):
        raise TypeError(f"{fn}: {arg} must be a tinytl Module, got {type(obj).__name__}")
    return obj


def _check_positive(value, arg: str, fn: str, integer: bool = False):
    ok_types = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_types) or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{fn}: {arg} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def _check_count(value, arg: str, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{fn}: {arg} must be an integer >= 0, got {value!r}")
    return int(value)


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


# -------------------------------------------------------- replace_head ----

def replace_head(model: Module, out_features: int, *, bias: bool = True) -> Linear:
    """Replace the last ``Linear`` of ``model`` by a freshly initialised one.

    "Last" is in depth-first registration order (the output layer of a
    Sequential, also inside nested modules). The new layer keeps the old
    one's in_features, dtype and device and is trainable.

    Args:
        model: the Module holding the head.
        out_features: the number of outputs of the new head (e.g. classes).
        bias: whether the new head has a bias.

    Returns:
        The new Linear layer (already in the model).
    """
    _check_module(model, "model", "replace_head")
    last = None
    for name, mod in model.named_modules():       # depth-first, in registration order
        if isinstance(mod, Linear):
            last = name
    if last is None:
        raise ValueError(f"replace_head: model ({type(model).__name__}) contains no Linear layer")
    if last == "":
        raise ValueError("replace_head: model is itself a Linear; build a new Linear instead")
    *path, key = last.split(".")
    parent = model
    for part in path:
        parent = parent._modules[part]
    old = parent._modules[key]
    new = Linear(old.in_features, out_features, bias=bias, dtype=old.weight.dtype, device=old.weight.device)
    parent.add_module(key, new)
    return new


# ---------------------------------------------------- transfer_weights ----

@dataclass
class TransferReport:
    """What ``transfer_weights`` did, one list per outcome (names are destination names).

    Attributes (each list in the destination's parameter order, except ``unexpected``
    and ``dropped``, in the source's order):
        copied: destination names that received a value.
        skipped_shape: (name, source shape, destination shape) for name matches
            whose shapes differ (e.g. a head with another number of classes).
        missing: destination names with no source value (left as they were).
        unexpected: source names (after renaming) with no destination parameter.
        skipped_dtype: (name, reason) for non-floating source values, and for
            values too large for a narrower destination dtype (float16).
        dropped: source names that the ``rename`` function mapped to None.
    """
    copied: list = field(default_factory=list)
    skipped_shape: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    skipped_dtype: list = field(default_factory=list)
    dropped: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every destination parameter was copied and every source value used."""
        return bool(self.copied) and not (self.skipped_shape or self.missing or self.unexpected
                                          or self.skipped_dtype)

    def problems(self) -> list:
        """One line per name that was not copied (what strict mode refuses)."""
        out = [f"size mismatch for '{n}': source {s}, destination {d}" for n, s, d in self.skipped_shape]
        out += [f"'{n}': {why}" for n, why in self.skipped_dtype]
        out += [f"missing in source: '{n}'" for n in self.missing]
        out += [f"unexpected in source: '{n}'" for n in self.unexpected]
        return out

    def __str__(self):
        head = (f"TransferReport: {len(self.copied)} copied, {len(self.skipped_shape)} skipped (shape), "
                f"{len(self.skipped_dtype)} skipped (dtype), {len(self.missing)} missing, "
                f"{len(self.unexpected)} unexpected" + (f", {len(self.dropped)} dropped" if self.dropped else ""))
        rows = [("copied", n, "") for n in self.copied]
        rows += [("skipped shape", n, f"source {s} != destination {d}") for n, s, d in self.skipped_shape]
        rows += [("skipped dtype", n, why) for n, why in self.skipped_dtype]
        rows += [("missing", n, "kept its initial value") for n in self.missing]
        rows += [("unexpected", n, "not in the destination") for n in self.unexpected]
        rows += [("dropped", n, "by rename") for n in self.dropped]
        if not rows:
            return head
        w = max(len(r[1]) for r in rows)
        return head + "\n" + "\n".join(f"  {s:<13}  {n:<{w}}  {d}".rstrip() for s, n, d in rows)


def _as_state(src) -> "OrderedDict":
    """A name -> array mapping from a Module, a mapping or a checkpoint path."""
    if isinstance(src, Module):
        return OrderedDict((n, p.data) for n, p in src.named_parameters())
    if isinstance(src, (str, os.PathLike)):
        from . import io        # imported lazily: transfer works without the io module
        return OrderedDict(io.load(src))
    if hasattr(src, "items"):
        return OrderedDict(src.items())
    raise TypeError(f"transfer_weights: src must be a Module, a dict of arrays or a checkpoint path, "
                    f"got {type(src).__name__}")


def _renamer(rename):
    """A function source name -> destination name (or None to drop it)."""
    if rename is None:
        return lambda n: n
    if callable(rename) and not hasattr(rename, "items"):
        return rename
    if hasattr(rename, "items"):
        maps = list(rename.items())
        for k, v in maps:
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"transfer_weights: rename maps prefixes to prefixes (str -> str), got "
                                f"{k!r}: {v!r}")
        maps.sort(key=lambda kv: len(kv[0]), reverse=True)     # the longest matching prefix wins

        def by_prefix(name):
            for old, new in maps:
                if name.startswith(old):
                    return new + name[len(old):]
            return name
        return by_prefix
    raise TypeError(f"transfer_weights: rename must be None, a dict of prefixes or a function, "
                    f"got {type(rename).__name__}")


def _overflow(v, dtype) -> str:
    """Why the finite values of ``v`` do not fit ``dtype`` (a narrower float, e.g. float16), or ''."""
    big = float(np.finfo(dtype).max)
    if float(np.finfo(v.dtype).max) <= big or v.size == 0:
        return ""
    xp = backend.get_array_module(v)
    finite = xp.abs(v[xp.isfinite(v)])
    largest = float(finite.max()) if finite.size else 0.0
    if largest <= big:
        return ""
    return f"source values up to {largest:.4g} overflow {np.dtype(dtype)} (largest {big:.4g})"


def transfer_weights(src, dst: Module, *, rename=None, strict: bool = False) -> TransferReport:
    """Copy every weight of ``src`` whose (renamed) name and shape match into ``dst``.

    Floating values are cast to the destination's dtype and moved to its
    device; non-floating values, and values that would overflow a narrower
    destination dtype (a float32 value above 65504 into float16), are
    skipped with a reason. Values are copied into the existing Parameter
    arrays (``p.data[...] = value``), so an
    optimizer built before still holds the right objects (but note that SGD
    captures L2-SP anchors when it is built: transfer first, then build it).
    Everything is checked before anything is copied: a transfer that raises
    leaves ``dst`` unchanged.

    Args:
        src: a Module, a state dict (name -> array or Tensor) or a checkpoint
            path (``.safetensors`` / ``.npz``, read with ``tinytl.io.load``).
        dst: the Module to copy into.
        rename: None; a dict of prefix maps such as ``{"encoder.": "0."}``
            applied to the source names (longest matching prefix first, other
            names unchanged); or a function name -> new name, or None to drop.
        strict: raise if anything is skipped, missing or unexpected.

    Returns:
        A ``TransferReport`` (print it for a table).

    Raises:
        ValueError: in strict mode, listing every problem; in any mode when
            nothing at all would be copied, or when two source names are renamed
            to the same destination name.
    """
    _check_module(dst, "dst", "transfer_weights")
    state = _as_state(src)
    rename_fn = _renamer(rename)
    own = OrderedDict(dst.named_parameters())
    report = TransferReport()

    # 1. rename the source names
    renamed, origin = OrderedDict(), {}
    for name, value in state.items():
        new = rename_fn(name)
        if new is None:
            report.dropped.append(name)
            continue
        if not isinstance(new, str):
            raise TypeError(f"transfer_weights: rename returned {type(new).__name__} for '{name}' "
                            f"(expected a str, or None to drop it)")
        if new in renamed:
            raise ValueError(f"transfer_weights: rename maps both '{origin[new]}' and '{name}' to '{new}'")
        renamed[new], origin[new] = value, name

    # 2. check every pair (in the destination's order), stage the copies
    staged = []
    report.unexpected = [n for n in renamed if n not in own]
    report.missing = [n for n in own if n not in renamed]
    for name, p in own.items():
        if name not in renamed:
            continue
        value = renamed[name]
        v = value.data if isinstance(value, Tensor) else value
        if not (isinstance(v, np.ndarray) or backend.is_cupy_array(v)):
            try:
                v = np.asarray(v)
            except Exception:
                report.skipped_dtype.append((name, f"value of type {type(value).__name__} is not an array"))
                continue
        if v.dtype.kind != "f":
            report.skipped_dtype.append((name, f"source dtype {v.dtype} is not floating point"))
        elif tuple(v.shape) != tuple(p.shape):
            report.skipped_shape.append((name, tuple(v.shape), tuple(p.shape)))
        elif (why := _overflow(v, p.dtype)):
            report.skipped_dtype.append((name, why))
        else:
            staged.append((name, p, v))

    if strict and report.problems():
        raise ValueError("transfer_weights(strict=True) failed, nothing was copied:\n  "
                         + "\n  ".join(report.problems()))
    if not staged:
        raise ValueError("transfer_weights: no source tensor matches a destination parameter by name and "
                         f"shape, nothing was copied (a rename map may be missing):\n{report}")

    # 3. copy, in place
    for name, p, v in staged:
        p.data[...] = backend.to_device(v, p.device).astype(p.dtype, copy=False)
        report.copied.append(name)
    return report


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
    x = x.data if isinstance(x, Tensor) else x
    if not (isinstance(x, np.ndarray) or backend.is_cupy_array(x)):
        try:
            x = np.asarray(x)
        except Exception:
            raise TypeError(f"{fn}: {arg} must be an array or a Tensor, got {type(x).__name__}") from None
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
