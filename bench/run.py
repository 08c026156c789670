"""tinytl benchmarks: ``python bench/run.py [--quick|--smoke] [--cases ...] [--out PATH]``.

Times a training step of tinytl against two baselines in one process,
interleaved, after warm-up (the protocol is in ``bench/common.py``):

- PyTorch eager on the CPU (``bench/torch_mlp.py``), same thread count as NumPy;
- a hand-written NumPy MLP with preallocated buffers (``bench/numpy_mlp.py``),
  the best plain NumPy + BLAS can do;
- tinytl on its NumPy reference kernels (``bench/tinytl_mlp.py``), when the
  compiled kernels are active, to show what they buy on a whole step.

Also: the ceilings of this machine (GEMM GFLOP/s of NumPy's BLAS and of PyTorch
on the shapes used, memory bandwidth, one core's FMA peak, and each GEMM of a
small-batch step, tinytl's fused one beside the BLAS's: ``bench/gemm_table.py``),
the kernels alone against their reference (``bench/kernels.py``), import cost
and peak memory (subprocesses), and small steps beside a CPU-bound neighbour
process (``bench/busy.py``).
One table is printed; ``--out`` writes the same figures as JSON.

``main(argv)`` is the entry point (``python -m tinytl bench`` calls it).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CHILD_CWD = HERE   # subprocesses run here, not in REPO, whose tinytl/ would shadow an installed tinytl
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import importlib.util  # noqa: E402

if importlib.util.find_spec("tinytl") is None:        # not installed: use the checkout beside bench/
    sys.path.insert(1, REPO)

import numpy as np  # noqa: E402

import common  # noqa: E402
from common import Entry, interleaved  # noqa: E402

with warnings.catch_warnings(record=True) as _import_warnings:
    warnings.simplefilter("always")
    import tinytl as tl  # noqa: E402
IMPORT_WARNINGS = [str(w.message) for w in _import_warnings]

import memory as memory_bench  # noqa: E402
import numpy_mlp  # noqa: E402
import tinytl_mlp  # noqa: E402
import torch_mlp  # noqa: E402
import dropout_adam  # noqa: E402
import busy  # noqa: E402
import gemm_table  # noqa: E402
from kernels import kernel_cases  # noqa: E402

torch = torch_mlp.torch
LR, MOMENTUM = 0.01, 0.9

# ------------------------------------------------------------------ cases ----
# id -> what it measures. MLP cases: sizes, batch, [(ratio, limit)].
MLP_CASES = {
    "1-mlp-b32": dict(sizes=(784, 128, 10), batch=32, targets=[("tinytl/torch", 0.25), ("tinytl/numpy", 0.70)]),
    "2-mlp-b128": dict(sizes=(784, 128, 10), batch=128, targets=[("tinytl/torch", 0.50), ("tinytl/numpy", 0.85)]),
    "3-mlp-large": dict(sizes=(784, 1024, 1024, 10), batch=1024,
                        targets=[("tinytl/torch", 1.0), ("tinytl/numpy", 1.0)]),
    # issue 20: the demo's fine-tuning sizes, and a tiny MLP where only the framework's overhead counts
    "10-mlp-ft-b20": dict(sizes=(40, 128, 128, 5), batch=20, targets=[("tinytl/numpy", 0.5)]),
    "10-mlp-ft-b64": dict(sizes=(40, 128, 128, 5), batch=64, targets=[("tinytl/numpy", 0.5)]),
    "11-mlp-tiny": dict(sizes=(8, 16, 4), batch=4, targets=[("tinytl/numpy", 0.8)]),
}
HEAD_CASE = dict(sizes=(784, 1024, 1024, 10), batch=256, limit=0.45)
CUDA_CASES = {   # issue 5's targets: no slower than PyTorch CUDA where launches dominate, 1.1x on big GEMMs
    "cuda-1-mlp-b32": dict(sizes=(784, 128, 10), batch=32, targets=[]),
    "cuda-2-mlp-b128": dict(sizes=(784, 128, 10), batch=128, targets=[("tinytl/torch", 1.0)]),
    "cuda-3-mlp-large": dict(sizes=(784, 1024, 1024, 10), batch=1024, targets=[("tinytl/torch", 1.1)]),
    "cuda-4-mlp-4096": dict(sizes=(784, 4096, 4096, 10), batch=4096, targets=[("tinytl/torch", 1.1)]),
}
ALL_CASES = sorted(["0-ceilings", *MLP_CASES, "4-head", "5-kernels", "6-import", "7-rss", "8-memory",
                    "9-dropout-adam", "12-busy"], key=lambda c: int(c.split("-")[0]))

MODES = {   # blocks per entry, seconds per block, warm-up seconds, import runs, rss repeats, rss steps,
           # the batches of 0-ceilings' per-GEMM table (784-128-10)
    "full": dict(blocks=15, block_s=0.1, warmup_s=0.3, import_runs=10, rss_repeats=3, rss_steps=100,
                 gemm_table_batches=(32, 128)),
    "quick": dict(blocks=5, block_s=0.04, warmup_s=0.1, import_runs=4, rss_repeats=1, rss_steps=100,
                  gemm_table_batches=(32,)),
    "smoke": dict(blocks=2, block_s=0.005, warmup_s=0.0, import_runs=1, rss_repeats=1, rss_steps=3,
                  gemm_table_batches=(32,)),
}
QUICK_CASES = ["0-ceilings", "1-mlp-b32", "2-mlp-b128", "5-kernels", "6-import", "10-mlp-ft-b20", "10-mlp-ft-b64",
               "11-mlp-tiny"]
SMOKE_CASES = ["0-ceilings", "1-mlp-b32", "4-head", "5-kernels", "6-import", "7-rss", "8-memory", "9-dropout-adam",
               "11-mlp-tiny", "12-busy"]


def case_selected(cid: str, filters) -> bool:
    """Whether ``--cases`` selects ``cid``: a filter that is a number selects the case of that
    number ("1" is 1-mlp-b32, not 10-... or 11-...); any other filter matches as a substring."""
    if not filters:
        return True
    return any(cid.split("-")[0] == f if f.isdigit() else f in cid for f in filters)


def fmt_t(s: float) -> str:
    if s != s:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:7.1f} us"
    if s < 1:
        return f"{s * 1e3:7.2f} ms"
    return f"{s:7.3f} s "


def _ratio(a, b):
    return a / b if a and b else float("nan")


class Report:
    """Collects sections, targets and JSON; prints as it goes."""

    def __init__(self, out_stream=None):
        self.data = {"cases": {}, "targets": []}
        self.stream = out_stream or sys.stdout

    def p(self, line=""):
        print(line, file=self.stream, flush=True)

    def target(self, case, what, measured, limit, unit="x", higher_is_better=False, note=""):
        if measured is None or measured != measured:
            verdict = "SKIP"
        elif higher_is_better:
            verdict = "PASS" if measured >= limit else "MISS"
        else:
            verdict = "PASS" if measured <= limit else "MISS"
        self.data["targets"].append(dict(case=case, what=what, measured=measured, limit=limit, unit=unit,
                                         higher_is_better=higher_is_better, verdict=verdict, note=note))


# ------------------------------------------------------------- helpers ----

def _torch_threads():
    """The thread count NumPy's BLAS uses, to give PyTorch the same cores."""
    rt = common.blas_info().get("runtime") or {}
    return rt.get("num_threads") or os.cpu_count() or 1


