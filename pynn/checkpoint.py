"""Checkpoints: what a training run needs to go on where it stopped, and end bit for bit where an
uninterrupted run would have ended.

One file, DIR/checkpoint.npz, written atomically like a model (pynn.modelfile.atomic_write):
the network (the arrays pynn.modelfile saves), the optimiser's kind, settings, step count and
state arrays, the random generator's state as JSON text (it decides the next epoch's shuffle),
the epoch just finished and the history so far. Plain arrays and JSON text only: nothing is ever unpickled.

    save_checkpoint(dir, net, optimizer, epoch, history)     # after epoch ``epoch`` (0-based)
    ck = load_checkpoint(dir)
    ck.net.fit(X, y, epochs, optimizer=ck.optimizer, start_epoch=ck.epoch + 1, history=ck.history)
"""
import inspect
import json
import math
import os
from typing import NamedTuple

import numpy as np

from . import modelfile, optim

FILENAME = "checkpoint.npz"
CHECKPOINT_VERSION = 1
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class Checkpoint(NamedTuple):
    net: object          # pynn.Network, with its generator where the run left it
    optimizer: object    # pynn.SGD or pynn.Adam, with its state
    epoch: int           # the last finished epoch, counted from 0 (-1: none yet)
    history: dict        # what Network.fit returned so far
    run: dict            # the settings saved with it (save_checkpoint's ``run``)
    path: str


def checkpoint_path(directory):
    return os.path.join(os.fspath(directory), FILENAME)


def optimizer_settings(optimizer):
    """The constructor arguments that rebuild ``optimizer``: its __init__'s parameters, read back
    from the attributes of the same names."""
    names = [p for p in inspect.signature(type(optimizer).__init__).parameters if p != "self"]
    return {name: getattr(optimizer, name) for name in names}


def save_checkpoint(directory, net, optimizer, epoch, history, run=None):
    """Write DIR/checkpoint.npz for the run after epoch ``epoch`` (-1: before the first);
    ``run``: settings of the run, any JSON-able dict (the CLI keeps its arguments there).
    Returns the path."""
    return write_checkpoint(directory, checkpoint_arrays(net, optimizer, epoch, history, run))


def write_checkpoint(directory, arrays):
    """Write arrays made by ``checkpoint_arrays`` to DIR/checkpoint.npz, atomically."""
    path = checkpoint_path(directory)
    modelfile.atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def checkpoint_arrays(net, optimizer, epoch, history, run=None):
    """Everything a checkpoint holds, as arrays copied now (training may go on changing the
    network's; a caller can keep these and write them later, e.g. when interrupted)."""
    kind = type(optimizer).__name__
    if getattr(optim, kind, None) is not type(optimizer):
        raise TypeError(f"optimizer must be one of pynn's optimisers, got {kind}")
    state = optimizer.state_dict()
    arrays = modelfile.network_arrays(net)
    arrays.update(
        checkpoint_version=np.array(CHECKPOINT_VERSION, dtype=np.int64),
        epoch=np.array(int(epoch), dtype=np.int64),
        rng_state=np.array(json.dumps(net.rng.bit_generator.state)),
        dropout_state=np.array(json.dumps([net.dropout_seed, net.dropout_step])),
        history=np.array(json.dumps(history)),
        optimizer=np.array(json.dumps({"kind": kind, "settings": optimizer_settings(optimizer),
                                       "steps": int(state["steps"]),
                                       "state": [len(s) for s in state["state"]]})))
    arrays["run"] = np.array(json.dumps(run or {}))
    for i, arrays_i in enumerate(state["state"]):
        for j, a in enumerate(arrays_i):
            arrays[f"opt{i}_{j}"] = np.array(a, dtype=np.float32)
    for key in arrays:
        if key[0] in "Wb" and key[1:].isdigit():
            arrays[key] = arrays[key].copy()
    return arrays


# what a checkpoint holds besides the network's arrays and the optimiser's opt{i}_{j}
CHECKPOINT_KEYS = ("checkpoint_version", "epoch", "rng_state", "dropout_state", "history",
                   "optimizer", "run")
MAX_STATES = 2       # state arrays per parameter array (Adam's m and v)


