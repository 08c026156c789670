"""The demo's "data mismatch" section (tinytl/demo/shift.py), in --quick mode."""
import contextlib
import io
import json
import re

import pytest

from tinytl import cli
from tinytl.demo import report, shift


@pytest.fixture(scope="module")
def quick_shift(tmp_path_factory):
    pytest.importorskip("mnist1d")
    out = tmp_path_factory.mktemp("demo_shift") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = cli.main(["demo", "--quick", "--only", "shift", "--out", str(out)])
    assert rc == 0, stderr.getvalue()
    with open(out / "report.json") as f:
        rep = json.load(f)
    return rep, (out / "report.md").read_text(), stdout.getvalue(), out


def test_shift_is_a_section_after_fewshot():
    names = report.SECTION_MODULES
    assert "shift" in names and names.index("shift") > names.index("fewshot")
    assert report.sections()["shift"] is shift.SECTION


def test_every_method_every_domain_every_seed(quick_shift):
    rep, md, _, _ = quick_shift
    r = rep["sections"]["shift"]
    assert set(r["domains"]) == {"mild", "stretched", "tilted"} and r["hard_domain"] == "tilted"
    assert r["domains"]["tilted"] == {"shear_scale": 3.0, "num_samples": r["domains"]["tilted"]
                                    ["num_samples"], "seed": 7}
    for d in r["domains"]:
        for m in shift.METHODS:
            accs = r["accuracy"][d][m]
            if m == "adabn" and not r["batchnorm"]:
                assert accs == [] and r["summary"][d][m] is None
                continue
            assert len(accs) == len(r["seeds"]) and all(0 <= a <= 1 for a in accs), (d, m)
        # the bound trained on target labels beats the source-only model on these shifts
        assert r["summary"][d]["target"]["mean"] > r["summary"][d]["source_only"]["mean"] + 0.05


def test_markdown_shows_the_json(quick_shift):
    rep, md, out, folder = quick_shift
    r = rep["sections"]["shift"]
    for d in r["domains"]:
        for m, label in shift.METHODS.items():
            s = r["summary"][d][m]
            cell = "n/a (no BatchNorm1d)" if s is None else f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
            row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
            assert cell in row, (d, m, row)
            rec = r["recovered"][d].get(m)
            if rec is not None:
                assert f"{100 * rec:.0f}%" in row
    best, hard = r["best_on_hard"], r["hard_domain"]
    assert f"best method, {shift.METHODS[best]}" in md
    if r["target_met"]:
        assert "meeting the issue's target" in md
    else:
        gap = 100 * (1 / 3 - r["recovered"][hard][best])
        assert f"short of the issue's target of a third by {gap:.0f} points" in md
    assert re.search(r"!\[target accuracy per method and shift\]\(shift\.png\)|plot skipped", md)
    assert f"On the hard shift ({hard}) the best method" in out      # the terminal shows the verdict too


def test_quick_budget(quick_shift):
    rep, _, _, _ = quick_shift
    # ~4 s of CPU on a quiet 2-core machine; a busy one (the test suite in parallel) is slower
    assert rep["timings"]["shift"] < 60


def test_verdict_without_a_gap_and_a_skipped_section():
    s = {"source_only": {"mean": 0.5, "std": 0.0}, "target": {"mean": 0.4, "std": 0.0}}
    text = shift._verdict({"hard_domain": "tilted", "best_on_hard": None, "summary": {"tilted": s}})
    assert "no gap to recover" in text and "50.0%" in text and "40.0%" in text
    r = {"skipped": "no domains"}
    assert "skipped: no domains" in shift._render(r, ".") and "skipped" in shift._text(r)
