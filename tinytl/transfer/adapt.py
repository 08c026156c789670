"""Unsupervised domain adaptation: labelled source data, unlabelled target data from another distribution.

A network trained on one domain (the *source*) loses accuracy on data whose distribution
differs (the *target*: another sensor, another scanner, other lighting), even when the
classes are the same. When the target has no labels, the field's answer is to train on the
labelled source while making the network's features look the same on both domains:

- ``adabn`` (Li et al., 2016): re-estimate every BatchNorm's running statistics on the
  target, nothing else changes (no training at all);
- ``coral_loss`` (Deep CORAL, Sun & Saenko, 2016): match the features' covariances;
- ``mmd_loss`` (DAN, Long et al., 2015): shrink the multi-kernel maximum mean discrepancy
  between the two feature distributions;
- ``DomainAdversarialLoss`` (DANN, Ganin & Lempitsky, 2015): a domain discriminator learns
  to tell source features from target ones, and the features learn to fool it, through a
  gradient reversal layer (``grad_reverse`` / ``GradientReversal``) whose coefficient
  ramps up with ``DANNSchedule``.

``adapt(model, source=(X_s, y_s), target=X_t, method=...)`` runs any of them: the
classification loss on source batches plus ``trade_off`` x the alignment loss on the
features of paired source and target batches, taken with a forward hook on
``feature_layer``.

Every loss here is one differentiable op in ``tinytl/functional.py``'s form (forward and
backward side by side, array maths through the array module, so the GPU path is the same
code), checked by finite differences in ``tests/test_adapt.py``.

Read next: ``tinytl/demo/shift.py`` (the methods side by side on shifted MNIST-1D),
``docs/transfer.md`` ("Domain shift").
"""
from __future__ import annotations

import difflib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import backend
from ..functional import _tensor as _as_tensor
from ..nn import GradientReversal, Linear, Module, ReLU, Sequential
from ..nn.functional import binary_cross_entropy_with_logits, grad_reverse
from ..ops import cat
from ..optim import SGD
from ..tensor import Tensor, _make, no_grad
from ._checks import _check_module, _check_positive

__all__ = ["grad_reverse", "GradientReversal", "DANNSchedule", "coral_loss", "mmd_loss",
           "DomainAdversarialLoss", "domain_discriminator", "adabn", "adapt", "AdaptReport", "METHODS"]

METHODS = ("source_only", "adabn", "coral", "mmd", "dann")
MMD_ESTIMATORS = ("unbiased", "linear")
DAN_KERNELS = tuple(2.0 ** k for k in range(-3, 2))       # bandwidth multipliers 2^-3 .. 2^1


def _tensor(x, fn: str, arg: str) -> Tensor:
    return _as_tensor(x, f"{fn}: {arg}")


def _features_pair(fs, ft, fn: str, min_rows: int = 1):
    """fs (n_s, d) and ft (n_t, d): floating, 2-D, same width and device, enough rows."""
    fs, ft = _tensor(fs, fn, "fs"), _tensor(ft, fn, "ft")
    for arg, t in (("fs", fs), ("ft", ft)):
        if t.ndim != 2:
            raise ValueError(f"{fn}: {arg} must have shape (N, d), got {tuple(t.shape)}")
        if t.dtype.kind != "f":
            raise TypeError(f"{fn}: {arg} must be float32 or float64, got {t.dtype}")
        if t.shape[0] < min_rows:
            raise ValueError(f"{fn}: {arg} needs at least {min_rows} rows, got {t.shape[0]}")
    if fs.shape[1] != ft.shape[1]:
        raise ValueError(f"{fn}: fs and ft must have the same number of features, got {fs.shape[1]} and {ft.shape[1]}")
    if fs.device != ft.device:
        raise RuntimeError(f"{fn}: fs is on '{fs.device}' but ft is on '{ft.device}'")
    if fs.dtype != ft.dtype:
        raise TypeError(f"{fn}: fs is {fs.dtype} but ft is {ft.dtype}")
    return fs, ft


# ---------------------------------------------------------- gradient reversal ----

