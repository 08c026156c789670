"""The PyTorch eager baseline: torch.nn + torch.optim.SGD, as a user would write it.

``torch.set_num_threads`` is set by the runner to the thread count NumPy's BLAS
uses (2 on this machine), so both libraries get the same cores. The optimizer
is ``torch.optim.SGD`` with its defaults (on the CPU that is the per-parameter
loop; ``foreach``/``fused`` are left to PyTorch's own choice, as a user gets).
"""
from __future__ import annotations

try:
    import torch
except ImportError:            # the runner skips the PyTorch columns
    torch = None


def available() -> bool:
    return torch is not None


def build(sizes, params, device="cpu"):
    """nn.Sequential(Linear, ReLU, ..., Linear) with the given [(W (out, in), b)]."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        for lin, (W, b) in zip(linears, params):
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
    return model.to(device)


class TorchMLP:
    """One training step = forward + loss + backward + SGD step + zero_grad (set_to_none).

    ``trainable_from``: Linears before this index are frozen (requires_grad False,
    not given to the optimizer), for head-only fine-tuning.
    """

    def __init__(self, sizes, lr=0.01, momentum=0.9, params=None, trainable_from=0, device="cpu"):
        self.model = build(sizes, params, device)
        linears = [m for m in self.model if isinstance(m, torch.nn.Linear)]
        for lin in linears[:trainable_from]:
            lin.requires_grad_(False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(trainable, lr=lr, momentum=momentum)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.device = device

    def step(self, x, t):
        loss = self.loss_fn(self.model(x), t)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss

    def forward(self, x):
        with torch.no_grad():
            return self.model(x)

    def params_torch_layout(self):
        return [(m.weight.detach().cpu().numpy().copy(), m.bias.detach().cpu().numpy().copy())
                for m in self.model if isinstance(m, torch.nn.Linear)]
