"""tinytl's small-batch GEMM (csrc/gemm.cpp) against its specification, reference.py.

``linear_forward`` / ``linear_backward`` compute the three products of a Linear layer with
their epilogues fused. Checked here, over hypothesis shapes (M = 1..300 rows, K and N up to
2100, non-multiples of the vector width and of the tile included) in both dtypes:
- the raw binding (the fused path, whatever the size) against a float64 product: float32
  within 1e-5 of the product's scale (sum of |terms|), float64 within 1e-12; the ReLU mask
  bit for bit; the bias gradient too;
- ``kernels.cpu`` (which picks the fused path or the BLAS) against ``kernels.reference`` for
  every weight layout (Linear's Fortran order, C order, strided views);
- the same bits on one and on two threads, and on every instruction set the CPU has
  (``TINYTL_GEMM_ISA``, in subprocesses);
- the NaN/inf and signed-zero rules of the epilogue kernels (the mask multiplies);
- arguments the binding must refuse, refused before anything is written.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytl.kernels import reference as R

try:
    from tinytl import _C
    from tinytl.kernels import cpu as C
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"tinytl._C is not importable ({e})", allow_module_level=True)

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}
SETTINGS = settings(max_examples=40, deadline=None)
BUDGET = 3_000_000      # M * K * N of one example: keeps the float64 checks fast


@st.composite
def shapes(draw):
    """(M, K, N): K and N from 1 to 2100 (vector-width and tile edges likely), M up to 300 within BUDGET."""
    edge = st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 784,
                            1023, 1025, 2100])
    dim = st.one_of(edge, st.integers(1, 2100))
    k, n = draw(dim), draw(dim)
    m_max = max(1, min(300, BUDGET // (k * n)))
    m = draw(st.one_of(st.integers(1, m_max), st.sampled_from([1, 4, 5, m_max])))
    return min(m, m_max), k, n


def fweight(rng, n, k, dtype, offset=None):
    """A weight as tinytl.nn.Linear stores it: (n, k), Fortran order; with ``offset``, starting that many
    elements past a 64-byte boundary (0: aligned, as the kernel reads it in place; else it copies)."""
    w = rng.standard_normal((n, k)).astype(dtype)
    if offset is None:
        return np.asfortranarray(w)
    item = np.dtype(dtype).itemsize
    buf = np.zeros(n * k + 64 // item + offset, dtype)
    start = (-buf.ctypes.data % 64) // item + offset
    v = buf[start:start + n * k].reshape(k, n)
    v[...] = w.T
    return v.T


def close(got, want, scale, dtype):
    """|got - want| <= TOL * scale elementwise (scale: the sum of |terms|, so cancellation is fair)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    err = np.abs(got - want) / np.maximum(scale, np.finfo(np.float64).tiny)
    assert err.size == 0 or err.max() <= TOL[dtype], f"max relative error {err.max():.3g}"


def unpack(mask, n):
    return np.unpackbits(mask, axis=1, count=n, bitorder="little").astype(bool)


@SETTINGS
@given(shape=shapes(), dtype=st.sampled_from(DTYPES), relu=st.booleans(), use_bias=st.booleans(),
       offset=st.sampled_from([None, 0, 1, 3]), seed=st.integers(0, 2**32 - 1))
