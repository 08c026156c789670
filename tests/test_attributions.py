"""tl.explain's attributions: the quadrature rules integrate what they say, integrated
gradients satisfy completeness, a linear model's attributions are exact, saliency is the
gradient (finite differences in float64, and torch), the model's state is untouched, and
bad input gives clear errors; on every device."""
import functools

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl.explain import input_x_gradient, integrated_gradients, quadrature, saliency, smoothgrad
from tinytl.nn import Module, Parameter

METHODS = ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"]


def mlp(n_in=6, hidden=12, n_out=4, seed=0, dtype=np.float64):
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden, dtype=dtype), nn.ReLU(), nn.Linear(hidden, hidden, dtype=dtype),
                         nn.ReLU(), nn.Linear(hidden, n_out, dtype=dtype))


class Quadratic(Module):
    """f_c(x) = (x @ W.T)_c ** 2: its gradient along a straight path is linear in alpha."""

    def __init__(self, W):
        super().__init__()
        self.weight = Parameter(np.asarray(W, dtype=np.float64))

    def forward(self, x):
        h = x @ self.weight.T
        return h * h


# ------------------------------------------------------------- quadrature ----

@pytest.mark.parametrize("method", METHODS)
def test_quadrature_weights_sum_to_one(method):
    a, w = quadrature(method, 7)
    assert a.shape == w.shape == (7,)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    assert ((a >= 0) & (a <= 1)).all()


def test_trapezoid_rule_integrates_linear_functions_exactly():
    """tinytl's trapezoid: nodes k/(n-1), weights h/2, h, ..., h/2. Captum's weights for the
    same nodes (1/(2n), 1/n, ..., 1/(2n)) would give (n-1)/n of each integral."""
    for n in (2, 3, 10, 50):
        a, w = quadrature("riemann_trapezoid", n)
        np.testing.assert_allclose(a, np.linspace(0, 1, n), atol=1e-15)
        for c0, c1 in ((1.0, 0.0), (0.3, 2.0), (-1.0, 5.0)):
            assert w @ (c0 + c1 * a) == pytest.approx(c0 + c1 / 2, abs=1e-14)      # exact
        captum = np.full(n, 1 / n)
        captum[0] = captum[-1] = 1 / (2 * n)
        assert captum @ np.ones(n) == pytest.approx((n - 1) / n)                      # the other one
    # a quadratic is not integrated exactly: the rule's error is -h^2/12 * (g'' / 2 ...)
    a, w = quadrature("riemann_trapezoid", 5)
    assert w @ a ** 2 == pytest.approx(1 / 3 + (1 / 4) ** 2 / 6, abs=1e-14)


def test_gauss_legendre_is_exact_to_degree_2n_minus_1():
    a, w = quadrature("gausslegendre", 4)
    for d in range(8):
        assert w @ a ** d == pytest.approx(1 / (d + 1), abs=1e-14)
    assert abs(w @ a ** 8 - 1 / 9) > 1e-8


def test_riemann_nodes():
    np.testing.assert_allclose(quadrature("riemann_left", 4)[0], [0, .25, .5, .75])
    np.testing.assert_allclose(quadrature("riemann_right", 4)[0], [.25, .5, .75, 1])
    np.testing.assert_allclose(quadrature("riemann_middle", 4)[0], [.125, .375, .625, .875])


def test_quadrature_errors():
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        quadrature("gausslegendre", 0)
    with pytest.raises(ValueError, match="trapezoid rule needs steps >= 2"):
        quadrature("riemann_trapezoid", 1)
    with pytest.raises(ValueError, match="method must be one of"):
        quadrature("simpson", 5)


# ------------------------------------------------------ integrated gradients ----

class ISRU(Module):
    """x / sqrt(1 + x^2): a smooth activation (the path integrand is analytic, not piecewise)."""

    def forward(self, x):
        return x * (x * x + 1.0) ** -0.5


def smooth_mlp(n_in=6, hidden=12, n_out=4, seed=0):
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden, dtype=np.float64), ISRU(), nn.Linear(hidden, hidden, dtype=np.float64),
                         ISRU(), nn.Linear(hidden, n_out, dtype=np.float64))


def completeness(model, x, base, t, steps, device):
    attr, delta = integrated_gradients(model, x, target=t, baseline=base, steps=steps, return_delta=True)
    assert attr.shape == x.shape and delta.shape == (len(x),)
    with tl.no_grad():
        gap = (model(tl.tensor(x, device=device)).numpy()[:, t]
               - model(tl.tensor(np.tile(base, (len(x), 1)), device=device)).numpy()[:, t])
    np.testing.assert_allclose(attr.sum(axis=1) - gap, delta, atol=1e-12)     # delta is that gap
    return np.abs(delta) / np.abs(gap)


def test_integrated_gradients_completeness_float64_mlp(device):
    rng = np.random.default_rng(0)
    x = 2 * rng.normal(size=(8, 6))
    base = rng.normal(size=(6,)) * 0.1
    assert completeness(smooth_mlp().to(device), x, base, 2, 64, device).max() < 1e-3


