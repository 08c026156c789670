"""``tl.device``: where a tensor lives, as ``torch.device``.

``tl.device("cuda" if tl.cuda.is_available() else "cpu")`` is the first line of most
PyTorch scripts. A device has ``.type`` ('cpu' or 'cuda') and ``.index`` (None or an
int), and is also the string it was made from: ``tl.device("cuda:0") == "cuda:0"``, and
anything that takes a device name ('cpu', 'cuda') takes a device object too
(``tensor.to(dev)``, ``model.to(dev)``, ``tl.zeros(3, device=dev)``).

Equality: two devices are equal when their types are and their indices are, or one of
them has no index (so ``x.device == "cuda"`` holds for a tensor on ``cuda:0``; torch
would say ``device('cuda:0') != device('cuda')``). A tensor's ``.device`` is
``device(type='cpu')`` or ``device(type='cuda', index=N)`` as in torch.

Read next: ``tinytl/backend.py``.
"""
from __future__ import annotations

_TYPES = ("cpu", "cuda")


def _parse(spec, index=None):
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        raise TypeError(f"device(): expected a string such as 'cpu', 'cuda' or 'cuda:0' (or a GPU index), "
                        f"got {type(spec).__name__}")
    if isinstance(spec, int):                     # torch.device(0) is cuda:0
        spec, index = "cuda", spec
    kind, _, idx = spec.partition(":")
    if kind not in _TYPES:
        raise ValueError(f"device(): expected one of {', '.join(_TYPES)} device type at start of device string: "
                         f"{spec!r}")
    if idx:
        if index is not None:
            raise ValueError(f"device(): type (string) must not include an index because index was passed "
                             f"explicitly: {spec!r}")
        if not idx.isdigit():
            raise ValueError(f"device(): invalid device string: {spec!r}")
        index = int(idx)
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise ValueError(f"device(): index must be a non-negative integer, got {index!r}")
    if kind == "cpu" and index not in (None, 0):
        raise ValueError(f"device(): CPU device index must be 0 or None, got {index}")
    return kind, index


class device(str):
    """A device, as ``torch.device(type, index=None)``: ``device('cuda')``, ``device('cuda:0')``,
    ``device('cuda', 0)``, ``device('cpu')``; also equal to (and usable as) its string."""

    def __new__(cls, type, index=None):
        if isinstance(type, device) and index is None:
            return type
        kind, index = _parse(type, index)
        self = str.__new__(cls, kind if index is None else f"{kind}:{index}")
        self._type, self._index = kind, index
        return self

    @property
    def type(self) -> str:
        return self._type

    @property
    def index(self):
        return self._index

    def __repr__(self):
        return f"device(type='{self._type}')" if self._index is None else \
            f"device(type='{self._type}', index={self._index})"

    def __eq__(self, other):
        if not isinstance(other, str):
            return NotImplemented
        try:
            kind, index = _parse(other)
        except (TypeError, ValueError):
            return False
        return kind == self._type and (index is None or self._index is None or index == self._index)

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(self._type)

    def __reduce__(self):
        return (device, (self._type, self._index))


_cache = {}


def of_array(array_device: str, index: int | None = None) -> device:
    """The (cached) device object of an array on 'cpu' or 'cuda' (GPU ``index``)."""
    key = (array_device, index)
    d = _cache.get(key)
    if d is None:
        d = _cache[key] = device(array_device, index)
    return d
