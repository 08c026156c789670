"""tl.nn.init: torch's gains and fan rules, in-place fills that keep the tensor (and a
Linear's memory layout), draws reproducible by tl.manual_seed or a tl.Generator; and
tl.nn.utils: clip_grad_norm_ / clip_grad_value_ / parameters_to_vector against torch."""
import math

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl.nn import init
from tinytl.testing import gradcheck


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                        ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0), ("selu", None)]:
        assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-15)
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)


def test_fans_match_torch():
    torch = pytest.importorskip("torch")
    for shape in [(3, 5), (4, 2, 3), (6, 2, 3, 3)]:
        ours = init._calculate_fan_in_and_fan_out(tl.tensor(np.zeros(shape)))
        theirs = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
        assert ours == theirs
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(tl.tensor(np.zeros(3)))


@pytest.mark.parametrize("fn,kwargs,bound_or_std,kind", [
    (init.xavier_uniform_, {}, lambda fi, fo: math.sqrt(6 / (fi + fo)), "uniform"),
    (init.xavier_uniform_, {"gain": 2.0}, lambda fi, fo: 2 * math.sqrt(6 / (fi + fo)), "uniform"),
    (init.xavier_normal_, {}, lambda fi, fo: math.sqrt(2 / (fi + fo)), "normal"),
    (init.kaiming_uniform_, {}, lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fi), "uniform"),
    (init.kaiming_uniform_, {"a": math.sqrt(5)}, lambda fi, fo: math.sqrt(2 / 6) * math.sqrt(3 / fi), "uniform"),
    (init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"},
     lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fo), "uniform"),
    (init.kaiming_normal_, {}, lambda fi, fo: math.sqrt(2 / fi), "normal"),
    (init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "tanh"}, lambda fi, fo: 5 / 3 / math.sqrt(fo),
     "normal"),
])
def test_initialisers_follow_torchs_rules(fn, kwargs, bound_or_std, kind):
    w = tl.tensor(np.zeros((300, 200), np.float32))
    tl.manual_seed(0)
    out = fn(w, **kwargs)
    assert out is w and w.dtype == np.float32
    b = bound_or_std(200, 300)
    if kind == "uniform":
        assert np.abs(w.data).max() <= b * (1 + 1e-6) and np.abs(w.data).max() > 0.99 * b
        assert abs(w.data.std() - b / math.sqrt(3)) < 0.02 * b
    else:
        assert abs(w.data.std() - b) < 0.02 * b
    tl.manual_seed(0)
    again = fn(tl.tensor(np.zeros((300, 200), np.float32)), **kwargs)
    np.testing.assert_array_equal(again.data, w.data)              # tl.manual_seed reproduces it


def test_fills_work_in_place_on_parameters_and_keep_linear_layout(device):
    lin = nn.Linear(4, 3).to(device)
    w = lin.weight
    data_before = w.data
    init.zeros_(lin.bias)
    init.ones_(lin.weight)
    assert lin.weight is w and lin.weight.data is data_before
    assert w.data.flags.f_contiguous                                 # Linear's transposed layout kept
    np.testing.assert_array_equal(tl.backend.to_numpy(w.data), 1)
    init.constant_(w, 0.5)
    np.testing.assert_array_equal(tl.backend.to_numpy(w.data), 0.5)
    init.normal_(w, mean=2.0, std=0.0)
    np.testing.assert_allclose(tl.backend.to_numpy(w.data), 2.0)
    init.uniform_(lin.bias, -1, 1)
    assert w.device == device and np.abs(tl.backend.to_numpy(lin.bias.data)).max() <= 1
    init.eye_(w)
    np.testing.assert_array_equal(tl.backend.to_numpy(w.data), np.eye(3, 4))


