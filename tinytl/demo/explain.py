"""The report's "explain" section: what fine-tuning did to the pretrained network.

On the report's own models (the pretrained source network of seed 0 and the target models
that the few-shot section scored, ``ctx.train_target``) at one k (the smallest of the shots
that is at least 10, else the largest), for fine-tune, LP-FT and L2-SP:

1. **Weight drift** per layer against the pretrained weights (``tl.explain.weight_drift``):
   ||W_ft - W_pre|| / ||W_pre||; the head is new (reported as replaced).
2. **CKA per layer** against the pretrained network (``tl.explain.layer_similarity``, linear
   CKA on target test inputs): is each hidden layer's representation still the pretrained one?
3. **Linear probes** on the target task after each layer of the pretrained and of the
   fine-tuned network (``tl.explain.probe_layers``, trained on the same k labels per class).
4. **Integrated gradients** of one test example per target class, from the pretrained
   network and from the fine-tuned one, drawn over the 40-sample input signal.

The pretrained network has no head for the target classes, so its attributions explain its
own (source-head) prediction for the input: what it looked at before the transfer. The
fine-tuned network's attributions explain the true target class. Whether LP-FT and L2-SP
move the lower layers less than plain fine-tuning is read off the measured numbers, not
assumed.
"""
from __future__ import annotations

import time

import numpy as np

from .. import explain as E
from ..explain import plots
from .section import Section, markdown_table, save_figure

METHODS = {"finetune": "fine-tune", "lp_ft": "LP-FT", "l2sp": "L2-SP"}
HIDDEN = ["0", "1", "2", "3"]        # Linear, ReLU, Linear, ReLU: the two hidden layers, before and after the ReLU
SEED = 0


def _k(shots) -> int:
    big = [k for k in sorted(shots) if k >= 10]
    return big[0] if big else max(shots)


def _scores(model, X):
    from .. import transfer as T
    return T.extract_features(model, X, batch_size=1024)


