"""Adam and AdamW: torch.optim's rules checked against torch (parameters after 20 steps for
every option combination, several groups, both dtypes) and against the rule written out by
hand where torch is absent; the guarantees every tinytl optimizer keeps (frozen parameters,
all-or-nothing steps, validation before anything changes, state_dict in torch's format)."""
import itertools

import numpy as np
import pytest

import tinytl as tl
from tinytl import backend, nn


def hand_adam(w, grads, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled):
    """The update written out by hand, step by step (float64)."""
    w, (b1, b2) = w.copy(), betas
    m, v, vmax = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, 1):
        g = -g if maximize else g
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        v_hat = vmax if amsgrad else v
        w = w - lr / (1 - b1 ** t) * m / (np.sqrt(v_hat) / np.sqrt(1 - b2 ** t) + eps)
    return w


# (class, amsgrad, maximize, weight_decay)
COMBOS = list(itertools.product(["Adam", "AdamW"], [False, True], [False, True], [0.0, 0.05]))
SHAPES = [(4, 3), (5,), (2, 3, 2)]


def make_groups(params):
    """Three groups: defaults, own lr and betas, own eps and weight decay."""
    return [{"params": params[:1]}, {"params": params[1:2], "lr": 0.03, "betas": (0.8, 0.99)},
            {"params": params[2:], "eps": 1e-3, "weight_decay": 0.2}]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,amsgrad,maximize,wd", COMBOS)
def test_matches_torch_after_20_steps(dtype, cls, amsgrad, maximize, wd):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(20)]
    ours = [nn.Parameter(w.copy()) for w in w0]
    theirs = [torch.tensor(w.copy(), requires_grad=True) for w in w0]
    opts = dict(lr=0.01, weight_decay=wd, amsgrad=amsgrad, maximize=maximize)
    opt = getattr(tl.optim, cls)(make_groups(ours), **opts)
    topt = getattr(torch.optim, cls)(make_groups(theirs), foreach=False, **opts)
    for gs in grads:
        for p, q, g in zip(ours, theirs, gs):
            p.grad, q.grad = g.copy(), torch.tensor(g)
        opt.step()
        topt.step()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for p, q in zip(ours, theirs):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, q.detach().numpy(), **tol)
    # the state, under torch's names
    for p, q in zip(ours, theirs):
        st, tst = opt.state[id(p)], topt.state[q]
        assert st["step"] == int(tst["step"]) == 20
        for k in ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ()):
            np.testing.assert_allclose(st[k], tst[k].numpy(), **tol)


@pytest.mark.parametrize("amsgrad,maximize,decoupled", list(itertools.product([False, True], repeat=3)))
def test_matches_the_rule_written_out(amsgrad, maximize, decoupled):
    rng = np.random.default_rng(1)
    w0, grads = rng.standard_normal((3, 4)), [rng.standard_normal((3, 4)) for _ in range(6)]
    p = nn.Parameter(w0.copy())
    opt = tl.optim.Adam([p], lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled)
    for g in grads:
        p.grad = g.copy()
        opt.step()
    want = hand_adam(w0, grads, 0.05, (0.8, 0.9), 1e-6, 0.1, amsgrad, maximize, decoupled)
    np.testing.assert_allclose(p.data, want, rtol=1e-12, atol=1e-14)


def test_defaults_and_param_groups_as_torch():
    p = nn.Parameter(np.zeros(2))
    a, w = tl.optim.Adam([p]), tl.optim.AdamW([p])
    g = a.param_groups[0]
    assert (g["lr"], g["betas"], g["eps"], g["weight_decay"], g["amsgrad"], g["maximize"]) == \
        (1e-3, (0.9, 0.999), 1e-8, 0.0, False, False)
    assert w.param_groups[0]["weight_decay"] == 1e-2 and w.param_groups[0]["decoupled_weight_decay"]
    assert isinstance(a, tl.optim.Optimizer) and isinstance(w, tl.optim.Adam)
    a.param_groups[0]["lr"] = 0.5            # a user (or a scheduler) changes lr between steps
    p.grad = np.ones(2)
    a.step()
    np.testing.assert_allclose(p.data, -0.5)  # the first step moves by lr * sign(grad)


