"""tl.nn.functional's new ops and the layers around them (activations, Dropout,
LayerNorm, BatchNorm1d, Unflatten): finite-difference gradchecks in float64 of every op
and every layer's parameters, on every device; parity with torch (forward, input and
parameter gradients, BatchNorm's running statistics) where torch imports."""
import math

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl.nn import functional as F
from tinytl.testing import gradcheck


def t(a, device="cpu", grad=True):
    return tl.tensor(np.asarray(a), requires_grad=grad, device=device)


def host(a):
    return tl.backend.to_numpy(a.data if isinstance(a, tl.Tensor) else a)


def compare_torch(tl_fn, torch_fn, arrays, rtol=1e-10, atol=1e-12, seed=0, device="cpu"):
    """Forward and every input's gradient of tl_fn against torch_fn, for a random
    upstream gradient; arrays are NumPy (float64 for 1e-10)."""
    torch = pytest.importorskip("torch")
    xs = [t(a, device) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, ty = tl_fn(*xs), torch_fn(*ts)
    np.testing.assert_allclose(host(y), ty.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(seed).normal(size=ty.shape).astype(arrays[0].dtype)
    y.backward(tl.tensor(g, device=device))
    ty.backward(torch.tensor(g))
    for x, tx in zip(xs, ts):
        np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), rtol=rtol, atol=atol)
    return xs, ts


# ---------------------------------------------------------------- activations ----

ACTIVATIONS = [
    ("softmax", lambda x: F.softmax(x, 1), lambda x: __import__("torch").softmax(x, 1)),
    ("softmax0", lambda x: F.softmax(x, dim=0), lambda x: __import__("torch").softmax(x, 0)),
    ("log_softmax", lambda x: F.log_softmax(x, -1), lambda x: __import__("torch").log_softmax(x, -1)),
    ("gelu", F.gelu, lambda x: __import__("torch").nn.functional.gelu(x)),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
     lambda x: __import__("torch").nn.functional.gelu(x, approximate="tanh")),
    ("silu", F.silu, lambda x: __import__("torch").nn.functional.silu(x)),
    ("leaky_relu", F.leaky_relu, lambda x: __import__("torch").nn.functional.leaky_relu(x)),
    ("leaky_relu_0.2", lambda x: F.leaky_relu(x, 0.2),
     lambda x: __import__("torch").nn.functional.leaky_relu(x, 0.2)),
    ("erf", F.erf, lambda x: __import__("torch").erf(x)),
]


@pytest.mark.parametrize("name,fn,_", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_gradcheck(device, rng, name, fn, _):
    x = rng.normal(size=(3, 4)) * 2
    x[np.abs(x) < 1e-3] = 0.5          # away from leaky_relu's kink
    assert gradcheck(fn, [t(x, device)])


@pytest.mark.parametrize("name,fn,torch_fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_matches_torch(rng, name, fn, torch_fn):
    x = rng.normal(size=(6, 5)) * 3
    compare_torch(fn, torch_fn, [x])
    compare_torch(fn, torch_fn, [x.astype(np.float32)], rtol=1e-4, atol=1e-6)


def test_softmax_is_stable_and_exact_on_large_logits():
    torch = pytest.importorskip("torch")
    x = np.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, 1e4]])
    np.testing.assert_allclose(F.log_softmax(tl.tensor(x), 1).data, torch.log_softmax(torch.tensor(x), 1).numpy())
    assert np.isfinite(F.softmax(tl.tensor(x), 1).data).all()
    with pytest.warns(UserWarning, match="Implicit dimension"):
        F.softmax(tl.tensor(x))
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        F.softmax(tl.tensor(x), 2)


