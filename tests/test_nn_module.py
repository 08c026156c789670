"""Module: buffers (register_buffer, named_buffers, state dict order and loading, moves
and casts), get_submodule, train/eval, copy.deepcopy, hooks kept working; containers
ModuleList and ModuleDict, with torch's names and reprs."""
import copy

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn


class WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 3)
        self.register_buffer("scale", tl.tensor(np.ones(3, np.float32)))
        self.register_buffer("steps", tl.tensor(np.array(0, np.int64)))
        self.register_buffer("cache", tl.tensor(np.zeros(2, np.float32)), persistent=False)
        self.register_buffer("empty", None)

    def forward(self, x):
        return self.lin(x) * self.scale


def test_buffers_are_named_saved_and_loaded():
    m = WithBuffers()
    assert [k for k, _ in m.named_buffers()] == ["scale", "steps", "cache", "lin.weight"][:3]
    assert len(list(m.buffers())) == 3
    assert [k for k, _ in m.named_parameters()] == ["lin.weight", "lin.bias"]        # buffers are not parameters
    assert list(m.state_dict()) == ["scale", "steps", "lin.weight", "lin.bias"]      # own first, non-persistent out
    sd = m.state_dict()
    sd["scale"] = np.full(3, 2.0, np.float64)          # another float precision: cast
    sd["steps"] = np.array(7, np.int64)                # an integer buffer loads
    m.load_state_dict(sd)
    assert m.scale.dtype == np.float32 and np.all(m.scale.data == 2.0) and int(m.steps.data) == 7
    bad = dict(sd, steps=np.array(1.5))
    with pytest.raises(ValueError, match="'steps': checkpoint dtype float64 is not an integer"):
        m.load_state_dict(bad)
    bad = dict(sd, **{"lin.bias": np.zeros(3, np.int64)})
    with pytest.raises(ValueError, match="not floating point"):                        # parameters still refuse
        m.load_state_dict(bad)
    assert int(m.steps.data) == 7                                                        # nothing copied
    with pytest.raises(ValueError, match="missing keys: steps"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "steps"})


def test_register_buffer_errors_and_assignment():
    m = WithBuffers()
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("lin", tl.tensor(np.zeros(1)))
    with pytest.raises(KeyError, match="without '.'"):
        m.register_buffer("a.b", tl.tensor(np.zeros(1)))
    with pytest.raises(TypeError, match="a Tensor or None"):
        m.register_buffer("x", np.zeros(1))
    m.scale = tl.tensor(np.zeros(3, np.float32))        # assigning replaces the buffer, as torch
    assert m._buffers["scale"] is m.scale
    with pytest.raises(TypeError, match="buffer 'scale'"):
        m.scale = np.zeros(3)


def test_float_double_and_to_move_buffers_but_keep_integer_ones(device):
    m = WithBuffers().double()
    assert m.scale.dtype == np.float64 and m.cache.dtype == np.float64 and m.steps.dtype == np.int64
    m.float().to(device)
    assert all(b.device == device for b in m.buffers()) and m.scale.dtype == np.float32
    assert m.steps.dtype == np.int64
    out = m(tl.tensor(np.ones((1, 2), np.float32), device=device))
    assert out.device == device


def test_state_dict_keys_and_order_match_torch():
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.LayerNorm(5), nn.Linear(5, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                                 torch.nn.LayerNorm(5), torch.nn.Linear(5, 2))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert ours.state_dict()[k].shape == tuple(v.shape)
    assert list(nn.BatchNorm1d(3).state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                                    "num_batches_tracked"]
    assert [k for k, _ in ours.named_buffers()] == [k for k, _ in theirs.named_buffers()]
    assert list(nn.BatchNorm1d(3, track_running_stats=False).state_dict()) == ["weight", "bias"]


def test_a_checkpoint_without_num_batches_tracked_loads_as_in_torch():
    bn = nn.BatchNorm1d(2)
    sd = bn.state_dict()
    del sd["num_batches_tracked"]
    assert bn.load_state_dict(sd).missing_keys == []


def test_get_submodule_parameter_buffer():
    m = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()))
    assert m.get_submodule("") is m
    assert m.get_submodule("1.0") is m[1][0]
    assert m.get_parameter("0.weight") is m[0].weight
    assert m.get_buffer("1.0.running_var") is m[1][0].running_var
    with pytest.raises(AttributeError, match="has no attribute `5`"):
        m.get_submodule("1.5")
    with pytest.raises(AttributeError, match="is not an nn.Module"):
        m.get_submodule("0.weight")