class DANNSchedule:
    """DANN's coefficient schedule: λ(p) = high * (2 / (1 + exp(-γ p)) - 1), p = step / total_steps.

    λ starts at 0 (the discriminator's gradients are noise at first) and approaches
    ``high`` (0.76 of it at p = 0.2, 0.9999 at p = 1 with γ = 10). ``step()`` once per
    training step; ``coeff`` is the value to use now.

    Args:
        total_steps: the number of training steps (p reaches 1 there and stays).
        gamma: γ, 10 in the paper.
        high: the final value, 1 in the paper.
    """

    def __init__(self, total_steps: int, gamma: float = 10.0, high: float = 1.0):
        self.total_steps = _check_positive(total_steps, "total_steps", "DANNSchedule", integer=True)
        self.gamma = _check_positive(gamma, "gamma", "DANNSchedule")
        self.high = _check_positive(high, "high", "DANNSchedule")
        self.steps = 0

    @staticmethod
    def value(p: float, gamma: float = 10.0, high: float = 1.0) -> float:
        """λ(p) for a progress p in [0, 1] (clipped)."""
        p = min(max(float(p), 0.0), 1.0)
        return high * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)

    @property
    def progress(self) -> float:
        """p = steps / total_steps, at most 1."""
        return min(self.steps / self.total_steps, 1.0)

    @property
    def coeff(self) -> float:
        """λ(p) at the current progress."""
        return self.value(self.progress, self.gamma, self.high)

    def step(self) -> float:
        """Advance one step; returns the new coefficient."""
        self.steps += 1
        return self.coeff

    def state_dict(self) -> dict:
        return {"steps": self.steps, "total_steps": self.total_steps, "gamma": self.gamma, "high": self.high}

    def load_state_dict(self, state: dict):
        self.steps, self.total_steps = int(state["steps"]), int(state["total_steps"])
        self.gamma, self.high = float(state["gamma"]), float(state["high"])

    def __repr__(self):
        return f"DANNSchedule(total_steps={self.total_steps}, gamma={self.gamma}, high={self.high}, steps={self.steps})"


# ----------------------------------------------------------------------- CORAL ----

def coral_loss(fs, ft) -> Tensor:
    """Deep CORAL (Sun & Saenko, 2016): ‖C_s − C_t‖²_F / (4 d²).

    C_s = (X_s − mean)ᵀ (X_s − mean) / (n_s − 1) is the unbiased covariance of the
    source features (n_s, d), C_t the target's. The loss ignores the means: shifting
    either domain's features changes nothing. Gradient (one op, no graph of d x d
    intermediates): dL/dX_s = (X_s − mean) (C_s − C_t) / ((n_s − 1) d²), and the
    negative of the same for the target with C_s − C_t.

    This follows the paper. A widely used implementation (TLlib's ``CorrelationAlignmentLoss``)
    states this formula in its docstring but returns ‖mean_s − mean_t‖² + ‖C_s − C_t‖²
    averaged over the d² entries, i.e. 4x the covariance term plus a mean term: its
    figures are not comparable with these.

    Args:
        fs: source features (n_s, d), n_s >= 2.
        ft: target features (n_t, d), n_t >= 2.

    Returns:
        A scalar Tensor.
    """
    fs, ft = _features_pair(fs, ft, "coral_loss", min_rows=2)
    xp = backend.get_array_module(fs.data)
    (ns, d), nt = fs.shape, ft.shape[0]
    cs_x = fs.data - fs.data.mean(axis=0, keepdims=True)
    ct_x = ft.data - ft.data.mean(axis=0, keepdims=True)
    diff = cs_x.T @ cs_x / (ns - 1) - ct_x.T @ ct_x / (nt - 1)       # C_s - C_t (symmetric)
    loss = (diff * diff).sum() / (4.0 * d * d)

    def backward(g):
        gs = (cs_x @ diff) * (g / ((ns - 1) * d * d)) if fs.requires_grad else None
        gt = (ct_x @ diff) * (-g / ((nt - 1) * d * d)) if ft.requires_grad else None
        return gs, gt
    return _make(xp.asarray(loss, dtype=fs.dtype), (fs, ft), backward, "coral_loss")


# ------------------------------------------------------------------------- MMD ----

def _mean_sq_distance(Z, xp) -> float:
    """The mean of ‖z_i − z_j‖² over the pairs i != j, in O(N d):
    Σ_ij ‖z_i − z_j‖² = 2 N Σ_i ‖z_i‖² − 2 ‖Σ_i z_i‖²."""
    n = Z.shape[0]
    total = 2.0 * n * float((Z * Z).sum()) - 2.0 * float((Z.sum(axis=0) ** 2).sum())
    return max(total, 0.0) / (n * (n - 1))


