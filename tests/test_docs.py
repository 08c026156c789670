"""The docs stay true to the code.

1. Code references in ``docs/*.md`` and ``README.md``, written as a backticked
   path followed by a backticked name (`tinytl/tensor.py` `Tensor.backward`,
   the convention stated at the top of ``docs/tour.md``): the file must exist
   and each dotted part of the name must occur in it as a whole word.
2. ``docs/api.md`` names every public name (``tinytl.__all__``,
   ``tinytl.nn.__all__``, ``tinytl.transfer.__all__``, ``tinytl.demo.__all__``,
   the functions of ``tinytl.backend``, the keys of ``backend_info()``, the
   members of ``Tensor``, ``Module`` and ``SGD``, ...), and it is exactly what
   ``render_api()`` below generates from the code today (not stale).

``docs/api.md`` is generated from the docstrings by this file (standard
``inspect`` only)::

    python tests/test_docs.py --write      # rewrite docs/api.md
"""
import dataclasses
import difflib
import glob
import inspect
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import tinytl as tl  # noqa: E402
from tinytl import nn  # noqa: E402

# A path from the repository root: at least one folder, then a file name with the extension
# of a source or text file (so `tl.nn`, `Tensor.backward` or a bare `run.py` are not paths).
EXTENSIONS = "py|pyi|md|rst|txt|toml|cfg|ini|json|yml|yaml|sh|c|h|cc|cpp|hpp|cu|cuh|cmake"
PATH_RE = re.compile(rf"^(?:[\w.-]+/)+[\w-][\w.-]*\.(?:{EXTENSIONS})$")
NAME_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?:\(\))?$")
SPAN_RE = re.compile(r"`([^`\n]+)`")
CODE_BLOCK_RE = re.compile(r"^```.*?^```", re.S | re.M)


def doc_files():
    return sorted(glob.glob(os.path.join(REPO, "docs", "*.md"))) + [os.path.join(REPO, "README.md")]


def find_references(text):
    """[(path, name or None)] for every backticked path, with the backticked name right after it."""
    text = CODE_BLOCK_RE.sub("", text)          # fenced code is code, not references
    spans = list(SPAN_RE.finditer(text))
    refs = []
    for i, m in enumerate(spans):
        path = m.group(1).strip()
        if not PATH_RE.match(path) or path.startswith(("http", "www.")):
            continue
        name = None
        if i + 1 < len(spans):
            nxt = spans[i + 1]
            between = text[m.end():nxt.start()]
            cand = nxt.group(1).strip()
            if between.strip() == "" and NAME_RE.match(cand) and not PATH_RE.match(cand):
                name = cand
        refs.append((path, name))
    return refs


def check_reference(path, name, root=REPO):
    """None when the reference holds, else what is wrong (one line)."""
    full = os.path.join(root, path)
    if not os.path.isfile(full):
        return f"{path}: no such file"
    if name is None:
        return None
    with open(full, encoding="utf-8", errors="replace") as f:
        source = f.read()
    for part in name.rstrip("()").split("."):
        if not re.search(rf"(?<![\w]){re.escape(part)}(?![\w])", source):
            return f"{path} `{name}`: '{part}' does not occur in the file"
    return None


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_code_references_point_at_real_code(doc):
    if not os.path.isfile(doc):
        pytest.skip(f"{os.path.relpath(doc, REPO)} does not exist yet")
    with open(doc, encoding="utf-8") as f:
        refs = find_references(f.read())
    problems = [p for p in (check_reference(path, name) for path, name in refs) if p]
    assert not problems, f"{os.path.relpath(doc, REPO)}:\n  " + "\n  ".join(problems)


def test_reference_checker_catches_mistakes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "k.cu").write_text("__global__ void linear_forward_epilogue_f32() {}\n"
                                         "void sgd_step(float* p) {}\n")
    text = ("See `a/k.cu` `sgd_step`, then `a/k.cu` `linear_forward_epilogue` and `a/missing.py` `x`.\n"
            "A list `a/k.cu`, `b/c.py` has no names; `k.cu` alone is no path.\n"
            "```\n`not/a/ref.py` `inside`\n```\n")
    refs = find_references(text)
    assert refs == [("a/k.cu", "sgd_step"), ("a/k.cu", "linear_forward_epilogue"), ("a/missing.py", "x"),
                    ("a/k.cu", None), ("b/c.py", None)]
    results = [check_reference(p, n, root=str(tmp_path)) for p, n in refs]
    assert results[0] is None
    assert "does not occur" in results[1]          # only a longer word contains it
    assert "no such file" in results[2] and "no such file" in results[4]
    assert results[3] is None


