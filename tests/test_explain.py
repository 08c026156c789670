"""tl.explain's representation and weight comparison: CKA (full and minibatch) against an
independent float64 implementation of the formulas, its invariances, layer_similarity by
hooks, weight_drift, probe_layers, and the errors on bad input; on every device."""
import math

import numpy as np
import pytest

import tinytl as tl
from tinytl import backend, nn
from tinytl.explain import (MinibatchCKA, cka, layer_similarity, minibatch_cka, probe_layers, weight_drift)


# ------------------------------------------- the reference, from the formulas ----

def ref_gram(X, kernel="linear", threshold=0.5):
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if kernel == "linear":
        return X @ X.T
    n = len(X)
    d2 = np.array([[np.sum((X[i] - X[j]) ** 2) for j in range(n)] for i in range(n)])
    sigma = threshold * math.sqrt(np.median(d2))          # a fraction of the median distance
    return np.exp(-d2 / (2 * sigma ** 2))


def ref_hsic(K, L, debiased=False):
    n = len(K)
    if not debiased:
        H = np.eye(n) - np.ones((n, n)) / n
        return np.trace(K @ H @ L @ H) / (n - 1) ** 2
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))       # Song et al. (2012)
    one = np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))


def ref_cka(X, Y, kernel="linear", threshold=0.5, debiased=False):
    K, L = ref_gram(X, kernel, threshold), ref_gram(Y, kernel, threshold)
    return ref_hsic(K, L, debiased) / math.sqrt(ref_hsic(K, K, debiased) * ref_hsic(L, L, debiased))


def on(device, a):
    return backend.to_device(np.asarray(a), device)


def pair(rng, n=40, p=12, q=7, noise=0.5):
    X = rng.normal(size=(n, p))
    Y = np.tanh(X @ rng.normal(size=(p, q))) + noise * rng.normal(size=(n, q))
    return X, Y


# ----------------------------------------------------------------- cka ----

@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(40, 12, 7), (9, 30, 50)])   # features path, Gram path
def test_cka_matches_the_formulas(device, rng, kernel, debiased, shape):
    n, p, q = shape
    X, Y = pair(rng, n, p, q)
    X = X + 3.0                                      # not centred: the centring is cka's job
    got = cka(on(device, X), on(device, Y), kernel=kernel, debiased=debiased)
    assert isinstance(got, float)
    assert got == pytest.approx(ref_cka(X, Y, kernel, 0.5, debiased), rel=1e-10, abs=1e-12)


