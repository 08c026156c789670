"""tinytl.attacks: FGSM and PGD against hand-written NumPy (and PyTorch) versions of the same
steps, the eps-ball and clip guarantees, monotone steps on a convex model, the model left
exactly as it was (even when the attack raises), and clear errors for bad input."""
import functools

import numpy as np
import pytest

import tinytl as tl
from tinytl import attacks as A
from tinytl import nn


# ---------------------------------------------------------------- helpers ----

def mlp(d=6, h=8, c=3, seed=0, dtype=np.float64, device="cpu"):
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h, dtype=dtype), nn.ReLU(), nn.Linear(h, c, dtype=dtype)).to(device)


def weights(model):
    return [tl.backend.to_numpy(p.data) for p in model.parameters()]


def data(n=12, d=6, c=3, seed=1, dtype=np.float64):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, d)).astype(dtype), r.integers(0, c, n)


def np_logits(ws, x):
    """The MLP's logits, and what the hand gradient needs (NumPy)."""
    if len(ws) == 2:
        W, b = ws
        return x @ W.T + b, None
    W1, b1, W2, b2 = ws
    z1 = x @ W1.T + b1
    return np.maximum(z1, 0) @ W2.T + b2, z1


def np_loss(ws, x, y):
    """Per-example cross-entropy."""
    z, _ = np_logits(ws, x)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return lse - z[np.arange(len(y)), y]


def np_grad(ws, x, y):
    """d(sum of per-example cross-entropies)/dx, by hand: (softmax - onehot) back through the layers."""
    z, z1 = np_logits(ws, x)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    if z1 is None:
        return p @ ws[0]
    return ((p @ ws[2]) * (z1 > 0)) @ ws[0]


def np_pgd(ws, x, y, eps, alpha, steps, norm, clip=None, targeted=False):
    """The PGD iteration written independently in NumPy (random_start=False)."""
    xa = x.copy()
    for _ in range(steps):
        g = np_grad(ws, xa, y)
        if norm == "linf":
            d = np.sign(g)
        else:
            n = np.linalg.norm(g, axis=1, keepdims=True)
            d = np.divide(g, n, out=np.zeros_like(g), where=n > 0)
        xa = xa + (-alpha if targeted else alpha) * d
        delta = xa - x
        if norm == "linf":
            delta = np.clip(delta, -eps, eps)
        else:
            n = np.linalg.norm(delta, axis=1, keepdims=True)
            delta = delta * np.where(n > eps, eps / np.maximum(n, 1e-300), 1.0)
        xa = x + delta
        if clip is not None:
            xa = np.clip(xa, *clip)
    return xa


def host(a):
    return tl.backend.to_numpy(a.data if isinstance(a, tl.Tensor) else a)


def within(x_adv, x, eps, norm):
    d = (x_adv - x).reshape(len(x), -1)
    size = np.abs(d).max(axis=1) if norm == "linf" else np.linalg.norm(d, axis=1)
    tol = 8 * np.finfo(x.dtype).eps * (1 + np.abs(x).max())
    return bool((size <= eps + tol).all())


# ------------------------------------------------------------ FGSM / PGD ----

@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_is_x_plus_eps_sign_of_the_hand_gradient(device, targeted):
    model = mlp(device=device)
    x, y = data()
    g = np_grad(weights(model), x, y)
    want = x + (-0.3 if targeted else 0.3) * np.sign(g)
    got = A.fgsm(model, x, y, 0.3, targeted=targeted)
    assert isinstance(got, np.ndarray)                  # NumPy in, NumPy out (the model may be on a GPU)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    x = np.clip(x, -1, 1)
    want = x + (-0.3 if targeted else 0.3) * np.sign(np_grad(weights(model), x, y))
    clipped = A.fgsm(model, x, y, 0.3, clip=(-1.0, 1.0), targeted=targeted)
    np.testing.assert_allclose(clipped, np.clip(want, -1, 1), rtol=0, atol=1e-15)


