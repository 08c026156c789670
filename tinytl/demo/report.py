"""The demo's report: one section per capability, written to ``report.md`` with its figures.

``tinytl demo`` runs every section in ``SECTION_MODULES`` order (``--only NAME[,NAME]`` runs
some), prints each one's markdown, and writes into ``--out``:

- ``report.md``: a heading per section, its tables, and its figures as PNG links;
- ``report.json``: every section's measured results, with the config and the timings;
- ``results.json`` / ``results.png``: the few-shot section's results and plot, as before.

A section is a module of this package with a ``SECTION = Section(name, title, run, render)``:

- ``run(ctx) -> dict``: the experiment; a JSON-ready dict of what it measured. ``ctx`` is the
  ``DemoContext`` all sections share: the config, the source and target tasks, and one
  pretrained source network per seed, trained once for the whole report (by whichever section
  asks first).
- ``render(results, out_dir) -> str``: the section's markdown (without its heading); it may
  write figures into ``out_dir`` with ``save_figure`` and link them.
- ``text(results) -> str`` (optional): what the terminal shows instead of the markdown.

A section reads ``ctx.cfg.quick`` to size itself: the full report must stay under 3 minutes on
2 cores, ``--quick`` under 40 s.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
from dataclasses import asdict

from . import fewshot
from .section import Section, markdown_table, new_figure, save_figure  # noqa: F401 (for the sections)

SECTION_MODULES = ["fewshot", "efficient", "choose", "shift", "explain", "security"]   # report order


def sections() -> "dict[str, Section]":
    """name -> Section, in report order."""
    out = {}
    for mod in SECTION_MODULES:
        s = importlib.import_module(f"{__package__}.{mod}").SECTION
        out[s.name] = s
    return out


class DemoContext:
    """What the sections share: the config, the tasks, and the pretrained source networks.

    Attributes:
        cfg: the ``DemoConfig``.
        progress: whether sections may show progress bars.
    """

    def __init__(self, cfg, progress: bool = False):
        self.cfg = cfg
        self.progress = progress
        self._tasks = None
        self._pretrained = {}
        self._targets = {}

    def tasks(self) -> dict:
        """The data: ``x, y, x_test, y_test`` (all classes), the source task ``xs, ys, xs_test,
        ys_test`` and the target task ``xT, yT, xT_test, yT_test`` (labels renumbered from 0),
        ``n_in``, ``n_src``, ``n_tgt`` (loaded once)."""
        if self._tasks is None:
            self._tasks = fewshot._tasks(self.cfg)
        return self._tasks

    def pretrained(self, seed: int, on_epoch=None) -> dict:
        """The source network of ``seed`` (trained on first use): ``{"state": state dict,
        "source_test_accuracy", "seconds"}``. ``model_from(state)`` builds a model from it."""
        if seed not in self._pretrained:
            self._pretrained[seed] = fewshot._pretrain(self.cfg, self.tasks(), seed, on_epoch)
        return self._pretrained[seed]

    def source_model(self, seed: int):
        """The pretrained source network of ``seed`` as a Module (source head kept)."""
        t = self.tasks()
        model = fewshot._mlp(t["n_in"], self.cfg.hidden, t["n_src"], self.cfg.device)
        model.load_state_dict(self.pretrained(seed)["state"])
        return model

    def target_model(self, seed: int):
        """The pretrained backbone of ``seed`` with a fresh head for the target task."""
        t = self.tasks()
        return fewshot._from_pretrained(self.pretrained(seed)["state"], t["n_in"], self.cfg.hidden,
                                        t["n_tgt"], self.cfg.device)

    def train_target(self, method: str, seed: int, k: int):
        """The target model that ``method`` (a key of ``fewshot.METHODS``: "scratch", "probe",
        "finetune", "lp_ft", "l2sp") trains from the pretrained network of ``seed`` on the k
        labelled examples per class, exactly as the few-shot section does (same seeds, same
        data); trained on first use, then cached. Treat it as read-only."""
        key = (method, seed, k)
        if key not in self._targets:
            if method not in fewshot.FIT_FNS:
                raise ValueError(f"train_target: method must be one of {list(fewshot.FIT_FNS)}, got {method!r}")
            t = self.tasks()
            fctx = fewshot._Context(self.cfg, t["n_in"], t["n_tgt"], None, None)
            fctx.pretrained[seed] = self.pretrained(seed)["state"]
            idx = self.labelled(seed)[k]
            fewshot.manual_seed(1000 * (seed + 1) + k)          # the few-shot section's seeds
            self._targets[key] = fewshot.FIT_FNS[method](fctx, t["xT"][idx], t["yT"][idx], seed)
        return self._targets[key]

    def labelled(self, seed: int) -> dict:
        """k -> indices into ``xT`` of k labelled examples per class (nested over k)."""
        t = self.tasks()
        return fewshot._labelled_subsets(t["yT"], t["n_tgt"], self.cfg.shots, seed)


# ----------------------------------------------------------------- running ----

def _selected(only) -> list:
    every = sections()
    if only is None:
        return list(every)
    names = [only] if isinstance(only, str) else list(only)
    names = [n.strip() for part in names for n in part.split(",") if n.strip()]
    unknown = [n for n in names if n not in every]
    if unknown or not names:
        raise ValueError(f"--only: unknown section(s) {unknown or names}; the sections are: {', '.join(every)}")
    return [n for n in every if n in names]


def run_report(config=None, only=None, progress: bool = False) -> dict:
    """Run the report's sections (all, or those named in ``only``); nothing is written.

    Returns:
        ``{"config", "sections": {name: results}, "titles": {name: title}, "timings": {name: s},
        "blas_threads", "total_s"}``.
    """
    cfg = fewshot.as_config(config, "run_report")
    names = _selected(only)
    every = sections()
    ctx = DemoContext(cfg, progress)
    out = {"config": asdict(cfg), "sections": {}, "titles": {}, "timings": {}}
    t0 = time.perf_counter()
    with fewshot._blas_threads(cfg.blas_threads) as blas:
        for name in names:
            ts = time.perf_counter()
            out["sections"][name] = every[name].run(ctx)
            out["titles"][name] = every[name].title
            out["timings"][name] = time.perf_counter() - ts
    out["blas_threads"] = blas
    out["total_s"] = time.perf_counter() - t0
    return out


def render_sections(report: dict, out_dir) -> dict:
    """name -> the section's markdown (its figures written into ``out_dir``), each rendered once."""
    every = sections()
    return {name: every[name].render(results, out_dir).strip() for name, results in report["sections"].items()}


