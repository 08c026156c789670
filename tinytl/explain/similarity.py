"""What the transfer changed: representation similarity (CKA), weight drift, per-layer probes.

Three instruments, each answering one question a learner asks after fine-tuning:

- ``cka`` / ``minibatch_cka`` / ``layer_similarity``: *do two layers compute the same
  representation?* Centered kernel alignment (Kornblith et al., ICML 2019) compares two
  activation matrices over the same inputs, whatever their widths; it is 1 for identical
  representations (and for ones that differ by a rotation or a scale), near 0 for unrelated ones.
- ``weight_drift``: *how far did each weight move?* ``||W_after - W_before||_F / ||W_before||_F``
  and the cosine between them, per parameter (Neyshabur et al., 2020: lower layers move least).
- ``probe_layers``: *where does the target task's information sit?* A linear probe's test
  accuracy on the features after each layer.

The activations are collected with forward hooks (``Module.register_forward_hook``), so any
model works as it is: nothing here re-implements a forward pass.

Read next: ``tinytl/explain/attributions.py`` (what a model looks at in one input).
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .. import backend
from .._random import generator
from ..nn import Identity, Linear, Module
from ..tensor import Tensor, no_grad

KERNELS = ("linear", "rbf")


# ------------------------------------------------------------- checks ----

def _matrix(X, arg: str, fn: str):
    """X as a float64 (n, features) array on its own device (NumPy or CuPy)."""
    X = X.data if isinstance(X, Tensor) else X
    if not (isinstance(X, np.ndarray) or backend.is_cupy_array(X)):
        try:
            X = np.asarray(X)
        except Exception:
            raise TypeError(f"{fn}: {arg} must be an array or a Tensor, got {type(X).__name__}") from None
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{fn}: {arg} must hold numbers, got dtype {X.dtype}")
    if X.ndim < 2:
        raise ValueError(f"{fn}: {arg} must have shape (n, features...), one row per example, "
                         f"got shape {tuple(X.shape)}")
    X = X.reshape(X.shape[0], -1).astype(np.float64, copy=False)
    xp = backend.get_array_module(X)
    if not bool(xp.isfinite(X).all()):
        raise ValueError(f"{fn}: {arg} holds NaN or Inf")
    return X


def _check_pair(X, Y, fn: str, min_rows: int):
    X, Y = _matrix(X, "X", fn), _matrix(Y, "Y", fn)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"{fn}: X and Y must have the same rows (the same examples), got {X.shape[0]} "
                         f"and {Y.shape[0]}")
    if X.shape[0] < min_rows:
        raise ValueError(f"{fn}: needs at least {min_rows} rows (examples), got {X.shape[0]}"
                         + (" (the debiased estimator divides by n - 3)" if min_rows == 4 else ""))
    if backend.is_cupy_array(X) != backend.is_cupy_array(Y):
        raise RuntimeError(f"{fn}: X and Y must be on the same device, got '{backend.device_of(X)}' "
                           f"and '{backend.device_of(Y)}'")
    return X, Y


def _check_kernel(kernel, threshold, fn: str):
    if kernel not in KERNELS:
        raise ValueError(f"{fn}: kernel must be one of {KERNELS}, got {kernel!r}")
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating))
            or not math.isfinite(threshold) or threshold <= 0):
        raise ValueError(f"{fn}: threshold must be a positive number, got {threshold!r}")
    return float(threshold)


def _positive_int(value, arg: str, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{fn}: {arg} must be a positive integer, got {value!r}")
    return int(value)


# ------------------------------------------------------------------ HSIC ----
# All in float64. K, L are n x n Gram matrices; X, Y feature matrices (n, d).

def _gram(X, kernel: str, threshold: float, fn: str):
    """The Gram matrix: X X^T, or exp(-||x_i - x_j||^2 / (2 sigma^2)) with
    sigma^2 = threshold^2 * median of the n^2 squared distances (Kornblith et al.)."""
    xp = backend.get_array_module(X)
    G = X @ X.T
    if kernel == "linear":
        return G
    sq = xp.diag(G)
    d2 = xp.maximum(sq[:, None] + sq[None, :] - 2 * G, 0)
    med = float(xp.median(d2).item())
    if med <= 0:
        raise ValueError(f"{fn}: the median distance between the rows is 0 (most rows are identical), "
                         "so the RBF bandwidth is 0; use kernel='linear' or other data")
    return xp.exp(-d2 / (2 * threshold ** 2 * med))


def _hsic_gram(K, L, debiased: bool) -> float:
    """HSIC of two Gram matrices, without its constant factor where CKA cancels it.

    biased:   tr(K H L H) / (n-1)^2 with H = I - 11^T/n;
    debiased: Song et al. (2012), with K~, L~ the Gram matrices with a zero diagonal:
              [tr(K~L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)).
    """
    n = K.shape[0]
    if not debiased:
        Kc = K - K.mean(axis=0, keepdims=True)
        Kc = Kc - Kc.mean(axis=1, keepdims=True)          # H K H
        return float((Kc * L).sum().item()) / (n - 1) ** 2  # tr(HKH L) = tr(K H L H)
    xp = backend.get_array_module(K)
    eye = xp.eye(n, dtype=bool)
    Kt, Lt = xp.where(eye, 0.0, K), xp.where(eye, 0.0, L)
    k1, l1 = Kt.sum(axis=0), Lt.sum(axis=0)
    total = ((Kt * Lt).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1))
    return float(total.item()) / (n * (n - 3))


def _hsic_linear_features(X, Y, debiased: bool) -> float:
    """``_hsic_gram(X X^T, Y Y^T)`` from the features alone: O(n d_x d_y), no n x n matrix.

    biased: ||Xc^T Yc||_F^2 / (n-1)^2 with Xc, Yc the column-centred features;
    debiased: the terms of Song et al. written with row norms a_i = ||x_i||^2, b_i = ||y_i||^2
    and column sums s_x = X^T 1, s_y = Y^T 1: tr(K~L~) = ||X^T Y||_F^2 - a.b,
    1^T K~ 1 = ||s_x||^2 - sum(a), 1^T K~ L~ 1 = (X s_x - a).(Y s_y - b).
    """
    n = X.shape[0]
    X = X - X.mean(axis=0, keepdims=True)      # HSIC does not change; the sums stay small
    Y = Y - Y.mean(axis=0, keepdims=True)
    xy = float(((X.T @ Y) ** 2).sum().item())
    if not debiased:
        return xy / (n - 1) ** 2
    a, b = (X * X).sum(axis=1), (Y * Y).sum(axis=1)
    sx, sy = X.sum(axis=0), Y.sum(axis=0)
    tr = xy - float((a @ b).item())
    k1 = float((sx @ sx).item()) - float(a.sum().item())
    l1 = float((sy @ sy).item()) - float(b.sum().item())
    kl1 = float(((X @ sx - a) @ (Y @ sy - b)).item())
    return (tr + k1 * l1 / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl1) / (n * (n - 3))


def _use_features(n: int, dx: int, dy: int) -> bool:
    """Linear HSIC from the features when their products are smaller than the n x n Grams."""
    return dx * dy + dx * dx + dy * dy <= 3 * n * n


class _Rep:
    """One layer's activations on one batch, ready for HSIC: the features (linear kernel, when
    cheaper) or the Gram matrix."""

    def __init__(self, X, kernel, threshold, use_features, fn):
        self.X = X
        self.K = None if use_features else _gram(X, kernel, threshold, fn)


def _hsic(a: _Rep, b: _Rep, debiased: bool) -> float:
    if a.K is None and b.K is None:
        return _hsic_linear_features(a.X, b.X, debiased)
    Ka = a.K if a.K is not None else a.X @ a.X.T
    Kb = b.K if b.K is not None else b.X @ b.X.T
    return _hsic_gram(Ka, Kb, debiased)


def _reps(mats, kernel, threshold, fn):
    n = mats[0].shape[0]
    widest = max(m.shape[1] for m in mats)
    feats = kernel == "linear" and _use_features(n, widest, widest)
    return [_Rep(m, kernel, threshold, feats, fn) for m in mats]


def _ratio(xy, xx, yy, fn):
    if xx <= 0 or yy <= 0:
        which = "X" if xx <= 0 else "Y"
        raise ValueError(f"{fn}: the HSIC of {which} with itself is {min(xx, yy):.3g}, not positive: "
                         f"{which} is constant over the examples (or, debiased, has too few rows)")
    return xy / math.sqrt(xx * yy)


# ------------------------------------------------------------------- CKA ----

def cka(X, Y, kernel: str = "linear", threshold: float = 0.5, debiased: bool = False) -> float:
    """Centered kernel alignment of two representations of the same n examples.

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), with K, L the Gram matrices of the
    rows of X (n, p) and Y (n, q) (Kornblith et al., "Similarity of Neural Network
    Representations Revisited", ICML 2019):

    - ``kernel="linear"``: K = X X^T. Then CKA = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)
      (Xc: X with its columns centred), computed from the features, without an n x n matrix,
      whenever the p x q products are the smaller ones.
    - ``kernel="rbf"``: K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)), sigma = ``threshold`` times
      the square root of the median squared distance between rows (the n^2 entries, the zero
      diagonal included, as in Kornblith et al.'s code, whose ``gram_rbf`` defaults to 1.0).
    - HSIC(K, L) = tr(K H L H) / (n-1)^2 with H = I - 11^T/n (biased), or, with
      ``debiased=True``, the unbiased estimator of Song et al. (JMLR 2012), as Nguyen et al.
      (ICLR 2021) use it: with K~, L~ the Gram matrices with their diagonals set to 0,
      HSIC_1 = [tr(K~L~) + (1^T K~ 1)(1^T L~ 1)/((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)).

    Linear CKA is invariant to orthogonal transforms and isotropic scaling of either side, not
    to arbitrary invertible linear maps. Computed in float64 on the arrays' device.

    Args:
        X, Y: arrays or Tensors with one row per example (more axes are flattened), the same n.
        kernel: "linear" or "rbf".
        threshold: the RBF bandwidth as a fraction of the median distance (rbf only).
        debiased: use the unbiased HSIC (needs n >= 4).

    Returns:
        The CKA, a float (in [0, 1] for the biased estimator; the debiased one can dip below 0).

    Raises:
        ValueError: different row counts, fewer than 2 rows (4 when debiased), a constant X or Y,
            an unknown kernel or a threshold that is not positive.
    """
    threshold = _check_kernel(kernel, threshold, "cka")
    X, Y = _check_pair(X, Y, "cka", 4 if debiased else 2)
    rx, ry = _reps([X, Y], kernel, threshold, "cka")
    return _ratio(_hsic(rx, ry, debiased), _hsic(rx, rx, debiased), _hsic(ry, ry, debiased), "cka")


class MinibatchCKA:
    """CKA accumulated over minibatches (Nguyen, Raghu & Kornblith, ICLR 2021, "Do Wide and Deep
    Networks Learn the Same Things?"):

        CKA_mb(X, Y) = sum_b HSIC_1(K_b, L_b) / sqrt(sum_b HSIC_1(K_b, K_b) sum_b HSIC_1(L_b, L_b))

    with HSIC_1 the unbiased estimator (see ``cka``) on each batch b. Nothing of size n is
    kept: 10k examples x wide layers cost one batch's activations at a time. With one batch
    holding all the data it equals ``cka(X, Y, debiased=True)``. The RBF bandwidth is each
    batch's own median distance.

    Example::

        acc = MinibatchCKA()
        for xb in batches:                          # each at least 4 rows
            acc.update([f(xb) for f in layers_a], [g(xb) for g in layers_b])
        acc.compute()                                # (len(layers_a), len(layers_b)) matrix
    """

    def __init__(self, kernel: str = "linear", threshold: float = 0.5):
        self.threshold = _check_kernel(kernel, threshold, "MinibatchCKA")
        self.kernel = kernel
        self.xy = self.xx = self.yy = None
        self.n = 0
        self.batches = 0

    def update(self, xs, ys=None):
        """Add one batch: ``xs`` a list of activation matrices (one per layer of model A, the same
        rows), ``ys`` those of model B (default: ``xs`` again, for a model against itself)."""
        fn = "MinibatchCKA.update"
        if isinstance(xs, (np.ndarray, Tensor)) or backend.is_cupy_array(xs):
            xs = [xs]
        same = ys is None                           # a model against itself: each Gram once
        if ys is None:
            ys = xs
        elif isinstance(ys, (np.ndarray, Tensor)) or backend.is_cupy_array(ys):
            ys = [ys]
        xs = [_matrix(x, f"xs[{i}]", fn) for i, x in enumerate(xs)]
        ys = [_matrix(y, f"ys[{i}]", fn) for i, y in enumerate(ys)]
        if not xs or not ys:
            raise ValueError(f"{fn}: xs and ys must each hold at least one layer's activations")
        rows = {m.shape[0] for m in xs + ys}
        if len(rows) != 1:
            raise ValueError(f"{fn}: every activation matrix of a batch must have the same rows, got {sorted(rows)}")
        b = rows.pop()
        if b < 4:
            raise ValueError(f"{fn}: a batch needs at least 4 rows for the unbiased HSIC, got {b}")
        if self.xy is not None and self.xy.shape != (len(xs), len(ys)):
            raise ValueError(f"{fn}: this accumulator holds {self.xy.shape[0]} x {self.xy.shape[1]} layers, "
                             f"got {len(xs)} x {len(ys)}")
        rx = _reps(xs, self.kernel, self.threshold, fn)
        ry = rx if same else _reps(ys, self.kernel, self.threshold, fn)
        xx = np.array([_hsic(r, r, True) for r in rx])
        yy = xx if same else np.array([_hsic(r, r, True) for r in ry])
        xy = np.array([[_hsic(a, c, True) for c in ry] for a in rx])
        if self.xy is None:
            self.xy, self.xx, self.yy = np.zeros_like(xy), np.zeros(len(xs)), np.zeros(len(ys))
        self.xy += xy
        self.xx += xx
        self.yy += yy
        self.n += b
        self.batches += 1
        return self

    def compute(self) -> np.ndarray:
        """The (layers of A) x (layers of B) matrix of minibatch CKA."""
        if self.xy is None:
            raise ValueError("MinibatchCKA.compute: no batch was added (call update first)")
        out = np.empty_like(self.xy)
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = _ratio(self.xy[i, j], self.xx[i], self.yy[j], "MinibatchCKA.compute")
        return out


def _batch_bounds(n: int, batch_size: int):
    """Consecutive [start, stop) of batch_size rows; a last batch of under 4 rows joins the one before."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 4:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def minibatch_cka(X, Y, batch_size: int = 256, kernel: str = "linear", threshold: float = 0.5):
    """Minibatch CKA (Nguyen et al., 2021) of two representations, or of two lists of them.

    The rows are cut into consecutive batches of ``batch_size`` (a last batch of fewer than 4
    rows joins the previous one); see ``MinibatchCKA`` for the formula. With
    ``batch_size >= n`` this is ``cka(X, Y, kernel, threshold, debiased=True)``.

    Args:
        X, Y: activation matrices with the same rows, or lists of them (the layers of two
            models, all with the same rows).
        batch_size: rows per batch (at least 4).
        kernel, threshold: as in ``cka``.

    Returns:
        A float when X and Y are single matrices; else the (len(X), len(Y)) matrix.
    """
    fn = "minibatch_cka"
    threshold = _check_kernel(kernel, threshold, fn)
    batch_size = _positive_int(batch_size, "batch_size", fn)
    if batch_size < 4:
        raise ValueError(f"{fn}: batch_size must be at least 4 (the unbiased HSIC divides by n - 3), got {batch_size}")
    single = not isinstance(X, (list, tuple)) and not isinstance(Y, (list, tuple))
    xs = [_matrix(x, f"X[{i}]", fn) for i, x in enumerate(X if isinstance(X, (list, tuple)) else [X])]
    ys = [_matrix(y, f"Y[{i}]", fn) for i, y in enumerate(Y if isinstance(Y, (list, tuple)) else [Y])]
    rows = {m.shape[0] for m in xs + ys}
    if len(rows) != 1:
        raise ValueError(f"{fn}: X and Y must have the same rows (the same examples), got {sorted(rows)}")
    n = rows.pop()
    if n < 4:
        raise ValueError(f"{fn}: needs at least 4 rows (examples), got {n}")
    acc = MinibatchCKA(kernel, threshold)
    for s, e in _batch_bounds(n, batch_size):
        acc.update([x[s:e] for x in xs], [y[s:e] for y in ys])
    out = acc.compute()
    return float(out[0, 0]) if single else out


# ------------------------------------------------------ collecting layers ----

def _leaf_layers(model: Module) -> "OrderedDict[str, Module]":
    """Every module without children, by dotted name (the model itself if it has none)."""
    out = OrderedDict((n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children()))
    return out or OrderedDict([("output", model)])


def _select_layers(model: Module, layers, arg: str, fn: str) -> "OrderedDict[str, Module]":
    if layers is None:
        return _leaf_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    named = dict(model.named_modules())
    out = OrderedDict()
    for name in layers:
        if name not in named or name == "":
            known = [n for n in named if n]
            raise ValueError(f"{fn}: {arg} names no layer '{name}' (the model's layers: {', '.join(known)})")
        out[name] = named[name]
    if not out:
        raise ValueError(f"{fn}: {arg} is empty")
    return out


def _model_input(model: Module, X, fn: str, arg: str = "X"):
    """X as an array on the model's device and in its dtype (batch first)."""
    X = X.data if isinstance(X, Tensor) else X
    if not (isinstance(X, np.ndarray) or backend.is_cupy_array(X)):
        try:
            X = np.asarray(X)
        except Exception:
            raise TypeError(f"{fn}: {arg} must be an array or a Tensor, got {type(X).__name__}") from None
    if X.ndim < 1 or X.shape[0] == 0:
        raise ValueError(f"{fn}: {arg} must have one row per example, got shape {tuple(X.shape)}")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{fn}: {arg} must hold numbers, got dtype {X.dtype}")
    p = next(iter(model.parameters()), None)
    if p is not None:
        X = backend.to_device(X, p.device).astype(p.dtype, copy=False)
    elif X.dtype.kind != "f":
        X = X.astype(np.float32)
    return X


class _Eval:
    """Run a model in eval mode, restoring every module's training flag after."""

    def __init__(self, model):
        self.modes = [(m, m.training) for m in model.modules()]
        self.model = model

    def __enter__(self):
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes:
            object.__setattr__(m, "training", mode)
        return False


def _activations(model: Module, X, layers: "OrderedDict[str, Module]", batch_size: int, fn: str):
    """Yield, per batch of X, {layer name: its output as an (rows, features) array}, by hooks."""
    X = _model_input(model, X, fn)
    for s, e in _batch_bounds(X.shape[0], batch_size):
        seen = OrderedDict()

        def hook_for(name):
            def hook(module, args, output):
                if name in seen:
                    raise ValueError(f"{fn}: layer '{name}' ran twice in one forward pass (a shared module); "
                                     "its activations are ambiguous, name other layers")
                out = output.data if isinstance(output, Tensor) else output
                if not (isinstance(out, np.ndarray) or backend.is_cupy_array(out)):
                    raise TypeError(f"{fn}: layer '{name}' returned a {type(output).__name__}, not a Tensor")
                seen[name] = out.reshape(out.shape[0], -1)
            return hook
        handles = [m.register_forward_hook(hook_for(name)) for name, m in layers.items()]
        try:
            with _Eval(model), no_grad():
                model(Tensor(X[s:e]))
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in layers if n not in seen]
        if missing:
            raise ValueError(f"{fn}: layer(s) {', '.join(missing)} did not run in the model's forward pass")
        yield seen


def _gather(model, X, layers, batch_size, fn):
    """{layer: all its activations on X}, in the order the layers ran."""
    parts = None
    for acts in _activations(model, X, layers, batch_size, fn):
        if parts is None:
            parts = OrderedDict((n, []) for n in acts)
        for n, a in acts.items():
            parts[n].append(a)
    xp = backend.get_array_module(next(iter(parts.values()))[0])
    return OrderedDict((n, xp.concatenate(v)) for n, v in parts.items())


# ---------------------------------------------------- layer_similarity ----

@dataclass
class LayerSimilarity:
    """The CKA between every layer of model A (rows) and every layer of model B (columns).

    Attributes:
        layers_a, layers_b: the layer names, in the order they ran.
        matrix: a NumPy array (len(layers_a), len(layers_b)).
        kernel, debiased, minibatch, n: how it was computed, and on how many examples.
    """
    layers_a: list
    layers_b: list
    matrix: np.ndarray
    kernel: str = "linear"
    debiased: bool = False
    minibatch: bool = False
    n: int = 0

    def diagonal(self) -> "OrderedDict[str, float]":
        """CKA of each layer of A with the layer of B of the same name (same architectures)."""
        return OrderedDict((n, float(self.matrix[i, self.layers_b.index(n)]))
                           for i, n in enumerate(self.layers_a) if n in self.layers_b)

    def to_dict(self) -> dict:
        return {"layers_a": list(self.layers_a), "layers_b": list(self.layers_b),
                "matrix": [[float(v) for v in row] for row in self.matrix], "kernel": self.kernel,
                "debiased": self.debiased, "minibatch": self.minibatch, "n": self.n}

    def __str__(self):
        how = f"{self.kernel} CKA" + (", minibatch" if self.minibatch else ", debiased" if self.debiased else "")
        corner = "A \\ B"
        w = max([len(corner)] + [len(n) for n in self.layers_a])
        cw = max([6] + [len(n) for n in self.layers_b])
        lines = [f"{how} on {self.n} examples (rows: model A's layers, columns: model B's)",
                 f"{corner:<{w}}  " + "  ".join(f"{n:>{cw}}" for n in self.layers_b)]
        for name, row in zip(self.layers_a, self.matrix):
            lines.append(f"{name:<{w}}  " + "  ".join(f"{v:>{cw}.3f}" for v in row))
        return "\n".join(lines)

    __repr__ = __str__


def layer_similarity(model_a: Module, model_b: Module, X, *, kernel: str = "linear", threshold: float = 0.5,
                     debiased=None, minibatch: bool = False, batch_size: int = 256, layers_a=None,
                     layers_b=None) -> LayerSimilarity:
    """The CKA matrix between the layers of two models on the same inputs.

    Each layer's output is caught by a forward hook while the model runs its own forward pass
    (in eval mode, under no_grad; the training flags are restored after). By default every
    module without children is a layer (for ``Sequential(Linear, ReLU, Linear, ReLU, Linear)``:
    "0" ... "4", each Linear's own output and each ReLU's; the last is the output).

    Args:
        model_a, model_b: the two Modules (e.g. pretrained and fine-tuned; may differ in shape).
        X: the inputs (batch first); moved to each model's device and dtype.
        kernel, threshold: as in ``cka``.
        debiased: the HSIC estimator; default False, or True with ``minibatch`` (which is the
            unbiased estimator by definition: ``minibatch=True, debiased=False`` is an error).
        minibatch: accumulate over batches of ``batch_size`` (``MinibatchCKA``) instead of
            gathering every activation first: memory independent of len(X).
        batch_size: rows per forward pass.
        layers_a, layers_b: the layer names to compare (default: every leaf module).

    Returns:
        A ``LayerSimilarity`` (``print`` it; ``.matrix``, ``.diagonal()``, ``.to_dict()``).
    """
    fn = "layer_similarity"
    for m, arg in ((model_a, "model_a"), (model_b, "model_b")):
        if not isinstance(m, Module):
            raise TypeError(f"{fn}: {arg} must be a tinytl Module, got {type(m).__name__}")
    threshold = _check_kernel(kernel, threshold, fn)
    batch_size = _positive_int(batch_size, "batch_size", fn)
    if debiased is None:
        debiased = bool(minibatch)
    if minibatch and not debiased:
        raise ValueError(f"{fn}: minibatch CKA is the unbiased (debiased) estimator; minibatch=True "
                         "needs debiased=True or None")
    if minibatch and batch_size < 4:
        raise ValueError(f"{fn}: minibatch CKA needs batch_size >= 4, got {batch_size}")
    la = _select_layers(model_a, layers_a, "layers_a", fn)
    lb = _select_layers(model_b, layers_b, "layers_b", fn)
    n = len(X)
    if n < (4 if debiased else 2):
        raise ValueError(f"{fn}: needs at least {4 if debiased else 2} examples, got {n}")
    if minibatch:
        acc = MinibatchCKA(kernel, threshold)
        names_a = names_b = None
        for acts_a, acts_b in zip(_activations(model_a, X, la, batch_size, fn),
                                  _activations(model_b, X, lb, batch_size, fn)):
            names_a, names_b = list(acts_a), list(acts_b)
            acc.update(*_same_device(list(acts_a.values()), list(acts_b.values())))
        matrix = acc.compute()
    else:
        acts_a, acts_b = _gather(model_a, X, la, batch_size, fn), _gather(model_b, X, lb, batch_size, fn)
        names_a, names_b = list(acts_a), list(acts_b)
        xs, ys = _same_device(list(acts_a.values()), list(acts_b.values()))
        ra, rb = _reps(xs, kernel, threshold, fn), _reps(ys, kernel, threshold, fn)
        xx = [_hsic(r, r, debiased) for r in ra]
        yy = [_hsic(r, r, debiased) for r in rb]
        matrix = np.array([[_ratio(_hsic(a, b, debiased), xx[i], yy[j], fn) for j, b in enumerate(rb)]
                           for i, a in enumerate(ra)])
    return LayerSimilarity(names_a, names_b, matrix, kernel, bool(debiased), bool(minibatch), int(n))


def _same_device(xs: list, ys: list):
    """Both lists of activations in float64 on one device (two models on two devices meet on the CPU)."""
    xs = [a.astype(np.float64, copy=False) for a in xs]
    ys = [a.astype(np.float64, copy=False) for a in ys]
    if backend.is_cupy_array(xs[0]) != backend.is_cupy_array(ys[0]):
        xs, ys = [backend.to_numpy(a) for a in xs], [backend.to_numpy(a) for a in ys]
    return xs, ys


# ----------------------------------------------------------- weight drift ----

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


# ------------------------------------------------------------ probes ----

@dataclass
class ProbeResult:
    """A linear probe's accuracy on the features after each layer.

    Attributes:
        layers: the layer names ("input" first when included), in the order they ran.
        accuracy, train_accuracy: test and training accuracy, one per layer.
        dims: the number of features of each layer.
    """
    layers: list
    accuracy: list
    train_accuracy: list
    dims: list

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "accuracy": [float(a) for a in self.accuracy],
                "train_accuracy": [float(a) for a in self.train_accuracy], "dims": list(self.dims)}

    def __str__(self):
        w = max([len("layer")] + [len(n) for n in self.layers])
        lines = [f"{'layer':<{w}}  {'features':>8}  {'train acc':>9}  {'test acc':>8}"]
        for n, d, tr, te in zip(self.layers, self.dims, self.train_accuracy, self.accuracy):
            lines.append(f"{n:<{w}}  {d:>8}  {100 * tr:>8.1f}%  {100 * te:>7.1f}%")
        return "\n".join(lines)

    __repr__ = __str__


def _labels(y, n: int, arg: str, fn: str) -> np.ndarray:
    y = y.data if isinstance(y, Tensor) else y
    y = backend.to_numpy(y) if backend.is_cupy_array(y) else np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {arg} must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{fn}: {arg} must have shape ({n},), one label per row, got {tuple(y.shape)}")
    if n and int(y.min()) < 0:
        raise ValueError(f"{fn}: {arg} holds a negative label ({int(y.min())})")
    return y.astype(np.int64)


def probe_layers(model: Module, X, y, X_test, y_test, *, layers=None, include_input: bool = True,
                 epochs: int = 100, lr: float = 0.1, batch_size: int = 64, momentum: float = 0.9,
                 weight_decay: float = 0.0, seed: int = 0, num_classes=None) -> ProbeResult:
    """A linear probe's test accuracy on the features after each layer (Alain & Bengio, 2016).

    Each layer's output on X and X_test is caught by a forward hook (the model runs its own
    forward, in eval mode, under no_grad), standardised with the training rows' mean and
    standard deviation (an affine map the probe could learn, but one learning rate then suits
    every layer), and a ``Linear(features, classes)`` head starting from zero is trained on
    it with ``tl.transfer.linear_probe`` (softmax cross-entropy, ``tl.optim.SGD``). A zero
    start and a seeded shuffle make it deterministic; tinytl's global generator is untouched.

    Args:
        model: the Module (not changed).
        X, y: the probe's training inputs and integer labels.
        X_test, y_test: where its accuracy is measured.
        layers: the layer names (default: every leaf module, see ``layer_similarity``).
        include_input: probe the raw input too (row "input"): what the layers add to it.
        epochs, lr, batch_size, momentum, weight_decay: the probe's SGD.
        seed: the seed of the shuffling.
        num_classes: default: 1 + the largest label of y and y_test.

    Returns:
        A ``ProbeResult`` (``print`` it; ``.layers``, ``.accuracy``, ``.to_dict()``).
    """
    from ..transfer import linear_probe
    fn = "probe_layers"
    if not isinstance(model, Module):
        raise TypeError(f"{fn}: model must be a tinytl Module, got {type(model).__name__}")
    X = _model_input(model, X, fn, "X")
    X_test = _model_input(model, X_test, fn, "X_test")
    y = _labels(y, X.shape[0], "y", fn)
    y_test = _labels(y_test, X_test.shape[0], "y_test", fn)
    c = int(max(y.max(), y_test.max())) + 1 if num_classes is None else _positive_int(num_classes, "num_classes", fn)
    if max(y.max(), y_test.max()) >= c:
        raise ValueError(f"{fn}: a label is >= num_classes ({c})")
    chosen = _select_layers(model, layers, "layers", fn)
    train = _gather(model, X, chosen, 1024, fn)
    test = _gather(model, X_test, chosen, 1024, fn)
    if include_input:
        train = OrderedDict([("input", X.reshape(X.shape[0], -1))] + list(train.items()))
        test = OrderedDict([("input", X_test.reshape(X_test.shape[0], -1))] + list(test.items()))
    names, acc, acc_tr, dims = [], [], [], []
    for name, F in train.items():
        Ft = test[name]
        xp = backend.get_array_module(F)
        mu, sd = F.mean(axis=0, keepdims=True), F.std(axis=0, keepdims=True)
        sd = xp.where(sd > 0, sd, 1)
        F, Ft = (F - mu) / sd, (Ft - mu) / sd
        state = generator().bit_generator.state            # Linear() draws its init: undo that
        head = Linear(F.shape[1], c, dtype=F.dtype, device=backend.device_of(F))
        generator().bit_generator.state = state
        head.weight.data[...] = 0
        head.bias.data[...] = 0
        linear_probe(Identity(), head, F, y, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                     weight_decay=weight_decay, seed=seed)
        with no_grad():
            pred_tr = backend.to_numpy(head(Tensor(F)).data.argmax(axis=1))
            pred = backend.to_numpy(head(Tensor(Ft)).data.argmax(axis=1))
        names.append(name)
        acc.append(float((pred == y_test).mean()))
        acc_tr.append(float((pred_tr == y).mean()))
        dims.append(int(F.shape[1]))
    return ProbeResult(names, acc, acc_tr, dims)
