"""Do two layers compute the same representation? Centered kernel alignment (CKA).

CKA (Kornblith et al., ICML 2019) compares two activation matrices over the same inputs,
whatever their widths: 1 for identical representations (and for ones that differ by a
rotation or a scale), near 0 for unrelated ones. ``cka`` computes it for two matrices,
``minibatch_cka`` / ``MinibatchCKA`` accumulate it over batches (Nguyen et al., ICLR 2021),
and ``layer_similarity`` gives the CKA matrix between every layer of two models, whose
activations it catches with forward hooks (``Module.register_forward_hook``): any model works
as it is, nothing here re-implements a forward pass.

Read next: ``tinytl/explain/drift.py`` (how far the weights moved), ``tinytl/explain/probes.py``.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .. import backend
from ..nn import Module
from ..tensor import Tensor, as_array
from ._layers import _activations, _batch_bounds, _gather, _positive_int, _select_layers

KERNELS = ("linear", "rbf")


# ------------------------------------------------------------- checks ----

def _matrix(X, arg: str, fn: str):
    """X as a float64 (n, features) array on its own device (NumPy or CuPy)."""
    X = as_array(X, arg, fn)
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