def _mlps(sizes, batch, trainable_from=0, device="cpu"):
    """The three implementations from the same weights and batch; {name: (step(), forward())}."""
    params = numpy_mlp.init_params(sizes)
    x, t = numpy_mlp.make_batch(sizes, batch)
    out = {}
    tmlp = tinytl_mlp.TinytlMLP(sizes, LR, MOMENTUM, params, trainable_from, device)
    xl = tl.tensor(x, device=device)
    tl_t = tl.tensor(t, device=device).data
    out["tinytl"] = (lambda: tmlp.step(xl, tl_t), lambda: tmlp.forward(xl), tmlp)
    if torch is not None and (device == "cpu" or torch.cuda.is_available()):  # a CPU-only torch: no torch entry
        dev = "cuda" if device == "cuda" else "cpu"
        pm = torch_mlp.TorchMLP(sizes, LR, MOMENTUM, params, trainable_from, dev)
        xt, tt = torch.from_numpy(x).to(dev), torch.from_numpy(t).to(dev)
        out["torch"] = (lambda: pm.step(xt, tt), lambda: pm.forward(xt), pm)
    xp = np
    if device == "cuda":
        import cupy as xp
    nmlp = numpy_mlp.NumpyMLP(sizes, batch, LR, MOMENTUM, params, trainable_from, xp=xp)
    xn, tn = xp.asarray(x), xp.asarray(t)
    out["numpy"] = (lambda: nmlp.step(xn, tn), lambda: nmlp.forward(xn), nmlp)
    return out


def parity_check(report):
    """Three steps of each implementation from the same weights: same loss and weights."""
    sizes, batch = (784, 64, 64, 10), 16
    m = _mlps(sizes, batch)
    losses = {}
    for name, (step, _, _) in m.items():
        for _ in range(3):
            loss = step()
        losses[name] = float(loss.item() if hasattr(loss, "item") else loss)
    ref = m["numpy"][2].params_torch_layout()
    worst = 0.0
    for name, (_, _, obj) in m.items():
        for (W, b), (W0, b0) in zip(obj.params_torch_layout(), ref):
            worst = max(worst, float(np.abs(W - W0).max()), float(np.abs(b - b0).max()))
    ok = worst < 1e-5 and max(losses.values()) - min(losses.values()) < 1e-4
    report.data["parity"] = dict(losses=losses, max_weight_diff=worst, ok=ok)
    report.p(f"parity: 3 steps of {'-'.join(map(str, sizes))} b{batch}: losses "
             + ", ".join(f"{k} {v:.6f}" for k, v in losses.items())
             + f"; max weight difference {worst:.1e} -> {'ok' if ok else 'MISMATCH'}")


