"""Argument checks shared by the transfer tools (each error names the function and the argument)."""
from __future__ import annotations

import math

import numpy as np

from ..nn import Module



# ------------------------------------------------------------- checks ----

def _check_module(obj, arg: str, fn: str) -> Module:
    if not isinstance(obj, Module):
        raise TypeError(f"{fn}: {arg} must be a tinytl Module, got {type(obj).__name__}")
    return obj


def _check_positive(value, arg: str, fn: str, integer: bool = False):
    ok_types = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_types) or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{fn}: {arg} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def _check_count(value, arg: str, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{fn}: {arg} must be an integer >= 0, got {value!r}")
    return int(value)
