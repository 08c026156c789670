"""SGD: torch.optim.SGD's rule checked against a hand-computed update for every
option combination, parameter groups, frozen parameters, and resuming."""
import itertools

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn


def hand_sgd(w, grads, lr, momentum, dampening, weight_decay, nesterov):
    """The update written out by hand, step by step (float64)."""
    w = w.copy()
    buf = None
    for g in grads:
        d = g + weight_decay * w
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        w = w - lr * d
    return w


OPTIONS = [dict(momentum=m, dampening=d, weight_decay=wd, nesterov=n)
           for m, d, wd, n in itertools.product([0.0, 0.9], [0.0, 0.3], [0.0, 0.01], [False, True])
           if not (n and (m == 0 or d != 0))]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
def test_sgd_matches_hand_computed(rng, opts):
    w0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(4)]
    p = nn.Parameter(w0.copy())
    opt = tl.optim.SGD([p], lr=0.1, **opts)
    for g in grads:
        p.grad = g.copy()
        opt.step()
    np.testing.assert_allclose(p.data, hand_sgd(w0, grads, 0.1, **opts), rtol=1e-12, atol=1e-14)


def test_sgd_validation():
    p = nn.Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="lr"):
        tl.optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        tl.optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        tl.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        tl.optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="unknown option"):
        tl.optim.SGD([{"params": [p], "momentun": 0.9}], lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        tl.optim.SGD([p], lr=0.1, momentum=float("nan"))


def test_param_groups_have_their_own_options():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = tl.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.5)


def test_frozen_or_gradless_params_are_not_touched():
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(3))
    opt = tl.optim.SGD([a, b], lr=0.1, momentum=0.9, weight_decay=0.1)
    a.grad = np.ones(3)                  # b has no grad: no weight decay, no momentum
    opt.step()
    np.testing.assert_array_equal(b.data, np.ones(3))
    a.requires_grad = False              # frozen with a stale gradient still attached
    before = a.data.copy()
    opt.step()
    opt.step()
    np.testing.assert_array_equal(a.data, before)
    assert a.grad is None                # the stale gradient was dropped
    a.grad = np.zeros(3)                 # a zeroed-but-present grad on a frozen param: still untouched
    opt.step()
    np.testing.assert_array_equal(a.data, before)


def test_unfreezing_restarts_momentum():
    a = nn.Parameter(np.zeros(2))
    opt = tl.optim.SGD([a], lr=1.0, momentum=0.9)
    a.grad = np.ones(2)
    opt.step()                            # buf = 1
    a.requires_grad = False
    opt.step()                            # frozen: buffer dropped
    a.requires_grad = True
    a.grad = np.ones(2)
    before = a.data.copy()
    opt.step()                            # a fresh buffer: the step is lr * grad, not lr * (0.9 + 1)
    np.testing.assert_allclose(a.data, before - 1.0)


def test_zero_grad():
    a = nn.Parameter(np.zeros(2))
    opt = tl.optim.SGD([a], lr=1.0)
    a.grad = np.ones(2)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, 0)
    opt.zero_grad()
    assert a.grad is None


