"""Tests of tinytl.transfer: each tool, shown by the effect that defines it."""
import importlib.util
import time

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl import transfer as T


def mlp(sizes=(6, 16, 8, 3), seed=0, dtype=np.float32):
    """Linear/ReLU stack: names 0.*, 2.*, 4.* ..."""
    tl.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def weights(model):
    return {n: p.data.copy() for n, p in model.named_parameters()}


def toy_data(n=96, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
    return X, y % classes


def train_step(model, opt, X, y):
    loss = nn.CrossEntropyLoss()(model(X), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


# ------------------------------------------------------ freeze / unfreeze ----

def test_freeze_patterns_return_changed_names_and_drop_grads():
    m = mlp()
    X, y = toy_data()
    nn.CrossEntropyLoss()(m(X), y).backward()
    assert all(p.grad is not None for p in m.parameters())
    assert T.freeze(m, "0.*") == ["0.weight", "0.bias"]
    assert m[0].weight.grad is None and m[0].bias.grad is None
    assert m[2].weight.grad is not None
    assert T.freeze(m, "0.*", "*.bias") == ["2.bias", "4.bias"]     # only what changed
    assert T.freeze(m, "0.*") == []
    assert T.unfreeze(m, "*.bias") == ["0.bias", "2.bias", "4.bias"]
    assert sorted(T.freeze(m)) == sorted(["0.bias", "2.weight", "2.bias", "4.weight", "4.bias"])
    assert not any(p.requires_grad for p in m.parameters())
    assert len(T.unfreeze(m)) == 6


def test_freeze_unknown_pattern_raises_before_changing_anything():
    m = mlp()
    with pytest.raises(ValueError, match=r"'encoder\.\*'"):
        T.freeze(m, "0.*", "encoder.*")
    assert all(p.requires_grad for p in m.parameters())
    with pytest.raises(TypeError, match="model"):
        T.freeze("not a model")
    with pytest.raises(TypeError, match="patterns"):
        T.unfreeze(m, 0)


def test_frozen_params_never_change_under_sgd_with_momentum_and_weight_decay():
    m = mlp()
    X, y = toy_data()
    opt = tl.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        train_step(m, opt, X, y)                     # momentum buffers exist now
    T.freeze(m, "0.*", "2.*")
    before = weights(m)
    for _ in range(3):
        train_step(m, opt, X, y)
        m[0].weight.grad = np.ones_like(m[0].weight.data)    # a stale grad set by hand
        m[2].bias.grad = np.zeros_like(m[2].bias.data)       # a zeroed grad (weight decay would act)
        opt.step()
    after = weights(m)
    for n in ("0.weight", "0.bias", "2.weight", "2.bias"):
        np.testing.assert_array_equal(after[n], before[n])
    assert not np.array_equal(after["4.weight"], before["4.weight"])


def test_unfreeze_restarts_momentum_like_a_fresh_optimizer():
    X, y = toy_data()
    a, b = mlp(), mlp()
    opt_a = tl.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        train_step(a, opt_a, X, y)
    T.freeze(a, "0.*")
    train_step(a, opt_a, X, y)                       # the optimizer drops 0.*'s momentum here
    T.unfreeze(a, "0.*")
    b.load_state_dict(a.state_dict())
    opt_b = tl.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    # b's other layers need a's momentum too: copy it, only layer 0 starts fresh in both
    for pa, pb in zip(a.parameters(), b.parameters()):
        st = opt_a.state.get(id(pa), {})
        if "momentum_buffer" in st:
            opt_b.state[id(pb)] = {"momentum_buffer": st["momentum_buffer"].copy()}
    assert "momentum_buffer" not in opt_a.state.get(id(a[0].weight), {})
    for _ in range(2):
        train_step(a, opt_a, X, y)
        train_step(b, opt_b, X, y)
    for (n, wa), wb in zip(weights(a).items(), weights(b).values()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7, err_msg=n)


def test_backward_skips_the_frozen_prefix(monkeypatch):
    import tinytl.functional as F
    calls = []
    real_make = F._make

    def counting_make(data, parents, backward, op):
        def counted(g):
            calls.append(op)
            return backward(g)
        return real_make(data, parents, counted, op)
    monkeypatch.setattr(F, "_make", counting_make)

    m = mlp()
    T.freeze(m, "0.*", "2.*")
    X, y = toy_data()
    hidden = m[:4](X)                    # the frozen prefix's output records no graph
    assert hidden.requires_grad is False and hidden.is_leaf
    loss = nn.CrossEntropyLoss()(m(X), y)
    loss.backward()
    assert calls.count("Linear") == 1    # only the head's linear ran backward
    assert m[0].weight.grad is None and m[2].weight.grad is None
    assert m[4].weight.grad is not None


def test_summary_lists_every_parameter_and_totals():
    m = mlp()
    T.freeze(m, "0.*")
    s = T.summary(m)
    assert isinstance(s, str)
    assert s.total == 6 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3
    assert s.frozen == 6 * 16 + 16 and s.trainable == s.total - s.frozen
    lines = str(s).splitlines()
    assert any(l.startswith("0.weight") and "(16, 6)" in l and l.rstrip().endswith("no") for l in lines)
    assert any(l.startswith("4.bias") and l.rstrip().endswith("yes") for l in lines)
    assert f"frozen {s.frozen:,}" in lines[-1]
    assert s.rows[0] == ("0.weight", (16, 6), 96, False)


# ------------------------------------------------------------ replace_head ----

def test_replace_head_replaces_the_last_linear_depth_first():
    tl.manual_seed(0)
    inner = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
    m = nn.Sequential(inner, nn.ReLU(), nn.Linear(8, 3, dtype=np.float32))
    old = m[2]
    head = T.replace_head(m, 7)
    assert m[2] is head and head is not old and inner[2].out_features == 8
    assert (head.in_features, head.out_features) == (8, 7)
    assert [n for n, _ in m.named_parameters()][-2:] == ["2.weight", "2.bias"]
    assert m(np.zeros((2, 4), np.float32)).shape == (2, 7)

    m64 = mlp(dtype=np.float64)
    T.freeze(m64)
    head = T.replace_head(m64, 2, bias=False)
    assert head.weight.dtype == np.float64 and head.bias is None and head.weight.requires_grad
    assert "4.bias" not in dict(m64.named_parameters())


def test_replace_head_in_a_custom_module_and_errors():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(self.encoder(x))
    net = Net()
    head = T.replace_head(net, 5)
    assert net.fc is head and net(np.ones((1, 4), np.float32)).shape == (1, 5)
    with pytest.raises(ValueError, match="no Linear"):
        T.replace_head(nn.Sequential(nn.ReLU()), 3)
    with pytest.raises(ValueError, match="out_features"):
        T.replace_head(net, 0)
    with pytest.raises(TypeError, match="model"):
        T.replace_head([nn.Linear(2, 2)], 3)


# -------------------------------------------------------- transfer_weights ----

def test_transfer_weights_reports_a_head_of_another_size_instead_of_raising():
    src, dst = mlp((6, 16, 8, 10), seed=1), mlp((6, 16, 8, 3), seed=2)
    dst_head = dst[4].weight.data.copy()
    opt = tl.optim.SGD(dst.parameters(), lr=0.1)          # built before the transfer
    w0 = dst[0].weight
    rep = T.transfer_weights(src, dst)
    assert rep.copied == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert rep.skipped_shape == [("4.weight", (10, 8), (3, 8)), ("4.bias", (10,), (3,))]
    assert rep.missing == [] and rep.unexpected == [] and not rep.ok
    np.testing.assert_array_equal(dst[0].weight.data, src[0].weight.data)
    np.testing.assert_array_equal(dst[4].weight.data, dst_head)
    assert dst[0].weight is w0 and opt.param_groups[0]["params"][0] is w0   # copied in place
    text = str(rep)
    assert "4 copied, 2 skipped (shape)" in text and "(10, 8)" in text and "4.weight" in text


def test_transfer_weights_rename_prefix_map_and_callable():
    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))
            self.decoder = nn.Sequential(nn.Linear(8, 6))
    ae = AE()
    clf = mlp((6, 16, 8, 3))
    rep = T.transfer_weights(ae, clf, rename={"encoder.": "", "encoder.2.": "2."})
    assert rep.copied == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert rep.missing == ["4.weight", "4.bias"]
    assert rep.unexpected == ["decoder.0.weight", "decoder.0.bias"]
    np.testing.assert_array_equal(clf[2].weight.data, ae.encoder[2].weight.data)

    # the longest matching prefix wins
    sd = {"a.b.w": np.ones((3, 6), np.float32), "a.x": np.zeros(3, np.float32)}
    rep = T.transfer_weights(sd, mlp((6, 3)), rename={"a.": "zz.", "a.b.w": "0.weight"})
    assert rep.copied == ["0.weight"] and rep.unexpected == ["zz.x"]

    # a callable; None drops a name (not reported as unexpected)
    rep = T.transfer_weights(ae, clf, rename=lambda n: n[len("encoder."):] if n.startswith("encoder.") else None)
    assert rep.dropped == ["decoder.0.weight", "decoder.0.bias"] and rep.unexpected == []
    with pytest.raises(ValueError, match="both"):
        T.transfer_weights(ae, clf, rename=lambda n: "0.weight")
    with pytest.raises(TypeError, match="rename"):
        T.transfer_weights(ae, clf, rename=3)