def mmd_loss(fs, ft, kernels=DAN_KERNELS, estimator: str = "unbiased") -> Tensor:
    """The multi-kernel MMD² of DAN (Long et al., 2015) between source and target features.

    With Gaussian kernels k_u(a, b) = exp(−‖a − b‖² / γ_u), γ_u = m_u · σ̄² and
    k = mean_u k_u (DAN's convex combination, uniform weights),

    - "unbiased" (quadratic time; Gretton et al., 2012):
      MMD²_u = Σ_{i≠j} k(s_i, s_j) / (n_s(n_s−1)) + Σ_{i≠j} k(t_i, t_j) / (n_t(n_t−1))
      − 2 Σ_{i,j} k(s_i, t_j) / (n_s n_t);
    - "linear" (linear time, the estimator DAN trains with; needs n_s = n_t = n):
      MMD²_l = (2/n) Σ_{i<n/2} [k(s_{2i}, s_{2i+1}) + k(t_{2i}, t_{2i+1})
      − k(s_{2i}, t_{2i+1}) − k(s_{2i+1}, t_{2i})] (an odd last row is left out).

    σ̄² is the mean squared distance over all pairs of the pooled batch (computed in
    O(N d)); it comes from the data but is treated as a constant in backward, as every
    implementation does (DAN's bandwidth heuristic is not part of the objective). The
    default multipliers are m_u = 2^u, u = −3..1. (TLlib's ``MultipleKernelMaximumMeanDiscrepancy``
    uses exp(−‖a − b‖² / (2 m_u σ̄²)) and sums the kernels instead of averaging them.)
    The unbiased estimate can be slightly negative when the two samples are alike.

    Args:
        fs: source features (n_s, d), n_s >= 2.
        ft: target features (n_t, d), n_t >= 2.
        kernels: the bandwidth multipliers m_u (positive numbers).
        estimator: "unbiased" or "linear".

    Returns:
        A scalar Tensor.
    """
    fn = "mmd_loss"
    if estimator not in MMD_ESTIMATORS:
        raise ValueError(f"{fn}: estimator must be one of {MMD_ESTIMATORS}, got {estimator!r}")
    try:
        mults = [float(m) for m in kernels]
    except TypeError:
        raise TypeError(f"{fn}: kernels must be a sequence of bandwidth multipliers, got {kernels!r}") from None
    if not mults or not all(math.isfinite(m) and m > 0 for m in mults):
        raise ValueError(f"{fn}: kernels must be one or more positive bandwidth multipliers, got {kernels!r}")
    fs, ft = _features_pair(fs, ft, fn, min_rows=2)
    ns, nt = fs.shape[0], ft.shape[0]
    if estimator == "linear" and ns != nt:
        raise ValueError(f"{fn}: the linear estimator pairs source and target rows and needs equal batch sizes, "
                         f"got {ns} source and {nt} target rows (use estimator='unbiased')")
    xp = backend.get_array_module(fs.data)
    S, T = fs.data, ft.data
    sigma2 = _mean_sq_distance(xp.concatenate([S, T], axis=0), xp)
    gammas = [m * sigma2 if sigma2 > 0 else m for m in mults]        # identical points: any bandwidth
    nk = len(gammas)

    if estimator == "unbiased":
        Z = xp.concatenate([S, T], axis=0)
        sq = (Z * Z).sum(axis=1)
        D = xp.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0)
        n = ns + nt
        W = xp.empty((n, n), dtype=Z.dtype)                          # the estimator's weight of each pair
        W[:ns, :ns] = 1.0 / (ns * (ns - 1))
        W[ns:, ns:] = 1.0 / (nt * (nt - 1))
        W[:ns, ns:] = -1.0 / (ns * nt)
        W[ns:, :ns] = -1.0 / (ns * nt)
        idx = xp.arange(n)
        W[idx, idx] = 0.0
        Ks = [xp.exp(D / -g) for g in gammas]
        loss = (W * sum(Ks)).sum() / nk

        def backward(g):
            # dL/dD_ij = W_ij mean_u (−1/γ_u) K_u; dD_ij/dz_i = 2 (z_i − z_j), and D is symmetric
            A = W * sum(K / -gm for K, gm in zip(Ks, gammas)) / nk
            gZ = (4.0 * (A.sum(axis=1)[:, None] * Z - A @ Z)) * g
            return (gZ[:ns] if fs.requires_grad else None, gZ[ns:] if ft.requires_grad else None)
    else:
        h = ns // 2
        a, b = xp.arange(0, 2 * h, 2), xp.arange(1, 2 * h, 2)
        # four pair differences per quad, with the sign of their term: (s_a, s_b) +, (t_a, t_b) +,
        # (s_a, t_b) −, (s_b, t_a) −
        diffs = [S[a] - S[b], T[a] - T[b], S[a] - T[b], S[b] - T[a]]
        signs = (1.0, 1.0, -1.0, -1.0)
        d2 = [(v * v).sum(axis=1) for v in diffs]
        Ks = [[xp.exp(q / -gm) for gm in gammas] for q in d2]
        loss = sum(sg * sum(k.sum() for k in K) for sg, K in zip(signs, Ks)) / (h * nk)

        def backward(g):
            scale = g / (h * nk)
            # d k_u(x, y) / dx = −2 (x − y) k_u / γ_u
            c = [sg * sum(k * (-2.0 / gm) for k, gm in zip(K, gammas)) for sg, K in zip(signs, Ks)]
            gS, gT = xp.zeros_like(S), xp.zeros_like(T)
            gv = [ci[:, None] * v * scale for ci, v in zip(c, diffs)]
            gS[a] += gv[0] + gv[2]
            gS[b] += gv[3] - gv[0]
            gT[a] += gv[1] - gv[3]
            gT[b] += -gv[1] - gv[2]
            return (gS if fs.requires_grad else None, gT if ft.requires_grad else None)
    return _make(xp.asarray(loss, dtype=fs.dtype), (fs, ft), backward, "mmd_loss")


