"""The CUDA kernels (tinytl.kernels.cuda, sources in tinytl/kernels/cuda/) against their
specification, reference.py: on a GPU where there is one, else on the CPU.

The same standard as test_kernels.py for the C++ twins: random shapes from hypothesis
(empty and one-row batches included), both dtypes, C-contiguous and strided inputs,
``out`` aliasing the input, NaN/inf, sizes that reach every launch configuration (one
and several strips of rows for the bias gradient; a warp or a block per softmax row),
determinism (the same bits twice), and bad arguments (the CPU kernels' exceptions and
messages, nothing written). Where the float operations are the same as NumPy's
(the linear epilogues, SGD, Adam) the results must match bit for bit.

Where CuPy sees a GPU, ``cp`` is CuPy. Elsewhere (CI) it is ``emucupy.make_cupy()``: the
same .cu files, compiled with g++ and run on the CPU by tests/emu/cuda_on_cpu.h (threads
as fibers, barriers and warp shuffles honoured, out-of-bounds writes and divergent
barriers caught, the thread order changed from launch to launch to expose races). The
emulator cannot tell how fast a kernel is, nor what NVRTC's math library returns in the
last bits; the few tests that need a real GPU say so and are skipped there, and the
largest shapes are cut down (``big``), keeping every launch configuration.
What runs without either (nvcc compiles, the launches against the kernels' signatures)
is in test_cuda_compile.py.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import emucupy
from tinytl import backend

ON_GPU = backend.cuda_is_available()
if ON_GPU:
    import cupy as cp
elif emucupy.compiler() is None:
    pytest.skip("no CUDA GPU, and no g++ to run the CUDA kernels on the CPU", allow_module_level=True)
else:
    cp = None  # the emulator, installed for this module's tests by the fixture below

from tinytl.kernels import cuda as G  # noqa: E402
from tinytl.kernels import reference as R  # noqa: E402
from test_cuda_compile import bad_calls  # noqa: E402  (the same list the no-GPU test uses)

needs_gpu = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU (this one is about CuPy itself)")


@pytest.fixture(autouse=True, scope="module")
def emulated_cupy():
    """Without a GPU, tinytl.backend hands out the emulator for this module's tests."""
    if ON_GPU:
        yield
    else:
        with emucupy.installed() as fake:
            global cp
            cp = fake
            yield