def test_erf_accuracy_without_scipy():
    """Cody's erf: within 1 ulp-ish of math.erf in float64, correctly rounded in float32."""
    xs = np.linspace(-7, 7, 20001)
    ref = np.array([math.erf(v) for v in xs])
    got = F.erf(tl.tensor(xs)).data
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)) < 1e-15
    x32 = xs.astype(np.float32)
    ref32 = np.array([math.erf(float(v)) for v in x32])
    got32 = F.erf(tl.tensor(x32)).data
    assert got32.dtype == np.float32
    assert np.max(np.abs(got32 - ref32) / np.maximum(np.abs(ref32), 1e-30)) < 1.2e-7


def test_gelu_exact_form_in_the_tails():
    """GELU = x erfc(-x/sqrt2)/2: relative accuracy kept for very negative x (float32 too)."""
    xs = np.array([-12.0, -9.0, -6.0, -3.0, -0.5, 0.0, 0.5, 3.0, 9.0])
    ref = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in xs])
    got = F.gelu(tl.tensor(xs)).data
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)
    got32 = F.gelu(tl.tensor(xs.astype(np.float32))).data
    ref32 = np.array([float(v) * 0.5 * math.erfc(-float(v) / math.sqrt(2)) for v in xs.astype(np.float32)])
    np.testing.assert_allclose(got32, ref32, rtol=1.2e-7, atol=0)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(tl.tensor(xs), approximate="fast")


def test_activation_layers_and_their_reprs():
    torch = pytest.importorskip("torch")
    pairs = [(nn.LeakyReLU(), torch.nn.LeakyReLU()), (nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)),
             (nn.GELU(), torch.nn.GELU()), (nn.GELU("tanh"), torch.nn.GELU("tanh")),
             (nn.SiLU(), torch.nn.SiLU()), (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
             (nn.LogSoftmax(1), torch.nn.LogSoftmax(1)), (nn.Dropout(0.3), torch.nn.Dropout(0.3)),
             (nn.Dropout(), torch.nn.Dropout()),
             (nn.LayerNorm(4), torch.nn.LayerNorm(4)), (nn.LayerNorm(2, bias=False), torch.nn.LayerNorm(2, bias=False)),
             (nn.LayerNorm((3, 4), elementwise_affine=False),
                                                        torch.nn.LayerNorm((3, 4), elementwise_affine=False)),
             (nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)),
             (nn.BatchNorm1d(2, bias=False), torch.nn.BatchNorm1d(2, bias=False)),
             (nn.BatchNorm1d(3, momentum=None, affine=False), torch.nn.BatchNorm1d(3, momentum=None, affine=False)),
             (nn.Unflatten(1, (2, 3)), torch.nn.Unflatten(1, (2, 3)))]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
    x = np.random.default_rng(0).normal(size=(4, 5))
    for ours, theirs in pairs[:7]:
        np.testing.assert_allclose(ours(tl.tensor(x)).data, theirs(torch.tensor(x)).numpy(), rtol=1e-10)


# -------------------------------------------------------------------- dropout ----

def test_dropout_scales_reproduces_and_is_off_in_eval(device):
    x = tl.tensor(np.ones((200, 50)), requires_grad=True, device=device)
    tl.manual_seed(3)
    y = F.dropout(x, p=0.25)
    tl.manual_seed(3)
    y2 = nn.Dropout(0.25)(x)
    np.testing.assert_array_equal(host(y), host(y2))                     # manual_seed reproduces the mask
    vals = np.unique(host(y))
    np.testing.assert_allclose(vals, [0.0, 1 / 0.75])                    # inverted scaling
    assert abs((host(y) == 0).mean() - 0.25) < 0.02
    y.backward(tl.tensor(np.full((200, 50), 2.0), device=device))
    np.testing.assert_allclose(host(x.grad), 2.0 * host(y))              # same mask, same scale
    d = nn.Dropout(0.5).eval()
    assert d(x) is x or np.array_equal(host(d(x)), host(x))
    assert F.dropout(x, 0.5, training=False) is x
    np.testing.assert_array_equal(host(F.dropout(x, 1.0)), 0)
    assert F.dropout(x, 0.0) is x


