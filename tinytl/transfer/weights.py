"""Carrying weights over: ``transfer_weights`` (with a ``TransferReport`` of what was copied and what
was not, and why) and ``replace_head``."""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .. import backend
from ..nn import Linear, Module
from ..tensor import Tensor
from ._checks import _check_module


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
    if isinstance(src, Module):     # parameters and buffers (BatchNorm's running statistics)
        return OrderedDict((n, t.data) for n, t in src.state_dict(keep_vars=True).items())
    if isinstance(src, (str, os.PathLike)):
        from .. import io       # imported lazily: transfer works without the io module
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

    Weights are the state dict's entries: parameters and buffers (BatchNorm's running
    statistics and its integer ``num_batches_tracked``).

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
    own = dst.state_dict(keep_vars=True)     # parameters and buffers, as Tensors
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
        integer = p.dtype.kind in "iu"      # an integer buffer (num_batches_tracked) takes integers only
        if v.dtype.kind not in ("iu" if integer else "f"):
            report.skipped_dtype.append((name, f"source dtype {v.dtype} is not "
                                               + ("an integer type" if integer else "floating point")))
        elif tuple(v.shape) != tuple(p.shape):
            report.skipped_shape.append((name, tuple(v.shape), tuple(p.shape)))
        elif not integer and (why := _overflow(v, p.dtype)):
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
