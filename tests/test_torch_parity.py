"""Parity with PyTorch (skipped when torch is not importable): the same weights
and batches give the same losses and weights over 20 SGD steps, with tinytl on each
device (on "cuda", PyTorch runs on the GPU too where a CUDA PyTorch sees one)."""
import numpy as np
import pytest

import tinytl as tl
from tinytl import nn

torch = pytest.importorskip("torch")


def torch_device(device):
    return "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"


def build_pair(sizes, dtype, device="cpu"):
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tlayers, layers = [], []
    for i in range(len(sizes) - 1):
        tlayers.append(torch.nn.Linear(sizes[i], sizes[i + 1], dtype=tdtype))
        layers.append(nn.Linear(sizes[i], sizes[i + 1], dtype=dtype))
        if i < len(sizes) - 2:
            tlayers.append(torch.nn.ReLU())
            layers.append(nn.ReLU())
    tm, m = torch.nn.Sequential(*tlayers), nn.Sequential(*layers)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return tm.to(torch_device(device)), m.to(device)


def t(a, device):
    return torch.from_numpy(a).to(torch_device(device))


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("opts", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
                                  dict(momentum=0.5, dampening=0.1, weight_decay=5e-3)])
@pytest.mark.parametrize("loss", ["xent", "mse"])
def test_20_steps_match_pytorch(dtype, tol, opts, loss, device):
    torch.manual_seed(0)
    tm, m = build_pair([12, 16, 16, 5], dtype, device)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, **opts)
    opt = tl.optim.SGD(m.parameters(), lr=0.1, **opts)
    rng = np.random.default_rng(0)
    for step in range(20):
        x = rng.standard_normal((8, 12)).astype(dtype)
        if loss == "xent":
            y = rng.integers(0, 5, 8)
            tl_loss = nn.CrossEntropyLoss()(m(tl.tensor(x, device=device)), tl.tensor(y, device=device))
            t_loss = torch.nn.functional.cross_entropy(tm(t(x, device)), t(y, device))
        else:
            y = rng.standard_normal((8, 5)).astype(dtype)
            tl_loss = nn.MSELoss()(m(tl.tensor(x, device=device)), tl.tensor(y, device=device))
            t_loss = torch.nn.functional.mse_loss(tm(t(x, device)), t(y, device))
        assert abs(tl_loss.item() - t_loss.item()) <= tol * max(1.0, abs(t_loss.item())), step
        opt.zero_grad()
        topt.zero_grad()
        tl_loss.backward()
        t_loss.backward()
        opt.step()
        topt.step()
    for k, v in tm.state_dict().items():
        ours, v = m.state_dict()[k], v.cpu().numpy()
        rel = np.abs(ours - v).max() / max(np.abs(v).max(), 1e-30)
        assert rel < tol, (k, rel)


def test_frozen_prefix_matches_pytorch(device):
    torch.manual_seed(1)
    tm, m = build_pair([6, 8, 3], np.float64, device)
    for p in tm[0].parameters():
        p.requires_grad_(False)
    m[0].freeze()
    topt = torch.optim.SGD([p for p in tm.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    opt = tl.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, y = rng.standard_normal((4, 6)), rng.integers(0, 3, 4)
        opt.zero_grad()
        topt.zero_grad()
        nn.CrossEntropyLoss()(m(tl.tensor(x, device=device)), tl.tensor(y, device=device)).backward()
        torch.nn.functional.cross_entropy(tm(t(x, device)), t(y, device)).backward()
        opt.step()
        topt.step()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(m.state_dict()[k], v.cpu().numpy(), rtol=1e-10, atol=1e-12)
