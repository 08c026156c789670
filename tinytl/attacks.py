"""Adversarial attacks: how easily a small change of the input flips a model's prediction.

An attack looks for an input x' close to x (in an eps-ball of the L-inf or L2 norm) on which
the model errs. Everything here needs only the gradient of a loss with respect to the
*input*, which tinytl's autograd gives like any other gradient; the steps themselves
(sign, projection, clipping) are plain array maths on NumPy or CuPy arrays.

- ``fgsm`` (Goodfellow et al., 2015): one step of size eps along the sign of the gradient.
- ``pgd`` (Madry et al., 2018): many smaller steps, each projected back onto the eps-ball,
  from a random start in the ball; L-inf or L2.
- ``feature_pgd``: PGD on a representation instead of a loss: it pushes the penultimate
  features of a model away from the clean ones. Crafted on a *public* pretrained model, it
  attacks the models fine-tuned from it even though their heads are unknown (Wang et al.,
  USENIX Security 2018, "With Great Training Comes Great Vulnerability").
- ``random_noise``: the baseline, noise of the same norm in the same ball.
- ``robust_accuracy`` (accuracy under an attack) and ``transfer_attack`` (examples crafted on
  one model, scored on another), which reports an ``AttackResult``.

Every attack takes the model as it is and leaves it exactly as it was: it runs the model in
``eval()`` mode and restores each module's mode after, even when it raises; it computes no
parameter gradient and leaves every parameter's ``.grad``, ``requires_grad`` and freeze
count untouched (see ``_attack_mode``). Inputs are features in any units, so nothing is
clamped to [0, 1] unless ``clip=(lo, hi)`` asks for it.

The PyTorch equivalents are third-party packages (torchattacks, the Adversarial Robustness
Toolbox); the maths is the same, the defaults are written out here.

Read next: ``tinytl/transfer/robust.py`` (adversarial fine-tuning), then the demo's
``tinytl/demo/security.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import backend
from . import functional as F
from ._random import generator
from .nn.module import Module
from .tensor import Tensor, enable_grad, no_grad
from .tensor import as_array as _array

__all__ = ["fgsm", "pgd", "feature_pgd", "random_noise", "robust_accuracy", "transfer_attack", "AttackResult"]

NORMS = ("linf", "l2")

# The plain attribute a Tensor keeps requires_grad in. Parameter wraps it in a property whose
# setter counts a freeze and drops the gradient (tinytl/nn/module.py); writing the slot itself
# switches gradients off for the attack without either side effect, and writing the saved
# value back restores the parameter exactly.
_REQUIRES_GRAD = Tensor.__dict__["requires_grad"]


# ------------------------------------------------------------ the model's state ----

class _attack_mode:
    """Inside: every module of ``models`` in eval mode, no parameter requires a gradient,
    and grad mode on (an attack may be called inside ``no_grad``). On exit, even by an
    exception, each module's ``training`` flag, each parameter's ``requires_grad`` and
    ``.grad`` are put back exactly as they were (the freeze counter is never touched).

    The parameters are switched off by their plain slot, not by ``p.requires_grad = False``:
    the property would count a freeze (optimizers would drop their momentum) and drop the
    gradient. With no parameter requiring a gradient, the autograd records only what the
    input's gradient needs (a Linear keeps no input for its weight gradient) and backward
    computes nothing for the weights. Not thread-safe: another thread training the same
    model during an attack would see its parameters frozen.
    """

    def __init__(self, *models):
        self.models = models

    def __enter__(self):
        seen, self.modes, self.params = set(), [], []
        for model in self.models:
            for m in model.modules():
                if id(m) not in seen:
                    seen.add(id(m))
                    self.modes.append((m, m.training))
            for p in model.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    self.params.append((p, _REQUIRES_GRAD.__get__(p), p.grad))
        for m, _ in self.modes:
            object.__setattr__(m, "training", False)
        for p, _, _ in self.params:
            _REQUIRES_GRAD.__set__(p, False)
        self.grad_mode = enable_grad()
        self.grad_mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.grad_mode.__exit__(*exc)
        for p, req, grad in self.params:
            _REQUIRES_GRAD.__set__(p, req)
            p.grad = grad
        for m, mode in self.modes:
            object.__setattr__(m, "training", mode)
        return False


# --------------------------------------------------------------------- checks ----

def _check_model(model, fn: str, arg: str = "model") -> Module:
    if not isinstance(model, Module):
        raise TypeError(f"{fn}: {arg} must be a tinytl Module, got {type(model).__name__}")
    return model


def _number(value, arg: str, fn: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{fn}: {arg} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _count(value, arg: str, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{fn}: {arg} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_norm(norm, fn: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"{fn}: norm must be one of {NORMS}, got {norm!r}")
    return norm


def _check_clip(clip, fn: str):
    if clip is None:
        return None
    try:
        lo, hi = clip
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: clip must be None or a pair (lo, hi), got {clip!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"{fn}: clip must hold two finite numbers (lo, hi), got {clip!r}")
    if not lo < hi:
        raise ValueError(f"{fn}: clip=(lo, hi) needs lo < hi, got {clip!r}")
    return float(lo), float(hi)


def _check_seed(seed, fn: str):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"{fn}: seed must be None or an integer >= 0, got {seed!r}")
    return generator() if seed is None else np.random.default_rng(int(seed))


def _check_x(x, fn: str):
    x = _array(x, "x", fn)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: x must be a float32 or float64 array, got dtype {x.dtype}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{fn}: x must hold a batch of at least one example (shape (N, ...)), got shape "
                         f"{tuple(x.shape)}")
    return x


def _check_y(y, n: int, fn: str):
    y = _array(y, "y", fn)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: y must hold integer class labels, got dtype {y.dtype}")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{fn}: y must have shape ({n},) to match x, got {tuple(y.shape)}")
    return y


def _device_of(model, like):
    p = next(iter(model.parameters()), None)
    return backend.device_of(like) if p is None else p.device


def _logits(model, x, fn: str, shape=None):
    """The model's output on x (no graph), checked to be (N, C) logits; errors name ``fn``
    (and ``shape``, the whole input's, when x is a first row probed before an attack)."""
    try:
        with no_grad():
            out = model(Tensor(x))
    except (ValueError, TypeError, RuntimeError, IndexError) as e:
        raise type(e)(f"{fn}: the model does not accept x of shape {tuple(shape or x.shape)} and dtype "
                      f"{x.dtype}: {e}") from e
    out = out.data if isinstance(out, Tensor) else out
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"{fn}: the model must return logits of shape (N, C) = ({x.shape[0]}, C), got "
                         f"{tuple(out.shape)}")
    return out