def test_state_dict_resume_gives_same_trajectory(rng):
    def run(split):
        tl.manual_seed(3)
        m = nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.ReLU(), nn.Linear(6, 2, dtype=np.float64))
        opt = tl.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        data = np.random.default_rng(0)
        xs = [data.standard_normal((5, 4)) for _ in range(6)]
        ys = [data.integers(0, 2, 5) for _ in range(6)]
        for i, (x, y) in enumerate(zip(xs, ys)):
            if i == split:
                sd_m, sd_o = m.state_dict(), opt.state_dict()
                m = nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.ReLU(), nn.Linear(6, 2, dtype=np.float64))
                m.load_state_dict(sd_m)
                opt = tl.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True)
                opt.load_state_dict(sd_o)
            opt.zero_grad()
            nn.CrossEntropyLoss()(m(x), y).backward()
            opt.step()
        return m.state_dict()
    a, b = run(split=-1), run(split=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_resume_keeps_momentum_of_a_parameter_frozen_before(rng):
    """A loaded momentum buffer is current, even for a parameter frozen and unfrozen earlier."""
    m = nn.Sequential(nn.Linear(4, 3, dtype=np.float64))
    m.freeze()
    m.unfreeze()
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    opt = tl.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        nn.CrossEntropyLoss()(m(x), y).backward()
        opt.step()
    opt2 = tl.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    w = m[0].weight
    before, buf = w.data.copy(), opt.state[id(w)]["momentum_buffer"].copy()
    opt2.zero_grad()
    nn.CrossEntropyLoss()(m(x), y).backward()
    g = w.grad.copy()
    opt2.step()
    np.testing.assert_allclose(w.data, before - 0.1 * (0.9 * buf + g), rtol=1e-12, atol=1e-15)


def test_load_state_dict_validates():
    a = nn.Parameter(np.zeros(2))
    opt = tl.optim.SGD([a], lr=1.0, momentum=0.9)
    with pytest.raises(ValueError, match="param_groups"):
        opt.load_state_dict({})
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({"state": {0: {"momentum_buffer": np.zeros(3)}},
                             "param_groups": [{"lr": 1.0, "params": [0]}]})


def test_anomaly_mode_refuses_non_finite_step():
    a = nn.Parameter(np.ones(2))
    opt = tl.optim.SGD([a], lr=1e308)
    a.grad = np.full(2, 1e308)
    with tl.detect_anomaly():
        with pytest.raises(FloatingPointError, match="non-finite"):
            opt.step()
    np.testing.assert_array_equal(a.data, 1.0)


def test_freeze_then_unfreeze_without_a_step_restarts_momentum():
    a = nn.Parameter(np.zeros(2))
    opt = tl.optim.SGD([a], lr=1.0, momentum=0.9)
    a.grad = np.ones(2)
    opt.step()                            # buf = 1
    a.requires_grad = False               # frozen and unfrozen with no step in between
    assert a.grad is None                 # freezing drops the stale gradient at once
    a.requires_grad = True
    a.grad = np.ones(2)
    before = a.data.copy()
    opt.step()
    np.testing.assert_allclose(a.data, before - 1.0)   # a fresh buffer, not 0.9 * 1 + 1


def test_sgd_updates_a_strided_parameter_in_place():
    base = np.ones((4, 6))
    p = nn.Parameter(base[:, ::2])                   # a view: neither C- nor F-contiguous
    q = nn.Parameter(np.ones((4, 3)))
    opts = [tl.optim.SGD([t], lr=0.1, momentum=0.9, weight_decay=0.01) for t in (p, q)]
    for _ in range(3):
        for t, opt in zip((p, q), opts):
            t.grad = np.full((4, 3), 0.5)
            opt.step()
    np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_array_equal(base[:, ::2], q.data)    # written through the view
    np.testing.assert_array_equal(base[:, 1::2], 1.0)


@pytest.mark.parametrize("stream_cost,want", [(0.5, True), (0.875, True), (1.0, False), (2.0, False)])
def test_store_path_of_large_parameters_is_chosen_by_timing_iterations(monkeypatch, stream_cost, want):
    """The store path of large CPU parameters is chosen by timing whole iterations (from one
    step() to the next) with plain and streaming stores, alternating (three each here), the first
    step untimed; streaming is kept only when clearly faster, and timed again after
    _STREAM_RETIME steps (here the costs swap in between). Small parameters always take
    the plain path. The values are the reference's bit for bit on either path."""
    from tinytl import kernels, optim
    if kernels.cpu_kernels is kernels.reference:
        pytest.skip("the compiled kernels are not built")
    K = kernels.cpu_kernels
    monkeypatch.setattr(optim, "_STREAM_RETIME", 4)
    monkeypatch.setattr(optim, "_STREAM_TRIALS", 3)
    now, calls, cost = [0.0], [], {False: 1.0, True: stream_cost}
    real = K.sgd_step

    def fake_step(*args):                     # the clock moves only inside the updates
        stream = args[9] if len(args) > 9 else False
        calls.append(stream)
        now[0] += cost[stream]
        return real(*args)

    monkeypatch.setattr(K, "sgd_step", fake_step)
    monkeypatch.setattr(optim, "_clock", lambda: now[0])
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((160, 120)).astype(np.float32)          # 76.8 KB: large
    b0 = rng.standard_normal(160).astype(np.float32)                 # 640 B: always plain
    w, b = nn.Parameter(w0.copy()), nn.Parameter(b0.copy())
    opt = tl.optim.SGD([w, b], lr=0.1, momentum=0.9)
    rw, rb = w0.copy(), b0.copy()
    bufs = [np.empty_like(w0), np.empty_like(b0)]
    for k in range(19):
        if k == 12:                                                   # the machine changes: costs swap
            cost[True], cost[False] = cost[False], cost[True]
        gw, gb = rng.standard_normal(w0.shape).astype(np.float32), rng.standard_normal(160).astype(np.float32)
        w.grad, b.grad = gw.copy(), gb.copy()
        opt.step()
        kernels.reference.sgd_step(rw, gw, bufs[0], 0.1, 0.9, 0.0, 0.0, False, k == 0)
        kernels.reference.sgd_step(rb, gb, bufs[1], 0.1, 0.9, 0.0, 0.0, False, k == 0)
        np.testing.assert_array_equal(w.data, rw)
        np.testing.assert_array_equal(b.data, rb)
    # an iteration costs the weight's update (its path) plus the bias's (plain, 1.0 then stream_cost)
    after = {False: stream_cost + stream_cost, True: 1.0 + stream_cost}
    want_after = after[True] < optim._STREAM_GAIN * after[False]
    F, T = False, True
    weight_calls = calls[0::2]                                      # w then b, every step
    assert weight_calls == [F, F, T, F, T, F, T] + [want] * 5 + [F, T, F, T, F, T] + [want_after], weight_calls
    assert opt._stream[0] is want_after
    assert not any(calls[1::2])


def test_store_path_choice_shrugs_off_two_interrupted_iterations(monkeypatch):
    """Two long gaps between steps (an evaluation, a pause), both after streaming steps,
    do not make the faster streaming path lose: five timed iterations each, medians."""
    from tinytl import kernels, optim
    if kernels.cpu_kernels is kernels.reference:
        pytest.skip("the compiled kernels are not built")
    K = kernels.cpu_kernels
    now, real = [0.0], K.sgd_step

    def fake_step(*args):
        now[0] += 0.5 if (len(args) > 9 and args[9]) else 1.0
        return real(*args)

    monkeypatch.setattr(K, "sgd_step", fake_step)
    monkeypatch.setattr(optim, "_clock", lambda: now[0])
    w = nn.Parameter(np.zeros((160, 120), np.float32))
    opt = tl.optim.SGD([w], lr=0.1, momentum=0.9)
    gaps = 0
    for _ in range(12):
        w.grad = np.ones((160, 120), np.float32)
        opt.step()
        if opt._stream[4] is True and gaps < 2:          # a timed streaming iteration is interrupted
            now[0] += 1000.0
            gaps += 1
    assert gaps == 2
    assert opt._stream[1] > 0 and opt._stream[0] is True


def _two_layer_params(rng):
    """A Linear-like pair: an F-ordered weight (Linear's layout) and a bias, float32."""
    w = nn.Parameter(np.asfortranarray(rng.standard_normal((5, 3)).astype(np.float32)))
    b = nn.Parameter(rng.standard_normal(5).astype(np.float32))
    return w, b


def test_cached_plan_gives_the_general_paths_values(rng, monkeypatch):
    """SGD caches the common step's plan (SGD._fast_plan): bit for bit the general path's
    updates, with the group's options (a scheduler's lr) read at every step."""
    grads = [(rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(5).astype(np.float32))
             for _ in range(6)]
    runs = []
    for cached in (True, False):
        w, b = _two_layer_params(np.random.default_rng(1))
        opt = tl.optim.SGD([w, b], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
        sched = tl.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        if not cached:
            monkeypatch.setattr(opt, "_fast_plan", lambda: None)
        for gw, gb in grads:
            w.grad, b.grad = np.asfortranarray(gw), gb.copy()
            opt.step()
            sched.step()
            assert (opt._fast is not None) is cached
        runs.append((w.data.copy(), b.data.copy(), opt.state_dict()["state"][0]["momentum_buffer"]))
    for a, c in zip(*runs):
        np.testing.assert_array_equal(a, c)


def test_cached_plan_keeps_every_check_before_writing(rng):
    """Once the plan is cached, a gradient that does not fit, one that overlaps its
    parameter, a read-only or replaced parameter, replaced state or a changed momentum
    are all still seen before anything is written."""
    w, b = _two_layer_params(rng)
    opt = tl.optim.SGD([w, b], lr=0.1, momentum=0.9)

    def step_ok():
        w.grad, b.grad = np.asfortranarray(np.ones((5, 3), np.float32)), np.ones(5, np.float32)
        opt.step()
    step_ok()
    step_ok()
    assert opt._fast is not None
    for bad, match in [(np.ones(4, np.float32), "does not match"), (np.ones(5, np.float64), "does not match"),
                       (b.data[::-1], "overlaps")]:
        w.grad, b.grad = np.asfortranarray(np.ones((5, 3), np.float32)), bad
        before = w.data.copy(), b.data.copy(), opt.state[id(w)]["momentum_buffer"].copy()
        with pytest.raises(ValueError, match=match):
            opt.step()
        np.testing.assert_array_equal(w.data, before[0])      # the first parameter was not written
        np.testing.assert_array_equal(b.data, before[1])
        np.testing.assert_array_equal(opt.state[id(w)]["momentum_buffer"], before[2])
    step_ok()
    b.data.flags.writeable = False
    w.grad, b.grad = np.asfortranarray(np.ones((5, 3), np.float32)), np.ones(5, np.float32)
    before = w.data.copy()
    with pytest.raises(ValueError, match="read-only"):
        opt.step()
    np.testing.assert_array_equal(w.data, before)
    b.data.flags.writeable = True
    # a parameter given new data (same shape): the new array is updated, with the old momentum
    step_ok()
    new = np.zeros(5, np.float32)
    b.data = new
    buf = opt.state[id(b)]["momentum_buffer"].copy()
    step_ok()
    np.testing.assert_allclose(b.data, -0.1 * (0.9 * buf + 1.0), rtol=1e-6)
    assert b.data is new
    # momentum set to 0 by hand: plain SGD from now on
    opt.param_groups[0]["momentum"] = 0.0
    before = w.data.copy()
    step_ok()
    np.testing.assert_allclose(w.data, before - 0.1, rtol=1e-6)
    # state replaced by load_state_dict: the loaded momentum is used
    opt.param_groups[0]["momentum"] = 0.9
    step_ok()
    sd = opt.state_dict()
    sd["state"][0]["momentum_buffer"] = np.full((5, 3), 2.0, np.float32)
    opt.load_state_dict(sd)
    before = w.data.copy()
    step_ok()
    np.testing.assert_allclose(w.data, before - 0.1 * (0.9 * 2.0 + 1.0), rtol=1e-6)


def test_cached_plan_with_frozen_and_gradless_parameters(rng, monkeypatch):
    """A frozen backbone and an unused parameter in the same optimizer as a trained head:
    the cached plan leaves them alone, gives the general path's values, and an unfreeze or
    a new gradient sends the step back to the general path (which starts momentum afresh)."""
    runs = []
    for cached in (True, False):
        r = np.random.default_rng(3)
        frozen, unused, (w, b) = (nn.Parameter(r.standard_normal(4)), nn.Parameter(r.standard_normal(2)),
                                  _two_layer_params(r))
        frozen.requires_grad = False
        opt = tl.optim.SGD([frozen, w, unused, b], lr=0.1, momentum=0.9)
        if not cached:
            monkeypatch.setattr(opt, "_fast_plan", lambda: None)
        for k in range(6):
            w.grad, b.grad = np.asfortranarray(np.full((5, 3), k, np.float32)), np.full(5, 1.0 - k, np.float32)
            if k == 3:
                frozen.requires_grad = True                 # unfrozen: trains from now on
            if k >= 3:
                frozen.grad = np.ones(4)
            if k == 4:
                unused.grad = np.ones(2)
            opt.step()
            assert (opt._fast is not None) is cached
        runs.append([frozen.data.copy(), unused.data.copy(), w.data.copy(), b.data.copy()])
    for a, c in zip(*runs):
        np.testing.assert_array_equal(a, c)
    r = np.random.default_rng(3)
    f0, u0 = r.standard_normal(4), r.standard_normal(2)
    np.testing.assert_allclose(runs[0][0], f0 - 0.1 * (1 + 1.9 + 2.71))    # momentum from its unfreeze on
    np.testing.assert_allclose(runs[0][1], u0 - 0.1 * (1 + 1.9))