def test_transfer_weights_strict_lists_every_problem_and_copies_nothing():
    src = {"0.weight": np.ones((16, 6), np.float32), "4.weight": np.ones((5, 8), np.float32),
           "9.bias": np.ones(3, np.float32), "2.bias": np.arange(8)}
    dst = mlp()
    before = weights(dst)
    with pytest.raises(ValueError) as e:
        T.transfer_weights(src, dst, strict=True)
    msg = str(e.value)
    for needle in ("'4.weight'", "(5, 8)", "'9.bias'", "'0.bias'", "'2.weight'", "int64", "nothing was copied"):
        assert needle in msg
    for n, w in weights(dst).items():
        np.testing.assert_array_equal(w, before[n])
    rep = T.transfer_weights(src, dst)           # non-strict: copies what fits
    assert rep.copied == ["0.weight"] and rep.skipped_dtype[0][0] == "2.bias"


def test_transfer_weights_raises_when_nothing_would_be_copied():
    dst = mlp()
    before = weights(dst)
    with pytest.raises(ValueError, match="nothing was copied"):
        T.transfer_weights({"encoder.0.weight": np.ones((16, 6), np.float32)}, dst)
    with pytest.raises(ValueError, match="nothing was copied"):
        T.transfer_weights(mlp((6, 5, 2)), dst)          # every shape differs
    for n, w in weights(dst).items():
        np.testing.assert_array_equal(w, before[n])
    with pytest.raises(TypeError, match="src"):
        T.transfer_weights(42, dst)
    with pytest.raises(TypeError, match="dst"):
        T.transfer_weights(dst, {})


