"""The demo report's "explain" section in --quick mode: its markdown shows the numbers of its
JSON, its verdict follows from them, and its figures are written."""
import json
import re

import numpy as np
import pytest

from tinytl import demo
from tinytl.demo import explain as section
from tinytl.demo.report import SECTION_MODULES, run_report, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("mnist1d")
    out = tmp_path_factory.mktemp("demo_explain")
    rep = run_report(demo.DemoConfig.quick_config(), only="explain")
    paths = write_report(rep, out)
    with open(paths["json"]) as f:
        saved = json.load(f)
    with open(paths["report"]) as f:
        md = f.read()
    return rep, saved, md, out


def test_registered_after_fewshot():
    assert "explain" in SECTION_MODULES
    assert SECTION_MODULES.index("explain") > SECTION_MODULES.index("fewshot")
    assert section.SECTION.name == "explain"


def test_table_shows_the_json(report):
    _, saved, md, _ = report
    r = saved["sections"]["explain"]
    assert r["k"] == 10                                    # the smallest of the quick shots >= 10
    for m, label in r["methods"].items():
        p = r["per_method"][m]
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{100 * p['accuracy']:.1f}%"
        assert cells[2:4] == [f"{p['drift']['0']:.3f}", f"{p['drift']['2']:.3f}"]
        assert cells[4:] == [f"{p['cka'][n]:.3f}" for n in section.HIDDEN]
        assert all(0 <= p["cka"][n] <= 1 + 1e-9 for n in section.HIDDEN)
        assert "4" not in p["drift"]                       # the new head is left out


def test_verdict_follows_the_numbers(report):
    _, saved, md, _ = report
    r = saved["sections"]["explain"]
    base = r["per_method"]["finetune"]
    for m in ("lp_ft", "l2sp"):
        p, v = r["per_method"][m], r["verdict"][m]
        assert v["first_layer_drift_less"] == (p["drift"]["0"] < base["drift"]["0"])
        assert v["first_layer_cka_higher"] == (p["cka"]["1"] > base["cka"]["1"])
        assert v["second_layer_drift_less"] == (p["drift"]["2"] < base["drift"]["2"])
        label = r["methods"][m]
        sentence = section._sentence(label, v)
        assert sentence in md
        if v["first_layer_drift_less"] and v["first_layer_cka_higher"]:
            assert f"{label} moves the first layer **less**" in sentence
        ratio = p["drift"]["0"] / base["drift"]["0"]
        assert f"{ratio:.2f}x" in sentence


def test_probes_and_attributions(report):
    _, saved, md, out = report
    r = saved["sections"]["explain"]
    pr = r["probe"]
    assert pr["pretrained"]["layers"] == ["input", "1", "3", "4"]
    row = next(line for line in md.splitlines() if line.startswith("| pretrained |"))
    assert row == "| pretrained | " + " | ".join(f"{100 * a:.1f}%" for a in pr["pretrained"]["accuracy"]) + " |"
    att = r["attributions"]
    n_tgt = len(att["classes"])
    assert len(att["rows"]) == n_tgt and np.array(att["inputs"]).shape == (n_tgt, 40)
    assert att["fine-tuned"]["target"] == list(range(n_tgt))     # one example per class, its true class
    assert all(0 <= t < len(att["pretrained"]["source_classes"]) for t in att["pretrained"]["target"])
    a = np.array(att["fine-tuned"]["attributions"])
    assert a.shape == (n_tgt, 40) and np.abs(a).sum() > 0
    rel = att["pretrained"]["relative_delta"] + att["fine-tuned"]["relative_delta"]
    assert np.median(rel) < 0.02                                  # completeness, up to the ReLU kinks
    assert f"gap of {np.median(rel):.1e} (median; at most {max(rel):.1e})" in md
    m = re.search(r"\(mean (-?\d\.\d\d)\)", md)
    assert m and float(m.group(1)) == pytest.approx(np.mean(att["cosine"]), abs=0.006)
    pytest.importorskip("matplotlib")
    for name in ("explain_drift.png", "explain_cka.png", "explain_attributions.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        assert f"]({name})" in md
