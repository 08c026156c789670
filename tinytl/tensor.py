"""Tensor and the autograd graph: the core of tinytl, readable in one sitting.

A ``Tensor`` wraps an array (``.data``, NumPy on the CPU, CuPy on a GPU). Each
differentiable operation makes its output with ``_make(data, parents,
backward, op)``: ``backward`` is a closure that turns the output's gradient
into one gradient per parent (None where a parent needs none). Nothing is
recorded when no parent requires a gradient or inside ``no_grad()``, so a
frozen part of a network builds no graph and costs nothing in backward.

What the graph keeps alive is only what backward will use: the recorded
``_Node`` links to its inputs' nodes (or, for leaves that need a gradient, to
the leaf tensors), never to the input tensors themselves, so an activation is
kept only when an op's backward closure holds it. Each op decides that when
it is recorded, from its inputs' ``requires_grad`` (``functional.linear``
keeps its input only when the weight trains): ``tinytl.memory.saved_bytes``
counts what the closures hold.

``Tensor.backward`` sorts the graph topologically (a depth-first post-order,
iteratively: deep graphs must not hit Python's recursion limit), then walks it
in reverse, summing the
gradients of tensors used more than once. Leaf tensors that require a gradient
receive it in ``.grad``.

Read next: ``tinytl/functional.py`` (linear, relu, the losses), then
``tinytl/nn/module.py``.
"""
from __future__ import annotations

import threading

import numpy as np

from . import backend, dtypes
from . import device as _device

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ------------------------------------------------------------ grad mode ----

class _GradMode(threading.local):
    enabled = True   # per thread, like PyTorch's grad mode


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    return _grad_mode.enabled


class no_grad:
    """Context manager (and decorator) inside which no graph is recorded.

    Example::

        with tl.no_grad():
            logits = model(x)      # no graph, no memory kept for backward
    """

    def __enter__(self):
        self._prev = _grad_mode.enabled
        _grad_mode.enabled = False

    def __exit__(self, *exc):
        _grad_mode.enabled = self._prev
        return False

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        return wrapper


class enable_grad(no_grad):
    """Context manager that turns gradient recording back on (inside no_grad)."""

    def __enter__(self):
        self._prev = _grad_mode.enabled
        _grad_mode.enabled = True


class inference_mode(no_grad):
    """``torch.inference_mode(mode=True)``: no_grad (context manager and decorator); with
    mode=False it changes nothing. tinytl has no separate inference tensors."""

    def __init__(self, mode: bool = True):
        self.mode = bool(mode)

    def __enter__(self):
        self._prev = _grad_mode.enabled
        _grad_mode.enabled = _grad_mode.enabled and not self.mode

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with inference_mode(self.mode):
                return fn(*args, **kwargs)
        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        return wrapper


class set_grad_enabled:
    """``torch.set_grad_enabled(mode)``: sets grad mode at once (a function), and restores the
    previous mode at the end of a ``with`` block (a context manager)."""

    def __init__(self, mode: bool):
        self._prev = _grad_mode.enabled
        _grad_mode.enabled = bool(mode)

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        _grad_mode.enabled = self._prev
        return False


# ----------------------------------------------------- anomaly detection ----

_anomaly = False   # process-wide switch, read once per op: cheap when off


