"""The tinytl side: the same MLP, written with tinytl's public API as a user would.

``reference_kernels()`` times tinytl with its pure-NumPy reference kernels in
the same process as everything else: it points ``tinytl.kernels.cpu_kernels``
(the module ``kernels.for_array`` returns for CPU arrays, looked up at every
call) at ``tinytl.kernels.reference`` for the duration of a call. The graph,
the modules and the optimizer are the same objects; only the kernels differ,
which is exactly the comparison wanted. (``TINYTL_KERNELS=numpy`` would need a
second process, whose blocks could not be interleaved with the others.)
"""
from __future__ import annotations

from contextlib import contextmanager

import tinytl as tl


@contextmanager
def reference_kernels():
    """Run tinytl on its reference (NumPy) kernels inside the ``with`` block."""
    k = tl.kernels
    saved = k.cpu_kernels
    k.cpu_kernels = k.reference
    try:
        yield
    finally:
        k.cpu_kernels = saved


def compiled_kernels_active() -> bool:
    return tl.kernels.cpu_kernels is not tl.kernels.reference


def build(sizes, params, device="cpu"):
    """tl.nn.Sequential(Linear, ReLU, ..., Linear) with the given [(W (out, in), b)]."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(tl.nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(tl.nn.ReLU())
    model = tl.nn.Sequential(*layers)
    state = {}
    for i, (W, b) in enumerate(params):
        state[f"{2 * i}.weight"] = W
        state[f"{2 * i}.bias"] = b
    model.load_state_dict(state)
    return model.to(device)


class TinytlMLP:
    """One training step = forward + loss + backward + SGD step + zero_grad.

    ``trainable_from``: Linears before this index are frozen (``Module.freeze()``)
    and not given to the optimizer, for head-only fine-tuning.
    """

    def __init__(self, sizes, lr=0.01, momentum=0.9, params=None, trainable_from=0, device="cpu"):
        self.model = build(sizes, params, device)
        linears = [m for m in self.model if isinstance(m, tl.nn.Linear)]
        for lin in linears[:trainable_from]:
            lin.freeze()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = tl.optim.SGD(trainable, lr=lr, momentum=momentum)
        self.loss_fn = tl.nn.CrossEntropyLoss()

    def step(self, x, t):
        loss = self.loss_fn(self.model(x), t)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        return loss

    def forward(self, x):
        with tl.no_grad():
            return self.model(x)

    def params_torch_layout(self):
        sd = self.model.state_dict()
        n = len(sd) // 2
        return [(sd[f"{2 * i}.weight"], sd[f"{2 * i}.bias"]) for i in range(n)]
