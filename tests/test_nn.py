"""Modules and layers: PyTorch's names and semantics, state dicts, Sequential,
initialisation, the typo guard, and loads that fail without changing anything."""
from collections import OrderedDict

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl.testing import gradcheck


def mlp(*sizes, dtype=np.float32):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def test_linear_init_and_shapes():
    tl.manual_seed(0)
    lin = nn.Linear(100, 7)
    assert lin.weight.shape == (7, 100) and lin.bias.shape == (7,)
    assert lin.weight.dtype == np.float32
    bound = 1 / np.sqrt(100)
    assert np.abs(lin.weight.data).max() <= bound and np.abs(lin.bias.data).max() <= bound
    assert np.abs(lin.weight.data).max() > 0.9 * bound          # really uses the range
    assert nn.Linear(3, 2, bias=False).bias is None
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 3, dtype=np.int32)


def test_manual_seed_reproduces_init():
    tl.manual_seed(7)
    a = mlp(5, 4, 3).state_dict()
    tl.manual_seed(7)
    b = mlp(5, 4, 3).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_module_tree_api():
    m = mlp(4, 8, 8, 3)
    assert [k for k, _ in m.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert len(list(m.parameters())) == 6
    assert len(list(m.children())) == 5
    assert [k for k, _ in m.named_modules()] == ["", "0", "1", "2", "3", "4"]
    assert len(list(m.modules())) == 6
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    r = repr(m)
    assert "(0): Linear(in_features=4, out_features=8, bias=True)" in r and "(1): ReLU()" in r


def test_custom_module_and_shared_params():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(4, 3)
            self.dec = nn.Linear(3, 4)
            self.scale = 2.0

        def forward(self, x):
            return self.dec(self.enc(x).relu()) * self.scale

    net = Net()
    assert list(net.state_dict()) == ["enc.weight", "enc.bias", "dec.weight", "dec.bias"]
    net.extra = nn.Identity()            # adding a submodule after construction is fine
    net.scale = 3.0                      # so is changing an existing attribute
    with pytest.raises(AttributeError, match="did you mean 'scale'"):
        net.scael = 1.0
    with pytest.raises(AttributeError, match="requires_grad_"):
        net.requires_grad = False
    with pytest.raises(TypeError, match="Parameter or None"):
        net.enc.weight = np.zeros((3, 4))
    out = net(np.ones((2, 4), dtype=np.float32))
    assert out.shape == (2, 4)


def test_sequential_container_ops():
    m = mlp(4, 8, 3)
    assert len(m) == 3 and isinstance(m[0], nn.Linear) and isinstance(m[-1], nn.Linear)
    head = m[:-1]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is m[0]
    tail = m[1:]                                     # a slice keeps the names, as in PyTorch
    assert list(tail.state_dict()) == ["2.weight", "2.bias"] and tail[1] is m[2]
    named = nn.Sequential(OrderedDict(enc=nn.Linear(4, 8), act=nn.ReLU(), head=nn.Linear(8, 3)))
    assert list(named.state_dict()) == ["enc.weight", "enc.bias", "head.weight", "head.bias"]
    assert named(np.ones((2, 4), np.float32)).shape == (2, 3)
    with pytest.raises(KeyError, match="without '.'"):
        nn.Sequential(OrderedDict([("a.b", nn.ReLU())]))
    tail.append(nn.ReLU())                           # numbered after the last layer, replaces nothing
    assert list(tail._modules) == ["1", "2", "3"]
    assert [type(l).__name__ for l in m] == ["Linear", "ReLU", "Linear"]
    new = nn.Linear(8, 5)
    m[-1] = new
    assert m[2] is new and m.state_dict()["2.weight"].shape == (5, 8)
    m.append(nn.ReLU())
    assert len(m) == 4
    with pytest.raises(IndexError):
        m[10]
    with pytest.raises(TypeError):
        m[0] = "not a module"
    with pytest.raises(TypeError):
        nn.Sequential(nn.Linear(2, 2), 3)


def test_fused_linear_relu_equals_unfused(rng):
    m = mlp(6, 5, 4, dtype=np.float64)
    x = rng.standard_normal((3, 6))
    fused = m(x)
    unfused = x
    for layer in m:
        unfused = layer(unfused)
    np.testing.assert_allclose(fused.numpy(), unfused.numpy(), rtol=1e-14)


def test_model_gradcheck_float64(rng):
    m = mlp(5, 6, 3, dtype=np.float64)
    x = tl.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    y = rng.integers(0, 3, size=4)
    params = list(m.parameters())

    def f(x, *ps):
        return nn.CrossEntropyLoss()(m(x), y)
    assert gradcheck(f, [x] + params)


def test_flatten_identity(rng):
    x = tl.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    assert nn.Identity()(x) is x
    assert gradcheck(lambda t: nn.Flatten()(t), [x])


def test_float_double_and_zero_grad():
    m = mlp(3, 4, 2)
    m.double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())
    loss = nn.MSELoss()(m(np.ones((2, 3), dtype=np.float32)), np.zeros((2, 2), dtype=np.float32))
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_freeze_unfreeze_module():
    m = mlp(3, 4, 2)
    nn.MSELoss()(m(np.ones((2, 3), dtype=np.float32)), np.zeros((2, 2), dtype=np.float32)).backward()
    m[0].freeze()
    assert not m[0].weight.requires_grad and m[0].weight.grad is None     # stale grad dropped
    assert m[2].weight.requires_grad
    m.unfreeze()
    assert all(p.requires_grad for p in m.parameters())