class detect_anomaly:
    """Context manager: the first op whose forward or backward output holds NaN
    or Inf raises ``FloatingPointError`` naming the op (and the layer, when the
    op was called by one). The optimizer refuses to write non-finite values
    into parameters while it is on. Off by default.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled)

    def __enter__(self):
        global _anomaly
        self._prev = _anomaly
        _anomaly = self.enabled

    def __exit__(self, *exc):
        global _anomaly
        _anomaly = self._prev
        return False


def is_anomaly_enabled() -> bool:
    return _anomaly


class _LayerStack(threading.local):
    def __init__(self):
        self.modules = []   # the Modules being called on this thread, outermost first


_layers = _LayerStack()


def _call_tracked(module, args, kwargs):
    """Module.__call__ under detect_anomaly: remember which layer is running."""
    stack = _layers.modules
    stack.append(module)
    try:
        return module.forward(*args, **kwargs)
    finally:
        stack.pop()


def _layer_label(op: str) -> str:
    """``op`` quoted, with the layer that runs it: "'Linear' in layer '2' (Linear)" (detect_anomaly)."""
    stack = _layers.modules
    if not stack:
        return f"'{op}'"
    root, leaf = stack[0], stack[-1]
    if leaf is root:
        return f"'{op}' in {type(leaf).__name__}"
    name = next((n for n, m in root.named_modules() if m is leaf), "?")
    return f"'{op}' in layer '{name}' ({type(leaf).__name__})"


def _quoted(op: str) -> str:
    """A node's op for a message: labelled by _layer_label already, or a bare name."""
    return op if op.startswith("'") else f"'{op}'"


def _check_finite(array, what: str):
    xp = backend.get_array_module(array)
    if array.dtype.kind == "f" and not bool(xp.isfinite(array).all()):
        raise FloatingPointError(f"detect_anomaly: {what} produced a non-finite value (NaN or Inf)")


# ---------------------------------------------------------------- Tensor ----

class Tensor:
    """An array with an optional gradient and a link to the op that made it.

    Attributes:
        data: the array (numpy.ndarray on the CPU, cupy.ndarray on a GPU).
        grad: the gradient array (same shape), or None.
        requires_grad: whether backward should compute a gradient for it.
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "__weakref__")
    __array_priority__ = 1000    # make ndarray + Tensor call Tensor.__radd__
    __hash__ = object.__hash__   # hashable by identity, as torch's (== is elementwise: tinytl/ops.py)

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        if not (isinstance(data, np.ndarray) or backend.is_cupy_array(data)):
            data = np.asarray(data)
        if requires_grad and data.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"requires_grad=True needs a float32 or float64 tensor, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None      # the op that made it (a _Node), None for a leaf

    # --- properties -------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def device(self) -> _device.device:
        """``device(type='cpu')`` or ``device(type='cuda', index=N)`` (also equal to 'cpu' / 'cuda')."""
        return _device.of_array("cuda", self.data.device.id) if backend.is_cupy_array(self.data) else _CPU

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    # --- conversion (more in tinytl/ops.py: to, float, clone, ...) ---------
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (a copy when it lives on a GPU)."""
        return backend.to_numpy(self.data)

    def item(self):
        """The single value of a one-element tensor, as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph (no copy)."""
        return Tensor(self.data)

    # --- autograd ---------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False):
        """Compute the gradients of this tensor with respect to every leaf that requires one.

        Args:
            grad: dL/d(self), a Tensor, an array or a number, on any device (it is
                copied to this tensor's device and dtype); may be omitted for a
                one-element tensor (taken as 1).
            retain_graph: keep the graph so backward can run through it again.
        """
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no graph "
                               "(was it computed inside no_grad(), or from frozen parameters only?)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward(): grad can be implicit only for a one-element tensor, "
                                   f"got shape {self.shape}")
            if self._node is not None and getattr(self._node.backward, "takes_unit_seed", False):
                grad = UNIT_SEED            # a loss: it needs no array of ones to multiply by
            else:
                grad = backend.get_array_module(self.data).ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if not (isinstance(grad, np.ndarray) or backend.is_cupy_array(grad)):
                grad = np.asarray(grad)     # a Python or NumPy number
            if tuple(grad.shape) != tuple(self.shape):
                raise ValueError(f"backward(): grad has shape {tuple(grad.shape)}, expected {self.shape}")
            # on this tensor's device and in its dtype (as torch), and never the caller's
            # array (no .grad may alias it): a copy, unless the move made one already
            moved = backend.to_device(grad, self.device)
            grad = moved.astype(self.dtype, copy=moved is grad)
        if self._node is None:              # a leaf: its gradient is the seed itself
            _accumulate_leaf(self, grad)
            return

        # 1. topological order of the interior nodes: the post-order of a depth-first
        # search, without recursion. A node is appended only once all its parents are
        # (its "finished" entry comes off the stack after theirs), and is expanded once.
        # Marking nodes when they are *pushed* instead would be wrong: in h + l2(h), h is
        # pushed by the add and reached again through l2, and would be placed before l2,
        # so the reverse walk would use h's gradient before l2's part of it had arrived.
        root = self._node
        order, expanded, stack = [], set(), [(root, False)]
        push, pop, append, add = stack.append, stack.pop, order.append, expanded.add
        # (_Node hashes by identity, so the nodes themselves are the keys of sets and dicts)
        while stack:
            node, finished = pop()
            if finished:
                append(node)
                continue
            if node in expanded:
                continue
            add(node)
            push((node, True))
            for p in node.inputs:
                if type(p) is _Node and p not in expanded:
                    push((p, False))

        # 2. reverse walk: each node turns its gradient into its parents' gradients.
        # A leaf's .grad must be its own writable array: an op may hand the same array
        # (or views of it) to two parents (add, reshape), return one its closure keeps
        # (cross_entropy) and will hand out again if the graph is retained, or return a
        # read-only broadcast view (mean); such arrays are copied.
        grads = {root: grad}
        given = set()                       # ids of arrays already stored in some .grad
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is None:
                continue
            parent_grads = node.backward(g)
            if _anomaly:
                for pg in parent_grads:
                    if pg is not None:
                        _check_finite(pg, f"the backward of {_quoted(node.op)}")
            for p, pg in zip(node.inputs, parent_grads):
                if pg is None or p is None:
                    continue
                if type(p) is not _Node:    # a leaf tensor (frozen since? then it gets nothing)
                    if not p.requires_grad:
                        continue
                    owner = _root(pg)       # a view shares its base's memory: compare owners
                    if retain_graph or id(owner) in given or not _own_writable(pg):
                        pg = owner = pg.copy()
                    given.add(id(owner))
                    _accumulate_leaf(p, pg)
                else:
                    prev = grads.get(p)
                    grads[p] = pg if prev is None else prev + pg

        # 3. free the graph: closures hold the activations
        if not retain_graph:
            for node in order:
                node.backward = _freed_backward
                node.inputs = ()


