"""Reliability: thread-safe inference, no leaks, determinism, anomaly detection,
and labels/sizes that are refused before any kernel runs."""
import gc
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn


def mlp(sizes=(40, 64, 64, 10), dtype=np.float32):
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1], dtype=dtype), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


# ------------------------------------------------------------- threads ----

def test_threads_get_exactly_the_single_threaded_results():
    tl.manual_seed(0)
    model = mlp((64, 256, 256, 10))
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((int(rng.integers(1, 300)), 64)).astype(np.float32) for _ in range(200)]
    with tl.no_grad():
        expected = [model(x).numpy() for x in inputs]
    errors = []

    def worker(order):
        try:
            with tl.no_grad():
                for i in order:
                    out = model(inputs[i]).numpy()
                    if not np.array_equal(out, expected[i]):
                        errors.append(i)
        except Exception as e:          # pragma: no cover - reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(np.random.default_rng(k).permutation(200),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ---------------------------------------------------------------- leaks ----

def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def test_training_memory_stays_flat():
    tl.manual_seed(0)
    model = mlp()
    opt = tl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 40)).astype(np.float32)
    y = rng.integers(0, 10, 64)

    def steps(n):
        for _ in range(n):
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    steps(500)                              # warm-up: allocator and caches settle
    gc.collect()
    rss0 = _rss_mb()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    steps(5000)
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    rss1 = _rss_mb()
    grown = sum(s.size_diff for s in snap1.compare_to(snap0, "filename")) / 2**20
    print(f"5000 steps: RSS {rss0:.1f} -> {rss1:.1f} MB, Python allocations grew {grown:.3f} MB")
    assert grown < 0.5
    assert rss1 - rss0 < 8


def test_freed_model_and_graph_are_released_without_gc():
    model = mlp()
    x = np.ones((8, 40), dtype=np.float32)
    loss = nn.CrossEntropyLoss()(model(x), np.zeros(8, dtype=np.int64))
    loss.backward()
    refs = [weakref.ref(p) for p in model.parameters()] + [weakref.ref(model), weakref.ref(loss)]
    gc.disable()
    try:
        del model, loss
        assert all(r() is None for r in refs), "a reference cycle keeps the model or graph alive"
    finally:
        gc.enable()


def test_graph_without_backward_is_released():
    model = mlp()
    out = model(np.ones((4, 40), dtype=np.float32))
    r = weakref.ref(out)
    gc.disable()
    try:
        del out
        assert r() is None
    finally:
        gc.enable()


# ----------------------------------------------------------- determinism ----

def test_two_cpu_runs_are_bit_identical():
    def run():
        tl.manual_seed(123)
        model = mlp()
        opt = tl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
        rng = np.random.default_rng(5)
        for _ in range(50):
            x = rng.standard_normal((32, 40)).astype(np.float32)
            y = rng.integers(0, 10, 32)
            opt.zero_grad()
            nn.CrossEntropyLoss()(model(x), y).backward()
            opt.step()
        return model.state_dict()
    a, b = run(), run()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


# ------------------------------------------------------ anomaly detection ----

def test_anomaly_names_op_in_forward_and_backward():
    model = mlp((4, 3, 2), dtype=np.float64)
    x = np.full((2, 4), np.inf)
    with tl.detect_anomaly():
        with pytest.raises(FloatingPointError, match="Linear"):
            model(x)
    # backward: sqrt is finite at 0 but its gradient is not
    x = tl.tensor([0.0, 4.0], dtype=np.float64, requires_grad=True)
    with tl.detect_anomaly():
        y = (x ** 0.5).sum()
        with pytest.raises(FloatingPointError, match="backward of 'pow'"):
            y.backward()


def test_anomaly_names_the_layer_by_its_name_in_the_model():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 3, dtype=np.float64), nn.ReLU(),
                                      nn.Linear(3, 3, dtype=np.float64), nn.ReLU())
            self.head = nn.Linear(3, 2, dtype=np.float64)

        def forward(self, x):
            return self.head(self.body(x))

    net = Net()
    net.body[2].weight.data[0, 0] = np.nan
    with tl.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"'Linear\+ReLU' in layer 'body.2' \(Linear\)"):
            net(np.ones((2, 4)))
    net.body[2].weight.data[0, 0] = 0.0
    with tl.detect_anomaly():
        out = net(np.ones((2, 4)))
        assert "grad_fn=<Linear>" in repr(out)
        with pytest.raises(FloatingPointError, match=r"backward of 'Linear' in layer 'head' \(Linear\)"):
            out.backward(np.array([[np.inf, 0.0], [0.0, 0.0]]))
    assert not tl.is_anomaly_enabled()
    net(np.ones((2, 4)))                     # off again: no tracking, no error


def test_anomaly_off_is_default():
    assert not tl.is_anomaly_enabled()


# ------------------------------------------------------- labels and sizes ----

@pytest.mark.parametrize("label", [10, -1, 2**32 + 5, 2**63 - 1])
def test_bad_labels_raise_before_the_kernel(label):
    model = mlp()
    logits = model(np.ones((3, 40), dtype=np.float32))
    y = np.array([0, 1, label], dtype=np.int64)
    with pytest.raises(ValueError, match=rf"cross_entropy: target\[2\] = {label} is not a class index in \[0, 10\)"):
        nn.CrossEntropyLoss()(logits, y)


def test_huge_logits_match_float64_logsumexp():
    z = np.array([[1e4, -1e4, 3.0], [-1e4, -1e4, -1e4 + 1]], dtype=np.float32)
    y = np.array([1, 2])
    loss = nn.CrossEntropyLoss()(tl.tensor(z, requires_grad=True), y).item()
    z64 = z.astype(np.float64)
    m = z64.max(1)
    ref = np.mean(m + np.log(np.exp(z64 - m[:, None]).sum(1)) - z64[[0, 1], y])
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, ref, rtol=1e-6)
