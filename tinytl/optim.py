"""Optimizers: SGD with torch.optim.SGD's update rule, parameter groups and L2-SP.

One fused kernel call per parameter (``sgd_step``, see
``tinytl/kernels/reference.py``) applies weight decay, momentum and the step
in place; on a GPU one launch (``sgd_step_many``) updates all the parameters
of a group (of one dtype), as a launch costs more there than a small update.
A parameter that is frozen (requires_grad False) or has no gradient is not
touched at all: no weight decay, no momentum. Freezing a parameter drops its
stale gradient and its momentum, so unfreezing starts afresh.

Large parameters on the CPU are stored either with plain or with streaming
stores (``sgd_step(stream=...)``, csrc/sgd.cpp): the same values, but which is
faster depends on whether the BLAS's threads on other cores have just read the
weights. SGD times whole iterations both ways on its first steps, keeps the
faster, and times them again every 500 steps.

L2-SP (Li et al., 2018) is the group option ``l2sp=alpha``: it adds
alpha * (w - w0) to the gradient, pulling the weights toward their values w0
when the optimizer was built (the pretrained weights) instead of toward zero.

Read next: ``tinytl/transfer/``.
"""
from __future__ import annotations

import math
import time
from statistics import median

import numpy as np

from . import backend
from . import kernels as _kernels
from .tensor import Tensor, is_anomaly_enabled

_SGD_DEFAULTS = dict(lr=None, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, l2sp=0.0)

# The store path of the compiled CPU update (plain or streaming stores) for parameters of
# at least _STREAM_MIN_BYTES is chosen by timing whole training iterations: the interval
# between one step() and the next holds the update and the forward and backward that
# read the weights it wrote, and the path changes both (streaming skips taking lines back
# from other cores' caches, but leaves the weights in memory rather than in this core's
# cache). _STREAM_TRIALS iterations each way, alternating; streaming is kept when its
# median is under _STREAM_GAIN times plain's (a margin for noise); with five each, two
# interrupted iterations (an evaluation or a pause between steps) cannot sway the median.
# The choice is timed again every _STREAM_RETIME steps: what pays depends on the
# machine's state (other processes, BLAS threads), which can change during a long run.
_STREAM_MIN_BYTES = 1 << 16
_STREAM_TRIALS = 5
_STREAM_GAIN = 0.95
_STREAM_RETIME = 500
_clock = time.perf_counter


def _check_number(name, value, group_index):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"SGD: {name} must be a finite number >= 0 (group {group_index}), got {value!r}")
    return float(value)


