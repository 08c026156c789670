"""The engine on every device: what works on the CPU works on a GPU, with the same numbers.

Each test takes the ``device`` fixture (conftest.py): "cpu", and "cuda" on a real GPU or,
without one, on the emulated GPU of tests/emucupy.py (CuPy's array rules: no implicit
copy to NumPy, no mixing with NumPy arrays; the .cu kernels run on the CPU). Covered:
moving tensors and models (bit for bit), ops staying on their device, errors naming both
devices, gradient checks in float64, training against the CPU, Module.to in the middle
of training (gradients and momentum follow), freezing, transfer and head replacement,
feature extraction and probes, and checkpoints across devices (bit for bit).
PyTorch parity per device is in test_torch_parity.py; the kernels alone in
test_kernels_cuda.py.
"""
import numpy as np
import pytest

import emucupy
import tinytl as tl
from tinytl import backend, nn
from tinytl.kernels import cuda as G
from tinytl.testing import gradcheck


def on(device, a, requires_grad=False):
    return tl.tensor(a, requires_grad=requires_grad, device=device)


def mlp(device, dtype=np.float32, seed=0, sizes=(6, 8, 8, 3)):
    tl.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1], dtype=dtype)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers).to(device)


def state(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_on(device, *arrays):
    for a in arrays:
        assert backend.device_of(a) == device, (backend.device_of(a), device)


# ------------------------------------------------------------ tensors ----

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_tensors_move_bit_for_bit(device, dtype):
    x = (np.random.default_rng(0).standard_normal((3, 5)) * 1e3).astype(dtype)
    t = on(device, x)
    assert t.device == device and t.dtype == dtype and t.shape == (3, 5)
    assert_on(device, t.data)
    assert t.to(device) is t
    back = t.to("cpu")
    assert back.device == "cpu" and isinstance(back.data, np.ndarray)
    np.testing.assert_array_equal(back.numpy(), x)
    np.testing.assert_array_equal(t.numpy(), x)
    assert t.tolist() == x.tolist()
    assert on(device, np.float64(2.5)).item() == 2.5


def test_ops_stay_on_their_device_and_match_the_cpu(device):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    c = np.abs(rng.standard_normal((4, 5))) + 0.5
    exprs = {
        "matmul": lambda a, b, c: a @ b,
        "arith": lambda a, b, c: (a * 2 - c) / c + 1,
        "relu": lambda a, b, c: a.relu(),
        "neg_rsub_rdiv": lambda a, b, c: -a + (1 - c) + 2 / c,
        "pow": lambda a, b, c: c ** 1.5,
        "getitem": lambda a, b, c: a[1:3, ::2] + a[0, ::2],
        "sum_mean": lambda a, b, c: a.sum(0) + a.mean(0),
        "reshape_T": lambda a, b, c: a.reshape(5, 4).T,
    }
    for name, f in exprs.items():
        want = f(on("cpu", a), on("cpu", b), on("cpu", c))
        got = f(on(device, a), on(device, b), on(device, c))
        assert got.device == device, name
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


def test_ops_on_two_devices_raise_naming_both(device):
    if device == "cpu":
        pytest.skip("needs a second device")
    x = np.ones((2, 3))
    with pytest.raises(RuntimeError, match=r"same device.*'c(pu|uda)' and 'c(pu|uda)'"):
        on("cpu", x) + on("cuda", x)
    model = mlp("cuda", sizes=(3, 2))
    with pytest.raises(RuntimeError, match="'cuda' and 'cpu'|'cpu' and 'cuda'"):
        model(on("cpu", x.astype(np.float32)))
    with pytest.raises(RuntimeError, match="logits are on 'cuda' but target is on 'cpu'"):
        nn.CrossEntropyLoss()(model(on("cuda", x.astype(np.float32))), on("cpu", np.array([0, 1])))


# ------------------------------------------------------------ gradients ----

@pytest.mark.parametrize("loss", ["xent", "mse"])
def test_gradcheck_float64(device, loss):
    rng = np.random.default_rng(2)
    model = mlp(device, np.float64, sizes=(4, 5, 3))
    x = on(device, rng.standard_normal((6, 4)), requires_grad=True)
    if loss == "xent":
        y = on(device, rng.integers(0, 3, 6))
        fn = lambda x, *params: nn.CrossEntropyLoss()(model(x), y)  # noqa: E731
    else:
        y = on(device, rng.standard_normal((6, 3)))
        fn = lambda x, *params: nn.MSELoss()(model(x), y)  # noqa: E731
    assert gradcheck(fn, [x, *model.parameters()])


def test_gradcheck_of_the_elementwise_ops(device):
    rng = np.random.default_rng(3)
    a = on(device, rng.standard_normal((3, 4)), requires_grad=True)
    c = on(device, np.abs(rng.standard_normal((3, 4))) + 0.5, requires_grad=True)
    assert gradcheck(lambda a, c: (a * c).relu() + (a[1:] @ c.T).sum() / c[0] - c ** 2.5 + (-a).mean(1, keepdims=True),
                     [a, c])


@pytest.mark.parametrize("loss", ["xent", "mse"])
def test_a_seed_other_than_one_scales_the_gradients(device, loss):
    """loss.backward(seed) with a seed on the device: the losses scale their gradient
    there (on a GPU without reading the seed back), as on the CPU."""
    rng = np.random.default_rng(9)
    z = rng.standard_normal((5, 4)).astype(np.float32)
    y = rng.integers(0, 4, 5) if loss == "xent" else rng.standard_normal((5, 4)).astype(np.float32)
    fn = nn.CrossEntropyLoss() if loss == "xent" else nn.MSELoss()
    grads = {}
    for dev in ("cpu", device):
        zt = on(dev, z, requires_grad=True)
        out = fn(zt, on(dev, y))
        out.backward(on(dev, np.array(-2.5, np.float32)))
        assert zt.grad.dtype == np.float32
        grads[dev] = backend.to_numpy(zt.grad)
    np.testing.assert_allclose(grads[device], grads["cpu"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("labels,msg", [([0, 7, 1, 9], r"target\[1\] = 7"), ([0, 1, -2], r"target\[2\] = -2")])
def test_bad_labels_raise_the_same_error_on_every_device(device, labels, msg):
    """The CPU checks the labels in Python, a GPU in the kernel: the same words, the first bad label."""
    model = mlp(device, sizes=(4, 3))
    x = on(device, np.ones((len(labels), 4), np.float32))
    with pytest.raises(ValueError, match=rf"^cross_entropy: {msg} is not a class index in \[0, 3\)$"):
        nn.CrossEntropyLoss()(model(x), on(device, np.array(labels)))


def test_linear_weights_keep_their_transposed_layout_on_every_device(device):
    """Linear stores its weight transposed (F-contiguous); moves keep that layout both
    ways, so the GPU runs the same GEMM and SGD layout the CPU does."""
    model = mlp("cpu")
    assert all(m.weight.data.flags.f_contiguous for m in model if isinstance(m, nn.Linear))
    model.to(device)
    assert all(m.weight.data.flags.f_contiguous for m in model if isinstance(m, nn.Linear))
    model.to("cpu")
    assert all(m.weight.data.flags.f_contiguous and not m.weight.data.flags.c_contiguous
               for m in model if isinstance(m, nn.Linear))


@pytest.mark.parametrize("seed", [2.0, np.float32(2.0), np.array(2.0), "cpu", "device"])
def test_backward_takes_a_seed_from_anywhere(device, seed):
    """A number, a NumPy value or a tensor on either device: moved to the loss's device."""
    z = np.random.default_rng(6).standard_normal((4, 3)).astype(np.float32)
    y = np.array([0, 2, 1, 1])
    grads = {}
    for s in (seed, None):
        zt = on(device, z, requires_grad=True)
        loss = nn.CrossEntropyLoss()(zt, on(device, y))
        if s is None:
            (loss * 2).backward()
        else:
            loss.backward(on(s if s == "cpu" else device, np.float32(2)) if isinstance(s, str) else s)
        assert_on(device, zt.grad)
        grads[s is None] = backend.to_numpy(zt.grad)
    np.testing.assert_allclose(grads[False], grads[True], rtol=1e-6)


def test_a_seed_takes_the_dtype_of_the_output(device):
    """A float64 number as the seed of a float32 graph whose root is not a loss (as torch)."""
    model = mlp(device, np.float32)
    x = on(device, np.random.default_rng(11).standard_normal((5, 6)).astype(np.float32))
    model(x).relu().sum().backward(2.0)
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_losses_take_the_implicit_seed_without_an_array_of_ones(device, monkeypatch):
    """loss.backward() hands the losses tensor.UNIT_SEED: no ones_like and no product by
    it (two kernel launches per step on a GPU), and the same bits as a seed of 1."""
    xp = backend.get_array_module(on(device, np.ones(1)).data)
    rng = np.random.default_rng(7)
    z, y, t = rng.standard_normal((5, 4)), rng.integers(0, 4, 5), rng.standard_normal((5, 4))
    for loss in (lambda a: nn.CrossEntropyLoss()(a, on(device, y)), lambda a: nn.MSELoss()(a, on(device, t))):
        zt = on(device, z, requires_grad=True)
        loss(zt).backward(on(device, np.array(1.0)))
        want = backend.to_numpy(zt.grad)
        zt.grad = None
        with monkeypatch.context() as m:
            m.setattr(xp, "ones_like", lambda *a, **k: pytest.fail("an array of ones was made"))
            loss(zt).backward()
        np.testing.assert_array_equal(backend.to_numpy(zt.grad), want)


# ------------------------------------------------------------ training ----

@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("opts", [dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
                                  dict(momentum=0.5, dampening=0.1), dict()])
def test_training_matches_the_cpu(device, dtype, tol, opts):
    ref, model = mlp("cpu", dtype), mlp(device, dtype)
    opts_ref = tl.optim.SGD(ref.parameters(), lr=0.1, **opts)
    opt = tl.optim.SGD(model.parameters(), lr=0.1, **opts)
    rng = np.random.default_rng(4)
    for _ in range(5):
        x, y = rng.standard_normal((8, 6)).astype(dtype), rng.integers(0, 3, 8)
        for m, o, dev in ((ref, opts_ref, "cpu"), (model, opt, device)):
            o.zero_grad()
            loss = nn.CrossEntropyLoss()(m(on(dev, x)), on(dev, y))
            loss.backward()
            o.step()
        assert loss.device == device
    assert_on(device, *(p.data for p in model.parameters()), *(p.grad for p in model.parameters()))
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v, rtol=tol, atol=tol, err_msg=k)


def test_module_to_in_the_middle_of_training_moves_grads_and_momentum(device):
    """Two steps on the CPU, .to(device), three more, .to('cpu'), one more: the same as six on the CPU."""
    ref, model = mlp("cpu", np.float64), mlp("cpu", np.float64)
    opt_ref = tl.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    opt = tl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    rng = np.random.default_rng(5)
    batches = [(rng.standard_normal((8, 6)), rng.integers(0, 3, 8)) for _ in range(6)]

    def step(m, o, x, y, dev):
        o.zero_grad()
        nn.CrossEntropyLoss()(m(on(dev, x)), on(dev, y)).backward()
        o.step()

    for i, (x, y) in enumerate(batches):
        step(ref, opt_ref, x, y, "cpu")
        dev = device if 2 <= i < 5 else "cpu"
        if i == 2:
            model.to(device)
            assert_on(device, *(p.data for p in model.parameters()), *(p.grad for p in model.parameters()))
        if i == 5:
            model.to("cpu")
        step(model, opt, x, y, dev)
        if i == 4:
            bufs = [opt.state[id(p)]["momentum_buffer"] for p in model.parameters()]
            assert_on(device, *bufs)  # the optimizer state followed the parameters
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v, rtol=1e-12, atol=1e-14, err_msg=k)


def test_a_training_step_launches_14_kernels_and_waits_for_the_gpu_once(device):
    """784-128-10 at batch 128, SGD with momentum, counted on the emulated GPU: tinytl's own
    kernels (8), CuPy's work (5 cuBLAS GEMMs and the fill of the label check's result),
    and the values read back to the host (1: the label check, before anything is
    written). No array of ones for the loss's seed, no product by it (tensor.UNIT_SEED),
    no host check of the labels, one SGD launch for all four parameters."""
    cp = backend.cupy_if_loaded()
    if device != "cuda" or not isinstance(cp, emucupy._Module):
        pytest.skip("counts launches on the emulated GPU")
    model = mlp(device, sizes=(784, 128, 10))
    opt = tl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(8)
    x = on(device, rng.standard_normal((128, 784)).astype(np.float32))
    y = on(device, rng.integers(0, 10, 128))
    for k in range(3):  # the first step differs (momentum buffers start)
        n, ops, reads = len(cp.launches), len(emucupy.FakeArray.ops), emucupy.FakeArray.reads
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(x), y).backward()
        opt.step()
        names = [name.removesuffix("_f32") for name, _, _ in cp.launches[n:]]
        assert names == ["linear_forward_epilogue", "linear_forward_epilogue", "softmax_xent_check_target",
                         "softmax_xent", "softmax_xent_loss", "linear_backward_epilogue", "linear_backward_epilogue",
                         "sgd_step_many"], names
        assert emucupy.FakeArray.ops[ops:] == ["matmul", "matmul", "fill", "matmul", "matmul", "matmul"], k
        assert emucupy.FakeArray.reads - reads == 1, k
        if k == 0:
            tables = G._sgd_table.cache_info().misses
    assert G._sgd_table.cache_info().misses == tables  # the parameters' table is made once: new gradients


