"""SGD with torch.optim.SGD's update rule, parameter groups and L2-SP.

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
faster, and times them again every 500 steps (the knobs are on the package:
``tinytl/optim/__init__.py``).

A step plans every update (checks, new buffers) before writing any. The common step
(every parameter trains, gradients fresh from backward, CPU, no L2-SP) repeats the same
plan each time, so SGD keeps it and only checks, each step, that what it was derived from
is unchanged (``_fast_plan`` / ``_fast_step``): the same guarantees at about 60% of the cost.

L2-SP (Li et al., 2018) is the group option ``l2sp=alpha``: it adds
alpha * (w - w0) to the gradient, pulling the weights toward their values w0
when the optimizer was built (the pretrained weights) instead of toward zero.

What SGD shares with Adam (groups, state, the checks, state dicts) is in
``tinytl/optim/optimizer.py``.

Read next: ``tinytl/optim/adam.py``, then ``tinytl/transfer/``.
"""
from __future__ import annotations

from statistics import median

import numpy as np

from .. import backend
from .. import kernels as _kernels
from .. import optim as _knobs   # the package: _STREAM_* and _clock are set there (see its __init__)
from ..tensor import _root, is_anomaly_enabled
from .optimizer import Optimizer, _check_grad, _check_number, _on_like

_SGD_DEFAULTS = dict(lr=None, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, l2sp=0.0)


