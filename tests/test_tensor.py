"""Tensor and autograd: construction, every elementary op's gradient (float64
finite differences), graph bookkeeping (accumulation, freeing, deep graphs)."""
import sys

import numpy as np
import pytest

import tinytl as tl
from tinytl.testing import gradcheck


def t64(rng, *shape, requires_grad=True, device="cpu"):
    return tl.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=requires_grad, device=device)


# ------------------------------------------------------------- creation ----

def test_tensor_dtypes():
    assert tl.tensor([1.0, 2.0]).dtype == np.float32          # Python floats -> float32, as in PyTorch
    assert tl.tensor([1, 2]).dtype == np.int64
    assert tl.tensor(np.zeros(3)).dtype == np.float64          # NumPy arrays keep their dtype
    assert tl.tensor([1, 2], dtype=np.float64).dtype == np.float64
    t = tl.tensor([[1.0, 2.0]], requires_grad=True)
    assert t.shape == (1, 2) and t.requires_grad and t.device == "cpu" and t.grad is None and t.is_leaf


def test_tensor_api_basics():
    t = tl.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(t.numpy(), np.ndarray)
    assert tl.tensor([3.5]).item() == 3.5
    with pytest.raises(ValueError, match="one element"):
        t.item()
    with pytest.raises(TypeError, match="float32 or float64"):
        tl.tensor([1, 2], requires_grad=True)
    with pytest.raises(ValueError, match="device"):
        tl.tensor([1.0], device="tpu")
    with pytest.raises(TypeError):
        tl.tensor([1.0], device=0)
    assert "tensor(" in repr(t)
    d = (t * 2).detach()
    assert not d.requires_grad and d.is_leaf


def test_attribute_typo_on_tensor_raises():
    t = tl.tensor([1.0], requires_grad=True)
    with pytest.raises(AttributeError):
        t.require_grad = False


# ----------------------------------------------------- gradient checks ----

@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1))])
def test_binary_op_grads_broadcast(rng, op, shapes):
    a, b = t64(rng, *shapes[0]), t64(rng, *shapes[1])
    if op == "div":
        b.data[...] = np.abs(b.data) + 0.5
    f = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
         "mul": lambda x, y: x * y, "div": lambda x, y: x / y}[op]
    assert gradcheck(f, [a, b])
    assert a.grad.shape == a.shape and b.grad.shape == b.shape


@pytest.mark.parametrize("f", [lambda x: -x, lambda x: x ** 3, lambda x: 2.0 * x - 1.0, lambda x: 1.0 / (x * x + 1.0),
                               lambda x: x.relu(), lambda x: x.T, lambda x: x.reshape(-1),
                               lambda x: x.reshape(2, 6), lambda x: x.sum(), lambda x: x.sum(axis=0),
                               lambda x: x.sum(axis=1, keepdims=True), lambda x: x.mean(), lambda x: x.mean(axis=1),
                               lambda x: x[1:, ::2], lambda x: x[np.array([0, 0, 2])]])
def test_unary_op_grads(rng, f):
    x = t64(rng, 3, 4)
    x.data[np.abs(x.data) < 1e-3] = 0.5       # keep away from the ReLU kink
    assert gradcheck(f, [x])


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((2, 3, 4), (4, 5))])
def test_matmul_grads(rng, sa, sb):
    assert gradcheck(lambda a, b: a @ b, [t64(rng, *sa), t64(rng, *sb)])


def test_matmul_shape_error():
    with pytest.raises(ValueError, match="align"):
        tl.tensor(np.ones((2, 3))) @ tl.tensor(np.ones((2, 3)))


def test_reflected_ops_with_arrays_and_scalars(rng):
    x = t64(rng, 2, 3)
    arr = rng.standard_normal((2, 3))
    for f in (lambda x: arr + x, lambda x: arr * x, lambda x: 3.0 - x, lambda x: arr @ x.T):
        assert gradcheck(f, [x])


# ------------------------------------------------------------- the graph ----

def test_gradient_accumulates_when_tensor_used_twice():
    x = tl.tensor([2.0, 3.0], dtype=np.float64, requires_grad=True)
    y = x * x + x               # dy/dx = 2x + 1
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 7.0])
    z = (x * 3.0).sum()         # leaf grads accumulate across backward calls, as in PyTorch
    z.backward()
    np.testing.assert_allclose(x.grad, [8.0, 10.0])


def test_graph_is_freed_unless_retained():
    x = tl.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_deep_graph_has_no_recursion_limit():
    x = tl.tensor([1.0], dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(sys.getrecursionlimit() * 3):
        y = y + 1.0
    y.backward()
    assert x.grad[0] == 1.0


def test_no_grad_records_nothing():
    x = tl.tensor([1.0], requires_grad=True)
    with tl.no_grad():
        y = x * 2
        assert not tl.is_grad_enabled()
        with tl.enable_grad():
            assert tl.is_grad_enabled()
    assert tl.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf

    @tl.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad


def test_no_grad_is_per_thread():
    import threading
    seen = []
    with tl.no_grad():
        th = threading.Thread(target=lambda: seen.append(tl.is_grad_enabled()))
        th.start()
        th.join()
    assert seen == [True]


def test_backward_errors():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        tl.tensor([1.0]).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3, dtype=np.float32))
    (x * 2).backward(np.ones(2, dtype=np.float32))
    np.testing.assert_allclose(x.grad, [2.0, 2.0])