def _trained_one_step(device):
    model = mlp(device, np.float64)
    opt = tl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    rng = np.random.default_rng(10)
    x, y = on(device, rng.standard_normal((8, 6))), on(device, rng.integers(0, 3, 8))
    for _ in range(2):
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(x), y).backward()
        opt.step()
    opt.zero_grad()
    nn.CrossEntropyLoss()(model(x), y).backward()
    return model, opt


def _snapshot(model, opt):
    params = list(model.parameters())
    return ([backend.to_numpy(p.data).copy() for p in params], [backend.to_numpy(p.grad).copy() for p in params],
            [backend.to_numpy(opt.state[id(p)]["momentum_buffer"]).copy() for p in params])


def test_a_step_that_raises_changes_nothing(device):
    """A bad gradient on the last parameter, or a non-finite update under detect_anomaly:
    SGD.step raises before it writes any parameter or any optimizer state."""
    model, opt = _trained_one_step(device)
    params = list(model.parameters())
    before = _snapshot(model, opt)
    good = params[-1].grad
    bad = {"shape": (good[:-1], r"gradient of shape \(2,\).*parameter 5 of group 0"),
           "dtype": (good.astype(np.float32), r"dtype float32 does not match.*parameter 5 of group 0"),
           "device": (backend.to_numpy(good) if device != "cpu" else None, r"parameter 5 of group 0 is on 'cpu'")}
    for what, (grad, msg) in bad.items():
        if grad is None:
            continue
        params[-1].grad = grad
        with pytest.raises(ValueError, match=msg):
            opt.step()
    params[-1].grad = good * np.inf
    with tl.detect_anomaly(), pytest.raises(FloatingPointError, match="no parameter was changed"):
        opt.step()
    params[-1].grad = good
    for got, want in zip(_snapshot(model, opt), before):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    opt.step()  # and the step goes on as if nothing had happened
    model2, opt2 = _trained_one_step(device)
    opt2.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data))


