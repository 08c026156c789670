"""The memory-aware backward and tinytl.memory.

- For every combination of frozen/trainable weight and bias of a 3-layer MLP
  (Linear-ReLU-Linear-ReLU-Linear, Sequential's fused Linear+ReLU) and of an input
  that does or does not require a gradient: the gradients are bit-identical to those
  of the full graph (everything trainable, which keeps every input), the float64 ones
  match an independent NumPy backward, and ``saved_bytes`` is EXACTLY what the rule
  gives from the shapes (a trained weight keeps its layer's input; a recorded ReLU
  keeps N x ceil(M / 8) mask bytes; parameters are not counted).
- What is not kept is really freed (weak references die), not only left uncounted.
- ``saved_bytes``'s generic rule on a hand-made op (views once, parameters out,
  nested closures looked into); the standalone relu keeps a packed mask.
- ``track_memory`` on known allocations (CPU; GPU where CuPy's pool can be followed).
"""
import gc
import itertools
import tracemalloc
import weakref

import numpy as np
import pytest

import tinytl as tl
from tinytl import backend, nn
from tinytl.memory import saved_bytes, track_memory
from tinytl.tensor import _make

SIZES = (11, 13, 9, 4)          # widths not multiples of 8: the masks' padded last byte
N = 5


def mlp(device, dtype):
    tl.manual_seed(0)
    m = nn.Sequential(nn.Linear(SIZES[0], SIZES[1], dtype=dtype), nn.ReLU(),
                      nn.Linear(SIZES[1], SIZES[2], dtype=dtype), nn.ReLU(),
                      nn.Linear(SIZES[2], SIZES[3], dtype=dtype))
    return m.to(device)


def batch(dtype):
    rng = np.random.default_rng(3)
    return rng.standard_normal((N, SIZES[0])).astype(dtype), rng.integers(0, SIZES[3], N)


def run(device, dtype, trains, x_grad):
    """One forward + backward with ``trains`` = (W0, b0, W1, b1, W2, b2) flags; returns
    ({name: grad}, x.grad, saved_bytes(logits), saved_bytes(loss), the loss)."""
    model = mlp(device, dtype)
    params = dict(model.named_parameters())
    names = ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    for n, t in zip(names, trains):
        params[n].requires_grad = t
    xa, ya = batch(dtype)
    x = tl.tensor(xa, device=device, requires_grad=x_grad)
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, tl.tensor(ya, device=device))
    counted = saved_bytes(logits), saved_bytes(loss)
    if loss.requires_grad:
        loss.backward()
    grads = {n: backend.to_numpy(params[n].grad) for n, t in zip(names, trains) if t}
    return grads, (backend.to_numpy(x.grad) if x_grad else None), counted


