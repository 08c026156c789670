"""Where does tinytl's small-batch GEMM stop beating the BLAS, and when do two threads pay?

    python bench/gemm_crossover.py [--quick] [--out crossover.json]

For each dtype, shape (M rows, K = in_features, N = out_features) and product of a Linear
layer, times in interleaved blocks (bench/common.py's protocol, with a short pause):

- ``fused1`` / ``fused2``: tinytl's GEMM with its epilogue (``tinytl._C.linear_forward`` /
  ``linear_backward``) on one and on two threads;
- ``blas``: what kernels/cpu.py does above the crossover: NumPy's matmul (OpenBLAS, its own
  threads) and the epilogue kernel, as separate calls.

The products: ``forward`` (x @ W.T + bias, ReLU, mask), ``backward`` (mask applied, bias
gradient, g.T @ x and g @ W: a hidden layer's backward) and ``wgrad`` (the same without
g @ W: the first layer's). The table prints medians in us, GFLOP/s and the ratios
fused/blas; kernels/cpu.py's GEMM_MAX_ROWS / GEMM_MAX_FLOPS and csrc/gemm.cpp's
kGemmTwoThreadFlops are set from its output (bench/README.md, "GEMM crossover").
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from common import Entry, interleaved  # noqa: E402
from tinytl import _C  # noqa: E402
from tinytl.kernels import cpu as K  # noqa: E402

# (K, N): square layers, and the first layer of the MLP cases (784 -> 128)
FULL = dict(rows=[8, 32, 128, 256, 512], widths=[(128, 128), (784, 128), (256, 256), (512, 512), (1024, 1024),
                                                  (2048, 2048)], blocks=5, block_s=0.02, max_flops=2e9)
QUICK = dict(rows=[32, 256], widths=[(128, 128), (1024, 1024)], blocks=3, block_s=0.01, max_flops=2e9)
ROWS_LIMIT = 256        # kernels/cpu.py's GEMM_MAX_ROWS: above it the BLAS serves every size
NOISE = 1.15            # a ratio within this of 1 is a tie on this machine (A/A controls read 0.87-1.16)


def _operands(m, k, n, dtype, rng):
    x = rng.standard_normal((m, k)).astype(dtype)
    w = np.asfortranarray(rng.standard_normal((n, k)).astype(dtype))
    b = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal((m, n)).astype(dtype)
    return x, w, b, g


def entries_for(product, m, k, n, dtype, rng):
    """{name: callable} for one product and shape."""
    x, w, b, g = _operands(m, k, n, dtype, rng)
    out, y = np.empty((m, n), dtype), np.empty((m, n), dtype)
    mask = np.empty((m, (n + 7) // 8), np.uint8)
    _C.linear_forward(x, w, b, True, out, mask)
    gbuf = np.empty_like(g)
    if product == "forward":
        def fused(t):
            return lambda: _C.linear_forward(x, w, b, True, out, mask, t)

        def blas():
            np.matmul(x, w.T, out=y)
            K._C_linear_forward_epilogue(y, b, True, y, mask)
    else:
        input_grad = product == "backward"

        def fused(t):
            return lambda: _C.linear_backward(g, mask, True, x, w, True, input_grad, t)

        def blas():
            gm, gb = K._C_linear_backward_epilogue(g, mask, True, True, gbuf)
            (x.T @ gm).T
            if input_grad:
                gm @ w
    return {"fused1": fused(1), "fused2": fused(2), "blas": blas}


def flops_of(product, m, k, n):
    return 2 * m * k * n * (2 if product == "backward" else 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="write the figures as JSON")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    rng = np.random.default_rng(0)
    print(f"tinytl GEMM: {_C.gemm_isa()}, threads available {_C.max_threads()}")
    print(f"{'dtype':8}{'product':9}{'M':>5}{'K':>6}{'N':>6}  {'fused1':>9} {'fused2':>9} {'blas':>9}  "
          f"{'GF/s 1t':>8} {'blas':>6}  {'f1/blas':>7} {'f2/f1':>6}")
    rows = []
    for dtype in (np.float32, np.float64):
        for product in ("forward", "wgrad", "backward"):
            for m in cfg["rows"]:
                for k, n in cfg["widths"]:
                    if flops_of(product, m, k, n) > cfg["max_flops"]:
                        continue
                    fns = entries_for(product, m, k, n, dtype, rng)
                    res = interleaved([Entry(k_, f) for k_, f in fns.items()], blocks=cfg["blocks"],
                                      block_s=cfg["block_s"], pause=0.02, warmup_s=0.02)
                    med = {k_: v.median for k_, v in res.items()}
                    fl = flops_of(product, m, k, n)
                    row = dict(dtype=np.dtype(dtype).name, product=product, m=m, k=k, n=n, flops=fl,
                               median_s=med, gflops={k_: fl / v / 1e9 for k_, v in med.items()})
                    rows.append(row)
                    print(f"{row['dtype']:8}{product:9}{m:5d}{k:6d}{n:6d}  " + " ".join(
                        f"{med[k_] * 1e6:9.1f}" for k_ in ("fused1", "fused2", "blas"))
                        + f"  {row['gflops']['fused1']:8.1f} {row['gflops']['blas']:6.1f}"
                        f"  {med['fused1'] / med['blas']:7.2f} {med['fused2'] / med['fused1']:6.2f}", flush=True)
    # the crossover: per dtype, the largest product (flops of one GEMM) below which no measured
    # shape of at most ROWS_LIMIT rows ran fused (one thread) more than NOISE slower than on the BLAS
    crossover = {}
    for dt in ("float32", "float64"):
        mine = [r for r in rows if r["dtype"] == dt and r["m"] <= ROWS_LIMIT]
        per_gemm = lambda r: r["flops"] / (2 if r["product"] == "backward" else 1)   # noqa: E731
        slower = [per_gemm(r) for r in mine if r["median_s"]["fused1"] > NOISE * r["median_s"]["blas"]]
        first_loss = min(slower) if slower else float("inf")
        crossover[dt] = max((per_gemm(r) for r in mine if per_gemm(r) < first_loss), default=0.0)
        print(f"{dt}: fused no more than {NOISE - 1:.0%} slower on every measured shape up to {crossover[dt] / 1e6:.1f} MFLOP per GEMM "
              f"(first slower: {first_loss / 1e6:.1f} MFLOP)")
        shares = [r["median_s"]["fused2"] / r["median_s"]["fused1"] for r in mine]
        two = [r["flops"] for r in mine if r["median_s"]["fused2"] < 0.9 * r["median_s"]["fused1"]]
        print(f"{dt}: two threads >= 10% faster than one on {len(two)} of {len(shares)} shapes"
              + (f", the smallest {min(two) / 1e6:.1f} MFLOP" if two else ""))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(isa=_C.gemm_isa(), threads=_C.max_threads(), rows=rows, crossover_flops=crossover), f,
                      indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