def _cos(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def run(ctx) -> dict:
    t0 = time.perf_counter()
    cfg = ctx.cfg
    t = ctx.tasks()
    k = _k(cfg.shots)
    n_eval = 500 if cfg.quick else 1000
    X, Y = t["xT_test"][:n_eval], t["yT_test"][:n_eval]
    src = ctx.source_model(SEED)
    models = {m: ctx.train_target(m, SEED, k) for m in METHODS}
    idx = ctx.labelled(SEED)[k]
    t_train = time.perf_counter() - t0

    per = {}
    backbone = lambda model: {k: v for k, v in model.state_dict().items() if not k.startswith("4.")}  # noqa: E731
    for m, model in models.items():
        # the head (4.*) is new: the same shape as the source head here (5 classes each), so
        # weight_drift could not tell; it is left out rather than shown as a huge drift
        drift = E.weight_drift(backbone(src), backbone(model))
        sim = E.layer_similarity(src, model, X)
        layers = drift.by_layer()
        per[m] = {
            "accuracy": float((_scores(model, t["xT_test"]).argmax(axis=1) == t["yT_test"]).mean()),
            "drift": {name: v["relative"] for name, v in layers.items()},
            "cka": sim.diagonal(),
            "cka_matrix": sim.to_dict(),
        }

    # 3. where the target task's information sits, before and after fine-tuning
    probe_kw = dict(layers=["1", "3", "4"], epochs=60 if cfg.quick else 100, lr=0.05, batch_size=64, seed=SEED)
    probes = {"pretrained": E.probe_layers(src, t["xT"][idx], t["yT"][idx], X, Y, **probe_kw).to_dict(),
              "fine-tuned": E.probe_layers(models["finetune"], t["xT"][idx], t["yT"][idx], X, Y, **probe_kw).to_dict()}

    # 4. one test example per target class, explained by both networks
    rows = [int(np.flatnonzero(t["yT_test"] == c)[0]) for c in range(t["n_tgt"])]   # the first of each class
    xs, ys = t["xT_test"][rows], t["yT_test"][rows]
    ft = models["finetune"]
    src_pred = _scores(src, xs).argmax(axis=1)
    steps = 128 if cfg.quick else 256        # ReLU kinks: the quadrature error falls as 1/steps
    a_src, d_src = E.integrated_gradients(src, xs, src_pred, steps=steps, return_delta=True)
    a_ft, d_ft = E.integrated_gradients(ft, xs, ys, steps=steps, return_delta=True)
    gap_src = _gap(src, xs, src_pred)
    gap_ft = _gap(ft, xs, ys)
    attributions = {
        "rows": rows, "inputs": xs.tolist(), "classes": [int(c) for c in cfg.target_classes],
        "steps": steps, "method": "gausslegendre", "baseline": "zeros",
        "pretrained": {"target": [int(c) for c in src_pred], "source_classes": [int(c) for c in cfg.source_classes],
                       "attributions": a_src.tolist(), "delta": d_src.tolist(),
                       "relative_delta": (np.abs(d_src) / np.maximum(np.abs(gap_src), 1e-12)).tolist()},
        "fine-tuned": {"target": [int(c) for c in ys], "predicted": [int(c) for c in _scores(ft, xs).argmax(axis=1)],
                       "attributions": a_ft.tolist(), "delta": d_ft.tolist(),
                       "relative_delta": (np.abs(d_ft) / np.maximum(np.abs(gap_ft), 1e-12)).tolist()},
        "cosine": [_cos(a, b) for a, b in zip(a_src, a_ft)],
    }
    return {"seed": SEED, "k": int(k), "n_eval": int(len(X)), "methods": dict(METHODS), "per_method": per,
            "verdict": _verdict(per), "probe": probes, "attributions": attributions,
            "seconds": {"models": t_train, "total": time.perf_counter() - t0}}


def _gap(model, xs, target) -> np.ndarray:
    """f_t(x) - f_t(0): what the integrated gradients should sum to."""
    s = _scores(model, xs)
    s0 = _scores(model, np.zeros_like(xs))
    r = np.arange(len(xs))
    return (s[r, target] - s0[r, target]).astype(np.float64)


def _verdict(per: dict) -> dict:
    """For LP-FT and L2-SP against fine-tuning: lower drift and higher CKA in the first hidden
    layer ("0" weights, "1" activations) and in the second ("2", "3")? Read off the numbers."""
    base = per["finetune"]
    out = {}
    for m in ("lp_ft", "l2sp"):
        r = per[m]
        out[m] = {
            "first_layer_drift_less": r["drift"]["0"] < base["drift"]["0"],
            "first_layer_cka_higher": r["cka"]["1"] > base["cka"]["1"],
            "second_layer_drift_less": r["drift"]["2"] < base["drift"]["2"],
            "second_layer_cka_higher": r["cka"]["3"] > base["cka"]["3"],
            "drift_ratio_first": r["drift"]["0"] / base["drift"]["0"] if base["drift"]["0"] else None,
        }
    return out


def _sentence(label, v) -> str:
    moved_less = v["first_layer_drift_less"] and v["first_layer_cka_higher"]
    moved_more = not v["first_layer_drift_less"] and not v["first_layer_cka_higher"]
    ratio = v["drift_ratio_first"]
    how = f" ({ratio:.2f}x fine-tuning's drift of layer 0)" if ratio is not None else ""
    if moved_less:
        first = f"{label} moves the first layer **less** than plain fine-tuning{how}, and its representation stays closer to the pretrained one (higher CKA)"
    elif moved_more:
        first = f"{label} does **not** move the first layer less: it drifts as far or farther{how}, and its CKA to the pretrained layer is not higher"
    else:
        first = (f"{label} is mixed on the first layer: its weights drift {'less' if v['first_layer_drift_less'] else 'more'}{how}, "
                 f"but its CKA to the pretrained representation is {'higher' if v['first_layer_cka_higher'] else 'not higher'}")
    second = ("less" if v["second_layer_drift_less"] else "more") + " drift and " + \
             ("higher" if v["second_layer_cka_higher"] else "lower") + " CKA in the second hidden layer"
    return f"{first}; {second}."


def render(results: dict, out_dir) -> str:
    per, methods = results["per_method"], results["methods"]
    k = results["k"]
    intro = (f"What fine-tuning did to the pretrained network (seed {results['seed']}, {k} labels per target "
             f"class): the weight drift of each layer, ||W - W_pretrained|| / ||W_pretrained||, and the linear "
             f"CKA of each hidden layer's activations with the pretrained network's, on {results['n_eval']} "
             "target test inputs (1 = the same representation up to a rotation and a scale). Layers 0 and 2 are "
             "the Linear layers (1 and 3 their ReLU outputs); layer 4, the head, is new (left out of the drift).")
    rows = []
    for m, label in methods.items():
        r = per[m]
        rows.append([label, f"{100 * r['accuracy']:.1f}%", f"{r['drift']['0']:.3f}", f"{r['drift']['2']:.3f}"]
                    + [f"{r['cka'][name]:.3f}" for name in HIDDEN])
    table = markdown_table(["method", "target acc.", "drift 0", "drift 2"]
                           + [f"CKA {name}" for name in HIDDEN], rows)
    verdict = " ".join(_sentence(methods[m], v) for m, v in results["verdict"].items())
    drift_fig = save_figure(plots.drift_bars({methods[m]: ({n: per[m]["drift"][n] for n in ("0", "2")} | {"4": None})
                                              for m in methods}), out_dir,
                            "explain_drift.png", "weight drift per layer")
    sims = {methods[m]: _Sim(per[m]["cka_matrix"]) for m in methods}
    cka_fig = save_figure(plots.cka_heatmaps(sims, "CKA vs pretrained"), out_dir, "explain_cka.png",
                          "CKA between the pretrained and the fine-tuned layers")
    pr = results["probe"]
    probe_table = markdown_table(["features after"] + pr["pretrained"]["layers"],
                                 [[name] + [f"{100 * a:.1f}%" for a in p["accuracy"]] for name, p in pr.items()])
    probe_text = (f"Linear probes trained on the same {k} labels per class, tested on the {results['n_eval']} "
                  "inputs: where the target task's information sits in each network (\"input\": the raw signal; "
                  "4: the logits, the source head's 5 for the pretrained network).")
    att = results["attributions"]
    src_cls, tgt_cls = att["pretrained"]["source_classes"], att["classes"]
    titles = [f"digit {tgt_cls[c]} (pretrained says {src_cls[t]})" for c, t in enumerate(att["pretrained"]["target"])]
    att_fig = save_figure(plots.attribution_panels(np.array(att["inputs"]), {
        "pretrained": np.array(att["pretrained"]["attributions"]),
        "fine-tuned": np.array(att["fine-tuned"]["attributions"])}, titles), out_dir, "explain_attributions.png",
        "integrated gradients of one example per class")
    cos = att["cosine"]
    rel = att["pretrained"]["relative_delta"] + att["fine-tuned"]["relative_delta"]
    att_text = (f"Integrated gradients ({att['steps']} Gauss-Legendre steps, zero baseline) of one test example "
                "per target class. The pretrained network has no head for these classes, so its row explains its "
                "own source-head prediction (what it looked at before the transfer); the fine-tuned row explains "
                f"the true class. Cosine between the two attributions per class: "
                + ", ".join(f"{tgt_cls[c]}: {v:.2f}" for c, v in enumerate(cos))
                + f" (mean {np.mean(cos):.2f}). Completeness (the attributions sum to f(x) - f(0)) holds to a relative "
                f"gap of {np.median(rel):.1e} (median; at most {max(rel):.1e}): a ReLU network's gradient is "
                "piecewise constant along the path, so any quadrature errs at the kinks, by O(1/steps).")
    return "\n\n".join([intro, table, verdict, drift_fig, cka_fig, probe_text, probe_table, att_text, att_fig])


class _Sim:
    """A LayerSimilarity's dict, back in the shape plots.cka_heatmaps reads."""

    def __init__(self, d):
        self.matrix, self.layers_a, self.layers_b = np.array(d["matrix"]), d["layers_a"], d["layers_b"]


SECTION = Section("explain", "Explaining the transfer: what changed, what was reused, what the model looks at",
                  run, render)
