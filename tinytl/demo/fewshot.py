"""The transfer-learning demo: does pretraining on one task help another with few labels?

``tinytl demo`` (or ``run_demo(config)``) runs one small, complete experiment:

1. **Source task**: digits 0-4 of MNIST-1D (generated offline, see
   ``tinytl/datasets.py``), all their training examples. An MLP
   40-H-H-5 is pretrained on them, once per seed.
2. **Target task**: digits 5-9, with only k labelled examples per class
   (k in 5, 10, 20, 50, 100), scored on the whole target test split.
3. **Five ways to learn the target**, each from the same pretrained network
   (a fresh head replaces the source one):

   - *from scratch*: a new random MLP of the same shape (the baseline);
   - *linear probe*: the backbone stays frozen, its features are computed once
     (``transfer.extract_features``) and only the head is trained;
   - *fine-tune*: every weight trains, with a smaller learning rate;
   - *LP-FT*: the linear probe's head first, then fine-tuning of everything
     (Kumar et al., 2022): the head no longer sends random gradients into the
     pretrained features;
   - *L2-SP*: fine-tuning with the backbone pulled toward its pretrained
     weights instead of toward zero (``transfer.l2sp_groups``, Li et al., 2018).

Each cell of the table is the mean ± standard deviation (over seeds, ddof=1)
of the test accuracy. A seed fixes the source network's initialisation and
shuffling, which k examples are labelled (the k-shot sets are nested: the 10
examples of a class include the 5), and every initialisation on the target.
Every method trains for the same number of SGD steps on the target, whatever
k is (so 5 labels per class does not mean 25 steps).

Each seed pretrains its own source network (about 0.7 s each), reused by
every method and every k of that seed, so the spread over seeds includes the
pretraining's. Hyperparameters were set by hand, a few values each, on the
default run (the test split was looked at, as in most small demos: treat the
figures as an illustration, not a benchmark). The baseline got the same
care: its learning rate and weight decay are the best of those tried, and
training it 2-3x longer did not help it at 5-10 labels.

BLAS runs single-threaded during the experiment (see ``_blas_threads``): the
matrices are small, and on a busy 2-core machine OpenBLAS's spinning threads
made the full run 15-30x slower.

Read next: ``tinytl/transfer/`` (the tools used here), ``docs/transfer.md``.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .. import backend
from .. import nn
from .. import transfer as T
from .._random import manual_seed
from ..data import DataLoader
from ..optim import SGD
from .section import PLOT_HINT, Section, markdown_table

__all__ = ["DemoConfig", "METHODS", "run_demo", "format_table", "save_results", "plot_results",
           "parse_classes", "parse_shots", "PLOT_HINT"]

METHODS = {                      # key -> label in the table and the plot, in display order
    "scratch": "from scratch",
    "probe": "linear probe",
    "finetune": "fine-tune",
    "lp_ft": "LP-FT",
    "l2sp": "L2-SP",
}
DATASETS = ("mnist1d", "mnist-idx")


# ----------------------------------------------------------------- config ----

@dataclass
class DemoConfig:
    """Everything that shapes the experiment (stored in the results JSON).

    Attributes:
        data: "mnist1d" (generated offline) or "mnist-idx" (MNIST / Fashion-MNIST
            IDX files in ``path``, read by ``datasets.load_mnist``).
        path: the folder of IDX files (for "mnist-idx").
        source_classes, target_classes: disjoint lists of labels.
        shots: labelled examples per target class, one experiment each.
        seeds: how many seeds (0, 1, ...); mean and std are over them.
        hidden: width H of the MLP in-H-H-classes.
        epochs: pretraining epochs over the source data.
        target_steps: SGD steps on the target for every method and shot.
        device: "cpu" or "cuda".
        num_samples: size of the generated MNIST-1D (train + test).
        quick: the reduced settings of ``--quick`` (recorded only).
    """
    data: str = "mnist1d"
    path: str | None = None
    source_classes: list = field(default_factory=lambda: [0, 1, 2, 3, 4])
    target_classes: list = field(default_factory=lambda: [5, 6, 7, 8, 9])
    shots: list = field(default_factory=lambda: [5, 10, 20, 50, 100])
    seeds: int = 3
    hidden: int = 128
    epochs: int = 40
    target_steps: int = 500
    device: str = "cpu"
    num_samples: int = 10000
    quick: bool = False
    # optimisation (SGD with momentum 0.9 everywhere)
    pretrain_lr: float = 0.05
    pretrain_batch: int = 64
    target_batch: int = 32
    weight_decay: float = 5e-4
    scratch_lr: float = 0.05
    scratch_weight_decay: float = 1e-3
    probe_lr: float = 0.05
    finetune_lr: float = 0.01
    lp_ft_lr: float = 0.005
    l2sp_lr: float = 0.01
    l2sp_alpha: float = 0.1
    blas_threads: int = 1          # 0: leave the BLAS thread pool as it is (see _blas_threads)

    @classmethod
    def quick_config(cls, **overrides) -> "DemoConfig":
        """The ``--quick`` settings: 2 seeds, short pretraining, 150 target steps (a few seconds)."""
        base = dict(seeds=2, epochs=10, target_steps=150, quick=True)
        base.update(overrides)
        return cls(**base)


def parse_classes(text: str, what: str = "classes") -> list:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,2,7' -> [0, 2, 7]; '0-2,7' -> [0, 1, 2, 7].

    Raises:
        ValueError: an empty, malformed or repeated entry (the message names ``what``).
    """
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(s) for s in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"{what}: expected labels such as '0-4' or '0,1,2', got {text!r}") from None
    if any(c < 0 for c in out):
        raise ValueError(f"{what}: labels must be >= 0, got {text!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: a label is listed twice in {text!r}")
    return out


