"""Case 0-ceilings, second part: one core's FMA peak, and each GEMM of a small-batch step against it.

**The peak.** ``tinytl._C.fma_peak(float32, n)`` runs ``n`` iterations of
independent, register-resident FMA chains on the calling thread with the best
ISA the CPU has (``tinytl._C.gemm_isa()``: avx512, avx2 or scalar) and returns
the floating-point operations it executed (2 per FMA per vector lane). Timed
from Python, flops / seconds is what one core can do at most: no GEMM on one
core goes faster. ``n`` is chosen so that one call lasts ~2 ms (the Python call
is then noise), and the figure is the median of interleaved blocks, float32 and
float64 alternating.

**The per-GEMM table.** The products of one training step of the 784-128-10
MLP (cases 1 and 2), each timed four ways in interleaved blocks:

- ``tinytl``: the fused C++ binding (``_C.linear_forward`` / ``_C.linear_backward``,
  which always take tinytl's own GEMM, never the BLAS), asked for the epilogue
  work the engine asks of it in that product;
- ``numpy``: ``np.matmul(out=)`` alone, on the NumPy MLP's operand layouts
  (weights stored (in, out), so the forward has no transposed operand);
- ``numpy+epi``: the same GEMM plus the separate passes the NumPy MLP makes for
  that product's epilogue (``bench/numpy_mlp.py``);
- ``torch``: ``torch.mm(out=)`` on the same operands, on NumPy's BLAS thread count.

The products, with the work each does besides the GEMM (``g'`` is the gradient
of layer 0's output after its ReLU mask):

==============  ===========================  ==========================================
row             product                      epilogue (tinytl fused / NumPy's passes)
==============  ===========================  ==========================================
L0 fwd          x @ W0.T: N x 784 @ 784x128  bias + ReLU + packed mask / ``z += b``,
                                             ``np.maximum``
L0 wgrad        g'.T @ x: C is 128 x 784     mask on g as loaded + bias gradient /
                                             ``np.greater``, ``np.multiply``, ``np.sum``
head fwd        h @ W1.T: N x 128 @ 128x10   bias / ``z += b``
head wgrad      g.T @ h: C is 10 x 128       bias gradient / ``np.sum``
head xgrad      g @ W1: N x 10 @ 10 x 128    none (no numpy+epi entry)
==============  ===========================  ==========================================

GFLOP/s count the GEMM's 2*M*K*N only, so an epilogue's cost shows as lost
GFLOP/s; each figure is also given as a percentage of the float32 peak measured
in the same run (a threaded tinytl GEMM, ``_C.gemm_threads(flops) > 1``, is
flagged on its row). Before timing, each tinytl product is checked against the
float64 product (relative error <= 1e-4), so a fast but wrong kernel shows.
Issue 20's targets: layer 0's forward and weight gradient at batch 32 >= 60% of
the peak; the head's products (0.1 MFLOP) are bound by call overhead, reported.

Everything here degrades to "n/a" when the bindings are not built (an older
``tinytl._C``, or the reference kernels only).
"""
from __future__ import annotations

import time

import numpy as np

import tinytl as tl
from common import Entry, interleaved

SIZES = (784, 128, 10)
PCT_TARGET = 60.0                     # % of the float32 peak, layer 0's forward and weight gradient, batch 32
TARGET_BATCH = 32                     # issue 20's targets are on case 1's GEMMs
TARGET_ROWS = ("L0 fwd", "L0 wgrad")
PEAK_CALL_S = 2e-3                    # one fma_peak call lasts about this long
CHECK_RTOL = 1e-4


def _binding(*names):
    """``tinytl._C`` when it is importable and has every one of ``names``, else None."""
    try:
        from tinytl import _C
    except ImportError:
        return None
    return _C if all(hasattr(_C, n) for n in names) else None


def _nan():
    return float("nan")


def _backward(C):
    """``C.linear_backward`` as f(grad, mask, relu, x, weight, bias_grad, input_grad).

    Where the binding has an ``input_grad`` argument it is passed on (and the weight is
    always given: it sets gW's layout); otherwise the input gradient is asked for by
    passing the weight, and None stands for "no input gradient".
    """
    f = C.linear_backward
    if "input_grad" in (f.__doc__ or ""):
        return f
    return lambda g, mask, relu, x, w, bias_grad, input_grad: f(g, mask, relu, x, w if input_grad else None,
                                                                  bias_grad)


# ------------------------------------------------------------------ peak ----

