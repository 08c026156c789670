"""Knowledge distillation: teach a small student network to imitate a large teacher.

Hinton, Vinyals and Dean (2015), "Distilling the Knowledge in a Neural Network": the
teacher's softened output distribution ``p = softmax(t / T)`` carries more than its
argmax (which wrong classes look alike), and a student trained to match it learns
more per example than from hard labels alone. The loss, per batch of N rows::

    KD = T^2 * (1/N) sum_i KL(p_i || q_i),   p = softmax(t / T), q = softmax(s / T)
    CE = (1/L) sum_{i labelled} -log softmax(s_i)[y_i]
    loss = alpha * KD + (1 - alpha) * CE     (KD alone without labels)

``T^2`` keeps the soft gradients' scale independent of ``T`` (dKD/ds = T (q - p) / N).
The use case here: shrink a fine-tuned model into one small enough to embed, training
it on the unlabelled data of the task (the teacher labels it) plus the few labels.

PyTorch equivalent of the loss::

    kd = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean",
                  log_target=True) * T * T
    loss = alpha * kd + (1 - alpha) * F.cross_entropy(s, y, ignore_index=-100)

Read next: ``tinytl/transfer/peft.py`` (the other way to make fine-tuning cheap).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .._random import generator
from ..functional import _loss_backward, _seed
from ..nn import Module
from ..optim import SGD
from ..tensor import Tensor, _make, no_grad
from ._checks import _check_count, _check_module, _check_positive

IGNORE_INDEX = -100    # a label that marks an unlabelled row (torch's CrossEntropyLoss default)


# ------------------------------------------------------------------- loss ----

def _log_softmax(z, xp):
    m = z.max(axis=1, keepdims=True)
    shifted = z - m
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def distillation_loss(student_logits, teacher_logits, target=None, *, temperature: float = 4.0,
                      alpha: float = 0.9, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Hinton et al.'s loss: ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``.

    One fused op: the forward and its gradient are computed together,
    ``d/ds = alpha * T * (softmax(s/T) - softmax(t/T)) / N + (1 - alpha) * (softmax(s) - onehot(y)) / L``
    (L labelled rows). The KL term is averaged over the N rows ("batchmean", as
    ``F.kl_div``); the cross-entropy over the rows whose label is not ``ignore_index``
    (none labelled: that term is 0). The teacher gets no gradient.

    Args:
        student_logits: (N, C) Tensor, the student's raw outputs.
        teacher_logits: (N, C) Tensor or array, the teacher's raw outputs (a constant).
        target: None (KD alone) or (N,) integer labels, ``ignore_index`` for unlabelled rows.
        temperature: T > 0 (Hinton et al. use 1-20; 4 is common).
        alpha: weight of the KD term in [0, 1] (ignored, taken as 1, without labels).
        ignore_index: the label of unlabelled rows.

    Returns:
        The loss, a 0-d Tensor.
    """
    fn = "distillation_loss"
    temperature = _check_temperature(temperature, fn)
    alpha = _check_alpha(alpha, fn)
    s = student_logits if isinstance(student_logits, Tensor) else Tensor(student_logits)
    t = teacher_logits.data if isinstance(teacher_logits, Tensor) else teacher_logits
    S = s.data
    if S.ndim != 2 or S.shape[0] == 0 or S.dtype.kind != "f":
        raise ValueError(f"{fn}: student_logits must be a non-empty float (N, C) array, got shape "
                         f"{tuple(S.shape)} dtype {S.dtype}")
    if not (isinstance(t, np.ndarray) or backend.is_cupy_array(t)):
        t = np.asarray(t)
    if tuple(t.shape) != tuple(S.shape):
        raise ValueError(f"{fn}: teacher_logits have shape {tuple(t.shape)}, the student's {tuple(S.shape)}")
    if backend.is_cupy_array(t) != backend.is_cupy_array(S):
        raise RuntimeError(f"{fn}: student logits on '{backend.device_of(S)}', teacher logits on "
                           f"'{backend.device_of(t)}'")
    xp = backend.get_array_module(S)
    n, c = S.shape
    Tt = t.astype(S.dtype, copy=False)

    # KD: T^2 * mean_i sum_c p (log p - log q), on the softened outputs
    log_p = _log_softmax(Tt / temperature, xp)
    log_q = _log_softmax(S / temperature, xp)
    p = xp.exp(log_p)
    kd = temperature * temperature * (p * (log_p - log_q)).sum() / n
    a = alpha if target is not None else 1.0          # KD alone without labels
    loss = a * kd
    grad = (a * temperature / n) * (xp.exp(log_q) - p)
    if target is not None:
        y = _targets(target, n, c, ignore_index, xp, fn)
        rows = xp.flatnonzero(y != ignore_index)
        n_lab = int(rows.size)
        if n_lab and alpha < 1:
            log_s = _log_softmax(S[rows], xp)
            picked = log_s[xp.arange(n_lab), y[rows]]
            loss = loss + (1 - alpha) * (-picked.sum() / n_lab)
            g_ce = xp.exp(log_s)
            g_ce[xp.arange(n_lab), y[rows]] -= 1
            grad[rows] += ((1 - alpha) / n_lab) * g_ce
    loss = xp.asarray(loss, dtype=S.dtype)
    grad = grad.astype(S.dtype, copy=False)

    @_loss_backward
    def backward(g):
        m = _seed(g, grad.dtype, xp)
        return (grad if m is None else grad * m,)
    return _make(loss, (s,), backward, "distillation_loss")