def test_integrated_gradients_completeness_relu_mlp_converges():
    """A ReLU network's path gradient is piecewise constant: any rule errs at the kinks, by
    O(1/steps); the delta says so, and shrinks as steps grow."""
    rng = np.random.default_rng(0)
    x, base = 2 * rng.normal(size=(8, 6)), np.zeros(6)
    model = mlp()
    r64 = completeness(model, x, base, 2, 64, "cpu")
    r256 = completeness(model, x, base, 2, 256, "cpu")
    assert np.median(r64) < 2e-2 and np.median(r256) < np.median(r64) / 2


@pytest.mark.parametrize("method", METHODS)
def test_integrated_gradients_of_a_linear_model_are_exact(device, method):
    """f = x @ W.T + b: the gradient is W[t] everywhere, so IG = (x - x') * W[t] for any rule."""
    tl.manual_seed(3)
    model = nn.Linear(5, 3, dtype=np.float64).to(device)
    rng = np.random.default_rng(1)
    x, base = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    t = np.array([0, 2, 1, 2])
    attr, delta = integrated_gradients(model, x, t, baseline=base, steps=5, method=method, return_delta=True)
    W = model.weight.numpy()
    np.testing.assert_allclose(attr, (x - base) * W[t], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(delta, 0, atol=1e-13)


def test_trapezoid_integrated_gradients_are_exact_for_a_quadratic(device):
    """For f = (w.x)^2 the path gradient is linear in alpha: the trapezoid rule (and Gauss-
    Legendre with 1 node) make the completeness delta zero."""
    rng = np.random.default_rng(2)
    model = Quadratic(rng.normal(size=(2, 5))).to(device)
    x = rng.normal(size=(3, 5))
    for method, steps in (("riemann_trapezoid", 2), ("riemann_trapezoid", 9), ("gausslegendre", 1)):
        _, delta = integrated_gradients(model, x, 1, steps=steps, method=method, return_delta=True)
        np.testing.assert_allclose(delta, 0, atol=1e-12)
    _, delta = integrated_gradients(model, x, 1, steps=9, method="riemann_left", return_delta=True)
    assert np.abs(delta).max() > 1e-3                    # a left sum is not exact


def test_integrated_gradients_batch_size_does_not_change_the_result(device):
    model = mlp().to(device)
    x = np.random.default_rng(3).normal(size=(5, 6))
    want = integrated_gradients(model, x, 1, steps=6)
    for bs in (2, 7, 60):
        np.testing.assert_allclose(integrated_gradients(model, x, 1, steps=6, batch_size=bs), want,
                                   rtol=1e-12, atol=1e-14)


def test_integrated_gradients_single_example_and_default_target():
    model = mlp()
    x = np.random.default_rng(4).normal(size=(6,))
    with tl.no_grad():
        pred = int(model(tl.tensor(x[None])).numpy().argmax())
    attr, delta = integrated_gradients(model, x, return_delta=True, steps=32)
    assert attr.shape == (6,) and isinstance(delta, float)
    np.testing.assert_allclose(attr, integrated_gradients(model, x[None], pred, steps=32)[0], rtol=1e-14)


# --------------------------------------------------- saliency and x * grad ----

def test_saliency_is_the_finite_difference_gradient(device):
    model = mlp().to(device)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 6))
    t = np.array([1, 3, 0])
    g = saliency(model, x, t, abs=False)
    eps = 1e-6
    fd = np.zeros_like(x)
    with tl.no_grad():
        for i in range(3):
            for j in range(6):
                xp, xm = x.copy(), x.copy()
                xp[i, j] += eps
                xm[i, j] -= eps
                fp = model(tl.tensor(xp, device=device)).numpy()[i, t[i]]
                fm = model(tl.tensor(xm, device=device)).numpy()[i, t[i]]
                fd[i, j] = (fp - fm) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(saliency(model, x, t), np.abs(fd), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(input_x_gradient(model, x, t), x * g, rtol=1e-14)


def test_attributions_against_torch():
    torch = pytest.importorskip("torch")
    model = mlp(dtype=np.float64)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 12), torch.nn.ReLU(),
                             torch.nn.Linear(12, 4)).double()
    tm.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 6))
    t = np.array([0, 1, 2, 3])

    def torch_grad(points, targets):
        xt = torch.tensor(points, requires_grad=True)
        out = tm(xt)
        out[torch.arange(len(points)), torch.tensor(targets)].sum().backward()
        return xt.grad.numpy()
    np.testing.assert_allclose(saliency(model, x, t, abs=False), torch_grad(x, t), rtol=1e-10, atol=1e-14)
    a, w = quadrature("gausslegendre", 16)
    base = np.zeros_like(x)
    want = x * sum(wk * torch_grad(base + ak * x, t) for ak, wk in zip(a, w))
    np.testing.assert_allclose(integrated_gradients(model, x, t, steps=16), want, rtol=1e-10, atol=1e-14)


