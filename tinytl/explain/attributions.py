"""What a model looks at: attributions of a prediction to the input, through the autograd.

Each method gives, for each input value, how much it counts for the score f_t(x) of the class
t (the logit, before any softmax):

- ``saliency``: |df_t/dx| (Simonyan et al., 2014); ``abs=False`` keeps the sign.
- ``input_x_gradient``: x * df_t/dx (Shrikumar et al., 2016).
- ``integrated_gradients``: (x - x') * integral_0^1 df_t/dx(x' + a (x - x')) da (Sundararajan
  et al., 2017), by a quadrature rule; its *completeness* axiom (the attributions sum to
  f_t(x) - f_t(x')) is checkable: ``return_delta=True`` returns the gap per example.
- ``smoothgrad``: the mean of another method over noisy copies of the input (Smilkov et al., 2017).

The gradients are input gradients computed by ``Tensor.backward`` on a whole batch at once
(the examples of a batch do not interact in eval mode), never by finite differences. The
model runs in eval mode, its training flags are restored after, and its parameters'
``.grad`` are left exactly as they were. The names and defaults follow Captum
(``captum.attr.Saliency``, ``InputXGradient``, ``IntegratedGradients``, ``NoiseTunnel``),
except for the trapezoid rule (see ``quadrature``).

Read next: ``tinytl/explain/similarity.py``; ``docs/transfer.md`` ("Explaining the transfer").
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..nn import Module
from ..tensor import Tensor, as_array, enable_grad, no_grad

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


# --------------------------------------------------------------- quadrature ----

def quadrature(method: str = "gausslegendre", steps: int = 50):
    """The nodes a_k in [0, 1] and weights w_k with integral_0^1 g(a) da ~ sum_k w_k g(a_k).

    - "gausslegendre": the Gauss-Legendre rule moved to [0, 1]: exact for polynomials of
      degree <= 2 steps - 1 (Captum's default, and tinytl's).
    - "riemann_left", "riemann_right", "riemann_middle": a_k = k/n for k = 0..n-1, k = 1..n,
      or k + 1/2; w_k = 1/n.
    - "riemann_trapezoid": the trapezoid rule on n = ``steps`` equally spaced nodes
      a_k = k/(n-1), k = 0..n-1 (both ends included), h = 1/(n-1), weights h/2, h, ..., h, h/2:
      they sum to 1 and the rule integrates every linear g exactly. (Captum's weights for the
      same nodes are 1/(2n), 1/n, ..., 1/(2n), which sum to (n-1)/n: it integrates
      (n-1)/n g. tinytl does not copy that.) Needs steps >= 2.

    Returns:
        (nodes, weights), two float64 NumPy arrays of length ``steps``.
    """
    return _quadrature(method, steps, "quadrature")


def _quadrature(method, steps, fn: str):
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {METHODS}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{fn}: steps must be an integer >= 1, got {steps!r}")
    n = int(steps)
    if method == "gausslegendre":
        t, w = np.polynomial.legendre.leggauss(n)
        return (t + 1) / 2, w / 2
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError(f"{fn}: the trapezoid rule needs steps >= 2 (both ends), got {n}")
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return np.linspace(0.0, 1.0, n), w
    k = np.arange(n, dtype=np.float64)
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (k + offset) / n, np.full(n, 1.0 / n)


# ----------------------------------------------------------------- helpers ----

class _AttributionMode:
    """Eval mode and grad mode on; every module's training flag and every parameter's .grad
    as they were, after."""

    def __init__(self, model: Module, fn: str):
        if not isinstance(model, Module):
            raise TypeError(f"{fn}: model must be a tinytl Module, got {type(model).__name__}")
        self.model = model
        self.modes = [(m, m.training) for m in model.modules()]
        self.grads = [(p, p.grad) for p in model.parameters()]

    def __enter__(self):
        self._grad = enable_grad()
        self._grad.__enter__()
        self.model.eval()
        return self

    def __exit__(self, *exc):
        for m, mode in self.modes:
            object.__setattr__(m, "training", mode)
        for p, g in self.grads:
            p.grad = g
        self._grad.__exit__(*exc)
        return False


def _inputs(model: Module, x, fn: str):
    """(x as a batch on the model's device and in its dtype, whether x was one example)."""
    if not isinstance(model, Module):
        raise TypeError(f"{fn}: model must be a tinytl Module, got {type(model).__name__}")
    x = as_array(x, "x", fn)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: x must hold numbers, got dtype {x.dtype}")
    if x.ndim == 0 or x.size == 0:
        raise ValueError(f"{fn}: x must be one example (features,) or a batch (N, features...), "
                         f"got shape {tuple(x.shape)}")
    p = next(iter(model.parameters()), None)
    dtype = p.dtype if p is not None else (x.dtype if x.dtype.kind == "f" else np.dtype(np.float32))
    device = p.device if p is not None else backend.device_of(x)
    single = x.ndim == 1
    x = backend.to_device(x, device).astype(dtype, copy=False)
    return (x[None] if single else x), single


def _scores(model: Module, x, fn: str) -> Tensor:
    out = model(x)
    if not isinstance(out, Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{fn}: the model must return scores of shape (N, classes), got {shape}")
    return out


def _targets(target, scores, n: int, fn: str):
    """The class of each example, as an int64 array on the scores' device: ``target`` (an int,
    or one per example), or each example's predicted class when None."""
    xp = backend.get_array_module(scores)
    c = scores.shape[1]
    if target is None:
        return scores.argmax(axis=1).astype(np.int64)
    if isinstance(target, Tensor):
        target = target.data
    t = backend.to_numpy(target) if backend.is_cupy_array(target) else np.asarray(target)
    if t.dtype.kind not in "iu" or t.ndim > 1:
        raise TypeError(f"{fn}: target must be a class index (int) or one per example, got "
                        f"{'dtype ' + str(t.dtype) if t.dtype.kind not in 'iu' else 'shape ' + str(t.shape)}")
    t = np.broadcast_to(t, (n,)) if t.ndim == 0 else t
    if t.shape != (n,):
        raise ValueError(f"{fn}: target must be one class per example ({n}), got {t.shape[0]}")
    bad = np.flatnonzero((t < 0) | (t >= c))
    if bad.size:
        raise IndexError(f"{fn}: target {int(t[bad[0]])} is out of range for a model with {c} classes "
                         f"(expected 0 <= target < {c})")
    return xp.asarray(t.astype(np.int64))


def _grad_and_score(model: Module, x, t, fn: str):
    """d f_t(x)/dx for every row of x (one backward of sum_i f_{t_i}(x_i)), and f_t(x)."""
    xt = Tensor(x, requires_grad=True)
    out = _scores(model, xt, fn)
    xp = backend.get_array_module(out.data)
    rows = xp.arange(out.shape[0])
    seed = xp.zeros_like(out.data)
    seed[rows, t] = 1
    out.backward(seed)
    g = xt.grad if xt.grad is not None else xp.zeros_like(x)
    return g, out.data[rows, t]


def _resolve(model, x, target, fn):
    """x as a batch, its targets, and whether x was a single example (the model in eval)."""
    x, single = _inputs(model, x, fn)
    with no_grad():
        scores = _scores(model, Tensor(x), fn).data        # the class count (and argmax for None)
    return x, _targets(target, scores, x.shape[0], fn), single


def _out(a, single: bool) -> np.ndarray:
    a = backend.to_numpy(a)
    return a[0] if single else a


# ---------------------------------------------------------------- methods ----

def saliency(model: Module, x, target=None, abs: bool = True) -> np.ndarray:
    """The gradient of the class score with respect to the input: |d f_t(x) / dx|.

    Equivalent: ``captum.attr.Saliency(model).attribute(x, target, abs=abs)``.

    Args:
        model: the Module; it must return scores (N, classes).
        x: one example (features,) or a batch (N, ...): array or Tensor; moved to the model's
            device and dtype.
        target: the class to explain: an int, one per example, or None (each example's
            predicted class).
        abs: take the absolute value (Captum's default); False keeps the sign.

    Returns:
        A NumPy array of x's shape.

    Raises:
        IndexError: a target out of range; TypeError/ValueError: a bad x or target.
    """
    fn = "saliency"
    with _AttributionMode(model, fn):
        x, t, single = _resolve(model, x, target, fn)
        g, _ = _grad_and_score(model, x, t, fn)
    xp = backend.get_array_module(g)
    return _out(xp.abs(g) if abs else g, single)


def input_x_gradient(model: Module, x, target=None) -> np.ndarray:
    """x * d f_t(x) / dx, elementwise.

    Equivalent: ``captum.attr.InputXGradient(model).attribute(x, target)``.
    Args and returns as in ``saliency``.
    """
    fn = "input_x_gradient"
    with _AttributionMode(model, fn):
        x, t, single = _resolve(model, x, target, fn)
        g, _ = _grad_and_score(model, x, t, fn)
    return _out(x * g, single)


def _baseline(baseline, x, single: bool, fn: str):
    xp = backend.get_array_module(x)
    if baseline is None:
        return xp.zeros_like(x)
    if isinstance(baseline, (int, float, np.integer, np.floating)) and not isinstance(baseline, bool):
        return xp.full_like(x, float(baseline))
    b = baseline.data if isinstance(baseline, Tensor) else baseline
    if not (isinstance(b, np.ndarray) or backend.is_cupy_array(b)):
        try:
            b = np.asarray(b)
        except Exception:
            raise TypeError(f"{fn}: baseline must be None, a number or an array, got {type(baseline).__name__}") from None
    if b.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: baseline must hold numbers, got dtype {b.dtype}")
    shape = tuple(b.shape)
    one, batch = tuple(x.shape[1:]), tuple(x.shape)
    if shape == one:
        b = b[None]
    elif shape != batch or single:
        expect = f"{one}" if single else f"{one} (one for every example) or {batch}"
        raise ValueError(f"{fn}: baseline must have shape {expect}, got {shape}")
    b = backend.to_device(b, backend.device_of(x)).astype(x.dtype, copy=False)
    return xp.broadcast_to(b, x.shape)


def integrated_gradients(model: Module, x, target=None, baseline=None, steps: int = 50,
                         method: str = "gausslegendre", return_delta: bool = False, batch_size=None):
    """Integrated gradients: (x - x') * integral_0^1 d f_t(x' + a (x - x')) / dx da.

    The integral along the straight path from the baseline x' to x is approximated by
    ``quadrature(method, steps)``: IG ~ (x - x') * sum_k w_k grad f_t(x' + a_k (x - x')).
    Completeness (Sundararajan et al., 2017): sum(IG) = f_t(x) - f_t(x'); the gap
    ``delta = sum(IG) - (f_t(x) - f_t(x'))``, per example, measures the quadrature's error.

    Equivalent: ``captum.attr.IntegratedGradients(model).attribute(x, baselines, target,
    n_steps=steps, method=method, internal_batch_size=batch_size,
    return_convergence_delta=return_delta)``; for "riemann_trapezoid" tinytl's weights sum to
    1 where Captum's sum to (n-1)/n (see ``quadrature``).

    Args:
        model, x, target: as in ``saliency`` (target None: each example's predicted class at x).
        baseline: x', None (zeros), a number, one input (x.shape[1:]) for every example, or one
            per example (x.shape).
        steps: the number of quadrature nodes (>= 1; >= 2 for the trapezoid rule).
        method: "gausslegendre" (default), "riemann_trapezoid", "riemann_left",
            "riemann_right" or "riemann_middle".
        return_delta: also return the completeness gap per example.
        batch_size: rows (path points) per forward and backward pass; None: all at once.

    Returns:
        The attributions (a NumPy array of x's shape), and, with ``return_delta``, the deltas
        (a NumPy array (N,), or a float for a single example).
    """
    fn = "integrated_gradients"
    alphas, weights = _quadrature(method, steps, fn)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"{fn}: batch_size must be a positive integer or None, got {batch_size!r}")
    with _AttributionMode(model, fn):
        x, t, single = _resolve(model, x, target, fn)
        base = _baseline(baseline, x, single, fn)
        xp = backend.get_array_module(x)
        n, steps = x.shape[0], len(alphas)
        diff = x - base
        total = xp.zeros_like(x)
        bs = n * steps if batch_size is None else int(batch_size)
        a_dev = backend.to_device(alphas.astype(x.dtype), backend.device_of(x))
        w_dev = backend.to_device(weights.astype(x.dtype), backend.device_of(x))
        tail = (1,) * (x.ndim - 1)
        if bs >= n:                                   # whole steps per pass
            per = bs // n
            for k0 in range(0, steps, per):
                a = a_dev[k0:k0 + per].reshape((-1, 1) + tail)
                pts = (base[None] + a * diff[None]).reshape((-1,) + x.shape[1:])
                g, _ = _grad_and_score(model, pts, xp.tile(t, a.shape[0]), fn)
                w = w_dev[k0:k0 + per].reshape((-1, 1) + tail)
                total += (w * g.reshape((a.shape[0],) + x.shape)).sum(axis=0)
        else:                                         # part of the examples per pass
            for k in range(steps):
                for i0 in range(0, n, bs):
                    pts = base[i0:i0 + bs] + a_dev[k] * diff[i0:i0 + bs]
                    g, _ = _grad_and_score(model, pts, t[i0:i0 + bs], fn)
                    total[i0:i0 + bs] += w_dev[k] * g
        attr = diff * total
        if not return_delta:
            return _out(attr, single)
        with no_grad():
            rows = xp.arange(n)
            fx = _scores(model, Tensor(x), fn).data[rows, t]
            fb = _scores(model, Tensor(xp.ascontiguousarray(base)), fn).data[rows, t]
        delta = attr.reshape(n, -1).astype(np.float64).sum(axis=1) - (fx.astype(np.float64) - fb.astype(np.float64))
    delta = backend.to_numpy(delta)
    return _out(attr, single), (float(delta[0]) if single else delta)


def smoothgrad(fn, x, target=None, samples: int = 5, stdev: float = 1.0, seed: int = 0, **kwargs) -> np.ndarray:
    """SmoothGrad (Smilkov et al., 2017): the mean of an attribution over noisy inputs,
    (1/S) sum_s fn(x + eps_s, target), eps_s ~ N(0, stdev^2) elementwise.

    Equivalent: ``captum.attr.NoiseTunnel(method).attribute(x, nt_type="smoothgrad",
    nt_samples=samples, stdevs=stdev, target=target)`` (Captum's defaults: 5 samples, stdev 1;
    stdev is in the input's units: for inputs of unit scale, Smilkov et al. suggest 10-20% of
    the input's range).

    Args:
        fn: an attribution with the model bound, called as ``fn(x, target, **kwargs)``: e.g.
            ``functools.partial(tl.explain.saliency, model)`` or
            ``lambda x, t: tl.explain.integrated_gradients(model, x, t, steps=32)``. When it
            returns a tuple (``return_delta=True``), its first item is used.
        x: one example or a batch, as in ``saliency``.
        target: the class to explain (give it: with None each noisy copy would be explained
            for its own predicted class).
        samples: how many noisy copies (>= 1).
        stdev: the noise's standard deviation (>= 0).
        seed: the noise's seed (a NumPy Generator of its own: tinytl's global one is untouched).

    Returns:
        A NumPy array of x's shape.
    """
    name = "smoothgrad"
    if not callable(fn):
        raise TypeError(f"{name}: fn must be an attribution function, called as fn(x, target), "
                        f"got {type(fn).__name__}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"{name}: samples must be an integer >= 1, got {samples!r}")
    if (isinstance(stdev, bool) or not isinstance(stdev, (int, float, np.integer, np.floating))
            or not math.isfinite(stdev) or stdev < 0):
        raise ValueError(f"{name}: stdev must be a number >= 0, got {stdev!r}")
    x = x.data if isinstance(x, Tensor) else x
    if not (isinstance(x, np.ndarray) or backend.is_cupy_array(x)):
        x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.size == 0:
        raise ValueError(f"{name}: x must be a non-empty numeric array, got dtype {x.dtype}, shape {x.shape}")
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
    rng = np.random.default_rng(seed)
    total = None
    for _ in range(int(samples)):
        noise = backend.to_device(rng.normal(0.0, float(stdev), size=x.shape).astype(dtype), backend.device_of(x))
        a = fn(x.astype(dtype, copy=False) + noise, target, **kwargs)
        a = a[0] if isinstance(a, tuple) else a
        a = backend.to_numpy(a.data if isinstance(a, Tensor) else a).astype(np.float64)
        total = a if total is None else total + a
    return (total / samples).astype(dtype)
