"""The report's "security" section: how easily small input changes flip the transferred models.

For the models the few-shot section trained at one k (fine-tune, LP-FT, L2-SP) and two
adversarially fine-tuned ones (``tl.transfer.adversarial_finetune`` from the same pretrained
backbone on the same labelled set), it measures the test accuracy clean, under FGSM and
under PGD at two radii eps, and under the attack that needs only the *public* pretrained
network (``tl.attacks.transfer_attack``: PGD on the source's penultimate features, Wang et
al. 2018), beside random noise of the same norm. MNIST-1D's inputs are real-valued signals
with no natural bounds, so nothing is clipped; the radii are fractions of the data's scale
(the mean per-feature standard deviation of the target training inputs).

Read next: ``tinytl/attacks.py``, ``tinytl/transfer/robust.py``.
"""
from __future__ import annotations

import functools
import math
import os
import time

import numpy as np

from .. import attacks as A
from .. import transfer as T
from .._random import manual_seed
from .section import Section, markdown_table, new_figure, save_figure

EPS_SIGMA = (0.1, 0.2)            # the two radii, in units of the data's scale
CURVE_SIGMA = (0.05, 0.1, 0.2, 0.3)   # the plot's radii (full run; --quick: EPS_SIGMA)
ADV_TRAIN = (1.0, 2.0)            # adversarial fine-tuning radii, in units of the larger eps
ADV_STEPS, ADV_RATIO = 5, 1.0     # PGD steps crafting the training examples; adversarial share of a batch
METHODS = {"finetune": "fine-tune", "lp_ft": "LP-FT", "l2sp": "L2-SP"}


