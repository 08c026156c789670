"""The tensor surface under PyTorch's names (tinytl/ops.py, creation.py, dtypes.py, device.py).

Every differentiable op: a finite-difference gradient check in float64 on every device,
and parity with torch (forward and gradients, float64 to 1e-10, float32 forward to 1e-4)
where torch is importable. Then the choices torch makes at ties and kinks, dtypes,
devices, Python's protocols, the in-place rule, creation, and the errors.
"""
import copy

import numpy as np
import pytest

import tinytl as tl
from tinytl import backend
from tinytl.testing import gradcheck


def T(a, device="cpu", grad=True, dtype=np.float64):
    return tl.tensor(np.asarray(a, dtype=dtype), requires_grad=grad, device=device)


def npy(t):
    return backend.to_numpy(t.data)


R = np.random.default_rng(0)
A = R.standard_normal((3, 4))
B = R.standard_normal((3, 4))
ROW = R.standard_normal((1, 4))
POS = R.uniform(0.5, 2.0, (3, 4))
M = R.standard_normal((4, 2))

# name: (function of (module, *tensors) written once for tinytl and torch, input arrays)
OPS = {
    "add_bcast": (lambda m, a, b: a + b, [A, ROW]),
    "sub_bcast": (lambda m, a, b: a - b, [A, ROW]),
    "mul_bcast": (lambda m, a, b: a * b, [A, ROW]),
    "div_bcast": (lambda m, a, b: a / b, [A, POS[:1]]),
    "reflected": (lambda m, a: 2.0 - a + 3.0 * a - 1.5 / (a * a + 1) + 0.5 + a * 2, [A]),
    "pow_scalar": (lambda m, a: a ** 3 + a ** 2.0 + a ** 0, [A]),
    "pow_fractional": (lambda m, a: a ** 1.5, [POS]),
    "pow_tensor": (lambda m, a, b: a ** b, [POS, B]),
    "rpow": (lambda m, a: 2.0 ** a, [A]),
    "torch_pow": (lambda m, a, b: m.pow(a, b) + m.pow(a, 2), [POS, ROW]),
    "neg": (lambda m, a: -a, [A]),
    "matmul": (lambda m, a, b: a @ b, [A, M]),
    "mm": (lambda m, a, b: m.mm(a, b), [A, M]),
    "abs": (lambda m, a: m.abs(a) + abs(a), [A]),
    "exp": (lambda m, a: m.exp(a) + a.exp(), [A]),
    "log": (lambda m, a: m.log(a), [POS]),
    "sqrt": (lambda m, a: m.sqrt(a), [POS]),
    "tanh": (lambda m, a: m.tanh(a) + a.tanh(), [A]),
    "sigmoid": (lambda m, a: m.sigmoid(a * 20) + a.sigmoid(), [A]),
    "relu": (lambda m, a: m.relu(a) + a.relu(), [A]),
    "clamp": (lambda m, a: m.clamp(a, min=-0.5, max=0.7) + a.clamp(min=0.1) + a.clip(max=0.2), [A]),
    "clamp_tensor_bounds": (lambda m, a, b: m.clamp(a, min=b) + m.clamp(b, max=a), [A[:, :1], B]),
    "sign": (lambda m, a: m.sign(a) * a, [A]),
    "maximum": (lambda m, a, b: m.maximum(a, b) + m.minimum(a, b) * 2, [A, ROW]),
    "max_other": (lambda m, a, b: m.max(a, b), [A, B]),
    "where": (lambda m, a, b: m.where(a > b, a, b * 2) + m.where(a > 0, a, 0.0), [A, ROW]),
    "sum_dim": (lambda m, a: a.sum(dim=1) + a.sum(1, keepdim=True).sum() + m.sum(a, dim=(0, 1)), [A]),
    "mean_dim": (lambda m, a: a.mean(dim=0) + m.mean(a, dim=-1, keepdim=True).sum(), [A]),
    "var": (lambda m, a: a.var() + a.var(dim=1) + a.var(1, unbiased=False) + a.var(0, correction=0).sum(), [A]),
    "std": (lambda m, a: a.std() + a.std(dim=0, keepdim=True).sum() + m.std(a, 1, unbiased=False), [A]),
    "max_all": (lambda m, a: a.max() + m.min(a), [A]),
    "max_dim": (lambda m, a: a.max(dim=1).values + m.max(a, 1)[0] + a.min(0, keepdim=True).values.sum(), [A]),
    "amax": (lambda m, a: m.amax(a, dim=1) + a.amin(dim=(0, 1)), [A]),
    "logsumexp": (lambda m, a: m.logsumexp(a, dim=1) + a.logsumexp(dim=(0, 1)), [A]),
    "norm": (lambda m, a: a.norm() + m.norm(a, p=1) + a.norm(p=float("inf")) + a.norm(dim=1).sum()
             + m.norm(a, p=3, dim=0).sum() + a.norm(p="fro"), [A]),
    "view": (lambda m, a: a.view(4, 3) * a.view(-1, 6).view(12).reshape(4, 3), [A]),
    "flatten": (lambda m, a: m.flatten(a.reshape(3, 2, 2), 1) + a.reshape(3, 2, 2).flatten(start_dim=1), [A]),
    "unsqueeze": (lambda m, a: a.unsqueeze(0).squeeze() + a.unsqueeze(-1).squeeze(-1) + m.squeeze(a[:1], 0), [A]),
    "transpose": (lambda m, a: a.transpose(0, 1) + m.transpose(a, 1, 0) + a.T + a.t(), [A]),
    "permute": (lambda m, a: a.reshape(3, 2, 2).permute(2, 0, 1) * m.permute(a.reshape(3, 2, 2), (2, 0, 1)), [A]),
    "getitem_basic": (lambda m, a: a[1] + a[:, 1:3].sum() + a[..., -1].sum() + a[None, 0, ::2].sum(), [A]),
    "getitem_repeats": (lambda m, a: a[[0, 2, 0, 0]] + a[m.tensor([1, 1, 0])].sum(0), [A]),
    "getitem_rows_cols": (lambda m, a: a[[0, 2, 0], [1, 1, 3]], [A]),
    "getitem_mask": (lambda m, a: a[a > 0].sum() + a[:, m.tensor([True, False, True, False])].sum(), [A]),
    "cat": (lambda m, a, b: m.cat([a, b, a], dim=1) + m.cat((b, b, a), 1), [A, B]),
    "stack": (lambda m, a, b: m.stack([a, b]) * m.stack([b, a], dim=2).permute(2, 0, 1), [A, B]),
    "split": (lambda m, a: a.split(2, dim=1)[1] + a.chunk(2, 1)[0] * 2 + m.unbind(a, 1)[3].unsqueeze(1), [A]),
    "expand": (lambda m, a: a.expand(3, 4) * a.expand(2, -1, -1).sum(0) + a.repeat(2, 3).sum(), [ROW]),
    "clone": (lambda m, a: a.clone() * a, [A]),
    "sort": (lambda m, a: a.sort(dim=1).values * m.sort(a, 0, descending=True)[0], [A]),
    "topk": (lambda m, a: a.topk(2, dim=1).values.sum() + m.topk(a, 2, dim=0, largest=False)[0].sum(), [A]),
    "to_double": (lambda m, a: (a.float().double() * a), [A]),
    "iter": (lambda m, a: sum(row * (i + 1) for i, row in enumerate(a)), [A]),
}