def parse_shots(text: str) -> list:
    """'5,10,20' -> [5, 10, 20] (positive, distinct, sorted)."""
    try:
        shots = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--shots: expected positive integers such as '5,10,20', got {text!r}") from None
    if not shots or any(k <= 0 for k in shots):
        raise ValueError(f"--shots: expected positive integers such as '5,10,20', got {text!r}")
    if len(set(shots)) != len(shots):
        raise ValueError(f"--shots: a value is listed twice in {text!r}")
    return sorted(shots)


def _validate(cfg: DemoConfig):
    """Check everything that does not need the data; raises ValueError with one line."""
    if cfg.data not in DATASETS:
        raise ValueError(f"--data must be one of {', '.join(DATASETS)}, got {cfg.data!r}")
    if cfg.data == "mnist-idx" and not cfg.path:
        raise ValueError("--data mnist-idx needs --path DIR (a folder with train-images-idx3-ubyte etc.)")
    for name in ("seeds", "hidden", "epochs", "target_steps", "num_samples", "pretrain_batch", "target_batch"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    src, tgt = list(cfg.source_classes), list(cfg.target_classes)
    if len(src) < 2 or len(tgt) < 2:
        raise ValueError(f"source and target tasks need at least 2 classes each, got {src} and {tgt}")
    both = sorted(set(src) & set(tgt))
    if both:
        raise ValueError(f"source and target classes overlap ({', '.join(map(str, both))}): "
                         "the target task must be new to the network")
    if not cfg.shots or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0
                            for k in cfg.shots):
        raise ValueError(f"shots must be positive integers, got {cfg.shots!r}")
    if cfg.device not in backend.DEVICES:
        raise ValueError(f"--device must be 'cpu' or 'cuda', got {cfg.device!r}")
    if cfg.device == "cuda":
        from .. import cuda
        if not cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available here (it needs CuPy and a GPU: "
                             "pip install 'tinytl[cuda12]' or 'tinytl[cuda13]')")


# ------------------------------------------------------------------- data ----

def _load_data(cfg: DemoConfig):
    """(x_train, y_train, x_test, y_test) as float32 / int64 NumPy arrays."""
    from .. import datasets
    if cfg.data == "mnist1d":
        d = datasets.mnist1d(num_samples=cfg.num_samples, seed=42)
        return d["x"], d["y"], d["x_test"], d["y_test"]
    x, y = datasets.load_mnist(cfg.path, "train")
    xt, yt = datasets.load_mnist(cfg.path, "t10k")
    return x, y, xt, yt


def _task(x, y, classes):
    """The rows of ``classes``, relabelled 0..len(classes)-1 in the order given."""
    mask = np.isin(y, classes)
    remap = np.full(int(max(y.max(), max(classes))) + 1, -1, np.int64)
    remap[classes] = np.arange(len(classes))
    return np.ascontiguousarray(x[mask], dtype=np.float32), remap[y[mask]]


