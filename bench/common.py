"""The timing protocol shared by every benchmark (see DESIGN.md, "Benchmark protocol").

Every comparison is measured in one process, in interleaved blocks::

    A B C A B C A B C ...

and each entry's figure is the median over its blocks of (block time / calls
in the block). Before each timed block the runner

1. collects garbage and sleeps ``pause`` seconds (0.3 s by default): the BLAS
   and OpenMP worker threads of the library timed just before spin for a while
   after their last call, and on a 2-core machine they steal the cores from the
   next library (PyTorch timed against itself read 1.12-1.27x without the
   pause, 0.97-1.01x with it);
2. makes one untimed call, which wakes this library's own thread pool and
   brings its working set back into the caches.

The A/A control (the same function timed as two entries) tells whether a run
is trustworthy: a ratio off by more than ``AA_TOLERANCE`` means the machine was
too noisy for the ratios of that run to mean anything.

Read next: ``bench/run.py`` (the cases and the table).
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

AA_TOLERANCE = 0.05           # |A/A - 1| above this flags the run as noise
DEFAULT_PAUSE = 0.3           # seconds slept before each timed block


@dataclass
class Entry:
    """One thing to time: ``fn()`` is one call; ``sync()`` (optional) waits for a GPU."""
    name: str
    fn: callable
    sync: callable = None


@dataclass
class Timing:
    """The blocks of one entry: per-call seconds of each block, and the calls per block."""
    name: str
    blocks: list = field(default_factory=list)
    calls: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.blocks)

    @property
    def spread(self) -> float:
        """Inter-quartile range of the blocks over their median (a noise figure)."""
        if len(self.blocks) < 4:
            return float("nan")
        q = statistics.quantiles(self.blocks, n=4)
        return (q[2] - q[0]) / self.median

    def as_dict(self) -> dict:
        return {"median_s": self.median, "spread": self.spread, "calls_per_block": self.calls,
                "blocks_s": self.blocks}


def _call(entry: Entry, n: int) -> float:
    fn, sync = entry.fn, entry.sync
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if sync is not None:
        sync()
    return time.perf_counter() - t0


def calibrate(entry: Entry, block_s: float, warmup_s: float) -> int:
    """Warm ``entry`` up for about ``warmup_s`` seconds (at least 5 calls) and return
    the number of calls that fills a block of about ``block_s`` seconds.

    The per-call estimate is the median of the warm-up calls: the first calls
    (allocations, lazy imports, cold caches) and a stray preemption must not
    shrink every block of the run to a single call.
    """
    times = []
    while len(times) < 5 or sum(times) < warmup_s:
        times.append(_call(entry, 1))
        if sum(times) > 20 * max(warmup_s, block_s) and len(times) >= 2:   # very slow calls: stop
            break
    per_call = statistics.median(times)
    return max(1, int(round(block_s / per_call)))


def interleaved(entries: list, blocks: int = 15, block_s: float = 0.1, pause: float = DEFAULT_PAUSE,
                warmup_s: float = 0.2) -> dict:
    """Time ``entries`` in interleaved blocks (A B C A B C ...); returns {name: Timing}.

    Each block of an entry is: gc.collect(), sleep ``pause``, one untimed call,
    then ``calls`` timed calls (``calls`` chosen so a block lasts ~``block_s``).
    """
    calls = {}
    for e in entries:
        calls[e.name] = calibrate(e, block_s, warmup_s)
    out = {e.name: Timing(e.name, calls=calls[e.name]) for e in entries}
    for _ in range(blocks):
        for e in entries:
            gc.collect()
            if pause > 0:
                time.sleep(pause)
            _call(e, 1)                       # untimed: wake this library's threads
            n = calls[e.name]
            out[e.name].blocks.append(_call(e, n) / n)
    return out


def aa_verdict(ratio: float) -> str:
    return "ok" if abs(ratio - 1.0) <= AA_TOLERANCE else "NOISE"


# ---------------------------------------------------------- subprocesses ----

def run_child(argv: list, env=None, cwd=None, timeout: float = 600) -> dict:
    """Run a child process; returns its wall time, its own peak RSS (KiB) and its output.

    The child is reaped with ``os.wait4``, which gives that child's own ``ru_maxrss``;
    ``resource.getrusage(RUSAGE_CHILDREN)`` would give the maximum over every child
    waited for so far, so one large child would mask all the later ones. Output goes
    to temporary files, not pipes, so the child never blocks on a full pipe.
    """
    import tempfile
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=fo, stderr=fe, env=env, cwd=cwd)
        killer = threading.Timer(timeout, p.kill)     # a hung child is killed, not waited for forever
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return {"wall_s": wall, "rc": p.returncode, "maxrss_kib": ru.ru_maxrss,
                "stdout": fo.read().decode(errors="replace"), "stderr": fe.read().decode(errors="replace")}


PEAK_RSS_SNIPPET = ("import sys as _s; _s.stdout.write('\\nVmHWM:' + [l for l in open('/proc/self/status') "
                    "if l.startswith('VmHWM:')][0].split(':')[1].strip() + '\\n')")


def peak_rss_mib(stdout: str) -> float:
    """The child's own peak RSS, printed by ``PEAK_RSS_SNIPPET`` at its end (MiB).

    Why not ``ru_maxrss``: on Linux, a child's ru_maxrss (from wait4 or
    RUSAGE_CHILDREN) includes the high-water mark of the address space it had
    before ``exec``, i.e. the parent's RSS at fork; with NumPy and PyTorch
    loaded in this process that is ~400 MiB for every child, whatever it does.
    ``VmHWM`` in ``/proc/self/status`` is the peak of the child's own (post-exec)
    address space.
    """
    for line in reversed(stdout.splitlines()):
        if line.startswith("VmHWM:"):
            kib = line.split(":", 1)[1].split()[0]
            return int(kib) / 1024
    raise ValueError("the child did not report its peak RSS (VmHWM)")


# --------------------------------------------------------------- machine ----

_THREAD_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "TINYTL_KERNELS")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _openblas_probe() -> dict:
    """Ask the OpenBLAS that NumPy loaded which kernel it runs (the core type) and
    how many threads it uses, through ctypes (what threadpoolctl does)."""
    import ctypes
    info = {}
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return info
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                core = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
                if core is None:
                    continue
                core.restype = ctypes.c_char_p
                info["library"] = path
                info["corename"] = core().decode()
                nthreads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                if nthreads is not None:
                    info["num_threads"] = int(nthreads())
                cfg = getattr(lib, f"{prefix}openblas_get_config{suffix}", None)
                if cfg is not None:
                    cfg.restype = ctypes.c_char_p
                    info["config"] = cfg().decode()
                return info
    return info


def blas_info() -> dict:
    """NumPy's BLAS: threadpoolctl's view when it is installed, else show_config + a ctypes probe."""
    import numpy as np
    info = {}
    try:
        cfg = np.show_config(mode="dicts")
        info["build"] = cfg.get("Build Dependencies", {}).get("blas", {})
    except Exception as e:   # older NumPy: no mode="dicts"
        info["build"] = {"error": str(e)}
    try:
        import threadpoolctl
        info["threadpoolctl"] = [
            {k: d.get(k) for k in ("internal_api", "prefix", "version", "num_threads", "architecture",
                                   "threading_layer", "filepath")}
            for d in threadpoolctl.threadpool_info()]
    except ImportError:
        info["threadpoolctl"] = None
    info["runtime"] = _openblas_probe()
    return info


def machine_info(torch_mod=None, tinytl_mod=None) -> dict:
    import numpy as np
    m = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in _THREAD_ENV},
    }
    if torch_mod is not None:
        m["torch"] = torch_mod.__version__
        m["torch_threads"] = torch_mod.get_num_threads()
        try:
            cfg = torch_mod.__config__.show()
            line = next((l for l in cfg.splitlines() if "BLAS_INFO=" in l), "")
            m["torch_blas"] = line.split("BLAS_INFO=", 1)[1].split(",")[0].strip() if line else None
        except Exception:
            m["torch_blas"] = None
    else:
        m["torch"] = None
    if tinytl_mod is not None:
        m["tinytl"] = tinytl_mod.__version__
        m["tinytl_kernels"] = tinytl_mod.kernels.backend_info()
    return m


def machine_line(m: dict) -> str:
    rt = m["blas"].get("runtime") or {}
    tp = m["blas"].get("threadpoolctl")
    if tp:
        blas = ", ".join(f"{d['internal_api']} {d['version']} {d.get('architecture')} x{d['num_threads']}" for d in tp)
    else:
        b = m["blas"].get("build", {})
        blas = f"{b.get('name', '?')} {b.get('version', '')}".strip()
        if rt:
            blas += f" core={rt.get('corename')} x{rt.get('num_threads')}"
    env = m["env"]
    cts = " ".join(f"{k}={'unset' if env.get(k) is None else env[k]}"
                   for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    parts = [f"{m['cpu_model']}, {m['cores']} cores", m["platform"], f"python {m['python']}",
             f"numpy {m['numpy']} [{blas}]"]
    if m.get("torch"):
        parts.append(f"torch {m['torch']} [{m.get('torch_blas')}] x{m.get('torch_threads')}")
    if m.get("tinytl"):
        k = m["tinytl_kernels"]
        parts.append(f"tinytl {m['tinytl']} kernels={k['cpu']}")
    return "machine: " + "; ".join(parts) + f"; {cts}"