# ------------------------------------------------------------------------ DANN ----

class DomainAdversarialLoss(Module):
    """DANN's domain loss (Ganin & Lempitsky, 2015): the binary cross-entropy of a domain
    discriminator D on reversed features,

        L_d = −[ Σ_i log σ(D(R(f_s,i))) + Σ_j log(1 − σ(D(R(f_t,j)))) ] / (n_s + n_t),

    source label 1, target 0, R = ``grad_reverse`` with coefficient λ. Minimising it
    trains D to tell the domains apart, while the reversed gradient trains the features
    to make them indistinguishable. (TLlib: ``DomainAdversarialLoss``.)

    Args:
        discriminator: a Module mapping features (N, d) to one logit per row, (N, 1) or (N,).
        schedule: a ``DANNSchedule`` giving λ (its current ``coeff``; step it once per
            training step), or None for a constant ``coeff``.
        coeff: λ when there is no schedule.

    After each call ``domain_accuracy`` holds the discriminator's accuracy on that batch
    (0.5 means the domains look alike to it).
    """

    def __init__(self, discriminator: Module, schedule: DANNSchedule | None = None, coeff: float = 1.0):
        super().__init__()
        _check_module(discriminator, "discriminator", "DomainAdversarialLoss")
        if schedule is not None and not isinstance(schedule, DANNSchedule):
            raise TypeError(f"DomainAdversarialLoss: schedule must be a DANNSchedule or None, got "
                            f"{type(schedule).__name__}")
        self.discriminator = discriminator
        self.grl = GradientReversal(coeff)
        self.schedule = schedule
        self.domain_accuracy = float("nan")

    def forward(self, fs, ft) -> Tensor:
        fs, ft = _features_pair(fs, ft, "DomainAdversarialLoss")
        if self.schedule is not None:
            self.grl.coeff = self.schedule.coeff
        logits = self.discriminator(self.grl(cat((fs, ft), 0)))
        n = fs.shape[0] + ft.shape[0]
        if tuple(logits.shape) not in ((n,), (n, 1)):
            raise ValueError(f"DomainAdversarialLoss: the discriminator must return one logit per row, shape "
                             f"({n}, 1) or ({n},), got {tuple(logits.shape)}")
        if logits.ndim == 2:
            logits = logits.reshape(n)
        xp = backend.get_array_module(logits.data)
        labels = xp.zeros(n, dtype=logits.dtype)
        labels[:fs.shape[0]] = 1.0
        self.domain_accuracy = float(((logits.data > 0) == (labels > 0.5)).mean())
        return binary_cross_entropy_with_logits(logits, Tensor(labels))


def domain_discriminator(in_features: int, hidden: int = 256, dtype=np.float32, device: str = "cpu") -> Sequential:
    """DANN's discriminator, smaller: in -> hidden -> hidden -> 1 logit, ReLUs between."""
    return Sequential(Linear(in_features, hidden, dtype=dtype, device=device), ReLU(),
                      Linear(hidden, hidden, dtype=dtype, device=device), ReLU(),
                      Linear(hidden, 1, dtype=dtype, device=device))


# ----------------------------------------------------------------------- AdaBN ----

def _batchnorms(model: Module) -> list:
    """The modules with torch's BatchNorm API: running_mean, running_var, reset_running_stats."""
    return [m for m in model.modules()
            if hasattr(m, "running_mean") and hasattr(m, "running_var") and callable(getattr(m, "reset_running_stats", None))]


