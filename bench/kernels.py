"""Kernel microbenchmarks: each fused kernel against its NumPy reference twin.

Each kernel is called exactly as the engine's hot path calls it (same
arguments, same ``out=`` use), on the shapes of the performance issue. The
figure of merit besides the speed-up is the fraction of the machine's memory
bandwidth reached: these kernels are memory-bound, so ``bytes moved / time``
against a plain large copy says how much is left to gain. "Bytes moved" is the
minimum traffic (each input read once, each output written once).
"""
from __future__ import annotations

import numpy as np


def kernel_cases(scale: float = 1.0):
    """[(name, shape text, make(K) -> callable, bytes moved, target speed-up)] for the given kernels."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    cases = []

    # softmax_xent fwd+bwd on (1024, 1000): read logits, write grad (as functional.cross_entropy calls it)
    n, c = max(8, int(1024 * scale)), 1000
    logits = rng.standard_normal((n, c)).astype(f32)
    target = rng.integers(0, c, size=n).astype(np.int64)
    cases.append(("softmax_xent", f"({n},{c})",
                  lambda K: (lambda: K.softmax_xent(logits, target, "mean")),
                  2 * logits.nbytes + target.nbytes, 3.0))

    # sgd_step, momentum 0.9, 1M float32: read param, grad, buf; write param, buf
    m = max(1024, int(1 << 20) if scale >= 1 else int((1 << 20) * scale))
    param = rng.standard_normal(m).astype(f32)
    grad = rng.standard_normal(m).astype(f32) * f32(1e-3)
    buf = np.zeros(m, f32)
    cases.append(("sgd_step", f"({m},) momentum",
                  lambda K: (lambda: K.sgd_step(param, grad, buf, 1e-3, 0.9, 0.0, 0.0, False, False)),
                  5 * param.nbytes, 2.5))

    # adam_step with torch.optim.Adam's defaults, 1M float32 (a step past the first, so the
    # bias corrections are not trivial): read param, grad, exp_avg, exp_avg_sq; write param
    # and both moments
    a_param = rng.standard_normal(m).astype(f32)
    a_grad = rng.standard_normal(m).astype(f32) * f32(1e-3)
    exp_avg, exp_avg_sq = np.zeros(m, f32), np.zeros(m, f32)
    cases.append(("adam_step", f"({m},) Adam defaults",
                  lambda K: (lambda: K.adam_step(a_param, a_grad, exp_avg, exp_avg_sq, None, 10, 1e-3, 0.9, 0.999,
                                                 1e-8, 0.0, False, False, False)),
                  7 * a_param.nbytes, 2.5))

    # linear_forward_epilogue bias + ReLU on (1024, 1024), in place and writing the packed
    # ReLU mask, as functional.linear calls it in training
    r = max(8, int(1024 * scale))
    y = rng.standard_normal((r, 1024)).astype(f32)
    bias = rng.standard_normal(1024).astype(f32) * f32(1e-3)
    mask = np.zeros((r, 1024 // 8), np.uint8)
    cases.append(("linear_forward_epilogue", f"({r},1024) bias+relu+mask",
                  lambda K: (lambda: K.linear_forward_epilogue(y, bias, True, y, mask)),
                  2 * y.nbytes + bias.nbytes + mask.nbytes, 2.0))

    # linear_backward_epilogue ReLU mask + bias grad on (1024, 1024): informative, no target
    g = rng.standard_normal((r, 1024)).astype(f32)
    mr = np.packbits(rng.standard_normal((r, 1024)) > 0, axis=1, bitorder="little")
    cases.append(("linear_backward_epilogue", f"({r},1024) relu+bias grad",
                  lambda K: (lambda: K.linear_backward_epilogue(g, mr, True, True)),
                  2 * g.nbytes + mr.nbytes, None))
    return cases
