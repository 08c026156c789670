"""The ``tinytl`` command line (also ``python -m tinytl``).

    tinytl demo [options]                  the demo report, one section per capability (tinytl/demo/)
    tinytl bench [options]                 the benchmarks (bench/run.py, from a source checkout)
    tinytl inspect PATH                    what a checkpoint holds, from its header alone
    tinytl transfer SRC DST --out OUT      copy the matching weights of SRC into DST, save as OUT
    tinytl explain BEFORE AFTER --data F   what fine-tuning changed: drift, CKA, probes, attributions
    tinytl rank DATA CKPT [CKPT ...]       score checkpoints and their layers on labelled data
    tinytl search DATA CKPT --out OUT      choose a recipe by validation, train it, save model + report
    tinytl attack MODEL --data FILE --eps E,E   accuracy of an MLP checkpoint under FGSM and PGD

Errors a user can fix (a bad option, a missing or corrupt file, a missing
package) print one line on stderr and exit with status 2; no traceback.

Read next: ``tinytl/demo/``.
"""
from __future__ import annotations

import argparse
from collections import OrderedDict
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from .nn import Module, Parameter

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit status 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _fail(message: str) -> int:
    print(f"tinytl: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tinytl", description="tinytl: a small deep-learning engine for transfer learning.")
    from . import __version__
    p.add_argument("--version", action="version", version=f"tinytl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser("demo", help="the whole transfer-learning story on MNIST-1D, as a report",
                          description="Run the report's sections (first: pretrain an MLP on source classes, "
                                      "then learn target classes from k labels per class five ways); print "
                                      "each, write report.md with its tables and PNG figures, report.json, "
                                      "and the few-shot section's results.json and results.png.")
    from .demo import add_arguments
    add_arguments(demo)

    sub.add_parser("bench", help="run the benchmarks (bench/run.py; needs a source checkout)",
                   add_help=False)      # every argument goes to bench/run.py (try: tinytl bench --help)

    ins = sub.add_parser("inspect", help="list a checkpoint's tensors and metadata (reads the header only)",
                         description="Print each tensor's name, dtype, shape and parameter count, the totals "
                                     "and the metadata. Only the header is read: no tensor data, no code.")
    ins.add_argument("path", metavar="PATH", help="a .safetensors or .npz checkpoint")

    tr = sub.add_parser("transfer", help="copy the weights of SRC that match DST (name and shape) into OUT",
                        description="Load both checkpoints; start from DST, copy every SRC tensor whose "
                                    "(renamed) name and shape match into DST's floating tensors (float16, "
                                    "float32 or float64), cast to DST's dtype; print the report; save OUT "
                                    "atomically. DST's other tensors are kept as they are.")
    tr.add_argument("src", metavar="SRC", help="checkpoint to copy from")
    tr.add_argument("dst", metavar="DST", help="checkpoint giving the destination's names and shapes")
    tr.add_argument("--out", required=True, metavar="OUT", help="where to save the result")
    tr.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                    help="rename source names starting with OLD to start with NEW (repeatable)")
    tr.add_argument("--strict", action="store_true",
                    help="fail (exit 2, nothing written) unless every tensor is copied and every source used")

    ex = sub.add_parser("explain", help="what fine-tuning changed between two MLP checkpoints, on data",
                        description="Rebuild the MLP of each checkpoint from its tensors (a Sequential of "
                                    "Linear and ReLU layers: keys 0.weight, 0.bias, 2.weight, ...), print the "
                                    "weight drift and the CKA matrix between their layers on the data, probe "
                                    "every layer when the data has labels, explain a few predictions with "
                                    "integrated gradients, and write PNGs and explain.json into --out.")
    ex.add_argument("before", metavar="BEFORE", help="the checkpoint before fine-tuning (.safetensors or .npz)")
    ex.add_argument("after", metavar="AFTER", help="the checkpoint after fine-tuning")
    ex.add_argument("--data", required=True, metavar="FILE",
                    help="a .npz file with 'x' (examples, features) and optionally integer labels 'y'")
    ex.add_argument("--out", default="explain_out", metavar="DIR", help="where to write (default: explain_out)")
    ex.add_argument("--examples", type=int, default=4, metavar="N", help="predictions to explain (default 4)")
    ex.add_argument("--steps", type=int, default=50, metavar="N",
                    help="integrated-gradients quadrature steps (default 50)")
    data_help = "labelled data: .npz with arrays x (N, D) and y (N,), or .csv (last column the label)"
    rk = sub.add_parser("rank", help="score pretrained checkpoints (and each one's layers) on labelled data",
                        description="Transferability scores, without training: rank the checkpoints by the "
                                    "features their head reads (the penultimate layer), then each checkpoint's "
                                    "layers. Checkpoints must hold a Sequential MLP (Linear, ReLU, ..., Linear).")
    rk.add_argument("data", metavar="DATA", help=data_help)
    rk.add_argument("checkpoints", metavar="CKPT", nargs="+", help="pretrained checkpoints (.safetensors or .npz)")
    rk.add_argument("--score", default="logme", metavar="S[,S]",
                    help="logme (default), hscore, transrate, leep, nce; several separated by commas")
    rk.add_argument("--layer", default=None, metavar="NAME",
                    help="score this module's output instead of the head's input (e.g. 2; 'input')")
    rk.add_argument("--label", default=None, metavar="COLUMN", help="the label column of a .csv (name or index)")
    rk.add_argument("--no-layers", action="store_true", help="rank the checkpoints only, not their layers")
    rk.add_argument("--json", default=None, metavar="PATH", help="also write the rankings as JSON")

    se = sub.add_parser("search", help="choose the transfer recipe by validation, train it on all labels, save it",
                        description="Hold out part of the labels (or use k folds when they are few), train each "
                                    "strategy over a small learning-rate grid with early stopping on the "
                                    "validation loss, retrain the best on all the labels; save the model "
                                    "(the class labels of DATA in its metadata) and the report (JSON).")
    se.add_argument("data", metavar="DATA", help=data_help)
    se.add_argument("checkpoint", metavar="CKPT", help="the pretrained checkpoint (a Sequential MLP)")
    se.add_argument("--out", required=True, metavar="OUT", help="where to save the trained model (.safetensors or .npz)")
    se.add_argument("--report", default=None, metavar="PATH", help="where to write the report (default OUT.report.json)")
    se.add_argument("--strategies", default=None, metavar="S[,S]",
                    help="the strategies to try (default probe,finetune,lp_ft,l2sp,bitfit,lora)")
    se.add_argument("--max-epochs", type=int, default=100, metavar="N", help="most epochs per candidate (100)")
    se.add_argument("--patience", type=int, default=10, metavar="N", help="epochs without a better validation loss (10)")
    se.add_argument("--val-fraction", type=float, default=0.2, metavar="F", help="share of each class held out (0.2)")
    se.add_argument("--folds", type=int, default=None, metavar="K", help="k-fold cross-validation (default: when data is few)")
    se.add_argument("--budget", type=float, default=None, metavar="SECONDS", help="time budget of the search")
    se.add_argument("--seed", type=int, default=0, help="seed of the split, the head and the shuffling (0)")
    se.add_argument("--label", default=None, metavar="COLUMN", help="the label column of a .csv (name or index)")
    at = sub.add_parser("attack", help="accuracy of an MLP checkpoint under FGSM and PGD, per eps",
                        description="Build the MLP a checkpoint holds (a tinytl Sequential of Linear layers with "
                                    "ReLUs between them: keys 0.weight, 0.bias, 2.weight, ...), score it on the "
                                    "labelled data of an .npz file (arrays x (N, D) float and y (N,) integer), "
                                    "clean and under FGSM and PGD at each eps (tinytl.attacks); print the table "
                                    "and write it as JSON. Nothing is clipped unless --clip is given.")
    at.add_argument("model", metavar="MODEL", help="the checkpoint (.safetensors or .npz) of the MLP")
    at.add_argument("--data", required=True, metavar="FILE", help="an .npz file with arrays x and y")
    at.add_argument("--eps", required=True, metavar="E,E,...", help="the radii, in the units of x (e.g. 0.1,0.3)")
    at.add_argument("--steps", type=int, default=20, help="PGD steps (default 20)")
    at.add_argument("--alpha", type=float, default=None, help="PGD step length (default 2.5 * eps / steps)")
    at.add_argument("--norm", choices=("linf", "l2"), default="linf",
                    help="the ball: linf (default; FGSM column) or l2 (one normalised-gradient step instead)")
    at.add_argument("--clip", default=None, metavar="LO,HI", help="clamp adversarial inputs to [LO, HI] (write --clip=-1,1 when LO is negative)")
    at.add_argument("--seed", type=int, default=0, help="seed of PGD's random start (default 0)")
    at.add_argument("--batch-size", type=int, default=256, help="examples per attack call (default 256)")
    at.add_argument("--out", default=None, metavar="report.json", help="write the results here as JSON")
    return p


