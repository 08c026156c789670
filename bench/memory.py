"""Case 8-memory: what one fine-tuning step costs in memory, per strategy, tinytl vs PyTorch eager.

Strategies: full fine-tuning; head only (the last Linear); BitFit (biases + head:
``tl.transfer.freeze(model)`` then unfreezing ``*.bias`` and the head); LoRA rank 8,
alpha 8 on every Linear (``tl.transfer.add_lora``; in PyTorch the same wrapper, base
frozen, ``lora_A`` Kaiming-uniform a=sqrt(5), ``lora_B`` zeros). Models: 784-1024-1024-10
and a deep 784-(1024 x 8)-10, batch 256, float32, the same weights and batch in both
libraries; optimizers SGD (momentum 0.9) and Adam. After one warm-up step (so the
optimizer state exists), for one step (forward, loss, backward, update, zero_grad):

(a) bytes the model's graph keeps for backward, parameters excluded: tinytl
    ``tl.memory.saved_bytes(logits)``; PyTorch: the tensors packed by
    ``torch.autograd.graph.saved_tensors_hooks`` during the model's forward, each
    storage once, parameters' storages excluded. (The loss's own kept gradient,
    N x C floats, is left out of both: the targets are about the model.)
(b) bytes of the gradients (trainable parameters) plus the optimizer state.
(c) peak array bytes allocated during the step above those allocated before it
    (``tl.memory.track_memory()``: NumPy's allocations through tracemalloc); not
    measured for PyTorch (its CPU allocator is not traced).
(d) time per step: interleaved blocks, medians (bench/common.py's protocol).

Rows whose API is missing (``tl.transfer.add_lora``, ``tl.optim.Adam``) are skipped
with a message.
"""
from __future__ import annotations

import math

import numpy as np

import tinytl as tl
import numpy_mlp
import tinytl_mlp
import torch_mlp
from common import Entry, interleaved

torch = torch_mlp.torch

STRATEGIES = ("full", "head", "bitfit", "lora")
OPTIMIZERS = ("sgd", "adam")
MLPS = {"784-1024-1024-10": (784, 1024, 1024, 10), "deep 784-1024x8-10": (784,) + (1024,) * 8 + (10,)}
SMOKE_MLPS = {"784-64-64-10": (784, 64, 64, 10), "deep 784-64x8-10": (784,) + (64,) * 8 + (10,)}
BATCH, SMOKE_BATCH = 256, 16
LR, MOMENTUM, ADAM_LR = 0.01, 0.9, 1e-3
RANK = ALPHA = 8


def missing(strategy, opt):
    """Why this row cannot run here (an API not in this build), or None."""
    if strategy == "lora" and not hasattr(tl.transfer, "add_lora"):
        return "tl.transfer.add_lora is not in this build"
    if opt == "adam" and not hasattr(tl.optim, "Adam"):
        return "tl.optim.Adam is not in this build"
    return None


def _array_bytes(objs):
    seen, total = set(), 0
    for a in objs:
        if hasattr(a, "nbytes") and hasattr(a, "dtype") and id(a) not in seen:
            seen.add(id(a))
            total += int(a.nbytes)
    return total


# ------------------------------------------------------------------ tinytl ----

class TinytlRun:
    def __init__(self, sizes, params, batch_arrays, strategy, opt):
        self.model = model = tinytl_mlp.build(sizes, params)
        head = f"{2 * (len(sizes) - 2)}"
        if strategy == "head":
            tl.transfer.freeze(model)
            tl.transfer.unfreeze(model, f"{head}.*")
        elif strategy == "bitfit":
            tl.transfer.freeze(model)
            tl.transfer.unfreeze(model, "*.bias", f"{head}.*")
        elif strategy == "lora":
            tl.transfer.add_lora(model, rank=RANK, alpha=ALPHA)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.opt = (tl.optim.SGD(self.trainable, lr=LR, momentum=MOMENTUM) if opt == "sgd"
                    else tl.optim.Adam(self.trainable, lr=ADAM_LR))
        self.loss_fn = tl.nn.CrossEntropyLoss()
        self.x, self.t = tl.tensor(batch_arrays[0]), batch_arrays[1]
        self.head_input_bytes = batch_arrays[0].shape[0] * sizes[-2] * 4

    def step(self):
        loss = self.loss_fn(self.model(self.x), self.t)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()

    def measure(self):
        self.step()                                          # warm-up: the optimizer state exists
        logits = self.model(self.x)
        a = tl.memory.saved_bytes(logits)
        self.loss_fn(logits, self.t).backward()
        self.opt.step()
        state = [v for s in self.opt.state.values() for v in (s.values() if isinstance(s, dict) else [s])]
        b = _array_bytes([p.grad for p in self.trainable if p.grad is not None]) + _array_bytes(state)
        self.opt.zero_grad()
        del logits
        with tl.memory.track_memory() as m:
            self.step()
        return dict(a=a, b=b, c=m.peak_bytes, trainable=sum(int(p.data.size) for p in self.trainable))