def _check_labels(y, c: int, fn: str):
    yh = backend.to_numpy(y)
    bad = np.flatnonzero((yh < 0) | (yh >= c))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{fn}: y[{i}] = {yh[i]} is not a class index in [0, {c}) (the model has {c} outputs)")


def _check_in_clip(x, clip, fn: str):
    if clip is not None and bool(((x < clip[0]) | (x > clip[1])).any()):
        raise ValueError(f"{fn}: x has values outside clip={clip}: an adversarial example could not be both "
                         "in the eps-ball and in the clip range (clip the data first, or widen clip)")


def _like_input(x_adv, original):
    """x_adv in the form x came in: a Tensor (no graph) for a Tensor, else an array on x's device."""
    src = original.data if isinstance(original, Tensor) else original
    out = backend.to_device(x_adv, backend.device_of(src)) if (isinstance(src, np.ndarray)
                                                              or backend.is_cupy_array(src)) else x_adv
    return Tensor(out) if isinstance(original, Tensor) else out


# -------------------------------------------------------------- the maths ----

def _input_grad(model, x_adv, loss_of):
    """d loss_of(model(x_adv)) / d x_adv, as an array (zeros where the loss does not depend on x)."""
    xt = Tensor(x_adv, requires_grad=True)
    loss = loss_of(model(xt))
    if loss.requires_grad:
        loss.backward()
    return xt.grad if xt.grad is not None else backend.get_array_module(x_adv).zeros_like(x_adv)


def _norms(a, xp):
    """The L2 norm of each example (row) of ``a``, shaped to broadcast against it: (N, 1, ...)."""
    n = xp.sqrt((a.reshape(a.shape[0], -1) ** 2).sum(axis=1))
    return n.reshape((a.shape[0],) + (1,) * (a.ndim - 1))


def _direction(g, norm, xp):
    """The step direction of unit norm: sign(g) for L-inf, g / ||g||_2 per example for L2 (0 where g = 0)."""
    if norm == "linf":
        return xp.sign(g)
    n = _norms(g, xp)
    return g * xp.where(n > 0, 1.0 / xp.maximum(n, np.finfo(g.dtype).tiny), 0.0).astype(g.dtype)


