"""The autograd on random graphs, not only chains.

Hypothesis writes small programs: a few float64 leaves (some requiring a gradient,
some not, plus a weight and a bias that may be frozen), then a sequence of ops whose
operands are drawn from everything computed so far, so a tensor is reused by ops at
different depths (residual connections, ``h * (h + 1)``, shared subexpressions). The
loss sums a few of the nodes. Each program is run three ways: by tinytl with
backward, by plain NumPy (forward only, for central differences), and by PyTorch
where it is importable. Every leaf's gradient must match both.

The registry ``OPS`` lists every differentiable op; an op added to tinytl is added
here, and then takes part in every random graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tinytl as tl
import tinytl.functional as F

try:
    import torch
except ImportError:  # parity is checked where torch is importable
    torch = None

N = 3           # every pool tensor has a shape built from 1 and N
KINK = 1e-4     # programs whose ReLU inputs come this close to 0 are not finite-differenced


@dataclass(frozen=True)
class Op:
    """One differentiable op, in the three spellings a program is run in."""
    arity: int
    shape: Callable      # operand shapes -> output shape, or None where the op does not apply
    tl: Callable         # on tinytl Tensors (and the program's weight W, bias b)
    np: Callable         # on NumPy arrays
    torch: Callable      # on torch tensors
    kink: Callable = None  # NumPy operands -> the values a ReLU cuts at 0 (for the FD margin)


def _bcast(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None


def _mm_shape(a, b):
    return (a[0], b[1]) if len(a) == 2 and len(b) == 2 and a[1] == b[0] else None


def _linear_shape(a, _=None):
    return (a[0], N) if len(a) == 2 and a[1] == N else None


def _np_relu(x):
    return np.maximum(x, 0)


OPS = {
    "add": Op(2, _bcast, lambda a, b, P: a + b, lambda a, b, P: a + b, lambda a, b, P: a + b),
    "sub": Op(2, _bcast, lambda a, b, P: a - b, lambda a, b, P: a - b, lambda a, b, P: a - b),
    "mul": Op(2, _bcast, lambda a, b, P: a * b, lambda a, b, P: a * b, lambda a, b, P: a * b),
    # a divisor kept away from 0: a / (2 + b * b)
    "div": Op(2, _bcast, lambda a, b, P: a / (b * b + 2.0), lambda a, b, P: a / (b * b + 2.0),
              lambda a, b, P: a / (b * b + 2.0)),
    "neg": Op(1, lambda a: a, lambda a, P: -a, lambda a, P: -a, lambda a, P: -a),
    "pow2": Op(1, lambda a: a, lambda a, P: a ** 2, lambda a, P: a ** 2, lambda a, P: a ** 2),
    "pow3": Op(1, lambda a: a, lambda a, P: a ** 3, lambda a, P: a ** 3, lambda a, P: a ** 3),
    "matmul": Op(2, _mm_shape, lambda a, b, P: a @ b, lambda a, b, P: a @ b, lambda a, b, P: a @ b),
    "relu": Op(1, lambda a: a, lambda a, P: F.relu(a), lambda a, P: _np_relu(a),
               lambda a, P: torch.relu(a), kink=lambda a, P: a),
    "linear": Op(1, _linear_shape, lambda a, P: F.linear(a, P["W"], P["b"]),
                 lambda a, P: a @ P["W"].T + P["b"],
                 lambda a, P: torch.nn.functional.linear(a, P["W"], P["b"])),
    "linear_relu": Op(1, _linear_shape, lambda a, P: F.linear(a, P["W"], P["b"], relu=True),
                      lambda a, P: _np_relu(a @ P["W"].T + P["b"]),
                      lambda a, P: torch.relu(torch.nn.functional.linear(a, P["W"], P["b"])),
                      kink=lambda a, P: a @ P["W"].T + P["b"]),
    "linear_nobias": Op(1, _linear_shape, lambda a, P: F.linear(a, P["W"]),
                        lambda a, P: a @ P["W"].T,
                        lambda a, P: torch.nn.functional.linear(a, P["W"])),
    "sum": Op(1, lambda a: (), lambda a, P: a.sum(), lambda a, P: a.sum(), lambda a, P: a.sum()),
    "sum0": Op(1, lambda a: (1,) + a[1:] if len(a) == 2 else None,
               lambda a, P: a.sum(axis=0, keepdims=True), lambda a, P: a.sum(axis=0, keepdims=True),
               lambda a, P: a.sum(dim=0, keepdim=True)),
    "mean1": Op(1, lambda a: a[:1] + (1,) if len(a) == 2 else None,
                lambda a, P: a.mean(axis=1, keepdims=True), lambda a, P: a.mean(axis=1, keepdims=True),
                lambda a, P: a.mean(dim=1, keepdim=True)),
    "mean": Op(1, lambda a: (), lambda a, P: a.mean(), lambda a, P: a.mean(), lambda a, P: a.mean()),
    "reshape": Op(1, lambda a: a[::-1], lambda a, P: a.reshape(a.shape[::-1]),
                  lambda a, P: a.reshape(a.shape[::-1]), lambda a, P: a.reshape(tuple(a.shape)[::-1])),
    "transpose": Op(1, lambda a: a[::-1] if len(a) == 2 else None, lambda a, P: a.T, lambda a, P: a.T,
                    lambda a, P: a.T),
    # rows picked with repeats: the gradient of a repeated row is the sum of its uses
    "gather_rows": Op(1, lambda a: a if len(a) == 2 and a[0] == N else None,
                      lambda a, P: a[np.array([0, 2, 0])], lambda a, P: a[np.array([0, 2, 0])],
                      lambda a, P: a[torch.tensor([0, 2, 0])]),
    # the tensor surface of tinytl/ops.py (kinks: where finite differences cross a corner or a tie)
    "exp_tanh": Op(1, lambda a: a, lambda a, P: a.tanh().exp(), lambda a, P: np.exp(np.tanh(a)),
                   lambda a, P: a.tanh().exp()),
    "log": Op(1, lambda a: a, lambda a, P: tl.log(a * a + 1.0), lambda a, P: np.log(a * a + 1.0),
              lambda a, P: torch.log(a * a + 1.0)),
    "sqrt": Op(1, lambda a: a, lambda a, P: (a * a + 1.0).sqrt(), lambda a, P: np.sqrt(a * a + 1.0),
               lambda a, P: (a * a + 1.0).sqrt()),
    "sigmoid": Op(1, lambda a: a, lambda a, P: tl.sigmoid(a), lambda a, P: 1 / (1 + np.exp(-a)),
                  lambda a, P: torch.sigmoid(a)),
    "abs": Op(1, lambda a: a, lambda a, P: a.abs(), lambda a, P: np.abs(a), lambda a, P: a.abs(), kink=lambda a, P: a),
    "clamp": Op(1, lambda a: a, lambda a, P: a.clamp(min=-0.5, max=0.5), lambda a, P: np.clip(a, -0.5, 0.5),
                lambda a, P: a.clamp(min=-0.5, max=0.5), kink=lambda a, P: np.abs(np.abs(a) - 0.5)),
    "maximum": Op(2, _bcast, lambda a, b, P: tl.maximum(a, b), lambda a, b, P: np.maximum(a, b),
                  lambda a, b, P: torch.maximum(a, b), kink=lambda a, b, P: a - b),
    "pow_tensor": Op(2, _bcast, lambda a, b, P: (a * a + 1.0) ** b.tanh(), lambda a, b, P: (a * a + 1.0) ** np.tanh(b),
                     lambda a, b, P: (a * a + 1.0) ** b.tanh()),
    "rpow": Op(1, lambda a: a, lambda a, P: 2.0 ** a.tanh(), lambda a, P: 2.0 ** np.tanh(a),
               lambda a, P: 2.0 ** a.tanh()),
    "where": Op(2, _bcast, lambda a, b, P: tl.where(a > 0, a, b), lambda a, b, P: np.where(a > 0, a, b),
                lambda a, b, P: torch.where(a > 0, a, b), kink=lambda a, b, P: a),
    "var1": Op(1, lambda a: a[:1] + (1,) if len(a) == 2 and a[1] == N else None,
               lambda a, P: a.var(dim=1, keepdim=True), lambda a, P: a.var(axis=1, ddof=1, keepdims=True),
               lambda a, P: a.var(dim=1, keepdim=True)),
    "std0": Op(1, lambda a: (1,) + a[1:] if len(a) == 2 and a[0] == N else None,
               lambda a, P: a.std(0, unbiased=False, keepdim=True), lambda a, P: a.std(axis=0, keepdims=True),
               lambda a, P: a.std(0, unbiased=False, keepdim=True)),
    "logsumexp1": Op(1, lambda a: a[:1] + (1,) if len(a) == 2 else None,
                     lambda a, P: a.logsumexp(dim=1, keepdim=True),
                     lambda a, P: np.log(np.exp(a).sum(axis=1, keepdims=True)),
                     lambda a, P: a.logsumexp(dim=1, keepdim=True)),
    "norm": Op(1, lambda a: (), lambda a, P: a.norm(), lambda a, P: np.sqrt((a * a).sum()), lambda a, P: a.norm()),
    "max_dim1": Op(1, lambda a: a[:1] + (1,) if len(a) == 2 else None,
                   lambda a, P: a.max(dim=1, keepdim=True).values, lambda a, P: a.max(axis=1, keepdims=True),
                   lambda a, P: a.max(dim=1, keepdim=True).values, kink=lambda a, P: _gap(a, 1)),
    "max_all": Op(1, lambda a: (), lambda a, P: tl.max(a), lambda a, P: a.max(), lambda a, P: torch.max(a),
                  kink=lambda a, P: _gap(a.reshape(1, -1), 1)),
    "topk1": Op(1, lambda a: a[:1] + (1,) if len(a) == 2 else None, lambda a, P: a.topk(1, dim=1).values,
                lambda a, P: a.max(axis=1, keepdims=True), lambda a, P: a.topk(1, dim=1).values,
                kink=lambda a, P: _gap(a, 1)),
    "sort1": Op(1, lambda a: a if len(a) == 2 else None, lambda a, P: a.sort(dim=1, descending=True).values,
                lambda a, P: -np.sort(-a, axis=1), lambda a, P: a.sort(dim=1, descending=True).values),
    "cat_rows": Op(2, lambda a, b: a if a == b and len(a) == 2 and a[0] == N else None,
                   lambda a, b, P: tl.cat([a, b], dim=0)[[0, 3, 5]], lambda a, b, P: np.concatenate([a, b])[[0, 3, 5]],
                   lambda a, b, P: torch.cat([a, b], dim=0)[[0, 3, 5]]),
    "stack": Op(2, lambda a, b: a if a == b else None,
                lambda a, b, P: (tl.stack([a, b], dim=-1) * tl.tensor([1.0, 2.0], dtype=np.float64,
                                                                       device=a.device)).sum(-1),
                lambda a, b, P: a + 2 * b, lambda a, b, P: (torch.stack([a, b], dim=-1)
                                                            * torch.tensor([1.0, 2.0], dtype=torch.float64)).sum(-1)),
    "view_flatten": Op(1, lambda a: a[::-1], lambda a, P: a.flatten().view(a.shape[::-1]),
                       lambda a, P: a.reshape(-1).reshape(a.shape[::-1]),
                       lambda a, P: a.flatten().view(tuple(a.shape)[::-1])),
    "unsqueeze_squeeze": Op(1, lambda a: a, lambda a, P: a.unsqueeze(0).squeeze(0),
                            lambda a, P: a, lambda a, P: a.unsqueeze(0).squeeze(0)),
    "permute": Op(1, lambda a: a[::-1] if len(a) == 2 else None, lambda a, P: a.permute(1, 0),
                  lambda a, P: a.T, lambda a, P: a.permute(1, 0)),
    "transpose01": Op(1, lambda a: a[::-1] if len(a) == 2 else None, lambda a, P: a.transpose(0, 1),
                      lambda a, P: a.T, lambda a, P: a.transpose(0, 1)),
    "mask_sum": Op(1, lambda a: (), lambda a, P: a[a > 0].sum(), lambda a, P: a[a > 0].sum(),
                   lambda a, P: a[a > 0].sum(), kink=lambda a, P: a),
    "gather_cols": Op(1, lambda a: a if len(a) == 2 and a[1] == N else None,
                      lambda a, P: a[:, [2, 0, 2]], lambda a, P: a[:, [2, 0, 2]], lambda a, P: a[:, [2, 0, 2]]),
    "clone": Op(1, lambda a: a, lambda a, P: a.clone(), lambda a, P: a.copy(), lambda a, P: a.clone()),
    # tinytl/nn/functional.py's ops (one graph node each, written with their backward)
    "softmax1": Op(1, lambda a: a if len(a) == 2 else None, lambda a, P: tl.nn.functional.softmax(a, dim=1),
                   lambda a, P: np.exp(a - a.max(1, keepdims=True)) / np.exp(a - a.max(1, keepdims=True)).sum(1, keepdims=True),
                   lambda a, P: torch.softmax(a, dim=1)),
    "log_softmax0": Op(1, lambda a: a if len(a) == 2 else None, lambda a, P: tl.nn.functional.log_softmax(a, dim=0),
                       lambda a, P: a - np.log(np.exp(a).sum(0, keepdims=True)),
                       lambda a, P: torch.log_softmax(a, dim=0)),
    "gelu": Op(1, lambda a: a, lambda a, P: tl.nn.functional.gelu(a),
               lambda a, P: a * 0.5 * (1 + np.vectorize(__import__("math").erf)(a / np.sqrt(2))),
               lambda a, P: torch.nn.functional.gelu(a)),
    "gelu_tanh": Op(1, lambda a: a, lambda a, P: tl.nn.functional.gelu(a, approximate="tanh"),
                    lambda a, P: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3))),
                    lambda a, P: torch.nn.functional.gelu(a, approximate="tanh")),
    "silu": Op(1, lambda a: a, lambda a, P: tl.nn.functional.silu(a), lambda a, P: a / (1 + np.exp(-a)),
               lambda a, P: torch.nn.functional.silu(a)),
    "leaky_relu": Op(1, lambda a: a, lambda a, P: tl.nn.functional.leaky_relu(a, 0.1),
                     lambda a, P: np.where(a > 0, a, 0.1 * a), lambda a, P: torch.nn.functional.leaky_relu(a, 0.1),
                     kink=lambda a, P: a),
    "layer_norm": Op(1, lambda a: a if len(a) == 2 and a[1] == N else None,
                     lambda a, P: tl.nn.functional.layer_norm(a, (N,)),
                     lambda a, P: (a - a.mean(1, keepdims=True)) / np.sqrt(a.var(1, keepdims=True) + 1e-5),
                     lambda a, P: torch.nn.functional.layer_norm(a, (N,))),

    # 1-D operands of matmul: a vector-matrix product and a dot product
    "vecmat": Op(2, lambda a, b: (b[1],) if len(a) == 2 and len(b) == 2 and a[1] == b[0] else None,
                 lambda a, P_b, P=None: None, None, None) if False else
    Op(2, lambda a, b: (b[1],) if len(a) == 2 and len(b) == 2 and a[1] == b[0] else None,
       lambda a, b, P: a[0] @ b, lambda a, b, P: a[0] @ b, lambda a, b, P: a[0] @ b),
    "dot": Op(2, lambda a, b: () if len(a) >= 1 and len(b) >= 1 and int(np.prod(a)) == int(np.prod(b)) else None,
              lambda a, b, P: a.reshape(-1) @ b.reshape(-1), lambda a, b, P: a.reshape(-1) @ b.reshape(-1),
              lambda a, b, P: a.reshape(-1) @ b.reshape(-1)),

}


def _gap(a, axis):
    """How close the two largest values along ``axis`` come (a max's tie), large when there is one value."""
    if a.shape[axis] < 2:
        return np.full(1, np.inf)
    s = np.sort(a, axis=axis)
    return np.take(s, -1, axis=axis) - np.take(s, -2, axis=axis)


@st.composite
def programs(draw, max_ops=12):
    """A random program: leaf flags, weight/bias flags, a list of (op, operand indices), loss terms."""
    n_leaves = draw(st.integers(1, 3))
    leaf_grad = draw(st.lists(st.booleans(), min_size=n_leaves, max_size=n_leaves))
    leaf_shapes = [draw(st.sampled_from([(N, N), (N, N), (1, N), (N, 1)])) for _ in range(n_leaves)]
    param_grad = {"W": draw(st.booleans()), "b": draw(st.booleans())}
    shapes = list(leaf_shapes)
    steps = []
    names = sorted(OPS)
    for _ in range(draw(st.integers(1, max_ops))):
        name = draw(st.sampled_from(names))
        op = OPS[name]
        # operands lean toward recent nodes (depth) but reach back to any (reuse at two depths)
        idx = [draw(st.one_of(st.integers(max(0, len(shapes) - 2), len(shapes) - 1),
                              st.integers(0, len(shapes) - 1))) for _ in range(op.arity)]
        out = op.shape(*[shapes[i] for i in idx])
        if out is None:
            continue
        steps.append((name, idx))
        shapes.append(out)
    assume(steps)
    n = len(shapes)
    extra = draw(st.lists(st.integers(0, n - 2), max_size=3)) if n > 1 else []
    terms = [n - 1] + extra           # the loss: sum of these nodes' sums, weighted
    seed = draw(st.integers(0, 2 ** 16))
    return dict(leaf_grad=leaf_grad, leaf_shapes=leaf_shapes, param_grad=param_grad, steps=steps,
                terms=terms, seed=seed)


def _values(prog):
    rng = np.random.default_rng(prog["seed"])
    leaves = [rng.standard_normal(s) for s in prog["leaf_shapes"]]
    params = {"W": rng.standard_normal((N, N)) * 0.7, "b": rng.standard_normal(N) * 0.5}
    coeffs = rng.uniform(0.5, 1.5, len(prog["terms"]))
    return leaves, params, coeffs


def run_numpy(prog, leaves, params, coeffs, kinks=None):
    vals = list(leaves)
    for name, idx in prog["steps"]:
        args = [vals[i] for i in idx]
        if kinks is not None and OPS[name].kink is not None:
            kinks.append(np.abs(OPS[name].kink(*args, params)).min())
        vals.append(OPS[name].np(*args, params))
    return sum(c * vals[t].sum() for c, t in zip(coeffs, prog["terms"]))


def run_tinytl(prog, leaves, params, coeffs, device="cpu"):
    xs = [tl.tensor(v, dtype=np.float64, requires_grad=g, device=device)
          for v, g in zip(leaves, prog["leaf_grad"])]
    P = {k: tl.tensor(v, dtype=np.float64, requires_grad=prog["param_grad"][k], device=device)
         for k, v in params.items()}
    vals = list(xs)
    for name, idx in prog["steps"]:
        vals.append(OPS[name].tl(*[vals[i] for i in idx], P))
    loss = vals[prog["terms"][0]].sum() * float(coeffs[0])
    for c, t in zip(coeffs[1:], prog["terms"][1:]):
        loss = loss + vals[t].sum() * float(c)
    return loss, xs, P


def run_torch(prog, leaves, params, coeffs):
    xs = [torch.tensor(v, dtype=torch.float64, requires_grad=g) for v, g in zip(leaves, prog["leaf_grad"])]
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=prog["param_grad"][k]) for k, v in params.items()}
    vals = list(xs)
    for name, idx in prog["steps"]:
        vals.append(OPS[name].torch(*[vals[i] for i in idx], P))
    loss = sum(float(c) * vals[t].sum() for c, t in zip(coeffs, prog["terms"]))
    if loss.requires_grad:
        loss.backward()
    return xs, P


