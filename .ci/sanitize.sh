#!/usr/bin/env bash
# The C++ kernels under AddressSanitizer + UBSan: build tinytl._C with TINYTL_SANITIZE=ON in
# a second virtual environment and run the kernel and fuzz tests with the sanitizer
# runtimes preloaded (Python itself is not instrumented). Any report fails the run;
# --capture=sys lets the report, written to fd 2 by the runtime, reach the log.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv --clear build/ci-asan-venv   # build/ is git-ignored
. build/ci-asan-venv/bin/activate
python -m pip install -q --upgrade pip || true
python -m pip install -q numpy pytest hypothesis
python -m pip install -q -Ccmake.define.TINYTL_SANITIZE=ON -Cbuild-dir=build/asan .

ASAN_LIB=$(gcc -print-file-name=libasan.so)
UBSAN_LIB=$(gcc -print-file-name=libubsan.so)
# Run from outside the checkout so `import tinytl` finds the installed, instrumented build.
cd tests
LD_PRELOAD="$ASAN_LIB:$UBSAN_LIB" \
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
TINYTL_KERNELS=cpp \
  python -m pytest -q --capture=sys -p no:cacheprovider --rootdir=.. ../tests/test_kernels.py ../tests/test_kernels_fuzz.py \
    ../tests/test_gemm.py
