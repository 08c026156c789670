"""The demo's "choose" section, at small settings: what report.md shows is what report.json holds."""
import json

import numpy as np
import pytest

from tinytl import demo
from tinytl.demo import choose


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    pytest.importorskip("mnist1d")
    # the default data size: the generated MNIST-1D is cached and shared with tests/test_demo.py
    cfg = demo.DemoConfig.quick_config(seeds=1, shots=[5, 20], target_steps=40, epochs=3)
    report = demo.run_report(cfg, only="choose")
    out = tmp_path_factory.mktemp("choose")
    results = report["sections"]["choose"]
    return results, choose.render(results, out), out


def test_results_are_json_and_complete(section):
    results, _, _ = section
    back = json.loads(json.dumps(results, allow_nan=False))
    assert back["rank_shots"] == [20] and list(back["search"]) == ["5", "20"]
    r = back["ranking"]["20"]
    assert len(r["finetuned"]) == len(back["sources"]) >= 5
    assert any("control" in n for n in r["finetuned"])
    for s in choose.SCORES:
        assert -1 <= r["tau"][s] <= 1
        assert r["speedup"][s] > 0 and r["score_s"][s] > 0
    assert [row["name"] for row in r["layers"]["rows"]] == ["input", "0", "1", "2", "3"]
    for per in back["search"].values():
        assert set(per["winner"]) <= set(choose.RECIPES)
        assert per["gap_points"] == pytest.approx(100 * (per["search_mean"] - per["hindsight_mean"]))
        assert per["hindsight_mean"] == max(per["recipe_means"].values())
        assert per["target_met"] == (per["gap_points"] >= -choose.TARGET_GAP)


def test_markdown_shows_the_measured_numbers(section):
    results, md, out = section
    r = results["ranking"]["20"]
    for s in choose.SCORES:
        assert f"| {s} | {r['tau'][s]:+.2f} |" in md
        assert f"{r['speedup'][s]:.0f}x" in md
    for name, acc in r["finetuned"].items():
        assert f"| {name} | {results['sources'][name]} | {100 * acc:.1f} |" in md
    for k, per in results["search"].items():
        assert f"| {k} | {100 * per['search_mean']:.1f} (" in md and f"{per['gap_points']:+.1f}" in md
    for name, acc in r["cuts"].items():
        assert f"{100 * acc:.1f} |" in md
    # 100 examples, 128 features: H-score is C - 1 = 4 for every source, and the section says so
    hs = [v["hscore"] for v in r["scores"].values()]
    assert np.allclose(hs, 4.0) and "H-score is the same for every source at k = 20" in md
    missed = [k for k, per in results["search"].items() if not per["target_met"]]
    assert ("misses the target" in md) == bool(missed)
    try:
        import matplotlib  # noqa: F401
        assert "](choose_scores.png)" in md and (out / "choose_scores.png").stat().st_size > 1000
    except ImportError:
        assert "plot skipped" in md