def _numerical(prog, leaves, params, coeffs, arr, eps=1e-6):
    g = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        plus = run_numpy(prog, leaves, params, coeffs)
        arr[i] = old - eps
        minus = run_numpy(prog, leaves, params, coeffs)
        arr[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return g


def _grad(t):
    return np.zeros(t.shape) if t.grad is None else tl.backend.to_numpy(t.grad)


def check_program(prog, device="cpu"):
    leaves, params, coeffs = _values(prog)
    kinks = []
    expected = run_numpy(prog, leaves, params, coeffs, kinks)
    loss, xs, P = run_tinytl(prog, leaves, params, coeffs, device)
    np.testing.assert_allclose(float(loss.item()), expected, rtol=1e-12, atol=1e-12)
    if not loss.requires_grad:
        return
    loss.backward()
    got = [(f"leaf {i}", _grad(x)) for i, x in enumerate(xs) if x.requires_grad]
    got += [(k, _grad(p)) for k, p in P.items() if p.requires_grad]
    wanted = [leaves[i] for i, x in enumerate(xs) if x.requires_grad]
    wanted += [params[k] for k, p in P.items() if p.requires_grad]
    if torch is not None:
        txs, tP = run_torch(prog, leaves, params, coeffs)
        ref = [x for x in txs if x.requires_grad] + [p for p in tP.values() if p.requires_grad]
        for (what, g), r in zip(got, ref):
            r = np.zeros(g.shape) if r.grad is None else r.grad.numpy()
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10, err_msg=f"{what} vs torch, {prog}")
    if not kinks or min(kinks) > KINK:    # central differences are meaningless at a ReLU's kink
        for (what, g), arr in zip(got, wanted):
            num = _numerical(prog, leaves, params, coeffs, arr)
            # central differences carry an absolute error of about eps**2 * f''' + rounding / eps,
            # so the tolerance scales with the gradients' size (a chain of cubes reaches 1e6)
            scale = max(1.0, float(np.abs(num).max()))
            np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6 * scale, err_msg=f"{what} vs FD, {prog}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(programs())