def test_dropout_gradcheck_with_a_fixed_mask(device, rng):
    x = t(rng.normal(size=(4, 3)), device)

    def fn(x):
        tl.manual_seed(11)       # the same mask at every evaluation
        return F.dropout(x, 0.4)
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", True])
def test_dropout_bad_p(p):
    with pytest.raises(ValueError, match="p="):
        nn.Dropout(p)
    with pytest.raises(ValueError, match="p="):
        F.dropout(tl.tensor(np.ones(3)), p)


def test_dropout_in_a_model_switches_with_train_and_eval():
    torch = pytest.importorskip("torch")
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    x = tl.tensor(np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))
    m.eval()
    a, b = m(x).data, m(x).data
    np.testing.assert_array_equal(a, b)
    m.train()
    tl.manual_seed(0)
    c = m(x).data
    assert not np.array_equal(a, c)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    m.eval()
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    np.testing.assert_allclose(m(x).data, tm.eval()(torch.tensor(x.data)).detach().numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ LayerNorm ----

@pytest.mark.parametrize("shape,norm", [((4, 5), (5,)), ((2, 3, 4), (3, 4)), ((3, 2, 4), (4,))])
def test_layer_norm_gradcheck(device, rng, shape, norm):
    x = t(rng.normal(size=shape), device)
    w = t(rng.normal(size=norm), device)
    b = t(rng.normal(size=norm), device)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, norm, w, b), [x, w, b])
    assert gradcheck(lambda x: F.layer_norm(x, norm), [x])
    assert gradcheck(lambda x, w: F.layer_norm(x, norm, w, None), [x, w])


def test_layer_norm_layer_matches_torch(rng):
    torch = pytest.importorskip("torch")
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        ours = nn.LayerNorm((3, 4), eps=1e-3, dtype=dtype)
        theirs = torch.nn.LayerNorm((3, 4), eps=1e-3, dtype=torch.float64 if dtype == np.float64 else torch.float32)
        w, b = rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=(3, 4)).astype(dtype)
        ours.load_state_dict({"weight": w, "bias": b})
        theirs.load_state_dict({"weight": torch.tensor(w), "bias": torch.tensor(b)})
        x = rng.normal(size=(2, 3, 4)).astype(dtype) * 3 + 1
        compare_torch(ours, theirs, [x], rtol=tol, atol=tol * 1e-2)
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=tol, atol=tol * 1e-2)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=tol, atol=tol * 1e-2)
    assert list(nn.LayerNorm(4).state_dict()) == list(torch.nn.LayerNorm(4).state_dict())
    assert nn.LayerNorm(4, bias=False).bias is None


def test_layer_norm_bad_shapes_name_the_layer():
    with pytest.raises(ValueError, match=r"LayerNorm: normalized_shape=\[4\] expects an input of shape \[\*, 4\]"):
        nn.LayerNorm(4)(tl.tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm(0)


# ---------------------------------------------------------------- BatchNorm1d ----

@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(device, rng, shape, training):
    x = t(rng.normal(size=shape), device)
    w = t(rng.normal(size=3), device)
    b = t(rng.normal(size=3), device)
    rm = tl.tensor(rng.normal(size=3), device=device)
    rv = tl.tensor(rng.uniform(0.5, 2, size=3), device=device)
    # running statistics are updated in place by training; gradcheck re-runs forward,
    # so they are passed as None (batch statistics only) when training
    stats = (None, None) if training else (rm, rv)
    assert gradcheck(lambda x, w, b: F.batch_norm(x, *stats, w, b, training=training), [x, w, b])
    assert gradcheck(lambda x: F.batch_norm(x, *stats, training=training), [x])


@pytest.mark.parametrize("dtype,tol,kwargs", [
    (np.float64, 1e-10, {}), (np.float32, 1e-4, {}), (np.float64, 1e-10, {"momentum": None}),
    (np.float64, 1e-10, {"momentum": 0.3, "eps": 1e-3}), (np.float64, 1e-10, {"affine": False}),
    (np.float64, 1e-10, {"bias": False}), (np.float64, 1e-10, {"track_running_stats": False})])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batch_norm_layer_matches_torch_over_train_steps(rng, dtype, tol, kwargs, shape):
    torch = pytest.importorskip("torch")
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    ours = nn.BatchNorm1d(3, dtype=dtype, **kwargs)
    theirs = torch.nn.BatchNorm1d(3, dtype=tdt, **kwargs)
    if ours.affine:
        for name in ("weight", "bias"):
            if getattr(ours, name) is not None:
                v = rng.normal(size=3).astype(dtype)
                getattr(ours, name).data[...] = v
                with torch.no_grad():
                    getattr(theirs, name).copy_(torch.tensor(v))
    for step in range(4):                       # train: batch statistics, running ones updated
        x = (rng.normal(size=shape) * 2 + step).astype(dtype)
        compare_torch(ours, theirs, [x], rtol=tol, atol=tol * 1e-2, seed=step)
        if ours.affine:
            np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=tol, atol=tol * 1e-2)
            if ours.bias is not None:
                np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=tol, atol=tol * 1e-2)
            ours.zero_grad()
            theirs.zero_grad()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=tol)
        assert ours.state_dict()[k].dtype == v.numpy().dtype
    ours.eval()
    theirs.eval()
    x = rng.normal(size=shape).astype(dtype)
    compare_torch(ours, theirs, [x], rtol=tol, atol=tol * 1e-2)