def test_fgsm_and_pgd_on_tensors_return_tensors_on_their_device(device):
    model = mlp(device=device)
    x, y = data()
    xt, yt = tl.tensor(x, device=device), tl.tensor(y, device=device)
    for out in (A.fgsm(model, xt, yt, 0.1), A.pgd(model, xt, yt, 0.1, 0.05, 3, seed=0)):
        assert isinstance(out, tl.Tensor) and out.device == device and not out.requires_grad
    np.testing.assert_allclose(host(A.fgsm(model, xt, yt, 0.1)), A.fgsm(model, x, y, 0.1), rtol=0, atol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_matches_numpy(device, norm, targeted):
    model = mlp(device=device)
    x, y = data()
    clip = (-1.5, 1.5) if norm == "linf" else None
    x = np.clip(x, -1.5, 1.5)
    got = A.pgd(model, x, y, 0.4, 0.1, 6, norm=norm, random_start=False, clip=clip, targeted=targeted)
    want = np_pgd(weights(model), x, y, 0.4, 0.1, 6, norm, clip, targeted)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_matches_torch(device, norm):
    torch = pytest.importorskip("torch")
    model = mlp(device=device)
    x, y = data()
    W1, b1, W2, b2 = (torch.tensor(w) for w in weights(model))
    xt, yt = torch.tensor(x), torch.tensor(y)
    eps, alpha, steps = 0.5, 0.12, 8
    xa = xt.clone()
    for _ in range(steps):                              # the same steps, in PyTorch
        xa.requires_grad_(True)
        z = torch.relu(xa @ W1.T + b1) @ W2.T + b2
        g, = torch.autograd.grad(torch.nn.functional.cross_entropy(z, yt, reduction="sum"), xa)
        if norm == "linf":
            d = g.sign()
        else:
            n = g.norm(dim=1, keepdim=True)
            d = torch.where(n > 0, g / n.clamp_min(1e-300), torch.zeros_like(g))
        delta = xa.detach() + alpha * d - xt
        if norm == "linf":
            delta = delta.clamp(-eps, eps)
        else:
            n = delta.norm(dim=1, keepdim=True)
            delta = delta * torch.where(n > eps, eps / n.clamp_min(1e-300), torch.ones_like(n))
        xa = xt + delta
    got = A.pgd(model, x, y, eps, alpha, steps, norm=norm, random_start=False)
    np.testing.assert_allclose(got, xa.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("clip", [None, (-1.0, 2.0)])
def test_every_example_is_in_its_ball_and_the_clip_range(device, norm, clip):
    model = mlp(dtype=np.float32, device=device)
    x, y = data(n=40, dtype=np.float32, seed=3)
    if clip is not None:
        x = np.clip(x, *clip)
    for eps in (0.0, 0.05, 0.7, 3.0):
        outs = [A.pgd(model, x, y, eps, 0.3, 4, norm=norm, clip=clip, seed=s) for s in (0, 1)]
        outs.append(A.pgd(model, x, y, eps, 0.3, 4, norm=norm, clip=clip, random_start=False, targeted=True))
        outs.append(A.feature_pgd(model, x, y, eps, None, 3, norm=norm, clip=clip, seed=2))
        outs += [A.random_noise(model, x, y, eps, norm=norm, clip=clip, surface=s, seed=4) for s in (True, False)]
        if norm == "linf":
            outs.append(A.fgsm(model, x, y, eps, clip=clip))
        for out in outs:
            assert out.dtype == np.float32 and out.shape == x.shape
            assert within(out, x, eps, norm)
            if clip is not None:
                assert out.min() >= clip[0] and out.max() <= clip[1]
        if eps == 0:
            for out in outs:
                np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_inputs_of_any_shape_the_model_accepts(device, norm):
    """Per-example norms and projections work on (N, 2, 3) inputs as on their (N, 6) flattening."""
    flat = mlp(device=device)
    model = nn.Sequential(nn.Flatten(), flat)
    x, y = data()
    x3 = x.reshape(12, 2, 3)
    got = A.pgd(model, x3, y, 0.3, 0.1, 4, norm=norm, seed=0)
    assert got.shape == (12, 2, 3) and within(got, x3, 0.3, norm)
    np.testing.assert_allclose(got.reshape(12, 6), A.pgd(flat, x, y, 0.3, 0.1, 4, norm=norm, seed=0), rtol=1e-12)


def test_noise_on_the_surface_has_exactly_the_norm_eps(device):
    x, y = data(n=50, d=20)
    model = mlp(d=20)
    lin = A.random_noise(model, x, y, 0.25, seed=0) - x
    np.testing.assert_allclose(np.abs(lin), 0.25, rtol=1e-12)
    l2 = A.random_noise(model, x, y, 0.25, norm="l2", seed=0) - x
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 0.25, rtol=1e-12)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("norm,clip", [("linf", None), ("linf", (-1.2, 1.2)), ("l2", None)])
def test_steps_never_go_the_wrong_way_on_a_convex_model(device, targeted, norm, clip):
    """On a linear model the cross-entropy is convex in x, with a Hessian W^T (diag p - p p^T) W
    whose largest eigenvalue is at most beta = ||W||_2^2 / 2. Every projected step d from x_t
    moves along the gradient's direction (g . d >= 0; <= 0 targeted), so by convexity
    (L(x + d) >= L(x) + g . d) an untargeted step never lowers an example's loss. A targeted
    step lowers it when it is short enough for the curvature: by the descent lemma,
    L(x + d) <= L(x) + g . d + beta/2 ||d||^2, so whenever -g . d >= beta/2 ||d||^2; a longer
    step may overshoot (convexity alone promises nothing for descent), so the test checks it
    where the lemma applies and that it applies to most steps."""
    tl.manual_seed(5)
    model = nn.Linear(6, 4, dtype=np.float64).to(device)
    ws = weights(model)
    beta = np.linalg.norm(ws[0], 2) ** 2 / 2
    x, y = data(n=30, c=4, seed=7)
    if clip is not None:
        x = np.clip(x, *clip)
    alpha = 0.004 if targeted else 0.15
    iterates = [x] + [A.pgd(model, x, y, 0.5, alpha, k, norm=norm, random_start=False, clip=clip, targeted=targeted)
                      for k in range(1, 8)]
    losses = np.stack([np_loss(ws, xa, y) for xa in iterates])
    rises = np.diff(losses, axis=0)
    for t in range(7):
        d = iterates[t + 1] - iterates[t]
        slope = (np_grad(ws, iterates[t], y) * d).sum(axis=1)          # g . d, per example
        assert ((slope <= 0) if targeted else (slope >= 0)).all()
        if targeted:
            lemma = -slope >= beta / 2 * (d ** 2).sum(axis=1)
            assert lemma.mean() >= 0.9
            assert (rises[t][lemma] <= 1e-12).all()
    if not targeted:
        assert (rises >= -1e-12).all()
    assert np.abs(rises).max() > 1e-4                  # the attack did move the loss
    if not targeted:
        xf = A.fgsm(model, x, y, 0.2, clip=clip if norm == "linf" else None)
        assert (np_loss(ws, xf, y) - losses[0] >= -1e-12).all()


def test_pgd_random_start_is_seeded_and_uniform_in_the_ball():
    model = mlp()
    x, y = data()
    a = A.pgd(model, x, y, 0.3, 0.1, 2, seed=11)
    np.testing.assert_array_equal(a, A.pgd(model, x, y, 0.3, 0.1, 2, seed=11))
    assert not np.array_equal(a, A.pgd(model, x, y, 0.3, 0.1, 2, seed=12))
    tl.manual_seed(3)
    b = A.pgd(model, x, y, 0.3, 0.1, 2)
    tl.manual_seed(3)
    np.testing.assert_array_equal(b, A.pgd(model, x, y, 0.3, 0.1, 2))   # None: tinytl's global generator
    # uniform in the L2 ball of R^d: (r / eps)^d is uniform on [0, 1]; in the cube each coordinate is
    rng = np.random.default_rng(0)
    d = A._random_in_ball((20000, 3), 2.0, "l2", np.float64, rng)
    u = (np.linalg.norm(d, axis=1) / 2.0) ** 3
    assert u.max() <= 1 + 1e-12 and abs(u.mean() - 0.5) < 0.01 and abs((u < 0.25).mean() - 0.25) < 0.015
    c = A._random_in_ball((20000, 3), 2.0, "linf", np.float64, rng)
    assert np.abs(c).max() <= 2.0 and abs((np.abs(c) < 1.0).mean() - 0.5) < 0.01


def test_pgd_is_stronger_than_fgsm_and_noise(device):
    model = mlp(d=10, h=32, c=4, device=device)
    x, _ = data(n=200, d=10, seed=2)
    y = host(model(tl.tensor(x, device=device))).argmax(axis=1)    # the model is right everywhere
    acc = functools.partial(A.robust_accuracy, model, x, y)
    noise = acc(functools.partial(A.random_noise, eps=0.3, seed=0))
    f = acc(functools.partial(A.fgsm, eps=0.3))
    p = acc(functools.partial(A.pgd, eps=0.3, alpha=0.05, steps=20, seed=0))
    assert acc() == 1.0 and p <= f < noise


# ------------------------------------------------------ the model's state ----

class Boom(nn.Module):
    """Calls ``inner``; raises on the ``fail_at``-th call."""

    def __init__(self, inner, fail_at):
        super().__init__()
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0
        self.seen = []          # requires_grad of every parameter, at each call

    def forward(self, x):
        self.calls += 1
        self.seen.append([p.requires_grad for p in self.parameters()])
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        return self.inner(x)


def snapshot(model):
    return ([(m, m.training) for m in model.modules()],
            [(p, p.requires_grad, p.grad, None if p.grad is None else host(p.grad).copy(), p._freezes)
             for p in model.parameters()])


def assert_unchanged(model, snap):
    modes, params = snap
    for m, mode in modes:
        assert m.training == mode
    for p, req, grad, value, freezes in params:
        assert p.requires_grad == req and p.grad is grad and p._freezes == freezes
        if value is not None:
            np.testing.assert_array_equal(host(p.grad), value)


def prepared(device, fail_at=0):
    inner = mlp(device=device)
    tl.transfer.freeze(inner, "0.*")                       # a frozen layer
    inner[2].weight.grad = tl.backend.get_array_module(inner[2].weight.data).ones_like(inner[2].weight.data)
    model = Boom(inner, fail_at)
    model.train()
    inner[1].eval()                                        # mixed modes must come back as they were
    return model


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "feature_pgd", "robust_accuracy", "transfer_attack"])
def test_the_model_is_left_exactly_as_it_was(device, attack):
    model = prepared(device)
    snap = snapshot(model)
    x, y = data()
    if attack == "fgsm":
        A.fgsm(model, x, y, 0.2)
    elif attack == "pgd":
        A.pgd(model, x, y, 0.2, 0.1, 3, seed=0)
    elif attack == "feature_pgd":
        A.feature_pgd(model.inner, x, y, 0.2, 0.1, 3, seed=0)
    elif attack == "robust_accuracy":
        A.robust_accuracy(model, x, y, functools.partial(A.pgd, eps=0.2, alpha=0.1, steps=2), batch_size=5)
    else:
        A.transfer_attack(model.inner, model, x, y, eps=0.2, steps=2, batch_size=5)
    assert_unchanged(model, snap)
    if attack != "feature_pgd":
        assert model.calls > 1 and all(not any(s) for s in model.seen)   # no parameter gradient, ever
        assert model.training and model.inner[0].weight.grad is None