def test_random_graphs_match_finite_differences_and_torch(prog):
    check_program(prog)


# ----------------------------------------------- the shapes of the bug report ----

def _residual(x, l1, l2):
    h = l1(x)
    return (h + l2(h)).sum()


def _square_plus(x, l1, l2):
    h = l1(x)
    return (h * (h + 1)).sum()


def _three_depths(x, l1, l2):
    h = l1(x)                            # h feeds ops at depths 1, 3 and 5 below the loss
    return (h + l2(F.relu(l2(h)) * h)).sum()


@pytest.mark.parametrize("shape", [_residual, _square_plus, _three_depths])
def test_reuse_at_two_depths_regressions(device, shape):
    rng = np.random.default_rng(0)
    x = tl.tensor(rng.standard_normal((2, 4)), requires_grad=True, device=device)
    l1 = tl.nn.Linear(4, 3).double().to(device)
    l2 = tl.nn.Linear(3, 3).double().to(device)
    params = [x, l1.weight, l1.bias, l2.weight, l2.bias]
    shape(x, l1, l2).backward()
    got = [_grad(p) for p in params]

    # independent reference: each parameter's gradient by central differences on the CPU
    cpu = [tl.tensor(p.numpy(), dtype=np.float64) for p in params]

    def f():
        class L:
            def __init__(self, w, b):
                self.w, self.b = w, b

            def __call__(self, v):
                return F.linear(v, self.w, self.b)
        return float(shape(cpu[0], L(cpu[1], cpu[2]), L(cpu[3], cpu[4])).item())

    for p, g in zip(cpu, got):
        num = np.zeros(p.shape)
        for i in np.ndindex(p.shape):
            old = p.data[i]
            p.data[i] = old + 1e-6
            plus = f()
            p.data[i] = old - 1e-6
            minus = f()
            p.data[i] = old
            num[i] = (plus - minus) / 2e-6
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7)


def test_a_node_reached_by_a_short_and_a_long_path_is_walked_after_both():
    """The bug report's example against torch's numbers, written out."""
    if torch is None:
        pytest.skip("torch is not importable")
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((2, 4))
    l1, l2 = tl.nn.Linear(4, 3).double(), tl.nn.Linear(3, 3).double()
    x = tl.tensor(xv, requires_grad=True)
    h = l1(x)
    (h + l2(h)).sum().backward()
    tx = torch.tensor(xv, requires_grad=True)
    W1, b1, W2, b2 = (torch.tensor(p.numpy(), requires_grad=True) for p in (l1.weight, l1.bias, l2.weight, l2.bias))
    th = torch.nn.functional.linear(tx, W1, b1)
    (th + torch.nn.functional.linear(th, W2, b2)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(l1.weight.grad, W1.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(l2.weight.grad, W2.grad.numpy(), rtol=1e-12)
