"""Where does the task's information sit? A linear probe after each layer (Alain & Bengio, 2016).

Read next: ``tinytl/explain/attributions.py`` (what a model looks at in one input).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .. import backend
from .._random import generator
from ..nn import Identity, Linear, Module
from ..tensor import Tensor, no_grad
from ._layers import _gather, _model_input, _positive_int, _select_layers


@dataclass
class ProbeResult:
    """A linear probe's accuracy on the features after each layer.

    Attributes:
        layers: the layer names ("input" first when included), in the order they ran.
        accuracy, train_accuracy: test and training accuracy, one per layer.
        dims: the number of features of each layer.
    """
    layers: list
    accuracy: list
    train_accuracy: list
    dims: list

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "accuracy": [float(a) for a in self.accuracy],
                "train_accuracy": [float(a) for a in self.train_accuracy], "dims": list(self.dims)}

    def __str__(self):
        w = max([len("layer")] + [len(n) for n in self.layers])
        lines = [f"{'layer':<{w}}  {'features':>8}  {'train acc':>9}  {'test acc':>8}"]
        for n, d, tr, te in zip(self.layers, self.dims, self.train_accuracy, self.accuracy):
            lines.append(f"{n:<{w}}  {d:>8}  {100 * tr:>8.1f}%  {100 * te:>7.1f}%")
        return "\n".join(lines)

    __repr__ = __str__


def _labels(y, n: int, arg: str, fn: str) -> np.ndarray:
    y = y.data if isinstance(y, Tensor) else y
    y = backend.to_numpy(y) if backend.is_cupy_array(y) else np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {arg} must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{fn}: {arg} must have shape ({n},), one label per row, got {tuple(y.shape)}")
    if n and int(y.min()) < 0:
        raise ValueError(f"{fn}: {arg} holds a negative label ({int(y.min())})")
    return y.astype(np.int64)


def probe_layers(model: Module, X, y, X_test, y_test, *, layers=None, include_input: bool = True,
                 epochs: int = 100, lr: float = 0.1, batch_size: int = 64, momentum: float = 0.9,
                 weight_decay: float = 0.0, seed: int = 0, num_classes=None) -> ProbeResult:
    """A linear probe's test accuracy on the features after each layer (Alain & Bengio, 2016).

    Each layer's output on X and X_test is caught by a forward hook (the model runs its own
    forward, in eval mode, under no_grad), standardised with the training rows' mean and
    standard deviation (an affine map the probe could learn, but one learning rate then suits
    every layer), and a ``Linear(features, classes)`` head starting from zero is trained on
    it with ``tl.transfer.linear_probe`` (softmax cross-entropy, ``tl.optim.SGD``). A zero
    start and a seeded shuffle make it deterministic; tinytl's global generator is untouched.

    Args:
        model: the Module (not changed).
        X, y: the probe's training inputs and integer labels.
        X_test, y_test: where its accuracy is measured.
        layers: the layer names (default: every leaf module, see ``layer_similarity``).
        include_input: probe the raw input too (row "input"): what the layers add to it.
        epochs, lr, batch_size, momentum, weight_decay: the probe's SGD.
        seed: the seed of the shuffling.
        num_classes: default: 1 + the largest label of y and y_test.

    Returns:
        A ``ProbeResult`` (``print`` it; ``.layers``, ``.accuracy``, ``.to_dict()``).
    """
    from ..transfer import linear_probe
    fn = "probe_layers"
    if not isinstance(model, Module):
        raise TypeError(f"{fn}: model must be a tinytl Module, got {type(model).__name__}")
    X = _model_input(model, X, fn, "X")
    X_test = _model_input(model, X_test, fn, "X_test")
    y = _labels(y, X.shape[0], "y", fn)
    y_test = _labels(y_test, X_test.shape[0], "y_test", fn)
    c = int(max(y.max(), y_test.max())) + 1 if num_classes is None else _positive_int(num_classes, "num_classes", fn)
    if max(y.max(), y_test.max()) >= c:
        raise ValueError(f"{fn}: a label is >= num_classes ({c})")
    chosen = _select_layers(model, layers, "layers", fn)
    train = _gather(model, X, chosen, 1024, fn)
    test = _gather(model, X_test, chosen, 1024, fn)
    if include_input:
        train = OrderedDict([("input", X.reshape(X.shape[0], -1))] + list(train.items()))
        test = OrderedDict([("input", X_test.reshape(X_test.shape[0], -1))] + list(test.items()))
    names, acc, acc_tr, dims = [], [], [], []
    for name, F in train.items():
        Ft = test[name]
        xp = backend.get_array_module(F)
        mu, sd = F.mean(axis=0, keepdims=True), F.std(axis=0, keepdims=True)
        sd = xp.where(sd > 0, sd, 1)
        F, Ft = (F - mu) / sd, (Ft - mu) / sd
        state = generator().bit_generator.state            # Linear() draws its init: undo that
        head = Linear(F.shape[1], c, dtype=F.dtype, device=backend.device_of(F))
        generator().bit_generator.state = state
        head.weight.data[...] = 0
        head.bias.data[...] = 0
        linear_probe(Identity(), head, F, y, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                     weight_decay=weight_decay, seed=seed)
        with no_grad():
            pred_tr = backend.to_numpy(head(Tensor(F)).data.argmax(axis=1))
            pred = backend.to_numpy(head(Tensor(Ft)).data.argmax(axis=1))
        names.append(name)
        acc.append(float((pred == y_test).mean()))
        acc_tr.append(float((pred_tr == y).mean()))
        dims.append(int(F.shape[1]))
    return ProbeResult(names, acc, acc_tr, dims)
