"""Teaching the network one person's handwriting: the pad's "teach" mode.

A network trained on MNIST reads the American way of writing; a European 7 with a bar through
it, or a 1 with a long flag, it may read as something else. ``teach`` fine-tunes the network,
in place and in well under a second, on a few of the user's own drawings with their labels:

    teach(net, inputs, labels)      inputs (k, 784) float32 already preprocessed, labels (k,)

Two things keep a few examples from doing harm. Each drawing is trained on together with a
handful of slightly stretched and sheared copies (pynn.augment), so the network learns the
shape rather than the exact pixels. And every batch mixes in MNIST digits replayed from a
small set shipped with the package (pynn/models/replay.npz: 2,000 training digits, 200 of each
class), so what the network knew about the other digits is rehearsed rather than forgotten
(a small form of "rehearsal" against catastrophic forgetting). The replay set ships because the
pad must be able to teach on a machine that has never downloaded MNIST; 2,000 digits are
plenty for a few hundred replayed per lesson, and cost 0.3 MB. The lesson goes on, pass after
pass up to a cap, until every drawing is read as its label with confidence: a user who presses
7 expects to see 7, not "not sure".

A convolutional network is taught in its dense head only: the convolutions' features of the
lesson are computed once, and the passes train the layers after the last Flatten on them. A
pass then costs what one of a small dense network does, where the whole network's would cost
a convolution's forward and backward for every sample; and the features, which read strokes
wherever they lie, are the part a few drawings should not move. Since lessons leave the
convolutions as they are, the replayed digits' features are kept from one lesson to the next
(replay_features): after the first lessons only the drawings pass through the convolutions.
"""
import hashlib
import os
import threading
from functools import lru_cache

import numpy as np

from . import augment, ops
from .layers import Flatten
from .network import Network
from .optim import SGD

BATCH = 32
LR = 0.01
HEAD_LR = 0.02       # a head on fixed features: at LR, a pass leaves it short of a style it was shown
MAX_REPLAY = 600     # replayed digits per lesson at most: a long lesson stays quick
REPLAY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "replay.npz")


@lru_cache(maxsize=1)
def replay_set(path=REPLAY_PATH):
    """The shipped replay digits as (images float32 (n, 784) in 0..1, labels int64 (n,))."""
    from .modelfile import read_npz, ModelFileError
    arrays = read_npz(path, names=("images", "labels"))
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8 or images.ndim != 3 \
            or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ModelFileError(f"{path}: a replay set needs uint8 images (n, 28, 28) and n labels")
    X = ops.scale_u8(np.ascontiguousarray(images)).reshape(len(images), 784)
    return X, labels.astype(np.int64)


def teach(net, inputs, labels, rng=None, copies=8, replay=12, max_epochs=16, lr=None,
          confident=0.75):
    """Fine-tune ``net`` in place so that it reads ``inputs`` as ``labels``; return the losses.

    inputs   (k, 784) or (k, 28, 28) float32 drawings already in MNIST's form
             (pynn.preprocess.strokes_to_mnist or to_mnist)
    labels   (k,) the digits they are
    copies   distorted copies trained on beside each drawing
    replay   MNIST digits replayed per taught sample (drawings and their copies), besides the
             replay digits of the classes the network wrongly answers now
    max_epochs, lr   passes over the lesson at most, and the learning rate of SGD with
             momentum 0.9 (default LR, or HEAD_LR for a convolutional network's head)
    confident   the lesson ends after the first pass that leaves every drawing's probability
             for its label at least this (the pad says "not sure" below 0.6)
    rng      a numpy Generator for the copies and the replay choice (default: seeded, so the
             same lesson gives the same network)
    """
    X, y = _check(net, inputs, labels)
    rng = np.random.default_rng(0) if rng is None else rng
    k = len(X)
    # the drawings themselves, and copies stretched and sheared a little: the shape, not the
    # pixels. Not shifted or turned: a 1 taught as a 7 turned by ten degrees is half of
    # MNIST's 1s, and the lesson would cost them.
    spread = np.repeat(X.reshape(k, 28, 28), copies, axis=0)
    moved = augment.affine(spread, rng, max_shift=0, max_rotation=0, max_scale=0.08,
                           max_shear=0.15).reshape(k * copies, 784)
    taught = np.concatenate([X, moved])
    taught_y = np.concatenate([y, np.repeat(y, copies)])
    # MNIST digits rehearsed alongside, so the other digits are not forgotten: all the replay
    # digits of the classes the drawings are misread as now (the lesson moves the border
    # between those and the label, so both sides of it are shown), and a random few others
    R_X, R_y = replay_set()
    wrong = net.predict(X)
    border = np.nonzero(np.isin(R_y, wrong[wrong != y]))[0]
    others = np.setdiff1d(np.arange(len(R_X)), border)
    n_replay = min(len(others), replay * len(taught), MAX_REPLAY)
    pick = np.concatenate([rng.choice(others, size=n_replay, replace=False), border])
    lesson_y = np.concatenate([taught_y, R_y[pick]])
    body, learner = _parts(net)
    if body is None:
        lesson = np.concatenate([taught, R_X[pick]])
    else:
        # a convolutional network learns the lesson in its dense head: the features the
        # convolutions see are computed once, and every pass costs what a small dense one does
        lesson = np.concatenate([body.predict_proba(taught), replay_features(body, pick)])
        X = np.ascontiguousarray(lesson[:k])
    if lr is None:
        lr = LR if body is None else HEAD_LR
    # Network.fit without its accuracy pass (score=False: it would cost more here than the
    # training does). The check is once a pass, after the replay has been rehearsed too:
    # stopping mid-pass, just after the drawings' batch, ends on the moment MNIST suffers most.
    losses = []

    def confident_now(epoch, history):
        return bool(learner.predict_proba(X)[np.arange(k), y].min() >= confident)

    learner.fit(lesson, lesson_y, epochs=max_epochs, batch_size=BATCH,
                optimizer=SGD(lr=lr, momentum=0.9), shuffle=rng, score=False,
                callback=lambda epoch, batch, n, loss: losses.append(loss),
                on_epoch_end=confident_now)
    return losses