def _targets(target, n, c, ignore_index, xp, fn):
    y = target.data if isinstance(target, Tensor) else target
    if not (isinstance(y, np.ndarray) or backend.is_cupy_array(y)):
        y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: target must hold integer class labels, got dtype {y.dtype}")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{fn}: target must have shape ({n},), got {tuple(y.shape)}")
    y = backend.to_device(backend.to_numpy(y).astype(np.int64), "cpu" if xp is np else "cuda")
    bad = (y != ignore_index) & ((y < 0) | (y >= c))
    if bool(bad.any()):
        i = int(xp.flatnonzero(bad)[0])
        raise ValueError(f"{fn}: target[{i}] = {int(y[i])} is neither a class index in [0, {c}) nor "
                         f"ignore_index ({ignore_index})")
    return y


def _check_temperature(temperature, fn):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{fn}: temperature must be a positive number, got {temperature!r}")
    return float(temperature)


def _check_alpha(alpha, fn):
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{fn}: alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


# ---------------------------------------------------------------- distill ----

def _device_of(model: Module, arg: str, fn: str) -> str:
    p = next(iter(model.parameters()), None)
    if p is None:
        raise ValueError(f"{fn}: {arg} has no parameters")
    return p.device.type


def _host(a) -> np.ndarray:
    """An array, a Tensor or a list as a NumPy array (a GPU array is copied to the host)."""
    a = a.data if isinstance(a, Tensor) else a
    return backend.to_numpy(a) if backend.is_cupy_array(a) else np.asarray(a)