def test_cka_rbf_threshold_sets_the_bandwidth(rng):
    X, Y = pair(rng)
    for th in (0.2, 0.5, 1.0, 2.0):
        assert cka(X, Y, kernel="rbf", threshold=th) == pytest.approx(ref_cka(X, Y, "rbf", th), rel=1e-10)
    assert cka(X, Y, kernel="rbf", threshold=0.2) != pytest.approx(cka(X, Y, kernel="rbf", threshold=2.0))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_identical_inputs_is_one(device, rng, kernel, debiased):
    X = on(device, rng.normal(size=(30, 8)))
    assert cka(X, X, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_invariances(device, rng, debiased):
    X, Y = pair(rng)
    base = cka(X, Y, debiased=debiased)
    Q, _ = np.linalg.qr(rng.normal(size=(12, 12)))             # orthogonal
    assert cka(on(device, X @ Q), on(device, Y), debiased=debiased) == pytest.approx(base, rel=1e-10)
    assert cka(on(device, 7.5 * X), on(device, 0.01 * Y), debiased=debiased) == pytest.approx(base, rel=1e-10)
    # an invertible but not orthogonal map changes it
    A = np.diag(np.geomspace(1, 100, 12)) @ rng.normal(size=(12, 12))
    assert abs(np.linalg.det(A)) > 1e-6
    assert abs(cka(X @ A, Y, debiased=debiased) - base) > 1e-2


def test_rbf_cka_invariant_to_orthogonal_and_isotropic_scaling(rng):
    X, Y = pair(rng)
    Q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    base = cka(X, Y, kernel="rbf")
    assert cka(3.0 * X @ Q, Y, kernel="rbf") == pytest.approx(base, rel=1e-9)


def test_cka_of_unrelated_inputs_is_small_debiased(rng):
    X, Y = rng.normal(size=(2000, 5)), rng.normal(size=(2000, 5))
    assert abs(cka(X, Y, debiased=True)) < 0.01
    assert cka(X, Y) < 0.02


# ---------------------------------------------------------- minibatch CKA ----

@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_cka_with_one_batch_is_the_debiased_cka(device, rng, kernel):
    X, Y = pair(rng, n=37)
    got = minibatch_cka(on(device, X), on(device, Y), batch_size=37, kernel=kernel)
    assert got == pytest.approx(cka(X, Y, kernel=kernel, debiased=True), rel=1e-10)
    assert got == pytest.approx(ref_cka(X, Y, kernel, debiased=True), rel=1e-10)


def test_minibatch_cka_accumulates_the_batches_hsic(device, rng):
    X, Y = pair(rng, n=50)
    xs, ys = [X, X[:, :5]], [Y, Y ** 2, X]
    got = minibatch_cka([on(device, a) for a in xs], [on(device, b) for b in ys], batch_size=16)
    assert got.shape == (2, 3)
    bounds = [(0, 16), (16, 32), (32, 50)]               # the last 2 rows join the batch before
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            xy = sum(ref_hsic(ref_gram(a[s:e]), ref_gram(b[s:e]), True) for s, e in bounds)
            xx = sum(ref_hsic(ref_gram(a[s:e]), ref_gram(a[s:e]), True) for s, e in bounds)
            yy = sum(ref_hsic(ref_gram(b[s:e]), ref_gram(b[s:e]), True) for s, e in bounds)
            assert got[i, j] == pytest.approx(xy / math.sqrt(xx * yy), rel=1e-10)


def test_minibatch_accumulator(rng):
    X, Y = pair(rng, n=64)
    acc = MinibatchCKA()
    for s in range(0, 64, 16):
        acc.update([X[s:s + 16]], [Y[s:s + 16]])
    assert acc.n == 64 and acc.batches == 4
    assert acc.compute()[0, 0] == pytest.approx(minibatch_cka(X, Y, batch_size=16), rel=1e-12)
    with pytest.raises(ValueError, match="at least 4 rows"):
        acc.update([X[:3]], [Y[:3]])
    with pytest.raises(ValueError, match="1 x 1 layers"):
        acc.update([X[:8], X[:8]], [Y[:8]])
    with pytest.raises(ValueError, match="no batch"):
        MinibatchCKA().compute()


# ------------------------------------------------------------- bad input ----

def test_cka_errors(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="cka: X and Y must have the same rows.*10 and 9"):
        cka(X, X[:9])
    with pytest.raises(ValueError, match="at least 2 rows"):
        cka(X[:1], X[:1])
    with pytest.raises(ValueError, match="at least 4 rows"):
        cka(X[:3], X[:3], debiased=True)
    with pytest.raises(ValueError, match="kernel must be one of"):
        cka(X, X, kernel="poly")
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        cka(X, X, kernel="rbf", threshold=0)
    with pytest.raises(ValueError, match="constant"):
        cka(np.ones((10, 3)), X)
    with pytest.raises(ValueError, match="NaN or Inf"):
        cka(np.full((10, 3), np.nan), X)
    with pytest.raises(ValueError, match=r"shape \(n, features"):
        cka(np.ones(10), X)
    with pytest.raises(TypeError, match="must hold numbers"):
        cka(np.array([["a"]] * 4), X[:4])
    with pytest.raises(ValueError, match="minibatch_cka: X and Y must have the same rows"):
        minibatch_cka(X, X[:9])
    with pytest.raises(ValueError, match="batch_size must be at least 4"):
        minibatch_cka(X, X, batch_size=3)
    with pytest.raises(ValueError, match="at least 4 rows"):
        minibatch_cka(X[:3], X[:3])


# ------------------------------------------------------ layer_similarity ----

def mlp(n_in=10, hidden=16, n_out=3, seed=0, dtype=np.float64):
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden, dtype=dtype), nn.ReLU(), nn.Linear(hidden, hidden, dtype=dtype),
                         nn.ReLU(), nn.Linear(hidden, n_out, dtype=dtype))


def manual_activations(model, X):
    """Every layer's output, by calling the layers one by one (for the test only)."""
    out, h = [], tl.tensor(X)
    for layer in model:
        h = layer(h)
        out.append(h.numpy())
    return out


def test_layer_similarity_by_hooks_matches_manual_activations(device, rng):
    a, b = mlp(seed=0).to(device), mlp(n_out=4, seed=1).to(device)
    X = rng.normal(size=(60, 10))
    a.train()
    res = layer_similarity(a, b, X)
    assert res.layers_a == ["0", "1", "2", "3", "4"] and res.layers_b == ["0", "1", "2", "3", "4"]
    assert a.training and all(m.training for m in a.modules())          # flags restored
    ha, hb = manual_activations(a.to("cpu"), X), manual_activations(b.to("cpu"), X)
    want = np.array([[ref_cka(u, v) for v in hb] for u in ha])
    np.testing.assert_allclose(res.matrix, want, rtol=1e-9)
    assert "linear CKA on 60 examples" in str(res)
    assert res.diagonal()["4"] == pytest.approx(want[4, 4])
    d = res.to_dict()
    assert d["matrix"][1][2] == pytest.approx(want[1, 2]) and d["layers_a"] == res.layers_a