def _check_data(cfg, x, y, xt, yt):
    present = set(np.unique(y).tolist())
    for what, cls in (("--source-classes", cfg.source_classes), ("--target-classes", cfg.target_classes)):
        absent = [c for c in cls if c not in present]
        if absent:
            raise ValueError(f"{what}: label(s) {absent} do not occur in the data "
                             f"(it has {min(present)}..{max(present)})")
    counts = {c: int((y == c).sum()) for c in cfg.target_classes}
    fewest = min(counts, key=counts.get)
    if max(cfg.shots) > counts[fewest]:
        raise ValueError(f"--shots: {max(cfg.shots)} labels per class asked, but target class {fewest} has "
                         f"only {counts[fewest]} training examples")
    if not np.isin(yt, cfg.target_classes).any():
        raise ValueError("the test split holds no example of the target classes")


def _labelled_subsets(y_target, n_classes, shots, seed):
    """For each k in shots: indices of k examples per class. Nested: larger k includes smaller k."""
    rng = np.random.default_rng(10_000 + seed)
    order = [rng.permutation(np.flatnonzero(y_target == c)) for c in range(n_classes)]
    return {k: np.concatenate([o[:k] for o in order]) for k in shots}


# --------------------------------------------------------------- training ----

def _mlp(n_in, hidden, n_out, device):
    """in -> hidden -> hidden -> n_out with ReLUs; parameter names 0.*, 2.*, 4.* (4.* is the head)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out)).to(device)


def _train(model, X, y, *, steps=None, epochs=None, lr, batch_size, weight_decay=0.0, params=None, seed=0,
           device="cpu", on_epoch=None):
    """Minibatch SGD (momentum 0.9) for a number of steps or of epochs; ``params`` may be groups."""
    opt = SGD(list(model.parameters()) if params is None else params, lr=lr, momentum=0.9,
              weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(X, y, batch_size=min(batch_size, len(X)), shuffle=True, seed=seed, device=device)
    model.train()
    done, epoch = 0, 0
    while (steps is not None and done < steps) or (epochs is not None and epoch < epochs):
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if steps is not None and done >= steps:
                break
        epoch += 1
        if on_epoch is not None:
            on_epoch()
    model.eval()
    return model


def _accuracy(model, X, y) -> float:
    """Top-1 accuracy; the forward pass runs without a graph (``extract_features`` of the whole model)."""
    logits = T.extract_features(model, X, batch_size=1024)
    return float((logits.argmax(axis=1) == y).mean())


def _from_pretrained(pretrained_state, n_in, hidden, n_out, device):
    """A fresh model holding the pretrained backbone and a new random head."""
    model = _mlp(n_in, hidden, n_out, device)
    T.transfer_weights(pretrained_state, model)      # every name and shape that matches
    T.replace_head(model, n_out)                     # the source head never fits the target task
    return model


# ---------------------------------------------------------------- methods ----
# Each takes the labelled set (X, y), the pretrained state and the test set, and returns an accuracy.

def _fit_scratch(ctx, X, y, seed):
    model = _mlp(ctx.n_in, ctx.cfg.hidden, ctx.n_out, ctx.cfg.device)
    _train(model, X, y, steps=ctx.cfg.target_steps, lr=ctx.cfg.scratch_lr, batch_size=ctx.cfg.target_batch,
           weight_decay=ctx.cfg.scratch_weight_decay, seed=seed, device=ctx.cfg.device)
    return model


def _probe(ctx, X, y, seed):
    """Linear probe: train only the head, on features the frozen backbone computed once."""
    model = _from_pretrained(ctx.pretrained[seed], ctx.n_in, ctx.cfg.hidden, ctx.n_out, ctx.cfg.device)
    backbone, head = model[:-1], model[-1]
    T.freeze(backbone)
    feats = T.extract_features(backbone, X)
    _train(head, feats, y, steps=ctx.cfg.target_steps, lr=ctx.cfg.probe_lr, batch_size=ctx.cfg.target_batch,
           weight_decay=ctx.cfg.weight_decay, seed=seed, device=ctx.cfg.device)
    return model, backbone, head


def _fit_probe(ctx, X, y, seed):
    return _probe(ctx, X, y, seed)[0]


def _fit_finetune(ctx, X, y, seed):
    model = _from_pretrained(ctx.pretrained[seed], ctx.n_in, ctx.cfg.hidden, ctx.n_out, ctx.cfg.device)
    _train(model, X, y, steps=ctx.cfg.target_steps, lr=ctx.cfg.finetune_lr, batch_size=ctx.cfg.target_batch,
           weight_decay=ctx.cfg.weight_decay, seed=seed, device=ctx.cfg.device)
    return model


def _fit_lp_ft(ctx, X, y, seed):
    model, backbone, _ = _probe(ctx, X, y, seed)            # the same probe as the linear-probe method
    T.unfreeze(model)
    _train(model, X, y, steps=ctx.cfg.target_steps, lr=ctx.cfg.lp_ft_lr, batch_size=ctx.cfg.target_batch,
           weight_decay=ctx.cfg.weight_decay, seed=seed, device=ctx.cfg.device)
    return model


def _fit_l2sp(ctx, X, y, seed):
    model = _from_pretrained(ctx.pretrained[seed], ctx.n_in, ctx.cfg.hidden, ctx.n_out, ctx.cfg.device)
    groups = T.l2sp_groups(model, model[-1], alpha=ctx.cfg.l2sp_alpha, weight_decay=ctx.cfg.weight_decay)
    _train(model, X, y, steps=ctx.cfg.target_steps, lr=ctx.cfg.l2sp_lr, batch_size=ctx.cfg.target_batch,
           params=groups, seed=seed, device=ctx.cfg.device)
    return model


FIT_FNS = {"scratch": _fit_scratch, "probe": _fit_probe, "finetune": _fit_finetune, "lp_ft": _fit_lp_ft,
           "l2sp": _fit_l2sp}   # method -> fit(ctx, X, y, seed) -> the trained target model


def _m_probe(ctx, X, y, seed):
    _, backbone, head = _probe(ctx, X, y, seed)
    feats_test = ctx.test_features(seed, backbone)         # the test set's features, once per seed
    return _accuracy(head, feats_test, ctx.y_test)


def _accuracy_of(fit):
    return lambda ctx, X, y, seed: _accuracy(fit(ctx, X, y, seed), ctx.x_test, ctx.y_test)


_METHOD_FNS = {m: (_m_probe if m == "probe" else _accuracy_of(fit)) for m, fit in FIT_FNS.items()}


class _Context:
    def __init__(self, cfg, n_in, n_out, x_test, y_test):
        self.cfg, self.n_in, self.n_out = cfg, n_in, n_out
        self.x_test, self.y_test = x_test, y_test
        self.pretrained = {}           # seed -> state dict of the source network
        self._test_feats = {}

    def test_features(self, seed, backbone):
        if seed not in self._test_feats:
            self._test_feats[seed] = T.extract_features(backbone, self.x_test, batch_size=1024)
        return self._test_feats[seed]


# ----------------------------------------------------------- BLAS threads ----
# The GEMMs here are tiny (64 x 128 x 128): a BLAS thread team costs more than it saves,
# and on a busy machine it is a disaster. OpenBLAS threads spin while they wait; with
# other processes holding the cores, a training step measured 24 ms instead of 0.2 ms
# (2 cores, two busy processes beside). One thread is the robust choice for this demo.

_OPENBLAS_SYMBOLS = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                     ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                     ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                     ("openblas_get_num_threads", "openblas_set_num_threads")]


def _openblas_controls():
    """(get, set) pairs of every OpenBLAS loaded in this process (Linux: from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return []
    controls = []
    for path in libs:
        try:
            lib = ctypes.CDLL(path)            # already loaded: the same handle
        except OSError:
            continue
        for get_name, set_name in _OPENBLAS_SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                controls.append((getattr(lib, get_name), getattr(lib, set_name)))
                break
    return controls


@contextlib.contextmanager
def _blas_threads(n: int):
    """Limit the BLAS thread pool to ``n`` threads inside the block (0: do nothing).

    Uses threadpoolctl when it is installed, else OpenBLAS's own setter through
    ctypes; does nothing where neither applies, or when the user set
    OPENBLAS_NUM_THREADS / OMP_NUM_THREADS (their choice wins). Yields what it did.
    """
    if n <= 0 or os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        yield "unchanged"
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=n, user_api="blas"):
            yield f"{n} (threadpoolctl)"
        return
    controls = _openblas_controls()
    previous = [(get(), set_) for get, set_ in controls]
    for _, set_ in previous:
        set_(n)
    try:
        yield f"{n} (openblas)" if controls else "unchanged"
    finally:
        for prev, set_ in previous:
            set_(prev)


