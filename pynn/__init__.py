"""pynn: a neural network for handwritten digits, its mathematics in C kernels.

    import pynn
    net = pynn.Network([784, 800, 10], activation="relu", output="softmax",
                       loss="cross_entropy", seed=0)
    net.fit(X, y, epochs=5, batch_size=64, optimizer=pynn.SGD(lr=0.05, momentum=0.9))
    net.predict(X_test)

pynn.ops is the one module that calls C; pynn.network holds the network, pynn.optim the
optimisers, pynn.modelfile saving and loading; pynn.datasets the data, pynn.preprocess a
drawing's way to the network, pynn.augment distortions, pynn.adapt teaching.
"""
import sys

from . import adapt, augment, checkpoint, datasets, layers, modelfile, ops, preprocess
from .modelfile import ModelFileError, load
from .network import Network
from .optim import SGD, Adam, Optimizer

__all__ = ["Network", "SGD", "Adam", "Optimizer", "load", "ModelFileError", "ops", "datasets",
           "preprocess", "augment", "adapt",
           "set_num_threads", "get_num_threads", "load_default"]
__version__ = "0.1.0"

set_num_threads = ops.set_num_threads
get_num_threads = ops.get_num_threads

# pynn.modelfile's earlier name, for scripts that import it so (`from pynn import io`,
# `import pynn.io`); pynn's own code says modelfile, which no one reads as the standard io
io = sys.modules[__name__ + ".io"] = modelfile


def load_default():
    """The network shipped with pynn (pynn/models/default.npz), trained on distorted MNIST digits
    so that it reads drawings; made by ``python -m pynn.train_default``. A new copy each call."""
    import os
    return load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "default.npz"))
