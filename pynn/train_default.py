"""Make the shipped network, pynn/models/default.npz, and the replay set beside it.

    python -m pynn.train_default                 # the shipped model (see README for the numbers)
    python -m pynn.train_default --epochs 2 --out /tmp/quick.npz     # a quick look
    python -m pynn.train_default --plain --out plain.npz               # the same, undistorted

The network is trained for drawings rather than for MNIST alone: every epoch sees the 60,000
training digits freshly distorted by pynn.augment.Augmenter (shifts, rotations, scaling, shear,
elastic bending, thinner and thicker strokes), the way different people's drawings differ;
each epoch's digits are distorted on a second thread while the one before trains.
SGD with momentum, the learning rate falling along a half cosine to zero. The test set is only
looked at once, at the end, to report the error.

``--replay`` also writes the replay set pynn.adapt.teach rehearses: the first 200 training
digits of each class, as uint8.
"""
import argparse
import sys
import time

import numpy as np

from . import augment, datasets, ops
from .io import atomic_write, save
from .network import Network
from .optim import SGD, scheduled_lr


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


def replay_arrays(images, labels, per_class=200):
    """The first ``per_class`` digits of each class, in their original order."""
    idx = np.sort(np.concatenate([np.nonzero(labels == c)[0][:per_class] for c in range(10)]))
    return {"images": np.ascontiguousarray(images[idx]), "labels": np.ascontiguousarray(labels[idx])}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pynn.train_default", description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=512, help="hidden units (default 512)")
    p.add_argument("--epochs", type=int, default=20, help="default 20")
    p.add_argument("--lr", type=float, default=0.05, help="first learning rate (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="pynn/models/default.npz", help="default pynn/models/default.npz")
    p.add_argument("--plain", action="store_true", help="no distortions: the same training on "
                   "MNIST as it is (the baseline the README compares against)")
    p.add_argument("--replay", metavar="PATH", help="also write the replay set there "
                   "(pynn/models/replay.npz)")
    args = p.parse_args(argv)
    images, labels = datasets.mnist("train")
    if args.replay:
        arrays = replay_arrays(images, labels)
        atomic_write(args.replay, lambda f: np.savez_compressed(f, **arrays))
        print(f"wrote {args.replay}: {len(arrays['labels'])} digits")
    still = augment.Augmenter(0, 0, 0, 0, alpha=0, max_thin=0, max_thick=0) if args.plain else None
    net = train(images, labels, args.hidden, args.epochs, args.lr, seed=args.seed, augmenter=still)
    test_images, test_labels = datasets.mnist("test")
    error = 1 - net.accuracy(test_images.reshape(-1, 784), test_labels.astype(np.int64))
    save(net, args.out)
    print(f"{net}: MNIST test error {100 * error:.2f}%, saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