def test_only_needed_branches_get_grads():
    a = tl.tensor([1.0], requires_grad=True)
    b = tl.tensor([2.0])
    (a * b).sum().backward()
    assert a.grad is not None and b.grad is None


def test_detect_anomaly_names_the_op():
    x = tl.tensor([0.0, 1.0], dtype=np.float64, requires_grad=True)
    with tl.detect_anomaly():
        with pytest.raises(FloatingPointError, match="div"):
            (1.0 / x).sum()
    assert not tl.is_anomaly_enabled()
    y = (1.0 / x).sum()         # off by default: no error
    assert not np.isfinite(y.item())


def test_leaf_grads_never_alias_each_other_the_graph_or_the_seed():
    """Each .grad is its own array: zeroing one in place (zero_grad(set_to_none=False)) must not
    change another leaf's gradient, a retained graph, or the caller's seed."""
    from tinytl import nn
    z = nn.Parameter(np.random.default_rng(0).standard_normal((3, 4)))
    loss = nn.CrossEntropyLoss()(z, np.array([0, 1, 2]))
    loss.backward(retain_graph=True)
    first = z.grad.copy()
    tl.optim.SGD([z], lr=0.1).zero_grad(set_to_none=False)
    loss.backward()                       # the closure's saved gradient must be intact
    np.testing.assert_array_equal(z.grad, first)

    a, b = tl.tensor([1.0, 2.0], requires_grad=True), tl.tensor([3.0, 4.0], requires_grad=True)
    seed = np.array([1.0, 1.0], np.float32)
    (a + b).backward(seed)                # add hands the same upstream array to both parents
    assert a.grad is not b.grad and not np.shares_memory(a.grad, seed) and not np.shares_memory(b.grad, seed)
    a.grad[...] = 0
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    np.testing.assert_array_equal(seed, [1.0, 1.0])
    c = tl.tensor([1.0], requires_grad=True)
    s = np.array([2.0], np.float32)
    c.backward(s)                         # a leaf's own backward: the seed is copied too
    assert not np.shares_memory(c.grad, s)


# ------------------------------------------------ from the second wave's review ----

def test_leaf_grads_are_writable_and_never_share_memory_through_views():
    """A reshape's backward hands out a view of the gradient another leaf already holds, and a
    mean's a read-only broadcast: every .grad must still be its own writable array, so in-place
    clipping of one gradient never scales another (checked against torch's numbers)."""
    a = tl.tensor(np.ones(3), requires_grad=True)
    b = tl.tensor(np.ones((1, 3)), requires_grad=True)
    ((a + b.reshape(3)) * tl.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert not np.shares_memory(a.grad, b.grad)
    tl.nn.utils.clip_grad_norm_([a, b], 1.0)
    np.testing.assert_allclose(a.grad, np.array([1.0, 2.0, 3.0]) / (np.sqrt(28.0) + 1e-6), rtol=1e-12)  # torch: + 1e-6
    c = tl.tensor(np.ones((1, 4)), requires_grad=True)
    c.mean().backward()
    assert c.grad.flags.writeable and 0 not in c.grad.strides
    c.grad *= 2
    np.testing.assert_array_equal(c.grad, np.full((1, 4), 0.5))


def test_vector_dot_product_backward_and_a_scalar_element_view():
    u = tl.tensor(np.arange(1.0, 6.0), requires_grad=True)
    y = u @ u
    assert isinstance(y.data, np.ndarray) and y.shape == ()
    (y * 2).backward()
    np.testing.assert_array_equal(u.grad, 4 * np.arange(1.0, 6.0))
    assert gradcheck(lambda a, b: a @ b, [t64(np.random.default_rng(0), 4), t64(np.random.default_rng(1), 4)])
    x = tl.tensor(np.ones(3))
    x[0].add_(5)
    x[1].fill_(0)
    np.testing.assert_array_equal(x.numpy(), [6.0, 0.0, 1.0])      # element views write through, as torch
    m = tl.tensor(np.arange(6.0).reshape(2, 3))
    m.t().contiguous().fill_(0)                                     # contiguous() of a transpose copies
    np.testing.assert_array_equal(m.numpy(), np.arange(6.0).reshape(2, 3))


def test_var_with_no_degrees_of_freedom_gives_nan_gradients_as_torch():
    a = tl.tensor([[1.0], [2.0]], dtype=np.float64, requires_grad=True)
    with np.errstate(all="ignore"):
        a.var(1).sum().backward()
    assert np.isnan(a.grad).all()