def test_generator_argument_and_trunc_normal():
    g1, g2 = tl.Generator().manual_seed(5), tl.Generator().manual_seed(5)
    a = init.kaiming_normal_(tl.tensor(np.zeros((5, 4))), generator=g1)
    tl.manual_seed(123)                                             # the global state is not used
    b = init.kaiming_normal_(tl.tensor(np.zeros((5, 4))), generator=g2)
    np.testing.assert_array_equal(a.data, b.data)
    t = init.trunc_normal_(tl.tensor(np.zeros(20000)), mean=1.0, std=2.0, a=0.0, b=3.0)
    assert t.data.min() >= 0.0 and t.data.max() <= 3.0 and 1.3 < t.data.mean() < 1.7
    with pytest.raises(TypeError, match="generator"):
        init.normal_(tl.tensor(np.zeros(3)), generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(tl.tensor(np.zeros((2, 2))), mode="fan_avg")
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_uniform_(tl.tensor(np.zeros((0, 3))))


def test_apply_initialises_a_model():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    seen = []

    def fn(mod):
        seen.append(type(mod).__name__)
        if isinstance(mod, nn.Linear):
            init.xavier_uniform_(mod.weight)
            init.zeros_(mod.bias)
    assert m.apply(fn) is m
    assert seen == ["Linear", "ReLU", "Linear", "Sequential"]          # children first, as torch
    assert all(np.all(layer.bias.data == 0) for layer in (m[0], m[2]))


# ---------------------------------------------------------------------- utils ----

def _grads(rng, torch, shapes):
    ours = [tl.tensor(rng.normal(size=s), requires_grad=True) for s in shapes]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    for p, q in zip(ours, theirs):
        g = rng.normal(size=p.shape) * 3
        p.grad = g.copy()
        q.grad = torch.tensor(g)
    return ours, theirs


@pytest.mark.parametrize("max_norm,norm_type", [(1.0, 2.0), (100.0, 2.0), (0.5, 1.0), (0.7, float("inf")),
                                                (2.0, 3.0)])
def test_clip_grad_norm_matches_torch(rng, max_norm, norm_type):
    torch = pytest.importorskip("torch")
    ours, theirs = _grads(rng, torch, [(3, 4), (4,), (2, 2)])
    ours[1].grad = None
    theirs[1].grad = None
    n1 = nn.utils.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    n2 = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(n1, tl.Tensor) and n1.item() == pytest.approx(n2.item(), rel=1e-12)
    for p, q in zip(ours, theirs):
        if p.grad is not None:
            np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12)
    assert tl.nn.utils.clip_grad_norm_ is nn.utils.clip_grad_norm_


def test_clip_grad_norm_nonfinite_and_empty(device):
    p = tl.tensor(np.ones(3), requires_grad=True, device=device)
    assert nn.utils.clip_grad_norm_([p], 1.0).item() == 0.0            # no gradient: norm 0
    p.grad = tl.backend.to_device(np.array([1.0, np.inf, 0.0]), device)
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(tl.backend.to_numpy(p.grad), [1.0, np.inf, 0.0])   # nothing scaled
    p.grad = tl.backend.to_device(np.array([3.0, 4.0, 0.0]), device)
    assert nn.utils.clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(tl.backend.to_numpy(p.grad), np.array([0.6, 0.8, 0.0]) * 5 / (5 + 1e-6))


def test_clip_grad_value_and_vectors(rng, device):
    torch = pytest.importorskip("torch")
    ours, theirs = _grads(rng, torch, [(3, 2), (5,)])
    nn.utils.clip_grad_value_(ours, 0.8)
    torch.nn.utils.clip_grad_value_(theirs, 0.8)
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, q.grad.numpy())
    v = nn.utils.parameters_to_vector(ours)
    np.testing.assert_array_equal(v.data, torch.nn.utils.parameters_to_vector(theirs).detach().numpy())
    lin = nn.Linear(3, 2, dtype=np.float64).to(device)
    vec = nn.utils.parameters_to_vector(lin.parameters())
    assert vec.shape == (8,) and vec.device == device
    assert gradcheck(lambda w, b: nn.utils.parameters_to_vector([w, b]) * 1.0,
                     [tl.tensor(rng.normal(size=(2, 3)), requires_grad=True, device=device),
                      tl.tensor(rng.normal(size=2), requires_grad=True, device=device)])
    new = tl.tensor(np.arange(8.0), device=device)
    nn.utils.vector_to_parameters(new, lin.parameters())
    np.testing.assert_array_equal(tl.backend.to_numpy(lin.weight.data), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(tl.backend.to_numpy(lin.bias.data), [6.0, 7.0])
    assert lin.weight.data.flags.f_contiguous
    with pytest.raises(TypeError, match="expected a Tensor"):
        nn.utils.vector_to_parameters(np.arange(8.0), lin.parameters())
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        nn.utils.vector_to_parameters(tl.tensor(np.arange(7.0), device=device), lin.parameters())