def aa_control(report, cfg, pause, tag="aa"):
    """The same function timed as two entries, another library between them."""
    sizes, batch = MLP_CASES["1-mlp-b32"]["sizes"], MLP_CASES["1-mlp-b32"]["batch"]
    m = _mlps(sizes, batch)
    a_name = "torch" if "torch" in m else "tinytl"
    other = "numpy"
    fn = m[a_name][0]
    res = interleaved([Entry("A", fn), Entry(other, m[other][0]), Entry("A'", fn)],
                      blocks=cfg["blocks"], block_s=cfg["block_s"], pause=pause, warmup_s=cfg["warmup_s"])
    r = res["A'"].median / res["A"].median
    verdict = common.aa_verdict(r)
    report.data[tag] = dict(function=f"{a_name} step {'-'.join(map(str, sizes))} b{batch}", between=other,
                            ratio=r, verdict=verdict, entries={k: v.as_dict() for k, v in res.items()})
    report.p(f"A/A control ({tag}): {a_name} step {'-'.join(map(str, sizes))} b{batch} timed as two entries "
             f"with {other} between: A'/A = {r:.3f}  {verdict}"
             + ("" if verdict == "ok" else f"  (off by more than {common.AA_TOLERANCE:.0%}: this run is noise)"))
    return verdict


# ----------------------------------------------------------- ceilings ----

def _gemm_shapes(sizes, batch, trainable_from=0):
    """(m, k, n, a_transposed) of every GEMM of one training step, as the NumPy MLP does them."""
    shapes = []
    for fi, fo in zip(sizes[:-1], sizes[1:]):
        shapes.append((batch, fi, fo, False))                   # forward  h @ WT
    for l in range(len(sizes) - 2, trainable_from - 1, -1):
        fi, fo = sizes[l], sizes[l + 1]
        shapes.append((fi, batch, fo, True))                    # grad W   h.T @ g
        if l > trainable_from:
            shapes.append((batch, fo, fi, "B"))                 # grad h   g @ WT.T
    return shapes


