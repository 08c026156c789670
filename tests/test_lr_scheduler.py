"""The learning-rate schedulers against torch's, step for step (35 steps, several settings
each, to 1e-12), and against their closed forms where torch is absent; OneCycleLR's
momentum / beta1 cycling; state_dict round trips; the optimizers reading the new lr."""
import math
import warnings

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl.optim import lr_scheduler as S

STEPS = 35


def ours_and_torch(opt_name, groups=2, **opt_kwargs):
    """A tinytl optimizer and, where torch imports, the same torch optimizer (else None)."""
    lrs = [0.1, 0.05, 0.02][:groups]
    ps = [nn.Parameter(np.zeros(2)) for _ in lrs]
    ours = getattr(tl.optim, opt_name)([{"params": [p], "lr": lr} for p, lr in zip(ps, lrs)], lr=0.1, **opt_kwargs)
    try:
        import torch
    except ImportError:
        return ours, None
    ts = [torch.zeros(2, requires_grad=True) for _ in lrs]
    theirs = getattr(torch.optim, opt_name)([{"params": [t], "lr": lr} for t, lr in zip(ts, lrs)], lr=0.1,
                                            **opt_kwargs)
    return ours, theirs


def trajectory(sched, opt, steps=STEPS, metrics=None):
    """[(lrs, momenta)] after construction and after each step (momentum: SGD's or beta1)."""
    def momenta():
        return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]
    out = [(list(sched.get_last_lr()), momenta())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # torch's "scheduler.step() before optimizer.step()"
        for k in range(steps):
            if metrics is None:
                sched.step()
            else:
                sched.step(metrics[k])
            out.append(([g["lr"] for g in opt.param_groups], momenta()))
            assert list(sched.get_last_lr()) == out[-1][0]
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for (lr_a, m_a), (lr_b, m_b) in zip(a, b):
        np.testing.assert_allclose(lr_a, lr_b, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.array(m_a, float), np.array(m_b, float), rtol=1e-12, atol=1e-15)


def lam_warm(e):
    return min(1.0, (e + 1) / 5)


def lam_decay(e):
    return 0.95 ** e


CASES = [
    ("StepLR", dict(step_size=7)), ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 30])), ("MultiStepLR", dict(milestones=[2, 20], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)), ("ExponentialLR", dict(gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=10)), ("CosineAnnealingLR", dict(T_max=12, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=40, eta_min=0.01)),
    ("LinearLR", dict()), ("LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=10)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=20)),
    ("LambdaLR", dict(lr_lambda=lam_warm)), ("LambdaLR", dict(lr_lambda=[lam_warm, lam_decay])),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_matches_torch_step_for_step(name, kwargs, opt_name):
    torch = pytest.importorskip("torch")
    ours, theirs = ours_and_torch(opt_name)
    a = trajectory(getattr(S, name)(ours, **kwargs), ours)
    b = trajectory(getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs), theirs)
    assert_same(a, b)