def load_checkpoint(directory):
    """The Checkpoint in DIR; ModelFileError (one line naming the file) when it is missing,
    damaged, of another version, its parts do not fit together, or a saved value is out of
    range. Each array's declared size is checked against what the network needs before it is
    inflated, and an array nobody asked for is refused (pynn.modelfile.Archive)."""
    path = checkpoint_path(directory)
    with modelfile.Archive(path) as z:
        if "checkpoint_version" not in z:
            raise modelfile.ModelFileError(f"{path}: not a pynn checkpoint (no checkpoint_version)")
        version = z.integer("checkpoint_version")
        if version != CHECKPOINT_VERSION:
            raise modelfile.ModelFileError(f"{path}: checkpoint version {version} is not supported "
                                    f"(this pynn reads version {CHECKPOINT_VERSION})")
        kind, settings, steps, counts = _optimizer_spec(z, path)
        opt_names = [f"opt{i}_{j}" for i, count in enumerate(counts) for j in range(count)]
        net = modelfile.read_network(z, extra=CHECKPOINT_KEYS + tuple(opt_names))
        epoch = z.integer("epoch")
        if not -1 <= epoch < 2 ** 62:
            raise modelfile.ModelFileError(f"{path}: epoch {epoch} is out of range")
        net.rng = generator(z.json("rng_state"), path)
        if "dropout_state" in z:     # where the masks' draws stood (absent in older files)
            state = z.json("dropout_state")
            if not (isinstance(state, list) and len(state) == 2
                    and all(type(v) is int and 0 <= v < 2 ** 63 for v in state)):
                raise modelfile.ModelFileError(f"{path}: dropout_state is not two counts")
            net.dropout_seed, net.dropout_step = state
        history = z.json("history")
        if not (isinstance(history, dict) and all(
                isinstance(v, list) and all(_is_number(x) for x in v) for v in history.values())):
            raise modelfile.ModelFileError(f"{path}: history is not a dict of lists of numbers")
        run = z.json("run") if "run" in z else {}
        if not isinstance(run, dict):
            raise modelfile.ModelFileError(f"{path}: run is not a dict")
        optimizer = _optimizer(z, net, path, kind, settings, steps, counts)
    return Checkpoint(net, optimizer, epoch, history, run, path)


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def generator(state, path):
    """A numpy Generator in the saved ``state`` (a bit generator's state dict), checked:
    ModelFileError naming ``path`` when it names no known bit generator or does not fit it."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise modelfile.ModelFileError(f"{path}: rng_state names no known bit generator ({name!r})")
    rng = np.random.Generator(getattr(np.random, name)())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise modelfile.ModelFileError(f"{path}: rng_state is damaged ({e})") from None
    return rng


def _optimizer_spec(z, path):
    """(kind, settings, steps, state counts) of the saved optimiser, each checked."""
    spec = z.json("optimizer")
    try:
        kind, settings, steps, counts = spec["kind"], spec["settings"], spec["steps"], spec["state"]
        cls = getattr(optim, kind, None) if isinstance(kind, str) else None
        if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
            raise ValueError(f"unknown optimiser {kind!r}")
        if not isinstance(settings, dict):
            raise ValueError("its settings are not a dict")
        if not (isinstance(counts, list) and all(type(c) is int and 0 <= c <= MAX_STATES for c in counts)):
            raise ValueError(f"its state counts are not a list of 0..{MAX_STATES}")
    except (KeyError, TypeError, ValueError) as e:
        raise modelfile.ModelFileError(f"{path}: optimizer cannot be rebuilt ({e})") from None
    return cls, settings, steps, counts


def _optimizer(z, net, path, cls, settings, steps, counts):
    try:
        optimizer = cls(**settings)
        optimizer.steps = steps
    except (TypeError, ValueError) as e:
        raise modelfile.ModelFileError(f"{path}: optimizer cannot be rebuilt ({e})") from None
    params = net.parameters()
    if counts and len(counts) != len(params):
        raise modelfile.ModelFileError(f"{path}: optimizer state for {len(counts)} arrays, the network has {len(params)}")
    state = []
    for i, count in enumerate(counts):
        arrays_i = []
        for j in range(count):
            name = f"opt{i}_{j}"
            if name not in z:
                raise modelfile.ModelFileError(f"{path}: optimizer state {name} is missing, "
                                        f"the network needs float32 {params[i].shape}")
            a = z.array(name, np.float32, params[i].shape)
            if not np.isfinite(a).all():
                raise modelfile.ModelFileError(f"{path}: optimizer state {name} holds NaN or Inf")
            arrays_i.append(a)
        state.append(arrays_i)
    optimizer.load_state_dict({"steps": steps, "state": state})
    return optimizer