@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_the_model_is_restored_when_the_attack_raises(device, fail_at):
    model = prepared(device, fail_at)
    snap = snapshot(model)
    x, y = data()
    with pytest.raises(RuntimeError, match="boom"):
        A.pgd(model, x, y, 0.2, 0.1, 5, seed=0)
    assert_unchanged(model, snap)
    model.calls, model.fail_at = 0, min(fail_at, 2)     # fgsm calls the model twice: probe, gradient
    with pytest.raises(RuntimeError, match="boom"):
        A.fgsm(model, x, y, 0.2)
    assert_unchanged(model, snap)


def test_an_attack_inside_no_grad_still_works(device):
    model = mlp(device=device)
    x, y = data()
    with tl.no_grad():
        got = A.fgsm(model, x, y, 0.1)
        assert not tl.is_grad_enabled()
    np.testing.assert_array_equal(got, A.fgsm(model, x, y, 0.1))


# ------------------------------------------------------------ bad input ----

BAD = [
    (dict(eps=-0.1), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(alpha=0.0), ValueError, "alpha"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=2.5), ValueError, "steps"),
    (dict(clip=(1.0, 0.0)), ValueError, "clip"),
    (dict(clip=(0.5, 0.5)), ValueError, "clip"),
    (dict(clip=(0.0,)), ValueError, "clip"),
    (dict(clip=(-10.0, 0.0)), ValueError, "outside clip"),     # x is not in the clip range
    (dict(norm="l1"), ValueError, "norm"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(y=np.array([0, 1, 3] * 4)), ValueError, "y[2] = 3"),     # 3 classes: labels 0..2
    (dict(y=np.array([0, -1, 1] * 4)), ValueError, "y[1] = -1"),
    (dict(y=np.zeros(11, dtype=np.int64)), ValueError, "shape (12,)"),
    (dict(y=np.zeros(12)), TypeError, "integer"),
    (dict(x=np.zeros((12, 5))), ValueError, "does not accept x of shape (12, 5)"),
    (dict(x=np.zeros((12, 6), dtype=np.int64)), TypeError, "float32 or float64"),
    (dict(x=np.zeros((12, 6), dtype=np.float32)), TypeError, "does not accept x"),
    (dict(x=np.zeros((0, 6))), ValueError, "at least one example"),
]