CLOSED = {
    "StepLR": (dict(step_size=7, gamma=0.5), lambda e, lr: lr * 0.5 ** (e // 7)),
    "MultiStepLR": (dict(milestones=[5, 12, 12], gamma=0.5),
                    lambda e, lr: lr * 0.5 ** sum(m <= e for m in [5, 12, 12])),
    "ExponentialLR": (dict(gamma=0.9), lambda e, lr: lr * 0.9 ** e),
    "CosineAnnealingLR": (dict(T_max=12, eta_min=0.001),
                          lambda e, lr: 0.001 + (lr - 0.001) * (1 + math.cos(math.pi * e / 12)) / 2),
    "LinearLR": (dict(start_factor=0.1, end_factor=0.9, total_iters=10),
                 lambda e, lr: lr * (0.1 + 0.8 * min(e, 10) / 10)),
    "LambdaLR": (dict(lr_lambda=lam_decay), lambda e, lr: lr * 0.95 ** e),
}


@pytest.mark.parametrize("name", sorted(CLOSED))
def test_recursive_forms_follow_the_closed_forms(name):
    """Without torch: the chainable step equals the closed form (and step(epoch) uses it)."""
    kwargs, form = CLOSED[name]
    opt, _ = ours_and_torch("SGD")
    sched = getattr(S, name)(opt, **kwargs)
    for e in range(STEPS):
        np.testing.assert_allclose(sched.get_last_lr(), [form(e, 0.1), form(e, 0.05)], rtol=1e-10, atol=1e-15)
        sched.step()
    sched.step(7)                                  # a jump uses the closed form
    np.testing.assert_allclose(sched.get_last_lr(), [form(7, 0.1), form(7, 0.05)], rtol=1e-10, atol=1e-15)
    assert sched.last_epoch == 7


@pytest.mark.parametrize("kwargs", [
    dict(max_lr=1.0, total_steps=STEPS),
    dict(max_lr=[0.5, 0.2], epochs=5, steps_per_epoch=7, pct_start=0.25, anneal_strategy="linear"),
    dict(max_lr=0.3, total_steps=STEPS, three_phase=True, base_momentum=0.8, max_momentum=0.9),
    dict(max_lr=0.3, total_steps=STEPS, cycle_momentum=False, div_factor=10.0, final_div_factor=100.0),
], ids=["cos", "linear-groups", "three-phase", "no-momentum"])
@pytest.mark.parametrize("opt_name,opt_kwargs", [("SGD", dict(momentum=0.9)), ("Adam", dict()),
                                                 ("AdamW", dict(betas=(0.8, 0.99)))])
def test_one_cycle_matches_torch_with_its_momentum_cycle(kwargs, opt_name, opt_kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = ours_and_torch(opt_name, **opt_kwargs)
    a = trajectory(S.OneCycleLR(ours, **kwargs), ours)
    b = trajectory(torch.optim.lr_scheduler.OneCycleLR(theirs, **kwargs), theirs)
    assert_same(a, b)
    if opt_name != "SGD":
        assert ours.param_groups[0]["betas"][1] == opt_kwargs.get("betas", (0.9, 0.999))[1]
    sched = S.OneCycleLR(ours_and_torch(opt_name, **opt_kwargs)[0], **kwargs)
    with pytest.raises(ValueError, match="total steps"):
        for _ in range(STEPS + 1):
            sched.step()


def test_one_cycle_without_torch_peaks_at_max_lr_and_cycles_beta1():
    opt, _ = ours_and_torch("Adam", groups=1)
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=100, pct_start=0.3)
    lrs, betas = [], []
    for k in range(100):
        if k:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        betas.append(opt.param_groups[0]["betas"][0])
    peak = int(np.argmax(lrs))
    assert peak == 29 and lrs[0] == pytest.approx(1.0 / 25) and lrs[peak] == pytest.approx(1.0)
    assert betas[0] == pytest.approx(0.95) and betas[peak] == pytest.approx(0.85) and betas[-1] == pytest.approx(0.95)
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4)    # the last step: min_lr
    assert opt.param_groups[0]["betas"][1] == 0.999
    class Plain(tl.optim.Optimizer):       # an optimizer with neither momentum nor betas
        _OPTIONS = {"lr": None}
    plain = Plain([nn.Parameter(np.zeros(1))], {"lr": 0.1})
    with pytest.raises(ValueError, match="momentum or beta1"):
        S.OneCycleLR(plain, max_lr=1.0, total_steps=10)
    S.OneCycleLR(plain, max_lr=1.0, total_steps=10, cycle_momentum=False)


@pytest.mark.parametrize("kwargs", [dict(), dict(mode="max", factor=0.5, patience=2, threshold_mode="abs",
                                                 threshold=0.01, cooldown=2, min_lr=[0.01, 0.02]),
                                    dict(patience=0, factor=0.7, eps=1e-3, cooldown=1)])
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    metrics = list(np.round(np.r_[np.linspace(1, 0.5, 8), 0.5 + 0.02 * rng.standard_normal(STEPS - 8)], 3))
    ours, theirs = ours_and_torch("SGD")
    a = trajectory(S.ReduceLROnPlateau(ours, **kwargs), ours, metrics=metrics)
    b = trajectory(torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs), theirs, metrics=metrics)
    assert_same(a, b)
    assert a[-1][0] != a[0][0]                     # it did reduce


