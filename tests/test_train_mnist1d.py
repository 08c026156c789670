"""A real-data test: an MLP trained with tinytl on MNIST-1D (generated offline by
``mnist1d.make_dataset``, never downloaded) reaches at least 66% test accuracy
(its authors report 68% for their MLP)."""
import time

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn

mnist1d_data = pytest.importorskip("mnist1d.data")


def make_mnist1d(num_samples=5000, seed=42):
    args = mnist1d_data.get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    d = mnist1d_data.make_dataset(args)       # generated here; get_dataset would download + unpickle
    return (d["x"].astype(np.float32), d["y"].astype(np.int64),
            d["x_test"].astype(np.float32), d["y_test"].astype(np.int64))


def test_mlp_reaches_66_percent_on_mnist1d():
    x, y, xt, yt = make_mnist1d()
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = tl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    steps, batch = 8000, 100
    for step in range(steps):
        idx = rng.integers(0, len(x), batch)
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - t0
    with tl.no_grad():
        acc = float((model(xt).numpy().argmax(1) == yt).mean())
    print(f"MNIST-1D MLP: test accuracy {acc:.3f} after {steps} steps in {elapsed:.1f} s")
    assert acc >= 0.66       # (time is reported, not asserted: speed belongs in bench/)
