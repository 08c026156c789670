"""Which memory layout of a Linear weight lets BLAS run a layer's GEMMs fastest?

A Linear weight W has PyTorch's shape (out, in). Stored in C order, the forward
GEMM is ``x @ W.T`` on a transposed operand; stored in Fortran order (what
``tinytl.nn.Linear`` does), ``W.T`` is a plain row-major (in, out) matrix.
This script times the three GEMMs of a layer both ways, interleaved, with
``out=`` buffers (so allocation is not timed), and prints medians and ratios:

    python bench/gemm_layouts.py

forward  y  = x @ W.T          (C weight)   vs  x @ WT         (Fortran weight)
w-grad   gW = g.T @ x          (C layout)   vs  (x.T @ g).T    (Fortran layout)
x-grad   gx = g @ W            (C weight)   vs  g @ WT.T       (Fortran weight)
"""
from __future__ import annotations

import time

import numpy as np

SHAPES = [(32, 784, 128), (128, 784, 128), (256, 1024, 1024), (1024, 784, 1024), (128, 128, 10)]


def _median_us(fns: dict, reps: int, rounds: int = 11) -> dict:
    times = {k: [] for k in fns}
    for f in fns.values():
        for _ in range(max(1, reps // 4)):
            f()
    for _ in range(rounds):                 # interleaved: A B C ... A B C ...
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            times[k].append((time.perf_counter() - t0) / reps)
    return {k: float(np.median(v)) * 1e6 for k, v in times.items()}


def main():
    rng = np.random.default_rng(0)
    print(f"{'batch, in, out':>18}  {'GEMM':8} {'C weight':>10} {'F weight':>10}  C/F")
    for n, i, o in SHAPES:
        x = rng.standard_normal((n, i)).astype(np.float32)
        W = rng.standard_normal((o, i)).astype(np.float32)     # C order
        WT = np.ascontiguousarray(W.T)                          # the Fortran-ordered weight's memory
        g = rng.standard_normal((n, o)).astype(np.float32)
        y, gW, gWT, gx = (np.empty((n, o), np.float32), np.empty((o, i), np.float32),
                          np.empty((i, o), np.float32), np.empty((n, i), np.float32))
        reps = max(3, int(2e8 / (n * i * o)))
        t = _median_us({
            "fwd C": lambda: np.matmul(x, W.T, out=y), "fwd F": lambda: np.matmul(x, WT, out=y),
            "wgrad C": lambda: np.matmul(g.T, x, out=gW), "wgrad F": lambda: np.matmul(x.T, g, out=gWT),
            "xgrad C": lambda: np.matmul(g, W, out=gx), "xgrad F": lambda: np.matmul(g, WT.T, out=gx),
        }, reps)
        for name in ("fwd", "wgrad", "xgrad"):
            c, f = t[name + " C"], t[name + " F"]
            print(f"{str((n, i, o)):>18}  {name:8} {c:8.1f}us {f:8.1f}us  {c / f:.2f}")


if __name__ == "__main__":
    main()