def test_tour_states_the_convention_and_follows_the_step():
    with open(os.path.join(REPO, "docs", "tour.md"), encoding="utf-8") as f:
        text = f.read()
    head = text[:2500]
    assert "`tinytl/tensor.py` `Tensor.backward`" in head and "tests/test_docs.py" in head
    refs = find_references(text)
    named = {(p, n) for p, n in refs if n}
    for must in [("tinytl/tensor.py", "Tensor"), ("tinytl/tensor.py", "_make"), ("tinytl/tensor.py", "Tensor.backward"),
                 ("tinytl/nn/layers.py", "Linear"), ("tinytl/functional.py", "linear"),
                 ("tinytl/kernels/reference.py", "linear_forward_epilogue"),
                 ("csrc/linear.cpp", "linear_forward_epilogue"),
                 ("tinytl/kernels/cuda/linear.cu", "linear_forward_epilogue"),
                 ("tinytl/kernels/reference.py", "softmax_xent"),
                 ("tinytl/kernels/reference.py", "linear_backward_epilogue"),
                 ("tinytl/kernels/reference.py", "sgd_step"), ("tinytl/optim/sgd.py", "SGD"),
                 ("tinytl/transfer/freezing.py", "freeze"), ("tinytl/transfer/weights.py", "transfer_weights")]:
        assert must in named, must
    # the sections come in the order the data flows
    order = [text.index(s) for s in ("## 1. Tensor", "## 2. Forward", "## 3. The fused epilogue",
                                     "## 4. The fused softmax", "## 5. Backward", "## 6. The SGD",
                                     "## 7. Freezing")]
    assert order == sorted(order)


# ------------------------------------------------------------------ api.md ----

def _module_functions(module):
    """The public functions defined in ``module``, in the order of the source."""
    return [n for n, o in vars(module).items()
            if inspect.isfunction(o) and o.__module__ == module.__name__ and not n.startswith("_")]


def public_names():
    """(where, name) for every name docs/api.md must mention."""
    from tinytl import backend, data, datasets, demo, io, kernels, optim, transfer
    names = [("tinytl", n) for n in tl.__all__]
    names += [("tinytl.nn", n) for n in nn.__all__]
    names += [("tinytl.nn.functional", n) for n in nn.functional.__all__]
    names += [("tinytl.transfer", n) for n in getattr(transfer, "__all__", [])]
    names += [("tinytl.transfer", n) for n, o in vars(transfer).items()
              if inspect.isfunction(o) and o.__module__ == transfer.__name__ and not n.startswith("_")]
    names += [("tinytl.io", n) for n in io.__all__]
    from tinytl.utils import data as udata
    names += [("tinytl.utils.data", n) for n in udata.__all__]
    from tinytl import callbacks, explain
    names += [("tinytl.explain", n) for n in explain.__all__]
    names += [("tinytl.callbacks", n) for n in callbacks.__all__]
    names += [("tinytl.memory", n) for n in tl.memory.__all__]
    names += [("tinytl.datasets", n) for n in datasets.__all__]
    names += [("tinytl.data", "DataLoader"), ("tinytl.kernels", "backend_info"), ("tinytl.cuda", "is_available")]
    names += [("tinytl.optim", n) for n in optim.__all__]
    names += [("tinytl.optim.lr_scheduler", n) for n in optim.lr_scheduler.__all__]
    names += [("tinytl.kernels.backend_info()", k) for k in kernels.backend_info()]
    names += [("tinytl.backend", n) for n in _module_functions(backend) + ["DEVICES"]]
    names += [("tinytl.demo", n) for n in demo.__all__]
    names += [("tinytl.demo.DemoConfig", f.name) for f in dataclasses.fields(demo.DemoConfig)]
    for cls in (tl.Tensor, nn.Module, optim.SGD, optim.Adam, optim.lr_scheduler.LRScheduler):
        names += [(cls.__name__, n) for n in dir(cls) if not n.startswith("_")]
    return sorted(set(names))


def api_identifiers(text):
    return {w for span in SPAN_RE.findall(text) for w in re.findall(r"[A-Za-z_]\w*", span)}


API_MD = os.path.join(REPO, "docs", "api.md")


def test_render_api_names_every_public_name():
    known = api_identifiers(render_api())
    missing = [f"{where}.{name}" for where, name in public_names() if name not in known]
    assert not missing, "render_api() (tests/test_docs.py) does not mention: " + ", ".join(missing)