def test_layer_similarity_of_a_model_with_itself_has_a_unit_diagonal(device, rng):
    a = mlp().to(device)
    res = layer_similarity(a, a, rng.normal(size=(30, 10)), layers_a=["1", "3"], layers_b=["1", "3", "4"])
    assert res.layers_a == ["1", "3"] and res.layers_b == ["1", "3", "4"]
    np.testing.assert_allclose([res.matrix[0, 0], res.matrix[1, 1]], 1.0, atol=1e-12)


def test_layer_similarity_minibatch(device, rng):
    a, b = mlp(seed=0).to(device), mlp(seed=1).to(device)
    X = rng.normal(size=(64, 10))
    res = layer_similarity(a, b, X, minibatch=True, batch_size=16)
    assert res.minibatch and res.debiased
    ha, hb = manual_activations(a.to("cpu"), X), manual_activations(b.to("cpu"), X)
    np.testing.assert_allclose(res.matrix, minibatch_cka(ha, hb, batch_size=16), rtol=1e-9)
    full = layer_similarity(a.to(device), b.to(device), X, minibatch=True, batch_size=64)
    np.testing.assert_allclose(full.matrix, [[cka(u, v, debiased=True) for v in hb] for u in ha], rtol=1e-9)


def test_layer_similarity_of_models_on_two_devices(device, rng):
    a, b = mlp(seed=0), mlp(seed=1)
    X = rng.normal(size=(20, 10))
    for minibatch in (False, True):
        want = layer_similarity(a, b, X, minibatch=minibatch, batch_size=10).matrix
        np.testing.assert_allclose(layer_similarity(a.to(device), b.to("cpu"), X, minibatch=minibatch,
                                                    batch_size=10).matrix, want, rtol=1e-9)
        np.testing.assert_allclose(layer_similarity(a.to("cpu"), b.to(device), X, minibatch=minibatch,
                                                    batch_size=10).matrix, want, rtol=1e-9)


def test_layer_similarity_sees_each_layer_not_the_fused_pair(rng):
    """A Sequential fuses Linear+ReLU when no hook is set; with hooks, Linear's own output
    (with negative values) and ReLU's differ."""
    a = mlp()
    res = layer_similarity(a, a, rng.normal(size=(40, 10)))
    assert res.matrix[0, 1] < 0.999


def test_layer_similarity_errors(rng):
    a = mlp()
    X = rng.normal(size=(10, 10))
    with pytest.raises(TypeError, match="model_b must be a tinytl Module"):
        layer_similarity(a, "b", X)
    with pytest.raises(ValueError, match="layers_a names no layer '7'"):
        layer_similarity(a, a, X, layers_a=["7"])
    with pytest.raises(ValueError, match="needs debiased=True"):
        layer_similarity(a, a, X, minibatch=True, debiased=False)
    with pytest.raises(ValueError, match="at least 2 examples"):
        layer_similarity(a, a, X[:1])
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 10\)"):
        layer_similarity(a, a, X[:, :5])
    assert not a[0]._forward_hooks                       # hooks removed after an error


# ------------------------------------------------------------ weight drift ----

def test_drift_of_identical_models_is_zero(tmp_path):
    a = mlp()
    path = tmp_path / "a.safetensors"
    tl.save(a, path)
    for other in (a, a.state_dict(), path, str(path)):
        rep = weight_drift(a, other)
        assert all(r["relative"] == 0.0 and r["cosine"] == pytest.approx(1.0) for r in rep.rows)
        assert not rep.replaced and not rep.only_before and not rep.only_after
    assert all(v["relative"] == 0.0 for v in rep.by_layer().values())