def big(shape):
    """``shape``, with its number of rows cut so the emulator runs it in a blink."""
    if ON_GPU:
        return shape
    n, m = shape
    return (min(n, max(257, 80000 // m)), m)  # >= 257 rows: several strips; (300000, 1): strips > 64 rows


DTYPES = [np.float32, np.float64]
LAYOUTS = ["c", "transposed", "strided", "reversed"]
SETTINGS = settings(max_examples=100, deadline=None)
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


def gpu(a, how="c"):
    """``a`` on the GPU, in another memory layout (a view, not C-contiguous when it can)."""
    a = cp.asarray(a)
    if how == "c" or a.ndim == 0:
        return a
    if how == "transposed":
        return cp.ascontiguousarray(a.T).T
    if how == "strided":
        b = cp.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        b[..., ::2] = a
        return b[..., ::2]
    return cp.ascontiguousarray(a[::-1])[::-1]


def host(a):
    return cp.asnumpy(a)


def mask_of(y):
    """The packed ReLU mask of y (reference.py's layout): bit j % 8, LSB first, of byte [i, j // 8] is y[i, j] > 0."""
    return np.packbits(y > 0, axis=1, bitorder="little")


def bias_sum_tol(g):
    """Tolerance for g.sum(0): the reference adds rows in the input dtype, the GPU in double."""
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
    mask = cp.asarray(np.full((n, (m + 7) // 8), 0xA5, np.uint8)) if relu else None  # every byte must be written
    if alias:
        buf = gpu(y)
        got = G.linear_forward_epilogue(buf, None if bias is None else gpu(bias), relu, buf, mask)
        assert got is buf
    else:
        got = G.linear_forward_epilogue(gpu(y, how), None if bias is None else gpu(bias, how), relu, None, mask)
    assert isinstance(got, cp.ndarray) and got.dtype == dtype and got.shape == (n, m)
    np.testing.assert_array_equal(host(got), want)  # the same float operations: bit for bit
    if relu:
        ref_mask = np.zeros((n, (m + 7) // 8), np.uint8)
        R.linear_forward_epilogue(y, bias, relu, None, ref_mask)
        np.testing.assert_array_equal(host(mask), ref_mask)
        np.testing.assert_array_equal(ref_mask, mask_of(want))


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
        np.testing.assert_array_equal(want_g, grad * (y > 0))
    if alias:
        buf = gpu(grad)
        got_g, got_b = G.linear_backward_epilogue(buf, None if mask is None else gpu(mask), relu, bias_grad, buf)
        assert got_g is buf
    else:
        got_g, got_b = G.linear_backward_epilogue(gpu(grad, how), None if mask is None else gpu(mask, how), relu,
                                                  bias_grad)
    np.testing.assert_array_equal(host(got_g), want_g)
    if bias_grad:
        assert got_b.dtype == dtype and got_b.shape == (m,)
        np.testing.assert_allclose(host(got_b), want_b, **bias_sum_tol(want_g))
    else:
        assert got_b is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_epilogues_propagate_nan_and_inf_like_the_reference(dtype):
    y = np.array([[np.nan, -np.inf, np.inf, -0.0, 0.0, -1.0, 2.0]], dtype)
    bias = np.array([0, 1, -1, 0, -0.0, 0.5, np.nan], dtype)
    for relu in (False, True):
        np.testing.assert_array_equal(host(G.linear_forward_epilogue(gpu(y), gpu(bias), relu)),
                                      R.linear_forward_epilogue(y, bias, relu))
    grad = np.array([[np.nan, np.inf, 1, -1, np.inf, 3, -2]], dtype)
    for relu in (False, True):
        g, b = G.linear_backward_epilogue(gpu(grad), gpu(mask_of(y)), relu, True)
        with np.errstate(invalid="ignore"):  # inf * 0 = nan, as in NumPy
            wg, wb = R.linear_backward_epilogue(grad, mask_of(y), relu, True)
        np.testing.assert_array_equal(host(g), wg)
        np.testing.assert_array_equal(host(b), wb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 5), (256, 5), (257, 5), (1024, 1024), (3, 40000), (70000, 3), (2048, 2049),
                                   (300000, 1)])  # 257 rows and up: several strips, two launches
def test_linear_epilogues_large_and_deterministic(dtype, shape):
    shape = big(shape)
    rng = np.random.default_rng(0)
    y, bias, grad = data(rng, shape, dtype), data(rng, shape[1:], dtype), data(rng, shape, dtype)
    mask = cp.zeros((shape[0], (shape[1] + 7) // 8), np.uint8)
    out = host(G.linear_forward_epilogue(gpu(y), gpu(bias), True, None, mask))
    np.testing.assert_array_equal(out, R.linear_forward_epilogue(y, bias, True))
    np.testing.assert_array_equal(host(mask), mask_of(out))
    g, b = G.linear_backward_epilogue(gpu(grad), mask, True, True)
    wg, wb = R.linear_backward_epilogue(grad, mask_of(out), True, True)
    np.testing.assert_array_equal(host(g), wg)
    np.testing.assert_allclose(host(b), wb, **bias_sum_tol(wg))
    exact = wg.astype(np.float64).sum(0)  # accumulated in double: within one rounding of the exact sum
    np.testing.assert_allclose(host(b), exact, rtol=0, atol=2 * np.finfo(dtype).eps * np.abs(wg).sum(0).max())
    for _ in range(3):  # no atomics: the same bits every time
        np.testing.assert_array_equal(host(G.linear_backward_epilogue(gpu(grad), mask, True, True)[1]), host(b))


# ------------------------------------------------- softmax cross-entropy ----

def check_softmax(got, want, n, reduction, dtype, scale):
    (gl, gg), (wl, wg) = got, want
    assert isinstance(gl, cp.ndarray) and gl.shape == () and gl.dtype == dtype and gg.dtype == dtype
    tol = TOL[dtype]
    np.testing.assert_allclose(host(gl), wl, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * scale)
    per = 1 / n if reduction == "mean" else 1.0
    np.testing.assert_allclose(host(gg), wg, rtol=tol["rtol"], atol=tol["atol"] * per)


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
        buf = gpu(logits)
        got = G.softmax_xent(buf, gpu(target), reduction, buf)
        assert got[1] is buf
    else:
        got = G.softmax_xent(gpu(logits, how), gpu(target, how), reduction)
    check_softmax(got, want, n, reduction, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (9, 1024), (5, 1025), (3, 16384), (3, 16385), (2, 100000),
                                   (1024, 1000), (100000, 10)])  # warp per row | 256 | 1024 threads per row
@pytest.mark.parametrize("alias", [False, True])
def test_softmax_xent_every_launch_configuration(dtype, shape, alias):
    shape = big(shape)
    rng = np.random.default_rng(1)
    logits = data(rng, shape, dtype, zeros=False)
    target = rng.integers(0, shape[1], size=shape[0])
    for reduction in ("mean", "sum"):
        z = gpu(logits)
        got = G.softmax_xent(z, gpu(target), reduction, z if alias else None)
        check_softmax(got, R.softmax_xent(logits, target, reduction), shape[0], reduction, dtype, 1.0)
        again = G.softmax_xent(gpu(logits), gpu(target), reduction)
        assert host(again[0]) == host(got[0])  # the row losses are added in a fixed order
        np.testing.assert_array_equal(host(again[1]), host(got[1]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_extreme_logits(dtype):
    big = np.finfo(dtype).max / 4
    logits = np.array([[big, 0, -big], [-1e30, -1e30, 0], [5, 5, 5], [-np.inf, 0, 1]], dtype)
    target = np.array([0, 2, 1, 2])
    loss, grad = G.softmax_xent(gpu(logits), gpu(target), "sum")
    wl, wg = R.softmax_xent(logits, target, "sum")
    assert np.isfinite(host(loss)) and np.isfinite(host(grad)).all()
    np.testing.assert_allclose(host(loss), wl, rtol=1e-5)
    np.testing.assert_allclose(host(grad), wg, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [3, 5000])
def test_softmax_xent_nan_logits_give_nan_loss(dtype, c):
    logits = np.zeros((2, c), dtype)
    logits[0, 1] = np.nan
    loss, grad = G.softmax_xent(gpu(logits), gpu(np.array([0, 1])), "mean")
    grad = host(grad)
    assert np.isnan(host(loss)) and np.isnan(grad[0]).all() and np.isfinite(grad[1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_empty_batch_raises(dtype):
    with pytest.raises(ValueError, match="empty batch"):
        G.softmax_xent(cp.zeros((0, 5), dtype), cp.zeros(0, np.int64), "mean")


@pytest.mark.parametrize("bad", [-1, 5, 2**31, 2**63 - 1, -(2**63)])
@pytest.mark.parametrize("n", [3, 5000])
def test_softmax_xent_bad_label_raises_before_writing(bad, n):
    target = np.zeros(n, np.int64)
    target[n - 2] = bad
    out = cp.full((n, 5), 7.0, np.float32)
    with pytest.raises(ValueError, match=rf"softmax_xent: target\[{n - 2}\] = {bad} is not a class index in \[0, 5\)"):
        G.softmax_xent(cp.zeros((n, 5), np.float32), gpu(target), "mean", out)
    assert bool((out == 7).all())  # nothing written


# ------------------------------------------------------------------- sgd ----

OPTIONS = list(itertools.product([0.0, 0.9], [0.0, 0.1], [0.0, 1e-2], [False, True], [False, True]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mom,damp,wd,nesterov,first", OPTIONS)
def test_sgd_step_every_option_bit_for_bit(dtype, mom, damp, wd, nesterov, first):
    rng = np.random.default_rng(7)
    p0, g, b0 = (rng.standard_normal(1037).astype(dtype) for _ in range(3))
    p, b = gpu(p0), (gpu(b0) if mom else None)
    assert G.sgd_step(p, gpu(g), b, 0.05, mom, damp, wd, nesterov, first) is p
    rp, rb = p0.copy(), (b0.copy() if mom else None)
    R.sgd_step(rp, g, rb, 0.05, mom, damp, wd, nesterov, first)
    np.testing.assert_array_equal(host(p), rp)  # no FMA: the same roundings as NumPy
    if mom:
        np.testing.assert_array_equal(host(b), rb)


@SETTINGS
@given(shape=st.sampled_from([(), (0,), (1,), (5, 0), (3, 4), (2, 3, 5), (70000,), (300, 257)]),
       dtype=st.sampled_from(DTYPES), opts=st.sampled_from(OPTIONS), steps=st.integers(1, 3),
       lr=st.sampled_from([1e-3, 0.1, 1.0]), how=st.sampled_from(LAYOUTS), alias_grad=st.booleans(), seed=seeds)
def test_sgd_step_many_steps(shape, dtype, opts, steps, lr, how, alias_grad, seed):
    mom, damp, wd, nesterov, _ = opts
    rng = np.random.default_rng(seed)
    rp = data(rng, shape, dtype)
    p = gpu(rp)
    b, rb = (cp.zeros(shape, dtype), np.zeros(shape, dtype)) if mom else (None, None)
    for k in range(steps):
        if alias_grad:  # grad is the parameter itself (allowed: read before written, per element)
            R.sgd_step(rp, rp.copy(), rb, lr, mom, damp, wd, nesterov, k == 0)
            G.sgd_step(p, p, b, lr, mom, damp, wd, nesterov, k == 0)
        else:
            g = data(rng, shape, dtype)
            R.sgd_step(rp, g, rb, lr, mom, damp, wd, nesterov, k == 0)
            G.sgd_step(p, gpu(g, how), b, lr, mom, damp, wd, nesterov, k == 0)
    np.testing.assert_array_equal(host(p), rp)
    if mom:
        np.testing.assert_array_equal(host(b), rb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mom,damp,wd,nesterov,first", OPTIONS[::3])
def test_sgd_step_many_is_a_loop_of_sgd_step(dtype, mom, damp, wd, nesterov, first):
    rng = np.random.default_rng(11)
    shapes = [(784, 128), (128,), (0,), (), (10, 128), (10,), (3, 70001)]
    ps = [data(rng, s, dtype) for s in shapes]
    gs = [data(rng, s, dtype) for s in shapes]
    bs = [data(rng, s, dtype) for s in shapes] if mom else None
    gp, gb = [gpu(p) for p in ps], ([gpu(b) for b in bs] if mom else None)
    for step in range(2):  # the second call reuses the cached pointer table
        assert G.sgd_step_many(gp, [gpu(g, "strided" if g.ndim else "c") for g in gs], gb,
                               0.05, mom, damp, wd, nesterov, first) == gp
        for k in range(len(ps)):
            R.sgd_step(ps[k], gs[k], None if bs is None else bs[k], 0.05, mom, damp, wd, nesterov, first)
        for k in range(len(ps)):
            np.testing.assert_array_equal(host(gp[k]), ps[k])
            if mom:
                np.testing.assert_array_equal(host(gb[k]), bs[k])


def test_sgd_step_ignores_buf_without_momentum():
    p, g = cp.ones(4, np.float32), cp.ones(4, np.float32)
    G.sgd_step(p, g, "anything", 0.5, 0.0, 0.0, 0.0, False, True)
    np.testing.assert_array_equal(host(p), 0.5)


# ------------------------------------------------------------------ adam ----

# (amsgrad, maximize, weight_decay, decoupled)
ADAM_OPTIONS = [(a, mx, wd, d) for a, mx, wd, d in itertools.product([False, True], [False, True], [0.0, 0.1],
                                                                       [False, True]) if wd or not d]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amsgrad,maximize,wd,decoupled", ADAM_OPTIONS)
def test_adam_step_every_option_bit_for_bit(dtype, amsgrad, maximize, wd, decoupled):
    rng = np.random.default_rng(9)
    p0, g, m0 = (data(rng, 1037, dtype) for _ in range(3))
    v0 = np.abs(data(rng, 1037, dtype)) * dtype(0.1)
    x0 = v0 * dtype(1.5)
    x0[::3] = v0[::3] * dtype(0.5)                  # below v there: the maximum switches
    arrays = [gpu(a) for a in (p0, m0, v0, x0)]
    args = (7, 0.01, 0.9, 0.999, 1e-8, wd, amsgrad, maximize, decoupled)
    assert G.adam_step(arrays[0], gpu(g), arrays[1], arrays[2], arrays[3] if amsgrad else None, *args) is arrays[0]
    ref = [a.copy() for a in (p0, m0, v0, x0)]
    R.adam_step(ref[0], g, ref[1], ref[2], ref[3] if amsgrad else None, *args)
    for a, r in zip(arrays, ref):
        np.testing.assert_array_equal(host(a), r)   # no FMA, IEEE sqrt and division: NumPy's roundings


@settings(max_examples=30, deadline=None)
@given(shape=st.sampled_from([(), (0,), (1,), (5, 0), (3, 4), (2, 3, 5), (70000,), (300, 257)]),
       dtype=st.sampled_from(DTYPES), opts=st.sampled_from(ADAM_OPTIONS), steps=st.integers(1, 3),
       betas=st.sampled_from([(0.9, 0.999), (0.0, 0.5)]), how=st.sampled_from(LAYOUTS), seed=seeds)
def test_adam_step_many_steps(shape, dtype, opts, steps, betas, how, seed):
    amsgrad, maximize, wd, decoupled = opts
    rng = np.random.default_rng(seed)
    ref = [data(rng, shape, dtype)] + [np.zeros(shape, dtype) for _ in range(3)]
    arrays = [gpu(a) for a in ref]
    for t in range(1, steps + 1):
        g = data(rng, shape, dtype)
        opts_t = (t, 1e-3, *betas, 1e-8, wd, amsgrad, maximize, decoupled)
        R.adam_step(ref[0], g, ref[1], ref[2], ref[3] if amsgrad else None, *opts_t)
        G.adam_step(arrays[0], gpu(g, how), arrays[1], arrays[2], arrays[3] if amsgrad else None, *opts_t)
    for a, r in zip(arrays, ref):
        np.testing.assert_array_equal(host(a), r)


def test_adam_step_ignores_max_exp_avg_sq_without_amsgrad():
    p, g, m, v = cp.ones(4, np.float32), cp.ones(4, np.float32), cp.zeros(4, np.float32), cp.zeros(4, np.float32)
    G.adam_step(p, g, m, v, "anything", 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False)
    np.testing.assert_allclose(host(p), 0.9, rtol=1e-6)


# ------------------------------------------------------------ all kernels ----

def test_bad_arguments_raise_as_the_cpu_kernels_do_and_write_nothing():
    try:
        from tinytl.kernels import cpu as C
    except ImportError:
        C = None
    for (name, args), (_, cpu_args) in zip(bad_calls(cp.asarray), bad_calls(np.asarray)):
        before = [host(a) for a in args if isinstance(a, cp.ndarray)]
        with pytest.raises((TypeError, ValueError)) as got:
            getattr(G, name)(*args)
        assert str(got.value).startswith(f"{name}: ")
        after = [host(a) for a in args if isinstance(a, cp.ndarray)]
        for x, y in zip(before, after):
            np.testing.assert_array_equal(x, y)
        if C is not None:
            with pytest.raises((TypeError, ValueError)) as want:
                getattr(C, name)(*cpu_args)
            assert (type(got.value), str(got.value)) == (type(want.value), str(want.value)), name


def test_numpy_arguments_are_refused():
    with pytest.raises(TypeError, match="y must be a cupy.ndarray, got numpy.ndarray"):
        G.linear_forward_epilogue(np.ones((2, 2), np.float32), None, True)
    with pytest.raises(TypeError, match="target must be a cupy.ndarray"):
        G.softmax_xent(cp.ones((2, 2), np.float32), np.zeros(2, np.int64), "mean")


def test_kernels_run_on_the_current_stream():
    rng = np.random.default_rng(5)
    z, t = data(rng, (64, 50), np.float32, zeros=False), rng.integers(0, 50, 64)
    with cp.cuda.Stream(non_blocking=True) as s:
        loss, grad = G.softmax_xent(gpu(z), gpu(t), "mean")
        y = G.linear_forward_epilogue(gpu(z), gpu(z[0]), True)
        s.synchronize()
    check_softmax((loss, grad), R.softmax_xent(z, t, "mean"), 64, "mean", np.float32, 1.0)
    np.testing.assert_array_equal(host(y), R.linear_forward_epilogue(z, z[0], True))


def test_kernels_are_compiled_once_and_errors_point_into_the_cu_file():
    G.sgd_step(cp.ones(3, np.float32), cp.ones(3, np.float32), None, 0.1, 0, 0, 0, False, True)
    before = G._module.cache_info()
    G.sgd_step(cp.ones(3, np.float32), cp.ones(3, np.float32), None, 0.1, 0, 0, 0, False, True)
    assert G._module.cache_info().misses == before.misses
    with pytest.raises(Exception, match="broken.cu"):  # CuPy compiles at construction or first use
        code = '#line 1 "tinytl/kernels/cuda/broken.cu"\nextern "C" __global__ void k() { oops; }'
        cp.RawModule(code=code, options=("--std=c++17",)).get_function("k")


@pytest.mark.parametrize("opt_name,opt_kwargs", [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-4)),
                                                 ("AdamW", dict(lr=0.01, amsgrad=True))])
def test_a_training_step_on_the_gpu_matches_the_cpu(opt_name, opt_kwargs):
    import tinytl as tl
    from tinytl import nn
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((32, 20)).astype(np.float32), rng.integers(0, 5, 32)
    losses = {}
    for device in ("cpu", "cuda"):
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 5)).to(device)
        opt = getattr(tl.optim, opt_name)(model.parameters(), **opt_kwargs)
        xb, yb = tl.tensor(x, device=device), tl.tensor(y, device=device)
        out = []
        for _ in range(3):
            loss = nn.CrossEntropyLoss()(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        losses[device] = (out, {k: backend.to_numpy(v) for k, v in model.state_dict().items()})
    np.testing.assert_allclose(losses["cuda"][0], losses["cpu"][0], rtol=1e-5)
    for k, v in losses["cpu"][1].items():
        np.testing.assert_allclose(losses["cuda"][1][k], v, rtol=1e-4, atol=1e-5)