def _k(cfg) -> int:
    """The k of the models attacked: the largest of the config's shots up to 50 (else the smallest)."""
    small = [k for k in cfg.shots if k <= 50]
    return max(small) if small else min(cfg.shots)


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _run(ctx) -> dict:
    t0 = time.perf_counter()
    cfg, t = ctx.cfg, ctx.tasks()
    seed, k = 0, _k(cfg)
    steps = 10 if cfg.quick else 20
    n_test = 300 if cfg.quick else len(t["xT_test"])
    X, Y = t["xT_test"][:n_test], t["yT_test"][:n_test]
    idx = ctx.labelled(seed)[k]
    xl, yl = t["xT"][idx], t["yT"][idx]
    scale = float(xl.std(axis=0).mean())
    eps = [s * scale for s in EPS_SIGMA]
    curve_eps = [s * scale for s in (EPS_SIGMA if cfg.quick else CURVE_SIGMA)]
    radii = sorted(set(eps) | set(curve_eps))

    # the models: the few-shot section's, and adversarially fine-tuned ones on the same labels
    models = {m: ctx.train_target(m, seed, k) for m in METHODS}
    labels = dict(METHODS)
    t_train = time.perf_counter()
    batches = math.ceil(len(xl) / min(cfg.target_batch, len(xl)))
    epochs = max(1, math.ceil(cfg.target_steps / batches))          # as many SGD steps as fine-tuning
    adv_cfg = []
    for mult in ADV_TRAIN:
        e_tr = mult * eps[-1]
        name = f"adv_{mult:g}"
        manual_seed(2000 + seed)                                     # the random starts of the attack
        model = T.adversarial_finetune(
            ctx.target_model(seed), xl, yl, ratio=ADV_RATIO, epochs=epochs, lr=cfg.finetune_lr,
            batch_size=cfg.target_batch, seed=seed, weight_decay=cfg.weight_decay,
            attack=functools.partial(A.pgd, eps=e_tr, alpha=2.5 * e_tr / ADV_STEPS, steps=ADV_STEPS))
        model.eval()
        models[name] = model
        labels[name] = "adversarial FT, ε_train = " + ("ε2" if mult == 1 else f"{mult:g}ε2")
        adv_cfg.append({"name": name, "eps_train": e_tr, "eps_train_sigma": mult * EPS_SIGMA[-1]})
    train_s = time.perf_counter() - t_train

    # white-box attacks on each model
    t_eval = time.perf_counter()
    acc = {}
    for name, model in models.items():
        row = {"clean": A.robust_accuracy(model, X, Y, batch_size=1024), "fgsm": [], "pgd": []}
        pgd_at = {}
        for r in radii:
            pgd_at[r] = A.robust_accuracy(model, X, Y, functools.partial(
                A.pgd, eps=r, alpha=2.5 * r / steps, steps=steps, seed=seed), batch_size=1024)
        for e in eps:
            row["fgsm"].append(A.robust_accuracy(model, X, Y, functools.partial(A.fgsm, eps=e), batch_size=1024))
            row["pgd"].append(pgd_at[e])
        row["pgd_curve"] = [pgd_at[r] for r in curve_eps]
        acc[name] = row

    # the transfer attack from the public source, and noise of the same norm (crafted once per radius)
    source = ctx.source_model(seed)
    transfer = {name: {"transfer": [], "noise": [], "success": [], "noise_success": [], "gap": [], "gap_se": []}
                for name in models}
    curve_t = {name: [] for name in models}
    curve_n = {name: [] for name in models}
    norms = {"transfer_l2": [], "noise_l2": []}
    for r in radii:
        tr = A.transfer_attack(source, models, X, Y, attack="features", eps=r, steps=steps, seed=seed,
                               batch_size=1024)
        nz = A.transfer_attack(source, models, X, Y, attack=functools.partial(A.random_noise, eps=r, seed=seed),
                               batch_size=1024)
        if r in eps:
            xa = A.feature_pgd(source, X, None, r, 2.5 * r / steps, steps, seed=seed)
            xn = A.random_noise(source, X, Y, r, seed=seed)
            norms["transfer_l2"].append(float(np.linalg.norm(xa - X, axis=1).mean()))
            norms["noise_l2"].append(float(np.linalg.norm(xn - X, axis=1).mean()))
        for name in models:
            if r in curve_eps:
                curve_t[name].append(tr[name].adversarial_accuracy)
                curve_n[name].append(nz[name].adversarial_accuracy)
            if r in eps:
                d = nz[name].adversarial_correct.astype(float) - tr[name].adversarial_correct.astype(float)
                row = transfer[name]
                row["transfer"].append(tr[name].adversarial_accuracy)
                row["noise"].append(nz[name].adversarial_accuracy)
                row["success"].append(tr[name].success_rate)
                row["noise_success"].append(nz[name].success_rate)
                row["gap"].append(float(d.mean()))                  # paired: noise right - transfer right
                row["gap_se"].append(float(d.std(ddof=1) / math.sqrt(len(d))))
    eval_s = time.perf_counter() - t_eval

    # the targets, each with its measured margin
    ft, adv = acc["finetune"], acc[adv_cfg[-1]["name"]]
    targets = {
        "pgd_halves_finetune": {"clean": ft["clean"], "pgd": ft["pgd"][-1],
                                "met": ft["pgd"][-1] <= ft["clean"] / 2,
                                "margin": ft["clean"] / 2 - ft["pgd"][-1]},
        "adversarial_ft_recovers_15": {"model": adv_cfg[-1]["name"], "gain": adv["pgd"][-1] - ft["pgd"][-1],
                                       "clean_cost": ft["clean"] - adv["clean"],
                                       "met": adv["pgd"][-1] - ft["pgd"][-1] >= 0.15,
                                       "margin": adv["pgd"][-1] - ft["pgd"][-1] - 0.15},
        "transfer_beats_noise": {m: {"gap": transfer[m]["gap"][-1], "se": transfer[m]["gap_se"][-1],
                                     "met": transfer[m]["gap"][-1] > 2 * transfer[m]["gap_se"][-1]}
                                 for m in models},
    }
    return {"seed": seed, "k": k, "n_labelled": int(len(xl)), "n_test": int(n_test), "scale": scale,
            "eps_sigma": list(EPS_SIGMA), "eps": eps, "curve_eps": curve_eps, "clip": None,
            "attack": {"pgd_steps": steps, "alpha": "2.5 * eps / steps", "random_start": True,
                       "transfer": "feature_pgd on the source's penultimate layer", "noise": "random corner of the "
                       "L-inf ball (each coordinate +-eps)"},
            "adversarial_ft": {"models": adv_cfg, "pgd_steps": ADV_STEPS, "ratio": ADV_RATIO, "epochs": epochs,
                               "lr": cfg.finetune_lr, "batch_size": cfg.target_batch},
            "labels": labels, "accuracy": acc, "transfer": transfer,
            "curve": {"pgd": {m: acc[m]["pgd_curve"] for m in models}, "transfer": curve_t, "noise": curve_n},
            "perturbation_l2": norms, "targets": targets,
            "seconds": {"adversarial_ft": train_s, "attacks": eval_s, "total": time.perf_counter() - t0}}


def _plot(results, out_dir) -> str:
    fig = new_figure(10, 4)
    if fig is not None:
        ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        xs = [0.0] + [e / results["scale"] for e in results["curve_eps"]]
        for name, label in results["labels"].items():
            clean = results["accuracy"][name]["clean"]
            line, = ax1.plot(xs, [100 * clean] + [100 * v for v in results["curve"]["pgd"][name]], marker="o",
                             label=label)
            ax2.plot(xs, [100 * clean] + [100 * v for v in results["curve"]["transfer"][name]], marker="o",
                     color=line.get_color(), label=f"{label}: transfer")
            ax2.plot(xs, [100 * clean] + [100 * v for v in results["curve"]["noise"][name]], linestyle=":",
                     color=line.get_color())
        ax1.set_title(f"white-box PGD-{results['attack']['pgd_steps']}")
        ax2.set_title("from the public source (solid) vs noise (dotted)")
        for ax in (ax1, ax2):
            ax.set_xlabel("eps (L-inf, in units of the data's std)")
            ax.set_ylabel("target test accuracy (%)")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
        ax1.legend(fontsize=7)
    return save_figure(fig, out_dir, "security.png", "accuracy against eps")


