"""Supervised -> unsupervised, across a domain shift: labelled source data, unlabelled target data.

The story. A classifier of the ten MNIST-1D digits was trained with labels on one
"sensor" (the source domain). A second sensor records the same digits differently:
its signals are wider and move less (``tl.datasets.mnist1d_domains``, the "mild"
target: another padding and translation in MNIST-1D's generator). Nobody labelled
the new sensor's recordings; we only have a pile of them. How well does the source
classifier read them, and can the unlabelled pile make it better?

``tl.transfer.adapt`` trains the classifier on the labelled source while pulling the
features of the unlabelled target toward the source's, here with DAN's multi-kernel
MMD (``method="mmd"``; "coral", "dann" and "adabn" are the others). The target's labels
are used for one thing only: scoring (``val=``), never for training. The upper bound
is a model trained on the target's own labels, which this setting does not have.

Domain adaptation is no sure win: on MNIST-1D's shifts it closes only part of the gap
(``tinytl demo --only shift`` measures every method over seeds), and a method can hurt.
Always compare with the source-only model.

Run: python examples/domain_adaptation.py [--quick]
"""
import sys

import tinytl as tl
from tinytl import transfer

from _common import mlp, parse


def main(argv=None):
    args = parse(argv, __doc__)
    n_source, n_target, epochs = (2000, 2000, 4) if args.quick else (6000, 4000, 8)
    domains = {"mild": tl.datasets.MNIST1D_DOMAINS["mild"]}
    data = tl.datasets.mnist1d_domains(num_samples=n_source, target_samples=n_target, domains=domains)
    src, tgt = data["source"], data["targets"]["mild"]
    print(f"source: {len(src['x'])} labelled signals; target ({tgt['params']}): {len(tgt['x'])} unlabelled signals")
    val = (tgt["x_test"], tgt["y_test"])                 # for scoring only
    common = dict(epochs=epochs, lr=0.05, batch_size=64, seed=args.seed, val=val)

    tl.manual_seed(args.seed)
    _, source_only = transfer.adapt(mlp(40, 128, 128, 10), (src["x"], src["y"]), tgt["x"], "source_only", **common)
    tl.manual_seed(args.seed)
    _, adapted = transfer.adapt(mlp(40, 128, 128, 10), (src["x"], src["y"]), tgt["x"], "mmd", trade_off=5.0,
                                **common)
    print(adapted)
    tl.manual_seed(args.seed)
    _, upper = transfer.adapt(mlp(40, 128, 128, 10), (tgt["x"], tgt["y"]), tgt["x"], "source_only", **common)

    result = {"source_only": source_only.target_accuracy[-1], "adapted": adapted.target_accuracy[-1],
              "target_supervised": upper.target_accuracy[-1]}
    print(f"target test accuracy ({len(val[1])} signals of the new sensor):")
    print(f"  {'source only':<36}: {result['source_only']:.4f}")
    print(f"  {'with adaptation (MMD, no labels)':<36}: {result['adapted']:.4f}")
    print(f"  {'trained on target labels (bound)':<36}: {result['target_supervised']:.4f}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