_features_lock = threading.Lock()
_features = {}       # (body, its parameters' digest) -> (features (n, F), which are known (n,))


def replay_features(body, pick):
    """The features ``body`` gives the replay digits ``pick`` (indices into replay_set), each
    digit's computed once for a given body: the pad teaches copies of the same convolutions
    lesson after lesson. The same bits as body.predict_proba of those digits."""
    R_X, _ = replay_set()
    digest = hashlib.blake2b(digest_size=16)
    for p in body.parameters():
        digest.update(np.ascontiguousarray(p).tobytes())
    key = (repr(body), digest.hexdigest())
    with _features_lock:
        if key not in _features:
            _features.clear()        # one body at a time, the one being taught
            _features[key] = (np.empty((len(R_X), body.n_out), np.float32),
                              np.zeros(len(R_X), dtype=bool))
        features, known = _features[key]
        todo = np.unique(pick[~known[pick]])
        if len(todo):
            features[todo] = body.predict_proba(np.ascontiguousarray(R_X[todo]))
            known[todo] = True
        return features[pick]


def _parts(net):
    """(body, head): for a network with convolutions, its layers up to the last Flatten and
    the dense layers after it, each a Network over the same layer objects (so teaching the
    head teaches ``net``); for a dense network, or one with nothing to learn after its last
    Flatten, (None, net)."""
    flat = [i for i, layer in enumerate(net.layers) if isinstance(layer, Flatten)]
    cut = flat[-1] + 1 if flat else len(net.layers)
    if not any(layer.params for layer in net.layers[cut:]):
        return None, net
    body = Network(net.layers[:cut], input_shape=net.input_shape, output="linear", loss="quadratic")
    return body, Network(net.layers[cut:], output=net.output, loss=net.loss)


def _check(net, inputs, labels):
    if not isinstance(inputs, np.ndarray) or inputs.dtype != np.float32:
        raise TypeError("inputs must be a float32 numpy array of preprocessed drawings (k, 784)")
    if inputs.ndim == 1 and inputs.size == 784:
        inputs = inputs.reshape(1, 784)
    if inputs.ndim < 2 or int(np.prod(inputs.shape[1:])) != 784 or len(inputs) == 0:
        raise ValueError(f"inputs must be k >= 1 drawings of 784 values, got shape {inputs.shape}")
    if net.sizes[0] != 784 or net.sizes[-1] != 10:
        raise ValueError(f"teach needs a 784-...-10 digit network, got {net!r}")
    if not np.isfinite(inputs).all():
        raise ValueError("inputs hold NaN or Inf")
    labels = np.asarray(labels)
    if labels.ndim == 0:
        labels = labels.reshape(1)
    if labels.shape != (len(inputs),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {len(inputs)} integers, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"labels must be digits 0..9, got {labels.min()}..{labels.max()}")
    return np.ascontiguousarray(inputs.reshape(len(inputs), 784)), labels.astype(np.int64)
