"""Unsupervised -> supervised: an autoencoder pretrained without labels starts a classifier.

The story. Unlabelled signals are cheap, labels are not: we have thousands
of MNIST-1D signals but labels for only ten of each digit. We first train an
autoencoder (40 -> 256 -> 16 -> 256 -> 40) to reconstruct every unlabelled
training signal, then build a classifier (40 -> 256 -> 16 -> 10) whose first
two layers have the encoder's names and shapes. ``transfer_weights`` copies
the encoder, reports the decoder's first layer as *skipped (shape)* (it sits
where the classifier's head is, under the same name 4.*, with another shape)
and the rest of the decoder as *unexpected*. Then we fine-tune on the few
labels and compare with the same classifier trained from scratch.

Honest expectations. On MNIST-1D this kind of transfer helps little: a
reconstruction objective spends the code on *where* the bumps of a signal
are, while the class depends on their shape wherever they are. The example
prints what happens rather than what we hope; the sup_to_sup example shows
the large gain a related *supervised* source gives on the same data.

Run: python examples/unsup_to_sup.py [--quick]
"""
import sys

import tinytl as tl
from tinytl import nn, transfer

from _common import accuracy, few, load_mnist1d, mlp, parse, reconstruction_mse, report, train


def main(argv=None):
    args = parse(argv, __doc__)
    n, pre_epochs, per_class, epochs = (2000, 10, 10, 40) if args.quick else (8000, 20, 10, 100)
    x, y, x_test, y_test = load_mnist1d(n, args.seed)

    # 1. pretraining without labels: reconstruct every training signal
    tl.manual_seed(args.seed)
    autoencoder = mlp(40, 256, 16, 256, 40)
    train(autoencoder, x, x, epochs=pre_epochs, lr=0.01, batch_size=64, loss_fn=nn.MSELoss(), seed=args.seed)
    print(f"pretraining: test reconstruction MSE {reconstruction_mse(autoencoder, x_test):.4f} "
          f"(signal variance {x_test.var():.4f})")

    # the target task: 10 classes, `per_class` labels each
    idx = few(y, range(10), per_class, seed=args.seed + 1)
    X, Y = x[idx], y[idx]

    # 2. from scratch
    tl.manual_seed(args.seed + 2)
    scratch = train(mlp(40, 256, 16, 10), X, Y, epochs=epochs, lr=0.01, seed=args.seed)

    # 3. with transfer: the encoder's weights, a fresh head, then fine-tuning
    tl.manual_seed(args.seed + 2)
    model = mlp(40, 256, 16, 10)
    print(transfer.transfer_weights(autoencoder, model))
    train(model, X, Y, epochs=epochs, lr=0.01, seed=args.seed)

    a_scratch, a_transfer = accuracy(scratch, x_test, y_test), accuracy(model, x_test, y_test)
    report(f"target task (digits 0-9, {per_class} labels per class): test accuracy",
           a_scratch, ("with transfer", a_transfer))
    return {"scratch": a_scratch, "transfer": a_transfer}


if __name__ == "__main__":
    main(sys.argv[1:])
