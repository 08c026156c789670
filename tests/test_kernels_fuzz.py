"""Fuzzing the C++ bindings: arbitrary arrays in, and never a crash or a lost write out.

Hypothesis builds every argument from every NumPy dtype (bool, ints, float16, complex,
object, big-endian floats), zero-size and one-element shapes, mismatched shapes, and
Fortran-ordered, negatively strided, strided, unaligned and read-only layouts; labels
sit at the boundaries (-1, C, 2**31, 2**63 - 1). For each call through
tinytl.kernels.cpu, either
- it succeeds, and then matches the reference (the inputs were ones it converts), or
- it raises TypeError/ValueError naming an argument, and left every buffer untouched.
Writing into a copy of an in-place argument would lose the update: the last tests show
each in-place kernel raises instead.
"""
import re
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tinytl.kernels import reference as R

try:
    from tinytl.kernels import cpu as C
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"tinytl._C is not importable ({e}); build it with `pip install --no-build-isolation -e .`",
                allow_module_level=True)

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.bool_, np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float16, np.float32, np.float64,
          np.longdouble, np.complex64, np.complex128, object, ">f4", ">f8"]
FLOATS = [np.float32, np.float64]
LAYOUTS = ["c", "c", "fortran", "reversed", "strided", "unaligned", "readonly"]
LABELS = [-1, 0, 1, 2**31, 2**63 - 1, -(2**63)]


def build(rng, shape, dtype, how, values=None):
    """An array of ``shape`` and ``dtype`` laid out as ``how`` (always with the same values)."""
    v = rng.standard_normal(shape) if values is None else np.asarray(values).reshape(shape)
    dt = np.dtype(dtype)
    a = v.astype(dt) if dt != object else v.astype(object)
    if how == "fortran":
        a = np.asfortranarray(a)
    elif how == "reversed" and a.ndim:
        a = np.ascontiguousarray(a[::-1])[::-1]
    elif how == "strided" and a.ndim:
        b = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        b[..., ::2] = a
        a = b[..., ::2]
    elif how == "unaligned" and a.dtype.itemsize > 1 and a.dtype != object and a.size:
        raw = np.zeros(a.nbytes + 1, np.uint8)
        u = raw[1:].view(a.dtype).reshape(a.shape)
        u[...] = a
        a = u
    elif how == "readonly":
        a.flags.writeable = False
    return a


