"""Tests for tinytl/transfer/adapt.py: gradient reversal, the alignment losses, AdaBN, adapt."""
import importlib
import math

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl.testing import gradcheck
A = importlib.import_module("tinytl.transfer.adapt")   # tl.transfer.adapt is the function


def _t(a, device, requires_grad=True):
    return tl.tensor(np.asarray(a, np.float64), requires_grad=requires_grad, dtype=np.float64, device=device)


# ------------------------------------------------------- NumPy references ----
# written from the formulas of the papers, independently of adapt.py

def np_coral(S, T):
    d = S.shape[1]
    Cs = np.cov(S, rowvar=False, ddof=1)
    Ct = np.cov(T, rowvar=False, ddof=1)
    return ((Cs - Ct) ** 2).sum() / (4 * d * d)


def np_kernel(a, b, gammas):
    d2 = ((a - b) ** 2).sum()
    return np.mean([math.exp(-d2 / g) for g in gammas])


def np_gammas(S, T, mults):
    Z = np.concatenate([S, T])
    n = len(Z)
    d2 = [((Z[i] - Z[j]) ** 2).sum() for i in range(n) for j in range(n) if i != j]
    return [m * np.mean(d2) for m in mults]


def np_mmd_unbiased(S, T, mults=A.DAN_KERNELS):
    g = np_gammas(S, T, mults)
    m, n = len(S), len(T)
    xx = sum(np_kernel(S[i], S[j], g) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(np_kernel(T[i], T[j], g) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(np_kernel(S[i], T[j], g) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def np_mmd_linear(S, T, mults=A.DAN_KERNELS):
    g = np_gammas(S, T, mults)
    h = len(S) // 2
    total = 0.0
    for i in range(h):
        s1, s2, t1, t2 = S[2 * i], S[2 * i + 1], T[2 * i], T[2 * i + 1]
        total += np_kernel(s1, s2, g) + np_kernel(t1, t2, g) - np_kernel(s1, t2, g) - np_kernel(s2, t1, g)
    return total / h


def np_bce(z, t):
    p = 1 / (1 + np.exp(-z))
    return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))


# ------------------------------------------------------- gradient reversal ----

def test_grad_reverse_is_identity_forward_and_negated_backward(device, rng):
    x = _t(rng.normal(size=(4, 3)), device)
    y = A.grad_reverse(x, 0.7)
    assert np.array_equal(y.numpy(), x.numpy())
    w = rng.normal(size=(4, 3))
    (y * _t(w, device, False)).sum().backward()
    np.testing.assert_allclose(tl.tensor(x.grad).numpy(), -0.7 * w, rtol=1e-12)


def test_grad_reverse_by_finite_differences(device, rng):
    """The reversed gradient is -coeff times the finite-difference gradient of what follows."""
    x = _t(rng.normal(size=(3, 4)), device)
    w = _t(rng.normal(size=(4, 2)), device, False)

    def f(x):
        return ((x @ w) * (x @ w)).sum()
    f(x).backward()
    plain = tl.tensor(x.grad).numpy()
    num = tl.testing.numerical_grad(f, [x], 0)
    np.testing.assert_allclose(plain, num, rtol=1e-6, atol=1e-8)
    x.grad = None
    f(A.grad_reverse(x, 2.5)).backward()
    np.testing.assert_allclose(tl.tensor(x.grad).numpy(), -2.5 * num, rtol=1e-6, atol=1e-8)
    layer = A.GradientReversal(0.5)
    x.grad = None
    f(layer(x)).backward()
    np.testing.assert_allclose(tl.tensor(x.grad).numpy(), -0.5 * num, rtol=1e-6, atol=1e-8)


def test_grad_reverse_bad_coeff():
    with pytest.raises(ValueError, match="grad_reverse: coeff"):
        A.grad_reverse(tl.tensor(np.ones(2)), -1.0)
    with pytest.raises(ValueError, match="grad_reverse: coeff"):
        A.GradientReversal(float("nan"))


def test_dann_schedule():
    s = A.DANNSchedule(100)
    assert s.coeff == 0.0
    for _ in range(20):
        s.step()
    assert s.coeff == pytest.approx(2 / (1 + math.exp(-10 * 0.2)) - 1)
    for _ in range(200):
        s.step()
    assert s.progress == 1.0 and s.coeff == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert A.DANNSchedule.value(0.5, gamma=4, high=0.5) == pytest.approx(0.5 * (2 / (1 + math.exp(-2)) - 1))
    with pytest.raises(ValueError, match="DANNSchedule: total_steps"):
        A.DANNSchedule(0)


# ------------------------------------------------------------------- CORAL ----

def test_coral_matches_the_formula_and_gradchecks(device, rng):
    S, T = rng.normal(size=(7, 3)), 2 * rng.normal(size=(5, 3)) + 1
    fs, ft = _t(S, device), _t(T, device)
    assert A.coral_loss(fs, ft).item() == pytest.approx(np_coral(S, T), rel=1e-10)
    assert gradcheck(A.coral_loss, [fs, ft])


def test_coral_zero_for_equal_covariances_and_blind_to_the_mean(rng):
    S = rng.normal(size=(50, 4))
    assert A.coral_loss(_t(S, "cpu"), _t(S + 5.0, "cpu")).item() == pytest.approx(0.0, abs=1e-12)
    T = rng.normal(size=(40, 4)) * 3
    base = A.coral_loss(_t(S, "cpu"), _t(T, "cpu")).item()
    assert base > 0.1
    shifted = A.coral_loss(_t(S - 2.0, "cpu"), _t(T + rng.normal(size=4), "cpu")).item()
    assert shifted == pytest.approx(base, rel=1e-10)


def test_coral_float32(rng):
    S, T = rng.normal(size=(30, 5)), rng.normal(size=(20, 5)) * 2
    v = A.coral_loss(tl.tensor(S.astype(np.float32)), tl.tensor(T.astype(np.float32)))
    assert v.dtype == np.float32 and v.item() == pytest.approx(np_coral(S, T), rel=1e-4)


# --------------------------------------------------------------------- MMD ----

@pytest.mark.parametrize("estimator, ref", [("unbiased", np_mmd_unbiased), ("linear", np_mmd_linear)])
def test_mmd_matches_the_formula_and_gradchecks(estimator, ref, device, rng):
    S, T = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 0.8
    fs, ft = _t(S, device), _t(T, device)
    assert A.mmd_loss(fs, ft, estimator=estimator).item() == pytest.approx(ref(S, T), rel=1e-10)
    # the bandwidth is a constant of backward: check against finite differences with it frozen
    g = np_gammas(S, T, A.DAN_KERNELS)
    mults = [gi / A._mean_sq_distance(np.concatenate([S, T]), np) for gi in g]
    assert np.allclose(mults, A.DAN_KERNELS)
    loss = A.mmd_loss(fs, ft, estimator=estimator)
    loss.backward()
    ana = [tl.tensor(fs.grad).numpy(), tl.tensor(ft.grad).numpy()]
    eps = 1e-6
    for which, X in ((0, S), (1, T)):
        num = np.zeros_like(X)
        for i in np.ndindex(X.shape):
            Xp, Xm = X.copy(), X.copy()
            Xp[i] += eps
            Xm[i] -= eps
            args_p = (Xp, T) if which == 0 else (S, Xp)
            args_m = (Xm, T) if which == 0 else (S, Xm)
            # the reference with the bandwidths of the unperturbed data
            fp = _ref_fixed(estimator, *args_p, g)
            fm = _ref_fixed(estimator, *args_m, g)
            num[i] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(ana[which], num, rtol=1e-5, atol=1e-8)


def _ref_fixed(estimator, S, T, gammas):
    """np_mmd_* with given bandwidths."""
    m, n = len(S), len(T)
    k = lambda a, b: np_kernel(a, b, gammas)   # noqa: E731
    if estimator == "unbiased":
        xx = sum(k(S[i], S[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(T[i], T[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        xy = sum(k(S[i], T[j]) for i in range(m) for j in range(n)) / (m * n)
        return xx + yy - 2 * xy
    h = m // 2
    return sum(k(S[2 * i], S[2 * i + 1]) + k(T[2 * i], T[2 * i + 1]) - k(S[2 * i], T[2 * i + 1])
               - k(S[2 * i + 1], T[2 * i]) for i in range(h)) / h


def test_mmd_unequal_sizes_unbiased_and_custom_kernels(rng):
    S, T = rng.normal(size=(5, 2)), rng.normal(size=(8, 2))
    v = A.mmd_loss(_t(S, "cpu", False), _t(T, "cpu", False), kernels=(0.5, 1.0, 4.0))
    assert v.item() == pytest.approx(np_mmd_unbiased(S, T, (0.5, 1.0, 4.0)), rel=1e-10)


def test_mmd_near_zero_for_one_distribution_and_positive_for_separated(rng):
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    same = A.mmd_loss(tl.tensor(a), tl.tensor(b)).item()
    far = A.mmd_loss(tl.tensor(a), tl.tensor(b + 3.0)).item()
    assert abs(same) < 0.01 and far > 0.3
    same_l = A.mmd_loss(tl.tensor(a), tl.tensor(b), estimator="linear").item()
    far_l = A.mmd_loss(tl.tensor(a), tl.tensor(b + 3.0), estimator="linear").item()
    assert abs(same_l) < 0.05 and far_l > 0.3


def test_mmd_bad_arguments(rng):
    a, b = tl.tensor(rng.normal(size=(6, 3))), tl.tensor(rng.normal(size=(4, 3)))
    with pytest.raises(ValueError, match="mmd_loss: the linear estimator .* equal batch sizes, got 6 source and 4"):
        A.mmd_loss(a, b, estimator="linear")
    with pytest.raises(ValueError, match="mmd_loss: estimator"):
        A.mmd_loss(a, b, estimator="quadratic")
    with pytest.raises(ValueError, match="mmd_loss: kernels"):
        A.mmd_loss(a, b, kernels=(1.0, -2.0))
    with pytest.raises(ValueError, match="same number of features"):
        A.mmd_loss(a, tl.tensor(rng.normal(size=(4, 2))))
    with pytest.raises(ValueError, match="coral_loss: ft needs at least 2 rows"):
        A.coral_loss(a, tl.tensor(rng.normal(size=(1, 3))))


# -------------------------------------------------------------------- DANN ----

def test_bce_with_logits_matches_the_formula_and_gradchecks(device, rng):
    z = rng.normal(size=8) * 3
    t = (rng.random(8) > 0.5).astype(np.float64)
    zt = _t(z, device)
    tt = tl.tensor(t, dtype=np.float64, device=device).data
    assert tl.nn.functional.binary_cross_entropy_with_logits(zt, tl.Tensor(tt)).item() == pytest.approx(np_bce(z, t), rel=1e-10)
    assert gradcheck(lambda z: tl.nn.functional.binary_cross_entropy_with_logits(z, tl.Tensor(tt)), [zt])
    big = tl.nn.functional.binary_cross_entropy_with_logits(_t(np.array([800.0, -800.0]), device), tl.tensor(np.array([0.0, 1.0]), device=device))
    assert big.item() == pytest.approx(800.0)          # stable: no overflow to inf


def test_domain_adversarial_loss(device, rng):
    tl.manual_seed(0)
    disc = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).double().to(device)
    S, T = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 1
    fs, ft = _t(S, device), _t(T, device)
    loss_fn = A.DomainAdversarialLoss(disc, coeff=0.3)
    loss = loss_fn(fs, ft)
    with tl.no_grad():
        z = disc(tl.tensor(np.concatenate([S, T]), dtype=np.float64, device=device)).numpy().ravel()
    assert loss.item() == pytest.approx(np_bce(z, np.r_[np.ones(5), np.zeros(4)]), rel=1e-10)
    assert 0 <= loss_fn.domain_accuracy <= 1
    loss.backward()
    # the features get -0.3 x the gradient of the plain BCE; the discriminator its own gradient
    got = tl.tensor(fs.grad).numpy()
    fs.grad = None

    def plain(fs):
        return tl.nn.functional.binary_cross_entropy_with_logits(disc(tl.cat((fs, ft), 0)).reshape(9),
                                  tl.tensor(np.r_[np.ones(5), np.zeros(4)], device=device).data)
    num = tl.testing.numerical_grad(plain, [fs], 0)
    np.testing.assert_allclose(got, -0.3 * num, rtol=1e-5, atol=1e-9)
    sched = A.DANNSchedule(10)
    loss_fn = A.DomainAdversarialLoss(disc, schedule=sched)
    sched.step()
    loss_fn(fs, ft)
    assert loss_fn.grl.coeff == pytest.approx(sched.coeff)
    with pytest.raises(ValueError, match="one logit per row"):
        A.DomainAdversarialLoss(nn.Linear(3, 2).double().to(device))(fs, ft)


# ------------------------------------------------------------------- AdaBN ----

class FakeBatchNorm(nn.Module):
    """torch's BatchNorm API in miniature: running stats as plain attributes, updated in forward
    (cumulative average when momentum is None), normalisation by them in eval mode."""

    def __init__(self, n, momentum=0.1):
        super().__init__()
        self.weight = nn.Parameter(np.ones(n, np.float32))
        self.bias = nn.Parameter(np.zeros(n, np.float32))
        self.momentum = momentum
        self.running_mean = np.zeros(n, np.float32)
        self.running_var = np.ones(n, np.float32)
        self.num_batches_tracked = 0

    def reset_running_stats(self):
        self.running_mean = np.zeros_like(self.running_mean)
        self.running_var = np.ones_like(self.running_var)
        self.num_batches_tracked = 0

    def forward(self, x):
        X = x.data
        if self.training:
            mu, var = X.mean(0), X.var(0, ddof=1)
            self.num_batches_tracked += 1
            f = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
            self.running_mean = (1 - f) * self.running_mean + f * mu
            self.running_var = (1 - f) * self.running_var + f * var
            m, v = mu, X.var(0)
        else:
            m, v = self.running_mean, self.running_var
        return (x - tl.tensor(m.astype(X.dtype))) * tl.tensor((1 / np.sqrt(v + 1e-5)).astype(X.dtype)) \
            * self.weight + self.bias


def _bn_model(bn_cls):
    tl.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), bn_cls(6), nn.ReLU(), nn.Linear(6, 3))


def test_adabn_reestimates_only_the_running_statistics(rng):
    model = _bn_model(FakeBatchNorm)
    model.train()
    with tl.no_grad():
        model(tl.tensor(rng.normal(size=(64, 4)).astype(np.float32)))       # source statistics
    model.eval()
    bn = model[1]
    before = model.state_dict()
    X_t = (rng.normal(size=(100, 4)) * 2 + 3).astype(np.float32)
    out = A.adabn(model, X_t, batch_size=25)
    assert out is model
    after = model.state_dict()
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert not model.training and not bn.training and bn.momentum == 0.1          # modes and momentum restored
    with tl.no_grad():
        h = model[0](tl.tensor(X_t)).numpy()
    batches = [h[i:i + 25] for i in range(0, 100, 25)]
    np.testing.assert_allclose(bn.running_mean, np.mean([b.mean(0) for b in batches], 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, np.mean([b.var(0, ddof=1) for b in batches], 0), rtol=1e-5, atol=1e-6)


def test_adabn_errors(rng):
    with pytest.raises(ValueError, match="adabn: model has no BatchNorm"):
        A.adabn(nn.Sequential(nn.Linear(4, 2)), rng.normal(size=(10, 4)))
    model = _bn_model(FakeBatchNorm)
    with pytest.raises(ValueError, match="adabn: X_target is empty"):
        A.adabn(model, np.zeros((0, 4), np.float32))
    X = rng.normal(size=(10, 4))
    X[3, 1] = np.nan
    mean0 = model[1].running_mean.copy()
    with pytest.raises(ValueError, match="adabn: X_target holds NaN"):
        A.adabn(model, X)
    assert np.array_equal(model[1].running_mean, mean0)


def test_adabn_with_tinytl_batchnorm(device, rng):
    if not hasattr(nn, "BatchNorm1d"):
        pytest.skip("BatchNorm1d not merged yet")
    model = _bn_model(nn.BatchNorm1d).to(device)
    model.eval()
    bn = model[1]
    params = {k: v.copy() for k, v in model.named_parameters() for v in [tl.tensor(v).numpy()]}
    X_t = (rng.normal(size=(90, 4)) * 2 + 3).astype(np.float32)
    A.adabn(model, X_t, batch_size=30)
    assert all(np.array_equal(tl.tensor(p).numpy(), params[k]) for k, p in model.named_parameters())
    assert not model.training and bn.momentum == 0.1
    with tl.no_grad():
        h = model[0](tl.tensor(X_t, device=device)).numpy()
    batches = [h[i:i + 30] for i in range(0, 90, 30)]
    rm = tl.tensor(bn.running_mean).numpy()
    rv = tl.tensor(bn.running_var).numpy()
    np.testing.assert_allclose(rm, np.mean([b.mean(0) for b in batches], 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rv, np.mean([b.var(0, ddof=1) for b in batches], 0), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------- adapt ----

def _planted_shift(seed=0, n=600):
    """Four Gaussian classes in 8-D; the target is an affine map of the source (turned by a
    rotation near the identity, stretched 0.7-1.5x per axis, moved): a classifier of the
    source misreads part of it, and aligning the two feature distributions helps."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, 8)) * 2.5

    def draw(n):
        y = rng.integers(0, 4, n)
        return (centers[y] + rng.normal(size=(n, 8))).astype(np.float32), y
    Xs, ys = draw(n)
    Xt, _ = draw(n)
    Xv, yv = draw(n)
    K = rng.normal(size=(8, 8)) * 0.05
    K = K - K.T                                            # skew-symmetric: the Cayley map is a rotation
    R = np.linalg.solve(np.eye(8) - K, np.eye(8) + K)
    M = (R * np.linspace(0.7, 1.5, 8)).astype(np.float32)
    b = (rng.normal(size=8) * 1.5).astype(np.float32)
    return Xs, ys, Xt @ M + b, Xv @ M + b, yv


def _mlp():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.fixture(scope="module")
def planted():
    return _planted_shift()


@pytest.fixture(scope="module")
def source_only_accuracy(planted):
    Xs, ys, Xt, Xv, yv = planted
    tl.manual_seed(0)
    _, rep = A.adapt(_mlp(), (Xs, ys), Xt, "source_only", epochs=8, lr=0.02, batch_size=64, val=(Xv, yv))
    return rep.target_accuracy[-1]


@pytest.mark.parametrize("method, kw", [("coral", dict(trade_off=50.0)), ("mmd", dict(trade_off=1.0)),
                                        ("dann", dict(trade_off=1.0))])
def test_adapt_improves_on_a_planted_shift(method, kw, planted, source_only_accuracy):
    Xs, ys, Xt, Xv, yv = planted
    tl.manual_seed(0)
    model, rep = A.adapt(_mlp(), (Xs, ys), Xt, method, epochs=8, lr=0.02, batch_size=64, val=(Xv, yv),
                         feature_layer="3", **kw)
    assert len(rep.loss) == len(rep.classification_loss) == len(rep.transfer_loss) == len(rep.target_accuracy) == 8
    assert rep.steps == 8 * (600 // 64) and not model.training
    assert all(math.isfinite(v) for v in rep.loss)
    assert rep.target_accuracy[-1] > source_only_accuracy + 0.03, (method, rep.target_accuracy, source_only_accuracy)
    assert "AdaptReport: " + method in str(rep)
    if method == "dann":
        assert len(rep.domain_accuracy) == 8
    assert not model[4]._forward_pre_hooks and not model[3]._forward_hooks      # the hooks are gone


def test_adapt_on_the_gpu_path(device, planted):
    Xs, ys, Xt, Xv, yv = planted
    tl.manual_seed(0)
    model, rep = A.adapt(_mlp().to(device), (Xs[:64], ys[:64]), Xt[:64], "mmd", epochs=1, batch_size=32,
                         val=(Xv[:64], yv[:64]), estimator="linear")
    assert rep.steps == 2 and all(p.device == device for p in model.parameters())
    tl.manual_seed(0)
    _, rep2 = A.adapt(_mlp().to(device), (Xs[:32], ys[:32]), Xt[:32], "dann", epochs=1, batch_size=32)
    assert rep2.steps == 1 and math.isfinite(rep2.loss[0])


def test_adapt_anneal_lr_and_default_features(planted):
    Xs, ys, Xt, _, _ = planted
    runs = []
    for anneal in (False, True):
        tl.manual_seed(0)
        _, rep = A.adapt(_mlp(), (Xs[:256], ys[:256]), Xt[:256], "dann", epochs=3, batch_size=64, anneal_lr=anneal)
        runs.append(rep)
    assert runs[0].feature_layer == "input of 4" and "features: input of 4" in str(runs[0])
    assert runs[0].loss[0] == pytest.approx(runs[1].loss[0], rel=0.2)      # same start ...
    assert runs[0].loss != runs[1].loss                                       # ... another learning rate after it


def test_adapt_adabn_with_a_batchnorm_model(planted):
    Xs, ys, Xt, Xv, yv = planted
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), FakeBatchNorm(32), nn.ReLU(), nn.Linear(32, 4))
    model, rep = A.adapt(model, (Xs, ys), Xt, "adabn", epochs=3, batch_size=64, val=(Xv, yv))
    assert len(rep.target_accuracy) == 4 and rep.transfer_loss == []        # + the accuracy after AdaBN
    assert "after AdaBN" in str(rep)


def test_adapt_refuses_bad_inputs_before_training(planted):
    Xs, ys, Xt, Xv, yv = planted
    tl.manual_seed(0)
    model = _mlp()
    before = model.state_dict()
    bad = [
        (dict(method="mmd", estimator="linear", batch_size=(64, 32)), ValueError, "linear MMD .* equal .* 64 and 32"),
        (dict(method="mmd", estimator="linear", target=Xt[:20]), ValueError, "only 20 rows"),
        (dict(target=Xt[:0]), ValueError, "adapt: target is empty"),
        (dict(feature_layer="9"), ValueError, "adapt: feature_layer '9' is not a module"),
        (dict(feature_layer="encoder"), ValueError, "is not a module"),
        (dict(target=np.where(np.arange(8) == 2, np.nan, Xt)), ValueError, "adapt: target holds NaN"),
        (dict(source=(np.where(np.arange(8) == 0, np.inf, Xs), ys)), ValueError, "adapt: source X_s holds NaN"),
        (dict(method="wasserstein"), ValueError, "adapt: method must be one of"),
        (dict(method="adabn"), ValueError, "needs a model with BatchNorm"),
        (dict(target=Xt[:, :5]), ValueError, "target has 5 features, expected 8"),
        (dict(source=(Xs, ys + 10)), ValueError, "labels outside \\[0, 4\\)"),
        (dict(source=(Xs, ys.astype(np.float32))), TypeError, "integer class labels"),
        (dict(trade_off=-1), ValueError, "trade_off"),
        (dict(epochs=0), ValueError, "epochs"),
    ]
    for kw, exc, msg in bad:
        args = dict(source=(Xs, ys), target=Xt, method="dann")
        args.update(kw)
        with pytest.raises(exc, match=msg):
            A.adapt(model, args.pop("source"), args.pop("target"), args.pop("method"), epochs=args.pop("epochs", 1),
                    **args)
        after = model.state_dict()
        assert all(np.array_equal(before[k], after[k]) for k in before), kw
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()), kw


def test_public_names():
    for name in ("grad_reverse", "GradientReversal", "DANNSchedule", "coral_loss", "mmd_loss",
                 "DomainAdversarialLoss", "domain_discriminator", "adabn", "adapt", "AdaptReport"):
        assert getattr(tl.transfer, name) is getattr(A, name)
        assert name in tl.transfer.__all__
