#!/usr/bin/env bash
# One pass of every check that needs a GPU, for a session that has one (no network).
# Run from anywhere: `bash bench/gpu_check.sh`; results go under $OUT (default ./gpu_out):
#   env.txt          GPU, driver, CuPy/PyTorch/NVRTC versions
#   install.log      pip install --no-build-isolation . (the wheel, as a user gets it)
#   gpu_tests.log    pytest -k "(cuda or gpu) and not emulat": nvcc compiles, the CUDA kernels vs
#                    reference.py, the engine's device tests (the CPU's GPU emulator is left out)
#   bench_gpu.json   python bench/run.py --device cuda --quick (+ bench_gpu.log)
#   full_tests.log   the rest of the suite, in the time that is left
#   summary.txt      one line per step: name, exit status, seconds (124 = ran out of time)
# Every step has its own time limit inside an overall budget of 520 s, so the script ends
# within 9 minutes whatever hangs. The GPU steps come first: the full suite runs on CPUs
# too (CI runs it), so it gets what is left.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python}
DEADLINE=$(( $(date +%s) + ${GPU_CHECK_BUDGET:-520} ))  # seconds for all the steps
: > "$OUT/summary.txt"

# step NAME CAP_SECONDS LOG COMMAND...: run COMMAND for at most min(CAP, time left), log its output.
step() {
    local name=$1 cap=$2 log=$3; shift 3
    local left=$(( DEADLINE - $(date +%s) )) t0=$(date +%s) rc
    (( cap > left )) && cap=$left
    if (( cap < 10 )); then echo "$name skipped (no time left)" | tee -a "$OUT/summary.txt"; return; fi
    echo "== $name (at most ${cap}s): $*"
    timeout --kill-after=10 "$cap" "$@" 2>&1 | tee "$OUT/$log"
    rc=$?
    echo "$name rc=$rc ${cap}s-cap $(( $(date +%s) - t0 ))s" | tee -a "$OUT/summary.txt"
}

{
    timeout 20 nvidia-smi
    timeout 20 nvcc --version
    timeout 60 "$PY" -c 'import sys, numpy; print(sys.version); print("numpy", numpy.__version__)'
    timeout 60 "$PY" -c 'import cupy; print("cupy", cupy.__version__, "nvrtc", cupy.cuda.nvrtc.getVersion(), "runtime", cupy.cuda.runtime.runtimeGetVersion())'
    timeout 60 "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
} > "$OUT/env.txt" 2>&1

step install 200 install.log "$PY" -m pip install --no-build-isolation --no-deps --no-index -v .
# -P: import the installed tinytl (with tinytl._C and the .cu package data), not the checkout.
step package_data 30 package_data.log "$PY" -P -c \
    'import importlib.resources as r, tinytl, tinytl.kernels.cuda as k; print(tinytl.__file__, sorted(p.name for p in r.files("tinytl.kernels").joinpath("cuda").iterdir())); print(k._source("sgd")[:60])'
step gpu_tests 240 gpu_tests.log "$PY" -P -m pytest -q -p no:cacheprovider -ra tests/ -k "(cuda or gpu) and not emulat"
if "$PY" bench/run.py --help 2>/dev/null | grep -q -- "--device"; then
    step bench_gpu 120 bench_gpu.log "$PY" -P bench/run.py --device cuda --quick --out "$OUT/bench_gpu.json"
else
    echo "bench_gpu skipped (bench/run.py has no --device)" | tee -a "$OUT/summary.txt"
fi
step full_tests 400 full_tests.log "$PY" -P -m pytest -q -p no:cacheprovider -ra tests/ -k "not (cuda or gpu)"

echo "== summary"; cat "$OUT/summary.txt"
! grep -v " rc=0 " "$OUT/summary.txt" | grep -q "rc="  # exit 1 when a step failed or timed out