def test_state_dict_roundtrip_and_copies():
    a, b = mlp(4, 5, 3), mlp(4, 5, 3)
    sd = a.state_dict()
    assert isinstance(sd["0.weight"], np.ndarray)
    sd_before = {k: v.copy() for k, v in sd.items()}
    a[0].weight.data += 1           # the state dict is a snapshot, not a view
    np.testing.assert_array_equal(sd["0.weight"], sd_before["0.weight"])
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])


def test_load_state_dict_failures_change_nothing():
    m = mlp(4, 5, 3)
    before = m.state_dict()
    bad_shape = dict(before)
    bad_shape["2.weight"] = np.zeros((7, 5), dtype=np.float32)
    bad_shape["0.weight"] = np.ones((5, 4), dtype=np.float32)     # valid, but must not be copied
    with pytest.raises(ValueError, match=r"size mismatch for '2.weight'.*\(7, 5\)"):
        m.load_state_dict(bad_shape)
    missing = {k: v for k, v in before.items() if k != "0.bias"}
    missing["0.weight"] = np.ones((5, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="missing keys: 0.bias"):
        m.load_state_dict(missing)
    with pytest.raises(ValueError, match="not floating"):
        m.load_state_dict({**before, "0.bias": np.zeros(5, dtype=np.int64)})
    with pytest.raises(ValueError, match="no key"):
        m.load_state_dict({"fc.weight": np.zeros((5, 4))}, strict=False)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # non-strict: missing and unexpected keys are reported, the rest loads
    partial = {"0.weight": np.ones((5, 4)), "extra": np.zeros(2)}
    res = m.load_state_dict(partial, strict=False)
    assert res.unexpected_keys == ["extra"] and "0.bias" in res.missing_keys
    assert np.all(m[0].weight.data == 1) and m[0].weight.dtype == np.float32   # documented cast


@pytest.mark.parametrize("strict", [False, True])
def test_load_state_dict_matching_no_key_raises_even_when_not_strict(strict, tmp_path):
    """An empty state dict, one with a wrong prefix, or an empty checkpoint file would load
    nothing: that is an error naming the problem and a few keys of each side, as in
    transfer_weights, and the model is left as it was."""
    m = mlp(4, 5, 3)
    before = m.state_dict()
    tl.save({}, tmp_path / "empty.safetensors")
    prefixed = {f"model.{k}": v + 1 for k, v in before.items()}
    for state, given in [({}, "no keys"), (OrderedDict(), "no keys"),
                         (str(tmp_path / "empty.safetensors"), "no keys"),
                         (prefixed, "'model.0.weight', 'model.0.bias', 'model.2.weight', 'model.2.bias'")]:
        with pytest.raises(ValueError, match="no key of the state dict matches") as e:
            m.load_state_dict(state, strict=strict)
        msg = str(e.value)
        assert "nothing was copied" in msg
        assert "the model expects '0.weight', '0.bias', '2.weight', '2.bias'" in msg, msg
        assert f"the state dict has {given}" in msg, msg
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
    # one matching key is enough when not strict; a model without parameters has nothing to match
    assert m.load_state_dict({"0.bias": np.zeros(5)}, strict=False).missing_keys == ["0.weight", "2.weight",
                                                                                       "2.bias"]
    assert nn.ReLU().load_state_dict({}, strict=strict) == ([], [])


def test_pytorch_state_dict_loads_unchanged():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    m = mlp(4, 5, 3)
    m.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(m(x).numpy(), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_loss_modules():
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    assert "reduction='sum'" in repr(nn.MSELoss(reduction="sum"))


def test_linear_weight_is_stored_transposed_and_either_layout_trains_the_same():
    """Linear keeps weight (out, in) in Fortran order (the GEMMs run on row-major operands);
    a weight set from a C-ordered array must give the same forward, gradients and SGD steps,
    the state dict hands out C-ordered arrays, and momentum buffers follow the weight."""
    tl.manual_seed(3)
    a = mlp(6, 5, 3, dtype=np.float64)
    assert a[0].weight.data.flags.f_contiguous and not a[0].weight.data.flags.c_contiguous
    b = mlp(6, 5, 3, dtype=np.float64)
    b.load_state_dict(a.state_dict())
    for lin in (b[0], b[2]):           # the other layout: C order
        lin.weight = nn.Parameter(np.ascontiguousarray(lin.weight.data))
    assert b[0].weight.data.flags.c_contiguous
    assert all(v.flags.c_contiguous for v in a.state_dict().values())
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    opts = [tl.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3) for m in (a, b)]
    for _ in range(4):
        for m, opt in zip((a, b), opts):
            loss = nn.CrossEntropyLoss()(m(X), y)
            loss.backward()
            opt.step()
        ga, gb = a[0].weight.grad, b[0].weight.grad
        assert ga.flags.f_contiguous and gb.flags.c_contiguous      # each gradient in its weight's layout
        np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-14)
        for opt in opts:
            opt.zero_grad()
    for (n, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-14, err_msg=n)
    assert a[0].weight.data.flags.f_contiguous                         # SGD updated it in place
    buf = opts[0].state[id(a[0].weight)]["momentum_buffer"]
    assert buf.flags.f_contiguous
    # a resumed optimizer (C-ordered arrays from state_dict) gets its buffers in the weight's layout
    opt2 = tl.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    opt2.load_state_dict(opts[0].state_dict())
    assert opt2.state[id(a[0].weight)]["momentum_buffer"].flags.f_contiguous
    np.testing.assert_array_equal(opt2.state[id(a[0].weight)]["momentum_buffer"], buf)