def _project(x_adv, x, eps, norm, clip, xp):
    """Back onto the eps-ball around x (clamp each coordinate for L-inf; shrink each example's
    perturbation to norm eps for L2), then into clip's range when given. With x inside the
    clip range, clipping moves no coordinate further from x, so the result stays in the ball."""
    d = x_adv - x
    if norm == "linf":
        d = xp.clip(d, -eps, eps)
    else:
        n = _norms(d, xp)
        d = d * xp.where(n > eps, eps / xp.maximum(n, np.finfo(d.dtype).tiny), 1.0).astype(d.dtype)
    out = x + d
    return out if clip is None else xp.clip(out, clip[0], clip[1])


def _random_in_ball(shape, eps, norm, dtype, rng, surface: bool = False):
    """Uniform random perturbations (NumPy, float64 draws cast to ``dtype``), one per example.

    L-inf: each coordinate uniform in [-eps, eps] (uniform in the cube); on the surface,
    each coordinate -eps or +eps (a random corner). L2: a direction uniform on the sphere
    (a Gaussian vector over its norm) times a radius eps * U**(1/d), U uniform in [0, 1]
    and d the number of features per example, which is uniform in the ball (the volume
    inside radius r grows as r**d); on the surface the radius is eps.
    """
    if norm == "linf":
        if surface:
            return (eps * rng.choice(np.array([-1.0, 1.0]), size=shape)).astype(dtype)
        return rng.uniform(-eps, eps, size=shape).astype(dtype)
    n, d = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    z = rng.standard_normal((n, d))
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    r = np.full((n, 1), eps) if surface else eps * rng.uniform(0.0, 1.0, size=(n, 1)) ** (1.0 / max(d, 1))
    return (z * r).reshape(shape).astype(dtype)


def _pgd_loop(model, x, loss_of, eps, alpha, steps, norm, random_start, clip, rng, ascend):
    """The PGD iteration, shared by pgd and feature_pgd: from x (or a uniform random point of
    the ball), ``steps`` times: a step of length alpha along the gradient direction of
    ``loss_of`` (up when ``ascend``, else down), then the projection."""
    xp = backend.get_array_module(x)
    x_adv = x
    if random_start:
        delta = backend.to_device(_random_in_ball(x.shape, eps, norm, x.dtype, rng), backend.device_of(x))
        x_adv = _project(x + delta, x, eps, norm, clip, xp)
    sign = 1.0 if ascend else -1.0
    for _ in range(steps):
        g = _input_grad(model, x_adv, loss_of)
        x_adv = _project(x_adv + (sign * alpha) * _direction(g, norm, xp), x, eps, norm, clip, xp)
    return x_adv


def _xent_sum(y):
    # summed, so each example's gradient is its own loss's gradient (independent of the batch size)
    return lambda logits: F.cross_entropy(logits, y, reduction="sum")


def _prepare(model, x, y, fn, clip):
    """Checks shared by the label attacks; returns x and y on the model's device (nothing runs yet)."""
    _check_model(model, fn)
    x0 = _check_x(x, fn)
    y0 = _check_y(y, x0.shape[0], fn)
    dev = _device_of(model, x0)
    xd, yd = backend.to_device(x0, dev), backend.to_device(y0, dev)
    _check_in_clip(xd, clip, fn)
    return xd, yd.astype(np.int64, copy=False)


# ------------------------------------------------------------------ attacks ----

