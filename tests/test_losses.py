"""Losses, module and functional: torch's reductions ("none" | "mean" | "sum" on all),
CrossEntropyLoss's weight / ignore_index / label_smoothing / probability targets, NLL,
BCE (clamped logs), BCEWithLogits (weight, pos_weight), L1, SmoothL1, Huber, KLDiv.
Gradchecks in float64 on every device; parity with torch where it imports."""
import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl import functional as TF
from tinytl.nn import functional as F
from tinytl.testing import gradcheck

REDUCTIONS = ["none", "mean", "sum"]


def host(a):
    return tl.backend.to_numpy(a.data if isinstance(a, tl.Tensor) else a)


def check_torch(ours, theirs, inputs, extra=(), rtol=1e-10, atol=1e-12, grads=None):
    """``ours(*tensors, *extra)`` against ``theirs(*torch_tensors, *torch_extra)``: value and
    the gradients of the inputs whose index is in ``grads`` (all by default)."""
    torch = pytest.importorskip("torch")
    grads = range(len(inputs)) if grads is None else grads
    xs = [tl.tensor(a, requires_grad=i in grads) for i, a in enumerate(inputs)]
    ts = [torch.tensor(a, requires_grad=i in grads) for i, a in enumerate(inputs)]
    ex_t = [torch.tensor(e) if isinstance(e, np.ndarray) else e for e in extra]
    y, ty = ours(*xs, *extra), theirs(*ts, *ex_t)
    np.testing.assert_allclose(host(y), ty.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(5).normal(size=ty.shape)
    if ty.dim():
        y.backward(tl.tensor(g))
        ty.backward(torch.tensor(g))
    else:
        y.backward()
        ty.backward()
    for i in grads:
        np.testing.assert_allclose(host(xs[i].grad), ts[i].grad.numpy(), rtol=rtol, atol=atol)


def logits_labels(rng, n=6, c=4):
    return rng.normal(size=(n, c)) * 2, rng.integers(0, c, size=n)


# -------------------------------------------------------------- cross entropy ----

CE_CASES = [
    {},
    {"weight": "w"},
    {"ignore_index": 1},
    {"ignore_index": -100, "hit": True},
    {"label_smoothing": 0.2},
    {"weight": "w", "label_smoothing": 0.1, "ignore_index": 2},
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(f"{k}" for k in c) or "plain")
def test_cross_entropy_matches_torch(rng, reduction, case):
    torch = pytest.importorskip("torch")
    z, y = logits_labels(rng)
    case = dict(case)
    if case.pop("hit", False):
        y[[1, 4]] = -100                      # labels to ignore, with the default ignore_index
    kw = {}
    if case.get("weight") == "w":
        case["weight"] = rng.uniform(0.2, 3, size=4)
    kw_t = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in case.items()}
    check_torch(lambda a: TF.cross_entropy(a, y, reduction=reduction, **case),
                lambda a: torch.nn.functional.cross_entropy(a, torch.tensor(y), reduction=reduction, **kw_t), [z])
    # the module, in float32
    m = nn.CrossEntropyLoss(reduction=reduction, **case, **kw)
    tm = torch.nn.CrossEntropyLoss(reduction=reduction, **{k: (v.float() if torch.is_tensor(v) else v)
                                                           for k, v in kw_t.items()})
    check_torch(lambda a: m(a, y), lambda a: tm(a, torch.tensor(y)), [z.astype(np.float32)], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.3, False), (0.0, True), (0.25, True)])
def test_cross_entropy_probability_targets_match_torch(rng, reduction, smoothing, weighted):
    torch = pytest.importorskip("torch")
    z = rng.normal(size=(5, 3))
    p = rng.dirichlet(np.ones(3), size=5)
    w = rng.uniform(0.5, 2, size=3) if weighted else None
    check_torch(lambda a, b: TF.cross_entropy(a, b, weight=w, reduction=reduction, label_smoothing=smoothing),
                lambda a, b: torch.nn.functional.cross_entropy(a, b, weight=None if w is None else torch.tensor(w),
                                                               reduction=reduction, label_smoothing=smoothing),
                [z, p], grads=[0])