def test_drift_values():
    a = mlp()
    sa = a.state_dict()
    sb = {k: v.copy() for k, v in sa.items()}
    sb["0.weight"] = 2 * sa["0.weight"]                          # drift 1, cosine 1
    sb["2.weight"] = -sa["2.weight"]                             # drift 2, cosine -1
    rng = np.random.default_rng(0)
    sb["2.bias"] = sa["2.bias"] + rng.normal(size=sa["2.bias"].shape).astype(np.float64)
    rep = weight_drift(sa, sb)
    rel = rep.relative()
    assert rel["0.weight"] == pytest.approx(1.0) and rel["2.weight"] == pytest.approx(2.0)
    row = {r["name"]: r for r in rep.rows}
    assert row["2.weight"]["cosine"] == pytest.approx(-1.0)
    d, b = sb["2.bias"] - sa["2.bias"], sa["2.bias"]
    assert rel["2.bias"] == pytest.approx(np.linalg.norm(d) / np.linalg.norm(b), rel=1e-12)
    assert row["2.bias"]["cosine"] == pytest.approx(sb["2.bias"] @ b / np.linalg.norm(sb["2.bias"]) / np.linalg.norm(b))
    lay = rep.by_layer()["2"]
    full_a = np.concatenate([sa["2.weight"].ravel(), sa["2.bias"]])
    full_b = np.concatenate([sb["2.weight"].ravel(), sb["2.bias"]])
    assert lay["relative"] == pytest.approx(np.linalg.norm(full_b - full_a) / np.linalg.norm(full_a))


def test_drift_reports_a_replaced_head_and_other_architectures():
    a = mlp(n_out=5)
    b = mlp(n_out=5)
    tl.transfer.replace_head(b, 3)
    rep = weight_drift(a, b)
    assert rep.replaced == ["4.weight", "4.bias"]
    assert rep.by_layer()["4"]["status"] == "replaced"
    assert "replaced (5x16 -> 3x16)" in str(rep)
    c = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16))
    rep = weight_drift(a, {"0.weight": c[0].weight, "0.bias": c[0].bias, "9.weight": np.ones((2, 2), np.float32)})
    assert rep.only_before == ["2.weight", "2.bias", "4.weight", "4.bias"]
    assert rep.only_after == ["9.weight"]
    assert "only before: 2.weight" in str(rep) and "only after:  9.weight" in str(rep)
    rep = weight_drift({"w": np.zeros(3)}, {"w": np.ones(3), "n": np.int64(3)})
    assert rep.rows[0]["relative"] == math.inf
    assert rep.to_dict()["rows"][0]["relative"] is None         # JSON-ready
    with pytest.raises(TypeError, match="weight_drift: before must be a Module"):
        weight_drift(3, a)


# ------------------------------------------------------------------ probes ----

def xor_task():
    """Labels that are a nonlinear function of the input (the XOR of the signs), and a model
    whose first layer computes the features that make them linear."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(2, 4, dtype=np.float64), nn.ReLU(), nn.Linear(4, 2, dtype=np.float64))
    model[0].weight.data[...] = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float64)
    model[0].bias.data[...] = 0
    return model, X, y


def test_probe_layers_finds_the_information():
    """The input probe fails, the probe after the ReLU succeeds."""
    model, X, y = xor_task()
    state = tl._random.generator().bit_generator.state
    res = probe_layers(model, X[:300], y[:300], X[300:], y[300:], epochs=40, lr=0.5, batch_size=300)
    assert tl._random.generator().bit_generator.state == state        # global RNG untouched
    assert res.layers == ["input", "0", "1", "2"]
    assert res.dims == [2, 4, 4, 2]
    acc = dict(zip(res.layers, res.accuracy))
    assert acc["input"] < 0.7 and acc["1"] > 0.9
    again = probe_layers(model, X[:300], y[:300], X[300:], y[300:], epochs=40, lr=0.5, batch_size=300)
    assert again.accuracy == res.accuracy                           # deterministic
    assert "input" in str(res) and res.to_dict()["accuracy"] == res.accuracy


def test_probe_layers_on_every_device(device):
    """The same probe on every device gives the same accuracies (few steps: the emulated GPU is slow)."""
    model, X, y = xor_task()
    kw = dict(layers=["1"], epochs=3, lr=0.5, batch_size=300)
    want = probe_layers(model, X[:300], y[:300], X[300:], y[300:], **kw)
    got = probe_layers(model.to(device), X[:300], y[:300], X[300:], y[300:], **kw)
    assert got.layers == ["input", "1"]
    np.testing.assert_allclose(got.accuracy, want.accuracy, atol=1 / 100)
    np.testing.assert_allclose(got.train_accuracy, want.train_accuracy, atol=1 / 300)


def test_probe_layers_errors():
    m = mlp()
    X = np.zeros((8, 10))
    with pytest.raises(TypeError, match="integer class labels"):
        probe_layers(m, X, np.zeros(8), X, np.zeros(8, int))
    with pytest.raises(ValueError, match=r"y_test must have shape \(8,\)"):
        probe_layers(m, X, np.zeros(8, int), X, np.zeros(7, int))
    with pytest.raises(ValueError, match="num_classes"):
        probe_layers(m, X, np.full(8, 3), X, np.zeros(8, int), num_classes=2)