@pytest.mark.parametrize("kwargs,name", [
    (dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"), (dict(eps=float("inf")), "eps"),
    (dict(betas=(1.0, 0.999)), r"betas\[0\]"), (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (dict(betas=(0.9, float("nan"))), r"betas\[1\]"), (dict(betas=0.9), "betas"),
    (dict(weight_decay=-0.1), "weight_decay"), (dict(weight_decay=float("nan")), "weight_decay")])
@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_bad_options_raise_value_error_naming_them(cls, kwargs, name):
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match=rf"{cls}: {name}"):
        getattr(tl.optim, cls)([p], **kwargs)
    with pytest.raises(ValueError, match="unknown option"):
        getattr(tl.optim, cls)([{"params": [p], "beta": 0.9}])
    with pytest.raises(ValueError, match="empty"):
        getattr(tl.optim, cls)([])


def test_an_option_set_out_of_range_between_steps_is_refused_before_any_write():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = tl.optim.Adam([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.param_groups[1]["lr"] = float("nan")
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    np.testing.assert_array_equal(a.data, 1.0)
    assert not opt.state


def test_a_bad_gradient_leaves_every_parameter_unchanged():
    ps = [nn.Parameter(np.ones(3)), nn.Parameter(np.ones((2, 2))), nn.Parameter(np.ones(4))]
    opt = tl.optim.AdamW([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.1, amsgrad=True)
    for p in ps:
        p.grad = np.ones(p.shape)
    opt.step()
    before = [p.data.copy() for p in ps]
    state = {k: {n: np.array(v, copy=True) for n, v in st.items()} for k, st in opt.state.items()}
    for bad in (np.ones(5), np.ones(4, np.float32), np.ones(4)[::-1][None][0].reshape(2, 2)[:, :1]):
        for p in ps:
            p.grad = np.full(p.shape, 0.5)
        ps[2].grad = bad                          # the last parameter's gradient does not fit
        with pytest.raises(ValueError, match="parameter 0 of group 1"):
            opt.step()
        for p, b in zip(ps, before):
            np.testing.assert_array_equal(p.data, b)
        for k, st in opt.state.items():
            for n, v in st.items():
                np.testing.assert_array_equal(v, state[k][n])


def test_frozen_or_gradless_params_are_not_touched_and_lose_their_state():
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(3))
    opt = tl.optim.AdamW([a, b], lr=0.1, weight_decay=0.5)
    a.grad = np.ones(3)                      # b has no grad: no weight decay, no state
    opt.step()
    np.testing.assert_array_equal(b.data, 1.0)
    assert id(b) not in opt.state and opt.state[id(a)]["step"] == 1
    a.requires_grad = False                  # frozen (a stale gradient would be dropped)
    before = a.data.copy()
    a.grad = np.ones(3)
    opt.step()
    np.testing.assert_array_equal(a.data, before)
    assert a.grad is None and "exp_avg" not in opt.state.get(id(a), {})
    a.requires_grad = True                   # unfrozen: starts afresh (step 1, zero moments)
    a.grad = np.full(3, 3.0)
    opt.step()
    assert opt.state[id(a)]["step"] == 1
    np.testing.assert_allclose(a.data, before * (1 - 0.1 * 0.5) - 0.1, rtol=1e-8)


def test_freeze_and_unfreeze_between_two_steps_restarts_the_state():
    m = nn.Sequential(nn.Linear(3, 2, dtype=np.float64))
    opt = tl.optim.Adam(m.parameters(), lr=0.1)
    w = m[0].weight
    for _ in range(3):
        w.grad = np.ones(w.shape)
        opt.step()
    assert opt.state[id(w)]["step"] == 3
    m.freeze()
    m.unfreeze()                            # no step in between
    w.grad = np.ones(w.shape)
    before = w.data.copy()
    opt.step()
    assert opt.state[id(w)]["step"] == 1
    np.testing.assert_allclose(w.data, before - 0.1, rtol=1e-8, atol=1e-8)


def test_state_dict_round_trip_gives_the_same_trajectory():
    def run(split):
        tl.manual_seed(3)
        m = nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.ReLU(), nn.Linear(6, 2, dtype=np.float64))
        opt = tl.optim.AdamW(m.parameters(), lr=0.01, amsgrad=True)
        data = np.random.default_rng(0)
        xs, ys = [data.standard_normal((5, 4)) for _ in range(6)], [data.integers(0, 2, 5) for _ in range(6)]
        for i, (x, y) in enumerate(zip(xs, ys)):
            if i == split:
                sd_m, sd_o = m.state_dict(), opt.state_dict()
                m = nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.ReLU(), nn.Linear(6, 2, dtype=np.float64))
                m.load_state_dict(sd_m)
                opt = tl.optim.AdamW(m.parameters(), lr=0.5)
                opt.load_state_dict(sd_o)
                assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["amsgrad"]
            opt.zero_grad()
            nn.CrossEntropyLoss()(m(x), y).backward()
            opt.step()
        return m.state_dict()
    a, b = run(split=-1), run(split=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_state_dict_has_torchs_format_and_loads_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    w0, grads = rng.standard_normal((3, 2)), [rng.standard_normal((3, 2)) for _ in range(4)]
    p, q = nn.Parameter(w0.copy()), torch.tensor(w0.copy(), requires_grad=True)
    opt, topt = tl.optim.Adam([p], lr=0.02, amsgrad=True), torch.optim.Adam([q], lr=0.02, amsgrad=True)
    for g in grads[:2]:
        p.grad, q.grad = g.copy(), torch.tensor(g)
        opt.step()
        topt.step()
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert set(sd["state"][0]) == set(tsd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"].dtype == np.float32 and float(sd["state"][0]["step"]) == float(tsd["state"][0]["step"])
    for k in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"):
        assert sd["param_groups"][0][k] == tsd["param_groups"][0][k], k
    assert sd["param_groups"][0]["params"] == tsd["param_groups"][0]["params"] == [0]
    # torch's state dict, its tensors as arrays, loaded into a fresh tinytl Adam: same next steps
    p2 = nn.Parameter(q.detach().numpy().copy())
    opt2 = tl.optim.Adam([p2], lr=0.5)
    opt2.load_state_dict({"state": {i: {k: v.numpy() for k, v in st.items()} for i, st in tsd["state"].items()},
                          "param_groups": tsd["param_groups"]})
    for g in grads[2:]:
        p2.grad, q.grad = g.copy(), torch.tensor(g)
        opt2.step()
        topt.step()
    np.testing.assert_allclose(p2.data, q.detach().numpy(), rtol=1e-10)


def test_load_state_dict_validates_before_changing_anything():
    a = nn.Parameter(np.zeros(2))
    opt = tl.optim.Adam([a], lr=0.1)
    a.grad = np.ones(2)
    opt.step()
    good = opt.state_dict()
    bad = [{}, {"state": {0: {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(2)}},
                "param_groups": good["param_groups"]},
           {"state": {0: {"step": -1, "exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}},
            "param_groups": good["param_groups"]},
           {"state": {0: {"step": 1.5, "exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}},
            "param_groups": good["param_groups"]},
           {"state": {0: {"exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}}, "param_groups": good["param_groups"]},
           {"state": {}, "param_groups": [{**good["param_groups"][0], "betas": (0.9, 1.5)}]},
           {"state": {}, "param_groups": good["param_groups"] * 2}]
    for sd in bad:
        with pytest.raises(ValueError):
            opt.load_state_dict(sd)
        assert opt.state[id(a)]["step"] == 1 and opt.param_groups[0]["lr"] == 0.1


def test_anomaly_mode_refuses_a_non_finite_step():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = tl.optim.Adam([a, b], lr=0.1)
    a.grad, b.grad = np.ones(2), np.array([np.nan, 1.0])
    with tl.detect_anomaly():
        with pytest.raises(FloatingPointError, match="non-finite"):
            opt.step()
    np.testing.assert_array_equal(a.data, 1.0)
    assert not opt.state
    b.grad = np.ones(2)
    with tl.detect_anomaly():
        opt.step()                           # finite: committed, as a plain step would
    np.testing.assert_allclose(a.data, 0.9)
    assert opt.state[id(a)]["step"] == 1


def test_closure_zero_grad_and_odd_layouts():
    base = np.ones((4, 6))
    p = nn.Parameter(base[:, ::2])           # strided view: updated through it
    q = nn.Parameter(np.ones((4, 3)))
    r = nn.Parameter(np.asfortranarray(np.ones((4, 3))))   # a transposed weight's layout
    opt = tl.optim.Adam([p, q, r], lr=0.1, amsgrad=True)

    def closure():
        for t in (p, q, r):
            t.grad = np.full((4, 3), 0.5)
        return 1.25
    for _ in range(3):
        assert opt.step(closure) == 1.25
    np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_array_equal(r.data, q.data)
    np.testing.assert_array_equal(base[:, ::2], q.data)
    np.testing.assert_array_equal(base[:, 1::2], 1.0)
    assert r.data.flags.f_contiguous
    opt.zero_grad(set_to_none=False)
    assert (q.grad == 0).all()
    opt.zero_grad()
    assert q.grad is None


def test_grad_that_is_the_parameter_itself_reads_the_old_value():
    p, q = nn.Parameter(np.full(3, 2.0)), nn.Parameter(np.full(3, 2.0))
    o1, o2 = tl.optim.AdamW([p], lr=0.1, weight_decay=0.5), tl.optim.AdamW([q], lr=0.1, weight_decay=0.5)
    p.grad, q.grad = p.data, np.full(3, 2.0)
    o1.step()
    o2.step()
    np.testing.assert_array_equal(p.data, q.data)


def test_adam_trains_on_every_device(device):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((32, 10)).astype(np.float32), rng.integers(0, 4, 32)
    results = {}
    for dev in dict.fromkeys(["cpu", device]):
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4)).to(dev)
        opt = tl.optim.AdamW([{"params": model[0].parameters()},
                              {"params": model[2].parameters(), "lr": 3e-3}], lr=1e-2, amsgrad=True)
        xb, yb = tl.tensor(x, device=dev), tl.tensor(y, device=dev)
        losses = []
        for _ in range(15):
            loss = nn.CrossEntropyLoss()(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        st = opt.state_dict()["state"][0]
        assert isinstance(st["exp_avg"], np.ndarray) and float(st["step"]) == 15
        results[dev] = (losses, {k: backend.to_numpy(v) for k, v in model.state_dict().items()})
    assert results[device][0][-1] < results[device][0][0]
    np.testing.assert_allclose(results[device][0], results["cpu"][0], rtol=1e-4)
    for k, v in results["cpu"][1].items():
        np.testing.assert_allclose(results[device][1][k], v, rtol=1e-4, atol=1e-5)
