"""The four transfer examples run (--quick) and print the transfer and from-scratch figures."""
import importlib
import re
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tinytl.datasets", reason="tinytl/datasets.py (mnist1d) is not there yet")
pytest.importorskip("mnist1d", reason="the examples generate MNIST-1D with the mnist1d package")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LINE = re.compile(r"^\s+(from scratch|with transfer[^:]*?)\s*:\s*([0-9.]+)$", re.M)


@pytest.fixture(scope="module", autouse=True)
def examples_on_path():
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


@pytest.mark.parametrize("name, metric", [
    ("sup_to_sup", "test accuracy"),
    ("sup_to_unsup", "test reconstruction MSE"),
    ("unsup_to_sup", "test accuracy"),
    ("unsup_to_unsup", "test reconstruction MSE"),
])
def test_example_prints_transfer_and_scratch(name, metric, capsys):
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.splitlines()) > 5      # the story is told
    t0 = time.perf_counter()
    result = module.main(["--quick"])
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert "TransferReport:" in out and "copied" in out                  # the carry-over is shown
    assert metric in out
    lines = dict(LINE.findall(out))
    assert "from scratch" in lines and any(k.startswith("with transfer") for k in lines), out
    assert float(lines["from scratch"]) == pytest.approx(result["scratch"], abs=1e-4)
    assert float(lines["with transfer" if "with transfer" in lines else
                       next(k for k in lines if k.startswith("with transfer"))]) == pytest.approx(
        result["transfer"], abs=1e-4)
    for v in result.values():
        assert 0 <= v < 10
    with capsys.disabled():
        print(f"\n{name} --quick: {elapsed:.1f} s; " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    assert elapsed < 30


def test_example_runs_as_a_script():
    import subprocess
    import os
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-W", "ignore", str(EXAMPLES / "unsup_to_unsup.py"), "--quick"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "from scratch" in r.stdout and "with transfer" in r.stdout


def test_domain_adaptation_example(capsys):
    """examples/domain_adaptation.py: labelled source, unlabelled target, the three figures printed."""
    module = importlib.import_module("domain_adaptation")
    assert module.__doc__ and len(module.__doc__.splitlines()) > 5
    result = module.main(["--quick"])
    out = capsys.readouterr().out
    assert "AdaptReport: mmd" in out and "target test accuracy" in out
    printed = dict(re.findall(r"^\s+(source only|with adaptation[^:]*?|trained on target[^:]*?)\s*:\s*([0-9.]+)$", out, re.M))
    assert float(printed["source only"]) == pytest.approx(result["source_only"], abs=1e-4)
    assert float(printed["with adaptation (MMD, no labels)"]) == pytest.approx(result["adapted"], abs=1e-4)
    assert all(0 <= v <= 1 for v in result.values())
    assert result["target_supervised"] > result["source_only"]     # the shift costs the source model