def _model_device_dtype(model: Module):
    for p in model.parameters():
        return p.device, p.dtype
    return "cpu", np.dtype(np.float32)


def _check_inputs(X, arg: str, fn: str, n_features=None) -> np.ndarray:
    X = X.numpy() if isinstance(X, Tensor) else backend.to_numpy(X) if backend.is_cupy_array(X) else X
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except Exception:
            raise TypeError(f"{fn}: {arg} must be an array, got {type(X).__name__}") from None
    if X.ndim != 2:
        raise ValueError(f"{fn}: {arg} must have shape (N, features), got {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{fn}: {arg} is empty (0 rows)")
    if X.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: {arg} must hold numbers, got dtype {X.dtype}")
    if X.dtype.kind == "f" and not bool(np.isfinite(X).all()):
        raise ValueError(f"{fn}: {arg} holds NaN or Inf values")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{fn}: {arg} has {X.shape[1]} features, expected {n_features} (as the source)")
    return X


def _batch(X, idx, device, dtype) -> Tensor:
    return Tensor(backend.to_device(X[idx], device).astype(dtype, copy=False))


def adabn(model: Module, X_target, batch_size: int = 256) -> Module:
    """AdaBN (Li et al., 2016): re-estimate every BatchNorm's running statistics on the target data.

    Each BatchNorm's ``running_mean`` and ``running_var`` become the average, over the
    target batches, of the batch means and (unbiased) variances its input has on the
    target: the BatchNorm is reset (``reset_running_stats``) and run with ``momentum=None``
    (a cumulative average, as in torch), the model in train mode under ``no_grad``. The
    weights, the BatchNorms' affine parameters and each module's mode and momentum are
    left as they were. BatchNorm layers are found by torch's API (modules with
    ``running_mean``, ``running_var`` and ``reset_running_stats``), so any layer that
    follows it is adapted. PyTorch has no built-in; the same loop there is
    ``bn.reset_running_stats(); bn.momentum = None; model.train(); with torch.no_grad(): ...``.

    Args:
        model: the network (changed in place and returned).
        X_target: target inputs (N, features), no labels.
        batch_size: rows per forward pass (the statistics of a batch normalise it in
            train mode: the last, smaller batch counts as much as the others).

    Returns:
        ``model``.

    Raises:
        ValueError: no BatchNorm in ``model``, an empty target, NaN inputs.
    """
    fn = "adabn"
    _check_module(model, "model", fn)
    batch_size = _check_positive(batch_size, "batch_size", fn, integer=True)
    X = _check_inputs(X_target, "X_target", fn)
    bns = _batchnorms(model)
    if not bns:
        raise ValueError("adabn: model has no BatchNorm layer (no module with running_mean, running_var and "
                         "reset_running_stats), so there is nothing to re-estimate")
    if X.shape[0] < 2:
        raise ValueError("adabn: X_target needs at least 2 rows (a BatchNorm in train mode needs a variance)")
    device, dtype = _model_device_dtype(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(bn, bn.momentum) for bn in bns]
    n = X.shape[0]
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 2:        # a last batch of one row has no variance
        starts.pop()
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        with no_grad():
            for i, s in enumerate(starts):
                e = starts[i + 1] if i + 1 < len(starts) else n
                model(_batch(X, slice(s, e), device, dtype))
    finally:
        for bn, mom in momenta:
            bn.momentum = mom
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return model


# ----------------------------------------------------------------------- adapt ----