# -------------------------------------------------------------- progress ----

def _bar(enabled, total, desc, unit="run"):
    """A tqdm bar on stderr, or a do-nothing stand-in (no tqdm, --quiet, or stderr not a terminal)."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            return _NoBar()
        try:
            size = os.get_terminal_size(sys.stderr.fileno())
        except (OSError, ValueError, AttributeError):
            size = os.terminal_size((0, 0))
        # a terminal that reports no size (0 x 0) would hide the bar: assume 80 x 24
        sizing = dict(dynamic_ncols=True) if size.columns > 0 and size.lines > 0 else dict(ncols=80, nrows=24)
        return tqdm(total=total, desc=f"{desc:<13}", unit=unit, file=sys.stderr, leave=True, **sizing)
    return _NoBar()


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


# ------------------------------------------------------------ experiment ----

def run_demo(config=None, progress: bool = False, shared=None) -> dict:
    """Run the experiment; return the results (nothing is written: see ``save_results``).

    Args:
        config: a ``DemoConfig``, a dict of its fields, or None for the defaults.
        progress: show tqdm bars on stderr (when tqdm is installed).
        shared: a ``tinytl.demo.report.DemoContext`` whose data and pretrained networks to
            reuse (the report passes its own; None makes a fresh one).

    Returns:
        A JSON-ready dict: ``config``, ``methods`` (key -> label), ``shots``,
        ``seeds``, ``accuracy[method][str(k)]`` (one test accuracy per seed),
        ``summary[method][str(k)]`` (``mean``, ``std``), ``pretrain`` (per seed:
        source test accuracy, seconds), ``data`` (sizes), ``timings`` (seconds),
        ``backend`` (``tinytl.kernels.backend_info()``) and ``versions``.

    Raises:
        ValueError: an invalid configuration (one line, naming the option).
        FileNotFoundError, ImportError: missing data files or packages.
    """
    cfg = as_config(config, "run_demo")
    with _blas_threads(cfg.blas_threads) as blas:
        results = _run(cfg, progress, shared)
    results["blas_threads"] = blas
    return results


def as_config(config, fn: str = "run_demo") -> DemoConfig:
    """A checked copy of ``config`` (a DemoConfig, a dict of its fields, or None for the defaults)."""
    if config is None:
        cfg = DemoConfig()
    elif isinstance(config, DemoConfig):
        cfg = copy.deepcopy(config)
    elif isinstance(config, dict):
        known = {f.name for f in fields(DemoConfig)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{fn}: unknown config key(s) {unknown}")
        cfg = DemoConfig(**config)
    else:
        raise TypeError(f"{fn}: config must be a DemoConfig or a dict, got {type(config).__name__}")
    cfg.shots = sorted(int(k) for k in cfg.shots)
    _validate(cfg)
    return cfg


def _tasks(cfg: DemoConfig) -> dict:
    """The source and target tasks of ``cfg`` as NumPy arrays (checked against the config)."""
    t0 = time.perf_counter()
    x, y, xt, yt = _load_data(cfg)
    _check_data(cfg, x, y, xt, yt)
    xs, ys = _task(x, y, cfg.source_classes)
    xs_test, ys_test = _task(xt, yt, cfg.source_classes)
    xT, yT = _task(x, y, cfg.target_classes)
    xT_test, yT_test = _task(xt, yt, cfg.target_classes)
    return dict(x=x, y=y, x_test=xt, y_test=yt, xs=xs, ys=ys, xs_test=xs_test, ys_test=ys_test,
                xT=xT, yT=yT, xT_test=xT_test, yT_test=yT_test, n_in=int(x.shape[1]),
                n_src=len(cfg.source_classes), n_tgt=len(cfg.target_classes),
                seconds=time.perf_counter() - t0)


def _pretrain(cfg: DemoConfig, tasks: dict, seed: int, on_epoch=None) -> dict:
    """The source network of ``seed``: {"state": state dict, "source_test_accuracy", "seconds"}."""
    ts = time.perf_counter()
    manual_seed(seed)
    model = _mlp(tasks["n_in"], cfg.hidden, tasks["n_src"], cfg.device)
    _train(model, tasks["xs"], tasks["ys"], epochs=cfg.epochs, lr=cfg.pretrain_lr, batch_size=cfg.pretrain_batch,
           weight_decay=cfg.weight_decay, seed=seed, device=cfg.device, on_epoch=on_epoch)
    return {"state": model.state_dict(), "source_test_accuracy": _accuracy(model, tasks["xs_test"], tasks["ys_test"]),
            "seconds": time.perf_counter() - ts}


def _run(cfg: DemoConfig, progress: bool, shared=None) -> dict:
    """The experiment itself (``run_demo`` checked ``cfg`` and set up BLAS). ``shared`` (a
    ``report.DemoContext``) hands over the tasks and the pretrained networks, so the report's
    other sections reuse them instead of training their own."""
    t0 = time.perf_counter()
    if shared is None:
        from .report import DemoContext
        shared = DemoContext(cfg)
    tasks = shared.tasks()
    xT, yT = tasks["xT"], tasks["yT"]
    n_in, n_tgt = tasks["n_in"], tasks["n_tgt"]
    xs, xs_test, xT_test, yT_test = tasks["xs"], tasks["xs_test"], tasks["xT_test"], tasks["yT_test"]
    ctx = _Context(cfg, n_in, n_tgt, backend.to_device(xT_test, cfg.device), yT_test)
    timings = {"data_s": tasks["seconds"]}

    # 1. pretrain one source network per seed (or take the ones the report trained already)
    pretrain = []
    bar = _bar(progress, cfg.seeds * cfg.epochs, "pretrain", unit="epoch")
    t1 = time.perf_counter()
    try:
        for seed in range(cfg.seeds):
            p = shared.pretrained(seed, on_epoch=bar.update)
            ctx.pretrained[seed] = p["state"]
            pretrain.append({"seed": seed, "source_test_accuracy": p["source_test_accuracy"],
                             "seconds": p["seconds"]})
    finally:
        bar.close()
    timings["pretrain_s"] = time.perf_counter() - t1

    # 2. every method, on every labelled set, from every pretrained network
    subsets = {seed: _labelled_subsets(yT, n_tgt, cfg.shots, seed) for seed in range(cfg.seeds)}
    accuracy, timings["methods_s"] = {}, {}
    for key, fn in _METHOD_FNS.items():
        bar = _bar(progress, cfg.seeds * len(cfg.shots), METHODS[key])
        tm = time.perf_counter()
        accuracy[key] = {str(k): [] for k in cfg.shots}
        try:
            for seed in range(cfg.seeds):
                for k in cfg.shots:
                    idx = subsets[seed][k]
                    manual_seed(1000 * (seed + 1) + k)      # the same inits for every method
                    accuracy[key][str(k)].append(fn(ctx, xT[idx], yT[idx], seed))
                    bar.update()
        finally:
            bar.close()
        timings["methods_s"][key] = time.perf_counter() - tm
    timings["total_s"] = time.perf_counter() - t0

    summary = {m: {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                   for k, v in per.items()} for m, per in accuracy.items()}
    from .. import __version__
    from ..kernels import backend_info
    return {
        "config": asdict(cfg),
        "methods": dict(METHODS),
        "shots": list(cfg.shots),
        "seeds": list(range(cfg.seeds)),
        "accuracy": accuracy,
        "summary": summary,
        "pretrain": pretrain,
        "data": {"name": cfg.data, "input_dim": int(n_in), "source_train": int(len(xs)),
                 "source_test": int(len(xs_test)), "target_train_pool": int(len(xT)),
                 "target_test": int(len(xT_test))},
        "timings": timings,
        "backend": backend_info(),
        "versions": {"tinytl": __version__, "numpy": np.__version__, "python": platform.python_version()},
    }


# ---------------------------------------------------------------- output ----

def _fmt_classes(cls):
    cls = list(cls)
    if len(cls) > 2 and cls == list(range(cls[0], cls[-1] + 1)):
        return f"{cls[0]}-{cls[-1]}"
    return ",".join(map(str, cls))


def format_table(results: dict) -> str:
    """The results as a text table: one row per method, one column per shot, mean ± std in %."""
    cfg, shots = results["config"], results["shots"]
    n_seeds = len(results["seeds"])
    src = [p["source_test_accuracy"] for p in results["pretrain"]]
    lines = [f"source: digits {_fmt_classes(cfg['source_classes'])}, {results['data']['source_train']} examples; "
             f"pretrained test accuracy {100 * np.mean(src):.1f}%"
             + (f" ± {100 * np.std(src, ddof=1):.1f}" if len(src) > 1 else ""),
             f"target: digits {_fmt_classes(cfg['target_classes'])}, accuracy (%) on "
             f"{results['data']['target_test']} test examples, mean ± std over {n_seeds} seed"
             f"{'s' if n_seeds != 1 else ''}"]
    w = max(len(v) for v in results["methods"].values())
    cells = {m: [f"{100 * results['summary'][m][str(k)]['mean']:.1f} ± {100 * results['summary'][m][str(k)]['std']:.1f}"
                 for k in shots] for m in results["methods"]}
    cw = max(len("labels/class"), max(len(c) for row in cells.values() for c in row))
    head = f"{'labels/class':<{w}}  " + "  ".join(f"{k:>{cw}}" for k in shots)
    lines += [head, "-" * len(head)]
    for m, label in results["methods"].items():
        lines.append(f"{label:<{w}}  " + "  ".join(f"{c:>{cw}}" for c in cells[m]))
    t = results["timings"]
    lines.append(f"({t['total_s']:.1f} s: data {t['data_s']:.1f}, pretraining {t['pretrain_s']:.1f}, "
                 + ", ".join(f"{results['methods'][m]} {s:.1f}" for m, s in t["methods_s"].items()) + ")")
    return "\n".join(lines)


def plot_results(results: dict, path) -> bool:
    """Accuracy vs labels per class, one line per method, shaded ±std; a PNG at ``path``.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend change).

    Returns:
        True when written; False when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    shots = results["shots"]
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for m, label in results["methods"].items():
        mean = np.array([results["summary"][m][str(k)]["mean"] for k in shots]) * 100
        std = np.array([results["summary"][m][str(k)]["std"] for k in shots]) * 100
        (line,) = ax.plot(shots, mean, marker="o", label=label)
        ax.fill_between(shots, mean - std, mean + std, color=line.get_color(), alpha=0.18, linewidth=0)
    n_target = len(results["config"]["target_classes"])
    ax.axhline(100 / n_target, color="gray", linestyle=":", linewidth=1, label=f"chance (1/{n_target})")
    ax.set_xscale("log")
    ax.set_xticks(shots)
    ax.set_xticklabels([str(k) for k in shots])
    ax.minorticks_off()
    cfg = results["config"]
    ax.set_xlabel("labelled examples per target class")
    ax.set_ylabel("target test accuracy (%)")
    ax.set_title(f"{cfg['data']}: pretrain on {_fmt_classes(cfg['source_classes'])}, "
                 f"transfer to {_fmt_classes(cfg['target_classes'])} ({len(results['seeds'])} seeds, ±std)",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    _atomic(os.fspath(path), lambda f: fig.savefig(f, format="png"), binary=True)
    return True


def _atomic(path, write, binary=False):
    """Write a file atomically through ``tinytl.io.atomic_write`` (text unless ``binary``)."""
    from ..io import atomic_write
    if binary:
        return atomic_write(path, write)

    def write_text(f):
        import io as _io
        text = _io.TextIOWrapper(f, encoding="utf-8")
        write(text)
        text.flush()
        text.detach()
    atomic_write(path, write_text)


def save_results(results: dict, out_dir) -> dict:
    """Write ``results.json`` and (with matplotlib) ``results.png`` into ``out_dir`` (created).

    Returns:
        ``{"json": path, "png": path or None}``.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, "results.json")
    _atomic(json_path, lambda f: json.dump(results, f, indent=1, allow_nan=False))
    png_path = os.path.join(out_dir, "results.png")
    return {"json": json_path, "png": png_path if plot_results(results, png_path) else None}


# ------------------------------------------------------------ command line ----

def add_arguments(p):
    """The options of ``tinytl demo`` (on an argparse parser)."""
    p.add_argument("--data", choices=DATASETS, default="mnist1d",
                   help="mnist1d: generated offline (default); mnist-idx: MNIST/Fashion-MNIST IDX files in --path")
    p.add_argument("--path", metavar="DIR", help="folder of the IDX files for --data mnist-idx")
    p.add_argument("--source-classes", default="0-4", metavar="LABELS", help="pretraining classes (default 0-4)")
    p.add_argument("--target-classes", default="5-9", metavar="LABELS", help="new classes (default 5-9)")
    p.add_argument("--shots", default=None, metavar="K,K,...",
                   help="labelled examples per target class (default 5,10,20,50,100)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; 2 with --quick)")
    p.add_argument("--hidden", type=int, default=None, help="hidden width H of the MLP (default 128)")
    p.add_argument("--epochs", type=int, default=None,
                   help="pretraining epochs (default 40 for mnist1d, 10 for mnist-idx; 10 / 3 with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help="SGD steps on the target, per method and shot (default 500; 150 with --quick)")
    p.add_argument("--device", choices=backend.DEVICES, default="cpu", help="cpu (default) or cuda")
    p.add_argument("--quick", action="store_true", help="a reduced run (a few seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", default="tinytl-demo", metavar="DIR",
                   help="folder for results.json and results.png (default ./tinytl-demo/; created if needed, "
                        "checked before the run starts)")


def config_from_args(args) -> DemoConfig:
    """A ``DemoConfig`` from the parsed options (raises ValueError on a bad value)."""
    over = dict(data=args.data, path=args.path, device=args.device,
                source_classes=parse_classes(args.source_classes, "--source-classes"),
                target_classes=parse_classes(args.target_classes, "--target-classes"))
    if args.shots is not None:
        over["shots"] = parse_shots(args.shots)
    for opt, name in (("seeds", "seeds"), ("hidden", "hidden"), ("epochs", "epochs"), ("steps", "target_steps")):
        v = getattr(args, opt)
        if v is not None:
            if v <= 0:
                raise ValueError(f"--{opt} must be a positive integer, got {v}")
            over[name] = v
    if args.data == "mnist-idx" and args.epochs is None:
        over["epochs"] = 3 if args.quick else 10
    return DemoConfig.quick_config(**over) if args.quick else DemoConfig(**over)


def _check_out(out) -> None:
    """Raise ValueError (naming --out) unless results.json and results.png can be written in ``out``.

    ``out`` must be a folder, or a path where one can be created: not a file, not
    under a file, and in a folder this process may write in. Nothing is created:
    ``save_results`` makes the folder after the run. Called before training, so a
    bad --out fails at once instead of after the whole run.
    """
    out = os.fspath(out)
    if not out:
        raise ValueError("--out: the path is empty")
    path = os.path.abspath(out)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {out}: a file is in the way (--out names the folder for results.json "
                         "and results.png)")
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"--out {out}: cannot create the folder, {existing} is a file")
    for name in ("results.json", "results.png"):
        target = os.path.join(path, name)
        if os.path.isdir(target):
            raise ValueError(f"--out {out}: {target} is a folder, the results cannot be written there")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write in {existing} ({e.strerror or e})") from None


# ---------------------------------------------------------------- report ----

def _section_run(ctx) -> dict:
    return run_demo(ctx.cfg, ctx.progress, shared=ctx)


def _section_render(results: dict, out_dir) -> str:
    shots, methods = results["shots"], results["methods"]
    best = {k: max(methods, key=lambda m: results["summary"][m][str(k)]["mean"]) for k in shots}

    def cell(m, k):
        s = results["summary"][m][str(k)]
        text = f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
        return f"**{text}**" if best[k] == m else text
    table = markdown_table(["labels/class"] + [str(k) for k in shots],
                           [[label] + [cell(m, k) for k in shots] for m, label in methods.items()])
    src = [p["source_test_accuracy"] for p in results["pretrain"]]
    cfg = results["config"]
    intro = (f"Pretrain a {results['data']['input_dim']}-{cfg['hidden']}-{cfg['hidden']}-{len(cfg['source_classes'])} "
             f"MLP on classes {_fmt_classes(cfg['source_classes'])} ({results['data']['source_train']} examples, "
             f"source test accuracy {100 * np.mean(src):.1f}%), then learn classes "
             f"{_fmt_classes(cfg['target_classes'])} from k labelled examples per class, five ways. Test accuracy (%) "
             f"on the {results['data']['target_test']} target test examples, mean ± std over {len(results['seeds'])} "
             "seed(s); the best of each column in bold.")
    png = os.path.join(os.fspath(out_dir), "results.png")
    figure = ("![accuracy against labels per class](results.png)" if plot_results(results, png) else
              f"*(plot skipped: matplotlib is not installed; {PLOT_HINT} gives it)*")
    return "\n\n".join([intro, table, figure])


SECTION = Section("fewshot", "Few-shot transfer: pretrain, replace the head, fine-tune", _section_run,
                  _section_render, format_table)