def test_train_eval_propagate_and_take_booleans():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.ModuleList([nn.BatchNorm1d(2)]))
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    with pytest.raises(ValueError, match="boolean"):
        m.train("no")
    assert m.requires_grad_(False) is m and not any(p.requires_grad for p in m.parameters())


def test_deepcopy_copies_parameters_buffers_and_hooks():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    calls = []
    m[0].register_forward_hook(lambda mod, args, out: calls.append(type(mod).__name__))
    m(tl.tensor(np.ones((2, 3), np.float32)))
    c = copy.deepcopy(m)
    assert c[0].weight is not m[0].weight and isinstance(c[0].weight, nn.Parameter)
    assert c[0].weight.requires_grad and c[0].weight.data.flags.f_contiguous
    np.testing.assert_array_equal(c[0].weight.data, m[0].weight.data)
    assert c[1].running_mean is not m[1].running_mean and c[1]._buffers["running_mean"] is c[1].running_mean
    np.testing.assert_array_equal(c[1].running_mean.data, m[1].running_mean.data)
    assert int(c[1].num_batches_tracked.data) == 1
    c[0].weight.data[...] = 0
    assert m[0].weight.data.any()
    c(tl.tensor(np.ones((2, 3), np.float32)))
    assert calls == ["Linear", "Linear"]                     # the hook was copied, as torch copies it
    assert list(c.state_dict()) == list(m.state_dict())


def test_sequential_with_hooks_still_sees_both_layers():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seen = []
    h = m[1].register_forward_hook(lambda mod, a, out: seen.append(out.shape))
    m(tl.tensor(np.ones((4, 2), np.float32)))
    assert seen == [(4, 3)]
    h.remove()


# ----------------------------------------------------------------- containers ----

def test_module_list():
    torch = pytest.importorskip("torch")
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2), nn.ReLU()])
    tml = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.ReLU()])
    assert repr(ml) == repr(tml)
    assert list(ml.state_dict()) == list(tml.state_dict())
    ml.append(nn.Linear(2, 1))
    ml.insert(0, nn.Identity())
    assert [type(m).__name__ for m in ml] == ["Identity", "Linear", "Linear", "ReLU", "Linear"]
    del ml[0]
    assert list(ml._modules) == ["0", "1", "2", "3"] and ml[0] is getattr(ml, "0")
    assert len(ml) == 4 and isinstance(ml[1:], nn.ModuleList) and len(ml[1:]) == 3
    ml[-1] = nn.Linear(2, 5)
    assert ml[3].out_features == 5
    ml += [nn.ReLU()]
    assert len(ml) == 5 and len(list(ml.parameters())) == 6
    with pytest.raises(IndexError):
        ml[9]
    with pytest.raises(TypeError, match="Module"):
        ml.append(3)
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList())

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x
    net = Net()
    assert [k for k, _ in net.named_parameters()] == ["layers.0.weight", "layers.0.bias", "layers.1.weight",
                                                      "layers.1.bias"]
    assert net(tl.tensor(np.ones((1, 3), np.float32))).shape == (1, 3)


def test_module_dict():
    torch = pytest.importorskip("torch")
    md = nn.ModuleDict({"enc": nn.Linear(2, 3), "act": nn.ReLU()})
    tmd = torch.nn.ModuleDict({"enc": torch.nn.Linear(2, 3), "act": torch.nn.ReLU()})
    assert repr(md) == repr(tmd)
    assert list(md) == ["enc", "act"] and "enc" in md and len(md) == 2
    md["head"] = nn.Linear(3, 1)
    assert list(md.keys()) == ["enc", "act", "head"]
    assert list(md.state_dict()) == ["enc.weight", "enc.bias", "head.weight", "head.bias"]
    assert md.pop("act").__class__ is nn.ReLU and "act" not in md
    md.update([("x", nn.Identity())])
    assert [k for k, _ in md.items()] == ["enc", "head", "x"]
    with pytest.raises(KeyError, match="shadow"):
        md["train"] = nn.ReLU()
    with pytest.raises(TypeError, match="Modules"):
        md["y"] = 3
    md.clear()
    assert len(md) == 0


@pytest.mark.parametrize("ext", ["safetensors", "npz"])
def test_batchnorm_state_survives_a_checkpoint(tmp_path, ext):
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    for _ in range(3):
        m(tl.tensor(np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)))
    path = str(tmp_path / f"m.{ext}")
    tl.save(m, path)
    m2 = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    m2.load_state_dict(path)
    assert int(m2[1].num_batches_tracked.data) == 3 and m2[1].num_batches_tracked.dtype == np.int64
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k], v)