def fgsm(model, x, y, eps, *, clip=None, targeted: bool = False):
    """The fast gradient sign method (Goodfellow et al., 2015):
    x' = x + eps * sign(grad_x CE(model(x), y)), or x - eps * sign(...) when ``targeted``
    (then ``y`` holds the classes to push toward), clipped to ``clip`` when given.

    Args:
        model: a Module returning logits (N, C); run in eval mode, left exactly as it was.
        x: inputs (N, ...) float32/float64, a NumPy/CuPy array or a Tensor (moved to the
            model's device for the attack).
        y: integer labels (N,) in [0, C): the true classes (untargeted) or the targets.
        eps: the L-inf radius (>= 0), in the units of x.
        clip: None (default: no clamping, for features in any units) or (lo, hi); x must lie
            in it.
        targeted: minimise the loss toward ``y`` instead of maximising it.

    Returns:
        x' in the form x came in (a Tensor without graph, or an array on x's device).
        ``|x' - x| <= eps`` in every coordinate; a zero gradient coordinate is left as it is.

    torchattacks' ``FGSM(model, eps)`` is the same step but always clamps to [0, 1].
    """
    fn = "fgsm"
    eps = _number(eps, "eps", fn)
    clip = _check_clip(clip, fn)
    xd, yd = _prepare(model, x, y, fn, clip)
    with _attack_mode(model):
        _check_labels(yd, _logits(model, xd[:1], fn, xd.shape).shape[1], fn)
        xp = backend.get_array_module(xd)
        g = _input_grad(model, xd, _xent_sum(yd))
        x_adv = xd + (-eps if targeted else eps) * xp.sign(g)     # in the ball by construction
        if clip is not None:
            x_adv = xp.clip(x_adv, clip[0], clip[1])
    return _like_input(x_adv, x)


def pgd(model, x, y, eps, alpha, steps, *, norm: str = "linf", random_start: bool = True, clip=None,
        targeted: bool = False, seed=None):
    """Projected gradient descent (Madry et al., 2018): from a random point of the eps-ball
    around x, ``steps`` times

        x' <- Proj_{||x' - x|| <= eps}( x' + alpha * dir(grad_x' CE(model(x'), y)) )

    with dir(g) = sign(g) for ``norm="linf"`` and g / ||g||_2 (per example; 0 where g = 0)
    for ``norm="l2"``; the projection clamps each coordinate of x' - x to [-eps, eps]
    (L-inf) or scales an example's x' - x down to norm eps when it is longer (L2), and is
    followed by clamping to ``clip`` when given. ``targeted`` steps down the loss toward
    ``y`` instead of up. The last iterate is returned.

    The random start is uniform in the ball: each coordinate uniform in [-eps, eps] for
    L-inf; for L2 a uniform direction (a normalised Gaussian vector) times eps * U**(1/d),
    U uniform in [0, 1], d the features per example. It is drawn with NumPy in float64 and
    cast to x's dtype.

    Args:
        model, x, y, clip, targeted: as in ``fgsm``.
        eps: the radius (>= 0) in ``norm``, in the units of x.
        alpha: the step length (> 0); Madry et al. use 2.5 * eps / steps.
        steps: the number of steps (>= 1).
        norm: "linf" (default) or "l2".
        random_start: start from a random point of the ball (default) or from x.
        seed: None (tinytl's global generator, reseeded by ``tl.manual_seed``) or an integer
            for the random start.

    Returns:
        x' in the form x came in, within the ball (up to rounding) and the clip range.

    torchattacks' ``PGD(model, eps, alpha, steps, random_start)`` is the L-inf case (it
    clamps to [0, 1] always); ``PGDL2`` the L2 one, with another random start.
    """
    fn = "pgd"
    eps = _number(eps, "eps", fn)
    alpha = _number(alpha, "alpha", fn, positive=True)
    steps = _count(steps, "steps", fn)
    norm = _check_norm(norm, fn)
    clip = _check_clip(clip, fn)
    rng = _check_seed(seed, fn)
    xd, yd = _prepare(model, x, y, fn, clip)
    with _attack_mode(model):
        _check_labels(yd, _logits(model, xd[:1], fn, xd.shape).shape[1], fn)
        x_adv = _pgd_loop(model, xd, _xent_sum(yd), eps, alpha, steps, norm, bool(random_start), clip, rng,
                          ascend=not targeted)
    return _like_input(x_adv, x)


def _feature_extractor(model, feature_layer, fn: str):
    """phi: the model's penultimate representation (every layer but the last of a Sequential),
    its first ``feature_layer`` layers (an int), or ``feature_layer`` itself (a Module)."""
    if isinstance(feature_layer, Module):
        return feature_layer
    layers = list(model) if hasattr(model, "__iter__") and hasattr(model, "__getitem__") else None
    if layers is None:
        raise TypeError(f"{fn}: feature_layer must be a Module (phi) when the model is not a Sequential "
                        f"(got a {type(model).__name__})")
    if feature_layer is None:
        k = len(layers) - 1
    elif isinstance(feature_layer, (int, np.integer)) and not isinstance(feature_layer, bool):
        k = int(feature_layer)
    else:
        raise TypeError(f"{fn}: feature_layer must be None, an int or a Module, got {type(feature_layer).__name__}")
    if not 1 <= k <= len(layers):
        raise ValueError(f"{fn}: feature_layer must keep between 1 and {len(layers)} layers of the model, got {k}")
    return model[:k]


