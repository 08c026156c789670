"""Which weights moved? Weight drift between two versions of a network.

``weight_drift(before, after)``: per parameter, ||W_after - W_before||_F / ||W_before||_F and
the cosine between them; a layer replaced by a new one (another shape) is reported as such,
and parameters present on one side only are listed by name. Neyshabur et al. (2020) found the
lower layers of a fine-tuned network change least.

Read next: ``tinytl/explain/probes.py``.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .. import backend
from ..nn import Module
from ..tensor import Tensor


def _state(obj, arg: str, fn: str) -> "OrderedDict[str, np.ndarray]":
    if isinstance(obj, Module):
        return obj.state_dict()
    if isinstance(obj, (str, os.PathLike)):
        from .. import io
        return OrderedDict(io.load(obj))
    if hasattr(obj, "items"):
        out = OrderedDict()
        for k, v in obj.items():
            v = v.data if isinstance(v, Tensor) else v
            out[str(k)] = backend.to_numpy(v) if backend.is_cupy_array(v) else np.asarray(v)
        return out
    raise TypeError(f"{fn}: {arg} must be a Module, a state dict or a checkpoint path, got {type(obj).__name__}")


@dataclass
class DriftReport:
    """Per parameter: how far fine-tuning moved it.

    Attributes:
        rows: one dict per name present on both sides, in ``after``'s order: ``name``, ``shape``,
            ``status`` ("compared", "replaced": the shapes differ, a new layer such as a new
            head; or "skipped": not floating point), ``relative`` (||A - B||_F / ||B||_F, B the
            weights before; inf when B is 0 and A is not), ``cosine`` (<A, B> / (||A|| ||B||);
            nan where a norm is 0), ``norm_before``, ``norm_after``.
        only_before, only_after: names present on one side only (another architecture).
    """
    rows: list = field(default_factory=list)
    only_before: list = field(default_factory=list)
    only_after: list = field(default_factory=list)

    @property
    def replaced(self) -> list:
        return [r["name"] for r in self.rows if r["status"] == "replaced"]

    def relative(self) -> "OrderedDict[str, float]":
        """name -> relative drift, for the compared parameters."""
        return OrderedDict((r["name"], r["relative"]) for r in self.rows if r["status"] == "compared")

    def by_layer(self) -> "OrderedDict[str, dict]":
        """Per layer (the name before the last '.'), the drift of all its compared parameters
        together: ||concat(A) - concat(B)|| / ||concat(B)|| and their cosine; a layer with a
        replaced parameter is reported as replaced."""
        groups = OrderedDict()
        for r in self.rows:
            groups.setdefault(r["name"].rpartition(".")[0] or r["name"], []).append(r)
        out = OrderedDict()
        for layer, rs in groups.items():
            if any(r["status"] == "replaced" for r in rs):
                out[layer] = {"status": "replaced", "relative": None, "cosine": None}
                continue
            rs = [r for r in rs if r["status"] == "compared"]
            if not rs:
                continue
            d2 = sum(r["_d2"] for r in rs)
            b2 = sum(r["norm_before"] ** 2 for r in rs)
            a2 = sum(r["norm_after"] ** 2 for r in rs)
            dot = sum(r["_dot"] for r in rs)
            out[layer] = {"status": "compared", "relative": _rel(d2, b2),
                          "cosine": dot / math.sqrt(a2 * b2) if a2 > 0 and b2 > 0 else float("nan")}
        return out

    def to_dict(self) -> dict:
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v
        rows = [{k: (list(v) if k == "shape" else clean(v)) for k, v in r.items() if not k.startswith("_")}
                for r in self.rows]
        layers = {k: {kk: clean(vv) for kk, vv in v.items()} for k, v in self.by_layer().items()}
        return {"rows": rows, "layers": layers, "only_before": list(self.only_before),
                "only_after": list(self.only_after), "replaced": self.replaced}

    def __str__(self):
        w = max([len("parameter")] + [len(r["name"]) for r in self.rows])
        lines = [f"{'parameter':<{w}}  {'shape':<14}  {'rel. drift':>10}  {'cosine':>8}  status",
                 "-" * (w + 48)]
        for r in self.rows:
            shape = "x".join(map(str, r["shape"])) if not isinstance(r["shape"], str) else r["shape"]
            if r["status"] == "compared":
                lines.append(f"{r['name']:<{w}}  {shape:<14}  {r['relative']:>10.4f}  {r['cosine']:>8.4f}  compared")
            else:
                lines.append(f"{r['name']:<{w}}  {shape:<14}  {'-':>10}  {'-':>8}  {r['status']}"
                             + (f" ({r['detail']})" if r.get("detail") else ""))
        if self.only_before:
            lines.append("only before: " + ", ".join(self.only_before))
        if self.only_after:
            lines.append("only after:  " + ", ".join(self.only_after))
        return "\n".join(lines)

    __repr__ = __str__


def _rel(d2: float, b2: float) -> float:
    if b2 > 0:
        return math.sqrt(d2 / b2)
    return 0.0 if d2 == 0 else float("inf")


def weight_drift(before, after) -> DriftReport:
    """How far each weight moved: ||W_after - W_before||_F / ||W_before||_F and the cosine.

    Computed in float64 per parameter present on both sides. A parameter whose shape differs
    (a head replaced for a new task) is reported as "replaced", not as a huge drift; names on
    one side only are listed in ``only_before`` / ``only_after``. Neyshabur et al. (2020,
    "What is being transferred in transfer learning?") found the lower layers change least.

    Args:
        before, after: Modules, state dicts (name -> array or Tensor) or checkpoint paths
            (``tl.load``).

    Returns:
        A ``DriftReport`` (``print`` it; ``.rows``, ``.by_layer()``, ``.replaced``,
        ``.only_before``, ``.only_after``, ``.to_dict()``).
    """
    fn = "weight_drift"
    A, B = _state(before, "before", fn), _state(after, "after", fn)
    report = DriftReport(only_before=[k for k in A if k not in B], only_after=[k for k in B if k not in A])
    for name, wa in B.items():
        if name not in A:
            continue
        wb = A[name]
        row = {"name": name, "shape": tuple(int(s) for s in wa.shape)}
        if wa.shape != wb.shape:
            row.update(status="replaced", relative=None, cosine=None, norm_before=None, norm_after=None,
                       detail=f"{'x'.join(map(str, wb.shape)) or 'scalar'} -> {'x'.join(map(str, wa.shape)) or 'scalar'}")
        elif wa.dtype.kind != "f" or wb.dtype.kind != "f":
            row.update(status="skipped", relative=None, cosine=None, norm_before=None, norm_after=None,
                       detail=f"dtype {wb.dtype}, not floating point")
        else:
            a, b = wa.astype(np.float64).ravel(), wb.astype(np.float64).ravel()
            d2, a2, b2, dot = float(((a - b) ** 2).sum()), float(a @ a), float(b @ b), float(a @ b)
            row.update(status="compared", relative=_rel(d2, b2),
                       cosine=dot / math.sqrt(a2 * b2) if a2 > 0 and b2 > 0 else float("nan"),
                       norm_before=math.sqrt(b2), norm_after=math.sqrt(a2), _d2=d2, _dot=dot)
        report.rows.append(row)
    return report
