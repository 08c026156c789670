"""Supervised -> supervised: a classifier of digits 0-4 gives its features to a classifier of 5-9.

The story. We have plenty of labels for digits 0-4 and only a handful for
5-9 (MNIST-1D: 1-D signals of 40 points, each a digit's outline shifted,
scaled, sheared and noised). The hidden layers of a network that learned to
tell 0-4 apart detect strokes and bumps that 5-9 are made of too, so we:

1. pretrain an MLP on digits 0-4 (all their labels);
2. copy its weights into a new model (``transfer_weights``; the report says
   what was copied) and give it a fresh head for the new classes
   (``replace_head``: the old head's outputs meant 0-4, they mean nothing now);
3. fine-tune everything on the few labelled 5-9 examples, the hidden layers
   with smaller learning rates (``discriminative_lr``), and compare with the
   same network trained from scratch on the same examples.

Run: python examples/sup_to_sup.py [--quick]
"""
import sys

import tinytl as tl
from tinytl import transfer

from _common import accuracy, few, load_mnist1d, mlp, parse, report, train


def main(argv=None):
    args = parse(argv, __doc__)
    n, pre_epochs, per_class, epochs = (2000, 10, 20, 40) if args.quick else (4000, 30, 20, 100)
    x, y, x_test, y_test = load_mnist1d(n, args.seed)

    # 1. the source task: digits 0-4, every label
    src, src_test = y < 5, y_test < 5
    tl.manual_seed(args.seed)
    pretrained = mlp(40, 256, 128, 5)
    train(pretrained, x[src], y[src], epochs=pre_epochs, lr=0.05, batch_size=64, seed=args.seed)
    print(f"source task (digits 0-4): test accuracy {accuracy(pretrained, x_test[src_test], y_test[src_test]):.4f}")

    # the target task: digits 5-9 (relabelled 0-4), only `per_class` labels each
    idx = few(y, range(5, 10), per_class, seed=args.seed + 1)
    X, Y = x[idx], y[idx] - 5
    tgt_test = y_test >= 5
    X_test, Y_test = x_test[tgt_test], y_test[tgt_test] - 5

    # 2. from scratch: the same network, a random start
    tl.manual_seed(args.seed + 1)
    scratch = mlp(40, 256, 128, 5)
    train(scratch, X, Y, epochs=epochs, lr=0.02, seed=args.seed)

    # 3. with transfer: the pretrained weights, then a fresh head
    tl.manual_seed(args.seed + 1)
    model = mlp(40, 256, 128, 5)
    print(transfer.transfer_weights(pretrained, model, strict=True))
    transfer.replace_head(model, 5)
    groups = transfer.discriminative_lr(model, base_lr=0.02, decay=2.0)
    train(model, X, Y, epochs=epochs, lr=0.02, params=groups, seed=args.seed)

    a_scratch, a_transfer = accuracy(scratch, X_test, Y_test), accuracy(model, X_test, Y_test)
    report(f"target task (digits 5-9, {per_class} labels per class): test accuracy",
           a_scratch, ("with transfer", a_transfer))
    return {"scratch": a_scratch, "transfer": a_transfer}


if __name__ == "__main__":
    main(sys.argv[1:])
