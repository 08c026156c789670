"""Memory: what the recorded graph keeps for backward, and the peak memory of a block.

Training memory is dominated by the activations kept for backward, not by the
parameters (Cai et al., "TinyTL: Reduce Memory, Not Parameters", NeurIPS 2020).
tinytl keeps, per op, only what the gradients that will be computed need (see
``tinytl/tensor.py``'s module docstring and ``tinytl/functional.py`` ``linear``);
this module measures it.

- ``saved_bytes(t)``: bytes of the arrays the graph of ``t`` keeps for backward.
- ``track_memory(device)``: a context manager; ``.peak_bytes`` after the block is
  the most array memory allocated at once during it (NumPy through ``tracemalloc``
  on the CPU, CuPy's memory pool on a GPU).

PyTorch: ``saved_bytes`` is what ``torch.autograd.graph.saved_tensors_hooks``
would see (parameters excluded); ``track_memory("cuda")`` is
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.

Read next: ``bench/memory.py`` (the memory benchmark of the fine-tuning strategies).
"""
from __future__ import annotations

import threading
import tracemalloc
import types

import numpy as np

from . import backend
from .tensor import Tensor, _Node

__all__ = ["saved_bytes", "track_memory"]


# ---------------------------------------------------------- saved_bytes ----

def _closure_objects(fn, found, seen):
    """Append to ``found`` every array and Tensor a backward closure holds: its closure
    cells, looked into when they hold functions (nested closures), tuples, lists or dicts."""
    stack = [fn]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensor) or isinstance(obj, np.ndarray) or backend.is_cupy_array(obj):
            found.append(obj)
        elif isinstance(obj, types.FunctionType):
            stack.extend(c.cell_contents for c in (obj.__closure__ or ()) if _filled(c))
        elif isinstance(obj, (tuple, list)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:       # a cell not yet assigned
        return False
    return True


def _extent(a):
    """(start, end) of the memory that keeps ``a`` alive: for a NumPy view, its base's."""
    if isinstance(a, np.ndarray):
        while isinstance(a.base, np.ndarray):
            a = a.base
        start = a.__array_interface__["data"][0]
    else:                    # a CuPy array: the device memory it spans
        start = a.data.ptr
    return start, start + a.nbytes


def saved_bytes(t: Tensor) -> int:
    """Bytes of the arrays the recorded graph of ``t`` keeps for its backward pass.

    The rule, with no table of ops: walk the graph from ``t`` (every node ``t``'s
    backward would visit) and collect what each node's backward closure holds: its
    closure cells that are arrays or Tensors (a Tensor counts its ``.data``), looking
    into nested functions, tuples, lists and dicts. Parameters (``nn.Parameter``s, and
    arrays within their memory) are excluded: they live anyway. Each
    piece of memory counts once: a NumPy view counts its base (which it keeps alive),
    arrays over the same memory (a view and its base, one array kept by two nodes)
    count once; on a GPU an array counts the device memory it spans.

    Args:
        t: a Tensor; 0 when it has no graph (a leaf, or computed under ``no_grad``).

    Returns:
        the number of bytes, an int.

    Example: a Linear+ReLU layer whose weight trains keeps its input x (N x in floats)
    and a 1-bit ReLU mask (N x ceil(out / 8) bytes); with the weight frozen, the mask only.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"saved_bytes: t must be a Tensor, got {type(t).__name__}")
    from .nn.module import Parameter
    found, seen, params = [], set(), []
    nodes, stack = set(), [t._node] if t._node is not None else []
    while stack:                          # every node of the graph, once
        node = stack.pop()
        if id(node) in nodes:
            continue
        nodes.add(id(node))
        _closure_objects(node.backward, found, seen)
        for p in node.inputs:
            if type(p) is _Node:
                stack.append(p)
            elif isinstance(p, Parameter):  # a trainable parameter, held for its .grad
                params.append(p.data)
    arrays = []
    for obj in found:
        if isinstance(obj, Parameter):
            params.append(obj.data)
        else:
            arrays.append(obj.data if isinstance(obj, Tensor) else obj)
    excluded = [_extent(p) for p in params]
    spans = sorted(e for e in (_extent(a) for a in arrays)
                   if not any(s <= e[0] and e[1] <= f for s, f in excluded))
    total, end = 0, None                  # the union of the spans: overlapping memory once
    for s, f in spans:
        if end is None or s >= end:
            total += f - s
            end = f
        elif f > end:
            total += f - end
            end = f
    return total


# -------------------------------------------------------- track_memory ----

class _Tracking(threading.local):
    def __init__(self):
        self.active = []     # the CPU trackers open on this thread, outermost first
        self.started = False  # whether tracemalloc was started by track_memory


_cpu = _Tracking()


def _fold_cpu_peak():
    """Fold tracemalloc's peak since its last reset into every open CPU tracker, then reset it."""
    current, peak = tracemalloc.get_traced_memory()
    for tr in _cpu.active:
        tr._high = max(tr._high, peak)
    tracemalloc.reset_peak()
    return current


class track_memory:
    """Context manager: the peak and net array bytes allocated during a block.

    ``with tl.memory.track_memory() as m: step()`` then ``m.peak_bytes`` is the most
    memory allocated at once during the block, above what was allocated when it began,
    and ``m.current_bytes`` what is still allocated at its end (the block's net growth).

    Args:
        device: 'cpu' (the default): NumPy's array allocations, traced by ``tracemalloc``
            (NumPy reports them in its domain, ``np.lib.tracemalloc_domain``). tracemalloc
            traces Python's own objects too, so the figures include the few hundred bytes
            of the Python objects a block makes; it also slows Python code down while it
            runs: time a step outside the block. tracemalloc is started if it was not
            (and stopped again at the end), and its peak is reset, nested blocks included.
            'cuda': the bytes CuPy's memory pool hands out to arrays on the current
            device (each rounded up to the pool's 512-byte blocks), followed by a
            ``cupy.cuda.MemoryHook``; arrays allocated outside the pool are not seen.

    PyTorch: on a GPU, ``torch.cuda.reset_peak_memory_stats()`` then
    ``torch.cuda.max_memory_allocated()``, relative to the start.
    """

    def __init__(self, device: str = "cpu"):
        self.device = backend.check_device(device)
        self.peak_bytes = None
        self.current_bytes = None
        self._hook = None

    def __enter__(self):
        if self.device == "cpu":
            if not tracemalloc.is_tracing():
                tracemalloc.start()
                _cpu.started = True
            self._base = _fold_cpu_peak()
            self._high = self._base
            _cpu.active.append(self)
        else:
            self._hook = _gpu_hook()
            self._hook.__enter__()
        return self

    def __exit__(self, *exc):
        if self.device == "cpu":
            current = _fold_cpu_peak()
            _cpu.active.remove(self)
            if not _cpu.active and _cpu.started:
                tracemalloc.stop()
                _cpu.started = False
            self.peak_bytes = self._high - self._base
            self.current_bytes = current - self._base
        else:
            self._hook.__exit__(*exc)
            self.peak_bytes, self.current_bytes = self._hook.peak, self._hook.used
        return False

    def __repr__(self):
        return f"track_memory(device={self.device!r}, peak_bytes={self.peak_bytes}, current_bytes={self.current_bytes})"


_hooks = 0


def _gpu_hook():
    """A cupy.cuda.MemoryHook that follows the bytes the pool hands out, and their peak."""
    global _hooks
    cp = backend._require_cuda()
    base = getattr(getattr(cp, "cuda", None), "MemoryHook", None)
    if base is None:
        raise RuntimeError("track_memory('cuda'): this cupy has no cupy.cuda.MemoryHook to follow its memory "
                           "pool (an emulated GPU?)")

    class _PoolPeak(base):
        def __init__(self, name):
            self.name = name
            self.used = self.peak = 0

        def malloc_postprocess(self, **kw):
            self.used += kw["mem_size"]
            self.peak = max(self.peak, self.used)

        def free_postprocess(self, **kw):
            self.used -= kw["mem_size"]

    _hooks += 1
    return _PoolPeak(f"tinytl.memory.track_memory#{_hooks}")