def test_fused_forward_matches_the_float64_product(shape, dtype, relu, use_bias, offset, seed):
    m, k, n = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = fweight(rng, n, k, dtype, offset)
    b = rng.standard_normal(n).astype(dtype) if use_bias else None
    out = np.full((m, n), np.nan, dtype)
    mask = np.full((m, (n + 7) // 8), 0xAB, np.uint8) if relu else None
    _C.linear_forward(x, w, b, relu, out, mask)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = x64 @ w64.T + (0 if b is None else b)
    scale = np.abs(x64) @ np.abs(w64.T) + (0 if b is None else np.abs(b))
    if relu:
        want = np.maximum(want, 0)
        assert np.array_equal(mask, np.packbits(out > 0, axis=1, bitorder="little"))
    close(out, want, scale, dtype)


@SETTINGS
@given(shape=shapes(), dtype=st.sampled_from(DTYPES), relu=st.booleans(), bias_grad=st.booleans(),
       want_w=st.booleans(), input_grad=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fused_backward_matches_the_float64_products(shape, dtype, relu, bias_grad, want_w, input_grad, seed):
    m, k, n = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = fweight(rng, n, k, dtype)
    g = rng.standard_normal((m, n)).astype(dtype)
    mask = np.packbits(rng.random((m, n)) < 0.6, axis=1, bitorder="little") if relu else None
    g_before = g.copy()
    gx, gw, gb = _C.linear_backward(g, mask, relu, x if want_w else None, w, bias_grad, input_grad)
    assert np.array_equal(g, g_before)                       # grad is read, never written
    gm = (g * unpack(mask, n) if relu else g).astype(np.float64)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    if input_grad:
        close(gx, gm @ w64, np.abs(gm) @ np.abs(w64), dtype)
        assert gx.flags.c_contiguous
    else:
        assert gx is None
    if want_w:
        close(gw, gm.T @ x64, np.abs(gm).T @ np.abs(x64), dtype)
        assert gw.flags.f_contiguous and gw.shape == (n, k)  # the weight's own layout
    else:
        assert gw is None
    if bias_grad:
        close(gb, gm.sum(0), np.abs(gm).sum(0), dtype)
    else:
        assert gb is None


WEIGHT_LAYOUTS = ["fortran", "c", "strided", "fortran-unaligned"]


def weight_in(layout, w):
    """``w`` (n, k) laid out as asked: Linear's Fortran order, C order, a strided view, or
    Fortran order at an address that is not a multiple of 64 bytes."""
    if layout == "fortran":
        return np.asfortranarray(w)
    if layout == "c":
        return np.ascontiguousarray(w)
    if layout == "strided":
        big = np.zeros((w.shape[0], 2 * w.shape[1]), w.dtype)
        big[:, ::2] = w
        return big[:, ::2]
    n, k = w.shape
    buf = np.zeros(n * k + 64, w.dtype)
    start = (-buf.ctypes.data % 64) // w.itemsize + 1     # one element past a 64-byte boundary
    v = buf[start:start + n * k].reshape(k, n)
    v[...] = w.T
    return v.T


@settings(max_examples=40, deadline=None)
@given(shape=shapes(), dtype=st.sampled_from(DTYPES), layout=st.sampled_from(WEIGHT_LAYOUTS),
       relu=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_cpu_twin_matches_reference_for_every_weight_layout(shape, dtype, layout, relu, seed):
    m, k, n = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = weight_in(layout, rng.standard_normal((n, k)).astype(dtype))
    b = rng.standard_normal(n).astype(dtype)
    masks = [np.empty((m, (n + 7) // 8), np.uint8) if relu else None for _ in range(2)]
    y = C.linear_forward(x, w, b, relu, None, masks[0])
    yr = R.linear_forward(x, w, b, relu, None, masks[1])
    tol = dict(rtol=1e-4, atol=1e-4 * np.sqrt(k)) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10 * np.sqrt(k))
    np.testing.assert_allclose(y, yr, **tol)
    g = rng.standard_normal((m, n)).astype(dtype)
    if relu:       # the same mask for both (a product at an exact 0 could differ in the last bit)
        masks[0][...] = masks[1]
    got = C.linear_backward(g, masks[0], relu, x, w, True, True)
    want = R.linear_backward(g, masks[1], relu, x, w, True, True)
    for a, b_ in zip(got, want):
        np.testing.assert_allclose(a, b_, **tol)
    # dL/dW in the weight's layout (what SGD walks in step with the weight)
    assert got[1].flags.f_contiguous if w.flags.f_contiguous else got[1].flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_give_the_same_bits(dtype):
    rng = np.random.default_rng(0)
    for m, k, n in [(32, 784, 128), (64, 300, 1000), (5, 2100, 130), (256, 129, 17), (32, 256, 150)]:
        x = rng.standard_normal((m, k)).astype(dtype)
        w = fweight(rng, n, k, dtype)
        b = rng.standard_normal(n).astype(dtype)
        outs, masks = [np.empty((m, n), dtype) for _ in range(4)], [np.empty((m, (n + 7) // 8), np.uint8) for _ in range(4)]
        for t, (o, mk) in enumerate(zip(outs, masks)):
            _C.linear_forward(x, w, b, True, o, mk, t)            # threads 0 (by size), 1, 2, 3
        for t in (2, 3, 2, 3):
            _C.linear_forward(x, w, b, True, outs[2], masks[2], t)
            assert np.array_equal(outs[0], outs[2])
        assert all(np.array_equal(outs[0], o) for o in outs) and all(np.array_equal(masks[0], mk) for mk in masks)
        g = rng.standard_normal((m, n)).astype(dtype)
        # two threads several times: a race between them (a shared buffer) shows as differing bits
        res = [_C.linear_backward(g, masks[0], True, x, w, True, True, t) for t in (0, 1, 2, 3, 2, 3)]
        for r in res[1:]:
            for a, b_ in zip(res[0], r):
                assert np.array_equal(a, b_)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_inf_and_signed_zero_follow_the_epilogue_rules():
    """ReLU keeps NaN (as np.maximum does) and -0.0 (as the epilogue kernel does), the mask bit is
    out > 0, and the backward multiplies by the mask: NaN and inf gradients under a 0 bit give NaN."""
    for dtype in DTYPES:
        x = np.array([[1.0, 0.0], [np.nan, 1.0], [np.inf, 1.0], [-np.inf, 1.0], [0.0, 0.0]], dtype)
        w = np.asfortranarray(np.array([[1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]], dtype))
        b = np.array([0.0, 0.0, -0.0], dtype)
        for relu in (False, True):
            out, mask = np.empty((5, 3), dtype), np.empty((5, 1), np.uint8) if relu else None
            _C.linear_forward(x, w, b, relu, out, mask)
            want = R.linear_forward(x, np.ascontiguousarray(w), b, relu)
            np.testing.assert_array_equal(out, want)
            if relu:
                np.testing.assert_array_equal(mask, np.packbits(want > 0, axis=1, bitorder="little"))
        g = np.array([[np.nan, np.inf, 1.0]] * 5, dtype)
        mask = np.packbits(np.array([[0, 0, 1]] * 5, bool), axis=1, bitorder="little")
        gx, gw, gb = _C.linear_backward(g, mask, True, x, w, True, True)
        rgx, rgw, rgb = R.linear_backward(g, mask, True, x, w, True, True)
        np.testing.assert_array_equal(gb, rgb)                  # NaN, NaN, 5
        assert np.isnan(gb[:2]).all() and gb[2] == 5


ISA_SCRIPT = r"""
import numpy as np, sys
from tinytl import _C
print(_C.gemm_isa())
rng = np.random.default_rng(1)
for dtype in (np.float32, np.float64):
    for m, k, n in [(1, 1, 1), (3, 5, 7), (33, 100, 130), (6, 17, 9), (13, 260, 40)]:
        x = rng.standard_normal((m, k)).astype(dtype)
        w = np.asfortranarray(rng.standard_normal((n, k)).astype(dtype))
        b = rng.standard_normal(n).astype(dtype)
        out, mask = np.empty((m, n), dtype), np.full((m, (n + 7) // 8), 0xAB, np.uint8)
        _C.linear_forward(x, w, b, True, out, mask)
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        want = np.maximum(x64 @ w64.T + b, 0)
        scale = np.abs(x64) @ np.abs(w64.T) + np.abs(b)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        assert (np.abs(out - want) / scale).max() <= tol, (dtype, m, k, n)
        assert np.array_equal(mask, np.packbits(out > 0, axis=1, bitorder="little"))
        g = rng.standard_normal((m, n)).astype(dtype)
        gx, gw, gb = _C.linear_backward(g, mask, True, x, w, True, True)
        gm = g * np.unpackbits(mask, axis=1, count=n, bitorder="little").astype(dtype)
        gm = gm.astype(np.float64)
        assert (np.abs(gx - gm @ w64) / (np.abs(gm) @ np.abs(w64) + 1e-300)).max() <= tol
        assert (np.abs(gw - gm.T @ x64) / (np.abs(gm).T @ np.abs(x64) + 1e-300)).max() <= tol
        assert (np.abs(gb - gm.sum(0)) / (np.abs(gm).sum(0) + 1e-300)).max() <= tol
print("ok")
"""


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_every_instruction_set_matches(isa, tmp_path):
    """The AVX2 and the portable builds (TINYTL_GEMM_ISA lowers the choice) give the same results."""
    env = dict(os.environ, TINYTL_GEMM_ISA=isa)
    # run outside the checkout: there its tinytl/ (sources without the built _C) would shadow the install
    r = subprocess.run([sys.executable, "-c", ISA_SCRIPT], env=env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    got_isa, status = r.stdout.split()
    best = _C.gemm_isa()
    order = ["scalar", "avx2", "avx512"]
    assert got_isa == (isa if order.index(isa) <= order.index(best) else best)
    assert status == "ok"


def test_gemm_threads_and_isa_are_reported():
    assert _C.gemm_isa() in ("avx512", "avx2", "scalar")
    assert _C.gemm_threads(1e3) == 1
    assert 1 <= _C.gemm_threads(1e12) <= max(1, _C.max_threads())
    flops = _C.fma_peak(True, 1000)
    assert flops > 0 and flops % 1000 == 0 and _C.fma_peak(False, 1000) == flops // 2
    with pytest.raises(ValueError, match="fma_peak: n must be >= 0"):
        _C.fma_peak(True, -1)


def _args(dtype=np.float32, m=4, k=5, n=6):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((m, k)).astype(dtype), fweight(rng, n, k, dtype), np.zeros(n, dtype),
            np.zeros((m, n), dtype), np.zeros((m, (n + 7) // 8), np.uint8))


@pytest.mark.parametrize("case, exc, match", [
    ("x float16", TypeError, "linear_forward: x must be a float32 or float64 array"),
    ("weight float64", TypeError, "linear_forward: weight must be float32"),
    ("weight C order", ValueError, "weight must be Fortran-ordered"),
    ("weight 1-D", ValueError, "weight must have shape"),
    ("weight wrong K", ValueError, "weight must have shape \\(out_features, 5\\)"),
    ("x strided", ValueError, "x must be C-contiguous"),
    ("bias wrong shape", ValueError, "bias must have shape \\(6,\\)"),
    ("out wrong shape", ValueError, "out must have shape \\(4, 6\\)"),
    ("out read-only", ValueError, "out is read-only"),
    ("out is x", ValueError, "out overlaps x"),
    ("mask without relu", ValueError, "mask is written only with relu=True"),
    ("mask wrong shape", ValueError, "mask must have shape \\(4, 1\\)"),
    ("mask int8", TypeError, "mask must be a uint8 array"),
    ("threads -1", ValueError, "threads must be >= 0"),
    ("mask read-only", ValueError, "mask is read-only"),
    ("bias float64", TypeError, "bias must be float32"),
    ("out float64", TypeError, "out must be float32"),
    ("bias strided", ValueError, "bias must be C-contiguous"),
    ("mask overlaps out", ValueError, "mask overlaps out"),
    ("weight misaligned", ValueError, "weight must be aligned"),
])
def test_forward_refuses_bad_arguments_before_writing(case, exc, match):
    x, w, b, out, mask = _args()
    relu, threads = True, 0
    if case == "x float16":
        x = x.astype(np.float16)
    elif case == "weight float64":
        w = np.asfortranarray(w.astype(np.float64))
    elif case == "weight C order":
        w = np.ascontiguousarray(w)
    elif case == "weight 1-D":
        w = np.zeros(6, np.float32)
    elif case == "weight wrong K":
        w = fweight(np.random.default_rng(0), 6, 4, np.float32)
    elif case == "x strided":
        x = np.zeros((4, 10), np.float32)[:, ::2]
    elif case == "bias wrong shape":
        b = np.zeros(5, np.float32)
    elif case == "out wrong shape":
        out = np.zeros((4, 5), np.float32)
    elif case == "out read-only":
        out.setflags(write=False)
    elif case == "out is x":
        x = np.zeros((4, 6), np.float32)
        out = x
        w = fweight(np.random.default_rng(0), 6, 6, np.float32)
    elif case == "mask without relu":
        relu = False
    elif case == "mask wrong shape":
        mask = np.zeros((4, 2), np.uint8)
    elif case == "mask int8":
        mask = np.zeros((4, 1), np.int8)
    elif case == "threads -1":
        threads = -1
    elif case == "mask read-only":
        mask.setflags(write=False)
    elif case == "bias float64":
        b = b.astype(np.float64)
    elif case == "out float64":
        out = out.astype(np.float64)
    elif case == "bias strided":
        b = np.zeros(12, np.float32)[::2]
    elif case == "mask overlaps out":
        mask = out.view(np.uint8).reshape(-1)[:4].reshape(4, 1)   # the first 4 bytes of out
    elif case == "weight misaligned":
        raw = np.zeros(6 * 5 * 4 + 1, np.uint8)[1:].view(np.float32)
        w = raw.reshape(5, 6).T                       # (6, 5), Fortran order, 1 byte off
    out_before = out.copy() if out is not x else None
    mask_before = mask.copy()
    with pytest.raises(exc, match=match):
        _C.linear_forward(x, w, b, relu, out, mask, threads)
    if out_before is not None:
        assert np.array_equal(out, out_before, equal_nan=True)
    assert np.array_equal(mask, mask_before)


@pytest.mark.parametrize("case, exc, match", [
    ("grad float16", TypeError, "linear_backward: grad must be a float32 or float64 array"),
    ("x float64", TypeError, "linear_backward: x must be float32"),
    ("x wrong rows", ValueError, "x must have shape \\(4, in_features\\)"),
    ("weight C order", ValueError, "weight must be Fortran-ordered"),
    ("weight wrong shape", ValueError, "weight must have shape \\(6, 5\\)"),
    ("no mask with relu", ValueError, "mask is required when relu=True"),
    ("mask wrong shape", ValueError, "mask must have shape \\(4, 1\\)"),
    ("grad 1-D", ValueError, "grad must have shape \\(N, out_features\\)"),
    ("grad strided", ValueError, "grad must be C-contiguous"),
    ("mask int8", TypeError, "mask must be a uint8 array"),
    ("x strided", ValueError, "x must be C-contiguous"),
    ("weight float64", TypeError, "weight must be float32"),
    ("threads -1", ValueError, "threads must be >= 0"),
])
def test_backward_refuses_bad_arguments(case, exc, match):
    x, w, _, g, mask = _args()
    if case == "grad float16":
        g = g.astype(np.float16)
    elif case == "x float64":
        x = x.astype(np.float64)
    elif case == "x wrong rows":
        x = x[:3].copy()
    elif case == "weight C order":
        w = np.ascontiguousarray(w)
    elif case == "weight wrong shape":
        w = fweight(np.random.default_rng(0), 6, 4, np.float32)
    elif case == "no mask with relu":
        mask = None
    elif case == "mask wrong shape":
        mask = np.zeros((4, 2), np.uint8)
    elif case == "grad 1-D":
        g = np.zeros(6, np.float32)
    elif case == "grad strided":
        g = np.zeros((4, 12), np.float32)[:, ::2]
    elif case == "mask int8":
        mask = mask.astype(np.int8)
    elif case == "x strided":
        x = np.zeros((4, 10), np.float32)[:, ::2]
    elif case == "weight float64":
        w = np.asfortranarray(w.astype(np.float64))
    threads = -1 if case == "threads -1" else 0
    with pytest.raises(exc, match=match):
        _C.linear_backward(g, mask, True, x, w, True, True, threads)


def test_empty_shapes():
    for dtype in DTYPES:
        for m, k, n in [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)]:
            rng = np.random.default_rng(0)
            x, w = rng.standard_normal((m, k)).astype(dtype), fweight(rng, n, k, dtype)
            b = rng.standard_normal(n).astype(dtype)
            out, mask = np.empty((m, n), dtype), np.empty((m, (n + 7) // 8), np.uint8)
            _C.linear_forward(x, w, b, True, out, mask)
            np.testing.assert_array_equal(out, R.linear_forward(x, w, b, True))
            g = rng.standard_normal((m, n)).astype(dtype)
            for a, b_ in zip(_C.linear_backward(g, mask, True, x, w, True, True),
                             R.linear_backward(g, mask, True, x, w, True, True)):
                np.testing.assert_array_equal(a, b_)


def test_cpu_dispatch_follows_the_crossover(monkeypatch):
    """kernels.cpu sends Linear's layout at small sizes to the fused GEMM, everything else to the BLAS."""
    calls = []
    fwd, bwd = C._C_linear_forward, C._C_linear_backward
    monkeypatch.setattr(C, "_C_linear_forward", lambda *a: calls.append("fwd") or fwd(*a))
    monkeypatch.setattr(C, "_C_linear_backward", lambda *a: calls.append("bwd") or bwd(*a))
    rng = np.random.default_rng(0)

    def run(m, k, n, layout="fortran", dtype=np.float32):
        calls.clear()
        x = rng.standard_normal((m, k)).astype(dtype)
        w = weight_in(layout, rng.standard_normal((n, k)).astype(dtype))
        C.linear_forward(x, w, None, False)
        C.linear_backward(rng.standard_normal((m, n)).astype(dtype), None, False, x, w, True, True)
        return list(calls)

    assert run(32, 784, 128) == ["fwd", "bwd"]                         # case 1: 6.4 MFLOP per GEMM
    assert run(64, 256, 256) == ["fwd"]                                 # 8.4 MFLOP: the backward's limit is 8
    assert run(32, 784, 128, dtype=np.float64) == ["fwd"]               # float64 backwards: the BLAS's
    assert run(C.GEMM_MAX_ROWS + 1, 8, 8) == []                         # too many rows
    assert run(256, 1024, 1024) == []                                   # above GEMM_MAX_FLOPS
    assert run(32, 64, 64, "c") == [] and run(32, 64, 64, "strided") == []   # not Linear's layout
    assert run(4, 8, 16, "fortran-unaligned") == ["fwd", "bwd"]         # off a 64-byte boundary: packed
    calls.clear()                                                       # not even float-aligned: the BLAS
    w = np.zeros(16 * 8 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(8, 16).T
    x = np.ones((4, 8), np.float32)
    np.testing.assert_allclose(C.linear_forward(x, w, None, False), R.linear_forward(x, w, None, False))
    assert calls == []