def test_transfer_weights_casts_float_dtypes_and_accepts_tensors():
    src = mlp(dtype=np.float64, seed=3)
    dst = mlp(seed=4)
    rep = T.transfer_weights(src, dst, strict=True)
    assert rep.ok and dst[0].weight.dtype == np.float32
    np.testing.assert_allclose(dst[0].weight.data, src[0].weight.data, rtol=1e-6)
    rep = T.transfer_weights({"0.bias": tl.tensor(np.ones(16))}, dst)
    assert rep.copied == ["0.bias"] and dst[0].bias.data.dtype == np.float32


def test_transfer_weights_skips_values_that_overflow_a_float16_destination():
    """Casting to a narrower float must not turn weights into inf: such a value is skipped with
    a reason (strict refuses it); values that fit are cast, an inf in the source stays inf."""
    dst = nn.Linear(3, 2)
    dst.weight = nn.Parameter(np.zeros((2, 3), np.float16), requires_grad=False)
    dst.bias = nn.Parameter(np.zeros(2, np.float16), requires_grad=False)
    src = {"weight": np.full((2, 3), 7e4, np.float32), "bias": np.array([1.5, np.inf])}
    rep = T.transfer_weights(src, dst)
    assert rep.copied == ["bias"] and rep.skipped_dtype[0][0] == "weight"
    assert "7e+04 overflow float16" in rep.skipped_dtype[0][1] and "skipped dtype" in str(rep)
    assert not dst.weight.data.any() and dst.weight.dtype == np.float16
    np.testing.assert_array_equal(dst.bias.data, np.array([1.5, np.inf], np.float16))
    with pytest.raises(ValueError, match="overflow float16"):
        T.transfer_weights(src, dst, strict=True)
    src["weight"][:] = 6e4                                   # fits (float16 max: 65504)
    assert T.transfer_weights(src, dst, strict=True).ok
    np.testing.assert_array_equal(dst.weight.data, np.full((2, 3), 6e4, np.float16))