def test_cross_entropy_spatial_and_single_sample_shapes(rng):
    torch = pytest.importorskip("torch")
    z = rng.normal(size=(2, 4, 3))
    y = rng.integers(0, 4, size=(2, 3))
    for r in REDUCTIONS:
        check_torch(lambda a: TF.cross_entropy(a, y, reduction=r),
                    lambda a: torch.nn.functional.cross_entropy(a, torch.tensor(y), reduction=r), [z])
    y[0, 1] = 1
    w = rng.uniform(0.5, 2, size=4)
    kw = dict(ignore_index=1, label_smoothing=0.15)
    check_torch(lambda a: TF.cross_entropy(a, y, weight=w, **kw),
                lambda a: torch.nn.functional.cross_entropy(a, torch.tensor(y), weight=torch.tensor(w), **kw), [z])
    p = rng.dirichlet(np.ones(4), size=(2, 3)).transpose(0, 2, 1)       # (N, C, d) probabilities
    check_torch(lambda a: TF.cross_entropy(a, tl.tensor(p), reduction="none", label_smoothing=0.1),
                lambda a: torch.nn.functional.cross_entropy(a, torch.tensor(p), reduction="none",
                                                            label_smoothing=0.1), [z])
    z1 = rng.normal(size=4)
    check_torch(lambda a: TF.cross_entropy(a, np.array(2)),
                lambda a: torch.nn.functional.cross_entropy(a, torch.tensor(2)), [z1])


def test_cross_entropy_all_ignored_gives_nan_as_torch():
    z = tl.tensor(np.zeros((2, 3)), requires_grad=True)
    assert np.isnan(TF.cross_entropy(z, np.array([-100, -100])).item())
    assert TF.cross_entropy(z, np.array([-100, -100]), reduction="sum").item() == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [{}, {"weight": True, "ignore_index": 0, "label_smoothing": 0.1},
                                  {"ignore_index": -100, "hit": True}, {"soft": True}])
def test_cross_entropy_gradcheck(device, rng, reduction, case):
    z, y = logits_labels(rng, 4, 3)
    w = tl.tensor(rng.uniform(0.5, 2, 3), device=device) if case.get("weight") else None
    if case.get("hit"):
        y[2] = -100
    target = tl.tensor(rng.dirichlet(np.ones(3), size=4), device=device) if case.get("soft") else \
        tl.tensor(y, device=device)
    kw = {k: v for k, v in case.items() if k in ("ignore_index", "label_smoothing")}
    zt = tl.tensor(z, requires_grad=True, device=device)
    assert gradcheck(lambda a: TF.cross_entropy(a, target, weight=w, reduction=reduction, **kw), [zt])


def test_cross_entropy_plain_case_keeps_the_fused_kernel(monkeypatch):
    """No weight, no smoothing, no ignored label: the softmax_xent kernel, not array math."""
    from tinytl import kernels
    calls = []
    real = kernels.for_array

    def spy(a):
        k = real(a)
        calls.append(1)
        return k
    monkeypatch.setattr(kernels, "for_array", spy)
    z = tl.tensor(np.random.default_rng(0).normal(size=(4, 3)), requires_grad=True)
    TF.cross_entropy(z, np.array([0, 1, 2, 0]))
    assert calls
    calls.clear()
    TF.cross_entropy(z, np.array([0, 1, 2, 0]), label_smoothing=0.1)
    TF.cross_entropy(z, np.array([0, 1, -100, 0]))
    assert not calls