def render_report(report: dict, out_dir, rendered=None) -> str:
    """The whole report as markdown (figures written into ``out_dir`` unless ``rendered``, the
    output of ``render_sections``, is given)."""
    rendered = render_sections(report, out_dir) if rendered is None else rendered
    parts = ["# tinytl demo report", "",
             f"{len(report['sections'])} section(s), {report['total_s']:.1f} s in all"
             + (" (quick settings)" if report["config"].get("quick") else "") + ". "
             "Every figure below was measured in this run.", ""]
    for name in report["sections"]:
        parts += [f"## {report['titles'][name]}", "", rendered[name], "",
                  f"*(section `{name}`: {report['timings'][name]:.1f} s)*", ""]
    return "\n".join(parts)


def write_report(report: dict, out_dir, rendered=None) -> dict:
    """Write report.md (with its figures) and report.json into ``out_dir``.

    Returns:
        ``{"report": path of report.md, "json": path of report.json}``.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    md = render_report(report, out_dir, rendered)
    md_path = os.path.join(out_dir, "report.md")
    fewshot._atomic(md_path, lambda f: f.write(md))
    json_path = os.path.join(out_dir, "report.json")
    fewshot._atomic(json_path, lambda f: json.dump(report, f, indent=1, allow_nan=False))
    return {"report": md_path, "json": json_path}


# ------------------------------------------------------------ command line ----

def add_arguments(p):
    """The options of ``tinytl demo``: the few-shot experiment's, and ``--only``."""
    fewshot.add_arguments(p)
    p.add_argument("--only", default=None, metavar="SECTION[,SECTION]",
                   help="run only these sections of the report (" + ", ".join(SECTION_MODULES) + ")")


def main(args) -> int:
    """``tinytl demo``: run the sections, print each, write report.md and the JSON, say where."""
    cfg = fewshot.config_from_args(args)
    fewshot._validate(cfg)          # the cheap checks, before the banner
    names = _selected(getattr(args, "only", None))
    fewshot._check_out(args.out)    # and where the results go, before the training
    progress = not args.quiet and sys.stderr.isatty()
    print(f"tinytl demo: {', '.join(names)} on {cfg.data}, source classes {fewshot._fmt_classes(cfg.source_classes)}, "
          f"target classes {fewshot._fmt_classes(cfg.target_classes)}, {cfg.seeds} seed{'s' if cfg.seeds != 1 else ''}, "
          f"on {cfg.device}" + (" (quick)" if cfg.quick else ""), flush=True)
    report = run_report(cfg, names, progress=progress)
    os.makedirs(args.out, exist_ok=True)
    rendered = render_sections(report, args.out)
    paths = write_report(report, args.out, rendered)
    every = sections()
    for name in names:
        text = every[name].text
        print(f"\n== {report['titles'][name]} ==")
        print(text(report["sections"][name]).strip() if text else rendered[name])
    if "fewshot" in report["sections"]:
        fs = fewshot.save_results(report["sections"]["fewshot"], args.out)
        print(f"\nresults: {fs['json']}")
        print(f"plot:    {fs['png']}" if fs["png"] else
              f"plot:    skipped (matplotlib is not installed; {fewshot.PLOT_HINT} gives it)")
    print(f"report:  {paths['report']} ({report['total_s']:.1f} s)")
    return 0