@pytest.mark.skipif(importlib.util.find_spec("tinytl.io") is None, reason="tinytl.io not written yet")
@pytest.mark.parametrize("ext", ["safetensors", "npz"])
def test_transfer_weights_from_a_checkpoint_path(tmp_path, ext):
    if ext == "safetensors":
        pytest.importorskip("safetensors")
    src, dst = mlp((6, 16, 8, 10), seed=1), mlp(seed=2)
    path = tmp_path / f"ckpt.{ext}"
    tl.save(src, str(path))
    rep = T.transfer_weights(str(path), dst, rename={"": "", "4.": "old_head."})
    assert rep.copied == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert sorted(rep.unexpected) == ["old_head.bias", "old_head.weight"] and rep.missing == ["4.weight", "4.bias"]
    np.testing.assert_array_equal(dst[2].weight.data, src[2].weight.data)
    rep = T.transfer_weights(path, mlp(seed=5))        # a PathLike works too
    assert [n for n, *_ in rep.skipped_shape] == ["4.weight", "4.bias"]


# ------------------------------------------------ discriminative lr, unfreezing ----

def test_discriminative_lr_decays_toward_the_input():
    m = mlp((6, 16, 8, 4, 3))
    groups = T.discriminative_lr(m, 0.01, decay=2.0)
    assert [g["name"] for g in groups] == ["0", "2", "4", "6"]
    assert [g["lr"] for g in groups] == pytest.approx([0.01 / 8, 0.01 / 4, 0.01 / 2, 0.01])
    assert groups[0]["params"] == [m[0].weight, m[0].bias]
    T.freeze(m, "0.*")                      # frozen params stay in their group; SGD skips them
    opt = tl.optim.SGD(T.discriminative_lr(m, 0.1), lr=0.1, momentum=0.9)
    assert len(opt.param_groups) == 4 and opt.param_groups[0]["lr"] == pytest.approx(0.1 / 2.6 ** 3)

    custom = T.discriminative_lr(m, 1.0, decay=10, groups=[["0.*", "2.*"], m[4], "6.*"])
    assert [g["lr"] for g in custom] == pytest.approx([0.01, 0.1, 1.0])
    assert len(custom[0]["params"]) == 4
    with pytest.raises(ValueError, match="no group"):
        T.discriminative_lr(m, 1.0, groups=["0.*", "6.*"])
    with pytest.raises(ValueError, match="in groups"):
        T.discriminative_lr(m, 1.0, groups=["*", "6.*"])
    with pytest.raises(ValueError, match="base_lr"):
        T.discriminative_lr(m, -1.0)
    with pytest.raises(ValueError, match="decay"):
        T.discriminative_lr(m, 1.0, decay=0)


def test_discriminative_lr_steps_match_each_groups_lr():
    m = mlp((6, 8, 3))
    X, y = toy_data()
    before = weights(m)
    nn.CrossEntropyLoss()(m(X), y).backward()
    grads = {n: p.grad.copy() for n, p in m.named_parameters()}
    tl.optim.SGD(T.discriminative_lr(m, 0.5, decay=5.0), lr=0.5).step()
    for n, lr in (("0.weight", 0.1), ("2.weight", 0.5)):
        np.testing.assert_allclose(m.state_dict()[n], before[n] - lr * grads[n], rtol=1e-6, atol=1e-7)