class SGD:
    """Stochastic gradient descent, exactly torch.optim.SGD's rule::

        d = grad + weight_decay * w (+ l2sp * (w - w0))
        buf = d (first step), else momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf        (when momentum != 0)
        w -= lr * d

    Args:
        params: an iterable of Parameters, or of dicts ``{"params": [...], "lr": ...}``
            (parameter groups, each with its own options).
        lr, momentum, dampening, weight_decay, nesterov: defaults for every group.
        l2sp: L2-SP strength alpha; anchors w0 are the weights at construction.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, l2sp=0.0):
        self.defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                             nesterov=nesterov, l2sp=l2sp)
        self.param_groups = []
        self.state = {}          # id(param) -> {"momentum_buffer": array, "l2sp_anchor": array}
        # store path of large CPU parameters (see _store_path): [stream, steps left, plain
        # iteration times, streaming iteration times, path of the last step or None, its start]
        self._stream = [False, 0, [], [], None, 0.0]
        params = list(params)
        if not params:
            raise ValueError("SGD: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict):
        """Add a group of parameters with its own options (others from the defaults)."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("SGD: a parameter group must be a dict with a 'params' entry")
        gi = len(self.param_groups)
        unknown = set(group) - set(_SGD_DEFAULTS) - {"params", "name"}
        if unknown:
            raise ValueError(f"SGD: unknown option(s) {sorted(unknown)} in group {gi}")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        if not ps:
            raise ValueError(f"SGD: parameter group {gi} is empty")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in ps:
            if not isinstance(p, Tensor):
                raise TypeError(f"SGD: group {gi} holds a {type(p).__name__}, expected Parameters")
            if p.dtype.kind != "f":
                raise TypeError(f"SGD: group {gi} holds a non-float tensor (dtype {p.dtype})")
            if id(p) in seen:
                raise ValueError("SGD: some parameters appear in more than one parameter group")
            seen.add(id(p))
        g = dict(self.defaults)
        g.update({k: v for k, v in group.items() if k != "params"})
        if g["lr"] is None:
            raise ValueError(f"SGD: no learning rate for group {gi}")
        for k in ("lr", "momentum", "dampening", "weight_decay", "l2sp"):
            g[k] = _check_number(k, g[k], gi)
        g["nesterov"] = bool(g["nesterov"])
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum > 0 and zero dampening")
        g["params"] = ps
        if g["l2sp"]:
            for p in ps:
                self.state.setdefault(id(p), {})["l2sp_anchor"] = p.data.copy(order="K")
        self.param_groups.append(g)

    def zero_grad(self, set_to_none: bool = True):
        """Clear the gradients of every parameter (set them to None, or to zeros)."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self):
        """Update every trainable parameter that has a gradient, in place.

        All or nothing: every gradient is checked against its parameter (device, shape,
        dtype, memory) before anything is written, so the kernels' own checks cannot fail
        half-way; under ``detect_anomaly`` every new value is computed and checked before
        any is committed. A step that raises leaves parameters and optimizer state as
        they were.
        """
        anomaly = is_anomaly_enabled()
        plan = [(g, self._plan(gi, g)) for gi, g in enumerate(self.param_groups)]   # checks, writes nothing
        if anomaly:
            self._checked_commit(plan)
            return
        path = None                             # this step's store path, chosen at the first large parameter
        for g, (items, updates) in plan:
            lr, mom, damp, wd, nest = g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"]
            on_gpu = {}                         # (dtype, first step) -> ([params], [grads], [bufs]): one launch each
            for K, data, grad, buf, first in items:
                if backend.is_cupy_array(data) and K is not _kernels.reference:   # the group's launch, below
                    batch = on_gpu.setdefault((data.dtype, first), ([], [], []))
                    batch[0].append(data)
                    batch[1].append(grad)
                    batch[2].append(buf)
                elif data.nbytes >= _STREAM_MIN_BYTES and K is _kernels.cpu_kernels and K is not _kernels.reference:
                    if path is None:
                        path = self._store_path()
                    if first:                   # new momentum buffers: this iteration is not timed
                        self._stream[4] = None
                    K.sgd_step(data, grad, buf, lr, mom, damp, wd, nest, first, path)
                else:
                    K.sgd_step(data, grad, buf, lr, mom, damp, wd, nest, first)
            for (_, first), (ps, gs, bs) in on_gpu.items():   # the group's GPU parameters, one launch
                _kernels.cuda_kernels().sgd_step_many(ps, gs, bs if mom != 0 else None,
                                                      lr, mom, damp, wd, nest, first)
            self._apply_state(updates)          # new momentum buffers are kept once written

    def _plan(self, gi, g):
        """What a step does to group ``g`` (number ``gi``), without doing it: the kernel calls
        ``[(K, data, grad, buf, first)]`` (arrays as the kernels take them) and the updates
        that go with them, ``[(param, {state key: value, or None to drop it}, drop_grad)]``.

        Raises, naming the parameter, if a gradient does not fit it (set by hand) or the
        parameter cannot be written: what the update kernels would refuse, found first."""
        state, mom, l2sp = self.state, g["momentum"], g["l2sp"]
        items, updates = [], []
        for k, p in enumerate(g["params"]):
            st = state.get(id(p))
            if not p.requires_grad:                 # frozen: drop stale grad and momentum
                if p.grad is not None or (st is not None and "momentum_buffer" in st):
                    updates.append((p, {"momentum_buffer": None}, True))
                continue
            grad = p.grad
            if grad is None:
                continue
            data, new = p.data, {}
            _check_grad(grad, data, f"parameter {k} of group {gi}")
            if l2sp:
                anchor = new["l2sp_anchor"] = _on_like(st["l2sp_anchor"], data)
                grad = (data - anchor) * l2sp + grad
            buf, first = None, False
            if mom != 0:
                st = st or {}
                buf = st.get("momentum_buffer")
                freezes = getattr(p, "_freezes", 0)
                if st.get("freezes", 0) != freezes:    # frozen since the last step: start afresh
                    buf = None
                    new["freezes"] = freezes
                if buf is None:
                    buf = new["momentum_buffer"] = backend.get_array_module(data).empty_like(data)
                    first = True
                elif (buf.dtype != data.dtype or backend.is_cupy_array(buf) != backend.is_cupy_array(data)
                      or (buf.strides != data.strides and (data.flags.c_contiguous or data.flags.f_contiguous))):
                    buf = new["momentum_buffer"] = _on_like(buf, data)   # set by hand, or moved
            if new:
                updates.append((p, new, False))
            K = _kernels.for_array(data)
            if not data.flags.c_contiguous:
                if data.flags.f_contiguous:
                    # a transposed weight (Linear's layout): the update is elementwise, so it
                    # runs on the C-contiguous transposes (the kernels take C order only)
                    data, grad = data.T, grad.T
                    buf = None if buf is None else buf.T
                else:
                    K = _kernels.reference      # a strided view set by hand: updated in place by array ops
            items.append((K, data, grad, buf, first))
        return items, updates

    def _apply_state(self, updates):
        """Commit the updates of ``_plan``: state entries set or dropped, stale gradients dropped."""
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

    def _store_path(self) -> bool:
        """Plain (False) or streaming (True) stores for this step's large CPU parameters.

        While steps are left on the current choice, that choice. Otherwise this step is
        a trial: the time since the previous step() is booked to the path that step
        used, and the paths alternate until each has _STREAM_TRIALS iterations; then
        the faster is kept for _STREAM_RETIME steps. Both paths give the same values.
        """
        s = self._stream
        if s[1] > 0:
            s[1] -= 1
            return s[0]
        now = _clock()
        plain, streamed, prev = s[2], s[3], s[4]
        if prev is not None:
            (streamed if prev else plain).append(now - s[5])
        if len(plain) >= _STREAM_TRIALS and len(streamed) >= _STREAM_TRIALS:
            s[0] = median(streamed) < _STREAM_GAIN * median(plain)
            s[1] = _STREAM_RETIME
            plain.clear()
            streamed.clear()
            s[4] = None
            return s[0]
        s[4], s[5] = len(streamed) < len(plain), now
        return s[4]

    def _checked_commit(self, plan):
        """detect_anomaly's step: every update computed on copies and checked, then committed."""
        done = []
        for g, (items, updates) in plan:
            opts = (g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"])
            for K, data, grad, buf, first in items:
                xp = backend.get_array_module(data)
                new_p = data.copy()
                new_buf = None if buf is None else buf.copy()
                K.sgd_step(new_p, grad, new_buf, *opts, first)
                if not bool(xp.isfinite(new_p).all()):
                    raise FloatingPointError(
                        "detect_anomaly: SGD.step would write a non-finite value into a parameter of shape "
                        f"{data.shape}; no parameter was changed")
                done.append((data, new_p, buf, new_buf))
        for g, (items, updates) in plan:
            self._apply_state(updates)
        for data, new_p, buf, new_buf in done:
            data[...] = new_p
            if buf is not None:
                buf[...] = new_buf

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
                    state[i] = {k: backend.to_numpy(v).copy() for k, v in st.items() if k != "freezes"}
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        """Restore options and momentum buffers saved by ``state_dict``; checks everything first."""
        try:
            groups = state_dict["param_groups"]
            saved = state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError("SGD.load_state_dict: expected a dict with 'state' and 'param_groups'") from None
        if len(groups) != len(self.param_groups):
            raise ValueError(f"SGD.load_state_dict: {len(groups)} parameter groups saved, "
                             f"{len(self.param_groups)} in this optimizer")
        params = []
        for gi, (sg, g) in enumerate(zip(groups, self.param_groups)):
            if len(sg["params"]) != len(g["params"]):
                raise ValueError(f"SGD.load_state_dict: group {gi} has {len(sg['params'])} parameters saved, "
                                 f"{len(g['params'])} here")
            params.extend(zip(sg["params"], g["params"]))
        new_state = {}
        for i, p in params:
            st = saved.get(i, saved.get(str(i)))
            if not st:
                continue
            new_state[id(p)] = {}
            for k, v in st.items():
                v = np.asarray(v) if not backend.is_cupy_array(v) else v
                if k not in ("momentum_buffer", "l2sp_anchor") or tuple(v.shape) != tuple(p.shape):
                    raise ValueError(f"SGD.load_state_dict: bad state entry {k!r} of shape {tuple(v.shape)} "
                                     f"for a parameter of shape {p.shape}")
                moved = _on_like(v, p.data)
                new_state[id(p)][k] = moved.copy() if moved is v else moved   # never the caller's array
            # a loaded momentum buffer is current: freezes before now must not reset it
            new_state[id(p)]["freezes"] = getattr(p, "_freezes", 0)
        new_groups = []
        for sg, g in zip(groups, self.param_groups):
            ng = dict(g)
            ng.update({k: v for k, v in sg.items() if k in _SGD_DEFAULTS})
            new_groups.append(ng)
        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self):
        lines = ["SGD ("]
        for i, g in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={g[k]}" for k in _SGD_DEFAULTS)
            lines.append(f"  group {i}: {len(g['params'])} params, {opts}")
        return "\n".join(lines) + "\n)"