def feature_pgd(model, x, y, eps, alpha=None, steps: int = 10, *, feature_layer=None, norm: str = "linf",
                clip=None, seed=None):
    """PGD on features (after Wang et al., 2018): maximise ||phi(x') - phi(x)||_2^2 over the
    eps-ball, phi the model's penultimate representation.

    It needs no labels and no head: crafted on a public pretrained network, it disturbs the
    features every model fine-tuned from it starts with, whatever head they put on top.
    The steps and projection are ``pgd``'s; the start is always random (uniform in the
    ball, as in ``pgd``), since the gradient of the objective is zero at x' = x.

    Args:
        model: the (source) Module; run in eval mode, left exactly as it was.
        x: inputs (N, ...), as in ``pgd``.
        y: ignored, may be None (accepted so that ``feature_pgd`` can stand in for ``pgd`` as
            an attack ``(model, x, y) -> x'``); if given, it must have shape (N,).
        eps, alpha, steps, norm, clip, seed: as in ``pgd`` (alpha defaults to 2.5 * eps / steps).
        feature_layer: None (a Sequential's layers but the last), an int k (its first k
            layers), or a Module computing phi.

    Returns:
        x' in the form x came in.
    """
    fn = "feature_pgd"
    _check_model(model, fn)
    eps = _number(eps, "eps", fn)
    steps = _count(steps, "steps", fn)
    alpha = 2.5 * eps / steps if alpha is None else _number(alpha, "alpha", fn, positive=True)
    if alpha == 0:                       # eps = 0: nowhere to go
        alpha = 1.0
    norm = _check_norm(norm, fn)
    clip = _check_clip(clip, fn)
    rng = _check_seed(seed, fn)
    x0 = _check_x(x, fn)
    if y is not None:
        _check_y(y, x0.shape[0], fn)
    phi = _check_model(_feature_extractor(model, feature_layer, fn), fn, "feature_layer")
    xd = backend.to_device(x0, _device_of(model, x0))
    _check_in_clip(xd, clip, fn)
    with _attack_mode(model, phi):
        try:
            with no_grad():
                clean = Tensor(phi(Tensor(xd)).data)
        except (ValueError, TypeError, RuntimeError, IndexError) as e:
            raise type(e)(f"{fn}: the model does not accept x of shape {tuple(xd.shape)}: {e}") from e

        def loss_of(feats):
            d = feats - clean
            return (d * d).sum()
        x_adv = _pgd_loop(phi, xd, loss_of, eps, alpha, steps, norm, True, clip, rng, ascend=True)
    return _like_input(x_adv, x)


def random_noise(model, x, y, eps, *, norm: str = "linf", surface: bool = True, clip=None, seed=None):
    """Random noise in the eps-ball: the baseline an attack must beat.

    By default on the ball's surface, i.e. of exactly the norm an attack of radius eps may
    use: for L-inf each coordinate +eps or -eps at random (the size of an FGSM step, and
    of most coordinates of a PGD perturbation); for L2 a uniform direction of length eps.
    ``surface=False`` draws uniformly inside the ball (``pgd``'s random start). Clipped to
    ``clip`` when given.

    Args:
        model: ignored but checked (a Module), as is y (shape (N,)): the signature of an
            attack ``(model, x, y) -> x'``, so it plugs into ``robust_accuracy`` and
            ``transfer_attack``.
        x, eps, norm, clip, seed: as in ``pgd``.
        surface: on the surface (default) or inside the ball.

    Returns:
        x + noise in the form x came in.
    """
    fn = "random_noise"
    _check_model(model, fn)
    eps = _number(eps, "eps", fn)
    norm = _check_norm(norm, fn)
    clip = _check_clip(clip, fn)
    rng = _check_seed(seed, fn)
    x0 = _check_x(x, fn)
    _check_y(y, x0.shape[0], fn)
    _check_in_clip(x0, clip, fn)
    xp = backend.get_array_module(x0)
    noise = backend.to_device(_random_in_ball(x0.shape, eps, norm, x0.dtype, rng, surface=bool(surface)),
                              backend.device_of(x0))
    return _like_input(_project(x0 + noise, x0, eps, norm, clip, xp), x)