def test_cross_entropy_bad_targets():
    z = tl.tensor(np.zeros((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"target\[1\] = 3 is not a class index in \[0, 3\)"):
        TF.cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"target\[0\] = -1 is not a class index"):
        TF.cross_entropy(z, np.array([-1, -100]))          # -100 is ignored, -1 is not
    with pytest.raises(ValueError, match="label_smoothing"):
        TF.cross_entropy(z, np.array([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        TF.cross_entropy(z, np.array([0, 1]), weight=np.ones(2))
    with pytest.raises(ValueError, match="probability targets"):
        TF.cross_entropy(z, np.zeros((2, 4)))


# ------------------------------------------------------------------------ NLL ----

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,ignore", [(False, -100), (True, -100), (True, 2), (False, 0)])
def test_nll_loss_matches_torch(rng, reduction, weighted, ignore):
    torch = pytest.importorskip("torch")
    z, y = logits_labels(rng, 7, 4)
    lp = z - np.log(np.exp(z).sum(1, keepdims=True))
    w = rng.uniform(0.5, 2, size=4) if weighted else None
    tw = None if w is None else torch.tensor(w)
    check_torch(lambda a: F.nll_loss(a, y, weight=w, ignore_index=ignore, reduction=reduction),
                lambda a: torch.nn.functional.nll_loss(a, torch.tensor(y), weight=tw, ignore_index=ignore,
                                                       reduction=reduction), [lp])
    m = nn.NLLLoss(weight=w, ignore_index=ignore, reduction=reduction)
    assert np.allclose(host(m(tl.tensor(lp), y)), host(F.nll_loss(tl.tensor(lp), y, w, None, ignore, None, reduction)),
                       equal_nan=True)


def test_log_softmax_then_nll_is_cross_entropy(device, rng):
    z, y = logits_labels(rng)
    zt = tl.tensor(z, requires_grad=True, device=device)
    a = F.nll_loss(F.log_softmax(zt, 1), tl.tensor(y, device=device))
    b = TF.cross_entropy(zt, tl.tensor(y, device=device))
    assert abs(a.item() - b.item()) < 1e-12
    assert gradcheck(lambda a: F.nll_loss(F.log_softmax(a, 1), tl.tensor(y, device=device), reduction="none"), [zt])
    yt = tl.tensor(y, device=device)
    assert gradcheck(lambda a: F.nll_loss(a, yt, weight=tl.tensor(np.arange(1.0, 5.0), device=device)), [zt])
    with pytest.raises(ValueError, match=r"nll_loss: target\[0\] = 9"):
        F.nll_loss(zt, tl.tensor(np.array([9, 0, 0, 0, 0, 0]), device=device))


# ------------------------------------------------------ pointwise regression ----

POINTWISE = [
    ("l1", lambda a, b, r: F.l1_loss(a, b, reduction=r),
     lambda a, b, r: __import__("torch").nn.functional.l1_loss(a, b, reduction=r)),
    ("mse", lambda a, b, r: TF.mse_loss(a, b, reduction=r),
     lambda a, b, r: __import__("torch").nn.functional.mse_loss(a, b, reduction=r)),
    ("smooth_l1", lambda a, b, r: F.smooth_l1_loss(a, b, reduction=r),
     lambda a, b, r: __import__("torch").nn.functional.smooth_l1_loss(a, b, reduction=r)),
    ("smooth_l1_b0.5", lambda a, b, r: F.smooth_l1_loss(a, b, reduction=r, beta=0.5),
     lambda a, b, r: __import__("torch").nn.functional.smooth_l1_loss(a, b, reduction=r, beta=0.5)),
    ("smooth_l1_b0", lambda a, b, r: F.smooth_l1_loss(a, b, reduction=r, beta=0.0),
     lambda a, b, r: __import__("torch").nn.functional.smooth_l1_loss(a, b, reduction=r, beta=0.0)),
    ("huber", lambda a, b, r: F.huber_loss(a, b, reduction=r),
     lambda a, b, r: __import__("torch").nn.functional.huber_loss(a, b, reduction=r)),
    ("huber_d2", lambda a, b, r: F.huber_loss(a, b, reduction=r, delta=2.0),
     lambda a, b, r: __import__("torch").nn.functional.huber_loss(a, b, reduction=r, delta=2.0)),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,ours,theirs", POINTWISE, ids=[p[0] for p in POINTWISE])
def test_pointwise_losses_match_torch_and_gradcheck(device, rng, reduction, name, ours, theirs):
    a, b = rng.normal(size=(4, 3)) * 2, rng.normal(size=(4, 3))
    if device == "cpu":
        check_torch(lambda x, y: ours(x, y, reduction), lambda x, y: theirs(x, y, reduction), [a, b])
        check_torch(lambda x, y: ours(x, y, reduction), lambda x, y: theirs(x, y, reduction),
                    [a.astype(np.float32), b.astype(np.float32)], rtol=1e-4, atol=1e-6)
    at = tl.tensor(a, requires_grad=True, device=device)
    bt = tl.tensor(b, requires_grad=True, device=device)
    assert gradcheck(lambda x, y: ours(x, y, reduction), [at, bt])


def test_loss_modules_match_their_functions(rng):
    a, b = tl.tensor(rng.normal(size=(3, 2))), tl.tensor(rng.normal(size=(3, 2)))
    for m, f in [(nn.L1Loss(reduction="sum"), lambda: F.l1_loss(a, b, None, None, "sum")),
                 (nn.SmoothL1Loss(beta=0.3), lambda: F.smooth_l1_loss(a, b, beta=0.3)),
                 (nn.HuberLoss(reduction="none", delta=0.5), lambda: F.huber_loss(a, b, "none", 0.5)),
                 (nn.MSELoss(reduction="none"), lambda: TF.mse_loss(a, b, reduction="none"))]:
        np.testing.assert_array_equal(m(a, b).data, f().data)
    with pytest.raises(ValueError, match="beta"):
        F.smooth_l1_loss(a, b, beta=-1.0)
    with pytest.raises(ValueError, match="delta"):
        nn.HuberLoss(delta=0.0)
    with pytest.raises(ValueError, match="same as the input size"):
        F.l1_loss(a, tl.tensor(np.zeros((2, 3))))


# ------------------------------------------------------------------------ BCE ----

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_matches_torch(rng, reduction, weighted):
    torch = pytest.importorskip("torch")
    x = rng.uniform(0.02, 0.98, size=(5, 3))
    y = rng.uniform(0, 1, size=(5, 3))
    w = rng.uniform(0.5, 2, size=(3,)) if weighted else None
    check_torch(lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction),
                lambda a, b: torch.nn.functional.binary_cross_entropy(
                    a, b, weight=None if w is None else torch.tensor(w), reduction=reduction), [x, y])
    m = nn.BCELoss(weight=w, reduction=reduction)
    np.testing.assert_allclose(m(tl.tensor(x), tl.tensor(y)).data,
                               torch.nn.BCELoss(weight=None if w is None else torch.tensor(w),
                                                reduction=reduction)(torch.tensor(x), torch.tensor(y)).numpy(),
                               rtol=1e-10)


def test_bce_clamps_its_logs_at_minus_100_as_torch():
    torch = pytest.importorskip("torch")
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    check_torch(lambda a: F.binary_cross_entropy(a, tl.tensor(y), reduction="none"),
                lambda a: torch.nn.functional.binary_cross_entropy(a, torch.tensor(y), reduction="none"), [x])
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(tl.tensor(np.array([1.2, 0.3])), tl.tensor(np.array([1.0, 0.0])))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.BCELoss()(tl.tensor(np.array([-0.1])), tl.tensor(np.array([0.0])))


def test_bce_gradcheck(device, rng):
    x = tl.tensor(rng.uniform(0.1, 0.9, size=(4, 3)), requires_grad=True, device=device)
    y = tl.tensor(rng.uniform(0, 1, size=(4, 3)), requires_grad=True, device=device)
    for r in REDUCTIONS:
        assert gradcheck(lambda a, b: F.binary_cross_entropy(a, b, reduction=r), [x, y])
    w = tl.tensor(rng.uniform(0.5, 2, size=3), device=device)
    assert gradcheck(lambda a, b: F.binary_cross_entropy(a, b, weight=w), [x, y])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,pos", [(False, False), (True, False), (False, True), (True, True)])
def test_bce_with_logits_matches_torch(rng, reduction, weighted, pos):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(5, 3)) * 4
    x[0, 0], x[1, 1] = 60.0, -60.0                    # stable at large |logits|
    y = rng.uniform(0, 1, size=(5, 3))
    w = rng.uniform(0.5, 2, size=(5, 1)) if weighted else None
    pw = rng.uniform(0.5, 3, size=3) if pos else None
    tt = (lambda a: None if a is None else torch.tensor(a))
    check_torch(lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight=w, reduction=reduction, pos_weight=pw),
                lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(
                    a, b, weight=tt(w), reduction=reduction, pos_weight=tt(pw)), [x, y])
    m = nn.BCEWithLogitsLoss(weight=w, reduction=reduction, pos_weight=pw)
    tm = torch.nn.BCEWithLogitsLoss(weight=tt(w), reduction=reduction, pos_weight=tt(pw))
    check_torch(lambda a, b: m(a, b), lambda a, b: tm(a, b), [x.astype(np.float32), y.astype(np.float32)],
                rtol=1e-4, atol=1e-5)


def test_bce_with_logits_gradcheck(device, rng):
    x = tl.tensor(rng.normal(size=(4, 3)), requires_grad=True, device=device)
    y = tl.tensor(rng.uniform(0, 1, size=(4, 3)), requires_grad=True, device=device)
    pw = tl.tensor(np.array([0.5, 1.0, 3.0]), device=device)
    w = tl.tensor(rng.uniform(0.5, 2, size=(4, 3)), device=device)
    for r in REDUCTIONS:
        assert gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=r), [x, y])
    assert gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight=w, pos_weight=pw), [x, y])
    with pytest.raises(ValueError, match="pos_weight"):
        F.binary_cross_entropy_with_logits(x, y, pos_weight=tl.tensor(np.ones(2), device=device))


