"""Tests of tinytl.transfer.peft: LoRA (add_lora, LoRALinear, merge_lora, the adapter state dicts) and BitFit."""
import math

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl import transfer as T
from tinytl.testing import gradcheck


def mlp(sizes=(6, 16, 8, 3), seed=0, dtype=np.float32, device="cpu"):
    """Linear/ReLU stack: names 0.*, 2.*, 4.*."""
    tl.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(device)


def nested(seed=0, dtype=np.float32, device="cpu"):
    """Sequential(Sequential(Linear, ReLU), Sequential(Sequential(Linear, ReLU), Linear)): 0.0, 1.0.0, 1.1."""
    tl.manual_seed(seed)
    return nn.Sequential(nn.Sequential(nn.Linear(5, 12, dtype=dtype), nn.ReLU()),
                         nn.Sequential(nn.Sequential(nn.Linear(12, 7, dtype=dtype), nn.ReLU()),
                                       nn.Linear(7, 3, dtype=dtype))).to(device)


def data(n=16, d=6, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


def randomize_B(model, seed=3, scale=0.5):
    """Give every adapter a non-zero B (a trained adapter), so the update is visible."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, T.LoRALinear):
            B = m.lora_B.weight
            B.data[...] = tl.backend.to_device(rng.normal(0, scale, B.shape).astype(B.dtype), B.device)


def out(model, x):
    with tl.no_grad():
        return tl.backend.to_numpy(model(tl.tensor(x, device=next(model.parameters()).device)).data)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------ add_lora ----

def test_add_lora_wraps_freezes_and_names_like_peft():
    m = mlp()
    before = {n: p.data.copy() for n, p in m.named_parameters()}
    assert T.add_lora(m, rank=2, alpha=4) == ["0", "2", "4"]
    assert all(isinstance(m[i], T.LoRALinear) for i in (0, 2, 4))
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.base_layer.weight", "0.base_layer.bias", "0.lora_A.weight", "0.lora_B.weight",
                     "2.base_layer.weight", "2.base_layer.bias", "2.lora_A.weight", "2.lora_B.weight",
                     "4.base_layer.weight", "4.base_layer.bias", "4.lora_A.weight", "4.lora_B.weight"]
    sd = m.state_dict()
    assert sd["0.lora_A.weight"].shape == (2, 6) and sd["0.lora_B.weight"].shape == (16, 2)
    for n, p in m.named_parameters():
        assert p.requires_grad == ("lora_" in n), n
    for n, v in before.items():                  # the base weights are untouched
        i, leaf = n.split(".")
        np.testing.assert_array_equal(sd[f"{i}.base_layer.{leaf}"], v)
    assert m[0].scaling == 2.0 and m[0].rank == 2


def test_lora_init_kaiming_uniform_a_sqrt5_and_B_zero_reproducible():
    m = mlp((40, 64, 5))
    tl.manual_seed(7)
    T.add_lora(m, rank=8, targets=["0"])
    A = m[0].lora_A.weight.data
    assert np.abs(A).max() <= 1 / math.sqrt(40) and np.abs(A).max() > 0.9 / math.sqrt(40)
    assert abs(A.std() - (1 / math.sqrt(40)) / math.sqrt(3)) < 0.02      # uniform(-b, b): std b / sqrt(3)
    assert not m[0].lora_B.weight.data.any()
    m2 = mlp((40, 64, 5))
    tl.manual_seed(7)
    T.add_lora(m2, rank=8, targets=["0"])
    np.testing.assert_array_equal(A, m2[0].lora_A.weight.data)
    x = data(8, 40)
    np.testing.assert_array_equal(out(m, x), out(mlp((40, 64, 5)), x))   # B = 0: the pretrained model


def test_add_lora_targets_globs_and_nested_sequentials():
    m = nested()
    assert T.add_lora(m, rank=2, targets=("1.*",)) == ["1.0.0", "1.1"]
    assert type(m[0][0]) is nn.Linear and isinstance(m[1][1], T.LoRALinear)
    assert isinstance(m[1][0][0], T.LoRALinear)
    assert T.add_lora(m, rank=3, targets="0.0") == ["0.0"]
    assert "1.0.0.lora_B.weight" in m.state_dict()


def test_lora_output_is_base_plus_scaled_update_and_fusion_is_not_used(device):
    ref = mlp(device=device)
    m = mlp(device=device)
    T.add_lora(m, rank=3, alpha=6, targets=["0", "4"])
    randomize_B(m)
    x = data()
    xb = tl.tensor(x, device=device)
    # by hand, in NumPy, from the module's own arrays
    h = np.maximum(_lora_np(m[0], x), 0)
    h = np.maximum(h @ tl.backend.to_numpy(m[2].weight.data).T + tl.backend.to_numpy(m[2].bias.data), 0)
    want = _lora_np(m[4], h)
    got = out(m, x)
    assert rel(got, want) < 1e-5
    # the same graph without Sequential (no Linear+ReLU fusion anywhere): the same numbers
    with tl.no_grad():
        manual = m[4](nn.ReLU()(m[2](nn.ReLU()(m[0](xb)))))
    np.testing.assert_allclose(tl.backend.to_numpy(manual.data), got, rtol=1e-6, atol=1e-7)
    assert rel(out(ref, x), got) > 1e-3            # the update does change the output


def _lora_np(layer, x):
    f = tl.backend.to_numpy
    W, b = f(layer.base_layer.weight.data), f(layer.base_layer.bias.data)
    A, B = f(layer.lora_A.weight.data), f(layer.lora_B.weight.data)
    return x @ W.T + b + layer.scaling * (x @ A.T) @ B.T


def test_lora_gradients_by_finite_differences(device):
    tl.manual_seed(0)
    base = nn.Linear(5, 4, dtype=np.float64).to(device)
    layer = T.LoRALinear(base, rank=2, alpha=3)
    randomize_B(nn.Sequential(layer))
    x = tl.tensor(data(6, 5, dtype=np.float64), requires_grad=True, device=device)
    A, B = layer.lora_A.weight, layer.lora_B.weight
    w = tl.tensor(np.random.default_rng(2).normal(size=(6, 4)), device=device)   # a weighted sum: all terms matter
    assert gradcheck(lambda x, A, B: layer(x) * w, [x, A, B])
    # the frozen base gets no gradient; unfreezing it gives the right one too
    assert base.weight.grad is None and base.bias.grad is None
    base.weight.requires_grad = True
    base.bias.requires_grad = True
    assert gradcheck(lambda x, W, b: layer(x) * w, [x, base.weight, base.bias])


def test_lora_dropout_inverted_training_only_and_seeded():
    tl.manual_seed(0)
    p = 0.25
    layer = T.LoRALinear(nn.Linear(200, 4, dtype=np.float64), rank=4, alpha=4, dropout=p)
    layer.lora_A.weight.data[...] = 1.0             # update_j = sum of the kept inputs / (1 - p)
    layer.lora_B.weight.data[...] = np.eye(4)
    x = np.ones((500, 200))
    base = out(layer.base_layer, x)
    layer.eval()
    np.testing.assert_allclose(out(layer, x) - base, 200.0)    # eval: no dropout
    layer.train()
    tl.manual_seed(1)
    a = out(layer, x) - base
    tl.manual_seed(1)
    np.testing.assert_allclose(out(layer, x) - base, a)         # the global generator decides the mask
    kept = a[:, 0] * (1 - p)
    np.testing.assert_allclose(kept, np.round(kept), atol=1e-9)  # whole inputs dropped, the rest scaled
    assert abs(kept.mean() / 200 - (1 - p)) < 0.01
    assert abs(a.mean() / 200 - 1) < 0.01                        # 1/(1-p): the expectation is kept
    assert kept.std() > 3                                        # a new mask per row
    # the mask is the same in forward and backward: the gradient matches finite differences
    xt = tl.tensor(np.random.default_rng(0).normal(size=(3, 200)), requires_grad=True)
    A = layer.lora_A.weight
    tl.manual_seed(5)
    y = layer(xt)
    y.sum().backward()
    g = xt.grad.copy()
    x2 = tl.tensor(xt.data.copy(), requires_grad=True)
    tl.manual_seed(5)
    layer(x2).sum().backward()
    np.testing.assert_array_equal(g, x2.grad)
    assert A.grad is not None


def test_torch_parity_of_lora_forward_and_backward():
    torch = pytest.importorskip("torch")
    tl.manual_seed(0)
    base = nn.Linear(7, 5, dtype=np.float64)
    layer = T.LoRALinear(base, rank=3, alpha=5)
    randomize_B(nn.Sequential(layer))
    f = tl.backend.to_numpy
    W, b = (torch.tensor(f(p.data)) for p in (base.weight, base.bias))
    A = torch.tensor(f(layer.lora_A.weight.data), requires_grad=True)
    B = torch.tensor(f(layer.lora_B.weight.data), requires_grad=True)
    xn = data(4, 7, dtype=np.float64)
    xt = torch.tensor(xn, requires_grad=True)
    gy = np.random.default_rng(9).normal(size=(4, 5))
    yt = torch.nn.functional.linear(xt, W, b) + (5 / 3) * torch.nn.functional.linear(
        torch.nn.functional.linear(xt, A), B)
    yt.backward(torch.tensor(gy))
    x = tl.tensor(xn, requires_grad=True)
    y = layer(x)
    y.backward(gy)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.lora_A.weight.grad, A.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.lora_B.weight.grad, B.grad.numpy(), rtol=1e-10)


def test_lora_trains_with_sgd_and_only_adapters_move(device):
    m = mlp(device=device)
    T.add_lora(m, rank=2, targets=["0", "2"])
    frozen = {n: tl.backend.to_numpy(p.data).copy() for n, p in m.named_parameters() if not p.requires_grad}
    x, y = tl.tensor(data(), device=device), tl.tensor(np.arange(16) % 3, device=device)
    opt = tl.optim.SGD(m.parameters(), lr=0.05, momentum=0.5)
    losses = []
    for _ in range(40):
        loss = nn.CrossEntropyLoss()(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7
    for n, p in m.named_parameters():
        if n in frozen:
            np.testing.assert_array_equal(tl.backend.to_numpy(p.data), frozen[n])
    assert m[4].weight.requires_grad      # not targeted: the head keeps training


# ------------------------------------------------------------ bad input ----

@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(rank=0), ValueError, "rank"),
    (dict(rank=-2), ValueError, "rank"),
    (dict(rank=2.5), TypeError, "rank"),
    (dict(rank=4), ValueError, "rank 4 is above min(in_features, out_features) = 3"),
    (dict(alpha=0), ValueError, "alpha"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(alpha=float("nan")), ValueError, "alpha"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(targets=("9",)), ValueError, "matches no Linear"),
    (dict(targets=("1",)), TypeError, "'1', a ReLU, not a Linear"),
    (dict(targets=("0", "nope*")), ValueError, "'nope*' matches no Linear"),
    (dict(targets=()), ValueError, "targets is empty"),
    (dict(targets=(0,)), TypeError, "targets must be strings"),
])
def test_add_lora_bad_input_raises_before_any_change(kwargs, exc, words):
    m = mlp()
    before = m.state_dict()
    with pytest.raises(exc, match="add_lora") as e:
        T.add_lora(m, **{"rank": 2, **kwargs})
    assert words in str(e.value)
    assert list(m.state_dict()) == list(before)          # nothing was wrapped
    assert all(p.requires_grad for p in m.parameters())


def test_add_lora_twice_raises_and_changes_nothing():
    m = mlp()
    T.add_lora(m, rank=2, targets=["0"])
    sd = list(m.state_dict())
    for targets in (["0"], ["*"], ["0.base_layer"], ["2", "0"]):
        with pytest.raises(ValueError, match=r"add_lora: layer\(s\) \['0'\] already have a LoRA adapter"):
            T.add_lora(m, rank=2, targets=targets)
        assert list(m.state_dict()) == sd
    assert T.add_lora(m, rank=2, targets=["2"]) == ["2"]        # another layer is fine


def test_add_lora_rejects_non_modules_and_a_bare_linear():
    with pytest.raises(TypeError, match="add_lora: model must be a tinytl Module"):
        T.add_lora(np.zeros(3))
    with pytest.raises(TypeError, match="model is itself a Linear"):
        T.add_lora(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="LoRALinear: a LoRA adapter wraps a tinytl nn.Linear, got ReLU"):
        T.LoRALinear(nn.ReLU())


# ------------------------------------------------------------ merge_lora ----

def test_merge_matches_unmerged_and_restores_plain_linears(device):
    m = nested(device=device)
    m[1][1].weight.requires_grad = False        # a flag that merge must restore
    T.add_lora(m, rank=2, alpha=5, targets=["*"])
    randomize_B(m, scale=1.0)
    x = data(32, 5)
    want = out(m, x)
    assert T.merge_lora(m) == ["0.0", "1.0.0", "1.1"]
    assert [type(mod) for mod in (m[0][0], m[1][0][0], m[1][1])] == [nn.Linear] * 3
    assert list(m.state_dict()) == ["0.0.weight", "0.0.bias", "1.0.0.weight", "1.0.0.bias", "1.1.weight",
                                    "1.1.bias"]
    got = out(m, x)
    assert rel(got, want) < 1e-6                  # float32, relative to the output's scale
    assert [p.requires_grad for p in m.parameters()] == [True, True, True, True, False, True]
    assert m[1][0][0].weight.data.flags.f_contiguous      # Linear's fast weight layout kept
    with pytest.raises(ValueError, match="merge_lora: model .* holds no LoRA adapter"):
        T.merge_lora(m)


def test_merge_refuses_non_finite_and_changes_nothing():
    m = mlp()
    T.add_lora(m, rank=2, targets=["0", "2"])
    randomize_B(m)
    m[2].lora_B.weight.data[0, 0] = np.inf
    sd = m.state_dict()
    x = data()
    with np.errstate(all="ignore"):
        before = out(m, x)
    with pytest.raises(ValueError, match=r"merge_lora: the merged weight of layer\(s\) \['2'\] would hold NaN"):
        T.merge_lora(m)
    assert isinstance(m[0], T.LoRALinear) and isinstance(m[2], T.LoRALinear)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out(m, x), before)
    m2 = mlp()
    T.add_lora(m2, rank=2, targets=["0"])
    m2[0].lora_B.weight.data[...] = 3e38          # finite, but the merged float32 weight overflows
    m2[0].lora_A.weight.data[...] = 1.0
    with pytest.raises(ValueError, match="would hold NaN or Inf"):
        T.merge_lora(m2)


def test_adapter_round_trip_save_merge_reload(tmp_path):
    """Train an adapter, save it (adapter tensors + head only), merge; a fresh copy of the
    pretrained model with add_lora + the saved adapter computes the same as both."""
    pre = mlp().state_dict()
    m = mlp()
    T.replace_head(m, 4)
    T.freeze(m, "0.*", "2.*")
    T.add_lora(m, rank=2, targets=["0", "2"])
    x, y = data(), np.arange(16) % 4
    opt = tl.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(5):
        loss = nn.CrossEntropyLoss()(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sd = T.lora_state_dict(m)
    assert list(sd) == ["0.lora_A.weight", "0.lora_B.weight", "2.lora_A.weight", "2.lora_B.weight",
                        "4.weight", "4.bias"]         # the new head trains, so it is part of the adapter
    assert list(T.lora_state_dict(m, head=False)) == list(sd)[:4]
    assert list(T.lora_state_dict(m, head="4")) == list(sd)
    assert list(T.lora_state_dict(m, head=m[4], prefix=T.peft.PEFT_PREFIX))[0] == \
        "base_model.model.0.lora_A.weight"
    tl.save(sd, tmp_path / "adapter.safetensors")
    want = out(m, x)
    T.merge_lora(m)
    assert rel(out(m, x), want) < 1e-6
    fresh = mlp((6, 16, 8, 4), seed=5)               # another init: every weight must come from somewhere
    T.transfer_weights(pre, fresh)                    # the pretrained backbone (the head does not fit)
    T.add_lora(fresh, rank=2, targets=["0", "2"])
    assert T.load_lora_state_dict(fresh, tmp_path / "adapter.safetensors") == list(sd)
    np.testing.assert_allclose(out(fresh, x), want, rtol=1e-6, atol=1e-6)


def test_loading_an_adapter_into_a_model_without_adapters_says_which_keys_and_why():
    m = mlp()
    T.add_lora(m, rank=2, targets=["0"])
    sd = T.lora_state_dict(m, head=False)
    plain = mlp()
    before = plain.state_dict()
    with pytest.raises(ValueError) as e:
        T.load_lora_state_dict(plain, sd)
    msg = str(e.value)
    assert "load_lora_state_dict: 2 key(s) cannot be loaded, nothing was copied" in msg
    assert "'0.lora_A.weight': layer '0' is a plain Linear without a LoRA adapter" in msg
    assert "'0.lora_B.weight'" in msg and "add_lora" in msg
    for k, v in plain.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match="'9.lora_A.weight': the model has no module '9'"):
        T.load_lora_state_dict(m, {"9.lora_A.weight": np.zeros((2, 6), np.float32)})
    with pytest.raises(ValueError, match="'1.lora_A.weight': module '1' is a ReLU"):
        T.load_lora_state_dict(m, {"1.lora_A.weight": np.zeros((2, 6), np.float32)})
    with pytest.raises(ValueError, match="size mismatch for '0.lora_A.weight'"):   # another rank
        T.load_lora_state_dict(m, {"0.lora_A.weight": np.zeros((3, 6), np.float32)})
    with pytest.raises(ValueError, match="lora_state_dict: model .* holds no LoRA adapter"):
        T.lora_state_dict(plain)
    with pytest.raises(ValueError, match="head 'x' is not a module name"):
        T.lora_state_dict(m, head="x")


def test_peft_reads_tinytl_adapter_and_tinytl_reads_peft_adapter(tmp_path):
    """Interop with HF PEFT on the same MLP, both ways, through PEFT's adapter folder (skipped without peft)."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from safetensors.torch import load_file

    def torch_mlp(sd):
        t = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
                                torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
        t.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in sd.items()})
        return t

    pre = mlp(dtype=np.float64).state_dict()
    x = data(dtype=np.float64)

    # 1. tinytl -> PEFT: save_lora writes the folder, PeftModel.from_pretrained reads it
    m = mlp(dtype=np.float64)
    T.add_lora(m, rank=2, alpha=4, targets=["0", "2"])
    randomize_B(m)
    m[4].weight.data[...] += 0.3                      # the head trained too
    cfg = T.save_lora(m, tmp_path / "from_tinytl")
    assert cfg["target_modules"] == ["0", "2"] and cfg["modules_to_save"] == ["4"] and cfg["r"] == 2
    pm = peft.PeftModel.from_pretrained(torch_mlp(pre), str(tmp_path / "from_tinytl"))
    with torch.no_grad():
        theirs = pm(torch.tensor(x)).numpy()
    np.testing.assert_allclose(theirs, out(m, x), rtol=1e-10, atol=1e-12)

    # 2. PEFT -> tinytl: random adapter values set in PEFT, save_pretrained, load_lora on a plain model
    torch.manual_seed(0)
    pm2 = peft.get_peft_model(torch_mlp(pre), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"],
                                                              modules_to_save=["4"]))
    with torch.no_grad():
        for n, p in pm2.named_parameters():
            if "lora_B" in n or "modules_to_save" in n:
                p.add_(torch.randn_like(p) * 0.3)
        theirs = pm2(torch.tensor(x)).numpy()
    d2 = tmp_path / "from_peft"
    pm2.save_pretrained(str(d2))
    assert set(load_file(str(d2 / "adapter_model.safetensors"))) == {
        "base_model.model.0.lora_A.weight", "base_model.model.0.lora_B.weight", "base_model.model.2.lora_A.weight",
        "base_model.model.2.lora_B.weight", "base_model.model.4.weight", "base_model.model.4.bias"}
    m2 = mlp(dtype=np.float64)
    m2.load_state_dict(pre)
    assert T.load_lora(m2, d2) == ["0.lora_A.weight", "0.lora_B.weight", "2.lora_A.weight", "2.lora_B.weight",
                                   "4.weight", "4.bias"]
    assert isinstance(m2[0], T.LoRALinear) and m2[0].rank == 2 and m2[0].scaling == 2.0
    np.testing.assert_allclose(out(m2, x), theirs, rtol=1e-10, atol=1e-12)