class _Node:
    """One recorded op: its backward closure, its name, and one entry per input.

    ``inputs[i]`` is the i-th input's own _Node when that input was computed, the input
    tensor itself when it is a leaf that requires a gradient, and None when it needs no
    gradient. The node never holds the input *tensors* it was computed from (they hold
    their arrays): an activation stays alive only if ``backward`` itself keeps it.
    """
    __slots__ = ("backward", "inputs", "op")

    def __init__(self, backward, inputs, op):
        self.backward, self.inputs, self.op = backward, inputs, op


class _UnitSeed:
    """The implicit seed of ``backward()`` on a loss: exactly one, never made into an array.

    A backward closure marked ``takes_unit_seed = True`` (the losses in functional.py)
    receives this object instead of ``ones_like(loss)`` when backward() is called without
    a gradient, and returns its gradient unscaled: on a GPU that saves filling an array of
    ones and a multiplication by it, two kernel launches per training step."""
    __slots__ = ()

    def __repr__(self):
        return "UNIT_SEED"


UNIT_SEED = _UnitSeed()


def _root(a):
    """What owns ``a``'s memory: the NumPy array at the end of its ``.base`` chain, or a CuPy
    array's allocation (``a.data.mem``, shared by all its views); ``a`` itself otherwise."""
    if isinstance(a, np.ndarray):
        while isinstance(a.base, np.ndarray):
            a = a.base
        return a
    mem = getattr(getattr(a, "data", None), "mem", None)
    return a if mem is None else mem


def _own_writable(a) -> bool:
    """False for a read-only or broadcast (stride 0) array, which no .grad may be."""
    if not getattr(a.flags, "writeable", True):
        return False
    if 0 not in a.strides:          # the common case: no stride is 0, nothing broadcast
        return True
    return a.size <= 1 or all(st != 0 for st, n in zip(a.strides, a.shape) if n > 1)


