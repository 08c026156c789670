"""The bar: an MLP trained with plain NumPy + BLAS, written by hand, no autograd.

This is what a careful engineer gets from NumPy alone, and what tinytl must
beat on small networks (where it can save the per-op overheads) and match on
large ones (where both are one BLAS GEMM after another):

- every buffer (activations, gradients, momentum, softmax scratch) is allocated
  once, in ``__init__``; a step allocates only a few tiny arrays of N labels;
- forward: ``np.matmul(h, W, out=z)``, then the bias add and the ReLU in place;
- the softmax cross-entropy is fused by hand: max, exp, sum and the gradient
  ``softmax - onehot`` are computed in one scratch buffer;
- backward: ``out=`` GEMMs, bias gradients summed in place, the ReLU mask
  applied in place; no gradient is computed for the input or for frozen layers;
- the learning rate is folded into the loss gradient (dL/dlogits is scaled by
  lr / N instead of 1 / N; by linearity every gradient then comes out already
  multiplied by lr), so the momentum update needs no scratch buffer::

      v = momentum * v + lr * g      (v = lr * buf of torch.optim.SGD)
      w -= v

  which is torch.optim.SGD's rule (dampening 0, no weight decay) for a constant lr.

Weights are stored transposed, ``WT`` of shape (in, out), so the forward GEMM
has no transposed operand; ``params_torch_layout()`` returns them as PyTorch
lays them out ((out, in)) for parity checks.

The array module is a parameter (``xp``): the same code runs on CuPy.
"""
from __future__ import annotations

import numpy as np


def init_params(sizes, seed: int = 0, dtype=np.float32):
    """[(W (out, in), b (out,))] uniform in +-1/sqrt(in), PyTorch's Linear init and layout."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        W = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype)
        b = rng.uniform(-bound, bound, size=(fan_out,)).astype(dtype)
        params.append((W, b))
    return params


def make_batch(sizes, batch: int, seed: int = 1, dtype=np.float32):
    """A random input batch (N, in) and integer labels (N,) in [0, out)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    t = rng.integers(0, sizes[-1], size=batch).astype(np.int64)
    return x, t


class NumpyMLP:
    """Linear-ReLU-...-Linear trained with softmax cross-entropy and SGD momentum.

    Args:
        sizes: layer widths, e.g. (784, 128, 10).
        batch: the batch size (buffers are sized for it).
        lr, momentum: SGD options.
        params: initial [(W (out, in), b)] as from ``init_params``.
        trainable_from: index of the first trained Linear; the layers before it
            are frozen (forward only), as in head-only fine-tuning.
        xp: the array module (numpy, or cupy for the GPU).
    """

    def __init__(self, sizes, batch, lr=0.01, momentum=0.9, params=None, trainable_from=0, xp=np,
                 dtype=np.float32):
        self.xp, self.lr, self.momentum = xp, float(lr), float(momentum)
        self.n_layers = L = len(sizes) - 1
        self.trainable_from = trainable_from
        params = init_params(sizes, dtype=dtype) if params is None else params
        self.WT = [xp.asarray(np.ascontiguousarray(W.T)) for W, _ in params]
        self.b = [xp.asarray(b.copy()) for _, b in params]
        N = batch
        self.z = [xp.empty((N, sizes[l + 1]), dtype) for l in range(L)]       # layer outputs (post-ReLU)
        self.P = xp.empty((N, sizes[-1]), dtype)                              # softmax, then dL/dlogits
        self.m = xp.empty((N,), dtype)
        self.s = xp.empty((N,), dtype)
        self.rows = xp.arange(N)
        trained = range(trainable_from, L)
        self.gWT = {l: xp.empty_like(self.WT[l]) for l in trained}
        self.gb = {l: xp.empty_like(self.b[l]) for l in trained}
        self.vWT = {l: xp.zeros_like(self.WT[l]) for l in trained}            # lr * momentum buffers
        self.vb = {l: xp.zeros_like(self.b[l]) for l in trained}
        # gradient w.r.t. the input of layer l (= output of layer l-1), l > trainable_from
        self.gh = {l: xp.empty((N, sizes[l]), dtype) for l in trained if l > trainable_from}
        self.mask = {l: xp.empty((N, sizes[l]), bool) for l in trained if l > trainable_from}
        self.first = True

    def forward(self, x):
        """Logits of ``x`` (a view of an internal buffer: overwritten by the next call)."""
        xp, h = self.xp, x
        last = self.n_layers - 1
        for l in range(self.n_layers):
            z = self.z[l]
            xp.matmul(h, self.WT[l], out=z)
            z += self.b[l]
            if l < last:
                xp.maximum(z, 0, out=z)
            h = z
        return h

    def step(self, x, t):
        """One training step on (x, t); returns the mean loss as a 0-d array."""
        xp, N = self.xp, x.shape[0]
        logits = self.forward(x)
        # --- softmax cross-entropy, fused by hand -----------------------------
        m, s, P, rows = self.m, self.s, self.P, self.rows
        xp.max(logits, axis=1, out=m)
        xp.subtract(logits, m[:, None], out=P)
        xp.exp(P, out=P)
        xp.sum(P, axis=1, out=s)
        picked = logits[rows, t]
        loss = (xp.log(s).sum() + m.sum() - picked.sum()) / N
        scale = self.lr / N                       # lr folded into the gradient (see module doc)
        xp.divide(scale, s, out=s)
        xp.multiply(P, s[:, None], out=P)
        P[rows, t] -= scale                       # P = lr * dL/dlogits
        # --- backward ---------------------------------------------------------
        g, lo = P, self.trainable_from
        for l in range(self.n_layers - 1, lo - 1, -1):
            h = x if l == 0 else self.z[l - 1]
            xp.matmul(h.T, g, out=self.gWT[l])
            xp.sum(g, axis=0, out=self.gb[l])
            if l > lo:
                gh, mask = self.gh[l], self.mask[l]
                xp.matmul(g, self.WT[l].T, out=gh)
                xp.greater(h, 0, out=mask)           # ReLU: the gradient passes where h > 0
                xp.multiply(gh, mask, out=gh)
                g = gh
        # --- SGD momentum, in place -------------------------------------------
        mom, first = self.momentum, self.first
        for l in range(lo, self.n_layers):
            for p, v, gr in ((self.WT[l], self.vWT[l], self.gWT[l]), (self.b[l], self.vb[l], self.gb[l])):
                if first:
                    v[...] = gr
                else:
                    xp.multiply(v, mom, out=v)
                    xp.add(v, gr, out=v)
                xp.subtract(p, v, out=p)
        self.first = False
        return loss

    def params_torch_layout(self):
        """[(W (out, in), b)] as NumPy arrays, for comparing with the other implementations."""
        to_np = (lambda a: a) if self.xp is np else (lambda a: self.xp.asnumpy(a))
        return [(to_np(WT).T.copy(), to_np(b).copy()) for WT, b in zip(self.WT, self.b)]