def test_save_lora_and_load_lora_round_trip_without_peft(tmp_path):
    """The folder layout alone: what PEFT's source writes (src/peft/utils/save_and_load.py: keys
    prefixed with base_model.model., the adapter name dropped, a modules_to_save head as <path>.weight)."""
    import json
    m = nested()
    T.add_lora(m, rank=2, alpha=3, targets=["1.*"])
    randomize_B(m)
    cfg = T.save_lora(m, tmp_path / "a", head=False)
    on_disk = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert on_disk == cfg and on_disk["peft_type"] == "LORA" and on_disk["lora_alpha"] == 3.0
    assert on_disk["target_modules"] == ["1.0.0", "1.1"] and on_disk["modules_to_save"] is None
    assert sorted(tl.load(tmp_path / "a" / "adapter_model.safetensors")) == [
        "base_model.model.1.0.0.lora_A.weight", "base_model.model.1.0.0.lora_B.weight",
        "base_model.model.1.1.lora_A.weight", "base_model.model.1.1.lora_B.weight"]
    fresh = nested()
    T.load_lora(fresh, tmp_path / "a")
    x = data(8, 5)
    np.testing.assert_array_equal(out(fresh, x), out(m, x))
    T.add_lora(m2 := nested(), rank=3, alpha=3, targets=["1.1"])
    with pytest.raises(ValueError, match=r"load_lora: the model's adapters \['1.1'\] differ"):
        T.load_lora(m2, tmp_path / "a")
    T.add_lora(m, rank=3, targets=["0.0"])
    with pytest.raises(ValueError, match="save_lora: the adapters differ in"):
        T.save_lora(m, tmp_path / "b")
    with pytest.raises(FileNotFoundError):
        T.load_lora(nested(), tmp_path / "nothing")