def test_float32_model_and_list_input(device):
    model = mlp(dtype=np.float32).to(device)
    g = saliency(model, [[0.1] * 6, [0.2] * 6], 1)
    assert g.dtype == np.float32 and g.shape == (2, 6)
    want = saliency(mlp(dtype=np.float64), np.array([[0.1] * 6, [0.2] * 6]), 1)
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------- smoothgrad ----

def test_smoothgrad_is_the_mean_over_noisy_inputs(device):
    model = mlp().to(device)
    x = np.random.default_rng(7).normal(size=(2, 6))
    fn = functools.partial(saliency, model)
    got = smoothgrad(fn, x, target=1, samples=4, stdev=0.3, seed=11)
    rng = np.random.default_rng(11)
    want = np.mean([saliency(model, x + rng.normal(0, 0.3, size=x.shape), 1) for _ in range(4)], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert not np.allclose(got, saliency(model, x, 1))
    np.testing.assert_allclose(smoothgrad(fn, x, 1, samples=3, stdev=0.0), saliency(model, x, 1), rtol=1e-14)
    ig = smoothgrad(lambda xx, t: integrated_gradients(model, xx, t, steps=8, return_delta=True), x, 1,
                    samples=2, stdev=0.1)
    assert ig.shape == x.shape


def test_smoothgrad_errors():
    with pytest.raises(TypeError, match="smoothgrad: fn must be an attribution function"):
        smoothgrad(3, np.zeros(3), 0)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        smoothgrad(lambda x, t: x, np.zeros(3), 0, samples=0)
    with pytest.raises(ValueError, match="stdev must be a number >= 0"):
        smoothgrad(lambda x, t: x, np.zeros(3), 0, stdev=-1)


# ----------------------------------------------------- the model's state ----

def test_eval_mode_restored_and_parameter_grads_untouched(device):
    model = mlp().to(device)
    model.train()
    model[2].eval()                                   # a mixed state must come back as it was
    x = np.random.default_rng(8).normal(size=(3, 6))
    loss = model(tl.tensor(x, device=device)).sum()
    loss.backward()
    before = {n: tl.backend.to_numpy(p.grad).copy() for n, p in model.named_parameters()}
    model[4].bias.grad = None                         # and a None stays None
    seen = []
    handle = model[0].register_forward_hook(lambda m, a, o: seen.append(m.training))
    saliency(model, x, 0)
    integrated_gradients(model, x, 0, steps=4)
    input_x_gradient(model, x, 0)
    handle.remove()
    assert seen and not any(seen)                      # ran in eval mode
    assert model.training and not model[2].training and model[0].training
    for n, p in model.named_parameters():
        if n == "4.bias":
            assert p.grad is None
        else:
            np.testing.assert_array_equal(tl.backend.to_numpy(p.grad), before[n])


def test_works_inside_no_grad():
    model = mlp()
    with tl.no_grad():
        g = saliency(model, np.ones((1, 6)), 0)
    assert np.abs(g).sum() > 0


# -------------------------------------------------------------- bad input ----

def test_attribution_errors():
    model = mlp()
    x = np.zeros((2, 6))
    with pytest.raises(IndexError, match="saliency: target 4 is out of range for a model with 4 classes"):
        saliency(model, x, 4)
    with pytest.raises(IndexError, match="target -1 is out of range"):
        integrated_gradients(model, x, [0, -1])
    with pytest.raises(ValueError, match="target must be one class per example"):
        input_x_gradient(model, x, [0, 1, 2])
    with pytest.raises(TypeError, match="target must be a class index"):
        saliency(model, x, 1.5)
    with pytest.raises(ValueError, match="integrated_gradients: steps must be an integer >= 1"):
        integrated_gradients(model, x, 0, steps=0)
    with pytest.raises(ValueError, match="integrated_gradients: the trapezoid rule needs steps >= 2"):
        integrated_gradients(model, x, 0, steps=1, method="riemann_trapezoid")
    with pytest.raises(ValueError, match="method must be one of"):
        integrated_gradients(model, x, 0, method="simpson")
    with pytest.raises(ValueError, match=r"baseline must have shape \(6,\) \(one for every example\) or \(2, 6\), got \(5,\)"):
        integrated_gradients(model, x, 0, baseline=np.zeros(5))
    with pytest.raises(ValueError, match=r"baseline must have shape \(6,\), got \(1, 6\)"):
        integrated_gradients(model, np.zeros(6), 0, baseline=np.zeros((1, 6)))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        integrated_gradients(model, x, 0, batch_size=0)
    with pytest.raises(TypeError, match="model must be a tinytl Module"):
        saliency(lambda z: z, x, 0)
    with pytest.raises(ValueError, match=r"scores of shape \(N, classes\)"):
        saliency(nn.Sequential(nn.Linear(6, 2, dtype=np.float64), nn.Flatten(0)), x, 0)
    with pytest.raises(ValueError, match="x must be one example"):
        saliency(model, np.zeros((0, 6)), 0)
