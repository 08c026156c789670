"""Smoke test of the benchmark runner: ``bench/run.py --smoke`` runs and writes valid JSON.

No timing is asserted (the figures of a few-second run mean nothing); this only
keeps the runner working as the engine changes under it.
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_smoke_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run.py"), "--smoke", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "== targets ==" in r.stdout
    with open(out) as f:
        data = json.load(f, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["mode"] == "smoke"
    assert data["parity"]["ok"], data["parity"]
    for key in ("platform", "cpu_model", "cores", "blas", "numpy", "tinytl", "tinytl_kernels", "env"):
        assert key in data["machine"], key
    assert "OPENBLAS_CORETYPE" in data["machine"]["env"]
    assert data["aa"]["ratio"] > 0
    assert data["bandwidth"]["best_gbps"] > 0
    case = data["cases"]["1-mlp-b32"]
    assert case["entries"]["tinytl"]["median_s"] > 0 and case["entries"]["numpy"]["median_s"] > 0
    assert {"4-head", "5-kernels", "6-import", "7-rss", "8-memory"} <= set(data["cases"])
    mem = data["cases"]["8-memory"]["rows"]
    assert mem["deep 784-64x8-10 / bitfit / sgd"]["tinytl"]["a"] < mem["deep 784-64x8-10 / full / sgd"]["tinytl"]["a"]
    assert all(t["verdict"] in ("PASS", "MISS", "SKIP") for t in data["targets"])


def test_bench_main_is_importable():
    """``python -m tinytl bench`` loads bench/run.py and calls main(argv): check that path works
    (in a subprocess, so the runner's imports and sys.path entries stay out of this process)."""
    code = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('tinytl_bench_run', {os.path.join(REPO, 'bench', 'run.py')!r}); "
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); "
            "sys.exit(mod.main(['--list']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1-mlp-b32" in r.stdout


def test_bench_gpu_cases_run_on_the_emulated_gpu(tmp_path):
    """``bench/run.py --device cuda`` with tests/emu on PYTHONPATH, where ``import cupy``
    gives the emulated CuPy (tests/emucupy.py): the GPU section's code runs end to end
    before a real GPU session spends its minutes on it. The times mean nothing here."""
    import emucupy
    if emucupy.compiler() is None:
        pytest.skip("no g++ to emulate a GPU")
    out = tmp_path / "bench_gpu.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(REPO, "tests", "emu"),
                                                       os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run.py"), "--device", "cuda", "--smoke",
                        "--cases", "cuda-1,cuda-2", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "GPU: emulated" in r.stdout and "== targets ==" in r.stdout
    with open(out) as f:
        data = json.load(f, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    cuda = data["cuda"]
    assert not cuda["skipped"] and cuda["gpu"].startswith("emulated")
    assert set(cuda["cases"]) == {"cuda-1-mlp-b32", "cuda-2-mlp-b128"}
    for case in cuda["cases"].values():
        assert case["entries"]["tinytl"]["median_s"] > 0 and case["entries"]["cupy mlp"]["median_s"] > 0
        assert case["launches_per_step"]["tinytl kernels"] == 8
    assert [t["case"] for t in data["targets"]] == ["cuda-2-mlp-b128"]  # its torch column needs a CUDA torch