# ---------------------------------------------------------------- BitFit ----

def test_bitfit_trains_only_biases_and_head(device):
    m = mlp(device=device)
    x = tl.tensor(data(), device=device)
    y = tl.tensor(np.arange(16) % 3, device=device)
    nn.CrossEntropyLoss()(m(x), y).backward()       # stale gradients must go
    assert T.bitfit(m, head=m[4]) == ["0.bias", "2.bias", "4.weight", "4.bias"]
    assert m[0].weight.grad is None and not m[0].weight.requires_grad
    assert T.bitfit(m) == ["0.bias", "2.bias", "4.bias"]
    assert not m[4].weight.requires_grad
    assert T.bitfit(m, head="4") == ["0.bias", "2.bias", "4.weight", "4.bias"]
    w0 = tl.backend.to_numpy(m[0].weight.data).copy()
    b0 = tl.backend.to_numpy(m[0].bias.data).copy()
    opt = tl.optim.SGD(m.parameters(), lr=0.1)
    loss = nn.CrossEntropyLoss()(m(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    np.testing.assert_array_equal(tl.backend.to_numpy(m[0].weight.data), w0)
    assert not np.array_equal(tl.backend.to_numpy(m[0].bias.data), b0)


def test_bitfit_bad_input():
    m = mlp()
    with pytest.raises(TypeError, match="bitfit: model must be a tinytl Module"):
        T.bitfit("model")
    with pytest.raises(ValueError, match="bitfit: head is not a module of model"):
        T.bitfit(m, head=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="bitfit: head '7' is not a module name"):
        T.bitfit(m, head="7")
    with pytest.raises(ValueError, match="bitfit: head '1' has no parameters"):
        T.bitfit(m, head="1")
    with pytest.raises(TypeError, match="bitfit: head must be"):
        T.bitfit(m, head=4)
    nobias = nn.Sequential(nn.Linear(3, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with pytest.raises(ValueError, match="bitfit: model has no bias"):
        T.bitfit(nobias)
    assert all(p.requires_grad for p in m.parameters())        # nothing changed by the failures


def test_add_lora_refuses_a_linear_used_twice():
    """named_modules() lists a shared layer once: wrapping it would adapt one use and freeze the other."""
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    before = [type(m) for m in model]
    with pytest.raises(ValueError, match=r"add_lora: layer\(s\) \['0'\] are used at more than one place"):
        tl.transfer.add_lora(model, rank=2)
    assert [type(m) for m in model] == before and all(p.requires_grad for p in model.parameters())