def as_array(x, arg: str, fn: str):
    """``x``'s array: a Tensor's ``.data``, a NumPy or CuPy array as it is, else ``np.asarray(x)``;
    a TypeError naming ``fn`` and ``arg`` when that fails (what the tools that take "an array or
    a Tensor" share)."""
    x = x.data if isinstance(x, Tensor) else x
    if not (isinstance(x, np.ndarray) or backend.is_cupy_array(x)):
        try:
            x = np.asarray(x)
        except Exception:
            raise TypeError(f"{fn}: {arg} must be an array or a Tensor, got {type(x).__name__}") from None
    return x


def _freed_backward(g):
    raise RuntimeError("Trying to backward through the graph a second time: its buffers were freed "
                       "after the first backward. Pass retain_graph=True to the first backward.")


def _accumulate_leaf(t: Tensor, g):
    if g.dtype != t.data.dtype:
        g = g.astype(t.data.dtype)
    if g.shape != t.data.shape:
        g = g.reshape(t.data.shape)
    t.grad = g if t.grad is None else t.grad + g


def _records(*parents) -> bool:
    """Whether an op on ``parents`` (Tensors or None) is recorded: grad mode is on and
    some parent requires a gradient. An op asks this to decide what to keep for backward."""
    if _grad_mode.enabled:
        for p in parents:
            if p is not None and p.requires_grad:
                return True
    return False


def _make(data, parents, backward, op) -> Tensor:
    """The output of an op: records the graph node only when a parent needs a gradient."""
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = None
    out._node = None
    out.requires_grad = False
    if _anomaly:
        op = _layer_label(op)       # kept in the node: a backward error names the layer too
        _check_finite(data, op)
    if _grad_mode.enabled:          # _records(*parents), inlined: one pass that also builds the inputs
        inputs, recorded = [], False
        for p in parents:
            if p is not None and p.requires_grad:
                inputs.append(p._node or p)
                recorded = True
            else:
                inputs.append(None)
        if recorded:
            out.requires_grad = True
            out._node = _Node(backward, tuple(inputs), op)
    return out


_CPU = _device.of_array("cpu")


def tensor(data, requires_grad: bool = False, dtype=None, device: str = "cpu") -> Tensor:
    """Make a tensor from an array, a (nested) list or a number.

    Python floats become float32 (as in PyTorch); NumPy arrays keep their dtype
    unless ``dtype`` is given; integers become int64.

    Args:
        data: array-like (NumPy array, CuPy array, list, number or Tensor).
        requires_grad: record operations on it for backward (float dtypes only).
        dtype: the dtype to convert to (``tl.float64``, ``np.float64``, ...).
        device: 'cpu', 'cuda' or a ``tl.device`` (None: the CPU).
    """
    device = backend.check_device("cpu" if device is None else device)
    dtype = None if dtype is None else dtypes.as_dtype(dtype, "tensor()")
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_cupy_array(data):
        arr = data.astype(dtype) if dtype is not None else data.copy()
    else:
        src_is_array = isinstance(data, np.ndarray)
        arr = np.array(data, dtype=dtype)
        if dtype is None and not src_is_array:
            if arr.dtype == np.float64:
                arr = arr.astype(np.float32)
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
    if arr.dtype == object:
        raise TypeError("tensor(): data must be numeric, got an object array")
    return Tensor(backend.to_device(arr, device), requires_grad=requires_grad)


# ------------------------------------------------------ elementary ops ----
# Each op: compute the forward with the array module, then a closure that maps
# the output's gradient to the inputs' gradients.

def _as_tensor(x, like: Tensor) -> Tensor:
    if isinstance(x, Tensor):
        if backend.is_cupy_array(x.data) != backend.is_cupy_array(like.data):
            raise RuntimeError(f"expected both tensors on the same device, got '{like.device.type}' and "
                               f"'{x.device.type}'")
        return x
    if isinstance(x, (int, float, np.number, bool)):
        xp = backend.get_array_module(like.data)
        return Tensor(xp.asarray(x, dtype=like.dtype if like.dtype.kind == "f" else None))
    return Tensor(backend.to_device(np.asarray(x), like.device) if not backend.is_cupy_array(x) else x)