def test_gradual_unfreezing_thaws_top_down():
    m = mlp((6, 16, 8, 4, 3))
    sched = T.GradualUnfreezing(m, every=2)
    trains = lambda: [n for n, p in m.named_parameters() if p.requires_grad]
    assert trains() == ["6.weight", "6.bias"] and sched.unfrozen_groups == 1
    assert sched.on_epoch_end() == []                        # epoch 1 starts: still 1 group
    assert sched.on_epoch_end() == ["4.weight", "4.bias"]    # epoch 2 starts
    assert sched.step(3) == []
    assert sched.step(4) == ["2.weight", "2.bias"]
    assert sched.step(100) == ["0.weight", "0.bias"] and sched.unfrozen_groups == 4
    assert sched.step(101) == [] and len(trains()) == 8
    with pytest.raises(ValueError, match="every"):
        T.GradualUnfreezing(m, every=0)

    # with an optimizer over everything, a frozen group does not move, then it trains
    m = mlp()
    sched = T.GradualUnfreezing(m)
    opt = tl.optim.SGD(T.discriminative_lr(m, 0.1), lr=0.1, momentum=0.9)
    X, y = toy_data()
    w = m[0].weight.data.copy()
    train_step(m, opt, X, y)
    np.testing.assert_array_equal(m[0].weight.data, w)
    sched.on_epoch_end(), sched.on_epoch_end()
    train_step(m, opt, X, y)
    assert not np.array_equal(m[0].weight.data, w)


# ------------------------------------------------------------------- L2-SP ----

def test_l2sp_pulls_toward_the_pretrained_weights_not_zero():
    m = mlp()
    w0 = weights(m)
    groups = T.l2sp_groups(m, m[4], alpha=1.0, weight_decay=1.0)
    assert [g["name"] for g in groups] == ["backbone", "head"]
    assert len(groups[0]["params"]) == 4 and groups[0]["weight_decay"] == 0.0
    opt = tl.optim.SGD(groups, lr=0.1, momentum=0.5, weight_decay=1.0)  # anchors: w0, captured now
    rng = np.random.default_rng(0)
    for p in m.parameters():                         # drift away (as fine-tuning would)
        p.data += rng.normal(size=p.shape).astype(p.dtype)
    for _ in range(300):                             # zero data gradient: only the penalties act
        for p in m.parameters():
            p.grad = np.zeros_like(p.data)
        opt.step()
    for n in ("0.weight", "0.bias", "2.weight", "2.bias"):
        np.testing.assert_allclose(m.state_dict()[n], w0[n], atol=1e-5)
        assert np.abs(w0[n]).max() > 0.1             # so "converged to w0" is not "converged to 0"
    np.testing.assert_allclose(m[4].weight.data, 0, atol=1e-5)    # the head: plain decay, to zero
    with pytest.raises(ValueError, match="alpha"):
        T.l2sp_groups(m, m[4], alpha=0)
    with pytest.raises(ValueError, match="outside head"):
        T.l2sp_groups(m[4], m[4], alpha=1)


# ------------------------------------------------ features, probes, LP-FT ----

def test_extract_features_matches_the_forward_pass_in_batches():
    m = mlp()
    X, _ = toy_data(n=50)
    backbone = m[:4]
    m.train()
    feats = T.extract_features(backbone, X, batch_size=7)
    assert isinstance(feats, np.ndarray) and feats.shape == (50, 8)
    with tl.no_grad():
        np.testing.assert_allclose(feats, backbone(X).numpy(), rtol=1e-6, atol=1e-6)
    assert m.training and backbone[0].training                # modes restored
    assert T.extract_features(backbone, tl.tensor(X), batch_size=1000).shape == (50, 8)
    with pytest.raises(ValueError, match="batch_size"):
        T.extract_features(backbone, X, batch_size=0)
    with pytest.raises(ValueError, match="X"):
        T.extract_features(backbone, np.zeros((0, 6), np.float32))
    with pytest.raises(TypeError, match="backbone"):
        T.extract_features(lambda x: x, X)


def test_cached_features_train_the_same_head_as_the_frozen_backbone():
    X, y = toy_data(n=256)
    base = mlp((6, 64, 64, 3), seed=7)
    backbone = base[:4]
    T.freeze(backbone)
    epochs, bs, lr = 3, 32, 0.1

    # A: through the frozen backbone, every epoch
    tl.manual_seed(11)
    head_a = nn.Linear(64, 3)
    model = nn.Sequential(*backbone, head_a)
    opt = tl.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, len(X), bs):
            train_step(model, opt, X[i:i + bs], y[i:i + bs])
    t_full = time.perf_counter() - t0

    # B: features cached once, the head trained on them (same init, same batches)
    tl.manual_seed(11)
    head_b = nn.Linear(64, 3)
    bw = weights(backbone)
    t0 = time.perf_counter()
    T.linear_probe(backbone, head_b, X, y, epochs=epochs, lr=lr, batch_size=bs, shuffle=False)
    t_cached = time.perf_counter() - t0
    print(f"\nlinear probe, {epochs} epochs: through the backbone {t_full * 1e3:.1f} ms, "
          f"cached features {t_cached * 1e3:.1f} ms")
    np.testing.assert_allclose(head_b.weight.data, head_a.weight.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head_b.bias.data, head_a.bias.data, rtol=1e-5, atol=1e-6)
    for n, w in weights(backbone).items():
        np.testing.assert_array_equal(w, bw[n])


