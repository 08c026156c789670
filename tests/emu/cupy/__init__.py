"""``import cupy`` answered by the emulated CuPy of tests/emucupy.py, for a subprocess run
with tests/emu on PYTHONPATH (test_bench.py runs ``bench/run.py --device cuda`` so, to
try the benchmark's GPU code without a GPU). Never on the path of the test process."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import emucupy  # noqa: E402

sys.modules[__name__] = emucupy.make_cupy()