# ------------------------------------------------------------- evaluation ----

def _check_batch_size(batch_size, fn):
    return _count(batch_size, "batch_size", fn)


def _scores(xb, yb, scorers, fn):
    """Per example of the batch (NumPy bool): does each of ``scorers`` classify xb right?"""
    out = []
    for scorer in scorers:
        xs = backend.to_device(xb, _device_of(scorer, xb))
        with _attack_mode(scorer):
            logits = _logits(scorer, xs, fn)
        _check_labels(yb, logits.shape[1], fn)
        out.append(backend.to_numpy(logits.argmax(axis=1)) == backend.to_numpy(yb))
    return out


def _crafted(craft, crafter, xb, yb, fn):
    x_adv = craft(crafter, xb, yb)
    x_adv = x_adv.data if isinstance(x_adv, Tensor) else x_adv
    if tuple(x_adv.shape) != tuple(xb.shape):
        raise ValueError(f"{fn}: the attack returned shape {tuple(x_adv.shape)} for a batch of shape "
                         f"{tuple(xb.shape)}")
    return x_adv


def robust_accuracy(model, X, y, attack=None, batch_size: int = 256) -> float:
    """Accuracy of ``model`` on ``attack(model, x, y)`` for each batch of (X, y).

    Args:
        model: the Module (scored in eval mode, left as it was).
        X, y: inputs (N, ...) and integer labels (N,).
        attack: a callable ``(model, x, y) -> x'``, e.g.
            ``functools.partial(tl.attacks.pgd, eps=0.3, alpha=0.03, steps=20)``; None
            scores the clean inputs.
        batch_size: examples per attack call (bounds the memory).

    Returns:
        The fraction of examples classified correctly, in [0, 1].
    """
    fn = "robust_accuracy"
    _check_model(model, fn)
    if attack is not None and not callable(attack):
        raise TypeError(f"{fn}: attack must be a callable (model, x, y) -> x_adv or None, got "
                        f"{type(attack).__name__}")
    batch_size = _check_batch_size(batch_size, fn)
    X = _check_x(X, fn)
    y = _check_y(y, X.shape[0], fn)
    right = 0
    for i in range(0, X.shape[0], batch_size):
        xb, yb = X[i:i + batch_size], y[i:i + batch_size]
        if attack is not None:
            xb = _crafted(attack, model, xb, yb, fn)
        right += int(_scores(xb, yb, [model], fn)[0].sum())
    return right / X.shape[0]


@dataclass
class AttackResult:
    """What ``transfer_attack`` measured on the target model.

    Attributes:
        clean_accuracy: accuracy on the clean inputs.
        adversarial_accuracy: accuracy on the inputs crafted on the source.
        success_rate: among the examples the target classified correctly when clean, the
            fraction it misclassifies once attacked (nan when it got none right).
        n: examples; n_clean_correct: how many the target got right when clean.
        attack: what crafted them; eps, norm: the ball.
        clean_correct, adversarial_correct: per example (NumPy bool arrays), for paired comparisons.
    """
    clean_accuracy: float
    adversarial_accuracy: float
    success_rate: float
    n: int
    n_clean_correct: int
    attack: str
    eps: float | None
    norm: str | None
    clean_correct: np.ndarray = field(repr=False)
    adversarial_correct: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        """The scalar fields, JSON-ready (no arrays)."""
        return {k: getattr(self, k) for k in ("clean_accuracy", "adversarial_accuracy", "success_rate", "n",
                                              "n_clean_correct", "attack", "eps", "norm")}


