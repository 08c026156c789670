"""The report's "choose" section: which pretrained model, which layer, which recipe?

1. **Which source.** Several MLPs pretrained on different MNIST-1D source tasks, all on digits
   disjoint from the target's (different class subsets and sizes, a short pretraining, and two
   controls: one pretrained on random labels, one not pretrained at all), are scored on the
   k-shot labelled target set by each transferability score (``tinytl/transfer/scores.py``,
   on the features the head reads; LEEP and NCE on the source head's predictions), and each is
   actually fine-tuned once. The weighted Kendall tau between each score and the fine-tuned
   accuracy says how well the score ranks the sources (1: the same order; hyperbolic weights
   make the top of the ranking count most, as ``scipy.stats.weightedtau``).
2. **Which layer.** ``rank_layers`` on the demo's pretrained network, beside the test accuracy
   of fine-tuning the network cut at each layer (a new head on top).
3. **Which recipe.** ``search`` (validation with early stopping) against the best single recipe
   chosen with hindsight on the test set, at 5, 10 and 20 labels per class.

Every figure is measured in the run; nothing is tuned on the test set except the hindsight
baseline, which is the point of it.

Read next: ``tinytl/transfer/search.py``.
"""
from __future__ import annotations

import time

import numpy as np

from .. import nn
from .. import transfer as T
from .._random import manual_seed
from ..transfer.scores import weighted_tau
from . import fewshot
from .section import Section, markdown_table, new_figure, save_figure

SCORES = ("logme", "hscore", "transrate", "leep", "nce")
FEATURE_SCORES = ("logme", "hscore", "transrate")
RECIPES = ("probe", "finetune", "lp_ft", "l2sp")
TARGET_GAP = 1.5          # points: the search within this of the hindsight-best recipe
TARGET_SPEEDUP = 50.0     # scoring all sources and layers vs fine-tuning each source once


def _shots(cfg):
    shots = [k for k in cfg.shots if k in (5, 10, 20)] or [min(cfg.shots)]
    return shots


