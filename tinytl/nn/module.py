"""Module and Parameter: the stateful side of tinytl, named as in PyTorch.

A ``Module`` registers the ``Parameter``s and sub-``Module``s assigned to its
attributes, and the buffers given to ``register_buffer`` (state that is not
trained, such as BatchNorm's running statistics), so ``named_parameters()``,
``named_buffers()`` and ``state_dict()`` can walk the tree and name each tensor
by its path (``0.weight``, ``encoder.2.bias``, ``1.running_mean``). The state
dict holds NumPy arrays with PyTorch's names, shapes and order (each module's
parameters, then its buffers), so a PyTorch state dict of the same architecture
loads unchanged.

Two guards against silent mistakes that other frameworks allow:
- assigning an attribute that does not exist on a finished module (a typo such
  as ``model.requires_grad = False``) raises AttributeError;
- ``load_state_dict`` checks every key, shape and dtype before copying
  anything, so a failed load leaves the weights untouched.

Read next: ``tinytl/nn/layers.py``.
"""
from __future__ import annotations

import difflib
import os
import sys
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from ..tensor import Tensor, _call_tracked, is_anomaly_enabled

_tensor_module = sys.modules[Tensor.__module__]   # tinytl/tensor.py (tinytl.tensor is the function)

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _few(names, n=4) -> str:
    """The first ``n`` names, quoted, and how many there are in all ('no keys' when empty)."""
    names = list(names)
    if not names:
        return "no keys"
    shown = ", ".join(f"'{k}'" for k in names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


_requires_grad_slot = Tensor.__dict__["requires_grad"]   # the plain attribute Tensor stores it in


class Parameter(Tensor):
    """A Tensor that is a module's weight: requires a gradient unless frozen.

    Setting ``requires_grad = False`` freezes it: its stale gradient is dropped at
    once, and the optimizer drops its momentum, so unfreezing later starts afresh.
    Like Tensors, Parameters have a fixed set of attributes: a typo such as
    ``p.require_grad = False`` raises AttributeError instead of freezing nothing.
    """

    __slots__ = ("_freezes",)   # how many times it was frozen (optimizers compare it)

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        if data.dtype.kind != "f":
            raise TypeError(f"Parameter needs a floating-point array, got dtype {data.dtype}")
        self._freezes = 0
        _requires_grad_slot.__set__(self, False)
        super().__init__(data, requires_grad=requires_grad)

    def _set_requires_grad(self, value):
        value = bool(value)
        if not value:
            if _requires_grad_slot.__get__(self):
                self._freezes += 1
            self.grad = None
        _requires_grad_slot.__set__(self, value)

    # Reading is the slot's own C-level getter (no Python frame: autograd and the optimizer
    # read requires_grad many times a step); only setting needs Python, to count freezes.
    requires_grad = property(_requires_grad_slot.__get__, _set_requires_grad,
                             doc="Whether backward computes a gradient for it (False: frozen).")

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class RemovableHandle:
    """What ``register_forward_hook`` returns: ``handle.remove()`` (or leaving a
    ``with handle:`` block) takes the hook off again, as in PyTorch."""

    _next_id = 0

    def __init__(self, hooks: OrderedDict):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    @classmethod
    def _add(cls, hooks: OrderedDict, hook, prepend: bool, fn: str) -> "RemovableHandle":
        if not callable(hook):
            raise TypeError(f"{fn}: hook must be callable, got {type(hook).__name__}")
        handle = cls(hooks)
        hooks[handle.id] = hook
        if prepend:
            hooks.move_to_end(handle.id, last=False)
        return handle

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class _ModuleMeta(type):
    """Marks a module as built once its ``__init__`` returns (see Module.__setattr__)."""

    def __call__(cls, *args, **kwargs):
        obj = super().__call__(*args, **kwargs)
        object.__setattr__(obj, "_built", True)
        return obj


class Module(metaclass=_ModuleMeta):
    """Base class of every layer and model.

    Subclasses set Parameters and Modules as attributes in ``__init__`` and
    implement ``forward``. Calling the module calls ``forward``.
    """

    _built = False
    _optional_buffers = ()   # buffer names a state dict may lack without being "missing" (BatchNorm)

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- attribute registration -------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if isinstance(value, Parameter):
            modules.pop(name, None)
            buffers.pop(name, None)
            self._non_persistent_buffers_set.discard(name)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            self._non_persistent_buffers_set.discard(name)
            modules[name] = value
        elif name in buffers:      # assigning to a buffer replaces it (as torch)
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer '{name}' of "
                                f"{type(self).__name__} (a Tensor or None is expected)")
            buffers[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter '{name}' of "
                                f"{type(self).__name__} (a Parameter or None is expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule '{name}' of "
                                f"{type(self).__name__} (a Module or None is expected)")
            modules[name] = None
        elif self._built and not hasattr(self, name):
            known = [n for n in dir(self) if not n.startswith("__")]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise AttributeError(f"'{type(self).__name__}' has no attribute '{name}'{hint} "
                                 f"(tinytl refuses to create attributes on a built module, to catch typos)")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers.pop(name, None)
        self._non_persistent_buffers_set.discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param):
        """Add a parameter (or None) under ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: '{name}' must be a Parameter or None")
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name: str, tensor, persistent: bool = True):
        """Add a buffer: a Tensor that is part of the module's state but not a parameter
        (no gradient, not seen by the optimizer), such as BatchNorm's ``running_mean``.

        Buffers move with ``.to(device)``, are cast by ``.float()``/``.double()`` when
        floating point, and are saved in the state dict (after the module's own
        parameters) unless ``persistent=False``. As ``torch.nn.Module.register_buffer``.

        Args:
            name: the attribute name (no '.').
            tensor: a Tensor, or None (a buffer slot that is skipped in the state dict).
            persistent: whether the buffer is part of ``state_dict()``.
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before register_buffer")
        if not isinstance(name, str):
            raise TypeError(f"register_buffer: buffer name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"register_buffer: a buffer name must be non-empty and without '.', got {name!r}")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"register_buffer: attribute '{name}' already exists")
        if tensor is not None and (not isinstance(tensor, Tensor) or isinstance(tensor, Parameter)):
            raise TypeError(f"register_buffer: cannot assign {type(tensor).__name__} to buffer '{name}' "
                            f"(a Tensor or None is expected)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module):
        """Add a child module (or None) under ``name``."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"add_module: a module name must be a non-empty string without '.', got {name!r}")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: '{name}' must be a Module or None")
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._modules[name] = module
        object.__setattr__(self, name, module)

    # --- calling ------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        if _tensor_module._anomaly:                  # detect_anomaly: errors name the running layer
            return _call_tracked(self, args, kwargs)   # (the flag read directly: a call per layer saved)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args, kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            new = hook(self, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
        out = _call_tracked(self, args, kwargs) if is_anomaly_enabled() else self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    def _has_hooks(self) -> bool:
        return bool(self._forward_pre_hooks or self._forward_hooks)

    def register_forward_pre_hook(self, hook, *, prepend: bool = False) -> "RemovableHandle":
        """Call ``hook(module, args)`` before every ``forward``; it may return new args
        (a tuple, or one value). Returns a handle whose ``remove()`` takes the hook off."""
        return RemovableHandle._add(self._forward_pre_hooks, hook, prepend, "register_forward_pre_hook")

    def register_forward_hook(self, hook, *, prepend: bool = False) -> "RemovableHandle":
        """Call ``hook(module, args, output)`` after every ``forward``; it may return a
        new output. Returns a handle whose ``remove()`` takes the hook off."""
        return RemovableHandle._add(self._forward_hooks, hook, prepend, "register_forward_hook")

    # --- walking the tree ---------------------------------------------------
    def named_modules(self, prefix: str = "", memo=None):
        """Yield (name, module) for this module and every descendant, each once."""
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in memo:
                continue
            memo.add(id(mod))
            yield name, mod
            children = [(f"{name}.{k}" if name else k, m) for k, m in mod._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for k, m in self._modules.items():
            if m is not None:
                yield k, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """Yield (dotted name, Parameter), each parameter once even if shared."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, mod in mods:
            for k, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{k}" if mname else k), p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """Yield (dotted name, buffer Tensor) for every buffer (None slots skipped)."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, mod in mods:
            for k, b in mod._buffers.items():
                if b is None or (remove_duplicate and id(b) in seen):
                    continue
                seen.add(id(b))
                yield (f"{mname}.{k}" if mname else k), b

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn`` on every submodule (children first, recursively) and then on self;
        returns self. The usual way to initialise a model's weights::

            def init(m):
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
            model.apply(init)
        """
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def get_submodule(self, target: str) -> "Module":
        """The submodule at dotted path ``target`` ("" is self), as torch's ``get_submodule``.

        Raises:
            AttributeError: naming the first part of the path that is not a submodule.
        """
        if not isinstance(target, str):
            raise TypeError(f"get_submodule: target must be a str, got {type(target).__name__}")
        mod = self
        if target == "":
            return mod
        for item in target.split("."):
            if item not in mod._modules or mod._modules[item] is None:
                if hasattr(mod, item) and not isinstance(getattr(mod, item), Module):
                    raise AttributeError(f"get_submodule: `{item}` of {type(mod).__name__} is not an nn.Module")
                raise AttributeError(f"get_submodule: {type(mod).__name__} has no attribute `{item}` "
                                     f"(looking up '{target}')")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at dotted path ``target`` (e.g. "0.weight")."""
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters or mod._parameters[name] is None:
            raise AttributeError(f"get_parameter: {type(mod).__name__} has no parameter `{name}`")
        return mod._parameters[name]

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at dotted path ``target`` (e.g. "1.running_mean")."""
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._buffers or mod._buffers[name] is None:
            raise AttributeError(f"get_buffer: {type(mod).__name__} has no buffer `{name}`")
        return mod._buffers[name]

    # --- modes and gradients --------------------------------------------------
    def train(self, mode: bool = True):
        """Set training mode on this module and every descendant (Dropout drops,
        BatchNorm uses batch statistics); returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: training mode is expected to be boolean, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad: bool = True):
        """Set requires_grad on every parameter (freezing drops stale gradients)."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
            if not requires_grad:
                p.grad = None
        return self

    def freeze(self):
        """Freeze every parameter: no gradient is computed, the optimizer skips them."""
        return self.requires_grad_(False)

    def unfreeze(self):
        """Make every parameter trainable again."""
        return self.requires_grad_(True)

    # --- state dict -------------------------------------------------------
    def _named_state(self, prefix: str = ""):
        """(dotted name, Tensor, is_buffer) of everything in the state dict, in torch's order:
        module by module (pre-order), each module's parameters, then its persistent buffers."""
        seen = set()
        for mname, mod in self.named_modules(prefix):
            for k, p in mod._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{k}" if mname else k), p, False
            for k, b in mod._buffers.items():
                if b is not None and k not in mod._non_persistent_buffers_set:
                    yield (f"{mname}.{k}" if mname else k), b, True

    def state_dict(self, *, prefix: str = "", keep_vars: bool = False) -> "OrderedDict[str, np.ndarray]":
        """Every parameter and persistent buffer as a NumPy array, keyed by its dotted name
        (torch's keys and order: a BatchNorm1d gives weight, bias, running_mean,
        running_var, num_batches_tracked).

        The arrays are copies: later training does not change a saved state dict.
        With ``keep_vars=True`` the Parameters and buffer Tensors themselves are returned.
        """
        if keep_vars:
            return OrderedDict((k, t) for k, t, _ in self._named_state(prefix))
        return OrderedDict((k, backend.to_numpy(t.data).copy()) for k, t, _ in self._named_state(prefix))

    def load_state_dict(self, state_or_path, strict: bool = True) -> IncompatibleKeys:
        """Copy weights from a state dict (name -> array) or a checkpoint file.

        Every key, shape and dtype is checked before anything is copied: on any
        error the model is unchanged. Floating values of another precision are
        cast to the parameter's dtype (a float64 checkpoint loads into a float32
        model); non-floating values are refused, except for integer buffers
        (``num_batches_tracked``), which take integer values. A BatchNorm's
        ``num_batches_tracked`` may be absent (older checkpoints), as in torch. A shape mismatch is always an
        error (use ``tl.transfer.transfer_weights`` to copy what fits). A state
        dict of which no key names a parameter of the model (an empty one, or
        one with a wrong prefix) is an error even with ``strict=False``, as in
        ``transfer_weights``: it would load nothing.

        Args:
            state_or_path: a dict of arrays (NumPy, CuPy or Tensors) or a path to a
                ``.safetensors`` / ``.npz`` checkpoint.
            strict: require the keys to match exactly. With ``strict=False``,
                missing and unexpected keys are returned, not raised, but at
                least one key must match.

        Returns:
            IncompatibleKeys(missing_keys, unexpected_keys).

        Raises:
            ValueError: listing every problem (a shape or dtype mismatch; missing
                or unexpected keys when strict; no key matching at all), before
                anything is copied.
        """
        if isinstance(state_or_path, (str, os.PathLike)):
            from .. import io
            state = io.load(state_or_path)
        elif hasattr(state_or_path, "items"):
            state = state_or_path
        else:
            raise TypeError(f"load_state_dict expects a dict or a path, got {type(state_or_path).__name__}")
        entries = list(self._named_state())
        own = OrderedDict((k, t) for k, t, _ in entries)
        is_buffer = {k: b for k, _, b in entries}
        optional = {f"{n}.{k}" if n else k for n, m in self.named_modules() for k in m._optional_buffers}
        missing = [k for k in own if k not in state and k not in optional]
        unexpected = [k for k in state if k not in own]
        problems, staged = [], []
        for k, p in own.items():
            if k not in state:
                continue
            v = state[k]
            v = v.data if isinstance(v, Tensor) else v
            if not (isinstance(v, np.ndarray) or backend.is_cupy_array(v)):
                try:
                    v = np.asarray(v)
                except Exception:
                    problems.append(f"'{k}': value of type {type(v).__name__} is not an array")
                    continue
            if tuple(v.shape) != tuple(p.shape):
                problems.append(f"size mismatch for '{k}': checkpoint {tuple(v.shape)}, model {tuple(p.shape)}")
            elif is_buffer[k] and p.dtype.kind != "f":   # an integer buffer (num_batches_tracked)
                if v.dtype.kind not in "iub":
                    problems.append(f"'{k}': checkpoint dtype {v.dtype} is not an integer, as buffer "
                                    f"dtype {p.dtype}")
                else:
                    staged.append((p, v))
            elif v.dtype.kind != "f":
                problems.append(f"'{k}': checkpoint dtype {v.dtype} is not floating point")
            else:
                staged.append((p, v))
        if strict and (missing or unexpected):
            if missing:
                problems.append("missing keys: " + ", ".join(missing))
            if unexpected:
                problems.append("unexpected keys: " + ", ".join(unexpected))
        if own and not any(k in own for k in state):
            problems.append("no key of the state dict matches a parameter of the model, nothing would be "
                            f"loaded (the model expects {_few(own)}; the state dict has {_few(state)})")
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__} failed, nothing was copied:\n  "
                             + "\n  ".join(problems)
                             + ("\n(to copy only what fits, use tl.transfer.transfer_weights)"
                                if any("size mismatch" in s for s in problems) else ""))
        for p, v in staged:
            v = backend.to_device(v, p.device)
            p.data[...] = v.astype(p.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # --- devices and dtypes -------------------------------------------------
    def _apply(self, fn, floats_only: bool = False):
        """Replace every parameter's (and gradient's) and buffer's array by ``fn(array)``;
        with ``floats_only``, integer buffers (num_batches_tracked) are left as they are."""
        for p in self.parameters():
            p.data = fn(p.data)
            if p.grad is not None:
                p.grad = fn(p.grad)
        for b in self.buffers():
            if not floats_only or b.dtype.kind == "f":
                b.data = fn(b.data)
        return self

    def to(self, device):
        """Move every parameter (and its gradient) and buffer to ``device``; returns self."""
        device = backend.check_device(device)
        return self._apply(lambda a: backend.to_device(a, device))

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        """Cast every parameter to float32; returns self."""
        return self._apply(lambda a: a.astype(np.float32, copy=False), floats_only=True)

    def double(self):
        """Cast every parameter to float64 (for gradient checks); returns self."""
        return self._apply(lambda a: a.astype(np.float64, copy=False), floats_only=True)

    # --- printing -----------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = []
        for name, mod in self._modules.items():
            body = repr(mod).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
