"""Labelled data files for the command line: ``load_xy(path) -> (X, y)``.

Two formats, both read without running anything from the file:

- ``.npz``: arrays ``x`` (N, D) and ``y`` (N,) (``np.savez(path, x=X, y=y)``). Read by
  ``tinytl.io`` (never ``np.load`` with pickles: every zip member and ``.npy`` header is
  checked before memory is allocated).
- ``.csv``: one example per row, numbers separated by commas; the last column is the label
  (or ``label=COLUMN``: a header name, or a 0-based index, negative from the end). A first
  row that is not all numbers is the header.

Every problem raises ValueError with one line naming the file and what was expected.

Read next: ``tinytl/cli.py`` (``tinytl rank`` and ``tinytl search`` use it).
"""
from __future__ import annotations

import csv
import io as _io
import os

import numpy as np

__all__ = ["load_xy", "MAX_BYTES"]

MAX_BYTES = 1 << 30          # 1 GiB: larger files are refused (pass max_bytes= to allow them)


def load_xy(path, label=None, max_bytes: int = MAX_BYTES, require_labels: bool = True):
    """Read a labelled data file (or, with ``require_labels=False``, a .npz that may hold only ``x``).

    Args:
        path: a ``.npz`` (arrays ``x`` and ``y``) or ``.csv`` file.
        label: for ``.csv``, the label column (a header name, or a 0-based index; default the
            last column); for ``.npz``, the name of the label array (default ``"y"``).
        max_bytes: the largest file (and, for ``.npz``, the largest uncompressed content) accepted.
        require_labels: when False, a ``.npz`` without the label array gives ``y = None``.

    Returns:
        ``(X, y)``: X a float32 array (N, D), y an int64 array (N,) of the labels as found
        (integers >= 0; not renumbered).

    Raises:
        FileNotFoundError: no such file. ValueError: a wrong suffix, too large, a missing array
        or column, wrong shapes, non-numeric or non-finite values, labels that are not
        integers >= 0 (the message names the file).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file", path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a file")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"{path}: {size:,} bytes, more than the {max_bytes:,} accepted")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        X, y = _read_npz(path, "y" if label is None else str(label), max_bytes, require_labels)
    elif ext == ".csv":
        X, y = _read_csv(path, label)
    else:
        raise ValueError(f"{path}: expected a .npz (arrays x, y) or .csv (last column the label) file")
    return _check(path, X, y)


def _read_npz(path, key, max_bytes, require_labels=True):
    import zipfile
    from . import io
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path}: not a valid .npz archive ({e})") from None
    if total > max_bytes:
        raise ValueError(f"{path}: the arrays hold {total:,} bytes, more than the {max_bytes:,} accepted")
    arrays = io.load(path)           # checked reader: no pickles, every header validated first
    for name in ("x", key) if require_labels else ("x",):
        if name not in arrays:
            raise ValueError(f"{path}: no array {name!r} (the file holds {sorted(arrays)[:8]}); expected "
                             f"np.savez(path, x=X, {key}=y)")
    return arrays["x"], arrays.get(key)


def _read_csv(path, label):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    rows = [(i + 1, r) for i, r in enumerate(csv.reader(_io.StringIO(text))) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: no data rows")
    header = None
    if not _numeric(rows[0][1]):
        header = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{path}: a header but no data rows")
    width = len(rows[0][1])
    if width < 2:
        raise ValueError(f"{path}: each row needs at least 2 columns (features, then the label), got {width}")
    if header is not None and len(header) != width:
        raise ValueError(f"{path}: the header has {len(header)} columns but the rows have {width}")
    col = _label_column(path, label, header, width)
    data = np.empty((len(rows), width), np.float64)
    for r, (lineno, cells) in enumerate(rows):
        if len(cells) != width:
            raise ValueError(f"{path}: line {lineno} has {len(cells)} columns, expected {width}")
        try:
            data[r] = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise ValueError(f"{path}: line {lineno}: {bad.strip()[:40]!r} is not a number") from None
    return np.delete(data, col, axis=1), data[:, col]


def _label_column(path, label, header, width) -> int:
    if label is None:
        return width - 1
    if header is not None and str(label) in header:
        return header.index(str(label))
    try:
        i = int(label)
    except (TypeError, ValueError):
        names = f"; the header names {header[:8]}" if header else "; the file has no header"
        raise ValueError(f"{path}: no label column {label!r}{names}") from None
    if not -width <= i < width:
        raise ValueError(f"{path}: label column {i} out of range for {width} columns")
    return i % width


def _is_number(cell) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _numeric(cells) -> bool:
    return all(_is_number(c) for c in cells)


def _check(path, X, y):
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{path}: x must hold numbers, got dtype {X.dtype}")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{path}: x must be a non-empty 2-D array (N examples, D features), got shape {X.shape}")
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise ValueError(f"{path}: the features hold NaN or infinite values")
    if y is None:
        return np.ascontiguousarray(X), None
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{path}: the labels must be 1-D (one per example), got shape {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"{path}: {len(X)} examples but {len(y)} labels")
    if y.dtype.kind not in "fiub":
        raise ValueError(f"{path}: the labels must be numbers, got dtype {y.dtype}")
    yf = y.astype(np.float64)
    if not np.isfinite(yf).all() or (yf != np.round(yf)).any() or (yf < 0).any():
        raise ValueError(f"{path}: the labels must be integers >= 0 (class indices)")
    return np.ascontiguousarray(X), yf.astype(np.int64)
