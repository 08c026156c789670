"""The report's "efficient" section (LoRA, BitFit, distillation beside full fine-tuning), on small settings."""
import json
import re
import types

import numpy as np
import pytest

from tinytl import demo
from tinytl.demo import efficient, report

CFG = dict(seeds=2, shots=[5, 20], epochs=3, target_steps=40)


def _run(monkeypatch, tmp_path, memory):
    pytest.importorskip("mnist1d")
    monkeypatch.setattr(efficient, "_memory_module", lambda: memory)
    cfg = demo.DemoConfig.quick_config(**CFG)
    rep = report.run_report(cfg, only=["efficient"])
    report.write_report(rep, tmp_path)
    r = json.loads((tmp_path / "report.json").read_text())["sections"]["efficient"]
    return r, (tmp_path / "report.md").read_text()


@pytest.fixture(scope="module")
def fake_memory():
    """The memory module the section measures with (tinytl.memory, now that it is merged; the
    section's "n/a" path is tested below with it removed)."""
    import tinytl.memory
    return tinytl.memory, None


@pytest.fixture(scope="module")
def run_with_memory(fake_memory, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        yield _run(mp, tmp_path_factory.mktemp("eff"), fake_memory)
    finally:
        mp.undo()


def test_table_shows_the_json(run_with_memory):
    r, md = run_with_memory
    assert r["shots"] == [5, 20] and r["seeds"] == [0, 1]
    assert list(r["strategies"]) == ["finetune", "lora", "bitfit", "distill"]
    for key, label in r["strategies"].items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        want = [f"{100 * r['summary'][key][str(k)]['mean']:.1f} ± {100 * r['summary'][key][str(k)]['std']:.1f}"
                for k in r["shots"]]
        assert cells[1:3] == want, key
        assert cells[3] == f"{r['trainable_params'][key]:,}" and cells[4] == f"{r['total_params'][key]:,}"
        assert cells[5] == f"{r['saved_bytes'][key] / 1024:,.1f} KiB"
        for k in r["shots"]:
            accs = r["accuracy"][key][str(k)]
            assert len(accs) == 2 and all(0 <= a <= 1 for a in accs)
            assert abs(np.mean(accs) - r["summary"][key][str(k)]["mean"]) < 1e-12
    assert "saved for backward (one step, batch 32)" in md
    if efficient.new_figure() is not None:
        assert "](efficient.png)" in md


def test_parameter_counts_are_the_strategies(run_with_memory):
    r, _ = run_with_memory
    h, n_in, c, rank = 128, 40, 5, efficient.LORA_RANK
    full = n_in * h + h + h * h + h + h * c + c
    assert r["trainable_params"]["finetune"] == r["total_params"]["finetune"] == full
    head = h * c + c
    assert r["trainable_params"]["lora"] == rank * (n_in + h) + rank * (h + h) + head
    assert r["total_params"]["lora"] == full + rank * (n_in + h) + rank * (h + h)
    assert r["trainable_params"]["bitfit"] == h + h + head
    s = h // 2
    assert r["trainable_params"]["distill"] == r["total_params"]["distill"] == n_in * s + s + s * s + s + s * c + c
    assert all(r["saved_bytes"][k] > 0 for k in r["strategies"])


def test_sentences_follow_the_numbers(run_with_memory):
    """Each verdict is recomputed here from the accuracies, and the text says it."""
    r, md = run_with_memory
    for key, label in r["strategies"].items():
        if key == "finetune":
            continue
        line = next(x for x in md.splitlines() if x.startswith(f"- **{label}**"))
        for k in r["shots"]:
            s, f = np.array(r["accuracy"][key][str(k)]), np.array(r["accuracy"]["finetune"][str(k)])
            diff = s.mean() - f.mean()
            tol = max(s.std(ddof=1), f.std(ddof=1), 0.01)
            want = "matches" if abs(diff) <= tol else ("above" if diff > 0 else "below")
            assert r["verdict"][key][str(k)] == want
            phrase = {"matches": "matches it", "above": "beats it by", "below": "falls short by"}[want]
            assert re.search(rf"at {k} labels per class it {phrase}", line), (key, k, line)
    verdicts = [v for per in r["verdict"].values() for v in per.values()]
    if all(v != "below" for v in verdicts):
        assert "Every cheaper strategy matches full fine-tuning or does better" in md
    else:
        assert "No cheaper strategy matches" in md or "Not every cheaper strategy matches" in md


def test_cheaper_strategies_learn_the_task(run_with_memory):
    """Robust even on these tiny settings: every strategy is far above chance (20%) at 20 labels,
    and LoRA and BitFit train under an eighth of the weights."""
    r, _ = run_with_memory
    for key in r["strategies"]:
        assert r["summary"][key]["20"]["mean"] > 0.35, key
    assert r["trainable_params"]["lora"] < r["trainable_params"]["finetune"] / 8
    assert r["trainable_params"]["bitfit"] < r["trainable_params"]["finetune"] / 8


def test_without_tinytl_memory_the_column_says_na_and_why(monkeypatch, tmp_path):
    r, md = _run(monkeypatch, tmp_path, (None, "this build has no tinytl.memory"))
    assert all(v is None for v in r["saved_bytes"].values())
    assert r["memory_note"] == "this build has no tinytl.memory"
    assert md.count("| n/a |") == 4
    assert "Memory: n/a, because this build has no tinytl.memory" in md


def test_shots_used_are_those_of_5_and_20_present_else_the_smallest():
    cfg = demo.DemoConfig.quick_config
    assert efficient._shots(cfg()) == [5, 20]
    assert efficient._shots(cfg(shots=[5, 10])) == [5]
    assert efficient._shots(cfg(shots=[20, 50])) == [20]
    assert efficient._shots(cfg(shots=[10, 50])) == [10]


def test_section_is_registered_after_fewshot():
    names = list(report.sections())
    assert names.index("efficient") == names.index("fewshot") + 1
