"""What every optimizer shares: parameter groups, state per parameter, the checks before a step.

``Optimizer`` holds ``param_groups`` (a list of dicts: ``"params"`` and the group's options,
as torch.optim has them, so a learning-rate scheduler or a user can change ``lr`` between
steps) and ``state`` (per parameter, keyed by ``id(param)``). A subclass names its options
and their defaults, validates them (``_check_options``) and its saved state entries
(``_check_state``), and writes ``step()``. The rules every step keeps:

- all or nothing: every gradient is checked against its parameter (``_check_grad``) before
  anything is written, so a bad gradient leaves every parameter and all state as it was;
- a frozen parameter (requires_grad False) or one without a gradient is not touched; a
  frozen one loses its stale gradient and its state, so unfreezing starts afresh (the
  optimizer compares ``Parameter._freezes``, which counts the freezes, with the count it
  saw last, so a freeze and unfreeze between two steps also starts afresh);
- ``state_dict()`` / ``load_state_dict()`` use torch's format (``{"state": {index: {...}},
  "param_groups": [{options..., "params": [indices]}]}``, values NumPy arrays), and a load
  checks everything before anything changes.

Read next: ``tinytl/optim/sgd.py``, then ``tinytl/optim/adam.py``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..tensor import Tensor


class Optimizer:
    """Base class of tinytl's optimizers (torch.optim.Optimizer's shape).

    Args:
        params: an iterable of Parameters, or of dicts ``{"params": [...], "lr": ...}``
            (parameter groups, each with its own options).
        defaults: the options of a group that does not set them.
    """

    _OPTIONS: dict = {}          # option -> default, in the order torch lists them (subclasses)
    _STATE_ARRAYS: tuple = ()    # the state entries that are arrays of the parameter's shape

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}          # id(param) -> {entry: value}
        if isinstance(params, Tensor):
            raise TypeError(f"{self._name()}: params must be an iterable of Parameters or dicts, got a single "
                            "Tensor (wrap it in a list)")
        params = list(params)
        if not params:
            raise ValueError(f"{self._name()}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    @classmethod
    def _name(cls):
        return cls.__name__

    def add_param_group(self, group: dict):
        """Add a group of parameters with its own options (others from the defaults)."""
        name = self._name()
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group must be a dict with a 'params' entry")
        gi = len(self.param_groups)
        unknown = set(group) - set(self._OPTIONS) - {"params", "name"}
        if unknown:
            raise ValueError(f"{name}: unknown option(s) {sorted(unknown)} in group {gi}")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        if not ps:
            raise ValueError(f"{name}: parameter group {gi} is empty")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in ps:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: group {gi} holds a {type(p).__name__}, expected Parameters")
            if p.dtype.kind != "f":
                raise TypeError(f"{name}: group {gi} holds a non-float tensor (dtype {p.dtype})")
            if id(p) in seen:
                raise ValueError(f"{name}: some parameters appear in more than one parameter group")
            seen.add(id(p))
        g = dict(self.defaults)
        g.update({k: v for k, v in group.items() if k != "params"})
        self._check_options(g, gi)
        g["params"] = ps
        self._init_group(g)
        self.param_groups.append(g)

    def _check_options(self, g: dict, gi: int):
        """Validate (and normalise, in place) the options of group ``g`` (number ``gi``)."""

    def _init_group(self, g: dict):
        """State a new group needs at once (SGD's L2-SP anchors)."""

    def zero_grad(self, set_to_none: bool = True):
        """Clear the gradients of every parameter (set them to None, or to zeros)."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def _apply_state(self, updates):
        """Commit planned updates ``[(param, {entry: value, or None to drop it}, drop_grad)]``."""
        for p, new, drop_grad in updates:
            if drop_grad:
                p.grad = None
            st = self.state.get(id(p))
            for k, v in new.items():
                if v is None:
                    if st is not None:
                        st.pop(k, None)
                else:
                    if st is None:
                        st = self.state[id(p)] = {}
                    st[k] = v

    # --- resuming -----------------------------------------------------------
    def state_dict(self) -> dict:
        """{'state': {index: {...arrays}}, 'param_groups': [{options, 'params': [indices]}]} (as in PyTorch)."""
        index, groups, state = {}, [], {}
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                i = index.setdefault(id(p), len(index))
                ids.append(i)
                st = self.state.get(id(p))
                if st:
                    state[i] = {k: self._save_entry(k, v) for k, v in st.items() if k != "freezes"}
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def _save_entry(self, key, value):
        return backend.to_numpy(value).copy()

    def load_state_dict(self, state_dict: dict):
        """Restore options and state saved by ``state_dict``; checks everything first."""
        name = self._name()
        try:
            groups = state_dict["param_groups"]
            saved = state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'") from None
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: {len(groups)} parameter groups saved, "
                             f"{len(self.param_groups)} in this optimizer")
        params = []
        for gi, (sg, g) in enumerate(zip(groups, self.param_groups)):
            if len(sg["params"]) != len(g["params"]):
                raise ValueError(f"{name}.load_state_dict: group {gi} has {len(sg['params'])} parameters saved, "
                                 f"{len(g['params'])} here")
            params.extend(zip(sg["params"], g["params"]))
        new_state = {}
        for i, p in params:
            st = saved.get(i, saved.get(str(i)))
            if not st:
                continue
            new_state[id(p)] = self._load_entries(st, p)
            # loaded state is current: freezes before now must not reset it
            new_state[id(p)]["freezes"] = getattr(p, "_freezes", 0)
        new_groups = []
        for gi, (sg, g) in enumerate(zip(groups, self.param_groups)):
            ng = dict(g)
            ng.update({k: v for k, v in sg.items() if k in self._OPTIONS})
            self._check_options(ng, gi)
            new_groups.append(ng)
        self.param_groups = new_groups
        self.state = new_state

    def _load_entries(self, st: dict, p) -> dict:
        """The state of parameter ``p`` from its saved entries ``st``, checked and moved to ``p``."""
        out = {}
        for k, v in st.items():
            v = np.asarray(v) if not backend.is_cupy_array(v) else v
            if k not in self._STATE_ARRAYS or tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"{self._name()}.load_state_dict: bad state entry {k!r} of shape "
                                 f"{tuple(v.shape)} for a parameter of shape {p.shape}")
            moved = _on_like(v, p.data)
            out[k] = moved.copy() if moved is v else moved   # never the caller's array
        return out

    def __repr__(self):
        lines = [f"{self._name()} ("]
        for i, g in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={g[k]}" for k in self._OPTIONS)
            lines.append(f"  group {i}: {len(g['params'])} params, {opts}")
        return "\n".join(lines) + "\n)"


def _check_number(opt, name, value, group_index, upper=None):
    """``value`` as a float if it is a finite number >= 0 (and < ``upper``), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value < 0 or (upper is not None and value >= upper):
        want = f"in [0, {upper})" if upper is not None else ">= 0"
        raise ValueError(f"{opt}: {name} must be a finite number {want} (group {group_index}), got {value!r}")
    return float(value)


def _check_grad(grad, data, which, opt="SGD"):
    """Raise, naming the parameter, if ``grad`` does not fit ``data`` or ``data`` cannot be written."""
    if backend.is_cupy_array(grad) != backend.is_cupy_array(data):
        raise ValueError(f"{opt}: the gradient of {which} is on '{backend.device_of(grad)}' but the "
                         f"parameter is on '{backend.device_of(data)}'")
    if grad.shape != data.shape or grad.dtype != data.dtype:
        raise ValueError(f"{opt}: gradient of shape {grad.shape} and dtype {grad.dtype} does not "
                         f"match its parameter ({data.shape}, {data.dtype}) ({which})")
    if not getattr(data.flags, "writeable", True):
        raise ValueError(f"{opt}: {which} is a read-only array")
    if backend.get_array_module(data).may_share_memory(grad, data) and not _same_memory(grad, data):
        raise ValueError(f"{opt}: the gradient of {which} overlaps the parameter's memory without being "
                         "the same array")


def _same_memory(a, b) -> bool:
    """True when arrays ``a`` and ``b`` are the same elements of the same memory (on either device)."""
    ptr = (lambda x: x.data.ptr) if backend.is_cupy_array(a) else (lambda x: x.__array_interface__["data"][0])
    return ptr(a) == ptr(b) and a.shape == b.shape and a.strides == b.strides


def _on_like(a, like):
    """``a`` with the dtype, device and memory layout of ``like`` (no copy when it already matches)."""
    if tuple(a.shape) != tuple(like.shape):
        raise ValueError(f"optimizer state of shape {tuple(a.shape)} for a parameter of shape {like.shape}")
    a = backend.to_device(a, backend.device_of(like))
    if a.dtype == like.dtype and a.strides == like.strides:
        return a
    xp = backend.get_array_module(like)
    out = xp.empty_like(like)
    out[...] = a
    return out


__all__ = ["Optimizer"]