class SGD(Optimizer):
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

    _OPTIONS = _SGD_DEFAULTS
    _STATE_ARRAYS = ("momentum_buffer", "l2sp_anchor")

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, l2sp=0.0):
        # state: id(param) -> {"momentum_buffer": array, "l2sp_anchor": array}
        # store path of large CPU parameters (see _store_path): [stream, steps left, plain
        # iteration times, streaming iteration times, path of the last step or None, its start]
        self._stream = [False, 0, [], [], None, 0.0]
        self._fast = None        # the plan of the common step, cached (see _fast_plan)
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, l2sp=l2sp))

    def _check_options(self, g, gi):
        if g["lr"] is None:
            raise ValueError(f"SGD: no learning rate for group {gi}")
        for k in ("lr", "momentum", "dampening", "weight_decay", "l2sp"):
            g[k] = _check_number("SGD", k, g[k], gi)
        g["nesterov"] = bool(g["nesterov"])
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum > 0 and zero dampening")

    def _init_group(self, g):
        if g["l2sp"]:
            for p in g["params"]:
                self.state.setdefault(id(p), {})["l2sp_anchor"] = p.data.copy(order="K")

    def step(self):
        """Update every trainable parameter that has a gradient, in place.

        All or nothing: every gradient is checked against its parameter (device, shape,
        dtype, memory) before anything is written, so the kernels' own checks cannot fail
        half-way; under ``detect_anomaly`` every new value is computed and checked before
        any is committed. A step that raises leaves parameters and optimizer state as
        they were.
        """
        anomaly = is_anomaly_enabled()
        if not anomaly and self._fast is not None and self._fast_step():
            return                              # the cached plan still held: done
        self._fast = None
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
                elif data.nbytes >= _knobs._STREAM_MIN_BYTES and K is _kernels.cpu_kernels and K is not _kernels.reference:
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
        self._fast = self._fast_plan()

    # --- the cached plan ----------------------------------------------------
    # The common step (each parameter either trains and has a gradient made by backward, or
    # has no gradient and nothing to drop; the CPU's compiled kernels, no L2-SP, momentum
    # buffers already made) repeats the same
    # plan each time: only the gradients are new arrays. _fast_plan records that plan after
    # a general step; _fast_step checks, before writing anything, that everything the plan
    # was derived from is unchanged (identities of the state, groups, parameters, their
    # arrays, buffers and kernels; shapes, dtypes and strides of parameter and gradient;
    # requires_grad, the freeze count, writability) and that the new gradients are fresh
    # arrays that cannot overlap their parameters. If any check fails nothing was written,
    # and step() takes the general path (_plan), which raises or re-plans as it always did.

    def _fast_plan(self):
        """The plan of the step just taken, for _fast_step, or None when it is not the common case."""
        K = _kernels.cpu_kernels
        if K is _kernels.reference:
            return None
        groups = []
        for g in self.param_groups:
            if g["l2sp"]:
                return None
            mom_on = g["momentum"] != 0
            entries, skips = [], []
            for k, p in enumerate(g["params"]):
                data, grad = p.data, p.grad
                if grad is None:
                    # _plan leaves it alone (trains but got no gradient, or frozen with no stale
                    # gradient and no momentum left to drop) as long as that stays so
                    st = self.state.get(id(p))
                    if p.requires_grad or st is None or "momentum_buffer" not in st:
                        skips.append((k, p, p.requires_grad))
                        continue
                    return None
                if not p.requires_grad or type(data) is not np.ndarray or type(grad) is not np.ndarray:
                    return None
                root = _root(data)
                if not root.flags.owndata:
                    return None             # memory owned elsewhere: keep the full overlap check
                st = self.state.get(id(p))
                buf = None
                if mom_on:
                    buf = st.get("momentum_buffer") if st is not None else None
                    if (buf is None or type(buf) is not np.ndarray or buf.dtype is not data.dtype
                            or buf.strides != data.strides or buf.shape != data.shape):
                        return None
                    if st.get("freezes", 0) != getattr(p, "_freezes", 0):
                        return None
                c, f = data.flags.c_contiguous, data.flags.f_contiguous
                if not (c or f):
                    return None             # a strided view: the reference kernel's path
                t = not c                   # F order (Linear's weight): update the C-ordered transposes
                entries.append((k, p, data, data.shape, data.dtype, data.strides, root, st, buf,
                                getattr(p, "_freezes", 0), data.T if t else data,
                                None if buf is None else (buf.T if t else buf), t,
                                data.nbytes >= _knobs._STREAM_MIN_BYTES))
            groups.append((g, g["params"], len(g["params"]), mom_on, entries, skips))
        return (self.state, self.param_groups, len(self.param_groups), K, _knobs._STREAM_MIN_BYTES, groups)

    def _fast_step(self) -> bool:
        """Take this step by the cached plan: False (having written nothing) if it no longer holds."""
        state, pgs, ngroups, K, min_bytes, groups = self._fast
        if (state is not self.state or pgs is not self.param_groups or len(pgs) != ngroups
                or _kernels.cpu_kernels is not K or _knobs._STREAM_MIN_BYTES != min_bytes):
            return False
        calls = []
        # 1. check everything, write nothing
        for (g, ps, n, mom_on, entries, skips), g_now in zip(groups, pgs):
            if g_now is not g or g["params"] is not ps or len(ps) != n or g["l2sp"] or (g["momentum"] != 0) != mom_on:
                return False
            # (entries and skips hold every index of ps once: together they check the whole list)
            for k, p0, requires_grad in skips:
                p = ps[k]
                if p is not p0 or p.grad is not None or p.requires_grad != requires_grad:
                    return False
                if not requires_grad:
                    st = state.get(id(p))
                    if st is not None and "momentum_buffer" in st:
                        return False        # a frozen parameter's momentum to drop: the general path
            for k, p0, data, shape, dtype, strides, root, st, buf, freezes, data_k, buf_k, t, large in entries:
                p = ps[k]
                grad = p.grad
                if (p is not p0 or not p.requires_grad or p.data is not data or type(grad) is not np.ndarray
                        or data.shape != shape or data.dtype is not dtype or data.strides != strides
                        or grad.shape != shape or grad.dtype is not dtype or grad.strides != strides
                        or not data.flags.writeable):
                    return False
                # no overlap: a gradient that owns its memory (backward's are fresh arrays) and is
                # not the array that owns the parameter's memory shares nothing with it
                if grad.base is not None or grad is root or not grad.flags.owndata:
                    return False
                if mom_on and (state.get(id(p)) is not st or st.get("momentum_buffer") is not buf
                               or getattr(p, "_freezes", 0) != freezes):
                    return False            # state replaced by hand, or frozen and unfrozen since
                calls.append((data_k, grad.T if t else grad, buf_k, large))
        # 2. write: the same kernel calls the general path makes (no first steps here)
        sgd_step = K.sgd_step
        path = None
        i = 0
        for g, ps, n, mom_on, entries, skips in groups:
            lr, mom, damp, wd, nest = g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"]
            m = len(entries)
            for data_k, grad_k, buf_k, large in calls[i:i + m]:
                if large:
                    if path is None:
                        path = self._store_path()
                    sgd_step(data_k, grad_k, buf_k, lr, mom, damp, wd, nest, False, path)
                else:
                    sgd_step(data_k, grad_k, buf_k, lr, mom, damp, wd, nest, False)
            i += m
        return True

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
        now = _knobs._clock()
        plain, streamed, prev = s[2], s[3], s[4]
        if prev is not None:
            (streamed if prev else plain).append(now - s[5])
        if len(plain) >= _knobs._STREAM_TRIALS and len(streamed) >= _knobs._STREAM_TRIALS:
            s[0] = median(streamed) < _knobs._STREAM_GAIN * median(plain)
            s[1] = _knobs._STREAM_RETIME
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

__all__ = ["SGD"]
