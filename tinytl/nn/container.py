"""Containers: ModuleList and ModuleDict, as ``torch.nn``'s (Sequential is in ``layers.py``).

They register the modules they hold, so ``parameters()``, ``state_dict()``, ``.to()``
and ``train()``/``eval()`` see them; they have no ``forward`` of their own.
"""
from __future__ import annotations

from .module import Module


def _add_indent(s: str, n: int) -> str:
    lines = s.split("\n")
    return lines[0] if len(lines) == 1 else lines[0] + "\n" + "\n".join(" " * n + ln for ln in lines[1:])


class ModuleList(Module):
    """A list of modules, registered under the names "0", "1", ... (renumbered after a
    deletion, as torch). Indexing, slicing (a new ModuleList), ``len``, iteration,
    ``append``, ``extend``, ``insert``, ``+=`` and item assignment work as on a list.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _check(self, module, fn):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.{fn}: expected a Module, got {type(module).__name__}")
        return module

    def _reset(self, modules):
        for k in list(self._modules):
            self._modules.pop(k)
            object.__delattr__(self, k)
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def _index(self, idx) -> int:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"ModuleList: index {idx} is out of range for {n} modules")
        return idx % n

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(self._index(idx))]

    def __setitem__(self, idx, module):
        self.add_module(str(self._index(idx)), self._check(module, "__setitem__"))

    def __delitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[self._index(idx)]
        self._reset(mods)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        return ModuleList(list(self) + list(other))

    def append(self, module) -> "ModuleList":
        """Add a module at the end; returns self."""
        self.add_module(str(len(self)), self._check(module, "append"))
        return self

    def extend(self, modules) -> "ModuleList":
        """Append every module of an iterable; returns self."""
        if isinstance(modules, Module) and not isinstance(modules, (ModuleList,)):
            raise TypeError(f"ModuleList.extend: expected an iterable of Modules, got {type(modules).__name__}")
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index: int, module) -> None:
        """Insert ``module`` before ``index``."""
        mods = list(self._modules.values())
        mods.insert(index, self._check(module, "insert"))
        self._reset(mods)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(): iterate over it in your module's forward")

    def __repr__(self):
        # repeated modules compressed into one line, as torch prints them: (0-2): 3 x Linear(...)
        reprs = [repr(m) for m in self]
        if not reprs:
            return "ModuleList()"
        blocks = [[0, 0, reprs[0]]]
        for i, r in enumerate(reprs[1:], 1):
            if r == blocks[-1][2]:
                blocks[-1][1] = i
            else:
                blocks.append([i, i, r])
        lines = []
        for s, e, r in blocks:
            line = f"({s}): {r}" if s == e else f"({s}-{e}): {e - s + 1} x {r}"
            lines.append(_add_indent(line, 2))
        return "ModuleList(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """An ordered dict of modules, registered under their keys (insertion order).
    ``d[key]``, ``d[key] = m``, ``del d[key]``, ``in``, ``len``, iteration over keys,
    ``keys()``, ``values()``, ``items()``, ``update``, ``pop`` and ``clear`` as a dict.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict: keys must be strings, got {type(key).__name__}")
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: values must be Modules, got {type(module).__name__} for {key!r}")
        if key not in self._modules and hasattr(self, key):
            raise KeyError(f"ModuleDict: key {key!r} would shadow the attribute '{key}' of the module")
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]
        object.__delattr__(self, key)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def clear(self) -> None:
        for k in list(self._modules):
            del self[k]

    def pop(self, key: str) -> Module:
        m = self[key]
        del self[key]
        return m

    def update(self, modules) -> None:
        """Add (or replace) the modules of a mapping or an iterable of (key, module) pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for pair in items:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"ModuleDict.update: expected (key, module) pairs, got {pair!r}")
            self[pair[0]] = pair[1]

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(): call its modules in your module's forward")


__all__ = ["ModuleList", "ModuleDict"]