@dataclass
class AdaptReport:
    """What ``adapt`` did, epoch by epoch.

    Attributes:
        method: the method run.
        epochs, steps: the epochs run and the optimizer steps they made.
        classification_loss: the mean source cross-entropy of each epoch.
        transfer_loss: the mean alignment loss of each epoch (before ``trade_off``; empty
            for "source_only" and "adabn").
        loss: the mean total loss of each epoch.
        target_accuracy: the accuracy on ``val`` after each epoch (after AdaBN's
            re-estimation for "adabn": then one more entry, the last, is the adapted
            model's), or None without ``val``.
        domain_accuracy: DANN's discriminator accuracy on each epoch's batches (0.5:
            the domains look alike to it), else None.
        feature_layer: where the features were taken: a module's name (its output), or
            "input of NAME" (the default: the last Linear's input).
        seconds: wall time.
    """
    method: str
    epochs: int
    steps: int = 0
    classification_loss: list = field(default_factory=list)
    transfer_loss: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    target_accuracy: list | None = None
    domain_accuracy: list | None = None
    feature_layer: str = ""
    seconds: float = 0.0

    def __str__(self):
        lines = [f"AdaptReport: {self.method}, {self.epochs} epochs ({self.steps} steps, {self.seconds:.1f} s), "
                 f"features: {self.feature_layer}"]
        for e in range(len(self.loss)):
            line = f"  epoch {e + 1}: loss {self.loss[e]:.4f} (classification {self.classification_loss[e]:.4f}"
            if self.transfer_loss:
                line += f", transfer {self.transfer_loss[e]:.4f}"
            line += ")"
            if self.domain_accuracy:
                line += f", domain accuracy {self.domain_accuracy[e]:.3f}"
            if self.target_accuracy:
                line += f", target accuracy {self.target_accuracy[e]:.4f}"
            lines.append(line)
        if self.target_accuracy and len(self.target_accuracy) > len(self.loss):
            lines.append(f"  after AdaBN: target accuracy {self.target_accuracy[-1]:.4f}")
        return "\n".join(lines)


def _default_feature_layer(model: Module) -> str:
    last = None
    for name, m in model.named_modules():
        if isinstance(m, Linear):
            last = name
    if last is None:
        raise ValueError("adapt: model has no Linear layer; pass feature_layer= (a module name)")
    return last


def _accuracy(model, X, y, device, dtype) -> float:
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    correct = 0
    with no_grad():
        for s in range(0, len(X), 1024):
            out = model(_batch(X, slice(s, s + 1024), device, dtype)).data
            yb = y[s:s + 1024]
            pred = backend.to_numpy(out.argmax(axis=1))
            correct += int((pred == backend.to_numpy(yb)).sum())
    for m, mode in was:
        object.__setattr__(m, "training", mode)
    return correct / len(X)