def _run_tl(name, device, dtype=np.float64):
    fn, arrays = OPS[name]
    xs = [T(a, device, dtype=dtype) for a in arrays]
    return fn(tl, *xs), xs


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck(name, device):
    fn, arrays = OPS[name]
    xs = [T(a, device) for a in arrays]
    if name == "to_double":        # float32 round trip: finite differences need float64 throughout
        fn = lambda m, a: a.double() * a   # noqa: E731
    assert gradcheck(lambda *t: fn(tl, *t), xs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(OPS))
def test_torch_parity_float64(name):
    torch = pytest.importorskip("torch")
    fn, arrays = OPS[name]
    out, xs = _run_tl(name, "cpu")
    out.sum().backward()
    txs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    tout = fn(torch, *txs)
    tout.sum().backward()
    np.testing.assert_allclose(npy(out), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for x, tx in zip(xs, txs):
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", sorted(OPS))
def test_torch_parity_float32(name, device):
    torch = pytest.importorskip("torch")
    fn, arrays = OPS[name]
    out, _ = _run_tl(name, device, np.float32)
    tout = fn(torch, *[torch.tensor(a, dtype=torch.float32) for a in arrays])
    assert str(out.dtype) == str(tout.dtype).removeprefix("torch.")
    np.testing.assert_allclose(npy(out), tout.numpy(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------ torch's choices at ties ----

TIES = {
    "max_all_ties": (lambda m, a: a.max(), [[1.0, 3.0, 3.0, 2.0, 3.0]]),
    "min_all_ties": (lambda m, a: m.min(a), [[1.0, -3.0, -3.0]]),
    "max_dim_ties": (lambda m, a: a.max(dim=1).values, [[[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]]),
    "argmax_first": (lambda m, a: a[m.arange(2), a.argmax(dim=1)], [[[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]]),
    "amax_ties": (lambda m, a: a.amax(dim=1), [[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]]),
    "maximum_ties": (lambda m, a: m.maximum(a, m.ones_like(a) * 2.0) + m.minimum(a, m.zeros_like(a)),
                     [[2.0, 0.0, 1.0, 3.0]]),
    "clamp_bounds": (lambda m, a: a.clamp(min=-1.0, max=1.0), [[-1.0, 1.0, 0.5, 2.0, -2.0]]),
    "abs_sign_zero": (lambda m, a: a.abs() + a.sign(), [[0.0, 1.0, -2.0]]),
    "relu_zero": (lambda m, a: m.relu(a), [[0.0, 1.0, -2.0]]),
    "norm_zero": (lambda m, a: a.norm() + a.norm(dim=1).sum(), [[[0.0, 0.0], [0.0, 0.0]]]),
    "norm_inf_ties": (lambda m, a: a.norm(p=float("inf")), [[3.0, -3.0, 1.0]]),
    "sqrt_of_square": (lambda m, a: (a * a + 1).sqrt(), [[0.0, 2.0]]),
}


@pytest.mark.parametrize("name", sorted(TIES))
def test_gradients_at_ties_and_kinks_match_torch(name, device):
    torch = pytest.importorskip("torch")
    fn, arrays = TIES[name]
    xs = [T(a, device) for a in arrays]
    fn(tl, *xs).sum().backward()
    txs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    fn(torch, *txs).sum().backward()
    for x, tx in zip(xs, txs):
        np.testing.assert_allclose(backend.to_numpy(x.grad), tx.grad.numpy(), rtol=1e-12, err_msg=name)


def test_max_with_dim_is_a_named_pair_and_without_a_scalar(device):
    x = T([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]], device)
    r = x.max(dim=1)
    assert type(r).__name__ == "max" and r.values.shape == (2,) and r.indices.dtype == tl.int64
    values, indices = r
    assert indices.tolist() == [1, 0] and values.tolist() == [5.0, 7.0] and not indices.requires_grad
    assert tl.max(x).item() == 7.0 and x.max().shape == ()
    assert tl.min(x, 1, keepdim=True).values.shape == (2, 1)
    assert x.argmax().item() == 3 and x.argmax(dim=1).tolist() == [1, 0] and tl.argmin(x, 0).tolist() == [0, 1, 0]


# ------------------------------------------------------------- comparisons ----

def test_comparisons_are_bool_tensors_without_gradient(device):
    a, b = T([1.0, 2.0, 3.0], device), T([3.0, 2.0, 1.0], device)
    cases = {"==": (a == b, [False, True, False]), "!=": (a != b, [True, False, True]),
             "<": (a < b, [True, False, False]), "<=": (a <= 2, [True, True, False]),
             ">": (a > b, [False, False, True]), ">=": (2 >= a, [True, True, False]),
             "eq": (a.eq(b), [False, True, False]), "ne": (tl.ne(a, 2.0), [True, False, True]),
             "lt": (a.lt(b), [True, False, False]), "le": (tl.le(a, b), [True, True, False]),
             "gt": (a.gt(1), [False, True, True]), "ge": (tl.ge(a, b), [False, True, True])}
    for op, (got, want) in cases.items():
        assert got.dtype == tl.bool and not got.requires_grad and got.tolist() == want, op
    pred, y = tl.tensor([1, 2, 0], device=device), tl.tensor([1, 0, 0], device=device)
    correct = (pred == y).sum().item()
    assert correct == 2 and isinstance(correct, int) and (pred == y).sum().dtype == tl.int64
    assert ((a > 1) & (b > 1)).tolist() == [False, True, False] and (~(a > 1)).tolist() == [True, False, False]
    assert (a == None) is False and (a != None) is True   # noqa: E711  (identity, as torch)


def test_tensors_hash_by_identity():
    a, b = tl.ones(3), tl.ones(3)
    d = {a: 1, b: 2}
    assert d[a] == 1 and d[b] == 2 and len({a, b, a}) == 2


# ------------------------------------------------------------------ dtypes ----

def test_dtype_names_and_conversions(device):
    x = tl.tensor([1.5, -2.0], device=device)
    assert x.dtype == tl.float32 == tl.float and x.dtype == np.float32
    assert tl.float64 is tl.double and tl.int64 is tl.long and tl.int32 is tl.int and tl.float16 is tl.half
    assert x.double().dtype == tl.float64 and x.half().dtype == tl.float16 and x.float() is x
    assert x.long().tolist() == [1, -2] and x.long().dtype == tl.int64 and x.int().dtype == tl.int32
    assert x.bool().tolist() == [True, True] and tl.tensor([0, 3]).byte().dtype == tl.uint8
    assert x.to(tl.float64).dtype == tl.float64 and x.to(np.float64).dtype == tl.float64
    assert x.to(dtype=tl.int64).dtype == tl.int64 and x.to(x) is x
    assert tl.tensor([1, 2]).dtype == tl.int64 and tl.tensor([True]).dtype == tl.bool
    assert tl.tensor(np.zeros(2)).dtype == tl.float64 and tl.tensor([1.0], dtype=np.float64).dtype == tl.float64
    assert x.type() == ("tinytl.cuda.FloatTensor" if device == "cuda" else "tinytl.FloatTensor")
    assert x.type(tl.float64).dtype == tl.float64 and x.type("torch.LongTensor").dtype == tl.int64
    assert x.is_floating_point() and not x.long().is_floating_point() and tl.get_default_dtype() == tl.float32
    assert (tl.tensor([1, 2]) * 1.5).dtype == tl.float64           # NumPy's promotion (torch: float32)
    assert tl.tensor([True, False]).sum().dtype == tl.int64 and tl.arange(3).sum().item() == 3
    with pytest.raises(TypeError, match="dtype must be one of"):
        tl.zeros(2, dtype="complex64")


def test_casts_between_floats_carry_the_gradient_and_to_ints_cut_it(device):
    x = T([1.0, 2.0], device)
    y = x.float()
    assert y.requires_grad and y.dtype == tl.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64 and np.allclose(backend.to_numpy(x.grad), [2.0, 4.0])
    assert not x.long().requires_grad


def test_mean_of_integers_raises_as_torch():
    with pytest.raises(RuntimeError, match="mean\\(\\): could not infer output dtype"):
        tl.arange(3).mean()
    assert tl.arange(4).float().mean().item() == 1.5 and tl.arange(4).mean(dtype=tl.float64).item() == 1.5


# ------------------------------------------------------------------ devices ----

def test_device_objects():
    d = tl.device("cuda:1")
    assert d.type == "cuda" and d.index == 1 and repr(d) == "device(type='cuda', index=1)" and d == "cuda:1"
    assert tl.device("cpu") == "cpu" and tl.device("cpu").index is None and repr(tl.device("cpu")) == "device(type='cpu')"
    assert tl.device("cuda", 0) == tl.device("cuda:0") and tl.device(0) == "cuda:0" and tl.device(d) is d
    assert tl.device("cuda") == "cuda:0" and tl.device("cuda:0") != "cuda:1" and tl.device("cpu") != "cuda"
    assert copy.deepcopy(d) == d and str(d) == "cuda:1"
    with pytest.raises(ValueError, match="xpected one of cpu, cuda device type"):
        tl.device("mps")
    dev = tl.device("cuda" if tl.cuda.is_available() else "cpu")
    assert dev.type in ("cpu", "cuda")
    assert tl.backends.mps.is_available() is False and tl.backends.mps.is_built() is False
    tl.backends.cudnn.deterministic = True
    tl.backends.cudnn.benchmark = False
    assert tl.backends.cudnn.deterministic is True


def test_tensors_and_modules_move_with_device_objects(device):
    dev = tl.device(device)
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(dev)
    assert y.device == device and y.device.type == device and y.to(dev) is y
    assert y.device == dev and isinstance(y.device, tl.device)
    if device == "cuda":
        assert y.device.index == 0 and repr(y.device) == "device(type='cuda', index=0)" and "device='cuda:0'" in repr(y)
        (y * 3).sum().backward()
        assert isinstance(x.grad, np.ndarray) and x.grad.tolist() == [3.0, 3.0]
        assert y.cpu().device == "cpu" and tl.zeros(2, device=dev).device == "cuda"
    z = x.to(dev, tl.float64)
    assert z.dtype == tl.float64 and z.device == device and x.to(device=dev, dtype=tl.float64).dtype == tl.float64
    model = tl.nn.Linear(2, 3).to(dev)
    assert model.weight.device == device
    out = model(tl.randn(4, 2, device=dev))
    assert out.shape == (4, 3) and out.device == dev


# ---------------------------------------------------------- Python protocols ----

def test_python_protocols(device):
    loss = tl.tensor(0.123456, device=device)
    assert float(loss) == pytest.approx(0.123456) and f"{loss:.4f}" == "0.1235" and "%.3f" % loss == "0.123"
    assert int(tl.tensor([7], device=device)) == 7 and bool(tl.tensor([1.0], device=device)) is True
    assert [0, 1, 2][tl.tensor(1, device=device)] == 1 and list(range(tl.tensor(3)))[-1] == 2
    x = tl.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], device=device)
    assert len(x) == 3 and [r.tolist() for r in x] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert x.size() == (3, 2) and x.size(1) == 2 and x.size(-2) == 3 and x.dim() == 2 and x.numel() == 6
    assert tl.numel(x) == 6 and tl.is_tensor(x) and not tl.is_tensor(x.numpy())
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with more than one value is ambiguous"):
        bool(x)
    with pytest.raises(RuntimeError, match="with no values is ambiguous"):
        bool(tl.zeros(0))
    with pytest.raises(ValueError, match="only one element tensors can be converted to Python scalars"):
        float(x)
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(loss)
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(loss)
    with pytest.raises(TypeError):
        f"{x:.4f}"


def test_deepcopy_of_leaves_and_parameters(device):
    x = T([1.0, 2.0], device)
    x.grad = x.data * 2
    y = copy.deepcopy(x)
    assert y is not x and y.requires_grad and y.is_leaf and npy(y).tolist() == [1.0, 2.0]
    assert y.data is not x.data and backend.to_numpy(y.grad).tolist() == [2.0, 4.0] and y.device == device
    p = tl.nn.Parameter(x.data.copy())
    q = copy.deepcopy(p)
    assert type(q) is tl.nn.Parameter and q.requires_grad and q.data is not p.data
    m = tl.nn.Sequential(tl.nn.Linear(2, 2)).to(device)
    m2 = copy.deepcopy(m)
    assert type(m2[0].weight) is tl.nn.Parameter and m2[0].weight.data is not m[0].weight.data
    both = copy.deepcopy([x, x])
    assert both[0] is both[1]
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(x * 2)


# ------------------------------------------------------------- in place ----

def test_hand_written_sgd_updates_in_place_under_no_grad(device):
    w = T([1.0, 2.0], device)
    alias = w.detach()            # shares the array, as in torch
    (w * w).sum().backward()
    array = w.data
    with tl.no_grad():
        w -= 0.1 * w.grad
    assert w.data is array and np.allclose(npy(w), [0.8, 1.6]) and np.allclose(npy(alias), [0.8, 1.6])
    with tl.no_grad():
        w.add_(w.grad, alpha=-0.5)
        w *= 2
        w /= 2
        w += 1
    assert np.allclose(npy(w), [0.8, 0.6]) and w.requires_grad and w.is_leaf


def test_in_place_on_a_leaf_that_requires_grad_raises_outside_no_grad(device):
    w = T([1.0, 2.0], device)
    before = npy(w).copy()
    msg = "a leaf Variable that requires grad is being used in an in-place operation."
    for f in (lambda: w.__isub__(1.0), lambda: w.add_(1.0), lambda: w.mul_(2.0), lambda: w.zero_(),
              lambda: w.fill_(3.0), lambda: w.copy_(tl.zeros(2)), lambda: w.clamp_(0, 1), lambda: w.__setitem__(0, 5.0)):
        with pytest.raises(RuntimeError, match=msg):
            f()
    assert np.array_equal(npy(w), before)


def test_in_place_with_the_graph_recording(device):
    w = T([1.0, 2.0], device)
    h = w * 2
    with pytest.raises(RuntimeError, match="in-place operation on a tensor that requires grad"):
        h.add_(1.0)
    total = 0
    for _ in range(3):
        total += (w * w).sum()         # the running-loss idiom: recorded as total = total + loss
    total.backward()
    assert np.allclose(backend.to_numpy(w.grad), [6.0, 12.0])
    x = tl.zeros(2, device=device)
    with pytest.raises(RuntimeError, match="operand that requires grad"):
        x.add_(w)


def test_in_place_methods(device):
    x = tl.zeros(2, 3, device=device)
    assert x.fill_(2.0) is x and npy(x).tolist() == [[2.0] * 3] * 2
    x.add_(tl.ones(3, device=device)).sub_(1.0, alpha=2).mul_(tl.tensor([[1.0], [2.0]], device=device)).div_(2)
    assert npy(x).tolist() == [[0.5] * 3, [1.0] * 3]
    x.clamp_(max=0.75)
    assert npy(x).tolist() == [[0.5] * 3, [0.75] * 3]
    x.copy_(tl.arange(3, device=device))            # broadcast and cast, as torch
    assert npy(x).tolist() == [[0.0, 1.0, 2.0]] * 2 and x.dtype == tl.float32
    x[0] = 5.0
    x[:, 1] = tl.tensor([7.0, 8.0], device=device)
    x[x > 6] = -1.0
    assert npy(x).tolist() == [[5.0, -1.0, 5.0], [0.0, -1.0, 2.0]]
    assert x.zero_() is x and not npy(x).any()
    view = x[0]
    view += 3                                        # a basic index is a view: writes reach x
    assert npy(x)[0].tolist() == [3.0, 3.0, 3.0]
    i = tl.arange(3, device=device)
    with pytest.raises(RuntimeError, match="result type Float can't be cast"):
        i += 1.5
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        tl.zeros(3, device=device).add_(tl.zeros(2, 3, device=device))


def test_requires_grad_and_the_tutorials_data_idiom(device):
    x = tl.ones(2, device=device)
    assert x.requires_grad_() is x and x.requires_grad and not x.requires_grad_(False).requires_grad
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
        tl.arange(3).requires_grad_()
    with pytest.raises(RuntimeError, match="only change requires_grad flags of leaf variables"):
        (T([1.0], device) * 2).requires_grad_(False)
    outputs = tl.tensor([[0.1, 2.0, 0.3], [5.0, 0.0, 1.0]], requires_grad=True, device=device)
    labels = tl.tensor([1, 2], device=device)
    _, predicted = tl.max(outputs.data, 1)     # torch tutorials' evaluation line (.data is the array here)
    assert (predicted == labels).sum().item() == 1 and predicted.tolist() == [1, 0]


# ---------------------------------------------------------------- indexing ----

def test_indexing_forms_and_their_errors(device):
    x = tl.tensor(np.arange(12.0).reshape(3, 4), device=device)
    assert x[1, 2].item() == 6.0 and x[-1].tolist() == [8.0, 9.0, 10.0, 11.0]
    assert x[tl.tensor([2, 0], device=device)][:, 0].tolist() == [8.0, 0.0]
    assert x[np.array([True, False, True])].shape == (2, 4) and x[..., None].shape == (3, 4, 1)
    assert x[[0, 1], [1, 2]].tolist() == [1.0, 6.0]
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 0 with size 3"):
        x[5]
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        x[:, tl.tensor([0, 4], device=device)]
    with pytest.raises(IndexError, match="index -4 is out of bounds for dimension 0 with size 3"):
        x[[0, -4]]
    with pytest.raises(IndexError, match="must be long, int, byte or bool"):
        x[tl.tensor([0.0])]
    with pytest.raises(IndexError, match="shape of the mask"):
        x[tl.tensor([True, False], device=device)]
    with pytest.raises(IndexError, match="too many indices"):
        x[0, 0, 0]


# ------------------------------------------------------------- shapes/errors ----

def test_shape_errors_name_the_problem():
    x = tl.ones(6)
    with pytest.raises(RuntimeError, match=r"view\(\): shape '\[4, -1\]' is invalid for input of size 6"):
        x.view(4, -1)
    with pytest.raises(RuntimeError, match=r"shape '\[4\]' is invalid for input of size 6"):
        x.reshape(4)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.view(-1, -1)
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        tl.ones(2, 3).sum(dim=2)
    with pytest.raises(IndexError, match=r"expected to be in range of \[-1, 0\], but got 1"):
        tl.tensor(1.0).sum(1)
    with pytest.raises(IndexError, match="Dimension out of range"):
        tl.ones(2, 3).unsqueeze(3)
    with pytest.raises(TypeError, match="argument 'dim' must be int"):
        tl.ones(2, 3).max(dim=1.0)
    with pytest.raises(RuntimeError, match="sizes of tensors must match except in dimension 0"):
        tl.cat([tl.ones(2, 3), tl.ones(2, 4)])
    with pytest.raises(RuntimeError, match="stack\\(\\): expects each tensor to be equal size"):
        tl.stack([tl.ones(2), tl.ones(3)])
    with pytest.raises(TypeError, match="must be a tuple or list of Tensors"):
        tl.cat(tl.ones(2))
    with pytest.raises(RuntimeError, match="At least one of 'min' or 'max' must not be None"):
        tl.clamp(x)
    with pytest.raises(TypeError, match="exp\\(\\): argument 'input' must be Tensor, not list"):
        tl.exp([1.0])
    with pytest.raises(RuntimeError, match="Expected reduction dim to be specified"):
        tl.zeros(0).max()
    with pytest.raises(RuntimeError, match="number of dims don't match"):
        tl.ones(2, 3).permute(0)
    assert tl.ones(2, 1, 3).squeeze(0).shape == (2, 1, 3) and tl.ones(2, 1, 3).squeeze((0, 1)).shape == (2, 3)
    assert tl.ones(2, 3, 4).flatten().shape == (24,) and tl.flatten(tl.ones(2, 3, 4), 0, 1).shape == (6, 4)
    assert tl.ones(2, 3, 4).T.shape == (4, 3, 2) and tl.ones(2, 6).unflatten(1, (2, -1)).shape == (2, 2, 3)


# ---------------------------------------------------------- sort/topk/unique ----

def test_sort_topk_argsort_unique_match_torch(device):
    torch = pytest.importorskip("torch")
    a = np.array([[3.0, 1.0, 2.0, 5.0], [0.5, 4.0, -1.0, 2.5]])
    x, tx = tl.tensor(a, device=device), torch.tensor(a)
    for d in (0, 1, -1):
        for desc in (False, True):
            v, i = x.sort(dim=d, descending=desc)
            tv, ti = tx.sort(dim=d, descending=desc)
            assert np.array_equal(npy(v), tv.numpy()) and np.array_equal(npy(i), ti.numpy())
            assert np.array_equal(npy(tl.argsort(x, d, descending=desc)), torch.argsort(tx, d, descending=desc).numpy())
    for k, largest in ((1, True), (3, False), (4, True)):
        v, i = tl.topk(x, k, largest=largest)
        tv, ti = torch.topk(tx, k, largest=largest)
        assert np.array_equal(npy(v), tv.numpy()) and np.array_equal(npy(i), ti.numpy())
    u = tl.tensor([3, 1, 3, 2, 1, 3], device=device)
    tu = torch.tensor([3, 1, 3, 2, 1, 3])
    got = tl.unique(u, return_inverse=True, return_counts=True)
    want = torch.unique(tu, return_inverse=True, return_counts=True)
    for g, w in zip(got, want):
        assert np.array_equal(npy(g), w.numpy()) and g.dtype == tl.int64
    assert npy(u.unique()).tolist() == [1, 2, 3]
    with pytest.raises(RuntimeError, match="topk\\(\\): k \\(5\\) must be an integer in \\[0, 4\\]"):
        x.topk(5)


# -------------------------------------------------------------- creation ----

def test_creation_shapes_dtypes_devices(device):
    assert tl.zeros(2, 3).shape == (2, 3) and tl.zeros((2, 3)).dtype == tl.float32 and tl.ones([4]).shape == (4,)
    assert tl.zeros(2, dtype=tl.int64).dtype == tl.int64 and tl.empty(3, 1).shape == (3, 1)
    z = tl.zeros(2, 2, device=device, requires_grad=True)
    assert z.device == device and z.requires_grad and z.is_leaf
    assert tl.full((2,), 7).dtype == tl.int64 and tl.full((2,), 1.5).dtype == tl.float32
    assert tl.full((2,), True).dtype == tl.bool and tl.full([2, 2], 3.0, dtype=tl.float64).tolist() == [[3.0] * 2] * 2
    x = tl.ones(2, 3, dtype=tl.float64, device=device)
    for t in (tl.zeros_like(x), tl.ones_like(x), tl.full_like(x, 2.0), tl.rand_like(x), tl.randn_like(x),
              tl.empty_like(x)):
        assert t.shape == (2, 3) and t.dtype == tl.float64 and t.device == device
    assert tl.zeros_like(x, dtype=tl.int32).dtype == tl.int32
    assert tl.eye(3).tolist() == np.eye(3).tolist() and tl.eye(2, 3).shape == (2, 3)
    assert tl.arange(5).dtype == tl.int64 and tl.arange(1, 4).tolist() == [1, 2, 3]
    assert tl.arange(0, 1, 0.25).tolist() == [0.0, 0.25, 0.5, 0.75] and tl.arange(0.0, 3).dtype == tl.float32
    assert tl.linspace(0, 1, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and tl.linspace(0, 1, 3).dtype == tl.float32
    r = tl.rand(100, device=device)
    assert r.dtype == tl.float32 and r.device == device and 0 <= float(r.min()) and float(r.max()) < 1
    ri = tl.randint(3, 7, (50,))
    assert ri.dtype == tl.int64 and set(ri.tolist()) <= {3, 4, 5, 6} and tl.randint(5, (2, 2)).shape == (2, 2)
    assert sorted(tl.randperm(6).tolist()) == list(range(6)) and tl.randperm(4).dtype == tl.int64
    with pytest.raises(RuntimeError, match="negative dimension -1"):
        tl.zeros(-1)
    with pytest.raises(TypeError, match="argument 'size' must be a tuple of ints"):
        tl.ones(2.5)
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
        tl.zeros(2, dtype=tl.int64, requires_grad=True)


def test_random_draws_follow_manual_seed_and_generators():
    tl.manual_seed(3)
    a = [tl.rand(3).tolist(), tl.randn(2, 2).tolist(), tl.randint(10, (4,)).tolist(), tl.randperm(5).tolist()]
    tl.manual_seed(3)
    b = [tl.rand(3).tolist(), tl.randn(2, 2).tolist(), tl.randint(10, (4,)).tolist(), tl.randperm(5).tolist()]
    assert a == b
    g1, g2 = tl.Generator().manual_seed(5), tl.Generator().manual_seed(5)
    assert tl.randn(4, generator=g1).tolist() == tl.randn(4, generator=g2).tolist()
    with pytest.raises(TypeError, match="generator must be a tl.Generator"):
        tl.rand(2, generator=5)


def test_from_numpy_shares_memory_and_as_tensor_when_it_can():
    a = np.zeros(3)
    t = tl.from_numpy(a)
    a[0] = 5.0
    assert t.dtype == tl.float64 and t[0].item() == 5.0
    t.add_(1.0)
    assert a.tolist() == [6.0, 1.0, 1.0]
    assert tl.as_tensor(a).data is a and tl.as_tensor(a, dtype=tl.float32).data is not a
    assert tl.as_tensor([1, 2]).dtype == tl.int64 and tl.as_tensor(t) is t
    with pytest.raises(TypeError, match="expected np.ndarray"):
        tl.from_numpy([1.0])


def test_creation_values_match_torch():
    torch = pytest.importorskip("torch")
    pairs = [(tl.arange(0, 1, 0.1), torch.arange(0, 1, 0.1)), (tl.arange(-3, 10, 4), torch.arange(-3, 10, 4)),
             (tl.linspace(-2, 3, 7), torch.linspace(-2, 3, 7)), (tl.eye(3, 2), torch.eye(3, 2)),
             (tl.full((2, 3), 2.5), torch.full((2, 3), 2.5)), (tl.arange(2.5), torch.arange(2.5))]
    for got, want in pairs:
        assert got.shape == tuple(want.shape) and str(got.dtype) == str(want.dtype).removeprefix("torch.")
        np.testing.assert_allclose(npy(got), want.numpy(), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------ grad mode ----

def test_set_grad_enabled_and_inference_mode():
    w = tl.ones(2, requires_grad=True)
    with tl.set_grad_enabled(False):
        assert not (w * 2).requires_grad
    assert (w * 2).requires_grad and tl.is_grad_enabled()
    tl.set_grad_enabled(False)
    try:
        assert not tl.is_grad_enabled()
    finally:
        tl.set_grad_enabled(True)
    with tl.inference_mode():
        assert not (w * 2).requires_grad
    with tl.inference_mode(False):
        assert (w * 2).requires_grad

    @tl.inference_mode()
    def f():
        return w * 2
    assert not f().requires_grad


# ---------------------------------------------------------------- repr ----

def test_repr_reads_as_torch(device):
    torch = pytest.importorskip("torch")
    cases = [[1.5, 2.0], [[1e-5, 1e3]], [1.0, 2.0, 3.0], 2.5, [[1, 2], [3, 4]], [True, False], [1e9, 1.0],
             [-1.0, 0.0, 2000.0], [[0.5, -12.25], [3.0, 100.0]], [float("nan"), 1.5, float("inf")],
             np.arange(3000.0) / 7, np.arange(30).reshape(2, 15), np.float64([1.5, 2.0])]
    for c in cases:
        got = repr(tl.tensor(c)).replace("tinytl.", "torch.")
        assert got == repr(torch.tensor(c)), c
    assert repr(tl.tensor(np.array([1.5, 2.0]))) == "tensor([1.5000, 2.0000], dtype=tinytl.float64)"
    assert repr(tl.zeros(0, 3)) == "tensor([], size=(0, 3))" and repr(tl.zeros(2, requires_grad=True)) == \
        "tensor([0., 0.], requires_grad=True)"
    tl.set_printoptions(precision=2)
    try:
        assert repr(tl.tensor([1.2345])) == "tensor([1.23])"
    finally:
        tl.set_printoptions(profile="default")
    assert repr(tl.tensor([1.2345])) == "tensor([1.2345])"


# ------------------------------------------------------- top-level names ----

def test_top_level_aliases_are_the_torch_names():
    x = tl.tensor([[-1.0, 2.0], [3.0, -4.0]])
    assert tl.relu(x).tolist() == [[0.0, 2.0], [3.0, 0.0]] and tl.abs(x).sum().item() == 10.0
    assert tl.sum(x).item() == 0.0 and tl.mean(x).item() == 0.0 and tl.max(x).item() == 3.0
    assert tl.min(x).item() == -4.0 and tl.argmax(x).item() == 2 and tl.argmin(x).item() == 3
    assert tl.matmul(x, x).tolist() == (x @ x).tolist() and tl.mm(x, x).tolist() == (x @ x).tolist()
    assert tl.where(x > 0, x, tl.zeros_like(x)).tolist() == tl.relu(x).tolist()
    assert tl.flatten(x).shape == (4,) and tl.clamp(x, -1, 1).tolist() == [[-1.0, 1.0], [1.0, -1.0]]
    assert tl.exp(tl.log(tl.sqrt(x * x))).allclose(tl.abs(x)) and tl.tanh(x).shape == tl.sigmoid(x).shape
    assert tl.cat([x, x]).shape == (4, 2) and tl.stack([x, x]).shape == (2, 2, 2)
    assert tl.no_grad and tl.manual_seed and tl.add(x, x, alpha=2).tolist() == (x * 3).tolist()
    assert [t.tolist() for t in tl.where(x > 0)] == [[0, 1], [1, 0]]
