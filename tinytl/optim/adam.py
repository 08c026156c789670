"""Adam and AdamW, exactly torch.optim.Adam's and torch.optim.AdamW's rules (torch 2.x).

One fused kernel call per parameter (``adam_step``, see ``tinytl/kernels/reference.py``)
applies weight decay, both moments, amsgrad's maximum and the bias-corrected step in one
pass over the elements (C++ on the CPU, CUDA on a GPU). Per parameter the state holds
``step`` (how many steps it has taken), ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with
amsgrad, ``max_exp_avg_sq``, under torch's names; ``state_dict()`` saves them in torch's
format (``step`` as a float32 scalar, as torch keeps it).

AdamW is Adam with ``decoupled_weight_decay=True`` (torch 2.x defines it the same way):
the weights shrink by ``lr * weight_decay`` before the update, instead of ``weight_decay *
w`` being added to the gradient, where Adam's normalisation would scale it away.

Read next: ``tinytl/optim/lr_scheduler.py``.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import kernels as _kernels
from ..tensor import enable_grad, is_anomaly_enabled
from .optimizer import Optimizer, _check_grad, _check_number, _same_memory

_ADAM_DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                      decoupled_weight_decay=False)
_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015), exactly torch.optim.Adam's rule; with t the parameter's step::

        g = -grad if maximize else grad
        w = w * (1 - lr * weight_decay)        if decoupled_weight_decay (AdamW)
        g = g + weight_decay * w               otherwise (L2 in the gradient)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                  with amsgrad (then v_hat = v_max, else v)
        w = w - lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    Args:
        params: an iterable of Parameters, or of dicts ``{"params": [...], "lr": ...}``
            (parameter groups, each with its own options).
        lr: learning rate (default 1e-3).
        betas: (beta1, beta2), the decay rates of m and v, each in [0, 1) (default (0.9, 0.999)).
        eps: added to the denominator, after the square root (default 1e-8).
        weight_decay: L2 penalty (default 0).
        amsgrad: use the running maximum of v (Reddi et al., 2018).
        maximize: maximise the objective instead of minimising it.
        decoupled_weight_decay: AdamW's decay (``AdamW`` sets it).

    Like torch.optim.Adam(params, lr, betas, eps, weight_decay, amsgrad, *, maximize,
    decoupled_weight_decay); ``step(closure=None)`` returns the closure's loss.
    """

    _OPTIONS = _ADAM_DEFAULTS
    _STATE_ARRAYS = _MOMENTS

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))

    def _check_options(self, g, gi):
        name = self._name()
        g["lr"] = _check_number(name, "lr", g["lr"], gi)
        betas = g["betas"]
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2) (group {gi}), got {betas!r}") from None
        g["betas"] = (_check_number(name, "betas[0]", b1, gi, upper=1.0),
                      _check_number(name, "betas[1]", b2, gi, upper=1.0))
        g["eps"] = _check_number(name, "eps", g["eps"], gi)
        g["weight_decay"] = _check_number(name, "weight_decay", g["weight_decay"], gi)
        for k in ("amsgrad", "maximize", "decoupled_weight_decay"):
            g[k] = bool(g[k])

    @staticmethod
    def _opts(g):
        """The kernel's options after ``step``: lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled."""
        b1, b2 = g["betas"]
        return (g["lr"], b1, b2, g["eps"], g["weight_decay"], g["amsgrad"], g["maximize"],
                g["decoupled_weight_decay"])

    def step(self, closure=None):
        """Update every trainable parameter that has a gradient, in place; returns ``closure()`` if given.

        All or nothing: every group's options and every gradient are checked (device,
        shape, dtype, memory) before anything is written; under ``detect_anomaly`` every
        new value is computed on copies and checked before any is committed. A step that
        raises leaves parameters and optimizer state as they were.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        plan = [(g, self._plan(gi, g)) for gi, g in enumerate(self.param_groups)]   # checks, writes nothing
        if is_anomaly_enabled():
            self._checked_commit(plan)
            return loss
        for g, (items, updates) in plan:
            opts = self._opts(g)
            for K, p, grad, m, v, vmax, t, back in items:
                K.adam_step(p, grad, m, v, vmax, t, *opts)
                if back is not None:        # a strided parameter, updated through a contiguous copy
                    back[...] = p
            self._apply_state(updates)      # new steps and moments are kept once written
        return loss

    def _plan(self, gi, g):
        """What a step does to group ``g`` (number ``gi``), without doing it: the kernel calls
        ``[(K, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, back)]`` (arrays as the
        kernels take them; ``back`` is the strided parameter to copy the result into, or None)
        and the state updates ``[(param, {entry: value, or None to drop it}, drop_grad)]``.

        Raises, naming the parameter or option, if an option is out of range (set by hand
        or by a scheduler), a gradient does not fit its parameter or the parameter cannot
        be written: what the kernels would refuse, found first."""
        self._check_options(g, gi)
        name, amsgrad = self._name(), g["amsgrad"]
        items, updates = [], []
        for k, p in enumerate(g["params"]):
            st = self.state.get(id(p))
            if not p.requires_grad:                 # frozen: drop the stale grad and the state
                if p.grad is not None or st:
                    updates.append((p, dict.fromkeys(("step", *_MOMENTS)), True))
                continue
            grad = p.grad
            if grad is None:
                continue
            data = p.data
            _check_grad(grad, data, f"parameter {k} of group {gi}", name)
            if _same_memory(grad, data):            # AdamW scales w before reading g: keep g apart
                grad = grad.copy()
            freezes = getattr(p, "_freezes", 0)
            new = {}
            if st is None or "step" not in st or st.get("freezes", 0) != freezes:   # first step, or frozen since
                st = {}
                new.update(step=0, freezes=freezes, max_exp_avg_sq=None,
                           exp_avg=_zeros_like(data), exp_avg_sq=_zeros_like(data))
            moments = []
            for key in _MOMENTS:
                if key == "max_exp_avg_sq" and not amsgrad:
                    moments.append(None)
                    continue
                a = new.get(key, st.get(key))
                if a is None:                       # amsgrad switched on for a parameter with state
                    a = new[key] = _zeros_like(data)
                elif not _fits(a, data):            # set by hand, or the parameter moved
                    a = new[key] = _fit(a, data)
                moments.append(a)
            t = new["step"] = int(new.get("step", st.get("step", 0))) + 1
            updates.append((p, new, False))
            K, back = _kernels.for_array(data), None
            if not data.flags.c_contiguous:
                if data.flags.f_contiguous:
                    # a transposed weight (Linear's layout): the update is elementwise, so it
                    # runs on the C-contiguous transposes (the kernels take C order only)
                    data, grad = data.T, grad.T
                    moments = [None if a is None else a.T for a in moments]
                else:                                # a strided view set by hand
                    back, data = data, backend.get_array_module(data).ascontiguousarray(data)
            items.append((K, data, grad, *moments, t, back))
        return items, updates

    def _checked_commit(self, plan):
        """detect_anomaly's step: every update computed on copies and checked, then committed."""
        done = []
        for g, (items, updates) in plan:
            opts = self._opts(g)
            for K, p, grad, m, v, vmax, t, back in items:
                xp = backend.get_array_module(p)
                arrays = [p, m, v] + ([] if vmax is None else [vmax])
                copies = [a.copy() for a in arrays]
                K.adam_step(copies[0], grad, copies[1], copies[2], None if vmax is None else copies[3], t, *opts)
                if not bool(xp.isfinite(copies[0]).all()):
                    raise FloatingPointError(
                        f"detect_anomaly: {self._name()}.step would write a non-finite value into a parameter of "
                        f"shape {p.shape}; no parameter was changed")
                if back is not None:
                    arrays[0] = back
                done.append((arrays, copies))
        for g, (items, updates) in plan:
            self._apply_state(updates)
        for arrays, copies in done:
            for a, c in zip(arrays, copies):
                a[...] = c

    # --- resuming -----------------------------------------------------------
    def _save_entry(self, key, value):
        if key == "step":
            return np.asarray(float(value), dtype=np.float32)    # torch keeps step as a float32 scalar
        return super()._save_entry(key, value)

    def _load_entries(self, st, p):
        st = dict(st)
        if "step" not in st:
            raise ValueError(f"{self._name()}.load_state_dict: the state of a parameter of shape {p.shape} "
                             "has no 'step'")
        step = st.pop("step")
        step = np.asarray(backend.to_numpy(step) if backend.is_cupy_array(step) else step, dtype=np.float64)
        if step.size != 1 or not np.isfinite(step).all() or float(step.reshape(())) < 0 \
                or float(step.reshape(())) != int(step.reshape(())):
            raise ValueError(f"{self._name()}.load_state_dict: 'step' must be a whole number >= 0, got {step!r}")
        for key in ("exp_avg", "exp_avg_sq"):
            if key not in st:
                raise ValueError(f"{self._name()}.load_state_dict: the state of a parameter of shape {p.shape} "
                                 f"has no {key!r}")
        out = super()._load_entries(st, p)
        out["step"] = int(step.reshape(()))
        return out


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, 2019), exactly torch.optim.AdamW's rule: Adam whose weight
    decay is decoupled from the gradient, ``w = w * (1 - lr * weight_decay)`` before the update.

    Args: as ``Adam``, with ``weight_decay`` defaulting to 1e-2 (torch's default).
    Like torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
    amsgrad=False, *, maximize=False).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)

    def _check_options(self, g, gi):
        super()._check_options(g, gi)
        g["decoupled_weight_decay"] = True      # as torch: an AdamW always decouples, whatever was loaded


def _want_f(data) -> bool:
    """Whether state arrays of ``data`` are kept in F order (a transposed weight), else C."""
    return data.flags.f_contiguous and not data.flags.c_contiguous


def _zeros_like(data):
    """Zeros with the dtype and device of ``data``, C-contiguous (or F, as a transposed ``data`` is)."""
    return backend.get_array_module(data).zeros(data.shape, data.dtype, order="F" if _want_f(data) else "C")


def _fits(a, data) -> bool:
    return (a.dtype == data.dtype and tuple(a.shape) == tuple(data.shape)
            and backend.is_cupy_array(a) == backend.is_cupy_array(data)
            and (a.flags.f_contiguous if _want_f(data) else a.flags.c_contiguous))


def _fit(a, data):
    """State array ``a`` copied to the dtype, device and layout the kernels take for ``data``."""
    if tuple(a.shape) != tuple(data.shape):
        raise ValueError(f"optimizer state of shape {tuple(a.shape)} for a parameter of shape {data.shape}")
    out = _zeros_like(data)
    out[...] = backend.to_device(a, backend.device_of(data))
    return out


__all__ = ["Adam", "AdamW"]