def test_a_refused_first_step_leaves_no_momentum_buffer(device):
    """detect_anomaly refusing the first step must not keep the new, unwritten buffer:
    the next step is a first step again."""
    p = nn.Parameter(on(device, np.ones(3)).data)
    opt = tl.optim.SGD([p], lr=1.0, momentum=0.9)
    p.grad = on(device, np.full(3, np.inf)).data
    with tl.detect_anomaly(), pytest.raises(FloatingPointError):
        opt.step()
    assert "momentum_buffer" not in opt.state.get(id(p), {})
    p.grad = on(device, np.full(3, 0.5)).data
    opt.step()
    np.testing.assert_array_equal(backend.to_numpy(p.data), 0.5)   # 1 - 1.0 * 0.5: buf = grad


def test_what_the_update_kernels_would_refuse_is_refused_before_any_write(device):
    """A gradient partly over its parameter's memory, or a read-only parameter (NumPy),
    found before the first parameter is written, and no momentum buffer kept."""
    base = on(device, np.ones(12)).data
    a, b = nn.Parameter(on(device, np.ones(4)).data), nn.Parameter(base[:8])
    opt = tl.optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = on(device, np.ones(4)).data, base[2:10]
    with pytest.raises(ValueError, match="gradient of parameter 1 of group 0 overlaps"):
        opt.step()
    if device == "cpu":
        b.data, b.grad = np.ones(8), np.ones(8)
        b.data.flags.writeable = False
        with pytest.raises(ValueError, match="parameter 1 of group 0 is a read-only array"):
            opt.step()
    np.testing.assert_array_equal(backend.to_numpy(a.data), 1.0)
    assert not opt.state
    b.data = on(device, np.ones(8)).data
    b.grad = b.data                                       # the gradient may be the parameter itself
    opt.step()
    np.testing.assert_allclose(backend.to_numpy(b.data), 0.9)