def adapt(model: Module, source, target, method: str = "dann", *, feature_layer: str | None = None,
          trade_off: float = 1.0, epochs: int = 10, lr: float = 0.01, batch_size=64, seed: int = 0, val=None,
          momentum: float = 0.9, weight_decay: float = 5e-4, estimator: str = "unbiased", kernels=DAN_KERNELS,
          discriminator: Module | None = None, gamma: float = 10.0, anneal_lr: bool = False):
    """Train ``model`` on labelled source data while aligning its features with unlabelled target data.

    Each step takes a source batch (with labels) and a target batch (without), runs both
    through the model in one forward pass, and minimises

        L = cross_entropy(model(x_s), y_s) + trade_off * L_align(f_s, f_t)

    with SGD (momentum, weight decay), where f are the features at ``feature_layer``
    (captured with a forward hook) and L_align depends on ``method``:

    - "source_only": none (the baseline: train on the source, hope);
    - "adabn": none while training; then ``adabn`` re-estimates the BatchNorm statistics
      on the target (the model needs BatchNorm layers);
    - "coral": ``coral_loss``;
    - "mmd": ``mmd_loss`` (``estimator``, ``kernels``), DAN;
    - "dann": ``DomainAdversarialLoss`` with ``discriminator`` (default:
      ``domain_discriminator(d)``, a 2-hidden-layer MLP of width 256), λ from
      ``DANNSchedule(total steps, gamma)``; the discriminator is trained by the same optimizer.

    An epoch is one pass over the source (full batches only); target batches cycle
    through reshuffled passes over the target. Target labels are never used for
    training: ``val=(X_t_test, y_t_test)`` only scores each epoch. PyTorch has no
    built-in for this; TLlib's (thuml/Transfer-Learning-Library) training loops do the
    same with its losses.

    Args:
        model: a classifier (N, features) -> (N, classes); trained in place.
        source: ``(X_s, y_s)``, inputs (N_s, features) and integer labels (N_s,).
        target: ``X_t``, target inputs (N_t, features).
        method: one of "source_only", "adabn", "coral", "mmd", "dann".
        feature_layer: the name of the module (as in ``model.named_modules()``) whose
            output is aligned; None: the input of the last Linear layer (the head's input).
        trade_off: the weight of the alignment loss (>= 0).
        epochs, lr, momentum, weight_decay: the optimisation.
        batch_size: rows per batch, an int for both domains or ``(source, target)``; the
            target's is at most N_t. "linear" MMD needs both equal.
        seed: the shuffling (initialisations come from ``tl.manual_seed``'s generator).
        anneal_lr: DANN's learning-rate annealing, lr_p = lr / (1 + 10 p)^0.75 at progress
            p (it steadies the adversarial game); False: a constant ``lr``.
        val: ``(X_t_test, y_t_test)`` to report the target accuracy per epoch, or None.
        estimator, kernels: ``mmd_loss``'s, for "mmd".
        discriminator: DANN's domain discriminator, (N, d) -> (N, 1) logits; None for the default.
        gamma: ``DANNSchedule``'s γ, for "dann".

    Returns:
        ``(model, AdaptReport)``.

    Raises:
        ValueError / TypeError, before any training: an unknown method, an empty target,
        NaN or Inf inputs, a feature layer that does not exist, unequal batch sizes where
        the estimator needs equal ones, no BatchNorm for "adabn", bad numbers.
    """
    fn = "adapt"
    t0 = time.perf_counter()
    _check_module(model, "model", fn)
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {METHODS}, got {method!r}")
    if not (isinstance(source, (tuple, list)) and len(source) == 2):
        raise TypeError(f"{fn}: source must be a pair (X_s, y_s), got {type(source).__name__}")
    Xs = _check_inputs(source[0], "source X_s", fn)
    Xt = _check_inputs(target, "target", fn, n_features=Xs.shape[1])
    ys = _labels(source[1], len(Xs), "source y_s", fn)
    if val is not None:
        if not (isinstance(val, (tuple, list)) and len(val) == 2):
            raise TypeError(f"{fn}: val must be a pair (X_t_test, y_t_test) or None, got {type(val).__name__}")
        Xv = _check_inputs(val[0], "val X", fn, n_features=Xs.shape[1])
        yv = _labels(val[1], len(Xv), "val y", fn)
    epochs = _check_positive(epochs, "epochs", fn, integer=True)
    lr = _check_positive(lr, "lr", fn)
    if isinstance(trade_off, bool) or not isinstance(trade_off, (int, float, np.integer, np.floating)) \
            or not math.isfinite(trade_off) or trade_off < 0:
        raise ValueError(f"{fn}: trade_off must be a finite number >= 0, got {trade_off!r}")
    if isinstance(batch_size, (tuple, list)):
        if len(batch_size) != 2:
            raise ValueError(f"{fn}: batch_size must be an int or a pair (source, target), got {batch_size!r}")
        bs_s, bs_t = (_check_positive(b, "batch_size", fn, integer=True) for b in batch_size)
    else:
        bs_s = bs_t = _check_positive(batch_size, "batch_size", fn, integer=True)
    bs_s, bs_t = min(bs_s, len(Xs)), min(bs_t, len(Xt))
    if estimator not in MMD_ESTIMATORS:
        raise ValueError(f"{fn}: estimator must be one of {MMD_ESTIMATORS}, got {estimator!r}")
    if method == "mmd" and estimator == "linear" and bs_s != bs_t:
        raise ValueError(f"{fn}: the linear MMD estimator needs equal source and target batch sizes, got "
                         f"{bs_s} and {bs_t}" + (f" (the target has only {len(Xt)} rows)" if bs_t == len(Xt) else ""))
    if method in ("coral", "mmd") and min(bs_s, bs_t) < 2:
        raise ValueError(f"{fn}: {method} needs batches of at least 2 rows in each domain, got {bs_s} and {bs_t}")
    if method == "adabn" and not _batchnorms(model):
        raise ValueError(f"{fn}: method 'adabn' needs a model with BatchNorm layers, and this one has none")
    if discriminator is not None:
        _check_module(discriminator, "discriminator", fn)
    names = dict(model.named_modules())
    if feature_layer is None:
        feature_layer, take_input = _default_feature_layer(model), True      # the head's input
    else:
        take_input = False
        if not isinstance(feature_layer, str) or feature_layer not in names or feature_layer == "":
            close = difflib.get_close_matches(str(feature_layer), [n for n in names if n], n=1)
            raise ValueError(f"{fn}: feature_layer {feature_layer!r} is not a module of the model"
                             + (f"; did you mean {close[0]!r}?" if close else "")
                             + f" (its modules: {', '.join(repr(n) for n in names if n)})")
    device, dtype = _model_device_dtype(model)
    layer = names[feature_layer]
    captured = []
    if take_input:
        def hook(mod, args):
            captured.append(args[0])
        handle = layer.register_forward_pre_hook(hook)
    else:
        def hook(mod, args, out):
            captured.append(out)
        handle = layer.register_forward_hook(hook)

    try:
        # a probe forward (eval mode, no graph: nothing changes) to learn the features' width
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with no_grad():
                probe = model(_batch(Xs, slice(0, 2), device, dtype))
        finally:
            for m, mode in modes:
                object.__setattr__(m, "training", mode)
        feat = captured.pop() if captured else None
        captured.clear()
        if not isinstance(feat, Tensor) or feat.ndim != 2:
            raise ValueError(f"{fn}: feature_layer {feature_layer!r} must produce features of shape (N, d), got "
                             f"{None if feat is None else getattr(feat, 'shape', type(feat).__name__)}")
        n_classes = probe.shape[1] if isinstance(probe, Tensor) and probe.ndim == 2 else None
        for arg, yy in (("source y_s", ys),) + ((("val y", yv),) if val is not None else ()):
            if n_classes is not None and (int(yy.min()) < 0 or int(yy.max()) >= n_classes):
                raise ValueError(f"{fn}: {arg} holds labels outside [0, {n_classes}) (the model has {n_classes} "
                                 f"outputs)")
        d = feat.shape[1]

        rng = np.random.default_rng(seed)
        params = list(model.parameters())
        n_steps = epochs * max(len(Xs) // bs_s, 1)
        align = None
        if method == "dann":
            if discriminator is None:              # initialised from tinytl's global generator
                discriminator = domain_discriminator(d, dtype=dtype, device=device)
            align = DomainAdversarialLoss(discriminator, DANNSchedule(n_steps, gamma=gamma))
            params += list(discriminator.parameters())
        elif method == "coral":
            align = coral_loss
        elif method == "mmd":
            align = lambda a, b: mmd_loss(a, b, kernels=kernels, estimator=estimator)   # noqa: E731
        opt = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        from ..functional import cross_entropy

        report = AdaptReport(method=method, epochs=epochs,
                             feature_layer=f"input of {feature_layer}" if take_input else feature_layer,
                             target_accuracy=[] if val is not None else None,
                             domain_accuracy=[] if method == "dann" else None)
        t_order, t_pos = rng.permutation(len(Xt)), 0
        model.train()
        for _ in range(epochs):
            order = rng.permutation(len(Xs))
            sums = np.zeros(3)
            dom = []
            n_b = max(len(Xs) // bs_s, 1)
            for b in range(n_b):
                idx_s = order[b * bs_s:(b + 1) * bs_s]
                if align is None:
                    x = _batch(Xs, idx_s, device, dtype)
                else:
                    if t_pos + bs_t > len(Xt):
                        t_order, t_pos = rng.permutation(len(Xt)), 0
                    idx_t = t_order[t_pos:t_pos + bs_t]
                    t_pos += bs_t
                    x = _batch(np.concatenate([Xs[idx_s], Xt[idx_t]]), slice(None), device, dtype)
                captured.clear()
                out = model(x)
                ns = len(idx_s)
                yb = backend.to_device(ys[idx_s], device)
                cls = cross_entropy(out if align is None else out[:ns], yb)
                loss = cls
                tl_ = None
                if align is not None:
                    f = captured[-1]
                    tl_ = align(f[:ns], f[ns:])
                    loss = cls + tl_ * float(trade_off) if trade_off else cls
                if anneal_lr:
                    for group in opt.param_groups:
                        group["lr"] = lr / (1.0 + 10.0 * report.steps / n_steps) ** 0.75
                opt.zero_grad()
                loss.backward()
                opt.step()
                if method == "dann":
                    align.schedule.step()
                    dom.append(align.domain_accuracy)
                sums += (float(loss.item()), float(cls.item()), 0.0 if tl_ is None else float(tl_.item()))
                report.steps += 1
            sums /= n_b
            report.loss.append(float(sums[0]))
            report.classification_loss.append(float(sums[1]))
            if align is not None:
                report.transfer_loss.append(float(sums[2]))
            if dom:
                report.domain_accuracy.append(float(np.mean(dom)))
            if val is not None:
                report.target_accuracy.append(_accuracy(model, Xv, yv, device, dtype))
        model.eval()
        captured.clear()
    finally:
        handle.remove()
    if method == "adabn":
        adabn(model, Xt)
        if val is not None:
            report.target_accuracy.append(_accuracy(model, Xv, yv, device, dtype))
    report.seconds = time.perf_counter() - t0
    return model, report


def _labels(y, n: int, arg: str, fn: str):
    y = y.numpy() if isinstance(y, Tensor) else backend.to_numpy(y) if backend.is_cupy_array(y) else np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {arg} must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{fn}: {arg} must have shape ({n},), got {tuple(y.shape)}")
    return y.astype(np.int64, copy=False)
