"""``tinytl explain BEFORE AFTER --data FILE``: what fine-tuning did to a network, from two checkpoints.

A checkpoint holds weights, not an architecture, so the network is rebuilt from the tensors'
names and shapes: ``mlp_from_state`` accepts tinytl's MLP layout (a ``Sequential`` of
``Linear`` layers with a ``ReLU`` between each two: keys ``0.weight``, ``0.bias``,
``2.weight``, ...) and refuses any other with a clear error. On the data (a ``.npz`` file with
an ``x`` array, one example per row, and optionally integer labels ``y``) it prints the
weight drift and the CKA matrix between the two networks' layers, probes every layer of both
when ``y`` is given, explains a few predictions with integrated gradients, and writes the
PNGs and ``explain.json`` (every number of every figure) into ``--out``.
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from ..nn import Linear, ReLU, Sequential
from ..tensor import Tensor, no_grad
from . import plots
from .attributions import integrated_gradients
from .drift import weight_drift
from .probes import probe_layers
from .similarity import layer_similarity

MAX_DATA_BYTES = 1 << 30          # 1 GiB of array data: more is refused before it is read
_KEY = re.compile(r"^(\d+)\.(weight|bias)$")


# --------------------------------------------------------- the architecture ----

def mlp_from_state(state, where: str = "checkpoint") -> Sequential:
    """The MLP whose state dict is ``state``: Linear layers at indices 0, 2, 4, ... with a ReLU
    after each but the last (tinytl's ``Sequential(Linear, ReLU, ..., Linear)`` naming); the
    weights loaded. Any other layout raises ValueError naming the key or shape that does not fit."""
    layers = {}
    for key, v in state.items():
        m = _KEY.match(key)
        if m is None:
            raise ValueError(f"{where}: tensor '{key}' does not fit an MLP of Linear and ReLU layers "
                             "(tinytl explain rebuilds Sequential(Linear, ReLU, ..., Linear) from keys "
                             "0.weight, 0.bias, 2.weight, ...; other architectures are not supported)")
        layers.setdefault(int(m.group(1)), {})[m.group(2)] = v
    if not layers:
        raise ValueError(f"{where}: holds no tensor")
    idx = sorted(layers)
    if idx != list(range(0, 2 * len(idx), 2)):
        raise ValueError(f"{where}: the Linear layers must be numbered 0, 2, 4, ... (a ReLU between "
                         f"each two), got {', '.join(map(str, idx))}")
    mods, prev = [], None
    for i in idx:
        w, b = layers[i].get("weight"), layers[i].get("bias")
        if w is None:
            raise ValueError(f"{where}: layer {i} has a bias but no '{i}.weight'")
        if w.ndim != 2 or w.dtype.kind != "f":
            raise ValueError(f"{where}: '{i}.weight' must be a 2-D floating array (out, in), got "
                             f"shape {tuple(w.shape)}, dtype {w.dtype}")
        if b is not None and (b.shape != (w.shape[0],) or b.dtype.kind != "f"):
            raise ValueError(f"{where}: '{i}.bias' must have shape ({w.shape[0]},), got {tuple(b.shape)}")
        if prev is not None and w.shape[1] != prev:
            raise ValueError(f"{where}: '{i}.weight' takes {w.shape[1]} inputs but the layer before gives {prev}")
        prev = w.shape[0]
        if mods:
            mods.append(ReLU())
        dtype = np.float64 if w.dtype == np.float64 else np.float32
        mods.append(Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=dtype))
    model = Sequential(*mods)
    model.load_state_dict({k: np.asarray(v) for k, v in state.items()})
    return model


# ------------------------------------------------------------------ the data ----

def read_data(path, n_in=None):
    """``(x, y)`` from a ``.npz`` file: ``x`` (n, features) numbers, ``y`` (n,) integer labels or None.

    Read by ``tinytl.datafiles.load_xy`` (the checked reader every command uses: no pickles,
    every header validated before anything is allocated); then at least 4 examples and, when
    given, ``n_in`` features are required. Every problem is one ValueError naming the file."""
    from ..datafiles import load_xy
    path = os.fspath(path)
    if os.path.exists(path) and not path.endswith(".npz"):
        raise ValueError(f"{path}: --data must be a .npz file with an array 'x' (and optionally 'y')")
    x, y = load_xy(path, require_labels=False)
    if len(x) < 4:
        raise ValueError(f"{path}: 'x' needs at least 4 examples, got {len(x)}")
    if n_in is not None and x.shape[1] != n_in:
        raise ValueError(f"{path}: 'x' has {x.shape[1]} features per example, the networks take {n_in}")
    return x, y


# --------------------------------------------------------------- the command ----

def explain_checkpoints(before, after, data, out, examples: int = 4, steps: int = 50, seed: int = 0,
                        log=print) -> dict:
    """Everything ``tinytl explain`` does; returns the JSON it wrote (see the module docstring)."""
    from .. import io
    for p in (before, after):
        if not os.path.exists(p):
            raise FileNotFoundError(2, "No such file", p)
    sa, sb = io.load(before), io.load(after)
    ma, mb = mlp_from_state(sa, os.fspath(before)), mlp_from_state(sb, os.fspath(after))
    if ma[0].in_features != mb[0].in_features:
        raise ValueError(f"{before} takes {ma[0].in_features} inputs but {after} takes {mb[0].in_features}: "
                         "not two versions of one network")
    x, y = read_data(data, ma[0].in_features)
    os.makedirs(out, exist_ok=True)
    x = x.astype(np.float64 if ma[0].weight.dtype == np.float64 else np.float32, copy=False)

    drift = weight_drift(ma, mb)            # the layers' order (a checkpoint's is alphabetical)
    log(f"weight drift, {before} -> {after}:")
    log(str(drift))
    sim = layer_similarity(ma, mb, x)
    log("")
    log(str(sim))
    result = {"before": os.fspath(before), "after": os.fspath(after), "data": os.fspath(data),
              "examples": int(len(x)), "drift": drift.to_dict(), "cka": sim.to_dict()}

    probes = {}
    if y is not None:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(x))
        half = len(x) // 2
        tr, te = order[:half], order[half:]
        # about 2000 SGD steps per probe (at most 100 epochs): seconds, whatever the data's size
        epochs = max(1, min(100, 2000 // max(1, math.ceil(len(tr) / 64))))
        for label, m in (("before", ma), ("after", mb)):
            probes[label] = probe_layers(m, x[tr], y[tr], x[te], y[te], epochs=epochs, batch_size=64, seed=seed)
            log(f"\nlinear probe after each layer ({label}; {len(tr)} training, {len(te)} test examples, "
                f"{epochs} epochs):")
            log(str(probes[label]))
        result["probe"] = {k: v.to_dict() for k, v in probes.items()}
        result["probe_settings"] = {"split": f"a permutation of the rows drawn with seed {seed}: first half "
                                             "to train, second half to test", "train_examples": int(len(tr)),
                                    "test_examples": int(len(te)), "epochs": epochs, "lr": 0.1,
                                    "batch_size": 64, "seed": seed}

    pick = np.arange(min(int(examples), len(x)))
    attr = {}
    for label, m in (("before", ma), ("after", mb)):
        a, delta = integrated_gradients(m, x[pick], None, steps=steps, return_delta=True)
        with no_grad():
            pred = m(Tensor(x[pick])).data.argmax(axis=1)
        attr[label] = {"target": [int(t) for t in pred], "attributions": a.tolist(),
                       "delta": [float(d) for d in delta]}
    result["attributions"] = {"rows": [int(i) for i in pick], "inputs": x[pick].tolist(), "steps": steps,
                              "method": "gausslegendre", "baseline": "zeros",
                              "target": "each network's predicted class", **attr}

    figures = {}
    figs = [("cka.png", plots.cka_heatmaps({"before vs after": sim})),
            ("drift.png", plots.drift_bars({"drift": {k: v["relative"] for k, v in drift.by_layer().items()}}))]
    if probes:
        figs.append(("probe.png", plots.probe_lines(probes)))
    titles = [f"row {i}" + (f" (label {y[i]})" if y is not None else "") + f": class {attr['before']['target'][k]}"
              f" before, {attr['after']['target'][k]} after" for k, i in enumerate(pick)]
    figs.append(("attributions.png", plots.attribution_panels(
        x[pick], {k: np.array(attr[k]["attributions"]) for k in ("before", "after")}, titles)))
    for name, fig in figs:
        path = os.path.join(out, name)
        figures[name] = plots.save(fig, path)
    result["figures"] = {k: v for k, v in figures.items()}
    json_path = os.path.join(out, "explain.json")
    with open(json_path + ".tmp", "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)
    os.replace(json_path + ".tmp", json_path)
    log("")
    written = [n for n, ok in figures.items() if ok]
    if written:
        log(f"figures: {', '.join(os.path.join(out, n) for n in written)}")
    else:
        log("figures: skipped (matplotlib is not installed; pip install 'tinytl[demo]' gives it)")
    log(f"numbers: {json_path}")
    return result