def _peak_n(fma_peak, float32: bool) -> int:
    """Iterations that make one ``fma_peak`` call last about ``PEAK_CALL_S``."""
    n = 1 << 10
    while True:
        t0 = time.perf_counter()
        fma_peak(float32, n)
        t = time.perf_counter() - t0
        if t >= PEAK_CALL_S / 4 or n >= 1 << 30:
            break
        n *= 4
    return max(1, int(n * PEAK_CALL_S / max(t, 1e-9)))


def fma_peak(report, cfg, pause):
    """Measure one core's float32 and float64 FMA peak; returns {dtype: GFLOP/s} ({} when not built)."""
    C = _binding("fma_peak")
    if C is None:
        report.p("single-core FMA peak: n/a (tinytl._C.fma_peak is not built)")
        report.data["fma_peak"] = dict(available=False)
        return {}
    isa = C.gemm_isa() if hasattr(C, "gemm_isa") else None
    entries, flops, iters = [], {}, {}
    for dt, f32 in (("float32", True), ("float64", False)):
        n = _peak_n(C.fma_peak, f32)
        iters[dt], flops[dt] = n, int(C.fma_peak(f32, n))
        entries.append(Entry(dt, lambda f32=f32, n=n: C.fma_peak(f32, n)))
    res = interleaved(entries, blocks=max(5, cfg["blocks"] // 2), block_s=cfg["block_s"], pause=pause,
                      warmup_s=cfg["warmup_s"])
    gflops = {dt: flops[dt] / res[dt].median / 1e9 for dt in flops}
    report.data["fma_peak"] = dict(available=True, isa=isa, iterations=iters, flops_per_call=flops, gflops=gflops,
                                   entries={k: v.as_dict() for k, v in res.items()})
    report.p(f"single-core FMA peak ({isa or '?'}, _C.fma_peak, one thread, median of {len(res['float32'].blocks)} "
             f"blocks): float32 {gflops['float32']:.1f} GFLOP/s, float64 {gflops['float64']:.1f} GFLOP/s")
    return gflops


# ------------------------------------------------------------ the table ----

def _relerr(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    scale = float(np.abs(want).max()) or 1.0
    return float(np.abs(got - want).max()) / scale


def _rows(batch, C, torch):
    """The table's rows for one batch: dicts of name, product and epilogue texts, (M, K, N), the
    callables of each column (tinytl, numpy, numpy_epi, torch; None where there is none) and
    check() -> tinytl's worst relative error against the float64 products."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    R = tl.kernels.reference
    n_in, n_hid, n_out = SIZES
    N = batch
    # the weights as tinytl.nn.Linear stores them: (out, in), Fortran-ordered (W.T is C-contiguous)
    W0 = tl.nn.Linear(n_in, n_hid).weight.data
    W1 = tl.nn.Linear(n_hid, n_out).weight.data
    b0 = rng.uniform(-0.05, 0.05, n_hid).astype(f32)
    b1 = rng.uniform(-0.05, 0.05, n_out).astype(f32)
    x = rng.standard_normal((N, n_in)).astype(f32)
    # a real forward of layer 0 gives h0 (post-ReLU) and its packed mask, about half the bits set
    h0 = np.empty((N, n_hid), f32)
    mask0 = np.empty(tl.kernels.relu_mask_shape(N, n_hid), np.uint8)
    R.linear_forward_epilogue(x @ W0.T, b0, True, h0, mask0)
    g0 = rng.standard_normal((N, n_hid)).astype(f32)      # dL/d(layer 0's output), before the mask
    g1 = rng.standard_normal((N, n_out)).astype(f32)      # dL/dlogits
    g0m = g0.astype(np.float64) * (h0 > 0)                 # g' of layer 0

    bwd = _backward(C) if C else None
    W0T, W1T = W0.T, W1.T                                  # (in, out), C-contiguous: the NumPy MLP's layout
    y0, y1 = np.empty((N, n_hid), f32), np.empty((N, n_out), f32)
    y0_mask = np.empty_like(mask0)
    z0, z1 = np.empty((N, n_hid), f32), np.empty((N, n_out), f32)
    gW0T, gW1T = np.empty((n_in, n_hid), f32), np.empty((n_hid, n_out), f32)
    gb0, gb1 = np.empty(n_hid, f32), np.empty(n_out, f32)
    gh = np.empty((N, n_hid), f32)
    g0n = g0.copy()                                        # numpy+epi masks it in place, as the NumPy MLP does
    gmask = np.empty((N, n_hid), bool)

    def np_l0_fwd():
        np.matmul(x, W0T, out=z0)
        np.add(z0, b0, out=z0)
        np.maximum(z0, 0, out=z0)

    def np_l0_wgrad():
        np.greater(h0, 0, out=gmask)
        np.multiply(g0n, gmask, out=g0n)
        np.matmul(x.T, g0n, out=gW0T)
        np.sum(g0n, axis=0, out=gb0)

    def np_head_fwd():
        np.matmul(h0, W1T, out=z1)
        np.add(z1, b1, out=z1)

    def np_head_wgrad():
        np.matmul(h0.T, g1, out=gW1T)
        np.sum(g1, axis=0, out=gb1)

    rows = [
        dict(name="L0 fwd", product=f"{N}x{n_in} @ {n_in}x{n_hid}", epilogue="bias+ReLU+mask",
             mkn=(N, n_in, n_hid),
             numpy=lambda: np.matmul(x, W0T, out=z0), numpy_epi=np_l0_fwd,
             tinytl=(lambda: C.linear_forward(x, W0, b0, True, y0, y0_mask)) if C else None,
             check=lambda: _check_forward(C.linear_forward(x, W0, b0, True, y0, y0_mask), y0_mask,
                                          np.maximum(x.astype(np.float64) @ W0.T + b0, 0)),
             torch=("mm", x, W0T, (N, n_hid))),
        dict(name="L0 wgrad", product=f"{n_hid}x{N} @ {N}x{n_in}", epilogue="ReLU mask on g + bias grad",
             mkn=(n_hid, N, n_in),
             numpy=lambda: np.matmul(x.T, g0n, out=gW0T), numpy_epi=np_l0_wgrad,
             tinytl=(lambda: bwd(g0, mask0, True, x, W0, True, False)) if C else None,
             check=lambda: _check_backward(bwd(g0, mask0, True, x, W0, True, False),
                                           None, g0m.T @ x, g0m.sum(0)),
             torch=("mm_t", x, g0, (n_in, n_hid))),
        dict(name="head fwd", product=f"{N}x{n_hid} @ {n_hid}x{n_out}", epilogue="bias",
             mkn=(N, n_hid, n_out),
             numpy=lambda: np.matmul(h0, W1T, out=z1), numpy_epi=np_head_fwd,
             tinytl=(lambda: C.linear_forward(h0, W1, b1, False, y1, None)) if C else None,
             check=lambda: _relerr(C.linear_forward(h0, W1, b1, False, y1, None), h0.astype(np.float64) @ W1.T + b1),
             torch=("mm", h0, W1T, (N, n_out))),
        dict(name="head wgrad", product=f"{n_out}x{N} @ {N}x{n_hid}", epilogue="bias grad",
             mkn=(n_out, N, n_hid),
             numpy=lambda: np.matmul(h0.T, g1, out=gW1T), numpy_epi=np_head_wgrad,
             tinytl=(lambda: bwd(g1, None, False, h0, W1, True, False)) if C else None,
             check=lambda: _check_backward(bwd(g1, None, False, h0, W1, True, False),
                                           None, g1.astype(np.float64).T @ h0, g1.astype(np.float64).sum(0)),
             torch=("mm_t", h0, g1, (n_hid, n_out))),
        dict(name="head xgrad", product=f"{N}x{n_out} @ {n_out}x{n_hid}", epilogue="-",
             mkn=(N, n_out, n_hid),
             numpy=lambda: np.matmul(g1, W1T.T, out=gh), numpy_epi=None,
             tinytl=(lambda: bwd(g1, None, False, None, W1, False, True)) if C else None,
             check=lambda: _check_backward(bwd(g1, None, False, None, W1, False, True),
                                           g1.astype(np.float64) @ W1, None, None),
             torch=("mm_bt", g1, W1T, (N, n_hid))),
    ]
    for r in rows:
        r["torch"] = _torch_fn(torch, *r["torch"]) if torch is not None else None
    return rows


def _check_forward(y, mask, want) -> float:
    """Relative error of a fused forward against the float64 product; inf when the packed mask
    is not exactly that of its own output (y > 0)."""
    own = np.packbits(np.asarray(y) > 0, axis=1, bitorder="little")
    return _relerr(y, want) if np.array_equal(mask, own) else float("inf")


def _check_backward(got, gx, gW, gb) -> float:
    """Worst relative error of linear_backward's (gx, gW, gb) against the float64 products (None: must be None)."""
    worst = 0.0
    for a, want in zip(got, (gx, gW, gb)):
        if want is None:
            worst = max(worst, 0.0 if a is None else float("inf"))
        else:
            worst = max(worst, float("inf") if a is None else _relerr(a, want))
    return worst


def _torch_fn(torch, how, a, b, out_shape):
    """torch.mm on the same operands as NumPy: "mm" a @ b, "mm_t" a.T @ b, "mm_bt" a @ b.T (as views)."""
    ta, tb, tc = torch.from_numpy(a), torch.from_numpy(np.ascontiguousarray(b)), torch.empty(out_shape)
    if how == "mm_t":
        ta = ta.t()
    elif how == "mm_bt":
        tb = tb.t()
    return lambda: torch.mm(ta, tb, out=tc)


def _cell(fmt_t, lib, missing="n/a"):
    """'time GFLOP/s %peak' of one entry, 24 characters and 2 of space."""
    if lib is None:
        return f"{missing:>24}  "
    pct = lib["pct_peak"]
    return f"{fmt_t(lib['time_s']):>10} {lib['gflops']:6.1f} " + (f"{pct:6.0f}%" if pct == pct else f"{'-':>7}") + "  "


def run(report, cfg, pause, fmt_t, torch, batches, peak):
    """The per-GEMM table for each batch of ``batches``; ``peak`` is fma_peak()'s result."""
    C = _binding("linear_forward", "linear_backward")
    peak32 = peak.get("float32")
    out = {}
    for batch in batches:
        rows = _rows(batch, C, torch)
        report.p(f"per-GEMM, 784-128-10 batch {batch}, float32 (GFLOP/s of 2*M*K*N; % of the float32 FMA peak"
                 f"{'' if peak32 else ': n/a'}); tinytl = fused C++ GEMM + epilogue"
                 + ("" if C else " (n/a: tinytl._C.linear_forward/linear_backward not built)"))
        report.p(f"  {'GEMM':<11}{'M x K @ K x N':<19}{'epilogue':<27}{'MFLOP':>6}  "
                 + "".join(f"{h:>24}  " for h in ("tinytl (fused)", "numpy (matmul)", "numpy + epilogue", "torch.mm")))
        tab = {}
        for r in rows:
            m_, k, n_ = r["mkn"]
            flops = 2 * m_ * k * n_
            check, err = None, None
            entries = []
            if r["tinytl"] is not None:
                try:
                    check = r["check"]()
                    entries.append(Entry("tinytl", r["tinytl"]))
                except Exception as e:     # a binding whose signature moved: say so, time the rest
                    err = f"{type(e).__name__}: {e}"
            entries.append(Entry("numpy", r["numpy"]))
            if r["numpy_epi"] is not None:
                entries.append(Entry("numpy+epi", r["numpy_epi"]))
            if r["torch"] is not None:
                entries.append(Entry("torch", r["torch"]))
            res = interleaved(entries, blocks=max(3, cfg["blocks"] // 2), block_s=cfg["block_s"] / 2, pause=pause,
                              warmup_s=cfg["warmup_s"])
            libs = {k_: dict(time_s=v.median, gflops=flops / v.median / 1e9,
                             pct_peak=100 * flops / v.median / 1e9 / peak32 if peak32 else _nan())
                    for k_, v in res.items()}
            ok = None if check is None else check <= CHECK_RTOL
            threads = int(C.gemm_threads(flops)) if C is not None and hasattr(C, "gemm_threads") else None
            tab[r["name"]] = dict(product=r["product"], epilogue=r["epilogue"], mkn=list(r["mkn"]), flops=flops,
                                  libs=libs, entries={k_: v.as_dict() for k_, v in res.items()},
                                  tinytl_check_relerr=check, tinytl_check_ok=ok, tinytl_error=err,
                                  tinytl_threads=threads)
            report.p(f"  {r['name']:<11}{r['product']:<19}{r['epilogue']:<27}{flops / 1e6:6.2f}  "
                     + "".join(_cell(fmt_t, libs.get(k_), "-" if k_ == "numpy+epi" and r["numpy_epi"] is None
                                     else "n/a") for k_ in ("tinytl", "numpy", "numpy+epi", "torch"))
                     + (f"  (tinytl on {threads} threads)" if threads and threads > 1 else "")
                     + ("" if ok is not False else f"  MISMATCH (rel. error {check:.1e})"))
            if err:
                report.p(f"  {'':<11}tinytl: {err}")
            if batch == TARGET_BATCH and r["name"] in TARGET_ROWS:
                t = libs.get("tinytl")
                pct = t["pct_peak"] if t and ok else None
                if t is None:
                    note = "tinytl's fused GEMM is not built" if err is None else "tinytl's binding failed"
                elif ok is False:
                    note = "tinytl's result is wrong"
                elif not peak32:
                    note = "no FMA peak (tinytl._C.fma_peak not built)"
                else:
                    note = f"{t['gflops']:.0f} GFLOP/s; numpy's BLAS {libs['numpy']['gflops']:.0f}"
                report.target("0-ceilings", f"b{batch} {r['name']} tinytl, % of FMA peak", pct, PCT_TARGET,
                              unit="%", higher_is_better=True, note=note)
        out[f"b{batch}"] = dict(sizes=SIZES, batch=batch, rows=tab)
    report.data["gemm_table"] = out
    return out
