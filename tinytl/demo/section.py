"""What a section of the demo's report is, and the helpers sections share (tables, figures).

See ``tinytl/demo/report.py`` for how sections are run and the report is written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

PLOT_HINT = "pip install 'tinytl[demo]'"


@dataclass(frozen=True)
class Section:
    """One section of the report (see the module docstring)."""
    name: str
    title: str
    run: Callable
    render: Callable
    text: Callable = None     # results -> what the terminal shows (default: the markdown)


# ---------------------------------------------------------------- helpers ----

def markdown_table(header, rows) -> str:
    """A GitHub markdown table from a header row and rows of cells (anything str() prints)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def new_figure(width=6.4, height=4.2):
    """A matplotlib Figure on its own Agg canvas (no pyplot state), or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, out_dir, name: str, alt: str) -> str:
    """Write ``fig`` as ``out_dir/name`` (atomically); the markdown that shows it, or a line saying
    the plot was skipped when ``fig`` is None (matplotlib missing)."""
    if fig is None:
        return f"*({alt}: plot skipped, matplotlib is not installed; {PLOT_HINT} gives it)*"
    fig.tight_layout()
    _atomic(os.path.join(os.fspath(out_dir), name), lambda f: fig.savefig(f, format="png"), binary=True)
    return f"![{alt}]({name})"




def _atomic(path, write, binary=False):
    from .fewshot import _atomic as atomic
    return atomic(path, write, binary)
