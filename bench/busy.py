"""Case 12-busy: small training steps while a CPU-bound neighbour process holds a core.

Why (issue 20): on this kind of 2-core machine, shared with other jobs, small-MLP
steps ran about 10x slower with OpenBLAS's two threads than with one (36 ms
against 3.5 ms a step): a GEMM split over two threads waits for the thread whose
core the neighbour holds. tinytl's small-batch path must not depend on the BLAS's
threads; this case shows whether it does.

What runs: the tinytl step and the NumPy MLP's step (``bench/numpy_mlp.py``) at
case 1's shapes (784-128-10, batch 32) and at the fine-tuning sizes
(40-128-128-5, batch 20), four entries in interleaved blocks (the protocol of
``bench/common.py``), twice:

1. "quiet": before the neighbour starts;
2. "busy": while one neighbour process (``python -c`` spin loop) runs.

Reported: each entry's median in both conditions, the slowdown busy/quiet per
library and shape, and tinytl/numpy in each condition. No pass/fail target
(the issue asks for the times in that condition). The neighbour's own CPU time
over its life is recorded too, to show it did hold a core (about 1.0 of its
wall time when it did).

The neighbour is killed in a ``finally`` block (Ctrl-C included); should this
process die without running it, the neighbour stops by itself when its parent
is gone or after ``NEIGHBOUR_LIMIT_S``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from common import Entry, interleaved

SHAPES = [((784, 128, 10), 32), ((40, 128, 128, 5), 20)]
LIBS = ("tinytl", "numpy")
NEIGHBOUR_LIMIT_S = 900

NEIGHBOUR = r"""
import os, sys, time
parent, end = {parent}, time.monotonic() + {limit}
sys.stdout.write("spinning\n")
sys.stdout.flush()
while os.getppid() == parent and time.monotonic() < end:
    for _ in range(200000):
        pass
"""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (from /proc/PID/stat), NaN where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _entries(mlps):
    entries = []
    for sizes, batch in SHAPES:
        m = mlps(sizes, batch)
        shape = f"{'-'.join(map(str, sizes))} b{batch}"
        entries += [Entry(f"{lib} {shape}", m[lib][0]) for lib in LIBS]
    return entries


def run(report, cfg, pause, fmt_t, mlps):
    """Time the entries quiet, then with the neighbour spinning; ``mlps(sizes, batch)`` is run.py's _mlps."""
    report.p("\n== 12-busy: training steps while a CPU-bound neighbour process spins (python -c loop) ==")
    entries = _entries(mlps)
    kw = dict(blocks=cfg["blocks"], block_s=cfg["block_s"], pause=pause, warmup_s=cfg["warmup_s"])
    quiet = interleaved(entries, **kw)
    code = NEIGHBOUR.format(parent=os.getpid(), limit=NEIGHBOUR_LIMIT_S)
    p = None
    try:
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdout.readline()                       # it has started and is in its loop
        t0, c0 = time.perf_counter(), _cpu_seconds(p.pid)
        busy = interleaved(entries, **kw)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds(p.pid) - c0
    finally:
        if p is not None:
            p.kill()
            p.wait()
            p.stdout.close()
    med = {cond: {k: v.median for k, v in res.items()} for cond, res in (("quiet", quiet), ("busy", busy))}
    slowdown = {k: med["busy"][k] / med["quiet"][k] for k in med["quiet"]}
    vs_numpy = {}
    for sizes, batch in SHAPES:
        shape = f"{'-'.join(map(str, sizes))} b{batch}"
        vs_numpy[shape] = {cond: med[cond][f"tinytl {shape}"] / med[cond][f"numpy {shape}"] for cond in med}
    report.data["cases"]["12-busy"] = dict(
        shapes=[dict(sizes=s, batch=b) for s, b in SHAPES], neighbour="python -c spin loop, one process",
        neighbour_cpu_s=cpu, neighbour_wall_s=wall, neighbour_cpu_fraction=cpu / wall if wall else None,
        quiet={k: v.as_dict() for k, v in quiet.items()}, busy={k: v.as_dict() for k, v in busy.items()},
        medians_s=med, slowdown_busy_over_quiet=slowdown, tinytl_over_numpy=vs_numpy)
    report.p(f"  {'step':<28}{'quiet':>12}{'busy':>12}{'busy/quiet':>12}")
    for k in med["quiet"]:
        report.p(f"  {k:<28}{fmt_t(med['quiet'][k]):>12}{fmt_t(med['busy'][k]):>12}{slowdown[k]:11.2f}x")
    report.p("  tinytl/numpy: " + "; ".join(f"{s} quiet {r['quiet']:.2f}x, busy {r['busy']:.2f}x"
                                             for s, r in vs_numpy.items())
             + f"  (the neighbour used {cpu:.1f} s of CPU in {wall:.1f} s)")
