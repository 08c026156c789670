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


def test_import_pulls_in_neither_cupy_nor_torch(tmp_path):
    code = ("import sys, tinytl; bad = [m for m in ('cupy', 'torch', 'tinytl.io', 'tinytl.transfer') "
            "if m in sys.modules]; print(bad)")
    # cwd: outside the checkout, so the child imports the installed tinytl
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "[]"


def test_forced_reference_kernels(tmp_path):
    code = "import tinytl; print(tinytl.kernels.backend_info()['cpu'])"
    env = dict(os.environ, TINYTL_KERNELS="numpy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=tmp_path)
    assert out.stdout.strip() == "numpy"


BLOCK_C = "import sys; sys.modules['tinytl._C'] = None\n"   # as if the extension could not load


def test_missing_extension_falls_back_with_one_warning(tmp_path):
    code = BLOCK_C + ("import warnings\nwith warnings.catch_warnings(record=True) as w:\n"
                      "    warnings.simplefilter('always')\n    import tinytl\n"
                      "print(tinytl.kernels.backend_info()['cpu'], len(w), 'reference' in str(w[0].message))")
    env = {k: v for k, v in os.environ.items() if k != "TINYTL_KERNELS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=tmp_path)
    assert out.stdout.split() == ["numpy", "1", "True"]


def test_required_cpp_kernels_fail_loudly_when_missing(tmp_path):
    env = dict(os.environ, TINYTL_KERNELS="cpp")
    out = subprocess.run([sys.executable, "-c", BLOCK_C + "import tinytl"], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode != 0
    assert "ImportError: TINYTL_KERNELS=cpp requires the compiled kernels" in out.stderr