@st.composite
def arrays(draw, shape, floats_likely=True):
    """(array, is_exact): a weird or a well-formed array around ``shape``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(FLOATS if floats_likely and draw(st.booleans()) else DTYPES))
    kind = draw(st.sampled_from(["same", "same", "same", "zero", "one", "mismatch", "ndim"]))
    if kind == "zero":
        shape = (0,) + tuple(shape[1:]) if shape else (0,)
    elif kind == "one":
        shape = (1,) * max(1, len(shape))
    elif kind == "mismatch":
        shape = tuple(s + 1 for s in shape) if shape else (2,)
    elif kind == "ndim":
        shape = tuple(shape) + (1,)
    return build(rng, shape, dtype, draw(st.sampled_from(LAYOUTS)))


@st.composite
def masks(draw, n, m):
    """A packed ReLU mask for an (n, m) output: random bits in the right layout, or a weird array."""
    shape = (n, (m + 7) // 8)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        return build(rng, shape, np.uint8, draw(st.sampled_from(LAYOUTS)), values=rng.integers(0, 256, shape))
    return draw(arrays(shape, floats_likely=False))


def snapshot(*arrays):
    return [None if not isinstance(a, np.ndarray) else a.copy() for a in arrays]


def assert_untouched(arrays, before):
    for a, b in zip(arrays, before):
        if isinstance(a, np.ndarray) and a.dtype != object:
            np.testing.assert_array_equal(a, b, err_msg="a kernel that raised had written into a buffer")


def expect_named_error(excinfo, names):
    assert excinfo.type in (TypeError, ValueError), excinfo
    msg = str(excinfo.value)
    # the argument as a word of its own ("y" in "y must be ...", not in "dtype")
    assert any(re.search(rf"(?<![\w.]){re.escape(n)}(?![\w(])", msg) for n in names), \
        f"error does not name an argument: {msg}"


def call_both(kernel, args, inplace, names):
    """Run the reference on copies and the C++ kernel on ``args``; return (ref result or None, cpp result)."""
    ref_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    before = snapshot(*[args[i] for i in inplace])
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = getattr(R, kernel)(*ref_args)
    except Exception:
        want = None
    try:
        got = getattr(C, kernel)(*args)
    except Exception:
        excinfo = pytest.ExceptionInfo.from_exc_info(sys.exc_info())
        expect_named_error(excinfo, names)
        assert_untouched([args[i] for i in inplace], before)
        return None, None, ref_args
    assert want is not None, "the C++ kernel accepted arguments the reference refuses"
    return want, got, ref_args


def close(a, b, dtype):
    tol = dict(rtol=1e-4, atol=1e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), equal_nan=True, **tol)


# ---------------------------------------------------------------- linear ----

@FUZZ
@given(n=st.integers(0, 5), m=st.integers(0, 12), st_data=st.data(), relu=st.booleans(), with_bias=st.booleans(),
       with_out=st.booleans(), with_mask=st.booleans())
def test_fuzz_linear_forward_epilogue(n, m, st_data, relu, with_bias, with_out, with_mask):
    y = st_data.draw(arrays((n, m)))
    bias = st_data.draw(arrays((m,))) if with_bias else None
    out = st_data.draw(arrays((n, m))) if with_out else None
    mask = st_data.draw(masks(n, m)) if with_mask else None
    names = ["y", "bias", "out", "mask"]
    inplace = ([3] if with_out else []) + ([4] if with_mask else [])
    want, got, ref_args = call_both("linear_forward_epilogue", [y, bias, relu, out, mask], inplace, names)
    if got is None:
        return
    assert got.dtype == y.dtype and got.flags.c_contiguous
    if with_out:
        assert got is out
    close(got, want, y.dtype)
    if with_mask:
        np.testing.assert_array_equal(mask, ref_args[4])


@FUZZ
@given(n=st.integers(0, 5), m=st.integers(0, 12), st_data=st.data(), relu=st.booleans(), bias_grad=st.booleans(),
       with_out=st.booleans())
def test_fuzz_linear_backward_epilogue(n, m, st_data, relu, bias_grad, with_out):
    grad = st_data.draw(arrays((n, m)))
    mask = st_data.draw(masks(n, m)) if relu or st_data.draw(st.booleans()) else None
    out = st_data.draw(arrays((n, m))) if with_out else None
    names = ["grad", "mask", "out"]
    want, got, _ = call_both("linear_backward_epilogue", [grad, mask, relu, bias_grad, out],
                             [4] if with_out else [], names)
    if got is None:
        return
    if with_out:
        assert got[0] is out
    close(got[0], want[0], grad.dtype)
    if bias_grad:
        close(got[1], want[1], grad.dtype)
    else:
        assert got[1] is None


# ------------------------------------------------- softmax cross-entropy ----

@FUZZ
@given(n=st.integers(0, 5), c=st.integers(0, 5), st_data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]),
       with_out=st.booleans(), label_kind=st.sampled_from(["valid", "valid", "boundary"]),
       label_dtype=st.sampled_from([np.int64, np.int64, np.longlong, np.int32, np.uint64, np.int8, np.float64,
                                    np.bool_, ">i8"]),
       label_layout=st.sampled_from(LAYOUTS))
def test_fuzz_softmax_xent(n, c, st_data, reduction, with_out, label_kind, label_dtype, label_layout):
    logits = st_data.draw(arrays((n, c)))
    rng = np.random.default_rng(st_data.draw(st.integers(0, 2**32 - 1)))
    if label_kind == "valid":
        t = rng.integers(0, max(c, 1), size=n)
    else:
        t = rng.integers(0, max(c, 1), size=n).astype(object)
        if n:
            t[st_data.draw(st.integers(0, n - 1))] = st_data.draw(st.sampled_from(LABELS + [c]))
    with np.errstate(all="ignore"):
        try:
            target = build(rng, (n,), label_dtype, label_layout, values=np.array(t, dtype=object))
        except (OverflowError, ValueError):
            target = build(rng, (n,), np.int64, label_layout, values=np.array(t, dtype=np.int64))
    out = st_data.draw(arrays((n, c))) if with_out else None
    names = ["logits", "target", "reduction", "out"]
    want, got, _ = call_both("softmax_xent", [logits, target, reduction, out], [3] if with_out else [], names)
    if got is None:
        return
    assert reduction in ("mean", "sum") and np.dtype(target.dtype) == np.int64
    assert logits.ndim == 2 and logits.shape[0] > 0 and target.shape == logits.shape[:1]
    assert ((0 <= target) & (target < logits.shape[1])).all()
    loss, grad = got
    assert loss.shape == () and loss.dtype == logits.dtype
    close(loss, want[0], logits.dtype)
    close(grad, want[1], logits.dtype)
    if with_out:
        assert grad is out


@pytest.mark.parametrize("bad", [-1, 3, 2**31, 2**32 + 1, 2**63 - 1, -(2**63)])
def test_softmax_xent_names_the_first_bad_label(bad):
    logits = np.zeros((4, 3), np.float32)
    out = np.full((4, 3), 7, np.float32)
    target = np.array([0, 2, bad, -5], np.int64)
    with pytest.raises(ValueError, match=rf"target\[2\] = {bad} is not a class index in \[0, 3\)"):
        C.softmax_xent(logits, target, "mean", out)
    assert (out == 7).all()


@pytest.mark.parametrize("dtype", [np.int32, np.uint64, np.float64, np.float32, np.bool_, np.int8, np.uint32])
def test_softmax_xent_refuses_labels_that_are_not_int64(dtype):
    # 2**32 + 1 in uint64 would truncate to 1 through int32; floats are not labels
    target = np.array([1, 0], dtype)
    with pytest.raises(TypeError, match="target must be an int64"):
        C.softmax_xent(np.zeros((2, 3), np.float32), target, "mean")


# ------------------------------------------------------------------- sgd ----

@FUZZ
@given(shape=st.sampled_from([(), (0,), (1,), (3,), (2, 3), (1, 0, 2)]), st_data=st.data(),
       momentum=st.sampled_from([0.0, 0.9]), with_buf=st.booleans(), nesterov=st.booleans(), first=st.booleans())
def test_fuzz_sgd_step(shape, st_data, momentum, with_buf, nesterov, first):
    param = st_data.draw(arrays(shape))
    grad = st_data.draw(arrays(shape))
    buf = st_data.draw(arrays(shape)) if with_buf else None
    args = [param, grad, buf, 0.1, momentum, 0.1, 0.01, nesterov, first]
    names = ["param", "grad", "buf"]
    want, got, ref_args = call_both("sgd_step", args, [0, 2] if with_buf else [0], names)
    if got is None:
        return
    assert got is param
    close(param, ref_args[0], param.dtype)
    if momentum and with_buf:
        close(buf, ref_args[2], param.dtype)


# ------------------------------------------------------------------ adam ----

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from([(), (0,), (1,), (3,), (2, 3), (1, 0, 2)]), st_data=st.data(),
       amsgrad=st.booleans(), with_max=st.booleans(), maximize=st.booleans(), decoupled=st.booleans(),
       step=st.sampled_from([0, 1, 5]))
def test_fuzz_adam_step(shape, st_data, amsgrad, with_max, maximize, decoupled, step):
    param, grad, exp_avg, exp_avg_sq = (st_data.draw(arrays(shape)) for _ in range(4))
    vmax = st_data.draw(arrays(shape)) if with_max else None
    args = [param, grad, exp_avg, exp_avg_sq, vmax, step, 0.01, 0.9, 0.999, 1e-8, 0.01, amsgrad, maximize, decoupled]
    names = ["param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    want, got, ref_args = call_both("adam_step", args, [0, 2, 3, 4] if with_max else [0, 2, 3], names)
    if got is None:
        return
    assert got is param and step >= 1
    for i in (0, 2, 3) + ((4,) if amsgrad else ()):
        close(args[i], ref_args[i], param.dtype)


# ------------------------------------------- in-place writes are never lost ----

def _calls(dtype_bad=np.float64):
    """(kernel name, args builder taking the bad buffer, the argument's name), one per in-place argument."""
    f32, z = np.float32, np.zeros
    return [
        ("linear_forward_epilogue", lambda o: (z((4, 3), f32), z(3, f32), True, o), "out"),
        ("linear_backward_epilogue", lambda o: (z((4, 3), f32), z((4, 1), np.uint8), True, True, o), "out"),
        ("softmax_xent", lambda o: (z((4, 3), f32), np.zeros(4, np.int64), "mean", o), "out"),
        ("sgd_step", lambda p: (p, z((4, 3), f32), z((4, 3), f32), 0.1, 0.9, 0.0, 0.0, False, True), "param"),
        ("sgd_step", lambda b: (z((4, 3), f32), z((4, 3), f32), b, 0.1, 0.9, 0.0, 0.0, False, True), "buf"),
        ("adam_step", lambda p: (p, z((4, 3), f32), z((4, 3), f32), z((4, 3), f32), z((4, 3), f32), 1, *_ADAM),
         "param"),
        ("adam_step", lambda m: (z((4, 3), f32), z((4, 3), f32), m, z((4, 3), f32), z((4, 3), f32), 1, *_ADAM),
         "exp_avg"),
        ("adam_step", lambda v: (z((4, 3), f32), z((4, 3), f32), z((4, 3), f32), v, z((4, 3), f32), 1, *_ADAM),
         "exp_avg_sq"),
        ("adam_step", lambda x: (z((4, 3), f32), z((4, 3), f32), z((4, 3), f32), z((4, 3), f32), x, 1, *_ADAM),
         "max_exp_avg_sq"),
    ]


_ADAM = (1e-3, 0.9, 0.999, 1e-8, 0.01, True, False, True)   # lr, betas, eps, weight_decay, amsgrad, maximize, decoupled


@pytest.mark.parametrize("kernel,make,name", _calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_inplace_float64_where_float32_is_expected_raises(kernel, make, name):
    buf = np.full((4, 3), 5.0, np.float64)
    # For sgd_step the param sets the dtype: a float64 param meets float32 grad/buf, and it is
    # the first mismatching argument that is named.
    with pytest.raises(TypeError, match="grad" if name == "param" else name):
        getattr(C, kernel)(*make(buf))
    assert (buf == 5).all()


@pytest.mark.parametrize("kernel,make,name", _calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_inplace_non_contiguous_raises(kernel, make, name):
    for bad in (np.full((3, 4), 5.0, np.float32).T, np.full((4, 6), 5.0, np.float32)[:, ::2],
                np.full((4, 3), 5.0, np.float32)[::-1]):
        with pytest.raises(ValueError, match=rf"{name} must be C-contiguous"):
            getattr(C, kernel)(*make(bad))
        assert (bad == 5).all()


@pytest.mark.parametrize("kernel,make,name", _calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_inplace_read_only_raises(kernel, make, name):
    bad = np.full((4, 3), 5.0, np.float32)
    bad.flags.writeable = False
    with pytest.raises(ValueError, match=rf"{name} is read-only"):
        getattr(C, kernel)(*make(bad))
    assert (bad == 5).all()


@pytest.mark.parametrize("kernel,make,name", _calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_inplace_misaligned_raises(kernel, make, name):
    raw = bytearray(4 * 12 + 1)
    bad = np.frombuffer(raw, dtype=np.float32, offset=1).reshape(4, 3)   # C-contiguous, writeable, misaligned
    assert not bad.flags.aligned and bad.flags.writeable and bad.flags.c_contiguous
    bad[...] = 5
    with pytest.raises(ValueError, match=rf"{name} must be aligned"):
        getattr(C, kernel)(*make(bad))
    assert (bad == 5).all()


@pytest.mark.parametrize("kernel,make,name", _calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_inplace_wrong_shape_and_non_array_raise(kernel, make, name):
    # the first array sets the shape: a wrong param makes grad the mismatching argument
    msg = r"grad must have shape \(3, 4\), got \(4, 3\)" if name == "param" else rf"{name} must have shape \(4, 3\), got \(3, 4\)"
    with pytest.raises(ValueError, match=msg):
        getattr(C, kernel)(*make(np.zeros((3, 4), np.float32)))
    with pytest.raises(TypeError, match=name):
        getattr(C, kernel)(*make([[0.0] * 3] * 4))


def test_partial_overlap_is_refused():
    base = np.zeros(13, np.float32)
    y, out = base[:12].reshape(4, 3), base[1:].reshape(4, 3)
    with pytest.raises(ValueError, match="out overlaps y partially"):
        C.linear_forward_epilogue(y, None, True, out)
    p = np.zeros(12, np.float32)
    with pytest.raises(ValueError, match="buf overlaps param"):
        C.sgd_step(p, np.zeros(12, np.float32), p, 0.1, 0.9, 0.0, 0.0, False, True)


def test_adam_step_refuses_every_overlap_even_grad_as_param():
    """AdamW scales param before the reference reads grad: grad may not be param itself."""
    p, m, v = np.zeros(12, np.float32), np.zeros(12, np.float32), np.zeros(12, np.float32)
    with pytest.raises(ValueError, match="grad overlaps param; pass a separate array"):
        C.adam_step(p, p, m, v, None, 1, *_ADAM[:5], False, False, True)
    with pytest.raises(ValueError, match="exp_avg_sq overlaps exp_avg"):
        C.adam_step(p, np.zeros(12, np.float32), m, m, None, 1, *_ADAM[:5], False, False, True)
    base = np.zeros(13, np.float32)
    with pytest.raises(ValueError, match="max_exp_avg_sq overlaps exp_avg_sq"):
        C.adam_step(p, np.zeros(12, np.float32), m, base[:12], base[1:], 1, *_ADAM)
    with pytest.raises(ValueError, match="max_exp_avg_sq is required"):
        C.adam_step(p, np.zeros(12, np.float32), m, v, None, 1, *_ADAM)
    with pytest.raises(ValueError, match="step must be >= 1"):
        C.adam_step(p, np.zeros(12, np.float32), m, v, None, 0, *_ADAM[:5], False, False, True)
    assert not p.any() and not m.any() and not v.any()


def test_bad_relu_masks_are_refused_before_anything_is_written():
    """The mask's layout (uint8, C-contiguous, (N, ceil(M / 8))) is checked before out or mask is written."""
    y = np.full((4, 11), -1.0, np.float32)
    good = np.zeros((4, 2), np.uint8)
    bads = [(np.zeros((4, 2), np.int8), TypeError, "mask must be a uint8 array"),
            (np.zeros((4, 2), np.float32), TypeError, "mask must be a uint8 array"),
            (np.zeros((4, 1), np.uint8), ValueError, r"mask must have shape \(4, 2\), got \(4, 1\)"),
            (np.zeros((4, 11), np.uint8), ValueError, r"mask must have shape \(4, 2\)"),
            (np.zeros((2, 4), np.uint8).T, ValueError, "mask must be C-contiguous"),
            (np.zeros((4, 4), np.uint8)[:, ::2], ValueError, "mask must be C-contiguous"),
            ([[0, 0]] * 4, TypeError, "mask must be a numpy.ndarray or None")]
    for bad, exc, msg in bads:
        out = np.full_like(y, 5.0)
        before = None if not isinstance(bad, np.ndarray) else bad.copy()
        with pytest.raises(exc, match=msg):
            C.linear_forward_epilogue(y, None, True, out, bad)
        assert (out == 5).all()
        if before is not None:
            np.testing.assert_array_equal(bad, before)
    ro = good.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="mask is read-only"):
        C.linear_forward_epilogue(y, None, True, np.full_like(y, 5.0), ro)
    with pytest.raises(ValueError, match="mask is written only with relu=True"):
        C.linear_forward_epilogue(y, None, False, np.full_like(y, 5.0), good)
    with pytest.raises(ValueError, match="mask overlaps out"):
        buf = np.zeros(4 * 11 * 4, np.uint8)
        C.linear_forward_epilogue(y, None, True, buf.view(np.float32).reshape(4, 11), buf[:8].reshape(4, 2))
    # backward: the mask is read; a missing or malformed one is refused before out is written
    g = np.ones((4, 11), np.float32)
    for bad, exc, msg in bads[:4] + [(None, ValueError, "mask is required when relu=True")]:
        out = np.full_like(g, 5.0)
        with pytest.raises(exc, match=msg):
            C.linear_backward_epilogue(g, bad, True, True, out)
        assert (out == 5).all()
    with pytest.raises(ValueError, match="out overlaps mask"):
        buf = np.zeros(4 * 11 * 4, np.uint8)
        C.linear_backward_epilogue(g, buf[:8].reshape(4, 2), True, False, buf.view(np.float32).reshape(4, 11))


def test_momentum_without_buf_is_refused():
    with pytest.raises(ValueError, match="buf is required"):
        C.sgd_step(np.zeros(3, np.float32), np.zeros(3, np.float32), None, 0.1, 0.9, 0.0, 0.0, False, True)