@pytest.mark.parametrize("fn,kwargs,exc,words", [("pgd", *case) for case in BAD] + [
    ("fgsm", *case) for case in BAD if not set(case[0]) & {"alpha", "steps", "norm", "seed"}])
def test_bad_input_is_a_clear_error_before_any_step(device, fn, kwargs, exc, words):
    model = prepared(device)
    snap = snapshot(model)
    x, y = data()
    args = dict(x=x, y=y, eps=0.1, alpha=0.05, steps=3)
    args.update(kwargs)
    call = (lambda: A.pgd(model, **args)) if fn == "pgd" else \
        (lambda: A.fgsm(model, args["x"], args["y"], args["eps"], clip=args.get("clip")))
    with pytest.raises(exc) as e:
        call()
    assert str(e.value).startswith(fn + ":") and words in str(e.value)
    assert model.calls <= 1            # at most the one-row probe that checks x and the labels
    assert_unchanged(model, snap)


def test_bad_arguments_of_the_evaluation_helpers():
    model = mlp()
    x, y = data()
    with pytest.raises(TypeError, match="robust_accuracy: attack must be a callable"):
        A.robust_accuracy(model, x, y, attack="pgd")
    with pytest.raises(ValueError, match="robust_accuracy: batch_size"):
        A.robust_accuracy(model, x, y, batch_size=0)
    with pytest.raises(TypeError, match="robust_accuracy: model must be a tinytl Module"):
        A.robust_accuracy(lambda v: v, x, y)
    with pytest.raises(ValueError, match="transfer_attack: attack must be"):
        A.transfer_attack(model, model, x, y, attack="cw", eps=0.1)
    with pytest.raises(TypeError, match="transfer_attack: eps is required"):
        A.transfer_attack(model, model, x, y)
    with pytest.raises(ValueError, match="transfer_attack: feature_layer must keep between 1 and 3"):
        A.transfer_attack(model, model, x, y, eps=0.1, feature_layer=4)
    with pytest.raises(TypeError, match="feature_pgd: feature_layer must be a Module"):
        A.feature_pgd(nn.Linear(6, 3, dtype=np.float64), x, None, 0.1)
    with pytest.raises(ValueError, match=r"robust_accuracy: y\[0\] = 3 is not a class index in \[0, 3\)"):
        A.robust_accuracy(model, x, np.full(12, 3))
    with pytest.raises(ValueError, match="transfer_attack: the attack returned shape"):
        A.transfer_attack(model, model, x, y, attack=lambda m, a, b: a[:, :2])