# ----------------------------------------------------------------- PyTorch ----

def _torch_lora_class():
    class LoRALinear(torch.nn.Module):
        """base(x) + (alpha / rank) * B(A(x)), base frozen: the same adapter as tl.transfer.add_lora."""

        def __init__(self, base, rank, alpha):
            super().__init__()
            self.base_layer = base.requires_grad_(False)
            self.lora_A = torch.nn.Linear(base.in_features, rank, bias=False)
            self.lora_B = torch.nn.Linear(rank, base.out_features, bias=False)
            torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            torch.nn.init.zeros_(self.lora_B.weight)
            self.scaling = alpha / rank

        def forward(self, x):
            return self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling
    return LoRALinear


class TorchRun:
    def __init__(self, sizes, params, batch_arrays, strategy, opt):
        self.model = model = torch_mlp.build(sizes, params)
        linears = [i for i, m in enumerate(model) if isinstance(m, torch.nn.Linear)]
        if strategy in ("head", "bitfit"):
            for n, p in model.named_parameters():
                p.requires_grad_(n.startswith(f"{linears[-1]}.") or (strategy == "bitfit" and n.endswith("bias")))
        elif strategy == "lora":
            lora = _torch_lora_class()
            for i in linears:
                model[i] = lora(model[i], RANK, ALPHA)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.opt = (torch.optim.SGD(self.trainable, lr=LR, momentum=MOMENTUM) if opt == "sgd"
                    else torch.optim.Adam(self.trainable, lr=ADAM_LR))
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.x, self.t = torch.from_numpy(batch_arrays[0]), torch.from_numpy(batch_arrays[1])

    def step(self):
        loss = self.loss_fn(self.model(self.x), self.t)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def measure(self):
        self.step()
        params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        kept = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                kept[s.data_ptr()] = s.nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits = self.model(self.x)
        self.loss_fn(logits, self.t).backward()
        self.opt.step()
        state = [v for s in self.opt.state.values() for v in s.values() if torch.is_tensor(v)]
        b = sum(p.grad.nbytes for p in self.trainable if p.grad is not None) + sum(v.nbytes for v in state)
        self.opt.zero_grad(set_to_none=True)
        return dict(a=sum(kept.values()), b=b)


# -------------------------------------------------------------------- case ----

def _mib(n):
    return "-" if n is None else f"{n / 2**20:7.2f}"