def _outputs(model: Module, X, batch_size: int, device: str):
    """model(X) in eval mode under no_grad, batch by batch, on ``device``; modes restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    xp = backend.get_array_module(backend.to_device(np.zeros(1), device))
    try:
        with no_grad():
            outs = [model(Tensor(backend.to_device(X[i:i + batch_size], device))).data
                    for i in range(0, len(X), batch_size)]
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return xp.concatenate(outs)


def distill(teacher: Module, student: Module, X, y=None, *, temperature: float = 4.0, alpha: float = 0.9,
            epochs: int, lr: float, batch_size: int = 64, momentum: float = 0.9, weight_decay: float = 0.0,
            shuffle: bool = True, seed=None, ignore_index: int = IGNORE_INDEX):
    """Train ``student`` to imitate ``teacher`` on ``X`` (Hinton et al. 2015), with SGD.

    The teacher runs once over X, in ``eval()`` mode under ``no_grad`` (its modes are
    restored after): its logits are the soft targets of every epoch. The student trains
    on ``distillation_loss`` (see there for the formula): KD alone when ``y`` is None,
    ``alpha * KD + (1 - alpha) * CE`` on the rows that have a label otherwise (give the
    unlabelled rows the label ``ignore_index``, -100, as torch's CrossEntropyLoss does).

    Args:
        teacher: the trained model (unchanged).
        student: the model to train, in place; its outputs must have the teacher's size.
        X: the inputs (array or Tensor, batch first), e.g. a task's unlabelled pool.
        y: None, or integer labels for the rows of X (``ignore_index`` where unknown).
        temperature: T > 0.
        alpha: weight of the soft (KD) term, in [0, 1].
        epochs, lr, batch_size, momentum, weight_decay: SGD settings (torch.optim.SGD's).
        shuffle: reshuffle the rows every epoch.
        seed: seed of the shuffling (default: tinytl's global generator).
        ignore_index: the label of unlabelled rows.

    Returns:
        ``(student, history)``: the trained student, and ``{"loss": [...]}`` with the mean
        training loss of every epoch.

    Raises:
        ValueError: temperature <= 0, alpha outside [0, 1], a student whose output size
            differs from the teacher's, bad epochs / lr / batch_size / labels.
        RuntimeError: teacher and student on different devices.
        All before any training.
    """
    fn = "distill"
    _check_module(teacher, "teacher", fn)
    _check_module(student, "student", fn)
    temperature = _check_temperature(temperature, fn)
    alpha = _check_alpha(alpha, fn)
    epochs = _check_count(epochs, "epochs", fn)
    lr = _check_positive(lr, "lr", fn)
    batch_size = _check_positive(batch_size, "batch_size", fn, integer=True)
    dev_t, dev_s = _device_of(teacher, "teacher", fn), _device_of(student, "student", fn)
    if dev_t != dev_s:
        raise RuntimeError(f"{fn}: teacher is on '{dev_t}' but student is on '{dev_s}' (move one with .to())")
    X = _host(X)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(f"{fn}: X is empty (shape {tuple(X.shape)})")
    if y is not None:
        y = _host(y)
        if y.shape != (len(X),):
            raise ValueError(f"{fn}: y must have shape ({len(X)},) to match X, got {tuple(y.shape)}")
    first_t = _outputs(teacher, X[:1], 1, dev_t)
    first_s = _outputs(student, X[:1], 1, dev_s)
    if first_t.ndim != 2 or first_s.shape != first_t.shape:
        raise ValueError(f"{fn}: the student's output has shape {tuple(first_s.shape[1:])} per row, the "
                         f"teacher's {tuple(first_t.shape[1:])}: they must match (the same classes)")
    if y is not None:
        _targets(y, len(X), first_t.shape[1], ignore_index, np, fn)

    soft = _outputs(teacher, X, max(256, batch_size), dev_t)       # the teacher, once, in eval mode
    params = [p for p in student.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{fn}: student has no trainable parameter")
    opt = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    rng = generator() if seed is None else np.random.default_rng(seed)
    history = {"loss": []}
    student.train()
    for _ in range(epochs):
        order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
        total, rows = 0.0, 0
        for i in range(0, len(X), batch_size):
            idx = order[i:i + batch_size]
            xb = Tensor(backend.to_device(X[idx], dev_s))
            tb = soft[backend.to_device(idx, dev_s)]
            yb = None if y is None else y[idx]
            loss = distillation_loss(student(xb), tb, yb, temperature=temperature, alpha=alpha,
                                     ignore_index=ignore_index)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(idx)
            rows += len(idx)
        history["loss"].append(total / rows)
    student.eval()
    return student, history
