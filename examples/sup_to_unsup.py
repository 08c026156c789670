"""Supervised -> unsupervised: a classifier's hidden layers start an autoencoder.

The story. A classifier of digits 0-4 was trained with labels. Now we want
an autoencoder (40 -> 128 -> 32 -> 128 -> 40) that compresses signals of
digits 5-9, from only a few hundred unlabelled examples, and we measure its
reconstruction error (MSE) on held-out 5-9 signals.

The classifier (40 -> 128 -> 32 -> 5) has the same first two layers as the
autoencoder's encoder, under the same names (0.*, 2.*), so
``transfer_weights`` copies them; its head (5 x 32) does not fit the
decoder's first layer (128 x 32): the report lists it as *skipped (shape)*
instead of failing, and the decoder's last layer as *missing* (it starts
from its random init). Printing the report is how you catch a transfer that
silently copied less than you thought.

Which layers to carry over? The first layer of a classifier learns generic
local detectors; the deeper ones keep only what separates the classes and
throw away what a reconstruction needs. We compare both: the whole encoder
(layers 0 and 2) and the first layer only (a ``rename`` function that maps
the other names to None, i.e. drops them).

Run: python examples/sup_to_unsup.py [--quick]
"""
import sys

import numpy as np

import tinytl as tl
from tinytl import nn, transfer

from _common import accuracy, load_mnist1d, mlp, parse, reconstruction_mse, report, train


def autoencoder():
    return mlp(40, 128, 32, 128, 40)   # a ReLU after every layer but the last, 32 = the code


def main(argv=None):
    args = parse(argv, __doc__)
    n, pre_epochs, n_target, epochs = (2000, 10, 100, 40) if args.quick else (4000, 30, 100, 100)
    x, y, x_test, y_test = load_mnist1d(n, args.seed)

    # 1. the source task: classify digits 0-4
    src = y < 5
    tl.manual_seed(args.seed)
    classifier = mlp(40, 128, 32, 5)
    train(classifier, x[src], y[src], epochs=pre_epochs, lr=0.05, batch_size=64, seed=args.seed)
    print(f"source task (digits 0-4): test accuracy "
          f"{accuracy(classifier, x_test[y_test < 5], y_test[y_test < 5]):.4f}")

    # the target task: reconstruct digits 5-9 from `n_target` unlabelled examples
    rng = np.random.default_rng(args.seed + 1)
    X = x[rng.choice(np.flatnonzero(y >= 5), n_target, replace=False)]
    X_test = x_test[y_test >= 5]
    mse = nn.MSELoss()

    def fit(model):
        return train(model, X, X, epochs=epochs, lr=0.02, loss_fn=mse, seed=args.seed)

    tl.manual_seed(args.seed + 2)
    scratch = fit(autoencoder())

    tl.manual_seed(args.seed + 2)
    whole = autoencoder()
    print(transfer.transfer_weights(classifier, whole))
    fit(whole)

    tl.manual_seed(args.seed + 2)
    first = autoencoder()
    rep = transfer.transfer_weights(classifier, first, rename=lambda name: name if name.startswith("0.") else None)
    print(f"layer 0 only: copied {rep.copied}, dropped {rep.dropped}")
    fit(first)

    m_scratch, m_whole, m_first = (reconstruction_mse(m, X_test) for m in (scratch, whole, first))
    report(f"target task (digits 5-9, {n_target} unlabelled examples): test reconstruction MSE (lower is better)",
           m_scratch, ("with transfer (layer 0)", m_first), ("with transfer (layers 0, 2)", m_whole))
    return {"scratch": m_scratch, "transfer": m_first, "transfer_whole_encoder": m_whole}


if __name__ == "__main__":
    main(sys.argv[1:])
