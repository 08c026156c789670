"""Unsupervised -> unsupervised: an autoencoder of digits 0-4 starts one for digits 5-9.

The story. An autoencoder (40 -> 128 -> 32 -> 128 -> 40) learned to compress
MNIST-1D signals of digits 0-4, from plenty of unlabelled examples. Digits
5-9 are new shapes, but drawn the same way (outlines shifted, scaled,
sheared and noised), so the first layers' detectors and the decoder's way of
redrawing a signal still apply. We have only a hundred signals of 5-9.

The architecture is the same, so the transfer is complete: ``strict=True``
makes sure of it (any name or shape that did not match would raise one error
listing every problem, and nothing would be copied). Then we train on the
few 5-9 signals and compare the reconstruction error on held-out 5-9 signals
with the same autoencoder trained from scratch. The pretrained model
starts where the scratch one would need many more examples to get.

We also report the pretrained autoencoder on 5-9 *before* any training on
them (zero-shot): how much of the skill carries over as is.

Run: python examples/unsup_to_unsup.py [--quick]
"""
import sys

import numpy as np

import tinytl as tl
from tinytl import nn, transfer

from _common import load_mnist1d, mlp, parse, reconstruction_mse, report, train


def autoencoder():
    return mlp(40, 128, 32, 128, 40)


def main(argv=None):
    args = parse(argv, __doc__)
    n, pre_epochs, n_target, epochs = (2000, 20, 100, 40) if args.quick else (4000, 30, 100, 100)
    x, y, x_test, y_test = load_mnist1d(n, args.seed)
    mse = nn.MSELoss()

    # 1. the source domain: digits 0-4, no labels used
    tl.manual_seed(args.seed)
    pretrained = autoencoder()
    train(pretrained, x[y < 5], x[y < 5], epochs=pre_epochs, lr=0.01, batch_size=64, loss_fn=mse, seed=args.seed)
    print(f"source domain (digits 0-4): test reconstruction MSE {reconstruction_mse(pretrained, x_test[y_test < 5]):.4f}")

    # the target domain: `n_target` signals of digits 5-9
    rng = np.random.default_rng(args.seed + 1)
    X = x[rng.choice(np.flatnonzero(y >= 5), n_target, replace=False)]
    X_test = x_test[y_test >= 5]
    zero_shot = reconstruction_mse(pretrained, X_test)

    # 2. from scratch
    tl.manual_seed(args.seed + 2)
    scratch = train(autoencoder(), X, X, epochs=epochs, lr=0.02, loss_fn=mse, seed=args.seed)

    # 3. with transfer: every weight copied (strict), then trained on the few target signals
    tl.manual_seed(args.seed + 2)
    model = autoencoder()
    print(transfer.transfer_weights(pretrained, model, strict=True))
    train(model, X, X, epochs=epochs, lr=0.02, loss_fn=mse, seed=args.seed)

    m_scratch, m_transfer = reconstruction_mse(scratch, X_test), reconstruction_mse(model, X_test)
    report(f"target domain (digits 5-9, {n_target} examples): test reconstruction MSE (lower is better)",
           m_scratch, ("with transfer", m_transfer), ("zero-shot (no target training)", zero_shot))
    return {"scratch": m_scratch, "transfer": m_transfer, "zero_shot": zero_shot}


if __name__ == "__main__":
    main(sys.argv[1:])