# ------------------------------------------------------- evaluation helpers ----

def test_robust_accuracy_is_the_accuracy_on_the_attacked_batches(device):
    model = mlp(device=device)
    x, y = data(n=50)
    f = functools.partial(A.fgsm, eps=0.3)
    want = (host(model(tl.tensor(A.fgsm(model, x, y, 0.3), device=device))).argmax(axis=1) == y).mean()
    for bs in (7, 50, 256):                       # FGSM is per example: the batching does not matter
        assert A.robust_accuracy(model, x, y, f, batch_size=bs) == pytest.approx(want, abs=1e-12)
    clean = (host(model(tl.tensor(x, device=device))).argmax(axis=1) == y).mean()
    assert A.robust_accuracy(model, x, y) == pytest.approx(clean, abs=1e-12)


def test_transfer_attack_reports_clean_adversarial_and_success_rate(device):
    source, target = mlp(seed=0, device=device), mlp(seed=1, device=device)
    x, y = data(n=60)
    r = A.transfer_attack(source, target, x, y, attack="pgd", eps=0.5, steps=5, seed=0, batch_size=16)
    xa = A.pgd(source, x, y, 0.5, 2.5 * 0.5 / 5, 5, seed=0)     # one batch of 60 vs 16: per-example noise
    clean = host(target(tl.tensor(x, device=device))).argmax(axis=1) == y
    assert r.n == 60 and r.n_clean_correct == clean.sum()
    assert r.clean_accuracy == pytest.approx(clean.mean())
    np.testing.assert_array_equal(r.clean_correct, clean)
    assert r.success_rate == pytest.approx((r.clean_correct & ~r.adversarial_correct).sum() / clean.sum())
    assert r.adversarial_accuracy == pytest.approx(r.adversarial_correct.mean())
    assert set(r.to_dict()) == {"clean_accuracy", "adversarial_accuracy", "success_rate", "n", "n_clean_correct",
                                "attack", "eps", "norm"}
    assert xa.shape == x.shape
    # a dict of targets: crafted once, scored on each, the same numbers as one at a time
    both = A.transfer_attack(source, {"s": source, "t": target}, x, y, eps=0.5, seed=3)
    alone = A.transfer_attack(source, target, x, y, eps=0.5, seed=3)
    np.testing.assert_array_equal(both["t"].adversarial_correct, alone.adversarial_correct)
    # the same model as source and target: transfer_attack("pgd") is robust_accuracy under pgd
    same = A.transfer_attack(source, source, x, y, attack="pgd", eps=0.5, steps=5, seed=0, batch_size=60)
    assert same.adversarial_accuracy == A.robust_accuracy(
        source, x, y, functools.partial(A.pgd, eps=0.5, alpha=0.25, steps=5, seed=0), batch_size=60)


