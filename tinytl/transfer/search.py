"""Choosing what and how to transfer: which layer, which pretrained model, which recipe.

- ``rank_layers(model, X, y)`` scores the features after each hidden layer of one model (and
  the raw input, as the baseline) with a transferability score (``tinytl/transfer/scores.py``):
  where to cut the network.
- ``rank_sources({name: model or checkpoint}, X, y)`` scores several pretrained models on the
  same labelled target data: which one to start from. Both return a ``Ranking`` that prints
  as a table.
- ``search(pretrained, X, y)`` answers "which recipe?" by validation: it holds out part of the
  labels (or uses k folds when they are few), trains each strategy (linear probe, fine-tuning,
  LP-FT, L2-SP, ...) over a small grid of learning rates with early stopping on the
  validation loss, keeps the best, and retrains the winner on all the labels for the epochs
  validation chose. It returns the model and a ``SearchReport``.

Strategies are a small registry (``STRATEGIES``, ``register_strategy``): a strategy is a list
of phases, each saying how to prepare the model (what to freeze, which parameter groups) and
which learning rates to try, so a new recipe joins the search in a few lines.

Read next: ``tinytl/transfer/scores.py`` (the scores), ``tinytl/callbacks.py`` (EarlyStopping).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

from .. import _random, backend
from ..callbacks import EarlyStopping
from ..nn import CrossEntropyLoss, Linear, Module, ReLU, Sequential
from ..optim import SGD
from ..tensor import Tensor, no_grad
from . import scores as _scores
from ._checks import _check_module, _check_positive
from .recipes import extract_features, l2sp_groups
from .weights import replace_head

__all__ = ["rank_layers", "rank_sources", "Ranking", "search", "SearchReport", "Strategy", "Phase",
           "STRATEGIES", "register_strategy", "EarlyStopping"]

FEATURE_SCORES = {"logme": _scores.logme, "hscore": _scores.hscore, "transrate": _scores.transrate}
PREDICTION_SCORES = {"leep": lambda probs, y: _scores.leep(probs, y),
                     "nce": lambda probs, y: _scores.nce(probs.argmax(axis=1), y)}


# ------------------------------------------------------------ inputs ----

def _xy(X, y, fn: str):
    """X as a float32 (N, ...) NumPy array, y as int64 (N,) class indices 0..C-1; and C."""
    X = X.data if isinstance(X, Tensor) else X
    y = y.data if isinstance(y, Tensor) else y
    X, y = backend.to_numpy(X), backend.to_numpy(y)
    if X.dtype.kind not in "fiub" or X.ndim < 2 or len(X) == 0:
        raise ValueError(f"{fn}: X must be a non-empty numeric array (N examples, features...), got "
                         f"shape {tuple(X.shape)} and dtype {X.dtype}")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"{fn}: y must be a 1-D array of integer class indices, got shape {tuple(y.shape)} "
                         f"and dtype {y.dtype}")
    if len(X) != len(y):
        raise ValueError(f"{fn}: X has {len(X)} rows but y has {len(y)}")
    X = np.ascontiguousarray(X, dtype=X.dtype if X.dtype.kind == "f" else np.float32)
    if not np.isfinite(X).all():
        raise ValueError(f"{fn}: X holds NaN or infinite values")
    classes = np.unique(y)
    if classes[0] < 0 or classes[-1] != len(classes) - 1:
        raise ValueError(f"{fn}: y must be class indices 0..C-1 with every class present, got labels "
                         f"{classes[:8].tolist()}{'...' if len(classes) > 8 else ''} (renumber them: "
                         "np.unique(y, return_inverse=True)[1])")
    if len(classes) < 2:
        raise ValueError(f"{fn}: y holds a single class; at least two are needed")
    return X, y.astype(np.int64), len(classes)


def mlp_from_state(state, fn: str = "mlp_from_state") -> Sequential:
    """The ``Sequential`` MLP a state dict describes: Linear layers at the indices of its keys
    (``0.weight``, ``0.bias``, ``2.weight``, ...), a ReLU at each index in between.

    This is how tinytl saves ``Sequential(Linear, ReLU, Linear, ..., Linear)``; it lets the
    command line and ``rank_sources`` take checkpoint files. Anything else (other layers,
    other names, gaps of more than one index) raises ValueError: build the Module yourself.

    Args:
        state: a dict name -> array, or the path of a checkpoint (read by ``tl.load``).
    """
    if isinstance(state, (str, os.PathLike)):
        from .. import io
        path = os.fspath(state)
        state = io.load(path)
    linears = {}
    for key, value in state.items():
        m = re.fullmatch(r"(\d+)\.(weight|bias)", key)
        if m is None:
            raise ValueError(f"{fn}: the checkpoint is not a Sequential of Linear and ReLU layers (tensor "
                             f"{key!r}); load it into its Module and pass the Module")
        linears.setdefault(int(m.group(1)), {})[m.group(2)] = np.asarray(value)
    if not linears:
        raise ValueError(f"{fn}: the checkpoint holds no tensor")
    idx = sorted(linears)
    layers, prev_out = [], None
    for i, j in enumerate(idx):
        w = linears[j].get("weight")
        if w is None or w.ndim != 2:
            raise ValueError(f"{fn}: layer {j} has no 2-D weight")
        b = linears[j].get("bias")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"{fn}: layer {j}: bias of shape {b.shape} for a weight of shape {w.shape}")
        if prev_out is not None and w.shape[1] != prev_out:
            raise ValueError(f"{fn}: layer {j} takes {w.shape[1]} inputs but the layer before gives {prev_out}")
        expected = 0 if i == 0 else idx[i - 1] + 2
        if j != expected:
            raise ValueError(f"{fn}: layer indices {idx} do not describe Linear, ReLU, Linear, ... "
                             "(one activation between Linear layers)")
        if i > 0:
            layers.append(ReLU())
        dtype = w.dtype if w.dtype in (np.float32, np.float64) else np.float32
        lin = Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=dtype)
        lin.weight.data[...] = w
        if b is not None:
            lin.bias.data[...] = b
        layers.append(lin)
        prev_out = w.shape[0]
    return Sequential(*layers)


def _as_model(obj, fn: str, arg: str) -> Module:
    if isinstance(obj, Module):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        if not os.path.exists(obj):
            raise FileNotFoundError(2, "No such file", os.fspath(obj))
        return mlp_from_state(obj, fn)
    raise TypeError(f"{fn}: {arg} must be a tinytl Module or a checkpoint path, got {type(obj).__name__}")


# ------------------------------------------------------------- scores ----

def _resolve_scores(score, fn: str, allow_predictions: bool) -> list:
    """[(name, function, kind)] with kind "features" or "predictions"."""
    items = list(score) if isinstance(score, (list, tuple)) else [score]
    if not items:
        raise ValueError(f"{fn}: score is empty")
    out = []
    for s in items:
        if callable(s):
            out.append((getattr(s, "__name__", "score"), s, "features"))
        elif s in FEATURE_SCORES:
            out.append((s, FEATURE_SCORES[s], "features"))
        elif s in PREDICTION_SCORES:
            if not allow_predictions:
                raise ValueError(f"{fn}: score {s!r} reads the source model's predictions, not a layer's "
                                 f"features; use one of {sorted(FEATURE_SCORES)} (or rank_sources)")
            out.append((s, PREDICTION_SCORES[s], "predictions"))
        else:
            known = sorted(FEATURE_SCORES) + (sorted(PREDICTION_SCORES) if allow_predictions else [])
            raise ValueError(f"{fn}: unknown score {s!r}; expected one of {known} or a function "
                             "f(features, labels) -> float")
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{fn}: a score is listed twice in {names}")
    return out


def _head_name(model: Module, fn: str) -> str:
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, Linear):
            last = name
    if last is None or last == "":
        raise ValueError(f"{fn}: model ({type(model).__name__}) holds no Linear head to read features before")
    return last


def _collect(model: Module, X, taps: dict, batch_size: int = 1024) -> dict:
    """Run ``model`` on X (eval mode, no graph) and return {tap: NumPy array} for taps
    {tap: (module name, "out" | "in")}, plus "__output__" (the model's output)."""
    mods = dict(model.named_modules())
    got = {t: [] for t in taps}
    handles = []
    for tap, (mname, where) in taps.items():
        mod = mods[mname]
        if where == "out":
            handles.append(mod.register_forward_hook(
                lambda m, args, out, tap=tap: got[tap].append(backend.to_numpy(out.data))))
        else:
            handles.append(mod.register_forward_pre_hook(
                lambda m, args, tap=tap: got[tap].append(backend.to_numpy(
                    args[0].data if isinstance(args[0], Tensor) else args[0]))))
    try:
        outputs = extract_features(model, X, batch_size=batch_size)
    finally:
        for h in handles:
            h.remove()
    res = {}
    for tap, parts in got.items():
        if not parts:
            raise ValueError(f"collect: module {taps[tap][0]!r} was never called by the model's forward")
        a = np.concatenate(parts)
        res[tap] = a.reshape(len(a), -1)
    res["__output__"] = outputs
    return res


def _softmax(z):
    z = z.reshape(len(z), -1).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Ranking:
    """Scores of layers (``rank_layers``) or of source models (``rank_sources``) on one target task.

    Attributes:
        kind: "layers" or "sources".
        scores: the score names, in column order (the first one ranks).
        rows: one dict per layer or source, in the order given: ``name``, ``module`` (the
            layer's type, or the features read), ``dim`` (feature size), ``values``
            ({score: float}), ``seconds`` (the time to score it, features included).
        seconds: the total time.

    ``str(ranking)`` is the table; ``ranking.order()`` the names best first;
    ``ranking.best`` the best name; ``ranking.to_dict()`` the JSON-ready content.
    """

    def __init__(self, kind: str, scores: list, rows: list, seconds: float, n: int):
        self.kind, self.scores, self.rows, self.seconds, self.n = kind, list(scores), rows, seconds, n

    def order(self, score: str = None) -> list:
        """The names, best first, by ``score`` (default: the first score)."""
        score = self.scores[0] if score is None else score
        if score not in self.scores:
            raise ValueError(f"Ranking.order: score {score!r} is not in {self.scores}")
        return [r["name"] for r in sorted(self.rows, key=lambda r: -r["values"][score])]

    @property
    def best(self) -> str:
        return self.order()[0]

    def values(self, score: str = None) -> dict:
        """{name: value} of one score (default: the first)."""
        score = self.scores[0] if score is None else score
        return {r["name"]: r["values"][score] for r in self.rows}

    def to_dict(self) -> dict:
        return {"kind": self.kind, "scores": self.scores, "n": self.n, "seconds": self.seconds,
                "rows": [dict(r) for r in self.rows], "order": self.order()}

    def __str__(self):
        ranks = {s: {name: i + 1 for i, name in enumerate(self.order(s))} for s in self.scores}
        head = ["rank", "layer" if self.kind == "layers" else "source", "features", "dim"] + self.scores
        body = [[str(ranks[self.scores[0]][r["name"]]), r["name"], r["module"], str(r["dim"])]
                + [f"{r['values'][s]:.4f}" for s in self.scores] for r in self.rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        line = lambda cells: "  ".join(c.rjust(w) if i in (0, 3) or i >= 4 else c.ljust(w)
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        out = [f"{self.kind} ranked by {self.scores[0]} on {self.n} labelled examples (higher is better)",
               line(head), "-" * len(line(head))]
        out += [line(b) for b in body]
        out.append(f"({self.seconds * 1000:.1f} ms in all)")
        return "\n".join(out)

    __repr__ = __str__


def rank_layers(model: Module, X, y, score="logme", layers=None, batch_size: int = 1024) -> Ranking:
    """Score the features after each hidden layer of ``model`` (and the raw input) on labelled
    target data: where to cut the network before adding a new head.

    One forward pass collects every layer's output (forward hooks); each is scored with the
    transferability score(s). Deeper layers of a classifier become specific to its task: the
    best cut is often below the top.

    Args:
        model: the pretrained Module (not changed; run in eval mode without a graph).
        X: the inputs (N, ...); y: class indices (N,) in 0..C-1.
        score: "logme" (default), "hscore", "transrate", a function f(features, labels) ->
            float, or a list of these (one column each; the first ranks).
        layers: names of modules (``model.named_modules()``) whose outputs to score; default
            every direct child but the last (the head), in order. "input" is always first.
        batch_size: rows per forward pass.

    Returns:
        A ``Ranking`` (kind "layers"), rows in network order.
    """
    fn = "rank_layers"
    _check_module(model, "model", fn)
    X, y, _ = _xy(X, y, fn)
    specs = _resolve_scores(score, fn, allow_predictions=False)
    mods = dict(model.named_modules())
    if layers is None:
        children = list(model.named_children())
        if len(children) < 2:
            raise ValueError(f"{fn}: model has {len(children)} child module(s); pass layers=[names] to choose "
                             "which outputs to score")
        layers = [name for name, _ in children[:-1]]
    else:
        layers = [layers] if isinstance(layers, str) else list(layers)
        unknown = [n for n in layers if n not in mods or n == ""]
        if unknown:
            raise ValueError(f"{fn}: no module named {unknown} in model (its modules: "
                             f"{[n for n in mods if n][:12]})")
    t0 = time.perf_counter()
    feats = _collect(model, X, {n: (n, "out") for n in layers}, batch_size)
    t_forward = time.perf_counter() - t0
    rows = []
    for name in ["input"] + layers:
        ts = time.perf_counter()
        F = X.reshape(len(X), -1) if name == "input" else feats[name]
        values = {s: float(f(F, y)) for s, f, _ in specs}
        rows.append({"name": name, "module": "input" if name == "input" else type(mods[name]).__name__,
                     "dim": int(F.shape[1]), "values": values,
                     "seconds": time.perf_counter() - ts + (0 if name == "input" else t_forward / len(layers))})
    return Ranking("layers", [s for s, _, _ in specs], rows, time.perf_counter() - t0, len(y))


def rank_sources(sources: dict, X, y, score="logme", layer=None, batch_size: int = 1024) -> Ranking:
    """Score candidate pretrained models on the same labelled target data: which one to start from.

    Args:
        sources: {name: Module or checkpoint path}; a checkpoint must hold a Sequential MLP
            (``mlp_from_state``). The models are not changed.
        X: the target inputs (N, ...); y: class indices (N,) in 0..C-1.
        score: "logme" (default), "hscore", "transrate" (on features), "leep", "nce" (on the
            model's output: softmax probabilities, and their argmax for NCE), a function
            f(features, labels) -> float, or a list of these (one column each; the first ranks).
        layer: whose features to score: None (default) the input of each model's head (its last
            Linear: the penultimate layer), a module name (its output), or "input".
        batch_size: rows per forward pass.

    Returns:
        A ``Ranking`` (kind "sources"), rows in the order given.
    """
    fn = "rank_sources"
    if not isinstance(sources, dict) or not sources:
        raise TypeError(f"{fn}: sources must be a non-empty dict {{name: Module or checkpoint path}}, got "
                        f"{type(sources).__name__}")
    X, y, _ = _xy(X, y, fn)
    specs = _resolve_scores(score, fn, allow_predictions=True)
    models = {str(name): _as_model(m, fn, f"sources[{name!r}]") for name, m in sources.items()}
    t0 = time.perf_counter()
    rows = []
    for name, model in models.items():
        ts = time.perf_counter()
        if layer is None:
            tap, label = (_head_name(model, fn), "in"), "head input"
        elif layer == "input":
            tap, label = None, "input"
        else:
            if layer not in dict(model.named_modules()) or layer == "":
                raise ValueError(f"{fn}: source {name!r} has no module named {layer!r}")
            tap, label = (layer, "out"), f"output of {layer}"
        got = _collect(model, X, {} if tap is None else {"f": tap}, batch_size)
        F = X.reshape(len(X), -1) if tap is None else got["f"]
        probs = None
        values = {}
        for s, f, kind in specs:
            if kind == "features":
                values[s] = float(f(F, y))
            else:
                probs = _softmax(got["__output__"]) if probs is None else probs
                values[s] = float(f(probs, y))
        rows.append({"name": name, "module": label, "dim": int(F.shape[1]), "values": values,
                     "seconds": time.perf_counter() - ts})
    return Ranking("sources", [s for s, _, _ in specs], rows, time.perf_counter() - t0, len(y))


# ---------------------------------------------------------- strategies ----

@dataclass(frozen=True)
class Phase:
    """One training phase of a strategy.

    Attributes:
        name: what the phase does ("probe", "finetune", ...).
        prepare: ``prepare(model, head, weight_decay)`` makes the model ready in place
            (freezes, unfreezes, wraps layers) and returns what the optimizer trains: a list of
            Parameters or of SGD parameter-group dicts, or None for every parameter with
            ``requires_grad``. It runs on a fresh copy for each candidate.
        lrs: the learning rates to try (the grid; the best by validation is kept).
    """
    name: str
    prepare: object
    lrs: tuple


@dataclass(frozen=True)
class Strategy:
    """A recipe the search can try: its phases run in order, each from the best model of the one
    before. Phases shared with another strategy (the same ``Phase`` object first, as LP-FT's probe
    and the linear probe) are trained once and reused."""
    name: str
    description: str
    phases: tuple


def _prepare_probe(model, head, weight_decay):
    model.freeze()
    head.unfreeze()
    return None


def _prepare_all(model, head, weight_decay):
    model.unfreeze()
    return None


L2SP_ALPHA = 0.1


def _prepare_l2sp(model, head, weight_decay):
    model.unfreeze()
    return l2sp_groups(model, head, alpha=L2SP_ALPHA, weight_decay=weight_decay)


PROBE = Phase("probe", _prepare_probe, (0.01, 0.05, 0.2))
STRATEGIES: dict = {}


def register_strategy(strategy: Strategy, replace: bool = False) -> Strategy:
    """Add ``strategy`` to ``STRATEGIES`` (under ``strategy.name``), so ``search`` can try it by name.

    Example (BitFit: only the biases and the head train)::

        register_strategy(Strategy("bitfit", "biases and head train",
                                   (Phase("bitfit", lambda m, head, wd: tl.transfer.bitfit(m, head=head)
                                          and None, (0.01, 0.05)),)))
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(f"register_strategy: expected a Strategy, got {type(strategy).__name__}")
    if not strategy.phases or not all(isinstance(p, Phase) and p.lrs for p in strategy.phases):
        raise ValueError(f"register_strategy: {strategy.name!r} needs at least one Phase, each with learning rates")
    if strategy.name in STRATEGIES and not replace:
        raise ValueError(f"register_strategy: {strategy.name!r} is registered already (replace=True to change it)")
    STRATEGIES[strategy.name] = strategy
    return strategy


register_strategy(Strategy("probe", "linear probe: the backbone frozen, the head trained on cached features",
                           (PROBE,)))
register_strategy(Strategy("finetune", "fine-tuning: every weight trains",
                           (Phase("finetune", _prepare_all, (0.003, 0.01, 0.03)),)))
register_strategy(Strategy("lp_ft", "LP-FT: the best linear probe, then fine-tuning of everything",
                           (PROBE, Phase("finetune", _prepare_all, (0.001, 0.005)))))
register_strategy(Strategy("l2sp", "L2-SP: fine-tuning pulled toward the pretrained weights",
                           (Phase("l2sp", _prepare_l2sp, (0.003, 0.01, 0.03)),)))



def _prepare_bitfit(model, head, weight_decay):
    from .peft import bitfit
    model.unfreeze()
    bitfit(model, head=head)
    return None


LORA_RANK, LORA_ALPHA = 4, 8


def _prepare_lora(model, head, weight_decay):
    from ..nn import Linear
    from .peft import add_lora
    model.unfreeze()
    body = [(n, m) for n, m in model.named_modules() if type(m) is Linear and m is not head]
    if not body:
        raise ValueError("search: strategy 'lora' needs a Linear layer below the head")
    rank = min(LORA_RANK, *(min(m.in_features, m.out_features) for _, m in body))
    add_lora(model, rank=rank, alpha=LORA_ALPHA, targets=[n for n, _ in body])   # the head trains whole
    return None


register_strategy(Strategy("bitfit", "BitFit: only the biases and the head train",
                           (Phase("bitfit", _prepare_bitfit, (0.01, 0.03, 0.1)),)))
register_strategy(Strategy("lora", f"LoRA rank {LORA_RANK} on every Linear below the head, the head trained",
                           (Phase("lora", _prepare_lora, (0.01, 0.03, 0.1)),)))

DEFAULT_STRATEGIES = ("probe", "finetune", "lp_ft", "l2sp", "bitfit", "lora")


# -------------------------------------------------------------- report ----

@dataclass
class SearchReport:
    """What ``search`` tried and why it chose its winner.

    Attributes:
        rows: one dict per strategy, in the order tried: ``strategy``, ``status`` ("ok",
            "skipped (budget)"), ``lrs`` and ``epochs`` (per phase, the chosen ones),
            ``val_accuracy``, ``val_loss`` (at the best epoch; over all folds with k-fold),
            ``seconds``, ``trainable_params`` (of the last phase), ``candidates`` (every learning
            rate tried: phase, lr, epochs, val_accuracy, val_loss, status, seconds, reused).
        winner: the chosen strategy; reason: why, in words.
        validation: {"kind": "holdout" or "kfold", "folds", "n_train", "n_val"}.
        final: the retraining on all labels: {"strategy", "lrs", "epochs", "n_labels", "seconds"}.
        settings: the search's arguments (max_epochs, patience, ...).
        seconds: the whole search, the retraining included.
    """
    rows: list
    winner: str
    reason: str
    validation: dict
    final: dict
    settings: dict
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def row(self, strategy: str) -> dict:
        for r in self.rows:
            if r["strategy"] == strategy:
                return r
        raise KeyError(strategy)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "winner": self.winner, "reason": self.reason, "validation": self.validation,
                "final": self.final, "settings": self.settings, "seconds": self.seconds, **self.extra}

    def save(self, path) -> str:
        """Write the report as JSON (atomically); returns the path."""
        from ..io import atomic_write
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False).encode()
        atomic_write(os.fspath(path), lambda f: f.write(text))
        return os.fspath(path)

    @classmethod
    def load(cls, path) -> "SearchReport":
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        keys = ("rows", "winner", "reason", "validation", "final", "settings", "seconds")
        return cls(**{k: d[k] for k in keys}, extra={k: v for k, v in d.items() if k not in keys})

    def __str__(self):
        v = self.validation
        how = (f"{v['folds']}-fold cross-validation" if v["kind"] == "kfold" else
               f"a stratified hold-out of {v['n_val']}")
        head = ["strategy", "status", "lr", "epochs", "val acc", "val loss", "trainable", "time (s)"]
        body = []
        for r in self.rows:
            ok = r["status"] != "skipped (budget)"
            body.append([r["strategy"] + (" *" if r["strategy"] == self.winner else ""), r["status"],
                         " > ".join(f"{lr:g}" for lr in r["lrs"]) if ok else "-",
                         "+".join(str(e) for e in r["epochs"]) if ok else "-",
                         f"{r['val_accuracy']:.3f}" if ok else "-", f"{r['val_loss']:.4f}" if ok else "-",
                         f"{r['trainable_params']:,}" if ok else "-", f"{r['seconds']:.2f}"])
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        f = self.final
        out = [f"search on {v['n_train'] + v['n_val'] if v['kind'] == 'holdout' else v['n_train']} labels, "
               f"validated by {how}", line(head), "-" * len(line(head))]
        out += [line(b) for b in body]
        out.append(f"winner: {self.winner} ({self.reason}); retrained on all {f['n_labels']} labels for "
                   f"{'+'.join(str(e) for e in f['epochs'])} epochs ({self.seconds:.1f} s in all)")
        return "\n".join(out)

    __repr__ = __str__


# -------------------------------------------------------------- search ----

_MIN_VAL = 20            # fewer validation examples than this (or < 2 of a class): k-fold instead


@contextlib.contextmanager
def _seeded(seed: int):
    """tinytl's global generator reseeded inside the block, restored after (the new head's
    initialisation is then the same for every candidate, and the caller's stream is untouched)."""
    saved = _random._generator
    _random.manual_seed(seed)
    try:
        yield
    finally:
        _random._generator = saved


def _splits(y, c: int, val_fraction: float, folds, seed: int, fn: str):
    """[(train indices, val indices)], stratified; and the validation kind."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == k)) for k in range(c)]
    counts = [len(ix) for ix in per_class]
    if min(counts) < 2:
        raise ValueError(f"{fn}: class {int(np.argmin(counts))} has a single labelled example; validation "
                         "needs at least 2 of every class")
    if folds is None:
        n_val = [min(n - 1, max(1, int(round(val_fraction * n)))) for n in counts]
        if sum(n_val) >= _MIN_VAL and min(n_val) >= 2:
            val = np.sort(np.concatenate([ix[:k] for ix, k in zip(per_class, n_val)]))
            train = np.sort(np.concatenate([ix[k:] for ix, k in zip(per_class, n_val)]))
            return [(train, val)], "holdout"
        folds = max(2, min(int(round(1 / val_fraction)), min(counts)))
    out = []
    offsets = [int(rng.integers(folds)) for _ in range(c)]        # spreads the remainders over the folds
    for f in range(folds):
        val = np.sort(np.concatenate([ix[(np.arange(len(ix)) + o) % folds == f]
                                      for ix, o in zip(per_class, offsets)]))
        train = np.setdiff1d(np.arange(len(y)), val)
        out.append((train, val))
    return out, "kfold"


def _clone(obj):
    """A deep copy of a Module (or of a tuple of Modules sharing parameters): new Parameters holding
    copies of the arrays (memory layout kept), the same requires_grad; everything else copied."""
    from ..nn import Parameter
    mods = obj if isinstance(obj, tuple) else (obj,)
    memo = {}
    for m in mods:
        for p in m.parameters():
            if id(p) not in memo:
                memo[id(p)] = Parameter(p.data.copy(order="K"), requires_grad=p.requires_grad)
    return copy.deepcopy(obj, memo)


class _Run:
    """One fold's model in one candidate: its data, optimizer and shuffling."""

    def __init__(self, model, head, phase, lr, X, y, train, val, opts, seed):
        self.model, self.head = _clone((model, head))
        params = phase.prepare(self.model, self.head, opts["weight_decay"])
        if params is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = SGD(params, lr=lr, momentum=opts["momentum"], weight_decay=opts["weight_decay"])
        trainable = {id(p): p for g in self.opt.param_groups for p in g["params"] if p.requires_grad}
        self.trainable = int(sum(p.data.size for p in trainable.values()))
        head_ids = {id(p) for p in self.head.parameters()}
        like = next(iter(self.model.parameters()))
        # a frozen backbone under the head: train the head on its features, computed once
        cached = (isinstance(self.model, Sequential) and len(self.model) > 1 and self.model[-1] is self.head
                  and all(id(p) in head_ids for p in trainable.values()))
        if cached:
            backbone = self.model[:-1]
            self.net = self.head
            self.xt = backend.to_device(extract_features(backbone, X[train]), like.device)
            self.xv = backend.to_device(extract_features(backbone, X[val]), like.device)
        else:
            self.net = self.model
            self.xt = backend.to_device(X[train], like.device)
            self.xv = backend.to_device(X[val], like.device)
        self.yt = backend.to_device(y[train], like.device)
        self.yv = backend.to_device(y[val], like.device)
        self.yv_host = y[val]
        self.batch_size = min(opts["batch_size"], len(train))
        self.rng = np.random.default_rng(seed)
        self.loss_fn = CrossEntropyLoss()

    def epoch(self):
        self.net.train()
        order = self.rng.permutation(len(self.yt))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            loss = self.loss_fn(self.net(Tensor(self.xt[idx])), Tensor(self.yt[idx]))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()

    def evaluate(self):
        """(summed validation loss, correct count)."""
        self.net.eval()
        with no_grad():
            logits = self.net(Tensor(self.xv))
            loss = float(self.loss_fn(logits, Tensor(self.yv)).item()) * len(self.yv_host)
        pred = backend.to_numpy(logits.data).argmax(axis=1)
        return loss, int((pred == self.yv_host).sum())


class _Folds(Module):
    """The fold models of one candidate, as one Module (EarlyStopping keeps their joint state)."""

    def __init__(self, models):
        super().__init__()
        for i, m in enumerate(models):
            self.add_module(str(i), m)


def _train_candidate(starts, phase, lr, X, y, splits, opts, seed, clock, deadline):
    """Train one (phase, lr) on every fold in lockstep with early stopping on the mean
    validation loss; returns the result dict and the best (model, head) per fold."""
    t0 = clock()
    runs = [_Run(m, h, phase, lr, X, y, tr, va, opts, seed=[seed, f])
            for f, ((m, h), (tr, va)) in enumerate(zip(starts, splits))]
    n_val = sum(len(va) for _, va in splits)
    holder = _Folds([r.model for r in runs])
    stopper = EarlyStopping(opts["patience"], mode="min", restore_best=True)

    def evaluate():
        loss, correct = map(sum, zip(*(r.evaluate() for r in runs)))
        return loss / n_val, correct / n_val

    loss, acc = evaluate()
    stopper.step(loss, holder)
    best_acc, status = acc, "ok"
    for epoch in range(1, opts["max_epochs"] + 1):
        for r in runs:
            r.epoch()
        loss, acc = evaluate()
        stop = stopper.step(loss, holder)
        if stopper.improved:
            best_acc = acc
        if not math.isfinite(loss):
            status = f"diverged (epoch {epoch})"
        if stop:
            break
        if deadline is not None and clock() >= deadline:
            status = f"stopped by budget (epoch {epoch})"
            break
    stopper.restore(holder)
    result = {"phase": phase.name, "lr": float(lr), "epochs": int(stopper.best_step), "val_accuracy": float(best_acc),
              "val_loss": float(stopper.best), "status": status, "trainable_params": runs[0].trainable,
              "seconds": clock() - t0, "reused": False}
    return result, [(r.model, r.head) for r in runs]


def _key(result, select):
    acc, loss = result["val_accuracy"], result["val_loss"]
    return (-acc, loss) if select == "accuracy" else (loss, -acc)


def search(pretrained, X, y, *, strategies=DEFAULT_STRATEGIES, val_fraction: float = 0.2, folds=None,
           max_epochs: int = 100, patience: int = 10, budget_s=None, seed: int = 0, clock=None,
           lrs=None, batch_size: int = 32, momentum: float = 0.9, weight_decay: float = 5e-4,
           select: str = "accuracy"):
    """Choose how to transfer ``pretrained`` to the labelled data (X, y) by validation, and do it.

    1. Split the labels, stratified by class: a hold-out of ``val_fraction`` of each class,
       or, when that would give fewer than 20 validation examples or fewer than 2 of some class
       (and ``folds`` is None), k-fold cross-validation with k = round(1 / val_fraction)
       (at most the smallest class's count); ``folds=k`` asks for k folds.
    2. For each strategy (``STRATEGIES``: "probe", "finetune", "lp_ft", "l2sp", and any
       registered later), each phase, each learning rate of its grid: train from the
       pretrained weights with a new head (the same initialisation for every candidate) by
       SGD with momentum, one epoch at a time, with ``EarlyStopping`` on the validation loss
       (mean over the folds, the folds trained in lockstep): the weights of the best epoch are
       kept, not the last. A phase continues from its best learning rate of the phase before.
    3. The winner has the highest validation accuracy (``select="accuracy"``, ties broken by
       the lower loss) or the lowest loss (``select="loss"``); it is retrained on *all* the
       labels, from the pretrained weights, with its learning rates, for the epochs
       validation chose.

    Args:
        pretrained: the source Module with its head (never changed: every candidate trains a
            copy, whose last Linear is replaced by a fresh one with C outputs), or the path of
            a checkpoint of a Sequential MLP.
        X: the labelled inputs (N, ...); y: class indices (N,) in 0..C-1, at least 2 per class.
        strategies: names in ``STRATEGIES`` or ``Strategy`` objects, tried in order.
        val_fraction: the share of each class held out (0 < val_fraction < 1).
        folds: None (decided as above) or the number of folds (>= 2).
        max_epochs, patience: the most epochs per candidate, and the epochs without a better
            validation loss that stop it.
        budget_s: a time budget in seconds for step 2 (None: none). When it runs out, the
            candidate training stops at the end of its epoch and the candidates not started are
            skipped (reported); the retraining of the winner runs after it. At least one
            candidate always runs.
        seed: fixes the split, the head's initialisation and the shuffling (the search is
            deterministic under it).
        clock: the function giving the time in seconds (None: ``time.perf_counter``; a fake one in tests).
        lrs: {strategy name: learning rates} to replace the grid of a strategy's last phase.
        batch_size, momentum, weight_decay: the SGD settings of every candidate.
        select: "accuracy" or "loss", as above.

    Returns:
        (model, report): the model retrained on all the labels (in eval mode; its parameters
        frozen or not as the winning strategy left them: ``model.unfreeze()`` to train on), and
        a ``SearchReport``.
    """
    fn = "search"
    model0 = _as_model(pretrained, fn, "pretrained")
    X, y, c = _xy(X, y, fn)
    names = [strategies] if isinstance(strategies, (str, Strategy)) else list(strategies)
    chosen = []
    for s in names:
        if isinstance(s, Strategy):
            chosen.append(s)
        elif s in STRATEGIES:
            chosen.append(STRATEGIES[s])
        else:
            raise ValueError(f"{fn}: unknown strategy {s!r}; registered: {sorted(STRATEGIES)}")
    if not chosen or len({s.name for s in chosen}) != len(chosen):
        raise ValueError(f"{fn}: strategies must be a non-empty list of distinct strategies, got {names}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating)) \
            or not 0 < val_fraction < 1:
        raise ValueError(f"{fn}: val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if folds is not None and (isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2):
        raise ValueError(f"{fn}: folds must be None or an integer >= 2, got {folds!r}")
    max_epochs = _check_positive(max_epochs, "max_epochs", fn, integer=True)
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
        raise ValueError(f"{fn}: patience must be an integer >= 0, got {patience!r}")
    if budget_s is not None:
        budget_s = _check_positive(budget_s, "budget_s", fn)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{fn}: seed must be an integer >= 0, got {seed!r}")
    clock = time.perf_counter if clock is None else clock
    if not callable(clock):
        raise TypeError(f"{fn}: clock must be a function returning seconds, got {type(clock).__name__}")
    if select not in ("accuracy", "loss"):
        raise ValueError(f"{fn}: select must be 'accuracy' or 'loss', got {select!r}")
    lrs = {} if lrs is None else dict(lrs)
    for k, v in lrs.items():
        if k not in {s.name for s in chosen}:
            raise ValueError(f"{fn}: lrs names {k!r}, which is not among the strategies {[s.name for s in chosen]}")
        if not v or any(_check_positive(lr, f"lrs[{k!r}]", fn) <= 0 for lr in v):
            raise ValueError(f"{fn}: lrs[{k!r}] must be a non-empty list of positive learning rates")
    opts = {"max_epochs": max_epochs, "patience": int(patience), "batch_size": _check_positive(
        batch_size, "batch_size", fn, integer=True), "momentum": float(momentum), "weight_decay": float(weight_decay)}
    if folds is not None and folds > min(np.bincount(y)):
        raise ValueError(f"{fn}: folds={folds} but the smallest class has {min(np.bincount(y))} examples")

    splits, kind = _splits(y, c, float(val_fraction), folds, int(seed), fn)
    t_start = clock()
    deadline = None if budget_s is None else t_start + budget_s

    def fresh():
        model = _clone(model0)
        with _seeded(int(seed)):
            head = replace_head(model, c)
        return model, head

    start = fresh()
    cache = {}                # tuple of Phase ids -> (best result, best (model, head) per fold)
    rows, ran = [], 0
    for strat in chosen:
        ts = clock()
        if deadline is not None and ran > 0 and clock() >= deadline:
            rows.append({"strategy": strat.name, "status": "skipped (budget)", "lrs": [], "epochs": [],
                         "val_accuracy": None, "val_loss": None, "seconds": 0.0, "trainable_params": None,
                         "candidates": []})
            continue
        starts = [start] * len(splits)
        chain, candidates, per_phase, cut = (), [], [], False
        for pi, phase in enumerate(strat.phases):
            chain = chain + (id(phase),)
            last = pi == len(strat.phases) - 1
            grid = lrs[strat.name] if last and strat.name in lrs else phase.lrs
            key = chain if not (last and strat.name in lrs) else None      # a custom grid is not shared
            if key in cache:
                phase_best = cache[key]
                candidates.append({**phase_best[0], "phase_index": pi, "reused": True, "seconds": 0.0})
            else:
                phase_best = None
                for lr in grid:
                    if deadline is not None and ran > 0 and clock() >= deadline:
                        cut = True
                        break
                    result, models = _train_candidate(starts, phase, lr, X, y, splits, opts, int(seed), clock,
                                                      deadline)
                    result["phase_index"] = pi
                    ran += 1
                    candidates.append(result)
                    if phase_best is None or _key(result, select) < _key(phase_best[0], select):
                        phase_best = (result, models)
                if phase_best is None:
                    break
                if not cut and key is not None:
                    cache[key] = phase_best
            per_phase.append(phase_best[0])
            starts = phase_best[1]
            if cut:
                break
        if len(per_phase) < len(strat.phases):
            rows.append({"strategy": strat.name, "status": "skipped (budget)", "lrs": [], "epochs": [],
                         "val_accuracy": None, "val_loss": None, "seconds": clock() - ts, "trainable_params": None,
                         "candidates": candidates, "description": strat.description})
            continue
        best = per_phase[-1]
        rows.append({"strategy": strat.name, "status": "ok (grid cut by budget)" if cut else "ok",
                     "lrs": [r["lr"] for r in per_phase], "epochs": [r["epochs"] for r in per_phase],
                     "val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"], "seconds": clock() - ts,
                     "trainable_params": best["trainable_params"], "candidates": candidates,
                     "description": strat.description})

    ok = [r for r in rows if r["val_accuracy"] is not None]
    ranked = sorted(ok, key=lambda r: _key(r, select))
    win = ranked[0]
    reason = _reason(ranked, select, kind)

    # retrain the winner on all the labels
    tf = clock()
    strat = next(s for s in chosen if s.name == win["strategy"])
    model, head = fresh()
    everything = np.arange(len(y))
    for pi, (phase, lr, epochs) in enumerate(zip(strat.phases, win["lrs"], win["epochs"])):
        run = _Run(model, head, phase, lr, X, y, everything, everything[:1], opts, seed=[int(seed), 1000 + pi])
        for _ in range(epochs):
            run.epoch()
        model, head = run.model, run.head
    model.eval()
    final = {"strategy": win["strategy"], "lrs": win["lrs"], "epochs": win["epochs"], "n_labels": int(len(y)),
             "seconds": clock() - tf}
    n_val = sum(len(va) for _, va in splits)
    validation = {"kind": kind, "folds": len(splits) if kind == "kfold" else None,
                  "n_train": int(len(y)) if kind == "kfold" else int(len(splits[0][0])), "n_val": int(n_val)}
    settings = {"strategies": [s.name for s in chosen], "val_fraction": float(val_fraction), "folds": folds,
                "max_epochs": max_epochs, "patience": int(patience), "budget_s": budget_s, "seed": int(seed),
                "batch_size": opts["batch_size"], "momentum": opts["momentum"],
                "weight_decay": opts["weight_decay"], "select": select}
    report = SearchReport(rows, win["strategy"], reason, validation, final, settings, seconds=clock() - t_start)
    return model, report


def _reason(ranked, select, kind) -> str:
    w = ranked[0]
    where = "cross-validated" if kind == "kfold" else "hold-out"
    if len(ranked) == 1:
        return f"the only strategy trained; {where} accuracy {w['val_accuracy']:.3f}"
    r = ranked[1]
    if select == "accuracy":
        if w["val_accuracy"] > r["val_accuracy"]:
            return (f"highest {where} accuracy, {w['val_accuracy']:.3f} vs {r['val_accuracy']:.3f} for "
                    f"{r['strategy']}")
        return (f"tied on {where} accuracy ({w['val_accuracy']:.3f}) with {r['strategy']}, lower validation "
                f"loss ({w['val_loss']:.4f} vs {r['val_loss']:.4f})")
    return f"lowest {where} loss, {w['val_loss']:.4f} vs {r['val_loss']:.4f} for {r['strategy']}"