def test_load_state_dict_copies_what_it_is_given(device):
    """Two optimizers loaded from one state dict must not share a momentum buffer."""
    p, q = (nn.Parameter(on(device, np.ones(3)).data) for _ in range(2))
    saved = {"state": {0: {"momentum_buffer": on(device, np.full(3, 0.5)).data}},
             "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]}
    opts = [tl.optim.SGD([t], lr=0.1, momentum=0.9) for t in (p, q)]
    for o in opts:
        o.load_state_dict(saved)
    bufs = [o.state[id(t)]["momentum_buffer"] for o, t in zip(opts, (p, q))]
    assert bufs[0] is not bufs[1] and bufs[0] is not saved["state"][0]["momentum_buffer"]
    p.grad = on(device, np.ones(3)).data
    opts[0].step()
    np.testing.assert_array_equal(backend.to_numpy(bufs[1]), 0.5)


def test_one_optimizer_over_two_devices_is_all_or_nothing(device):
    if device == "cpu":
        pytest.skip("needs a second device")
    cpu_model, gpu_model = mlp("cpu", np.float64), mlp(device, np.float64)
    params = list(cpu_model.parameters()) + list(gpu_model.parameters())
    opt = tl.optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = p.data * 0 + 1
    before = [backend.to_numpy(p.data).copy() for p in params]
    params[-1].grad = params[-1].grad.astype(np.float32)
    with pytest.raises(ValueError, match="parameter 11 of group 0"):
        opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(backend.to_numpy(p.data), b)
    assert not opt.state
    params[-1].grad = params[-1].grad.astype(np.float64)
    opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(backend.to_numpy(p.data), b - 0.1)


def test_sgd_updates_a_strided_parameter_in_place(device):
    """A view set by hand (neither C- nor F-contiguous): updated through the view by array
    ops (the kernels take contiguous arrays), with the numbers of a contiguous one."""
    base = on(device, np.ones((4, 6))).data
    p = nn.Parameter(base[:, ::2])
    q = nn.Parameter(on(device, np.ones((4, 3))).data)
    opts = [tl.optim.SGD([t], lr=0.1, momentum=0.9, weight_decay=0.01) for t in (p, q)]
    for _ in range(3):
        for t, opt in zip((p, q), opts):
            t.grad = on(device, np.full((4, 3), 0.5)).data
            opt.step()
    np.testing.assert_array_equal(backend.to_numpy(base)[:, ::2], backend.to_numpy(q.data))
    np.testing.assert_array_equal(backend.to_numpy(base)[:, 1::2], 1.0)


# ------------------------------------------------------------ transfer ----

def test_freezing_keeps_frozen_weights_bit_for_bit(device):
    model = mlp(device)
    frozen = tl.transfer.freeze(model, "0.*")
    assert frozen
    before = state(model)
    opt = tl.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    rng = np.random.default_rng(6)
    for _ in range(3):
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(on(device, rng.standard_normal((8, 6)).astype(np.float32))),
                              on(device, rng.integers(0, 3, 8))).backward()
        opt.step()
    after = state(model)
    for k in before:
        same = np.array_equal(before[k], after[k])
        assert same == k.startswith("0."), k
    assert model[0].weight.grad is None