def test_feature_pgd_pushes_the_features_further_than_noise(device):
    model = mlp(d=10, h=32, c=4, device=device)
    x, _ = data(n=100, d=10)
    phi = model[:-1]

    def moved(xa):
        return np.linalg.norm(host(phi(tl.tensor(xa, device=device))) - host(phi(tl.tensor(x, device=device))),
                              axis=1).mean()
    fp = A.feature_pgd(model, x, None, 0.3, None, 10, seed=0)
    noise = A.random_noise(model, x, np.zeros(100, np.int64), 0.3, seed=0)
    assert moved(fp) > 1.2 * moved(noise)      # measured: 1.4x
    # phi as a layer count or as a Module gives the same thing as the default
    np.testing.assert_array_equal(fp, A.feature_pgd(model, x, None, 0.3, None, 10, feature_layer=2, seed=0))
    np.testing.assert_array_equal(fp, A.feature_pgd(model, x, None, 0.3, None, 10, feature_layer=phi, seed=0))


def test_attacks_are_lazily_importable():
    import subprocess
    import sys
    code = ("import sys, tinytl as tl; assert 'tinytl.attacks' not in sys.modules; "
            "assert tl.attacks.pgd is __import__('tinytl.attacks').attacks.pgd")
    subprocess.run([sys.executable, "-c", code], check=True)