# --------------------------------------------------------------------- KL div ----

@pytest.mark.parametrize("reduction", ["none", "batchmean", "sum", "mean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(rng, reduction, log_target, recwarn):
    torch = pytest.importorskip("torch")
    q = np.log(rng.dirichlet(np.ones(4), size=3))
    p = rng.dirichlet(np.ones(4), size=3)
    p = np.log(p) if log_target else p
    ours = lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target)          # noqa: E731
    theirs = lambda a, b: torch.nn.functional.kl_div(a, b, reduction=reduction, log_target=log_target)  # noqa
    check_torch(ours, theirs, [q, p])
    if not log_target:
        p[0, 1] = 0.0          # 0 log 0 = 0 (the target's gradient there: torch NaN, tinytl -input)
        check_torch(ours, theirs, [q, p], grads=[0])
    m = nn.KLDivLoss(reduction=reduction, log_target=log_target)
    np.testing.assert_allclose(m(tl.tensor(q), tl.tensor(p)).data,
                               F.kl_div(tl.tensor(q), tl.tensor(p), None, None, reduction, log_target).data)


def test_kl_div_mean_warns_as_torch_and_gradchecks(device, rng):
    q = tl.tensor(np.log(rng.dirichlet(np.ones(3), size=2)), requires_grad=True, device=device)
    p = tl.tensor(rng.dirichlet(np.ones(3), size=2), requires_grad=True, device=device)
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(q, p)
    for r, lt in [("batchmean", False), ("none", True), ("sum", False)]:
        assert gradcheck(lambda a, b: F.kl_div(a, b, reduction=r, log_target=lt), [q, p])
    with pytest.raises(ValueError, match="reduction"):
        nn.KLDivLoss(reduction="avg")


# -------------------------------------------------------- reductions, reprs ----

def test_every_loss_takes_every_reduction_and_refuses_others():
    x = tl.tensor(np.full((2, 3), 0.5))
    for cls in (nn.CrossEntropyLoss, nn.NLLLoss, nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCELoss,
                nn.BCEWithLogitsLoss):
        for r in REDUCTIONS:
            m = cls(reduction=r)
            y = np.array([0, 2]) if cls in (nn.CrossEntropyLoss, nn.NLLLoss) else x
            out = m(x, y)
            assert out.shape == ((2,) if cls in (nn.CrossEntropyLoss, nn.NLLLoss) else (2, 3)) if r == "none" \
                else out.shape == ()
        with pytest.raises(ValueError, match="reduction"):
            cls(reduction="avg")


def test_loss_weights_are_buffers_that_move_with_the_module(device):
    m = nn.CrossEntropyLoss(weight=tl.tensor(np.array([1.0, 2.0, 3.0])))
    assert [k for k, _ in m.named_buffers()] == ["weight"]
    m.to(device)
    assert m.weight.device == device
    z = tl.tensor(np.zeros((2, 3)), requires_grad=True, device=device)
    out = m(z, tl.tensor(np.array([0, 2]), device=device))
    assert abs(out.item() - np.log(3)) < 1e-6


def test_signatures_follow_torchs_positional_order():
    """Positional torch calls mean the same here (size_average / reduce included)."""
    torch = pytest.importorskip("torch")
    import inspect

    def names(f, drop=()):
        return [p for p in inspect.signature(f).parameters if p not in ("self",) + drop]
    for n in ["cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
              "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "softmax", "log_softmax",
              "silu", "leaky_relu", "dropout", "layer_norm", "batch_norm"]:
        ours = getattr(F, n)
        theirs = names(getattr(torch.nn.functional, n), drop=("weight",) if n in ("mse_loss", "l1_loss",
                                                                                   "huber_loss") else ())
        assert names(ours, drop=("name",)) == theirs, n
    for n in ["CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss",
              "BCEWithLogitsLoss", "KLDivLoss"]:
        assert names(getattr(nn, n).__init__) == names(getattr(torch.nn, n).__init__), n


def test_legacy_size_average_and_reduce_warn_and_map_as_torch():
    a, b = tl.tensor(np.array([1.0, 2.0])), tl.tensor(np.array([0.0, 0.0]))
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert F.l1_loss(a, b, size_average=False).item() == 3.0
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert nn.MSELoss(reduce=False).reduction == "none"
    with pytest.warns(UserWarning, match="reduction='mean'"):
        assert TF.cross_entropy(tl.tensor(np.zeros((1, 2))), np.array([0]), size_average=True).item() == \
            pytest.approx(np.log(2))


@pytest.mark.parametrize("n", [3, 64, 65, 200])     # both sides of functional._FEW_LABELS
@pytest.mark.parametrize("bad", [-1, 4, -100])
def test_cross_entropy_label_range_check_at_every_batch_size(n, bad):
    """A few labels are range-checked in Python, many with NumPy reductions: the same
    errors, and ignore_index (-100) still takes the general path, from either."""
    z = tl.tensor(np.zeros((n, 4)), requires_grad=True)
    t = np.arange(n) % 4
    t[n - 2] = bad
    if bad == -100:
        loss = TF.cross_entropy(z, t)
        np.testing.assert_allclose(loss.item(), np.log(4.0))
    else:
        with pytest.raises(ValueError, match=rf"target\[{n - 2}\] = {bad} is not a class index in \[0, 4\)"):
            TF.cross_entropy(z, t)
