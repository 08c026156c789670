"""The C++ kernels (tinytl.kernels.cpu, built from csrc/) against their specification, reference.py.

Random shapes come from hypothesis (batch 1 and empty batches included), in both dtypes,
with C-contiguous and strided inputs, and with ``out`` aliasing the input. SGD is also
checked against an update computed by hand for every option combination, and so is Adam. The threaded
path (large arrays) has its own cases. Arguments the binding must refuse are in
test_kernels_fuzz.py.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytl.kernels import reference as R

try:
    from tinytl.kernels import cpu as C
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"tinytl._C is not importable ({e}); build it with `pip install --no-build-isolation -e .`",
                allow_module_level=True)

DTYPES = [np.float32, np.float64]
LAYOUTS = ["c", "transposed", "strided", "reversed"]
SETTINGS = settings(max_examples=150, deadline=None)
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}

dims = st.integers(1, 40)
seeds = st.integers(0, 2**32 - 1)


def data(rng, shape, dtype, zeros=True):
    """Normal values with exact zeros and negative zeros sprinkled in (the ReLU boundary)."""
    a = rng.standard_normal(shape).astype(dtype)
    if zeros and a.size:
        a.flat[rng.integers(0, a.size, size=max(1, a.size // 8))] = 0
        a.flat[rng.integers(0, a.size, size=max(1, a.size // 16))] = -0.0
    return a


def layout(a, how):
    """The same values as ``a`` in another memory layout (a view, not C-contiguous when it can)."""
    if how == "c" or a.ndim == 0:
        return a
    if how == "transposed":
        return np.ascontiguousarray(a.T).T
    if how == "strided":
        b = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        b[..., ::2] = a
        return b[..., ::2]
    return np.ascontiguousarray(a[::-1])[::-1]


def mask_of(y):
    """The packed ReLU mask of y, computed independently of the kernels: bit j%8 (LSB first) of byte j//8."""
    n, m = y.shape
    want = np.zeros((n, (m + 7) // 8), np.uint8)
    for j in range(m):
        want[:, j // 8] |= (y[:, j] > 0).astype(np.uint8) << (j % 8)
    assert np.array_equal(want, np.packbits(y > 0, axis=1, bitorder="little"))
    return want


def bias_sum_tol(g):
    """Tolerance for g.sum(0): the reference adds rows in the input dtype, tinytl in double."""
    eps = np.finfo(g.dtype).eps
    return dict(rtol=0, atol=4 * eps * max(1, g.shape[0]) * (float(np.abs(g).max()) if g.size else 0) + 1e-30)


# ---------------------------------------------------------------- linear ----

@SETTINGS
@given(n=st.integers(0, 40), m=dims, dtype=st.sampled_from(DTYPES), relu=st.booleans(), has_bias=st.booleans(),
       how=st.sampled_from(LAYOUTS), alias=st.booleans(), seed=seeds)
def test_linear_forward_epilogue(n, m, dtype, relu, has_bias, how, alias, seed):
    rng = np.random.default_rng(seed)
    y = data(rng, (n, m), dtype)
    bias = data(rng, (m,), dtype) if has_bias else None
    want = R.linear_forward_epilogue(y, bias, relu)
    mask = np.full((n, (m + 7) // 8), 0xA5, np.uint8) if relu else None  # garbage: every byte must be written
    if alias:
        buf = y.copy()
        got = C.linear_forward_epilogue(buf, bias, relu, buf, mask)
        assert got is buf
    else:
        got = C.linear_forward_epilogue(layout(y, how), None if bias is None else layout(bias, how), relu, None, mask)
    assert got.dtype == dtype and got.shape == (n, m)
    np.testing.assert_array_equal(got, want)  # the same float operations: bit for bit
    if relu:
        np.testing.assert_array_equal(mask, mask_of(want))
        ref_mask = np.zeros_like(mask)
        np.testing.assert_array_equal(R.linear_forward_epilogue(y, bias, relu, None, ref_mask), want)
        np.testing.assert_array_equal(ref_mask, mask)


@SETTINGS
@given(n=st.integers(0, 40), m=dims, dtype=st.sampled_from(DTYPES), relu=st.booleans(), bias_grad=st.booleans(),
       how=st.sampled_from(LAYOUTS), alias=st.booleans(), seed=seeds)
def test_linear_backward_epilogue(n, m, dtype, relu, bias_grad, how, alias, seed):
    rng = np.random.default_rng(seed)
    grad = data(rng, (n, m), dtype)
    y = np.maximum(data(rng, (n, m), dtype), 0)
    mask = mask_of(y) if relu else None
    want_g, want_b = R.linear_backward_epilogue(grad, mask, relu, bias_grad)
    if relu:
        np.testing.assert_array_equal(want_g, grad * (y > 0))  # the mask stands for the output exactly
    if alias:
        buf = grad.copy()
        got_g, got_b = C.linear_backward_epilogue(buf, mask, relu, bias_grad, buf)
        assert got_g is buf
    else:
        got_g, got_b = C.linear_backward_epilogue(layout(grad, how), None if mask is None else layout(mask, how),
                                                  relu, bias_grad)
    np.testing.assert_array_equal(got_g, want_g)
    if bias_grad:
        assert got_b.dtype == dtype and got_b.shape == (m,)
        np.testing.assert_allclose(got_b, want_b, **bias_sum_tol(want_g))
    else:
        assert got_b is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_epilogues_propagate_nan_and_inf_like_the_reference(dtype):
    y = np.array([[np.nan, -np.inf, np.inf, -0.0, 0.0, -1.0, 2.0]], dtype)
    bias = np.array([0, 1, -1, 0, -0.0, 0.5, np.nan], dtype)
    for relu in (False, True):
        np.testing.assert_array_equal(C.linear_forward_epilogue(y, bias, relu), R.linear_forward_epilogue(y, bias, relu))
    grad = np.array([[np.nan, np.inf, 1, -1, np.inf, 3, -2]], dtype)
    for relu in (False, True):
        g, b = C.linear_backward_epilogue(grad, mask_of(y), relu, True)
        with np.errstate(invalid="ignore"):  # inf * 0 = nan, as in NumPy
            wg, wb = R.linear_backward_epilogue(grad, mask_of(y), relu, True)
            np.testing.assert_array_equal(wg, grad * (y > 0) if relu else grad)
        np.testing.assert_array_equal(g, wg)
        np.testing.assert_array_equal(b, wb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1024, 1024), (3, 40000), (70000, 3), (2048, 2049)])  # the last one is threaded
def test_linear_epilogues_large(dtype, shape):
    rng = np.random.default_rng(0)
    y, bias, grad = data(rng, shape, dtype), data(rng, shape[1:], dtype), data(rng, shape, dtype)
    mask = np.empty((shape[0], (shape[1] + 7) // 8), np.uint8)
    out = C.linear_forward_epilogue(y, bias, True, None, mask)
    np.testing.assert_array_equal(out, R.linear_forward_epilogue(y, bias, True))
    np.testing.assert_array_equal(mask, np.packbits(out > 0, axis=1, bitorder="little"))
    y = out
    g, b = C.linear_backward_epilogue(grad, mask, True, True)
    wg, wb = R.linear_backward_epilogue(grad, mask, True, True)
    np.testing.assert_array_equal(g, wg)
    np.testing.assert_allclose(b, wb, **bias_sum_tol(wg))
    exact = wg.astype(np.float64).sum(0)  # accumulated in double: within one rounding of the exact sum
    np.testing.assert_allclose(b, exact, rtol=0, atol=2 * np.finfo(dtype).eps * np.abs(wg).sum(0).max())
    g2, b2 = C.linear_backward_epilogue(grad, mask, True, True)
    np.testing.assert_array_equal(b, b2)  # deterministic


# ------------------------------------------------- softmax cross-entropy ----

def check_softmax(got, want, n, reduction, dtype, scale):
    (gl, gg), (wl, wg) = got, want
    assert isinstance(gl, np.ndarray) and gl.shape == () and gl.dtype == dtype and gg.dtype == dtype
    tol = TOL[dtype]
    np.testing.assert_allclose(gl, wl, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * scale)
    per = 1 / n if reduction == "mean" else 1.0
    np.testing.assert_allclose(gg, wg, rtol=tol["rtol"], atol=tol["atol"] * per)


@SETTINGS
@given(n=st.integers(1, 40), c=st.integers(1, 60), dtype=st.sampled_from(DTYPES),
       reduction=st.sampled_from(["mean", "sum"]), scale=st.sampled_from([1.0, 30.0, 1e3]),
       how=st.sampled_from(LAYOUTS), alias=st.booleans(), seed=seeds)
def test_softmax_xent(n, c, dtype, reduction, scale, how, alias, seed):
    rng = np.random.default_rng(seed)
    logits = (data(rng, (n, c), dtype, zeros=False) * dtype(scale)).astype(dtype)
    target = rng.integers(0, c, size=n).astype(np.int64)
    want = R.softmax_xent(logits, target, reduction)
    if alias:
        buf = logits.copy()
        got = C.softmax_xent(buf, target, reduction, buf)
        assert got[1] is buf
    else:
        got = C.softmax_xent(layout(logits, how), layout(target, how), reduction)
    check_softmax(got, want, n, reduction, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1024, 1000), (2, 100000), (1, 1)])
def test_softmax_xent_large_and_tiny(dtype, shape):
    rng = np.random.default_rng(1)
    logits = data(rng, shape, dtype, zeros=False)
    target = rng.integers(0, shape[1], size=shape[0])
    for reduction in ("mean", "sum"):
        check_softmax(C.softmax_xent(logits, target, reduction), R.softmax_xent(logits, target, reduction),
                      shape[0], reduction, dtype, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_extreme_logits(dtype):
    big = np.finfo(dtype).max / 4
    logits = np.array([[big, 0, -big], [-1e30, -1e30, 0], [5, 5, 5], [-np.inf, 0, 1]], dtype)
    target = np.array([0, 2, 1, 2])
    loss, grad = C.softmax_xent(logits, target, "sum")
    wl, wg = R.softmax_xent(logits, target, "sum")
    assert np.isfinite(loss) and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, wl, rtol=1e-5)
    np.testing.assert_allclose(grad, wg, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_nan_logits_give_nan_loss(dtype):
    logits = np.array([[0, np.nan, 1], [1, 2, 3]], dtype)
    loss, grad = C.softmax_xent(logits, np.array([0, 1]), "mean")
    assert np.isnan(loss) and np.isnan(grad[0]).all() and np.isfinite(grad[1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_empty_batch_raises(dtype):
    # The contract: no loss for an empty batch (functional.cross_entropy raises the same).
    with pytest.raises(ValueError, match="empty batch"):
        C.softmax_xent(np.zeros((0, 5), dtype), np.zeros(0, np.int64), "mean")


# ------------------------------------------------------------------- sgd ----

def sgd_by_hand(p, g, b, lr, mom, damp, wd, nesterov, first):
    """torch.optim.SGD's rule written out element by element, in float64."""
    p, g = p.astype(np.float64).ravel(), g.astype(np.float64).ravel()
    b = None if b is None else b.astype(np.float64).ravel()
    new_p, new_b = p.copy(), None if b is None else b.copy()
    for i in range(p.size):
        d = g[i] + wd * p[i]
        if mom != 0:
            new_b[i] = d if first else mom * b[i] + (1 - damp) * d
            d = d + mom * new_b[i] if nesterov else new_b[i]
        new_p[i] = p[i] - lr * d
    return new_p, new_b


OPTIONS = list(itertools.product([0.0, 0.9], [0.0, 0.1], [0.0, 1e-2], [False, True], [False, True]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mom,damp,wd,nesterov,first", OPTIONS)
@pytest.mark.parametrize("stream", [False, True])
def test_sgd_step_every_option(dtype, mom, damp, wd, nesterov, first, stream):
    rng = np.random.default_rng(7)
    p0, g, b0 = (rng.standard_normal(37).astype(dtype) for _ in range(3))
    p, b = p0.copy(), (b0.copy() if mom else None)
    assert C.sgd_step(p, g, b, 0.05, mom, damp, wd, nesterov, first, stream) is p
    want_p, want_b = sgd_by_hand(p0, g, b0 if mom else None, 0.05, mom, damp, wd, nesterov, first)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(p, want_p, **tol)
    if mom:
        np.testing.assert_allclose(b, want_b, **tol)
    # and bit for bit against the reference (same float operations, no FMA contraction)
    rp, rb = p0.copy(), (b0.copy() if mom else None)
    R.sgd_step(rp, g, rb, 0.05, mom, damp, wd, nesterov, first)
    np.testing.assert_array_equal(p, rp)
    if mom:
        np.testing.assert_array_equal(b, rb)


@SETTINGS
@given(shape=st.sampled_from([(), (0,), (1,), (5, 0), (3, 4), (2, 3, 5), (70000,), (300, 257)]),
       dtype=st.sampled_from(DTYPES), opts=st.sampled_from(OPTIONS), steps=st.integers(1, 3),
       lr=st.sampled_from([1e-3, 0.1, 1.0]), how=st.sampled_from(LAYOUTS), alias_grad=st.booleans(),
       stream=st.booleans(), offset=st.integers(0, 17), seed=seeds)
def test_sgd_step_many_steps(shape, dtype, opts, steps, lr, how, alias_grad, stream, offset, seed):
    """Any shape, layout of grad, option, step count and store path (plain or streaming,
    from any element offset, so whole cache lines begin anywhere) matches the reference."""
    mom, damp, wd, nesterov, _ = opts
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    p = data(rng, n + offset, dtype)[offset:].reshape(shape)     # starts `offset` elements in
    assert p.flags.c_contiguous
    rp = p.copy()
    b, rb = (np.zeros(shape, dtype), np.zeros(shape, dtype)) if mom else (None, None)
    for k in range(steps):
        if alias_grad:  # grad is the parameter itself (allowed: read before written, per element)
            R.sgd_step(rp, rp.copy(), rb, lr, mom, damp, wd, nesterov, k == 0)
            C.sgd_step(p, p, b, lr, mom, damp, wd, nesterov, k == 0, stream)
        else:
            g = data(rng, shape, dtype)
            R.sgd_step(rp, g, rb, lr, mom, damp, wd, nesterov, k == 0)
            C.sgd_step(p, layout(g, how), b, lr, mom, damp, wd, nesterov, k == 0, stream)
    np.testing.assert_array_equal(p, rp)
    if mom:
        np.testing.assert_array_equal(b, rb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stream", [False, True])
def test_sgd_step_large_is_threaded_and_exact(dtype, stream):
    rng = np.random.default_rng(3)
    n = (1 << 22) + 3
    p, g = data(rng, n, dtype), data(rng, n, dtype)
    rp, b, rb = p.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    for first in (True, False):
        C.sgd_step(p, g, b, 0.01, 0.9, 0.0, 1e-4, True, first, stream)
        R.sgd_step(rp, g, rb, 0.01, 0.9, 0.0, 1e-4, True, first)
    np.testing.assert_array_equal(p, rp)
    np.testing.assert_array_equal(b, rb)


def test_sgd_step_ignores_buf_without_momentum():
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    C.sgd_step(p, g, "anything", 0.5, 0.0, 0.0, 0.0, False, True)
    np.testing.assert_array_equal(p, 0.5)


# ------------------------------------------------------------------ adam ----

def adam_by_hand(p, g, m, v, vmax, t, lr, b1, b2, eps, wd, amsgrad, maximize, decoupled):
    """torch.optim.Adam's / AdamW's rule written out element by element, in float64."""
    p, g, m, v = (a.astype(np.float64).ravel().copy() for a in (p, g, m, v))
    vmax = None if vmax is None else vmax.astype(np.float64).ravel().copy()
    for i in range(p.size):
        gi = -g[i] if maximize else g[i]
        if decoupled:
            p[i] *= 1 - lr * wd
        else:
            gi += wd * p[i]
        m[i] = b1 * m[i] + (1 - b1) * gi
        v[i] = b2 * v[i] + (1 - b2) * gi * gi
        vh = v[i]
        if amsgrad:
            vmax[i] = max(vmax[i], v[i])
            vh = vmax[i]
        p[i] -= lr / (1 - b1 ** t) * m[i] / (np.sqrt(vh) / np.sqrt(1 - b2 ** t) + eps)
    return p, m, v, vmax


# (amsgrad, maximize, weight_decay, decoupled)
ADAM_OPTIONS = [(a, mx, wd, d) for a, mx, wd, d in itertools.product([False, True], [False, True], [0.0, 0.1],
                                                                       [False, True]) if wd or not d]


def adam_state(rng, shape, dtype):
    """(param, exp_avg, exp_avg_sq, max_exp_avg_sq) as after a few steps: v >= 0, vmax >= v mostly."""
    p, m = data(rng, shape, dtype), data(rng, shape, dtype)
    v = np.abs(data(rng, shape, dtype)) * dtype(0.1)
    vmax = v * dtype(1.5) if v.size else v.copy()
    if v.size:
        vmax.flat[::3] = v.flat[::3] * dtype(0.5)   # below v: the maximum switches there
    return p, m, v, vmax


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amsgrad,maximize,wd,decoupled", ADAM_OPTIONS)
@pytest.mark.parametrize("t", [1, 7])
def test_adam_step_every_option(dtype, amsgrad, maximize, wd, decoupled, t):
    rng = np.random.default_rng(11)
    p0, m0, v0, x0 = adam_state(rng, 41, dtype)
    g = data(rng, 41, dtype)
    p, m, v, x = p0.copy(), m0.copy(), v0.copy(), x0.copy()
    args = (t, 0.01, 0.9, 0.999, 1e-8, wd, amsgrad, maximize, decoupled)
    assert C.adam_step(p, g, m, v, x if amsgrad else None, *args) is p
    want = adam_by_hand(p0, g, m0, v0, x0 if amsgrad else None, *args)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    for got, w in zip((p, m, v, x), want):
        if w is not None:
            np.testing.assert_allclose(got, w, **tol)
    # and bit for bit against the reference (same float operations, no FMA contraction)
    r = [a.copy() for a in (p0, m0, v0, x0)]
    R.adam_step(r[0], g, r[1], r[2], r[3] if amsgrad else None, *args)
    for got, ref in zip((p, m, v, x) if amsgrad else (p, m, v), r):
        np.testing.assert_array_equal(got, ref)


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from([(), (0,), (1,), (5, 0), (3, 4), (2, 3, 5), (70000,), (300, 257)]),
       dtype=st.sampled_from(DTYPES), opts=st.sampled_from(ADAM_OPTIONS), steps=st.integers(1, 3),
       lr=st.sampled_from([1e-3, 0.1]), betas=st.sampled_from([(0.9, 0.999), (0.0, 0.5), (0.5, 0.0)]),
       how=st.sampled_from(LAYOUTS), seed=seeds)
def test_adam_step_many_steps(shape, dtype, opts, steps, lr, betas, how, seed):
    """Any shape, layout of grad, option and step count matches the reference bit for bit."""
    amsgrad, maximize, wd, decoupled = opts
    rng = np.random.default_rng(seed)
    arrays = [np.zeros(shape, dtype) for _ in range(3)]
    arrays.insert(0, data(rng, shape, dtype))
    ref = [a.copy() for a in arrays]
    for t in range(1, steps + 1):
        g = data(rng, shape, dtype)
        opts_t = (t, lr, *betas, 1e-8, wd, amsgrad, maximize, decoupled)
        R.adam_step(ref[0], g, ref[1], ref[2], ref[3] if amsgrad else None, *opts_t)
        C.adam_step(arrays[0], layout(g, how), arrays[1], arrays[2], arrays[3] if amsgrad else None, *opts_t)
    for a, b in zip(arrays, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step_large_is_threaded_and_exact(dtype):
    rng = np.random.default_rng(5)
    n = (1 << 21) + 5
    p, g = data(rng, n, dtype), data(rng, n, dtype)
    arrays = [p] + [np.zeros(n, dtype) for _ in range(3)]
    ref = [a.copy() for a in arrays]
    for t in (1, 2):
        C.adam_step(arrays[0], g, *arrays[1:], t, 1e-3, 0.9, 0.999, 1e-8, 0.01, True, False, True)
        R.adam_step(ref[0], g, *ref[1:], t, 1e-3, 0.9, 0.999, 1e-8, 0.01, True, False, True)
    for a, b in zip(arrays, ref):
        np.testing.assert_array_equal(a, b)


def test_adam_step_ignores_max_exp_avg_sq_without_amsgrad():
    p, g, m, v = np.ones(4, np.float32), np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32)
    C.adam_step(p, g, m, v, "anything", 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False)
    np.testing.assert_allclose(p, 0.9, rtol=1e-6)   # the first step moves by lr * sign(grad)


def test_module_is_a_table_of_contents():
    """The binding exposes exactly the reference's kernels, under the same names."""
    from tinytl import _C
    import inspect
    ref = [n for n, f in vars(R).items() if inspect.isfunction(f) and not n.startswith("_")]
    assert all(hasattr(_C, n) and hasattr(C, n) for n in ref)
    for n in ref:
        assert list(inspect.signature(getattr(C, n)).parameters) == list(inspect.signature(getattr(R, n)).parameters)


_THREADS_SCRIPT = """
import sys, numpy as np
from tinytl import _C
from tinytl.kernels import cpu as C
rng = np.random.default_rng(7)
z = rng.standard_normal((600, 3000)).astype(np.float32)           # softmax: threaded from ~2 rows of work
t = rng.integers(0, 3000, 600)
y = rng.standard_normal((2048, 2049)).astype(np.float32)
p = rng.standard_normal((1 << 22) + 3).astype(np.float32)
buf = np.zeros_like(p)
loss, gz = C.softmax_xent(z, t, "mean")
mask = np.empty((y.shape[0], (y.shape[1] + 7) // 8), np.uint8)
fy = C.linear_forward_epilogue(y, None, True, None, mask)
gy, gb = C.linear_backward_epilogue(y, mask, True, True)
fy = C.linear_forward_epilogue(y, gb, True)
for first in (True, False):
    C.sgd_step(p, p * 0.5, buf, 0.01, 0.9, 0.0, 1e-4, True, first)
q, m, v, vmax = p * 2, np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
for t in (1, 2):
    C.adam_step(q, p * 0.5, m, v, vmax, t, 1e-3, 0.9, 0.999, 1e-8, 0.01, True, False, False)
np.savez(sys.argv[1], threads=_C.max_threads(), loss=loss, gz=gz, mask=mask, gy=gy, gb=gb, fy=fy, p=p, buf=buf, q=q, m=m, v=v,
         vmax=vmax)
"""


def test_results_do_not_depend_on_the_number_of_threads(tmp_path):
    """TINYTL_NUM_THREADS=1 and =3 give bit-identical results on inputs large enough to split."""
    import os
    import subprocess
    import sys
    out = {}
    for n in (1, 3):
        path = tmp_path / f"t{n}.npz"
        env = dict(os.environ, TINYTL_NUM_THREADS=str(n))
        # cwd: not the checkout, whose tinytl/ (no compiled _C in a regular install) would shadow the installed one
        subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(path)], env=env, check=True, timeout=300,
                       cwd=tmp_path)
        out[n] = dict(np.load(path))
    assert int(out[1]["threads"]) == 1 and int(out[3]["threads"]) == 3
    for k in ("loss", "gz", "mask", "gy", "gb", "fy", "p", "buf", "q", "m", "v", "vmax"):
        np.testing.assert_array_equal(out[1][k], out[3][k], err_msg=k)