def _gemm_fns(shapes):
    """Two callables doing all the GEMMs of ``shapes`` into preallocated outputs: NumPy, PyTorch."""
    rng = np.random.default_rng(0)
    ops_np, ops_t = [], []
    for m_, k, n, tr in shapes:
        a = rng.standard_normal((k, m_) if tr is True else (m_, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tr == "B" else (k, n)).astype(np.float32)
        c = np.empty((m_, n), np.float32)
        A = a.T if tr is True else a
        B = b.T if tr == "B" else b
        ops_np.append((A, B, c))
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            ops_t.append((ta.t() if tr is True else ta, tb.t() if tr == "B" else tb, torch.empty(m_, n)))

    def run_np():
        for A, B, c in ops_np:
            np.matmul(A, B, out=c)

    def run_t():
        for A, B, c in ops_t:
            torch.mm(A, B, out=c)
    return run_np, (run_t if torch is not None else None)


def ceilings(report, cfg, pause, cases):
    report.p("\n== ceilings ==")
    # memory bandwidth: a large copy (read + write)
    n = (128 << 20) // 4 if cfg["name"] != "smoke" else (4 << 20) // 4
    src = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    dst = np.empty_like(src)
    entries = [Entry("numpy copy", lambda: np.copyto(dst, src))]
    if torch is not None:
        ts, td = torch.from_numpy(src), torch.from_numpy(dst.copy())
        entries.append(Entry("torch copy_", lambda: td.copy_(ts)))
    res = interleaved(entries, blocks=max(3, cfg["blocks"] // 3), block_s=max(cfg["block_s"], 0.05),
                      pause=pause, warmup_s=cfg["warmup_s"])
    moved = 2 * src.nbytes
    bw = {k: moved / v.median / 1e9 for k, v in res.items()}
    best = max(bw.values())
    report.data["bandwidth"] = dict(bytes_per_copy=moved, gbps=bw, best_gbps=best)
    report.p(f"memory bandwidth (copy of {src.nbytes >> 20} MiB, read + write counted): "
             + ", ".join(f"{k} {v:.1f} GB/s" for k, v in bw.items()) + f"  -> using {best:.1f} GB/s")
    # GEMM throughput on the shapes of each selected MLP case (all GEMMs of one step)
    gem = {}
    rows = [(cid, MLP_CASES[cid]["sizes"], MLP_CASES[cid]["batch"], 0) for cid in cases if cid in MLP_CASES]
    if "4-head" in cases:
        rows.append(("4-head", HEAD_CASE["sizes"], HEAD_CASE["batch"], 0))
    if rows:
        report.p(f"float32 GEMM, all GEMMs of one training step (fwd h@W, bwd h.T@g and g@W.T):")
        report.p(f"  {'case':<14}{'GFLOP':>8}  {'numpy':>10} {'GFLOP/s':>8}  {'torch':>10} {'GFLOP/s':>8}")
    for cid, sizes, batch, tf in rows:
        shapes = _gemm_shapes(sizes, batch, tf)
        flops = sum(2 * m_ * k * n_ for m_, k, n_, _ in shapes)
        f_np, f_t = _gemm_fns(shapes)
        entries = [Entry("numpy", f_np)] + ([Entry("torch", f_t)] if f_t else [])
        res = interleaved(entries, blocks=max(3, cfg["blocks"] // 2), block_s=cfg["block_s"], pause=pause,
                          warmup_s=cfg["warmup_s"])
        g = {k: dict(time_s=v.median, gflops=flops / v.median / 1e9) for k, v in res.items()}
        gem[cid] = dict(flops=flops, shapes=[list(s) for s in shapes], libs=g)
        tt = g.get("torch", {})
        report.p(f"  {cid:<14}{flops / 1e9:8.4f}  {fmt_t(g['numpy']['time_s']):>10} {g['numpy']['gflops']:8.1f}  "
                 f"{fmt_t(tt.get('time_s', float('nan'))):>10} {tt.get('gflops', float('nan')):8.1f}")
    report.data["gemm"] = gem
    if "0-ceilings" in cases:
        peak = gemm_table.fma_peak(report, cfg, pause)
        gemm_table.run(report, cfg, pause, fmt_t, torch, cfg["gemm_table_batches"], peak)
    return best, gem


# ------------------------------------------------------------ MLP cases ----

def mlp_case(report, cid, spec, cfg, pause, gem):
    sizes, batch = spec["sizes"], spec["batch"]
    m = _mlps(sizes, batch)
    entries = [Entry("tinytl", m["tinytl"][0])]
    if tinytl_mlp.compiled_kernels_active():
        ref_model_step = _mlps(sizes, batch)["tinytl"][0]    # its own model: independent momentum state

        def ref_step():
            with tinytl_mlp.reference_kernels():
                ref_model_step()
        entries.append(Entry("tinytl[ref]", ref_step))
    if "torch" in m:
        entries.append(Entry("torch", m["torch"][0]))
    entries.append(Entry("numpy", m["numpy"][0]))
    res = interleaved(entries, blocks=cfg["blocks"], block_s=cfg["block_s"], pause=pause, warmup_s=cfg["warmup_s"])
    med = {k: v.median for k, v in res.items()}
    floor = gem.get(cid, {}).get("libs", {}).get("numpy", {}).get("time_s")
    ratios = {"tinytl/torch": _ratio(med["tinytl"], med.get("torch")),
              "tinytl/numpy": _ratio(med["tinytl"], med["numpy"])}
    if "tinytl[ref]" in med:
        ratios["tinytl/tinytl[ref]"] = _ratio(med["tinytl"], med["tinytl[ref]"])
    if floor:
        ratios["tinytl/gemm_floor"] = _ratio(med["tinytl"], floor)
    report.data["cases"][cid] = dict(sizes=sizes, batch=batch, entries={k: v.as_dict() for k, v in res.items()},
                                     ratios=ratios, gemm_floor_numpy_s=floor)
    label = f"{cid} {'-'.join(map(str, sizes))} b{batch}"
    cols = "  ".join(f"{k} {fmt_t(v)} (±{res[k].spread * 50:.0f}%)" for k, v in med.items())
    report.p(f"{label:<34} {cols}" + (f"  GEMM floor {fmt_t(floor)}" if floor else ""))
    report.p(f"{'':<34} " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    for what, limit in spec["targets"]:
        report.target(cid, what, ratios.get(what), limit)


def head_case(report, cfg, pause):
    sizes, batch = HEAD_CASE["sizes"], HEAD_CASE["batch"]
    full = _mlps(sizes, batch)
    head = _mlps(sizes, batch, trainable_from=len(sizes) - 2)
    entries = [Entry("tinytl full", full["tinytl"][0]), Entry("tinytl head", head["tinytl"][0]),
               Entry("tinytl fwd", full["tinytl"][1])]
    if "torch" in head:
        entries += [Entry("torch head", head["torch"][0]), Entry("torch fwd", head["torch"][1])]
    entries += [Entry("numpy head", head["numpy"][0]), Entry("numpy fwd", head["numpy"][1])]
    res = interleaved(entries, blocks=cfg["blocks"], block_s=cfg["block_s"], pause=pause, warmup_s=cfg["warmup_s"])
    med = {k: v.median for k, v in res.items()}
    ratios = {"head/full": _ratio(med["tinytl head"], med["tinytl full"]),
              "fwd/full": _ratio(med["tinytl fwd"], med["tinytl full"]),
              "head/fwd": _ratio(med["tinytl head"], med["tinytl fwd"]),
              "tinytl head/torch head": _ratio(med["tinytl head"], med.get("torch head")),
              "tinytl head/numpy head": _ratio(med["tinytl head"], med["numpy head"])}
    report.data["cases"]["4-head"] = dict(sizes=sizes, batch=batch, trainable="last Linear only",
                                          entries={k: v.as_dict() for k, v in res.items()}, ratios=ratios)
    label = f"4-head {'-'.join(map(str, sizes))} b{batch}"
    report.p(f"{label:<34} " + "  ".join(f"{k} {fmt_t(v)}" for k, v in med.items()))
    report.p(f"{'':<34} " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    report.target("4-head", "head step/full step", ratios["head/full"], HEAD_CASE["limit"],
                  note=f"forward-only/full = {ratios['fwd/full']:.2f}, head/forward-only = {ratios['head/fwd']:.2f}")


# --------------------------------------------------------------- kernels ----

def kernel_bench(report, cfg, pause, bandwidth):
    report.p("\n== kernels alone (called as the engine calls them) ==")
    compiled = tinytl_mlp.compiled_kernels_active()
    K = tl.kernels.cpu_kernels
    R = tl.kernels.reference
    scale = 0.25 if cfg["name"] == "smoke" else 1.0
    out = {}
    if not compiled:
        report.p("  compiled kernels not active (" + (tl.kernels.backend_info().get("cpu_error") or
                                                      "TINYTL_KERNELS=numpy") + "): reference only, no speed-up")
    for name, shape, make, moved, target in kernel_cases(scale):
        entries = []
        if compiled and hasattr(K, name):
            entries.append(Entry("cpp", make(K)))
        entries.append(Entry("reference", make(R)))
        # the same bytes moved by a plain copy: these working sets (4-8 MiB) sit in the
        # last-level cache, so the large-copy (DRAM) bandwidth alone would flatter them
        c_src = np.ones(moved // 8, np.float32)
        c_dst = np.empty_like(c_src)
        entries.append(Entry("same-bytes copy", lambda: np.copyto(c_dst, c_src)))
        res = interleaved(entries, blocks=cfg["blocks"], block_s=cfg["block_s"], pause=pause,
                          warmup_s=cfg["warmup_s"])
        med = {k: v.median for k, v in res.items()}
        copy_t = med.pop("same-bytes copy")
        frac = {k: moved / v / 1e9 / bandwidth for k, v in med.items()}
        frac_copy = {k: copy_t / v for k, v in med.items()}
        speedup = _ratio(med["reference"], med.get("cpp"))
        out[name] = dict(shape=shape, bytes_moved=moved, entries={k: v.as_dict() for k, v in res.items()},
                         speedup=speedup, bandwidth_fraction=frac, same_bytes_copy_s=copy_t,
                         fraction_of_same_bytes_copy=frac_copy)
        report.p(f"  {name:<25}{shape:<26}" + "  ".join(
            f"{k} {fmt_t(v)} ({frac[k]:.0%} of DRAM bw, {frac_copy[k]:.0%} of a same-bytes copy)"
            for k, v in med.items())
            + (f"  speed-up {speedup:.2f}x" if speedup == speedup else ""))
        if target is not None:
            report.target("5-kernels", f"{name} speed-up vs reference", speedup, target, higher_is_better=True,
                          note="" if compiled else "compiled kernels not built")
    report.data["cases"]["5-kernels"] = out


# ---------------------------------------------------------------- import ----

def _child_env():
    env = dict(os.environ)
    if importlib.util.find_spec("tinytl") is None or REPO in sys.path:
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def import_cost(report, cfg):
    report.p("\n== import cost (fresh interpreter each, medians) ==")
    libs = ["numpy", "tinytl"] + (["torch"] if torch is not None else [])
    env = _child_env()
    runs = {k: [] for k in libs}
    time.sleep(0.3)
    for _ in range(cfg["import_runs"]):
        for lib in libs:
            r = common.run_child([sys.executable, "-c", f"import {lib}; {common.PEAK_RSS_SNIPPET}"],
                                 env=env, cwd=CHILD_CWD)
            if r["rc"] != 0:
                raise RuntimeError(f"python -c 'import {lib}' failed: {r['stderr'][-500:]}")
            runs[lib].append((r["wall_s"], common.peak_rss_mib(r["stdout"])))
    med = {k: dict(wall_s=statistics.median(w for w, _ in v), maxrss_mib=statistics.median(m for _, m in v))
           for k, v in runs.items()}
    # where tinytl's own import time goes (python -X importtime, self times of tinytl modules)
    r = common.run_child([sys.executable, "-X", "importtime", "-c", "import tinytl"], env=env, cwd=CHILD_CWD)
    own = []
    for line in r["stderr"].splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = [p.strip() for p in line[len("import time:"):].split("|")]
            if len(parts) == 3 and parts[0].isdigit():
                own.append((int(parts[0]), int(parts[1]), parts[2]))
    top = sorted((o for o in own if o[2].lstrip().startswith("tinytl")), key=lambda o: -o[0])[:6]
    add_t = med["tinytl"]["wall_s"] - med["numpy"]["wall_s"]
    add_m = med["tinytl"]["maxrss_mib"] - med["numpy"]["maxrss_mib"]
    report.data["cases"]["6-import"] = dict(runs=cfg["import_runs"], medians=med, raw=runs,
                                            tinytl_adds_s=add_t, tinytl_adds_mib=add_m,
                                            importtime_top_us=[dict(self_us=a, cumulative_us=b, module=c)
                                                               for a, b, c in top])
    for k, v in med.items():
        report.p(f"  import {k:<8} {v['wall_s'] * 1e3:8.1f} ms  peak RSS {v['maxrss_mib']:7.1f} MiB")
    report.p(f"  tinytl adds {add_t * 1e3:+.1f} ms and {add_m:+.1f} MiB to numpy; slowest own modules (self): "
             + ", ".join(f"{c.strip()} {a / 1e3:.1f} ms" for a, b, c in top[:4]))
    editable = _editable_rebuild_hook()
    report.data["cases"]["6-import"]["editable_rebuild_hook"] = editable
    note = ""
    if editable:
        note = "editable install: includes the rebuild check"
        report.p("  NOTE: tinytl is an editable install (pip install -e .): every import runs scikit-build-core's\n"
                 "        rebuild check (a CMake build step), which this figure includes. A regular install\n"
                 "        (pip install .) has no such hook; measure import cost there.")
    report.target("6-import", "tinytl import adds (s)", add_t, 0.05, unit="s", note=note)
    report.target("6-import", "tinytl import adds (MiB)", add_m, 15.0, unit="MiB")


def _editable_rebuild_hook() -> bool:
    """True when tinytl comes from a scikit-build-core editable install (it rebuilds on import)."""
    return any(type(f).__name__ == "ScikitBuildRedirectingFinder" and getattr(f, "rebuild_flag", False)
               for f in sys.meta_path)


# ------------------------------------------------------------------- rss ----

CHILD_RSS = r"""
import sys, json
sys.path[:0] = [{here!r}]
lib, steps, sizes, batch = {lib!r}, {steps}, {sizes!r}, {batch}
import numpy as np
import numpy_mlp
params = numpy_mlp.init_params(sizes)
x, t = numpy_mlp.make_batch(sizes, batch)
if lib == "torch":
    import torch
    torch.set_num_threads({threads})
    import torch_mlp
    m = torch_mlp.TorchMLP(sizes, 0.01, 0.9, params)
    x, t = torch.from_numpy(x), torch.from_numpy(t)
elif lib == "tinytl":
    import tinytl as tl, tinytl_mlp
    m = tinytl_mlp.TinytlMLP(sizes, 0.01, 0.9, params)
    x = tl.tensor(x)
else:
    m = numpy_mlp.NumpyMLP(sizes, batch, 0.01, 0.9, params)
del params
for _ in range(steps):
    loss = m.step(x, t)
print(json.dumps(dict(loss=float(loss.item() if hasattr(loss, "item") else loss))))
{snippet}
"""


def rss_case(report, cfg):
    sizes, batch = MLP_CASES["3-mlp-large"]["sizes"], MLP_CASES["3-mlp-large"]["batch"]
    if cfg["name"] == "smoke":
        sizes, batch = MLP_CASES["1-mlp-b32"]["sizes"], MLP_CASES["1-mlp-b32"]["batch"]
    steps = cfg["rss_steps"]
    report.p(f"\n== peak RSS of {steps} training steps, {'-'.join(map(str, sizes))} b{batch}, own process each ==")
    libs = ["tinytl"] + (["torch"] if torch is not None else []) + ["numpy"]
    env = _child_env()
    res = {k: [] for k in libs}
    for _ in range(cfg["rss_repeats"]):
        for lib in libs:
            code = CHILD_RSS.format(here=HERE, lib=lib, steps=steps, sizes=tuple(sizes), batch=batch,
                                    threads=_torch_threads(), snippet=common.PEAK_RSS_SNIPPET)
            r = common.run_child([sys.executable, "-c", code], env=env, cwd=CHILD_CWD)
            if r["rc"] != 0:
                raise RuntimeError(f"rss child for {lib} failed: {r['stderr'][-800:]}")
            res[lib].append(dict(maxrss_mib=common.peak_rss_mib(r["stdout"]), wall_s=r["wall_s"],
                                 ru_maxrss_mib_with_parent=r["maxrss_kib"] / 1024))
    med = {k: statistics.median(d["maxrss_mib"] for d in v) for k, v in res.items()}
    report.data["cases"]["7-rss"] = dict(sizes=sizes, batch=batch, steps=steps, runs=res, median_mib=med)
    report.p("  " + "  ".join(f"{k} {v:.1f} MiB" for k, v in med.items()))
    report.target("7-rss", "peak RSS tinytl/torch", _ratio(med["tinytl"], med.get("torch")), 1.0)


# ---------------------------------------------------------------- cuda ----

def run_cuda(report, cfg, pause, selected):
    report.p("\n== CUDA: tinytl on CuPy vs PyTorch CUDA (vs the hand-written MLP on CuPy) ==")
    reasons = []
    tl_ok = False
    try:
        tl_ok = tl.cuda.is_available()
        if not tl_ok:
            reasons.append("tinytl: CuPy or a GPU is missing")
    except Exception as e:
        reasons.append(f"tinytl: {e}")
    t_ok = torch is not None and torch.cuda.is_available()
    if not t_ok:
        reasons.append("torch: " + ("not installed" if torch is None else "torch.cuda.is_available() is False"))
    if not tl_ok:
        report.p("  skipped: " + "; ".join(reasons))
        report.data["cuda"] = dict(skipped=True, reasons=reasons)
        return
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    report.p(f"  GPU: {gpu}")
    stream_sync = lambda: cupy.cuda.get_current_stream().synchronize()   # noqa: E731
    torch_sync = (lambda: torch.cuda.synchronize()) if t_ok else None   # noqa: E731
    out = {}
    for cid, spec in CUDA_CASES.items():
        if selected and not any(s in cid for s in selected):
            continue
        sizes, batch = spec["sizes"], spec["batch"]
        try:
            m = _mlps(sizes, batch, device="cuda")
        except Exception as e:
            report.p(f"  {cid}: could not build ({type(e).__name__}: {e})")
            continue
        entries = [Entry("tinytl", m["tinytl"][0], stream_sync)]
        if t_ok and "torch" in m:
            entries.append(Entry("torch", m["torch"][0], torch_sync))
        entries.append(Entry("cupy mlp", m["numpy"][0], stream_sync))
        res = interleaved(entries, blocks=cfg["blocks"], block_s=cfg["block_s"], pause=pause,
                          warmup_s=cfg["warmup_s"])
        med = {k: v.median for k, v in res.items()}
        ratios = {"tinytl/torch": _ratio(med["tinytl"], med.get("torch")),
                  "tinytl/cupy mlp": _ratio(med["tinytl"], med["cupy mlp"])}
        launches = cuda_launches(entries, stream_sync, t_ok)
        out[cid] = dict(sizes=sizes, batch=batch, entries={k: v.as_dict() for k, v in res.items()}, ratios=ratios,
                        launches_per_step=launches)
        report.p(f"  {cid:<18} " + "  ".join(f"{k} {fmt_t(v)}" for k, v in med.items()) + "  "
                 + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
        report.p(f"  {'':<18} launches per step: " + "  ".join(f"{k} {v}" for k, v in launches.items()))
        for what, limit in spec["targets"]:
            report.target(cid, what, ratios.get(what), limit)
    report.data["cuda"] = dict(skipped=False, reasons=reasons, cases=out, gpu=gpu)


def cuda_launches(entries, sync, profiler_ok):
    """Kernel launches of one step, after the timed blocks (so nothing is compiled any more).

    'tinytl kernels': calls of tinytl's own CUDA kernels (tinytl/kernels/cuda/*.cu),
    counted in Python. Where a CUDA PyTorch is importable, torch.profiler (CUPTI) also
    counts every kernel the GPU ran in the step, CuPy's and cuBLAS's included:
    '<entry> all' for each entry, and memory copies/sets apart ('<entry> memcpy')."""
    from tinytl.kernels import cuda as G
    counts = {}
    n = [0]
    orig = G._kernel

    def counting(*args):
        k = orig(*args)

        def launch(*a, **kw):
            n[0] += 1
            return k(*a, **kw)
        return launch
    G._kernel = counting
    try:
        entries[0].fn()
        sync()
    finally:
        G._kernel = orig
    counts["tinytl kernels"] = n[0]
    # sgd_step_many's tables of pointers are cached by the addresses they hold: a miss costs
    # host work and a copy to the GPU, so the hit rates under CuPy's memory pool (the
    # gradients are new arrays each step) are worth seeing. Counted over the whole case.
    for what, f in (("sgd table", G._sgd_table), ("grad pointers", G._pointers)):
        info = f.cache_info()
        counts[f"{what} cache hits"], counts[f"{what} cache misses"] = info.hits, info.misses
    if not profiler_ok:
        return counts
    try:
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile
        for e in entries:
            e.fn()
            (e.sync or sync)()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                e.fn()
                (e.sync or sync)()
            dev = [ev for ev in prof.events() if ev.device_type == DeviceType.CUDA]
            copies = sum(1 for ev in dev if ev.name.lower().startswith(("memcpy", "memset")))
            counts[f"{e.name} all"] = len(dev) - copies
            counts[f"{e.name} memcpy"] = copies
    except Exception as exc:  # the profiler is a bonus: the timings stand without it
        counts["profiler_error"] = f"{type(exc).__name__}: {exc}"
    return counts


# --------------------------------------------------------------- profile ----

def profile(report, selected, steps=200):
    """cProfile of the tinytl step and a per-phase timing, for the MLP cases."""
    report.p("\n== profile of the tinytl step ==")
    prof = {}
    for cid, spec in MLP_CASES.items():
        if not case_selected(cid, selected):
            continue
        sizes, batch = spec["sizes"], spec["batch"]
        m = _mlps(sizes, batch)
        tm = m["tinytl"][2]
        x = tl.tensor(numpy_mlp.make_batch(sizes, batch)[0])
        t = numpy_mlp.make_batch(sizes, batch)[1]
        n = steps if batch < 1024 else max(10, steps // 20)
        phases = {k: [] for k in ("forward", "loss", "backward", "opt.step", "zero_grad")}
        for _ in range(n):
            t0 = time.perf_counter()
            logits = tm.model(x)
            t1 = time.perf_counter()
            loss = tm.loss_fn(logits, t)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            tm.opt.step()
            t4 = time.perf_counter()
            tm.opt.zero_grad()
            t5 = time.perf_counter()
            for k, a, b in zip(phases, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
                phases[k].append(b - a)
        ph = {k: statistics.median(v) for k, v in phases.items()}
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(n):
            tm.step(x, t)
        pr.disable()
        s = io.StringIO()
        st = pstats.Stats(pr, stream=s)
        st.sort_stats("tottime").print_stats(14)
        calls = sum(v[1] for v in st.stats.values())
        prof[cid] = dict(phases_s=ph, python_calls_per_step=calls / n, cprofile_top=s.getvalue())
        report.p(f"{cid}: " + ", ".join(f"{k} {fmt_t(v).strip()}" for k, v in ph.items())
                 + f"; {calls / n:.0f} Python function calls per step")
        report.p("\n".join(s.getvalue().splitlines()[4:26]))
    report.data["profile"] = prof


# ------------------------------------------------------------------ main ----

def print_targets(report):
    report.p("\n== targets ==")
    report.p(f"  {'case':<18}{'target':<40}{'limit':>10}{'measured':>11}  verdict")
    for t in report.data["targets"]:
        op = ">=" if t["higher_is_better"] else "<="
        unit = "" if t["unit"] == "x" else f" {t['unit']}"
        meas = "-" if t["measured"] is None or t["measured"] != t["measured"] else f"{t['measured']:.3f}{unit}"
        how = ""
        if t["verdict"] == "MISS" and t["measured"] and t["limit"]:
            how = (f" ({t['measured'] / t['limit']:.2f}x the limit)" if not t["higher_is_better"]
                   else f" ({t['limit'] / t['measured']:.2f}x short)")
        report.p(f"  {t['case']:<18}{t['what']:<40}{op + ' ' + format(t['limit'], 'g') + unit:>10}{meas:>11}  "
                 f"{t['verdict']}{how}" + (f"  [{t['note']}]" if t["note"] else ""))
    v = [t["verdict"] for t in report.data["targets"]]
    report.p(f"  {v.count('PASS')} PASS, {v.count('MISS')} MISS, {v.count('SKIP')} SKIP")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a reduced set")
    mode.add_argument("--smoke", action="store_true", help="every code path on tiny settings, a few seconds")
    ap.add_argument("--cases", default="", help="comma-separated filters on case ids (a number selects that "
                    "case, other text matches as a substring): " + ", ".join(ALL_CASES))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--pause", type=float, default=None, help=f"seconds slept before each timed block "
                    f"(default {common.DEFAULT_PAUSE})")
    ap.add_argument("--blocks", type=int, default=None, help="timed blocks per entry")
    ap.add_argument("--out", default=None, help="write the figures as JSON to this path")
    ap.add_argument("--profile", action="store_true", help="also profile the tinytl step of the MLP cases")
    ap.add_argument("--list", action="store_true", help="list the case ids and exit")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(ALL_CASES + list(CUDA_CASES)))
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = dict(MODES[mode], name=mode)
    if args.blocks:
        cfg["blocks"] = args.blocks
    pause = args.pause if args.pause is not None else (0.02 if mode == "smoke" else common.DEFAULT_PAUSE)
    selected = [s.strip() for s in args.cases.split(",") if s.strip()]
    # --cases picks from every case; without it the mode's own set runs (--quick/--smoke also set the sizes)
    base = ALL_CASES if selected or mode == "full" else SMOKE_CASES if mode == "smoke" else QUICK_CASES
    cases = [c for c in base if case_selected(c, selected)]

    if torch is not None:
        torch.set_num_threads(_torch_threads())
    report = Report()
    t_start = time.perf_counter()
    machine = common.machine_info(torch, tl)
    machine["tinytl_import_warnings"] = IMPORT_WARNINGS
    report.data.update(mode=mode, device=args.device, pause_s=pause, config=cfg, cases_selected=cases,
                       machine=machine, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    report.p(f"tinytl bench ({mode}; {cfg['blocks']} interleaved blocks/entry of ~{cfg['block_s'] * 1e3:.0f} ms, "
             f"pause {pause} s + 1 untimed call before each; medians of blocks)")
    report.p(common.machine_line(machine))
    if IMPORT_WARNINGS:
        report.p("note: " + IMPORT_WARNINGS[0].split(";")[0])
    if torch is None:
        report.p("note: torch is not importable: the PyTorch columns are skipped")

    cfg_use = cfg
    if args.device == "cuda":
        aa_control(report, cfg_use, pause)
        run_cuda(report, cfg_use, pause, selected)
        print_targets(report)
    else:
        parity_check(report)
        verdicts = [aa_control(report, cfg_use, pause)]
        bw, gem = (None, {})
        if "0-ceilings" in cases or "5-kernels" in cases or any(c in MLP_CASES for c in cases):
            bw, gem = ceilings(report, cfg_use, pause, cases)
        mlp = [c for c in cases if c in MLP_CASES or c == "4-head"]
        if mlp:
            report.p("\n== training step: forward + loss + backward + SGD(momentum 0.9) step + zero_grad, "
                     "float32 ==  (±: half the inter-quartile range of the blocks)")
        for cid in mlp:
            if cid == "4-head":
                head_case(report, cfg_use, pause)
            else:
                mlp_case(report, cid, MLP_CASES[cid], cfg_use, pause, gem)
        if "9-dropout-adam" in cases:
            report.p("\n== a tutorial MLP: Dropout(0.2) after each hidden layer, Adam(lr=1e-3), train mode ==")
            dropout_adam.run(report, cfg_use, pause, fmt_t, torch)
        if "5-kernels" in cases:
            kernel_bench(report, cfg_use, pause, bw)
        if "6-import" in cases:
            import_cost(report, cfg_use)
        if "7-rss" in cases:
            rss_case(report, cfg_use)
        if "8-memory" in cases:
            memory_bench.memory_case(report, cfg_use, pause, fmt_t, smoke=mode == "smoke")
        if "12-busy" in cases:
            busy.run(report, cfg_use, pause, fmt_t, _mlps)
        if mode == "full":
            report.p("")
            verdicts.append(aa_control(report, cfg_use, pause, tag="aa_end"))
        report.data["noise"] = any(v != "ok" for v in verdicts)
        print_targets(report)
        if report.data["noise"]:
            report.p("WARNING: an A/A control was off by more than "
                     f"{common.AA_TOLERANCE:.0%}: the machine was noisy, rerun before trusting the ratios")
        if args.profile:
            profile(report, selected)
    report.data["elapsed_s"] = time.perf_counter() - t_start
    report.p(f"\n(total {report.data['elapsed_s']:.0f} s)")
    if args.out:
        d = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(d, exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(_finite(report.data), f, indent=1, default=_json_default, allow_nan=False)
        os.replace(tmp, args.out)
        report.p(f"wrote {args.out}")
    return 0


def _finite(o):
    """NaN and inf become null: the file must be strict JSON."""
    if isinstance(o, float) and (o != o or o in (float("inf"), float("-inf"))):
        return None
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (np.floating, np.integer)):
        return _finite(o.item())
    return o


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