def test_api_md_names_every_public_name():
    with open(API_MD, encoding="utf-8") as f:
        known = api_identifiers(f.read())
    missing = [f"{where}.{name}" for where, name in public_names() if name not in known]
    assert not missing, ("docs/api.md does not mention: " + ", ".join(missing)
                         + "\n(regenerate it: python tests/test_docs.py --write)")


def test_api_md_is_up_to_date():
    """docs/api.md is what render_api() makes of the code today: a changed signature or docstring
    summary, or a new public name, makes it stale."""
    with open(API_MD, encoding="utf-8") as f:
        text = f.read()
    expected = render_api()
    if text != expected:
        diff = list(difflib.unified_diff(text.splitlines(), expected.splitlines(), "docs/api.md",
                                         "render_api()", lineterm="", n=0))
        pytest.fail("docs/api.md is stale; regenerate it: python tests/test_docs.py --write\n"
                    + "\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else ""))


# --------------------------------------------------- generating api.md ----

def _ann(a):
    return a if isinstance(a, str) else inspect.formatannotation(a).replace("numpy.random._generator.", "np.random.")


def _sig(obj, drop_self=False):
    """``(a, b: int = 1) -> str``, with string annotations shown unquoted."""
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            return "(" + ", ".join(f.name for f in dataclasses.fields(obj)) + ")"
        obj, drop_self = obj.__init__, True          # the metaclass's __call__ hides the signature
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = list(sig.parameters.values())[1 if drop_self else 0:]
    parts, star_done = [], False
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        prefix = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        star_done = star_done or p.kind is p.VAR_POSITIONAL
        text = prefix + p.name
        if p.annotation is not p.empty:
            text += f": {_ann(p.annotation)}"
        if p.default is not p.empty:
            text += (" = " if p.annotation is not p.empty else "=") + repr(p.default).replace("'", '"')
        parts.append(text)
    ret = "" if sig.return_annotation is sig.empty else f" -> {_ann(sig.return_annotation)}"
    return f"({', '.join(parts)}){ret}"


def _summary(obj):
    """The first paragraph of the docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    para = " ".join(doc.split("\n\n")[0].split()).replace("``", "`")
    return para[:-2] + "." if para.endswith("::") else para


def _entry(label, obj, drop_self=False):
    sig = _sig(obj, drop_self) if callable(obj) else ""
    text = _summary(obj)
    return f"- `{label}{sig}`" + (f": {text}" if text else "")


def _members(cls, prefix):
    lines = []
    for name in sorted(n for n in vars(cls) if not n.startswith("_")):
        obj = vars(cls)[name]
        if isinstance(obj, property):
            lines.append(f"- `{prefix}.{name}`" + (f": {_summary(obj)}" if _summary(obj) else " (property)"))
        elif isinstance(obj, (staticmethod, classmethod)):
            lines.append(_entry(f"{prefix}.{name}", getattr(cls, name)))
        elif inspect.isfunction(obj):
            lines.append(_entry(f"{prefix}.{name}", obj, drop_self=True))
    return lines


# Module-level constants have no docstring: what api.md says of each (render_api refuses an unknown one).
CONSTANTS = {
    "METHODS": "the methods of the experiment, key -> label in the table and the plot, in display order",
    "PLOT_HINT": "what to install for the plot, as the messages say it",
    "DEVICES": "the device names",
}


def _constant(label, value):
    name = label.rsplit(".", 1)[-1]
    if name not in CONSTANTS:
        raise KeyError(f"render_api: say what the constant {label} is in CONSTANTS (tests/test_docs.py)")
    return f"- `{label}`: {CONSTANTS[name]}: `{value!r}`."


def _dataclass_defaults(cls):
    """``name = default`` for each field of a dataclass (factories called), as one line of spans."""
    parts = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            parts.append(f"`{f.name}`")
            continue
        parts.append(f"`{f.name} = {value!r}`".replace("'", '"'))
    return ", ".join(parts)


def render_api():
    from tinytl import backend, cuda, data, datasets, demo, io, kernels, optim, transfer
    out = ["# tinytl API reference", "",
           "Every public name, with its signature and the first paragraph of its docstring",
           "(`help(name)` has the rest). Generated from the docstrings by",
           "`python tests/test_docs.py --write`; edit the docstrings, not this page.",
           "`docs/tour.md` explains how the pieces fit; `docs/transfer.md` when to use which transfer tool.",
           "", "```python", "import tinytl as tl", "from tinytl import nn, transfer", "```", ""]

    out += ["## `tl`: tensors, grad mode, seeds, checkpoints", ""]
    for n in ("tensor", "no_grad", "enable_grad", "is_grad_enabled", "detect_anomaly", "is_anomaly_enabled",
              "manual_seed", "save", "load"):
        out.append(_entry(f"tl.{n}", getattr(tl, n)))
    out.append(f"- `tl.__version__`: the version string (`{tl.__version__}`).")
    out += ["", "Submodules: " + ", ".join(f"`tl.{m}`" for m in tl.__all__
                                           if inspect.ismodule(getattr(tl, m, None))) + ".", ""]

    out += ["## `tl`: torch-named tensor functions, dtypes and devices", "",
            "From `tinytl/creation.py`, `tinytl/ops.py`, `tinytl/dtypes.py`, `tinytl/device.py`.", ""]
    first = {"tensor", "no_grad", "enable_grad", "is_grad_enabled", "detect_anomaly", "is_anomaly_enabled",
             "manual_seed", "save", "load", "Tensor", "__version__"}
    for n in tl.__all__:
        obj = getattr(tl, n, None)
        if n in first or inspect.ismodule(obj):
            continue
        out.append(f"- `tl.{n}`: the dtype `{obj}`" if not callable(obj) else _entry(f"tl.{n}", obj))
    out += [""]

    out += ["## `tl.Tensor`", "", _summary(tl.Tensor), "",
            "- `.data`, `.grad`, `.requires_grad`: the array, its gradient (or None), whether backward computes it.",
            "- Operators: `a + b`, `a - b`, `a * b`, `a / b`, `-a`, `a ** p`, `a @ b`, `a[index]` (all differentiable, "
            "with NumPy broadcasting)."]
    out += _members(tl.Tensor, "Tensor") + [""]

    out += ["## `tl.nn`: modules and losses", ""]
    for n in nn.__all__:
        obj = getattr(nn, n)
        if inspect.isclass(obj):
            out.append(_entry(f"nn.{n}", obj))
    out += ["", "### `nn.Module` methods", ""] + _members(nn.Module, "Module") + [""]
    out += ["### `nn.Sequential` extras", ""] + [l for l in _members(nn.Sequential, "Sequential")] + [""]
    out += ["## `tl.nn.functional` (also `tl.functional`)", ""]
    out += [_entry(f"nn.functional.{n}", getattr(nn.functional, n)) for n in nn.functional.__all__] + [""]
    for sub in ("init", "utils"):
        mod = getattr(nn, sub)
        out += [f"## `tl.nn.{sub}`", "", _summary(mod), ""]
        out += [_entry(f"nn.{sub}.{n}", getattr(mod, n)) for n in mod.__all__] + [""]

    out += ["## `tl.optim`", "", _summary(optim), ""]
    for cls in (optim.SGD, optim.Adam, optim.AdamW):
        out += [_entry(f"tl.optim.{cls.__name__}", cls)] + ["  " + m for m in _members(cls, cls.__name__)]
    out += [_entry("tl.optim.Optimizer", optim.Optimizer), "  - what every optimizer above has from it:"]
    out += ["  " + m for m in _members(optim.Optimizer, "Optimizer")] + [""]
    out += ["### `tl.optim.lr_scheduler`", "", _summary(optim.lr_scheduler), ""]
    for n in optim.lr_scheduler.__all__:
        obj = getattr(optim.lr_scheduler, n)
        out += [_entry(f"lr_scheduler.{n}", obj)] + ["  " + m for m in _members(obj, n)]
    out += [""]

    out += ["## `tl.transfer`", "", _summary(transfer), ""]
    for n in transfer.__all__:
        obj = getattr(transfer, n)
        out.append(_entry(f"transfer.{n}", obj))
        if inspect.isclass(obj):
            if dataclasses.is_dataclass(obj):
                out.append("  - fields: " + ", ".join(f"`{f.name}`" for f in dataclasses.fields(obj)))
            out += ["  " + m for m in _members(obj, n)]
    out += [""]

    from tinytl import explain
    out += ["## `tl.explain`: what the transfer changed, and what the model looks at", "", _summary(explain), ""]
    for n in explain.__all__:
        obj = getattr(explain, n)
        out.append(_entry(f"tl.explain.{n}", obj))
        if inspect.isclass(obj):
            out += ["  " + m for m in _members(obj, n)]
    out += [""]

    from tinytl import callbacks
    out += ["## `tl.callbacks`", "", _summary(callbacks), ""]
    for n in callbacks.__all__:
        out.append(_entry(f"tl.callbacks.{n}", getattr(callbacks, n)))
        out += ["  " + m for m in _members(getattr(callbacks, n), n)]
    out += [""]

    from tinytl import attacks
    out += ["## `tl.attacks`: adversarial attacks", "", _summary(attacks), ""]
    for n in attacks.__all__:
        obj = getattr(attacks, n)
        out.append(_entry(f"tl.attacks.{n}", obj))
        if dataclasses.is_dataclass(obj):
            out.append("  - fields: " + ", ".join(f"`{f.name}`" for f in dataclasses.fields(obj)))
            out += ["  " + m for m in _members(obj, n)]
    out += [""]

    out += ["## `tl.io`: checkpoints", ""] + [_entry(f"tl.io.{n}", getattr(io, n)) for n in io.__all__] + [""]
    from tinytl import memory
    out += ["## `tl.memory`: what backward keeps, peak memory", ""] + [
        _entry(f"tl.memory.{n}", getattr(memory, n)) for n in memory.__all__] + [""]
    out += ["## `tl.data`", "", _entry("tl.data.DataLoader", data.DataLoader), ""]
    from tinytl.utils import data as udata
    out += ["## `tl.utils.data`: datasets, samplers and the DataLoader", "", _summary(udata), ""]
    out += [_entry(f"tl.utils.data.{n}", getattr(udata, n)) for n in udata.__all__] + [""]
    out += ["## `tl.datasets`", ""] + [_entry(f"tl.datasets.{n}", getattr(datasets, n))
                                       for n in datasets.__all__] + [""]
    out += ["## `tinytl.demo`: the experiment of `tinytl demo`", "",
            "`from tinytl import demo` (`import tinytl` does not import it). " + _summary(demo), ""]
    for n in demo.__all__:
        obj = getattr(demo, n)
        if not callable(obj):
            out.append(_constant(f"demo.{n}", obj))
        elif dataclasses.is_dataclass(obj):        # many fields: their defaults say more than a signature
            out.append(f"- `demo.{n}(field=value, ...)`: {_summary(obj)}")
            out.append("  - fields and defaults: " + _dataclass_defaults(obj))
            out += ["  " + m for m in _members(obj, n)]
        else:
            out.append(_entry(f"demo.{n}", obj))
    out += [""]

    out += ["## `tl.cuda`, `tl.kernels`, `tl.backend`", ""]
    out += [_entry(f"tl.cuda.{n}", getattr(cuda, n)) for n in ("is_available", "device_count")]
    out += [_entry("tl.kernels.backend_info", kernels.backend_info),
            "  - keys: " + ", ".join(f"`{k}`" for k in kernels.backend_info()),
            _entry("tl.kernels.for_array", kernels.for_array)]
    out += [_entry(f"tl.backend.{n}", getattr(backend, n)) for n in _module_functions(backend)]
    out.append(_constant("tl.backend.DEVICES", backend.DEVICES))
    out += ["", "## Command line", "",
            "- `tinytl demo [--quick] [--shots 5,10,20] [--seeds 3] [--data mnist1d|mnist-idx --path DIR] ...`: "
            "the demo report (`tinytl/demo/`), one section per capability, written to report.md; "
            "`--only SECTION` runs some; `tinytl.demo.run_report(config)` returns every section's results and "
            "`tinytl.demo.run_demo(config)` the few-shot section's, as dicts.",
            "- `tinytl bench [...]`: the benchmarks (`bench/run.py`, from a source checkout).",
            "- `tinytl inspect PATH`: tensors, shapes, parameter counts and metadata of a checkpoint (header only).",
            "- `tinytl transfer SRC DST --out OUT [--rename OLD=NEW] [--strict]`: `transfer_weights` between two "
            "checkpoint files, into DST's float16, float32 and float64 tensors (cast to DST's dtype).",
            "- `tinytl attack MODEL --data FILE --eps 0.1,0.3 [--steps 20] [--norm linf|l2] [--clip=LO,HI] "
            "[--out report.json]`: accuracy of an MLP checkpoint on an .npz of x and y, clean and under FGSM and "
            "PGD at each eps (`tl.attacks`); prints the table, writes the JSON.",
            "- Errors a user can fix print one line on stderr and exit with status 2.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_docs.py --write   (regenerates docs/api.md)")
    with open(os.path.join(REPO, "docs", "api.md"), "w", encoding="utf-8") as f:
        f.write(render_api())
    print("wrote docs/api.md")
