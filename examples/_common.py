"""Shared by the four transfer examples: the data, one training loop, the two metrics.

Each example reads like a recipe (pretrain on a source task, carry the
weights over, train on a small target set, compare with training from
scratch); what they all need lives here so that the recipes stay short.
"""
import argparse

import numpy as np

import tinytl as tl
from tinytl import nn


def parse(argv, doc):
    """The command line every example accepts: --quick (a smaller run, for the tests) and --seed."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a reduced run (a few seconds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the inits and the shuffling")
    return p.parse_args(argv)


def load_mnist1d(num_samples, seed):
    """MNIST-1D (generated locally): x (N, 40) float32, y (N,) int64, and a test split."""
    d = tl.datasets.mnist1d(num_samples=num_samples, seed=seed)
    return (np.asarray(d["x"], np.float32), np.asarray(d["y"], np.int64),
            np.asarray(d["x_test"], np.float32), np.asarray(d["y_test"], np.int64))


def few(y, classes, per_class, seed):
    """Indices of ``per_class`` random examples of each class in ``classes`` (a small labelled set)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes])


def mlp(*sizes, last_relu=False):
    """Linear layers with a ReLU between each pair: parameter names 0.*, 2.*, 4.* ..."""
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*(layers if last_relu else layers[:-1]))


def train(model, X, target, *, epochs, lr, batch_size=32, loss_fn=None, params=None, seed=0):
    """Minibatch SGD with momentum 0.9; ``params`` may be parameter groups (default: all)."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    opt = tl.optim.SGD(model.parameters() if params is None else params, lr=lr, momentum=0.9)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for i in range(0, len(X), batch_size):
            idx = order[i:i + batch_size]
            loss = loss_fn(model(X[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def accuracy(model, X, y):
    with tl.no_grad():
        return float((model(X).numpy().argmax(1) == y).mean())


def reconstruction_mse(model, X):
    with tl.no_grad():
        return float(((model(X).numpy() - X) ** 2).mean())


def report(metric, scratch, *transfers):
    """Print the comparison: a 'from scratch' line, then one (label, value) line per transfer."""
    print(metric)
    for label, value in (("from scratch", scratch),) + transfers:
        print(f"  {label:<30}: {value:.4f}")