def _unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def add(a: Tensor, b) -> Tensor:
    """a + b (broadcasting)."""
    b = _as_tensor(b, a)
    sa, sb = a.shape, b.shape
    return _make(a.data + b.data, (a, b),
                 lambda g: (_unbroadcast(g, sa), _unbroadcast(g, sb)), "add")


def sub(a: Tensor, b) -> Tensor:
    """a - b (broadcasting)."""
    b = _as_tensor(b, a)
    sa, sb = a.shape, b.shape
    return _make(a.data - b.data, (a, b),
                 lambda g: (_unbroadcast(g, sa), _unbroadcast(-g, sb)), "sub")


def mul(a: Tensor, b) -> Tensor:
    """a * b (broadcasting); d/da = g * b, d/db = g * a."""
    b = _as_tensor(b, a)

    def backward(g):
        return (_unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                _unbroadcast(g * a.data, b.shape) if b.requires_grad else None)
    return _make(a.data * b.data, (a, b), backward, "mul")


def div(a: Tensor, b) -> Tensor:
    """a / b (broadcasting); d/da = g / b, d/db = -g * a / b**2."""
    b = _as_tensor(b, a)

    def backward(g):
        return (_unbroadcast(g / b.data, a.shape) if a.requires_grad else None,
                _unbroadcast(-g * a.data / (b.data * b.data), b.shape) if b.requires_grad else None)
    return _make(a.data / b.data, (a, b), backward, "div")


def neg(a: Tensor) -> Tensor:
    """-a."""
    return _make(-a.data, (a,), lambda g: (-g,), "neg")


def matmul(a: Tensor, b) -> Tensor:
    """a @ b for 1-D or 2-D operands (and stacks of matrices)."""
    b = _as_tensor(b, a)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: both operands need at least one dimension")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
    xp = backend.get_array_module(a.data, b.data)

    def backward(g):
        A = a.data if a.ndim > 1 else a.data[None, :]
        B = b.data if b.ndim > 1 else b.data[:, None]
        G = g                                # restore the axes the 1-D operands lost
        if a.ndim == 1 and b.ndim == 1:
            G = g.reshape(1, 1)              # a dot product: g is 0-d
        elif a.ndim == 1:
            G = xp.expand_dims(g, -2)
        elif b.ndim == 1:
            G = xp.expand_dims(g, -1)
        ga = gb = None
        if a.requires_grad:
            ga = _unbroadcast(xp.matmul(G, xp.swapaxes(B, -1, -2)), A.shape).reshape(a.shape)
        if b.requires_grad:
            gb = _unbroadcast(xp.matmul(xp.swapaxes(A, -1, -2), G), B.shape).reshape(b.shape)
        return ga, gb
    return _make(xp.asarray(xp.matmul(a.data, b.data)), (a, b), backward, "matmul")


Tensor.__add__ = add
Tensor.__radd__ = lambda a, b: add(a, b)
Tensor.__sub__ = sub
Tensor.__rsub__ = lambda a, b: sub(_as_tensor(b, a), a)
Tensor.__mul__ = mul
Tensor.__rmul__ = lambda a, b: mul(a, b)
Tensor.__truediv__ = div
Tensor.__rtruediv__ = lambda a, b: div(_as_tensor(b, a), a)
Tensor.__neg__ = neg
Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = lambda a, b: matmul(_as_tensor(b, a), a)


def _relu_method(self):
    from .functional import relu
    return relu(self)


Tensor.relu = _relu_method

# the rest of the surface (pow, sum, view, getitem, ==, in-place ops, ...) is attached by ops.py
from . import ops as _ops  # noqa: E402  (imports Tensor and _make from this module)

reshape = _ops.reshape