def memory_case(report, cfg, pause, fmt_t, smoke=False):
    """Run case 8-memory; print its table and targets into ``report``."""
    mlps, batch = (SMOKE_MLPS, SMOKE_BATCH) if smoke else (MLPS, BATCH)
    rows, entries, skipped = {}, [], []
    for mname, sizes in mlps.items():
        params = numpy_mlp.init_params(sizes)
        arrays = numpy_mlp.make_batch(sizes, batch)
        for strategy in STRATEGIES:
            for opt in OPTIMIZERS:
                why = missing(strategy, opt)
                if why:
                    skipped.append(f"{mname} {strategy} {opt}: {why}")
                    continue
                key = (mname, strategy, opt)
                run = TinytlRun(sizes, params, arrays, strategy, opt)
                rows[key] = dict(tinytl=run.measure())
                rows[key]["head_input_bytes"] = run.head_input_bytes
                entries.append(Entry(f"tinytl {mname} {strategy} {opt}", run.step))
                if torch is not None:
                    trun = TorchRun(sizes, params, arrays, strategy, opt)
                    rows[key]["torch"] = trun.measure()
                    entries.append(Entry(f"torch {mname} {strategy} {opt}", trun.step))
    blocks = max(2, min(cfg["blocks"], 5))
    res = interleaved(entries, blocks=blocks, block_s=cfg["block_s"], pause=pause, warmup_s=cfg["warmup_s"])
    for (mname, strategy, opt), row in rows.items():
        row["tinytl"]["d_s"] = res[f"tinytl {mname} {strategy} {opt}"].median
        if "torch" in row:
            row["torch"]["d_s"] = res[f"torch {mname} {strategy} {opt}"].median

    report.p(f"\n== 8-memory: one fine-tuning step, batch {batch}, float32 ({blocks} interleaved blocks/entry) ==")
    report.p("  (a) kept for backward by the model's graph, parameters excluded; (b) gradients + optimizer "
             "state; (c) peak allocated during the step (tinytl, tracemalloc); (d) time per step.  MiB")
    report.p(f"  {'model':<20}{'strategy':<9}{'opt':<6}{'trainable':>10} | {'tl (a)':>8}{'tl (b)':>8}"
             f"{'tl (c)':>8}{'tl (d)':>11} | {'pt (a)':>8}{'pt (b)':>8}{'pt (d)':>11}")
    for (mname, strategy, opt), row in rows.items():
        t, p = row["tinytl"], row.get("torch", {})
        report.p(f"  {mname:<20}{strategy:<9}{opt:<6}{t['trainable']:>10} | {_mib(t['a']):>8}{_mib(t['b']):>8}"
                 f"{_mib(t['c']):>8}{fmt_t(t['d_s']):>11} | {_mib(p.get('a')):>8}{_mib(p.get('b')):>8}"
                 f"{fmt_t(p.get('d_s', float('nan'))):>11}")
    for s in skipped:
        report.p(f"  skipped: {s}")
    report.data["cases"]["8-memory"] = dict(batch=batch, models={k: list(v) for k, v in mlps.items()},
                                            rows={" / ".join(k): v for k, v in rows.items()}, skipped=skipped)

    def get(mname, strategy, opt, lib, what):
        row = rows.get((mname, strategy, opt), {})
        return row.get(lib, {}).get(what)

    wide, deep = list(mlps)
    full_a, bit_a = get(deep, "full", "sgd", "tinytl", "a"), get(deep, "bitfit", "sgd", "tinytl", "a")
    pt = (get(deep, "bitfit", "sgd", "torch", "a"), get(deep, "full", "sgd", "torch", "a"))
    report.target("8-memory", "deep BitFit (a) / full (a)", bit_a / full_a if full_a else None, 1 / 6.5,
                  note=f"PyTorch: {pt[0] / pt[1]:.2f}" if pt[0] and pt[1] else "")
    full_c, bit_c = get(deep, "full", "sgd", "tinytl", "c"), get(deep, "bitfit", "sgd", "tinytl", "c")
    report.target("8-memory", "deep BitFit (c) peak / full (c)", bit_c / full_c if full_c else None, 0.35)
    for mname in (wide, deep):
        full_b, lora_b = get(mname, "full", "adam", "tinytl", "b"), get(mname, "lora", "adam", "tinytl", "b")
        report.target("8-memory", f"{mname.split()[0]} LoRA r8 Adam (b) / full Adam (b)",
                      lora_b / full_b if (full_b and lora_b) else None, 0.05,
                      note="" if lora_b else "skipped: " + (missing("lora", "adam") or ""))
    for mname in (wide, deep):
        a, want = get(mname, "head", "sgd", "tinytl", "a"), rows.get((mname, "head", "sgd"), {}).get("head_input_bytes")
        report.target("8-memory", f"{mname.split()[0]} head-only (a) - head input", None if a is None else abs(a - want),
                      0, unit="B", note=f"head input {want} B")
    report.target("8-memory", "memory-aware backward: full step time", None, 1.0,
                  note="a before/after comparison of two builds: bench/README.md, case 8-memory")
