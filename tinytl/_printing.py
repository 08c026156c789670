"""How a tensor prints, as PyTorch prints it; ``tl.set_printoptions``.

``tensor([1.5000, 2.0000], dtype=tinytl.float64, requires_grad=True)``: floats with
``precision`` (4) decimals, or integer-valued floats as ``1.``, or scientific notation when
the magnitudes span more than 1000x (or reach 1e8), as torch decides; the dtype is shown
unless it is a default one (float32, int64, bool); then the device (when not the CPU), and
the node that made it (``grad_fn=<mul>``) or ``requires_grad=True``.
"""
from __future__ import annotations

import sys

import numpy as np

from . import backend, dtypes

_OPTIONS = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80, "sci_mode": None}
_PROFILES = {"default": dict(precision=4, threshold=1000, edgeitems=3, linewidth=80),
             "short": dict(precision=2, threshold=1000, edgeitems=2, linewidth=80),
             "full": dict(precision=4, threshold=sys.maxsize, edgeitems=3, linewidth=80)}
_DEFAULT_DTYPES = (dtypes.float32, dtypes.int64, dtypes.bool)


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None,
                     sci_mode=None):
    """Printing options, as ``torch.set_printoptions``.

    Args:
        precision: digits after the decimal point (default 4).
        threshold: above this many elements a tensor prints summarised with '...' (default 1000).
        edgeitems: items printed at each end of a summarised dimension (default 3).
        linewidth: characters per line (default 80).
        profile: 'default', 'short' or 'full' (sets the four above).
        sci_mode: True/False forces scientific notation on/off; None lets the values decide.
    """
    if profile is not None:
        if profile not in _PROFILES:
            raise ValueError(f"set_printoptions: profile must be one of {sorted(_PROFILES)}, got {profile!r}")
        _OPTIONS.update(_PROFILES[profile])
    for k, v in (("precision", precision), ("threshold", threshold), ("edgeitems", edgeitems),
                 ("linewidth", linewidth)):
        if v is not None:
            _OPTIONS[k] = v
    _OPTIONS["sci_mode"] = sci_mode


def _shown(a: np.ndarray) -> np.ndarray:
    """The elements a summarised print shows (edgeitems at each end of each long dim), as torch's
    get_summarized_data: the format is chosen from them, and a huge tensor prints fast."""
    if a.size <= _OPTIONS["threshold"]:
        return a
    e = _OPTIONS["edgeitems"]
    for axis, n in enumerate(a.shape):
        if n > 2 * e:
            a = np.concatenate([np.take(a, range(e), axis), np.take(a, range(n - e, n), axis)], axis)
    return a


def _float_formatter(a: np.ndarray):
    """One format for every element of a float array, chosen as torch's _Formatter does."""
    p = _OPTIONS["precision"]
    a = _shown(a)
    finite = a[np.isfinite(a)]
    nonzero = np.abs(finite[finite != 0])
    integral = finite.size == 0 or bool(np.all(finite == np.ceil(finite)))
    sci = _OPTIONS["sci_mode"]
    if sci is None:
        sci = nonzero.size > 0 and (nonzero.max() / nonzero.min() > 1000 or nonzero.max() > 1e8)
    if sci:
        fmt = lambda v: f"{v:.{p}e}"      # noqa: E731
    elif integral:
        fmt = lambda v: f"{v:.0f}." if np.isfinite(v) else f"{v}"      # noqa: E731
    else:
        fmt = lambda v: f"{v:.{p}f}"      # noqa: E731
    width = max((len(fmt(v)) for v in a.flat), default=0)
    return lambda v: fmt(v).rjust(width)


def format_tensor(t) -> str:
    """The repr of a Tensor."""
    a = backend.to_numpy(t.data)
    extra = []
    if a.size == 0 and a.ndim != 1:
        extra.append(f"size={tuple(a.shape)}")
    if a.dtype not in _DEFAULT_DTYPES:
        extra.append(f"dtype={dtypes.name(a.dtype)}")
    if t.device != "cpu":
        extra.append(f"device='{t.device}'")
    if t._node is not None:
        op = t._node.op
        op = op.split("'")[1] if op.startswith("'") else op   # labelled under detect_anomaly
        extra.append(f"grad_fn=<{op}>")
    elif t.requires_grad:
        extra.append("requires_grad=True")
    kw = dict(separator=", ", prefix="tensor(", threshold=_OPTIONS["threshold"], edgeitems=_OPTIONS["edgeitems"],
              max_line_width=_OPTIONS["linewidth"])
    if a.dtype.kind == "f" and a.size:
        kw["formatter"] = {"float_kind": _float_formatter(a)}
    body = np.array2string(a, **kw) if a.size else "[]"
    body = body.replace(", ...,", ",  ...,")      # torch's summary element is ' ...'
    return "tensor(" + body + "".join(", " + e for e in extra) + ")"