def test_transfer_replace_head_and_probe(device):
    src = mlp("cpu", seed=1)
    dst = mlp(device, seed=2)
    report = tl.transfer.transfer_weights(src, dst)
    assert len(report.copied) == 6 and not (report.skipped_shape or report.missing or report.skipped_dtype)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)
    head = tl.transfer.replace_head(dst, 5)
    assert head.weight.device == device and head.weight.shape == (5, 8)
    backbone = dst[:-1]
    tl.transfer.freeze(backbone)
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((40, 6)).astype(np.float32), rng.integers(0, 5, 40)
    feats = tl.transfer.extract_features(backbone, X, batch_size=16)
    assert isinstance(feats, np.ndarray) and feats.shape == (40, 8)
    with tl.no_grad():
        want = mlp("cpu", seed=1)[:-1](on("cpu", X)).numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    frozen = {k: v for k, v in state(dst).items() if not k.startswith("4.")}
    tl.transfer.linear_probe(backbone, head, X, y, epochs=2, lr=0.1, batch_size=16)
    assert head.weight.device == device
    for k, v in frozen.items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)


# ------------------------------------------------------------ checkpoints ----

@pytest.mark.parametrize("ext", ["safetensors", "npz"])
def test_checkpoints_cross_devices_bit_for_bit(device, ext, tmp_path):
    """Saved on one device, loaded on the other, both ways, float32 and float64."""
    for dtype in (np.float32, np.float64):
        trained = mlp(device, dtype, seed=3)
        path = tmp_path / f"m.{ext}"
        tl.save(trained, path)
        on_cpu = mlp("cpu", dtype, seed=4)
        on_cpu.load_state_dict(tl.load(path))
        for k, v in trained.state_dict().items():
            np.testing.assert_array_equal(on_cpu.state_dict()[k], v)
        tl.save(on_cpu, path)
        back = mlp(device, dtype, seed=5)
        back.load_state_dict(tl.load(path))
        assert_on(device, *(p.data for p in back.parameters()))
        for k, v in trained.state_dict().items():
            np.testing.assert_array_equal(back.state_dict()[k], v)