def test_batch_norm_on_every_device_matches_the_cpu(device, rng):
    cpu = nn.BatchNorm1d(3, dtype=np.float64)
    dev = nn.BatchNorm1d(3, dtype=np.float64).to(device)
    for _ in range(3):
        x = rng.normal(size=(5, 3))
        a, b = cpu(tl.tensor(x)), dev(tl.tensor(x, device=device))
        np.testing.assert_allclose(host(b), host(a), rtol=1e-12)
    for k, v in cpu.state_dict().items():
        np.testing.assert_allclose(dev.state_dict()[k], v, rtol=1e-12)
    assert dev.running_mean.device == device and dev.num_batches_tracked.dtype == np.int64


def test_batch_norm_bad_inputs_name_the_layer_and_shape():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): expected input of shape \(N, 3\) or \(N, 3, L\), "
                                         r"got \(2, 4\)"):
        bn(tl.tensor(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        bn(tl.tensor(np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(tl.tensor(np.zeros((1, 3), np.float32)))
    assert int(bn.num_batches_tracked.data) == 0              # refused before any state changed
    bn.eval()(tl.tensor(np.zeros((1, 3), np.float32)))         # eval takes a single sample
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm1d(0)


def test_a_torch_batchnorm_mlp_loads_and_agrees_in_eval(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                             torch.nn.Dropout(0.2), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(tm.parameters(), lr=0.1)
    for _ in range(5):                              # some training: running stats move
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tm(torch.randn(16, 6)), torch.randint(0, 3, (16,))).backward()
        opt.step()
    m = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    assert list(m.state_dict()) == list(tm.state_dict())
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    assert int(m[1].num_batches_tracked.data) == 5
    x = rng.normal(size=(10, 6)).astype(np.float32)
    np.testing.assert_allclose(m.eval()(tl.tensor(x)).data, tm.eval()(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ Unflatten ----

def test_unflatten(device, rng):
    x = t(rng.normal(size=(2, 12)), device)
    u = nn.Unflatten(1, (3, 4))
    assert u(x).shape == (2, 3, 4)
    assert nn.Unflatten(-1, (2, -1))(x).shape == (2, 2, 6)
    assert gradcheck(lambda x: u(x) * 2.0, [x])
    with pytest.raises(ValueError, match="multiply up"):
        nn.Unflatten(1, (5, 2))(x)
    with pytest.raises(TypeError, match="unflattened_size"):
        nn.Unflatten(1, 12)
    assert list(nn.Sequential(nn.Flatten(), nn.Unflatten(1, (3, 4)))(x).shape) == [2, 3, 4]