def _sources(ctx, t, cfg, steps, quick):
    """{name: (model, description)}: the candidate source networks (all pretrained with seed 0)."""
    avail = [c for c in range(int(t["y"].max()) + 1) if c not in cfg.target_classes]
    avail = [c for c in avail if (t["y"] == c).any()]
    out = {}
    out[f"{fewshot._fmt_classes(cfg.source_classes)}, all"] = (
        ctx.source_model(0), f"the demo's network: digits {fewshot._fmt_classes(cfg.source_classes)}, "
                             f"{len(t['xs'])} examples, {cfg.epochs} epochs")
    rng = np.random.default_rng(7)

    def pretrain(name, classes, n=None, noise=False, train_steps=steps, seed=1):
        x, y = fewshot._task(t["x"], t["y"], classes)
        if n is not None and n < len(x):
            keep = rng.permutation(len(x))[:n]
            x, y = x[keep], y[keep]
        if noise:
            y = rng.integers(0, len(classes), len(y))
        manual_seed(100 + seed)
        model = fewshot._mlp(t["n_in"], cfg.hidden, len(classes), cfg.device)
        if train_steps:
            fewshot._train(model, x, y, steps=train_steps, lr=cfg.pretrain_lr, batch_size=cfg.pretrain_batch,
                           weight_decay=cfg.weight_decay, seed=seed, device=cfg.device)
        what = ("random labels" if noise else "digits " + fewshot._fmt_classes(classes))
        out[name] = (model, f"{what}, {len(x)} examples, {train_steps} steps" if train_steps else
                     "no pretraining (random weights)")

    src = [c for c in cfg.source_classes if c in avail] or avail
    half = max(2, len(src) // 2)
    rest = src[half:] if len(src) - half >= 2 else src[-2:]
    if not quick:
        pretrain(f"{fewshot._fmt_classes(src)}, 500 ex.", src, n=500, seed=2)
    pretrain(f"{fewshot._fmt_classes(src)}, 100 ex.", src, n=100, seed=3)
    pretrain(f"{fewshot._fmt_classes(src[:half])}, all", src[:half], seed=4)
    if not quick:
        pretrain(f"{fewshot._fmt_classes(rest)}, all", rest, seed=5)
        pretrain(f"{fewshot._fmt_classes(src)}, {max(1, steps // 20)} steps", src, train_steps=max(1, steps // 20),
                 seed=6)
    pretrain("random labels (control)", src, noise=True, seed=7)
    pretrain("no pretraining (control)", src, train_steps=0, seed=8)
    return out


def _finetune(model, X, y, n_out, cfg, seed):
    """Fine-tune a copy of ``model`` with a new head as the few-shot section's "fine-tune" does."""
    net = fewshot._mlp(X.shape[1], cfg.hidden, n_out, cfg.device)
    T.transfer_weights(model, net)
    manual_seed(5000 + seed)
    T.replace_head(net, n_out)
    fewshot._train(net, X, y, steps=cfg.target_steps, lr=cfg.finetune_lr, batch_size=cfg.target_batch,
                   weight_decay=cfg.weight_decay, seed=seed, device=cfg.device)
    return net


def _finetune_cuts(model, X, y, Xt, yt, layers, cfg):
    """Test accuracy of fine-tuning ``model`` cut after each named layer (a new head on top;
    "input": the head alone), as the sources are fine-tuned. Returns ({cut: accuracy}, seconds)."""
    acc, t0 = {}, time.perf_counter()
    n_out = int(y.max()) + 1
    for name in ["input"] + layers:
        copy = fewshot._mlp(X.shape[1], cfg.hidden, model[-1].out_features, cfg.device)
        copy.load_state_dict(model.state_dict())
        kept = [] if name == "input" else list(copy[:int(name) + 1])
        dim = X.shape[1] if not kept else T.extract_features(nn.Sequential(*kept), X[:1]).shape[1]
        manual_seed(9000)
        net = nn.Sequential(*kept, nn.Linear(dim, n_out).to(cfg.device))
        fewshot._train(net, X, y, steps=cfg.target_steps, lr=cfg.finetune_lr, batch_size=cfg.target_batch,
                       weight_decay=cfg.weight_decay, seed=0, device=cfg.device)
        acc[name] = fewshot._accuracy(net, Xt, yt)
    return acc, time.perf_counter() - t0


def run(ctx) -> dict:
    cfg = ctx.cfg
    t = ctx.tasks()
    t0 = time.perf_counter()
    quick = bool(cfg.quick)
    shots = _shots(cfg)
    rank_shots = shots[-1:]                                # the largest of 5, 10, 20 in cfg.shots
    search_shots = [shots[0], shots[-1]] if quick and len(shots) > 2 else shots
    search_seeds = list(range(min(cfg.seeds, 1 if quick else 3)))
    # the search chooses among the recipes it is compared with (the few-shot section's, scored with
    # hindsight): BitFit and LoRA are search strategies too, but the efficient section compares those
    search_kw = dict(max_epochs=30, patience=5) if quick else dict(max_epochs=100, patience=10)
    search_kw["strategies"] = RECIPES
    timings = {}
    xT, yT, xt, yt = t["xT"], t["yT"], t["xT_test"], t["yT_test"]
    n_tgt = t["n_tgt"]

    # 1. the sources, ranked by every score and by fine-tuning
    ts = time.perf_counter()
    demo_net = ctx.source_model(0)
    ts = time.perf_counter()
    sources = _sources(ctx, t, cfg, steps=100 if quick else 400, quick=quick)
    pretrain_s = time.perf_counter() - ts
    models = {name: m for name, (m, _) in sources.items()}
    ranking = {}
    ts = time.perf_counter()
    for k in rank_shots:
        idx = ctx.labelled(0)[k]
        X, y = xT[idx], yT[idx]
        r = T.rank_sources(models, X, y, score=list(SCORES))
        layers = T.rank_layers(demo_net, X, y, score=list(FEATURE_SCORES))
        # the cost of each score alone: all sources, and (features-based) all layers of the demo net
        cost = {}
        for s in SCORES:
            cost[s] = T.rank_sources(models, X, y, score=s).seconds
            if s in FEATURE_SCORES:
                cost[s] += T.rank_layers(demo_net, X, y, score=s).seconds
        tf = time.perf_counter()
        finetuned = {name: fewshot._accuracy(_finetune(m, X, y, n_tgt, cfg, seed=0), xt, yt)
                     for name, m in models.items()}
        finetune_s = time.perf_counter() - tf
        names = [row["name"] for row in layers.rows if row["name"] != "input"]
        cuts, cuts_s = _finetune_cuts(demo_net, X, y, xt, yt, names, cfg)
        acc = [finetuned[n] for n in models]
        tau = {s: weighted_tau([r.values(s)[n] for n in models], acc) for s in SCORES}
        layer_tau = {s: weighted_tau([layers.values(s)[n] for n in cuts], [cuts[n] for n in cuts])
                     for s in FEATURE_SCORES}
        all_s = finetune_s + cuts_s
        ranking[str(k)] = {"scores": {n: {s: r.values(s)[n] for s in SCORES} for n in models},
                           "finetuned": finetuned, "tau": tau, "score_s": cost, "finetune_s": finetune_s,
                           "cuts_finetune_s": cuts_s, "speedup": {s: all_s / cost[s] for s in SCORES},
                           "layers": layers.to_dict(), "cuts": cuts, "layer_tau": layer_tau,
                           "n": int(len(y)), "dim": r.rows[0]["dim"]}

    timings["ranking_s"] = time.perf_counter() - ts

    # 3. the search against the best recipe chosen with hindsight
    search = {}
    timings["search_s"] = timings["hindsight_s"] = 0.0
    for k in search_shots:
        per = {"search": [], "winner": [], "seconds": [], "recipes": {m: [] for m in RECIPES}}
        for seed in search_seeds:
            idx = ctx.labelled(seed)[k]
            source = ctx.source_model(seed)
            tsr = time.perf_counter()
            model, report = T.search(source, xT[idx], yT[idx], seed=seed, **search_kw)
            per["seconds"].append(time.perf_counter() - tsr)
            timings["search_s"] += per["seconds"][-1]
            per["search"].append(fewshot._accuracy(model, xt, yt))
            per["winner"].append(report.winner)
            th = time.perf_counter()
            for m in RECIPES:
                per["recipes"][m].append(fewshot._accuracy(ctx.train_target(m, seed, k), xt, yt))
            timings["hindsight_s"] += time.perf_counter() - th
        means = {m: float(np.mean(v)) for m, v in per["recipes"].items()}
        best = max(means, key=means.get)
        per.update({"search_mean": float(np.mean(per["search"])), "recipe_means": means, "hindsight": best,
                    "hindsight_mean": means[best]})
        per["gap_points"] = 100 * (per["search_mean"] - means[best])
        per["target_met"] = per["gap_points"] >= -TARGET_GAP
        search[str(k)] = per

    return {"sources": {n: d for n, (_, d) in sources.items()}, "rank_shots": rank_shots, "ranking": ranking,
            "search": search, "search_seeds": search_seeds,
            "search_settings": search_kw, "pretrain_s": pretrain_s, "seconds": time.perf_counter() - t0,
            "timings": timings, "data_s": t["seconds"],
            "scores": list(SCORES), "targets": {"gap_points": TARGET_GAP, "speedup": TARGET_SPEEDUP},
            "n_target_classes": int(n_tgt), "target_steps": cfg.target_steps}


# ----------------------------------------------------------------- render ----

def _pct(v):
    return f"{100 * v:.1f}"


def _scatter(results, out_dir):
    k = str(results["rank_shots"][-1])
    r = results["ranking"][k]
    fig = new_figure(width=13.0, height=3.0)
    if fig is None:
        return save_figure(None, out_dir, "choose_scores.png", "score against fine-tuned accuracy")
    names = list(r["finetuned"])
    acc = np.array([r["finetuned"][n] for n in names]) * 100
    for i, s in enumerate(results["scores"]):
        ax = fig.add_subplot(1, len(results["scores"]), i + 1)
        x = np.array([r["scores"][n][s] for n in names])
        ax.scatter(x, acc, s=18)
        for xi, yi, n in zip(x, acc, names):
            ax.annotate(n.split(",")[0].split(" (")[0][:12], (xi, yi), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")
        ax.set_title(f"{s}: weighted tau {r['tau'][s]:+.2f}", fontsize=9)
        ax.set_xlabel(s, fontsize=8)
        if i == 0:
            ax.set_ylabel("fine-tuned test accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    return save_figure(fig, out_dir, "choose_scores.png",
                       f"each score against the fine-tuned accuracy of every source, k = {k}")


def render(results, out_dir) -> str:
    parts = []
    ks = results["rank_shots"]
    kmax = str(ks[-1])
    r = results["ranking"][kmax]
    names = sorted(r["finetuned"], key=lambda n: -r["finetuned"][n])
    parts.append(
        f"**Which source?** {len(names)} candidate networks (the same MLP shape), pretrained on MNIST-1D source "
        "tasks disjoint from the target's digits, are scored on the k labelled examples per target class "
        "(LogME, H-score and TransRate on the features the head reads, LEEP and NCE on the source head's "
        "predictions), and each is fine-tuned once on the same examples "
        f"({results['target_steps']} SGD steps, as the few-shot section's fine-tuning). Sources, best fine-tuned "
        f"first, at k = {kmax} ({r['n']} examples, {r['dim']} features; rank by each score in parentheses):")
    ranks = {s: {n: i + 1 for i, n in enumerate(sorted(names, key=lambda n: -r["scores"][n][s]))}
             for s in results["scores"]}
    rows = [[n, results["sources"][n], _pct(r["finetuned"][n])]
            + [f"{r['scores'][n][s]:.3f} ({ranks[s][n]})" for s in results["scores"]] for n in names]
    parts.append(markdown_table(["source", "pretrained on", "fine-tuned acc. (%)"] + list(results["scores"]), rows))
    tau_rows = [[s] + [f"{results['ranking'][str(k)]['tau'][s]:+.2f}" for k in ks] for s in results["scores"]]
    parts.append("Weighted Kendall tau between each score and the fine-tuned accuracy (1 = the same order, "
                 "0 = unrelated, -1 = reversed; hyperbolic weights, as `scipy.stats.weightedtau`):")
    parts.append(markdown_table(["score"] + [f"k = {k}" for k in ks], tau_rows))
    parts.append(_scatter(results, out_dir))
    # honest notes on the scores
    notes = []
    for k in ks:
        rk = results["ranking"][str(k)]
        for s in results["scores"]:
            if rk["tau"][s] < 0.3:
                notes.append(f"{s} ranks badly at k = {k} (tau {rk['tau'][s]:+.2f})")
        controls = [n for n in rk["finetuned"] if "control" in n]
        for s in results["scores"]:
            top = max(rk["scores"], key=lambda n: rk["scores"][n][s])
            if top in controls:
                notes.append(f"{s} puts a control ({top}) first at k = {k}")
        if rk["n"] <= rk["dim"]:
            hs = [rk["scores"][n]["hscore"] for n in rk["scores"]]
            if max(hs) - min(hs) < 1e-6 * max(1.0, abs(max(hs))):
                notes.append(f"H-score is the same for every source at k = {k} "
                             f"({rk['n']} examples <= {rk['dim']} features: it saturates at C - 1)")
    if notes:
        parts.append("Where the scores fail: " + "; ".join(notes) + ".")
    else:
        parts.append("Every score ranks the sources with a weighted tau of at least 0.3 at every k here.")
    sp = []
    for k in ks:
        rk = results["ranking"][str(k)]
        base = rk["finetune_s"] + rk["cuts_finetune_s"]
        for sc in results["scores"]:
            met = rk["speedup"][sc] >= results["targets"]["speedup"]
            sp.append([f"k = {k}", sc, "sources + layers" if sc in FEATURE_SCORES else "sources",
                       f"{1000 * rk['score_s'][sc]:.0f} ms", f"{base:.2f} s", f"{rk['speedup'][sc]:.0f}x",
                       "yes" if met else "**no**"])
    nl = len(r["layers"]["rows"])
    parts.append(f"Cost: each score alone, on all {len(names)} sources and (for the feature scores) the {nl} cuts of "
                 f"the demo network, against fine-tuning each of the {len(names)} sources and the {nl} cuts once "
                 f"(target: at least {results['targets']['speedup']:.0f}x faster). Timings on this machine (2 shared "
                 "cores: noisy); fine-tuning is cheap here (a 40-128-128 MLP, "
                 f"{results['target_steps']} steps on {r['n']} examples), so the ratio is far from the thousands "
                 "reported for large networks.")
    parts.append(markdown_table(["labelled set", "score", "scored", "scoring", "fine-tuning", "speed-up",
                                 "target met"], sp))
    slow = sorted({sc for k in ks for sc in results["scores"]
                   if results["ranking"][str(k)]["speedup"][sc] < results["targets"]["speedup"]})
    if slow:
        worst = {sc: min(results["ranking"][str(k)]["speedup"][sc] for k in ks) for sc in slow}
        parts.append("The speed-up target is missed by " + ", ".join(
            f"{sc} ({worst[sc]:.0f}x, {results['targets']['speedup'] / worst[sc]:.1f}x short)" for sc in slow)
            + ": the eigendecompositions behind them, on 128-wide features, cost about as much as a few dozen "
              "SGD steps of this small network.")

    # layers
    lay = r["layers"]
    cuts = r["cuts"]
    lrows = [[row["name"], row["module"], row["dim"]] + [f"{row['values'][s]:.3f}" for s in lay["scores"]]
             + [_pct(cuts[row["name"]])] for row in lay["rows"]]
    best_cut = max(cuts, key=cuts.get)
    parts.append(f"**Which layer?** `rank_layers` on the demo network (k = {kmax}): each layer's output scored, "
                 "beside the test accuracy of fine-tuning the network cut there (a new head on top; `input`: "
                 f"the head alone). LogME's choice: `{lay['order'][0]}`; the best cut: `{best_cut}` "
                 f"({_pct(cuts[best_cut])}%); weighted tau over the cuts: "
                 + ", ".join(f"{s} {r['layer_tau'][s]:+.2f}" for s in lay["scores"]) + ".")
    parts.append(markdown_table(["layer", "module", "dim"] + lay["scores"] + ["fine-tuned acc. (%)"], lrows))

    # search
    srows = []
    for k, per in results["search"].items():
        w = ", ".join(per["winner"])
        srows.append([k, f"{_pct(per['search_mean'])} ({w})"]
                     + [_pct(per["recipe_means"][m]) for m in RECIPES]
                     + [per["hindsight"], f"{per['gap_points']:+.1f}", "yes" if per["target_met"] else "**no**"])
    nseeds = len(results["search_seeds"])
    parts.append(f"**Which recipe?** `search` holds out part of the labels (k-fold when they are few), trains "
                 "each recipe over a small learning-rate grid with early stopping on the validation loss, and "
                 "retrains the winner on all the labels; beside it, each recipe as the few-shot section trains it, "
                 "and the best of them chosen with hindsight on the test set. Test accuracy (%), mean over "
                 f"{nseeds} seed(s) (the search's winner per seed in parentheses); target: within "
                 f"{results['targets']['gap_points']} points of the hindsight-best.")
    parts.append(markdown_table(["labels/class", "search (winners)"] + list(RECIPES)
                                + ["hindsight best", "gap (points)", "target met"], srows))
    missed = [f"k = {k} by {-per['gap_points'] - results['targets']['gap_points']:.1f} points"
              for k, per in results["search"].items() if not per["target_met"]]
    if missed:
        parts.append("The search misses the target at " + ", ".join(missed) + ". Early stopping on the "
                     "validation loss stops these runs after a few epochs (the loss of a few-shot model rises "
                     "as it grows confident, while its accuracy keeps improving), so the winner is retrained "
                     "for far fewer steps than the hand-set recipes, whose settings were themselves chosen on "
                     "this test set.")
    else:
        parts.append("The search is within the target at every k.")
    tm = results["timings"]
    parts.append(f"*(section {results['seconds']:.1f} s without data generation: pretraining the extra sources "
                 f"{results['pretrain_s']:.1f} s, scoring and fine-tuning them {tm['ranking_s']:.1f} s, the search "
                 f"{tm['search_s']:.1f} s, the hindsight recipes {tm['hindsight_s']:.1f} s)*")
    return "\n\n".join(parts)


SECTION = Section("choose", "Choosing what and how to transfer: scores, layers and a strategy search", run, render)
