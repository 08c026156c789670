"""Packaging: the compiled kernels are active where the build must have made them,
and import stays light (no CuPy, no PyTorch, lazy submodules)."""
import os
import subprocess
import sys

import tinytl as tl


def test_compiled_kernels_active_when_required():
    info = tl.kernels.backend_info()
    if os.environ.get("TINYTL_REQUIRE_CPP"):
        assert info["cpu"] == "cpp", f"the C++ kernels did not load: {info['cpu_error']}"
    assert info["cpu"] in ("cpp", "numpy")


def test_import_pulls_in_neither_cupy_nor_torch():
    code = ("import sys, tinytl; bad = [m for m in ('cupy', 'torch', 'tinytl.io', 'tinytl.transfer') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_forced_reference_kernels():
    code = "import tinytl; print(tinytl.kernels.backend_info()['cpu'])"
    env = dict(os.environ, TINYTL_KERNELS="numpy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "numpy"
