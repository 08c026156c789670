"""Case 9: a tutorial MLP with Dropout and Adam, tinytl vs PyTorch eager vs tinytl's reference kernels.

784-256-256-10 with ReLU and Dropout(0.2) after each hidden layer, batch 64, float32, Adam
(lr 1e-3, torch's defaults): one step = forward in train mode, cross-entropy, backward,
Adam step, zero_grad. Both libraries start from the same weights; their Dropout masks are
drawn by their own generators (the work is the same, the values differ). ``tinytl[ref]`` is
the same tinytl model on the pure-NumPy reference kernels (``tinytl_mlp.reference_kernels``),
interleaved in the same run. Target (issue 14): the tinytl step <= 0.6x PyTorch's.
"""
from __future__ import annotations

import numpy as np

import tinytl as tl

import tinytl_mlp
from common import Entry, interleaved

SIZES, BATCH, P, LR = (784, 256, 256, 10), 64, 0.2, 1e-3
TARGET = ("tinytl/torch", 0.6)


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return [((rng.uniform(-1, 1, (o, i)) / np.sqrt(i)).astype(np.float32),
             (rng.uniform(-1, 1, o) / np.sqrt(i)).astype(np.float32)) for i, o in zip(SIZES[:-1], SIZES[1:])]


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH, SIZES[0])).astype(np.float32), rng.integers(0, SIZES[-1], BATCH)


def _layers(nn, weights):
    layers = []
    for i, (W, _) in enumerate(weights):
        layers.append(nn.Linear(W.shape[1], W.shape[0]))
        if i < len(weights) - 1:
            layers += [nn.ReLU(), nn.Dropout(P)]
    return nn.Sequential(*layers)


def _state(weights):
    return {f"{3 * i}.{k}": v for i, (W, b) in enumerate(weights) for k, v in (("weight", W), ("bias", b))}


def make_step(lib, weights, x, y, as_tensor):
    """A training step closure for ``lib`` (tinytl or torch: the same code, as the point of the
    fluency issue is that it runs unchanged); ``as_tensor`` makes the library's tensors."""
    model = _layers(lib.nn, weights)
    model.load_state_dict({k: as_tensor(v.copy()) for k, v in _state(weights).items()})
    model.train()
    opt = lib.optim.Adam(model.parameters(), lr=LR)
    loss_fn = lib.nn.CrossEntropyLoss()
    xb, yb = as_tensor(x), as_tensor(y)

    def step():
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return step


def run(report, cfg, pause, fmt_t, torch=None):
    """Time the three steps interleaved; record medians and ratios under report.data["cases"]."""
    weights, (x, y) = _weights(), _batch()
    entries = [Entry("tinytl", make_step(tl, weights, x, y, tl.tensor))]
    if tinytl_mlp.compiled_kernels_active():
        ref = make_step(tl, weights, x, y, tl.tensor)     # its own model and optimizer state

        def ref_step():
            with tinytl_mlp.reference_kernels():
                ref()
        entries.append(Entry("tinytl[ref]", ref_step))
    if torch is not None:
        entries.append(Entry("torch", make_step(torch, weights, x, y, torch.from_numpy)))
    res = interleaved(entries, blocks=cfg["blocks"], block_s=cfg["block_s"], pause=pause, warmup_s=cfg["warmup_s"])
    med = {k: v.median for k, v in res.items()}
    ratios = {}
    if "torch" in med:
        ratios["tinytl/torch"] = med["tinytl"] / med["torch"]
    if "tinytl[ref]" in med:
        ratios["tinytl/tinytl[ref]"] = med["tinytl"] / med["tinytl[ref]"]
    cid = "9-dropout-adam"
    report.data["cases"][cid] = dict(sizes=SIZES, batch=BATCH, dropout=P, optimizer="Adam", lr=LR,
                                     entries={k: v.as_dict() for k, v in res.items()}, ratios=ratios)
    label = f"{cid} {'-'.join(map(str, SIZES))} b{BATCH}"
    report.p(f"{label:<34} " + "  ".join(f"{k} {fmt_t(v)} (±{res[k].spread * 50:.0f}%)" for k, v in med.items()))
    report.p(f"{'':<34} " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    report.target(cid, TARGET[0], ratios.get(TARGET[0]), TARGET[1])