# ---------------------------------------------------------------- hooks ----

def test_forward_hooks_see_and_may_replace_inputs_and_outputs():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = tl.tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    plain = model(x).numpy()
    seen = []
    h1 = model[0].register_forward_hook(lambda m, args, out: seen.append(("0", args[0].shape, out.shape)))
    h2 = model[1].register_forward_hook(lambda m, args, out: seen.append(("1", out.numpy().min())))
    out = model(x).numpy()
    # the hooks run on both layers, so Sequential does not fuse Linear and ReLU, and the result is the same
    assert seen[0] == ("0", (5, 3), (5, 4)) and seen[1][0] == "1" and seen[1][1] >= 0 and len(seen) == 2
    np.testing.assert_allclose(out, plain, rtol=1e-6)
    h1.remove()
    h2.remove()
    seen.clear()
    model(x)
    assert seen == []
    with model[2].register_forward_hook(lambda m, args, out: out * 0):
        assert np.all(model(x).numpy() == 0)        # a hook's return value replaces the output
    np.testing.assert_allclose(model(x).numpy(), plain, rtol=1e-6)   # removed on leaving the block
    pre = model.register_forward_pre_hook(lambda m, args: args[0] * 0)
    np.testing.assert_allclose(model(x).numpy(), model[2](model[1](model[0](x * 0))).numpy(), rtol=1e-6)
    pre.remove()
    order = []
    model.register_forward_hook(lambda m, a, o: order.append("late"))
    model.register_forward_hook(lambda m, a, o: order.append("early"), prepend=True)
    model(x)
    assert order == ["early", "late"]
    with pytest.raises(TypeError, match="register_forward_hook: hook must be callable"):
        model.register_forward_hook(3)