def main(argv=None) -> int:
    """Entry point of the ``tinytl`` script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return _guard(lambda: _bench(argv[1:]))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:          # --help, --version (0) or a usage error (2, already printed)
        return 0 if e.code is None else e.code
    if args.command == "demo":
        from . import demo
        return _guard(lambda: demo.main(args))
    if args.command == "inspect":
        return _guard(lambda: _inspect(args.path))
    if args.command == "explain":
        return _guard(lambda: _explain(args))
    if args.command == "rank":
        return _guard(lambda: _rank(args))
    if args.command == "search":
        return _guard(lambda: _search(args))
    if args.command == "attack":
        return _guard(lambda: _attack(args))
    return _guard(lambda: _transfer(args))


def _guard(fn) -> int:
    """Run a command; turn the errors a user can fix into one line and exit status 2."""
    try:
        return fn()
    except FileNotFoundError as e:
        name = e.filename if e.filename else None
        return _fail(f"no such file: {name}" if name else str(e))
    except (ValueError, ImportError, OSError) as e:
        # ValueError covers tinytl.io.CheckpointError; ImportError a missing optional package.
        return _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        print("tinytl: interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------ bench ----

def _bench(argv) -> int:
    # the checkout this package was imported from (editable install), else the current folder
    candidates = [Path(__file__).resolve().parents[1] / "bench" / "run.py", Path.cwd() / "bench" / "run.py"]
    run = next((c for c in candidates if c.is_file()), candidates[0])
    if not run.is_file():
        return _fail("the benchmarks live in bench/ of the source checkout, not in the installed package: "
                     "run 'tinytl bench' (or 'python bench/run.py') from a clone of the repository")
    spec = importlib.util.spec_from_file_location("tinytl_bench_run", run)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rc = module.main(argv)
    return 0 if rc is None else int(rc)


# ---------------------------------------------------------------- inspect ----

def _count(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _inspect(path) -> int:
    from .io import read_header
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "No such file", path) if not os.path.exists(path) else \
            ValueError(f"{path}: not a file")
    tensors, metadata = read_header(path)
    rows = [(name, dtype, "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")",
             _count(shape), nbytes) for name, (dtype, shape, nbytes) in tensors.items()]
    print(f"{path}: {len(rows)} tensor{'s' if len(rows) != 1 else ''}")
    if rows:
        wn = max(len("name"), *(len(r[0]) for r in rows))
        wd = max(len("dtype"), *(len(r[1]) for r in rows))
        ws = max(len("shape"), *(len(r[2]) for r in rows))
        head = f"{'name':<{wn}}  {'dtype':<{wd}}  {'shape':<{ws}}  {'params':>12}  {'bytes':>12}"
        print(head)
        print("-" * len(head))
        for name, dtype, shape, count, nbytes in rows:
            print(f"{name:<{wn}}  {dtype:<{wd}}  {shape:<{ws}}  {count:>12,}  {nbytes:>12,}")
        print("-" * len(head))
    total = sum(r[3] for r in rows)
    total_bytes = sum(r[4] for r in rows)
    print(f"total: {total:,} parameters, {total_bytes:,} bytes of tensor data")
    if metadata:
        print("metadata:")
        w = max(len(k) for k in metadata)
        for k in sorted(metadata):
            print(f"  {k:<{w}}  {metadata[k]}")
    else:
        print("metadata: none")
    return 0


# ---------------------------------------------------------------- explain ----

def _explain(args) -> int:
    if args.examples < 1:
        raise ValueError(f"--examples must be at least 1, got {args.examples}")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    from .explain.command import explain_checkpoints
    explain_checkpoints(args.before, args.after, args.data, args.out, examples=args.examples, steps=args.steps)
    return 0


# --------------------------------------------------------------- transfer ----

def _parse_renames(items) -> dict:
    out = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ValueError(f"--rename: expected OLD=NEW (name prefixes), got {item!r}")
        if old in out:
            raise ValueError(f"--rename: prefix {old!r} is given twice")
        out[old] = new
    return out


def _transfer(args) -> int:
    from . import io
    from . import transfer as T

    rename = _parse_renames(args.rename)
    for p in (args.src, args.dst):
        if not os.path.exists(p):
            raise FileNotFoundError(2, "No such file", p)
    src = io.load(args.src)
    dst = io.load(args.dst)
    holder = _StateHolder(dst)
    try:
        report = T.transfer_weights(src, holder, rename=rename or None)
    except ValueError as e:
        if "no source tensor matches" not in str(e):
            raise
        raise ValueError(f"no tensor of {args.src} matches {args.dst} by name and shape; nothing written "
                         f"(source names: {_few(src)}; destination names: {_few(dst)}; "
                         f"a --rename OLD=NEW may be missing)") from None
    print(report)
    if args.strict and report.problems():
        problems = report.problems()
        return _fail(f"--strict: {len(problems)} problem(s), nothing written: " + "; ".join(problems[:5])
                     + ("; ..." if len(problems) > 5 else ""))
    out = dict(dst)
    out.update(holder.arrays())
    metadata = {k: v for k, v in io.load_metadata(args.dst).items() if k != io.CHECKSUM_KEY}
    metadata["tinytl.transfer"] = (f"from {os.path.basename(args.src)}: {len(report.copied)} copied, "
                                   f"{len(report.skipped_shape)} skipped (shape), {len(report.missing)} missing")
    io.save(out, args.out, metadata=metadata)
    print(f"saved {args.out}: {len(out)} tensors, {len(report.copied)} copied from {args.src}")
    return 0


def _few(state, n=4) -> str:
    names = list(state)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


class _StateHolder(Module):
    """A Module whose parameters are the floating tensors of a state dict, under their own names.

    ``transfer_weights`` copies into a Module's parameters; this lets it copy
    into a checkpoint's tensors without knowing the network they came from.
    Every floating dtype ``tinytl.io`` reads is held (float16, float32,
    float64), each in its own dtype: a value copied in is cast to it. The
    parameters never train (a float16 Parameter cannot require a gradient).
    Other tensors (integers, bool) are not parameters: they stay as in DST.
    """

    def __init__(self, state):
        super().__init__()
        object.__setattr__(self, "_flat", {k: Parameter(np.array(v), requires_grad=False)
                                           for k, v in state.items() if v.dtype.kind == "f"})

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        yield from ((prefix + k, p) for k, p in self._flat.items())

    def parameters(self, recurse: bool = True):
        yield from self._flat.values()

    def state_dict(self, *, prefix: str = "", keep_vars: bool = False):
        return OrderedDict((prefix + k, p if keep_vars else p.data.copy()) for k, p in self._flat.items())

    def arrays(self) -> dict:
        return {k: p.data for k, p in self._flat.items()}


# ------------------------------------------------------------ rank, search ----

def _labelled(path, label):
    """(X, y renumbered 0..C-1, the original labels of the classes)."""
    from .datafiles import load_xy
    X, y = load_xy(path, label=label)
    classes, y = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{path}: the labels hold a single class ({classes[0]}); at least two are needed")
    return X, y.reshape(-1).astype(np.int64), classes


def _checkpoint_model(path):
    from .transfer import mlp_from_state
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file", path)
    return mlp_from_state(path, fn=path)


def _check_fits(model, X, path):
    first = next((m for m in model.modules() if hasattr(m, "in_features")), None)
    if first is not None and first.in_features != X.shape[1]:
        raise ValueError(f"{path} takes {first.in_features} inputs but the data has {X.shape[1]} features")


def _rank(args) -> int:
    from . import transfer as T
    from .demo.fewshot import _atomic
    scores = [s.strip() for s in args.score.split(",") if s.strip()]
    X, y, classes = _labelled(args.data, args.label)
    names, models = [], {}
    for path in args.checkpoints:
        name = os.path.basename(path)
        if name in models:
            name = path
        models[name] = _checkpoint_model(path)
        _check_fits(models[name], X, path)
        names.append(name)
    print(f"{args.data}: {len(y)} examples, {X.shape[1]} features, {len(classes)} classes")
    ranking = T.rank_sources(models, X, y, score=scores, layer=args.layer)
    print(ranking)
    out = {"sources": ranking.to_dict(), "layers": {}}
    if not args.no_layers:
        from .transfer.search import PREDICTION_SCORES
        feature_scores = [s for s in scores if s not in PREDICTION_SCORES] or ["logme"]
        for name in names:
            layers = T.rank_layers(models[name], X, y, score=feature_scores)
            print(f"\n{name}:")
            print(layers)
            out["layers"][name] = layers.to_dict()
    if args.json:
        import json
        _atomic(args.json, lambda f: json.dump(out, f, indent=1, allow_nan=False))
        print(f"\nwrote {args.json}")
    return 0


def _search(args) -> int:
    from . import io
    from . import transfer as T
    if not args.out.lower().endswith((".safetensors", ".npz")):
        raise ValueError(f"--out {args.out}: expected a .safetensors or .npz path for the model")
    report_path = args.report or os.path.splitext(args.out)[0] + ".report.json"
    for p in (args.out, report_path):
        folder = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(folder):
            raise ValueError(f"{p}: the folder {folder} does not exist")
    X, y, classes = _labelled(args.data, args.label)
    model = _checkpoint_model(args.checkpoint)
    _check_fits(model, X, args.checkpoint)
    from .transfer.search import DEFAULT_STRATEGIES
    strategies = (tuple(s.strip() for s in args.strategies.split(",") if s.strip()) if args.strategies
                  else DEFAULT_STRATEGIES)
    print(f"{args.data}: {len(y)} examples, {X.shape[1]} features, {len(classes)} classes; searching "
          f"{', '.join(strategies)}", flush=True)
    trained, report = T.search(model, X, y, strategies=strategies, val_fraction=args.val_fraction,
                               folds=args.folds, max_epochs=args.max_epochs, patience=args.patience,
                               budget_s=args.budget, seed=args.seed)
    print(report)
    io.save(trained, args.out, metadata={"tinytl.classes": ",".join(str(int(c)) for c in classes),
                                         "tinytl.search": f"{report.winner} ({report.reason})"})
    report.extra["classes"] = [int(c) for c in classes]
    report.save(report_path)
    print(f"saved {args.out} (output i is label {', '.join(f'{i}->{int(c)}' for i, c in enumerate(classes[:10]))}"
          f"{', ...' if len(classes) > 10 else ''}) and {report_path}")
    return 0
# ----------------------------------------------------------------- attack ----

_MAX_DATA_BYTES = 1 << 31      # --data: refuse arrays larger than 2 GiB in all


def _parse_floats(text: str, opt: str, n=None) -> list:
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or (n is not None and len(vals) != n) or not all(np.isfinite(vals)):
        what = f"{n} numbers" if n else "numbers"
        raise ValueError(f"{opt}: expected {what} separated by commas, got {text!r}")
    return vals


def _mlp_from_state(state: dict, path):
    """The tinytl MLP a state dict holds: Linear layers at 0, 2, 4, ... with ReLUs between them."""
    from . import nn
    layout = ("a tinytl MLP (a Sequential of Linear layers with ReLUs between them: keys 0.weight, 0.bias, "
              "2.weight, ...)")
    idx = {}
    for key in state:
        head, _, leaf = key.partition(".")
        if not (head.isdigit() and leaf in ("weight", "bias")) or str(int(head)) != head:
            raise ValueError(f"{path}: key {key!r} is not in the layout of {layout}")
        idx.setdefault(int(head), set()).add(leaf)
    order = sorted(idx)
    if not order or order != list(range(0, 2 * len(order), 2)):
        raise ValueError(f"{path}: layers {order} are not 0, 2, 4, ...: not {layout}")
    layers, prev = [], None
    for i in order:
        if "weight" not in idx[i]:
            raise ValueError(f"{path}: layer {i} has a bias but no weight")
        w = state[f"{i}.weight"]
        if w.ndim != 2 or w.dtype not in (np.float32, np.float64) or 0 in w.shape:
            raise ValueError(f"{path}: {i}.weight must be a non-empty float32/float64 matrix, got {w.dtype} "
                             f"{tuple(w.shape)}")
        b = state.get(f"{i}.bias")
        if b is not None and (b.shape != (w.shape[0],) or b.dtype != w.dtype):
            raise ValueError(f"{path}: {i}.bias must have shape ({w.shape[0]},) and dtype {w.dtype}, got "
                             f"{b.dtype} {tuple(b.shape)}")
        if prev is not None and w.shape[1] != prev:
            raise ValueError(f"{path}: {i}.weight takes {w.shape[1]} inputs but the layer before gives {prev}")
        if layers:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=b is not None, dtype=w.dtype))
        prev = w.shape[0]
    model = nn.Sequential(*layers)
    model.load_state_dict(state)
    return model.eval()


def _read_xy(path, n_in: int, n_out: int, dtype):
    """x (N, n_in) and y (N,) from an .npz file, read without pickle, checked."""
    from . import io
    if not str(path).lower().endswith(".npz"):
        raise ValueError(f"--data {path}: expected an .npz file with arrays x and y")
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file", path)
    arrays = io.load(path)    # tinytl's npz reader: no pickle, every member's size checked before allocation
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise ValueError(f"--data {path}: no array {' or '.join(map(repr, missing))} (it holds {_few(arrays)})")
    x, y = arrays["x"], arrays["y"]
    if x.nbytes + y.nbytes > _MAX_DATA_BYTES:
        raise ValueError(f"--data {path}: x and y hold {x.nbytes + y.nbytes:,} bytes, more than the "
                         f"{_MAX_DATA_BYTES:,} allowed")
    if x.dtype.kind != "f" or x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != n_in:
        raise ValueError(f"--data {path}: x must be a float array of shape (N, {n_in}) with N >= 1, got "
                         f"{x.dtype} {tuple(x.shape)}")
    if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
        raise ValueError(f"--data {path}: y must hold integer labels of shape ({x.shape[0]},), got {y.dtype} "
                         f"{tuple(y.shape)}")
    bad = np.flatnonzero((y < 0) | (y >= n_out))
    if bad.size:
        raise ValueError(f"--data {path}: y[{bad[0]}] = {y[bad[0]]} is not a class of the model (0..{n_out - 1})")
    if not np.isfinite(x).all():
        raise ValueError(f"--data {path}: x holds NaN or infinite values")
    return x.astype(dtype, copy=False), y.astype(np.int64, copy=False)


def _attack(args) -> int:
    import functools
    import json

    from . import attacks, io
    eps = _parse_floats(args.eps, "--eps")
    if any(e < 0 for e in eps):
        raise ValueError(f"--eps: radii must be >= 0, got {args.eps!r}")
    if args.steps < 1:
        raise ValueError(f"--steps must be an integer >= 1, got {args.steps}")
    if args.alpha is not None and not (np.isfinite(args.alpha) and args.alpha > 0):
        raise ValueError(f"--alpha must be a number > 0, got {args.alpha}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {args.batch_size}")
    if args.seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {args.seed}")
    clip = None
    if args.clip is not None:
        clip = tuple(_parse_floats(args.clip, "--clip", 2))
        if not clip[0] < clip[1]:
            raise ValueError(f"--clip: LO must be below HI, got {args.clip!r}")
    if args.out is not None:
        _check_writable(args.out)
    if not os.path.exists(args.model):
        raise FileNotFoundError(2, "No such file", args.model)
    model = _mlp_from_state(io.load(args.model), args.model)
    n_in, n_out = model[0].in_features, model[len(model) - 1].out_features
    x, y = _read_xy(args.data, n_in, n_out, model[0].weight.dtype)
    if clip is not None and (x.min() < clip[0] or x.max() > clip[1]):
        raise ValueError(f"--clip {args.clip}: the data lies in [{x.min():.4g}, {x.max():.4g}], outside the clip range")

    def acc(attack=None):
        return attacks.robust_accuracy(model, x, y, attack, batch_size=args.batch_size)
    one_step = "FGSM" if args.norm == "linf" else "FGM-L2"
    rows = []
    clean = acc()
    for e in eps:
        alpha = args.alpha if args.alpha is not None else (2.5 * e / args.steps or 1.0)
        if args.norm == "linf":
            single = functools.partial(attacks.fgsm, eps=e, clip=clip)
        else:                  # the L2 fast gradient method: one step of length eps along g / ||g||
            single = functools.partial(attacks.pgd, eps=e, alpha=e or 1.0, steps=1, norm="l2",
                                       random_start=False, clip=clip)
        rows.append({"eps": e, "alpha": alpha, "one_step_accuracy": acc(single),
                     "pgd_accuracy": acc(functools.partial(attacks.pgd, eps=e, alpha=alpha, steps=args.steps,
                                                           norm=args.norm, clip=clip, seed=args.seed))})
    print(f"{args.model}: {len(model) // 2 + 1} Linear layers, {n_in} -> {n_out}; {len(x)} examples from "
          f"{args.data}; {args.norm} ball" + (f", clipped to [{clip[0]:g}, {clip[1]:g}]" if clip else ", no clipping"))
    head = f"{'eps':>10}  {'clean':>7}  {one_step:>7}  {'PGD-' + str(args.steps):>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['eps']:>10.4g}  {100 * clean:>6.1f}%  {100 * r['one_step_accuracy']:>6.1f}%  "
              f"{100 * r['pgd_accuracy']:>6.1f}%")
    if args.out is not None:
        report = {"model": os.fspath(args.model), "data": os.fspath(args.data), "n": int(len(x)),
                  "norm": args.norm, "steps": args.steps, "clip": list(clip) if clip else None, "seed": args.seed,
                  "one_step_attack": one_step, "clean_accuracy": clean, "results": rows}
        io.atomic_write(args.out, lambda f: f.write(json.dumps(report, indent=1).encode()))
        print(f"saved {args.out}")
    return 0


def _check_writable(out) -> None:
    out = os.fspath(out)
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise ValueError(f"--out {out}: is a folder, expected a file name such as report.json")
    if not os.path.isdir(folder):
        raise ValueError(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out {out}: cannot write in {folder}")
