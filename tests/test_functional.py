"""The NN ops: float64 gradient checks for linear (with the fused ReLU), relu
and both losses, and the bad inputs, each with its exact exception."""
import numpy as np
import pytest

import tinytl as tl
import tinytl.nn.functional as F
from tinytl.testing import gradcheck


def t64(rng, *shape, requires_grad=True):
    return tl.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=requires_grad)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("n", [1, 5])
def test_linear_grads(rng, relu, bias, n):
    x, W = t64(rng, n, 4), t64(rng, 3, 4)
    b = t64(rng, 3) if bias else None
    inputs = [x, W] + ([b] if bias else [])

    def f(x, W, b=None):
        return F.linear(x, W, b, relu=relu)
    # keep pre-activations away from the ReLU kink
    pre = x.data @ W.data.T + (b.data if bias else 0)
    x.data[...] += 0.0 if np.all(np.abs(pre) > 1e-3) else 0.01
    assert gradcheck(f, inputs)


def test_linear_matches_formula(rng):
    x, W, b = (rng.standard_normal(s) for s in [(6, 4), (3, 4), (3,)])
    out = F.linear(tl.tensor(x), tl.tensor(W), tl.tensor(b), relu=True)
    np.testing.assert_allclose(out.numpy(), np.maximum(x @ W.T + b, 0), rtol=1e-12)


def test_linear_bad_input(rng):
    W = tl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        F.linear(tl.tensor(np.ones((2, 5))), W)
    with pytest.raises(TypeError, match="dtype"):
        F.linear(tl.tensor(np.ones((2, 4), dtype=np.float32)), W)
    with pytest.raises(TypeError, match="Tensor or an array"):
        F.linear([[1.0] * 4], W)


def test_relu_grad(rng):
    x = t64(rng, 4, 5)
    x.data[np.abs(x.data) < 1e-3] = 0.5
    assert gradcheck(F.relu, [x])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_grad_and_value(rng, reduction):
    z = t64(rng, 6, 5)
    y = rng.integers(0, 5, size=6)
    assert gradcheck(lambda z: F.cross_entropy(z, y, reduction=reduction), [z])
    zz = z.data
    lse = np.log(np.exp(zz - zz.max(1, keepdims=True)).sum(1)) + zz.max(1)
    ref = lse - zz[np.arange(6), y]
    expected = ref.mean() if reduction == "mean" else ref.sum()
    assert abs(F.cross_entropy(z, y, reduction=reduction).item() - expected) < 1e-12


def test_cross_entropy_upstream_grad_scales(rng):
    z = t64(rng, 3, 4)
    y = np.array([0, 1, 3])
    assert gradcheck(lambda z: F.cross_entropy(z, y) * 3.0, [z])


def test_cross_entropy_is_stable_for_huge_logits():
    z = tl.tensor(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]), requires_grad=True)
    loss = F.cross_entropy(z, np.array([0, 2]))
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), np.log(2) / 2, rtol=1e-12)
    loss.backward()
    assert np.all(np.isfinite(z.grad))


@pytest.mark.parametrize("target,exc,match", [
    (np.array([0, 5]), ValueError, r"\[0, 5\)"),
    (np.array([-1, 0]), ValueError, r"target\[0\] = -1 is not a class index"),
    (np.array([0, 2**32 + 5]), ValueError, rf"target\[1\] = {2**32 + 5} is not"),
    (np.array([0.0, 1.0]), TypeError, "integer"),
    (np.array([0, 1, 2]), ValueError, r"shape \(2,\)"),
])
def test_cross_entropy_bad_labels(target, exc, match):
    z = tl.tensor(np.zeros((2, 5)), requires_grad=True)
    before = z.data.copy()
    with pytest.raises(exc, match=match):
        F.cross_entropy(z, target)
    np.testing.assert_array_equal(z.data, before)
    assert z.grad is None


def test_cross_entropy_bad_logits():
    with pytest.raises(ValueError, match="empty batch"):
        F.cross_entropy(tl.tensor(np.zeros((0, 3))), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        F.cross_entropy(tl.tensor(np.zeros(3)), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(tl.tensor(np.zeros((1, 3))), np.zeros(1, dtype=np.int64), reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_grads(rng, reduction):
    a, b = t64(rng, 4, 3), t64(rng, 4, 3)
    assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [a, b])
    ref = ((a.data - b.data) ** 2)
    assert abs(F.mse_loss(a, b, reduction=reduction).item() - (ref.mean() if reduction == "mean" else ref.sum())) < 1e-12


def test_mse_bad_input():
    with pytest.raises(ValueError, match="shape"):
        F.mse_loss(tl.tensor(np.zeros((2, 3))), tl.tensor(np.zeros((3, 2))))
    with pytest.raises(ValueError, match="empty"):
        F.mse_loss(tl.tensor(np.zeros((0, 3))), tl.tensor(np.zeros((0, 3))))