def test_reduce_on_plateau_without_torch():
    opt, _ = ours_and_torch("Adam", groups=1)
    sched = S.ReduceLROnPlateau(opt, patience=2, factor=0.5)
    for m in [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]:
        sched.step(m)
    assert sched.get_last_lr() == [0.025]          # two reductions: after 3 and 6 epochs without gain
    with pytest.raises(ValueError, match="factor"):
        S.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        S.ReduceLROnPlateau(opt, mode="up")


def make_sequential(mod, opt):
    warm = mod.LinearLR(opt, start_factor=0.1, total_iters=5)
    cos = mod.CosineAnnealingLR(opt, T_max=20, eta_min=0.001)
    step = mod.StepLR(opt, step_size=3, gamma=0.5)
    return mod.SequentialLR(opt, [warm, cos, step], milestones=[5, 25])


def make_sequential2(mod, opt):
    return mod.SequentialLR(opt, [mod.ExponentialLR(opt, gamma=0.9), mod.LambdaLR(opt, lam_warm)], milestones=[10])


@pytest.mark.parametrize("make", [make_sequential, make_sequential2])
@pytest.mark.parametrize("opt_name", ["SGD", "AdamW"])
def test_sequential_matches_torch(make, opt_name):
    torch = pytest.importorskip("torch")
    ours, theirs = ours_and_torch(opt_name)
    a = trajectory(make(S, ours), ours)
    b = trajectory(make(torch.optim.lr_scheduler, theirs), theirs)
    assert_same(a, b)


def test_sequential_without_torch_switches_at_the_milestones():
    opt, _ = ours_and_torch("SGD", groups=1)
    sched = make_sequential(S, opt)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(30):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs[:5], [0.1 * (0.1 + 0.9 * e / 5) for e in range(5)], rtol=1e-12)
    np.testing.assert_allclose(lrs[5], 0.1, rtol=1e-12)                       # the cosine restarts at its top
    np.testing.assert_allclose(lrs[15], 0.001 + 0.099 * (1 + math.cos(math.pi * 10 / 20)) / 2, rtol=1e-12)
    np.testing.assert_allclose(lrs[25:28], [lrs[25]] * 3, rtol=1e-12)         # StepLR from its epoch 0
    with pytest.raises(ValueError, match="milestone"):
        S.SequentialLR(opt, [S.StepLR(opt, 2), S.StepLR(opt, 3)], milestones=[])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        S.SequentialLR(opt, [S.ReduceLROnPlateau(opt)], milestones=[])


@pytest.mark.parametrize("make", [lambda o: S.StepLR(o, 4), lambda o: S.CosineAnnealingLR(o, 10),
                                  lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=40),
                                  lambda o: S.LambdaLR(o, lam_warm), lambda o: make_sequential(S, o),
                                  lambda o: S.ReduceLROnPlateau(o, patience=1)],
                         ids=["step", "cosine", "onecycle", "lambda", "sequential", "plateau"])
def test_state_dict_round_trip_resumes_the_schedule(make):
    def run(split):
        opt, _ = ours_and_torch("SGD", momentum=0.9)
        sched = make(opt)
        out = []
        for k in range(30):
            if k == split:
                sd_o, sd_s = opt.state_dict(), sched.state_dict()
                opt, _ = ours_and_torch("SGD", momentum=0.9)
                sched = make(opt)                  # torch's order: build both, then load both
                opt.load_state_dict(sd_o)
                sched.load_state_dict(sd_s)
            sched.step(1.0) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()
            out.append([g["lr"] for g in opt.param_groups] + [g["momentum"] for g in opt.param_groups])
        return out
    assert run(-1) == run(12)


def test_the_optimizer_uses_the_scheduled_lr():
    p = nn.Parameter(np.zeros(1))
    opt = tl.optim.SGD([p], lr=1.0)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = np.ones(1)
        opt.step()
        sched.step()
    np.testing.assert_allclose(p.data, -(1 + 0.5 + 0.25))
    with pytest.raises(TypeError, match="not an Optimizer"):
        S.StepLR(object(), 3)
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(tl.optim.Adam([nn.Parameter(np.zeros(1))]), 3, last_epoch=4)