def expected_saved(trains, x_grad, itemsize):
    """The rule, from the shapes: layer i keeps its input when its weight trains and, when
    it is recorded and has a ReLU, a mask of N x ceil(out / 8) bytes; nothing else."""
    total, needs = 0, x_grad
    for i in range(3):
        w, b = trains[2 * i], trains[2 * i + 1]
        recorded = needs or w or b
        if recorded and i < 2:
            total += N * ((SIZES[i + 1] + 7) // 8)
        if w:
            total += N * SIZES[i] * itemsize
        needs = recorded
    return total, needs


def numpy_grads(dtype):
    """Gradients of every parameter and of x, by hand, in float64 (an independent witness)."""
    model = mlp("cpu", dtype)
    Ws = [model[i].weight.numpy().astype(np.float64) for i in (0, 2, 4)]
    bs = [model[i].bias.numpy().astype(np.float64) for i in (0, 2, 4)]
    xa, ya = batch(dtype)
    hs, h = [], xa.astype(np.float64)
    for i in range(3):
        hs.append(h)
        h = h @ Ws[i].T + bs[i]
        if i < 2:
            h = np.maximum(h, 0)
        else:
            z = h
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = p
    g[np.arange(N), ya] -= 1
    g /= N
    out = {}
    for i in (2, 1, 0):
        out[f"{2 * i}.weight"], out[f"{2 * i}.bias"] = g.T @ hs[i], g.sum(0)
        g = g @ Ws[i]
        if i:
            g = g * (hs[i] > 0)
    return out, g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_freezing_pattern_gives_the_full_graphs_gradients_and_keeps_what_the_rule_says(device, dtype):
    full, full_x, (full_logits, _) = run(device, dtype, (True,) * 6, True)
    itemsize = np.dtype(dtype).itemsize
    assert full_logits == expected_saved((True,) * 6, True, itemsize)[0]
    if dtype == np.float64:   # the full graph itself is right
        want, want_x = numpy_grads(dtype)
        for n, g in full.items():
            np.testing.assert_allclose(g, want[n], rtol=1e-10, atol=1e-14, err_msg=n)
        np.testing.assert_allclose(full_x, want_x, rtol=1e-10, atol=1e-14)
    for *trains, x_grad in itertools.product((False, True), repeat=7):
        grads, gx, (at_logits, at_loss) = run(device, dtype, trains, x_grad)
        want_bytes, recorded = expected_saved(trains, x_grad, itemsize)
        assert at_logits == want_bytes, (trains, x_grad)
        # the loss keeps its (N, C) gradient, when it is recorded at all
        assert at_loss == want_bytes + (N * SIZES[3] * itemsize if recorded else 0), (trains, x_grad)
        for n, g in grads.items():
            np.testing.assert_array_equal(g, full[n], err_msg=f"{n} {trains} {x_grad}")  # bit for bit
        if x_grad:
            np.testing.assert_array_equal(gx, full_x)


def test_what_is_not_kept_is_freed():
    """BitFit (biases only): the hidden activations die as soon as the next layer has
    read them; the graph holds 1-bit masks. With the weights training, they stay."""
    for weights_train in (False, True):
        model = mlp("cpu", np.float32)
        for n, p in model.named_parameters():
            p.requires_grad = n.endswith("bias") or weights_train
        x = tl.tensor(batch(np.float32)[0])
        h1 = nn.functional.linear(x, model[0].weight, model[0].bias, relu=True)
        ref = weakref.ref(h1.data)
        h2 = nn.functional.linear(h1, model[2].weight, model[2].bias, relu=True)
        del h1
        gc.collect()
        assert (ref() is None) == (not weights_train)
        h2.sum().backward()
        assert model[0].bias.grad is not None


def test_saved_bytes_rule_on_a_hand_made_op():
    """Closure cells that are arrays or Tensors count (a Tensor by its .data), nested
    functions and containers are looked into, a view counts its base once, memory
    shared by several nodes counts once, parameters and their views count nothing."""
    base = np.zeros((10, 10))                     # 800 bytes
    view = base[2:5]                              # keeps all of base alive
    other = tl.tensor(np.zeros(7, np.float32))    # a Tensor: its 28 bytes
    param = nn.Parameter(np.zeros((3, 3)))
    leaf = tl.tensor(np.ones(2), requires_grad=True)

    def helper():
        return other, [view]

    def backward(g):
        helper()
        return (g * param.data[0, 0] * base[0, 0] * param.data.T[0, 0],)

    y = _make(leaf.data * 2, (leaf,), backward, "custom")
    assert saved_bytes(y) == 800 + 28
    keep_twice = y.data.copy()                    # 16 bytes, kept by two nodes
    z = _make(y.data + 1, (y,), lambda g: (g * keep_twice,), "a")
    w = _make(z.data + 1, (z,), lambda g: (g * keep_twice[:1],), "b")
    assert saved_bytes(w) == 800 + 28 + 16
    assert saved_bytes(leaf) == 0 and saved_bytes(tl.tensor(1.0)) == 0
    with tl.no_grad():
        assert saved_bytes(_make(leaf.data, (leaf,), backward, "custom")) == 0
    w.backward(np.ones(2))
    assert saved_bytes(w) == 0                    # backward freed the graph
    with pytest.raises(TypeError, match="saved_bytes: t must be a Tensor, got ndarray"):
        saved_bytes(base)


def test_standalone_relu_keeps_a_packed_mask(device):
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((3, 7, 5)).astype(np.float32)
    xa[0, 0, :2] = 0.0                             # the boundary: no gradient at 0
    x = tl.tensor(xa, device=device, requires_grad=True)
    y = nn.functional.relu(x)
    assert saved_bytes(y) == (xa.size + 7) // 8    # 105 bits: 14 bytes
    g = rng.standard_normal(xa.shape).astype(np.float32)
    y.backward(tl.tensor(g, device=device))
    np.testing.assert_array_equal(backend.to_numpy(x.grad), g * (xa > 0))   # bit for bit
    assert saved_bytes(nn.functional.relu(tl.tensor(xa, device=device))) == 0   # nothing recorded
    e = tl.tensor(np.zeros((0, 3), np.float32), device=device, requires_grad=True)   # empty: nothing to pack
    nn.functional.relu(e).backward(tl.tensor(np.zeros((0, 3), np.float32), device=device))
    assert e.grad.shape == (0, 3)


def test_linear_mask_is_written_only_when_a_backward_will_run():
    model = mlp("cpu", np.float32)
    x = tl.tensor(batch(np.float32)[0])
    with tl.no_grad():
        assert saved_bytes(model(x)) == 0
    tl.transfer.freeze(model)
    assert saved_bytes(model(x)) == 0              # a frozen network records nothing
    model[4].weight.requires_grad = True           # head only: its input alone
    assert saved_bytes(model(x)) == N * SIZES[2] * 4


# ------------------------------------------------------------ track_memory ----

MIB = 1 << 20
SLACK = 64 << 10   # the Python objects a block makes (tracemalloc traces them too)


def test_track_memory_cpu_peak_and_current_of_known_allocations():
    was_tracing = tracemalloc.is_tracing()
    with track_memory() as m:
        a = np.ones(MIB)            # 8 MiB
        del a
        b = np.ones(MIB // 4)       # 2 MiB, kept
    assert 8 * MIB <= m.peak_bytes < 8 * MIB + SLACK
    assert 2 * MIB <= m.current_bytes < 2 * MIB + SLACK
    assert tracemalloc.is_tracing() == was_tracing
    with track_memory() as outer:
        with track_memory() as inner:
            c = np.ones(MIB // 2)   # 4 MiB, freed inside
            del c
        d = np.ones(MIB // 8)       # 1 MiB after the inner block: the outer peak is still 4 MiB
        del d
    assert 4 * MIB <= inner.peak_bytes < 4 * MIB + SLACK
    assert 4 * MIB <= outer.peak_bytes < 4 * MIB + SLACK
    del b
    with pytest.raises(ValueError):
        track_memory("tpu")


def test_track_memory_sees_what_a_training_step_allocates():
    """BitFit's forward + backward allocates less at its peak than full fine-tuning's."""
    peaks = {}
    for mode in ("full", "bitfit"):
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        if mode == "bitfit":
            for n, p in model.named_parameters():
                p.requires_grad = n.endswith("bias") or n.startswith("4.")
        x = tl.tensor(np.random.default_rng(0).standard_normal((512, 64)).astype(np.float32))
        y = np.zeros(512, np.int64)
        with track_memory() as m:
            nn.functional.cross_entropy(model(x), y).backward()
        peaks[mode] = m.peak_bytes
    # full fine-tuning keeps x (128 KiB) and both hidden inputs (512 KiB each) and makes weight
    # gradients; BitFit keeps the head's input only. At the peak (early in backward, with the
    # gradients in flight) BitFit holds at least one hidden activation less.
    assert peaks["bitfit"] < peaks["full"] - 512 * 1024, peaks


def test_track_memory_gpu(device):
    if device != "cuda":
        pytest.skip("the GPU's memory pool")
    cp = backend.cupy_if_loaded() or backend._require_cuda()
    if not hasattr(getattr(cp, "cuda", None), "MemoryHook"):
        with pytest.raises(RuntimeError, match="no cupy.cuda.MemoryHook"):
            with track_memory("cuda"):
                pass
        pytest.skip("the emulated GPU has no memory pool to follow (cupy.cuda.MemoryHook)")
    with track_memory("cuda") as m:
        a = cp.ones(MIB, np.float64)     # 8 MiB, a multiple of the pool's 512-byte blocks
        del a
        b = cp.ones(MIB // 4, np.float64)
    assert m.peak_bytes == 8 * MIB and m.current_bytes == 2 * MIB
    del b
