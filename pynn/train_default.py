"""Make the shipped network, pynn/models/default.npz, and the replay set beside it.

    python -m pynn.train_default                 # the shipped convolutional model (docs/STUDY.md)
    python -m pynn.train_default --dense --out dense.npz              # the 784-512-10 network
    python -m pynn.train_default --dense --epochs 2 --out /tmp/quick.npz     # a quick look
    python -m pynn.train_default --dense --plain --out plain.npz       # the same, undistorted

The shipped network is the convolutional one of docs/STUDY.md, made by the two ``pynn train``
commands written there (CONV_STAGES): 30 epochs on freshly distorted digits, then 6 on lightly
moved ones from its weights; it ships because it reads drawings best among the networks with
at most 0.5% MNIST test error (docs/PAD.md, ``pynn study drawn``).

``--dense`` makes the dense network that shipped before it, trained for drawings rather than for
MNIST alone: every epoch sees the 60,000 training digits freshly distorted by
pynn.augment.Augmenter (shifts, rotations, scaling, shear, elastic bending, thinner and thicker
strokes), the way different people's drawings differ; each epoch's digits are distorted on a
second thread while the one before trains. SGD with momentum, the learning rate falling along a
half cosine to zero. The test set is only looked at once, at the end, to report the error.

``--replay`` also writes the replay set pynn.adapt.teach rehearses: the first 200 training
digits of each class, as uint8.
"""
import argparse
import os
import sys
import time

import numpy as np

from . import augment, cli, datasets
from .modelfile import atomic_write, save
from .network import Network
from .optim import SGD


def train(images, labels, hidden=512, epochs=20, lr=0.05, batch_size=64, seed=0,
          augmenter=None, log=print):
    """A 784-hidden-10 ReLU network trained on freshly augmented images every epoch."""
    # one stream of random numbers for the distortions (drawn a step ahead, on their own
    # thread), another for the order of the samples
    distort_seed, order_seed = np.random.SeedSequence(seed).spawn(2)
    net = Network([784, hidden, 10], "relu", "softmax", "cross_entropy", seed=seed)
    opt = SGD(lr=lr, momentum=0.9)
    start = [time.perf_counter()]

    def report(epoch, history):        # the wait for the digits counts too
        log(f"epoch {epoch + 1}/{epochs}: lr {opt.lr:.4f}, loss on distorted digits "
            f"{history['loss'][-1]:.4f}, {time.perf_counter() - start[0]:.1f} s")
        start[0] = time.perf_counter()

    # no accuracy pass over all 60,000 every epoch (score=False): the log needs the loss only
    net.fit(images, labels.astype(np.int64), epochs=epochs, batch_size=batch_size, optimizer=opt,
            shuffle=np.random.default_rng(order_seed), schedule="cosine",
            transform=augment.Augmenter() if augmenter is None else augmenter,
            transform_rng=np.random.default_rng(distort_seed), on_epoch_end=report, score=False)
    return net


# the shipped model's two `pynn train` stages (docs/STUDY.md has the same commands); the second
# starts from the first's weights with --init
CONV_STAGES = (
    "--arch 1x28x28-c32k5-pool2-c64k5-pool2-256-10 --dropout 0.5 --augment --schedule cosine "
    "--lr 0.05 --momentum 0.9 --l2 0.0001 --batch-size 64 --epochs 30",
    "--augment mild --schedule cosine --lr 0.01 --momentum 0.9 --l2 0.0001 --batch-size 64 "
    "--epochs 6",
)


def train_conv(out, seed=0):
    """The shipped network: CONV_STAGES run as ``pynn train`` runs them, the first stage's model
    and checkpoints beside ``out``. Returns pynn train's exit status."""
    stem = os.path.splitext(out)[0]
    first = f"{stem}-stage1.npz"
    for i, stage in enumerate(CONV_STAGES):
        argv = ["train", *stage.split(), "--seed", str(seed),
                "--checkpoint", f"{stem}-stage{i + 1}.checkpoint", "--out", out if i else first]
        if i:
            argv[1:1] = ["--init", first]
        print("pynn " + " ".join(argv), flush=True)
        status = cli.main(argv)
        if status:
            return status
    return 0


def replay_arrays(images, labels, per_class=200):
    """The first ``per_class`` digits of each class, in their original order."""
    idx = np.sort(np.concatenate([np.nonzero(labels == c)[0][:per_class] for c in range(10)]))
    return {"images": np.ascontiguousarray(images[idx]), "labels": np.ascontiguousarray(labels[idx])}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pynn.train_default", description=__doc__.split("\n")[0])
    p.add_argument("--dense", action="store_true",
                   help="the 784-hidden-10 network trained on distorted digits instead")
    dense = p.add_argument_group("with --dense")
    dense.add_argument("--hidden", type=int, help="hidden units (default 512)")
    dense.add_argument("--epochs", type=int, help="default 20")
    dense.add_argument("--lr", type=float, help="first learning rate (default 0.05)")
    dense.add_argument("--plain", action="store_true", help="no distortions: the same training on "
                       "MNIST as it is (the baseline docs/PAD.md compares against)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="pynn/models/default.npz", help="default pynn/models/default.npz")
    p.add_argument("--replay", metavar="PATH", help="also write the replay set there "
                   "(pynn/models/replay.npz)")
    args = p.parse_args(argv)
    if not args.dense:
        given = [f"--{k}" for k in ("hidden", "epochs", "lr") if getattr(args, k) is not None]
        if given or args.plain:
            p.error(f"{', '.join(given + (['--plain'] if args.plain else []))} set the dense "
                    f"network's training: add --dense")
    images, labels = datasets.mnist("train")
    if args.replay:
        arrays = replay_arrays(images, labels)
        atomic_write(args.replay, lambda f: np.savez_compressed(f, **arrays))
        print(f"wrote {args.replay}: {len(arrays['labels'])} digits")
    if not args.dense:
        return train_conv(args.out, args.seed)
    still = augment.Augmenter(0, 0, 0, 0, alpha=0, max_thin=0, max_thick=0) if args.plain else None
    net = train(images, labels, args.hidden or 512, args.epochs or 20, args.lr or 0.05,
                seed=args.seed, augmenter=still)
    test_images, test_labels = datasets.mnist("test")
    error = 1 - net.accuracy(test_images.reshape(-1, 784), test_labels.astype(np.int64))
    save(net, args.out)
    print(f"{net}: MNIST test error {100 * error:.2f}%, saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