def _check_grad(grad, data, which):
    if backend.is_cupy_array(grad) != backend.is_cupy_array(data):
        raise ValueError(f"SGD: the gradient of {which} is on '{backend.device_of(grad)}' but the "
                         f"parameter is on '{backend.device_of(data)}'")
    if grad.shape != data.shape or grad.dtype != data.dtype:
        raise ValueError(f"SGD: gradient of shape {grad.shape} and dtype {grad.dtype} does not "
                         f"match its parameter ({data.shape}, {data.dtype}) ({which})")
    if not getattr(data.flags, "writeable", True):
        raise ValueError(f"SGD: {which} is a read-only array")
    if backend.get_array_module(data).may_share_memory(grad, data) and not _same_memory(grad, data):
        raise ValueError(f"SGD: the gradient of {which} overlaps the parameter's memory without being "
                         "the same array")


def _same_memory(a, b) -> bool:
    """True when arrays ``a`` and ``b`` are the same elements of the same memory (on either device)."""
    ptr = (lambda x: x.data.ptr) if backend.is_cupy_array(a) else (lambda x: x.__array_interface__["data"][0])
    return ptr(a) == ptr(b) and a.shape == b.shape and a.strides == b.strides


def _on_like(a, like):
    """``a`` with the dtype, device and memory layout of ``like`` (no copy when it already matches)."""
    if tuple(a.shape) != tuple(like.shape):
        raise ValueError(f"SGD: optimizer state of shape {tuple(a.shape)} for a parameter of shape {like.shape}")
    a = backend.to_device(a, backend.device_of(like))
    if a.dtype == like.dtype and a.strides == like.strides:
        return a
    xp = backend.get_array_module(like)
    out = xp.empty_like(like)
    out[...] = a
    return out


__all__ = ["SGD"]