def test_linear_probe_learns_and_leaves_the_backbone_alone():
    X, y = toy_data(n=200)
    backbone = mlp((6, 32, 32), seed=1)
    bw = weights(backbone)
    tl.manual_seed(0)
    head = nn.Linear(32, 3)
    with tl.no_grad():
        acc0 = (head(backbone(X)).numpy().argmax(1) == y).mean()
    T.linear_probe(backbone, head, X, y, epochs=30, lr=0.05, batch_size=32, seed=0)
    with tl.no_grad():
        acc = (head(backbone(X)).numpy().argmax(1) == y).mean()
    assert acc > max(acc0, 0.75)
    for n, w in weights(backbone).items():
        np.testing.assert_array_equal(w, bw[n])
    with pytest.raises(ValueError, match="rows"):
        T.linear_probe(backbone, head, X, y[:10], epochs=1, lr=0.1)


def test_lp_ft_probes_then_fine_tunes_everything():
    X, y = toy_data(n=200)
    backbone = mlp((6, 32, 32), seed=1)
    T.freeze(backbone)
    bw = weights(backbone)
    tl.manual_seed(0)
    head = nn.Linear(32, 3)
    probe_only = nn.Linear(32, 3)
    probe_only.load_state_dict(head.state_dict())
    T.linear_probe(backbone, probe_only, X, y, epochs=10, lr=0.05, batch_size=32, seed=0)
    model = T.lp_ft(backbone, head, X, y, probe_epochs=10, finetune_epochs=10, probe_lr=0.05,
                    finetune_lr=0.01, batch_size=32, seed=0)
    assert isinstance(model, nn.Sequential) and model[-1] is head and model[0] is backbone[0]
    assert all(p.requires_grad for p in model.parameters())
    assert not np.array_equal(backbone[0].weight.data, bw["0.weight"])   # fine-tuned
    loss = nn.CrossEntropyLoss()
    with tl.no_grad():
        l_ft = loss(model(X), y).item()
        l_probe = loss(probe_only(backbone(X)), y).item()
    assert l_ft < l_probe
    with pytest.raises(ValueError, match="finetune_lr"):
        T.lp_ft(backbone, head, X, y, probe_epochs=1, finetune_epochs=1, probe_lr=0.1, finetune_lr=-1)


# ------------------------------------------------------------------- docs ----

def test_docs_snippets_run(capsys):
    """Every ```python block of docs/transfer.md runs, in order, in one namespace."""
    import pathlib
    import re
    doc = pathlib.Path(__file__).resolve().parent.parent / "docs" / "transfer.md"
    if not doc.exists():
        pytest.skip("docs/transfer.md not written")
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) >= 8
    ns = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{doc.name}[block {i}]", "exec"), ns)


def test_transfer_weights_carries_batchnorm_buffers():
    """Running statistics are part of what a network learned: they transfer with the weights."""
    src = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    src.train()
    x = tl.tensor(np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32))
    for _ in range(3):
        src(x)
    dst = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    report = tl.transfer.transfer_weights(src, dst)
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(report.copied)
    assert [s[0] for s in report.skipped_shape] == ["3.weight", "3.bias"]
    np.testing.assert_array_equal(dst[1].running_mean.numpy(), src[1].running_mean.numpy())
    assert int(dst[1].num_batches_tracked.item()) == 3 and dst[1].num_batches_tracked.dtype == np.int64
    bad = {"1.num_batches_tracked": np.array(2.5, np.float32), "0.weight": src[0].weight.numpy()}
    report = tl.transfer.transfer_weights(bad, dst)
    assert report.skipped_dtype == [("1.num_batches_tracked", "source dtype float32 is not an integer type")]
