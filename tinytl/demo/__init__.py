"""The main job: ``tinytl demo`` runs the whole story on MNIST-1D and writes ``report.md``.

One section per capability, each a module of this package (``tinytl/demo/report.py`` says
how a section is written and run; ``--only NAME`` runs one):

- ``fewshot``: pretrain on some classes, transfer to others with k labels per class, five
  ways (``tinytl/demo/fewshot.py``; ``run_demo`` returns its results);
- ``efficient``: LoRA, BitFit and distillation beside full fine-tuning, with memory;
- ``choose``: transferability scores of several sources and layers, and the recipe search;
- ``shift``: unsupervised domain adaptation on shifted MNIST-1D domains;
- ``explain``: weight drift, CKA and attributions of the fine-tuned models;
- ``security``: adversarial attacks, the transfer attack, adversarial fine-tuning.

Read next: ``tinytl/demo/fewshot.py``, then ``tinytl/demo/report.py``.
"""
from . import report
from .fewshot import (METHODS, PLOT_HINT, DemoConfig, format_table, parse_classes, parse_shots, plot_results,
                      run_demo, save_results)
from .report import DemoContext, Section, add_arguments, main, run_report, sections, write_report

__all__ = ["DemoConfig", "METHODS", "run_demo", "format_table", "save_results", "plot_results",
           "parse_classes", "parse_shots", "PLOT_HINT", "run_report", "write_report", "sections", "Section",
           "DemoContext"]