def transfer_attack(source_model, target_model, X, y, attack="features", eps=None, *, alpha=None,
                    steps: int = 10, norm: str = "linf", feature_layer=None, clip=None, seed=None,
                    batch_size: int = 256):
    """Craft adversarial examples on ``source_model``, score ``target_model`` on them.

    The attacker of a fine-tuned model often has its public pretrained source but not the
    model itself (Wang et al., 2018). With another head on the target (its classes are not
    the source's), the attack cannot use the labels: ``attack="features"`` (the default)
    runs ``feature_pgd`` on the source, pushing its penultimate features away from the
    clean ones. When source and target share the label space, ``"pgd"`` or ``"fgsm"``
    attack the source's loss on ``y`` itself. A matching output size does not mean the
    same classes (the demo's source and target both have 5, different digits), so the
    choice is not guessed.

    success_rate = #{i : target right on x_i, wrong on x'_i} / #{i : target right on x_i}:
    how often the attack flips a correct prediction (nan when the target got none right).

    Several targets may be given at once (a dict name -> Module): the examples are crafted
    once and sent to each, as an attacker with the public source would against every
    model fine-tuned from it.

    Args:
        source_model: the Module the attacker has (run in eval mode, left as it was).
        target_model: the Module attacked (only scored), or a dict name -> Module.
        X, y: inputs (N, ...) and the target's integer labels (N,).
        attack: "features" (default), "pgd", "fgsm", or a callable ``(model, x, y) -> x'``
            run on the source (e.g. ``functools.partial(random_noise, eps=...)``).
        eps: the radius (required unless attack is a callable).
        alpha, steps, norm, clip, seed: the PGD settings (alpha defaults to 2.5 * eps / steps).
        feature_layer: phi for "features" (see ``feature_pgd``).
        batch_size: examples per attack call.

    Returns:
        An ``AttackResult`` (``.to_dict()`` for JSON); a dict name -> AttackResult for a dict
        of targets.
    """
    fn = "transfer_attack"
    _check_model(source_model, fn, "source_model")
    many = isinstance(target_model, dict)
    targets = dict(target_model) if many else {"target": target_model}
    if not targets:
        raise ValueError(f"{fn}: target_model is an empty dict")
    for k, m in targets.items():
        _check_model(m, fn, f"target_model[{k!r}]" if many else "target_model")
    batch_size = _check_batch_size(batch_size, fn)
    X = _check_x(X, fn)
    y = _check_y(y, X.shape[0], fn)
    if callable(attack):
        craft, name = attack, getattr(attack, "__name__", None) or getattr(getattr(attack, "func", None),
                                                                          "__name__", "custom")
        eps_f = None if eps is None else _number(eps, "eps", fn)
    else:
        if attack not in ("features", "pgd", "fgsm"):
            raise ValueError(f"{fn}: attack must be 'features', 'pgd', 'fgsm' or a callable, got {attack!r}")
        if eps is None:
            raise TypeError(f"{fn}: eps is required for attack={attack!r}")
        eps_f = _number(eps, "eps", fn)
        steps = _count(steps, "steps", fn)
        step = 2.5 * eps_f / steps if alpha is None else _number(alpha, "alpha", fn, positive=True)
        step = step if step > 0 else 1.0        # eps = 0: any step is projected away
        _check_norm(norm, fn)
        _check_clip(clip, fn)
        _check_seed(seed, fn)
        if attack == "features":
            _feature_extractor(source_model, feature_layer, fn)
            craft = lambda m, xb, yb: feature_pgd(m, xb, None, eps_f, step, steps, feature_layer=feature_layer,
                                                   norm=norm, clip=clip, seed=seed)
        elif attack == "pgd":
            craft = lambda m, xb, yb: pgd(m, xb, yb, eps_f, step, steps, norm=norm, clip=clip, seed=seed)
        else:
            if norm != "linf":
                raise ValueError(f"{fn}: attack='fgsm' is an L-inf attack, got norm={norm!r}")
            craft = lambda m, xb, yb: fgsm(m, xb, yb, eps_f, clip=clip)
        name = attack
    n, models = X.shape[0], list(targets.values())
    clean = [np.empty(n, dtype=bool) for _ in models]
    adv = [np.empty(n, dtype=bool) for _ in models]
    for i in range(0, n, batch_size):                  # each batch crafted once, scored on every target
        xb, yb = X[i:i + batch_size], y[i:i + batch_size]
        x_adv = _crafted(craft, source_model, xb, yb, fn)
        for j, (c, a) in enumerate(zip(_scores(xb, yb, models, fn), _scores(x_adv, yb, models, fn))):
            clean[j][i:i + batch_size], adv[j][i:i + batch_size] = c, a
    out = {}
    for k, c, a in zip(targets, clean, adv):
        n_ok = int(c.sum())
        out[k] = AttackResult(clean_accuracy=float(c.mean()), adversarial_accuracy=float(a.mean()),
                              success_rate=float((c & ~a).sum() / n_ok) if n_ok else float("nan"),
                              n=int(n), n_clean_correct=n_ok, attack=name, eps=eps_f,
                              norm=None if callable(attack) else norm, clean_correct=c, adversarial_correct=a)
    return out if many else out["target"]