def _tables(results) -> tuple:
    e1, e2 = results["eps_sigma"]
    acc, tr, labels = results["accuracy"], results["transfer"], results["labels"]
    white = markdown_table(
        ["model", "clean", f"FGSM {e1:g}σ", f"PGD {e1:g}σ", f"FGSM {e2:g}σ", f"PGD {e2:g}σ"],
        [[labels[m], _pct(a["clean"]), _pct(a["fgsm"][0]), _pct(a["pgd"][0]), _pct(a["fgsm"][1]),
          _pct(a["pgd"][1])] for m, a in acc.items()])
    cross = markdown_table(
        ["model", f"noise {e1:g}σ", f"transfer {e1:g}σ", f"noise {e2:g}σ", f"transfer {e2:g}σ",
         f"success rate {e2:g}σ (noise)", f"noise − transfer {e2:g}σ (± s.e.)"],
        [[labels[m], _pct(r["noise"][0]), _pct(r["transfer"][0]), _pct(r["noise"][1]), _pct(r["transfer"][1]),
          f"{_pct(r['success'][1])} ({_pct(r['noise_success'][1])})",
          f"{100 * r['gap'][1]:.1f} ± {100 * r['gap_se'][1]:.1f}"] for m, r in tr.items()])
    return white, cross


def _targets_text(results) -> str:
    tg = results["targets"]
    e2 = results["eps_sigma"][1]
    p, a = tg["pgd_halves_finetune"], tg["adversarial_ft_recovers_15"]
    beats = tg["transfer_beats_noise"]
    n_beat = sum(v["met"] for v in beats.values())
    lines = [
        f"- PGD at {e2:g}σ halves the fine-tuned model's accuracy: {_pct(p['clean'])}% → {_pct(p['pgd'])}% "
        + ("(met, " if p["met"] else "(**missed**, ") + f"{100 * abs(p['margin']):.1f} points "
        + ("below" if p["met"] else "above") + " half).",
        f"- Adversarial fine-tuning ({results['labels'][a['model']]}) recovers {100 * a['gain']:.1f} points of PGD "
        f"accuracy at {e2:g}σ over fine-tuning (target 15: " + ("met" if a["met"] else "**missed**")
        + f" by {100 * abs(a['margin']):.1f}), at a clean-accuracy cost of {100 * a['clean_cost']:.1f} points"
        + (" (a gain)" if a["clean_cost"] < 0 else "") + ".",
        f"- The transfer attack does more damage than noise of the same L-inf norm (paired difference over 2 "
        f"standard errors) on {n_beat} of {len(beats)} models at {e2:g}σ"
        + ("." if n_beat == len(beats) else
           f"; not on: {', '.join(results['labels'][m] for m, v in beats.items() if not v['met'])}."),
    ]
    return "\n".join(lines)


def _intro(results) -> str:
    adv = results["adversarial_ft"]
    n_l2 = results["perturbation_l2"]
    return (f"The models the few-shot section trained from {results['k']} labels per class (seed {results['seed']}), "
            f"and two adversarially fine-tuned from the same pretrained backbone on the same "
            f"{results['n_labelled']} labels (`tl.transfer.adversarial_finetune`: PGD-{adv['pgd_steps']} examples "
            f"crafted on the current model, {100 * adv['ratio']:.0f}% of each batch, {adv['epochs']} epochs), "
            f"attacked on {results['n_test']} target test examples. eps is in L-inf, as a fraction of the data's "
            f"scale σ = {results['scale']:.3f} (mean per-feature std of the labelled inputs); no clipping (MNIST-1D "
            f"signals have no natural bounds). PGD: {results['attack']['pgd_steps']} steps of 2.5·eps/steps from a "
            "random start. Transfer: PGD on the public source network's penultimate features (no access to the "
            "fine-tuned model or its head); noise: a random corner of the same L-inf ball (mean L2 norm "
            f"{n_l2['noise_l2'][-1]:.2f} at the larger eps, the transfer perturbations' {n_l2['transfer_l2'][-1]:.2f}). "
            "Accuracy (%), one seed.")


def _render(results, out_dir) -> str:
    white, cross = _tables(results)
    return "\n\n".join([_intro(results), "White-box attacks (the attacker has the fine-tuned model):", white,
                        "From the public pretrained model only (success rate: the share of the examples the model "
                        "got right clean that the attack flips):", cross, _plot(results, out_dir),
                        _targets_text(results)])


def _text(results) -> str:
    white, cross = _tables(results)
    head = (f"Accuracy (%) of the models trained from {results['k']} labels per class (seed {results['seed']}) on "
            f"{results['n_test']} target test examples; L-inf eps in units of the data's scale σ = "
            f"{results['scale']:.3f}, PGD-{results['attack']['pgd_steps']}; transfer: crafted on the public "
            "pretrained model only; noise: a random corner of the same ball.")
    return "\n\n".join([head, white, cross, _targets_text(results)])


SECTION = Section("security", "Security: adversarial attacks on the transferred models", _run, _render, _text)
