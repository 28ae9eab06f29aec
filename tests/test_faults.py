"""Faults survived: a process killed while saving leaves a file that loads (the old one or the new
one, never a mix); a training run stopped mid-epoch and resumed from its checkpoint ends with
the weights of a run that was never stopped, bit for bit."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import pynn
from pynn import modelfile
from pynn.checkpoint import load_checkpoint, save_checkpoint
from conftest import TRAIN_ARGS, write_digits

SAVER = textwrap.dedent("""
    import sys
    import pynn
    from pynn.checkpoint import save_checkpoint
    path, what = sys.argv[1], sys.argv[2]
    net, opt = pynn.Network([784, 1000, 10]), pynn.SGD(lr=0.1, momentum=0.9)
    opt.state = [[w.copy()] for pair in zip(net.weights, net.biases) for w in pair]
    k = 0
    while True:                  # version k: every weight and every state value equals k
        k += 1
        for a in net.weights + net.biases + [s[0] for s in opt.state]:
            a.fill(k)
        if what == "model":
            net.save(path)
        else:
            save_checkpoint(path, net, opt, k, {"loss": [float(k)]})
        print(k, flush=True)
""")


def one_version(arrays):
    """The k every array is filled with; fails when the arrays come from different saves."""
    values = {float(v) for a in arrays for v in np.unique(a)}
    assert len(values) == 1, f"a mix of saves: {sorted(values)[:5]}"
    return values.pop()


@pytest.mark.parametrize("what", ["model", "checkpoint"])
def test_a_process_killed_while_saving_leaves_a_whole_file(tmp_path, what, monkeypatch):
    # A child saves a 3 MB model (or checkpoint) over and over; SIGKILL at random moments. After
    # every kill the file loads, and all of it comes from one save.
    target = tmp_path / ("m.npz" if what == "model" else "run")
    rng = np.random.default_rng(0)
    for round_ in range(12):
        child = subprocess.Popen([sys.executable, "-c", SAVER, str(target), what],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip(), "the saver did not start"   # one save done
            time.sleep(rng.uniform(0.0, 0.15))
        finally:
            child.kill()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        if what == "model":
            net = pynn.load(target)
            k = one_version(net.weights + net.biases)
        else:
            ck = load_checkpoint(target)
            k = one_version(ck.net.weights + ck.net.biases + [s for st in ck.optimizer.state for s in st])
            assert ck.epoch == k and ck.history == {"loss": [k]}
        assert k >= 1                          # a whole save, not the file before any
    # the kills did land mid-save: each such one leaves its temporary file behind
    directory = target.parent if what == "model" else target
    mid_save = sum(name.endswith(".tmp") for name in os.listdir(directory))
    print(f"{what}: {mid_save} of 12 kills landed mid-save; the file loaded whole after each")
    assert mid_save > 0
    # the next save to the same path removes what the killed ones left (here at once; by
    # default once they are a minute old, so that a save still writing is never touched)
    monkeypatch.setattr(modelfile, "STALE_TEMP_SECONDS", 0)
    if what == "model":
        pynn.Network([4, 3, 2]).save(target)
    else:
        save_checkpoint(target, pynn.Network([4, 3, 2]), pynn.SGD(), 0, {"loss": [1.0]})
    assert not [name for name in os.listdir(directory) if name.endswith(".tmp")]


def data(n=240, n_in=12, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


@pytest.mark.parametrize("make_optimizer", [lambda: pynn.SGD(lr=0.05, momentum=0.9),
                                            lambda: pynn.SGD(lr=0.1),
                                            lambda: pynn.Adam(lr=0.01, weight_decay=1e-4)],
                         ids=["momentum", "sgd", "adam"])
def test_resuming_from_a_checkpoint_ends_bit_for_bit_where_a_whole_run_ends(tmp_path, make_optimizer):
    X, y = data()
    whole = pynn.Network([12, 10, 3], seed=5)
    whole_history = whole.fit(X, y, epochs=5, batch_size=16, optimizer=make_optimizer(),
                              validation=(X[:40], y[:40]))
    for stop_after in (0, 2, 4):          # stop after epoch 1, 3 and 5 (0-based 0, 2, 4)
        net, opt = pynn.Network([12, 10, 3], seed=5), make_optimizer()
        saved = []

        def on_epoch_end(epoch, history):
            save_checkpoint(tmp_path / str(stop_after), net, opt, epoch, history)
            saved.append(epoch)
            if epoch == stop_after:
                raise KeyboardInterrupt     # the run dies here, its checkpoint on disk
        with pytest.raises(KeyboardInterrupt):
            net.fit(X, y, epochs=5, batch_size=16, optimizer=opt, validation=(X[:40], y[:40]),
                    on_epoch_end=on_epoch_end)
        ck = load_checkpoint(tmp_path / str(stop_after))
        assert ck.epoch == stop_after and repr(ck.optimizer) == repr(opt)
        history = ck.net.fit(X, y, epochs=5, batch_size=16, optimizer=ck.optimizer,
                             validation=(X[:40], y[:40]), start_epoch=ck.epoch + 1,
                             history=ck.history)
        assert history == whole_history
        for a, b in zip(ck.net.weights + ck.net.biases, whole.weights + whole.biases):
            assert np.array_equal(a, b)


def test_a_checkpoint_is_a_snapshot(tmp_path):
    # what save_checkpoint wrote is what the network was then, not what it became
    X, y = data()
    net, opt = pynn.Network([12, 6, 3], seed=2), pynn.Adam(lr=0.01)
    net.fit(X, y, epochs=1, optimizer=opt)
    save_checkpoint(tmp_path, net, opt, 0, {"loss": [1.0]})
    before = [w.copy() for w in net.weights]
    net.fit(X, y, epochs=1, optimizer=opt)
    ck = load_checkpoint(tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(ck.net.weights, before))
    assert ck.optimizer.steps == len(range(0, len(X), 32))
    assert modelfile.read_npz(tmp_path / "checkpoint.npz")["rng_state"].dtype.kind == "U"


# ---- the command line: pynn train stopped mid-epoch, then --resume ----




# Many short epochs: the signal, sent when epoch 2's line appears, must land while dozens of
# epochs are still to run, however loaded the machine is.



def _interruptible():
    # A shell that starts CI in the background leaves SIGINT ignored, and Python keeps it so;
    # the child must get Ctrl+C the way a terminal gives it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pynn_train(cwd, *args):
    return subprocess.Popen([sys.executable, "-m", "pynn", "train", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)


def same_weights(a, b):
    a, b = pynn.load(a), pynn.load(b)
    return all(np.array_equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augment"])
def test_pynn_train_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, how, augment):
    write_digits(tmp_path)
    args = TRAIN_ARGS + ["--data-dir", str(tmp_path)] + (["--augment"] if augment else [])
    whole = pynn_train(tmp_path, *args, "--out", "whole.npz")
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err

    run = pynn_train(tmp_path, *args, "--out", "stopped.npz", "--checkpoint", "ck")
    for line in run.stdout:               # stop it in the epoch after the second one's line
        if line.startswith("epoch  2/40"):
            time.sleep(np.random.default_rng().uniform(0.0, 0.05))
            run.send_signal(getattr(signal, how))
            break
    out, err = run.communicate(timeout=120)
    assert not (tmp_path / "stopped.npz").exists(), "the run ended before it was stopped"
    if how != "SIGKILL":             # Ctrl+C, or kill's SIGTERM: the state is saved alike
        assert run.returncode == 128 + getattr(signal, how), err
        said = "interrupted" if how == "SIGINT" else "terminated"
        assert f"pynn train: {said}; saved the state" in err
        assert "resume with: pynn train --resume ck" in err
        assert "Traceback" not in err
    else:
        assert run.returncode == -signal.SIGKILL

    # the settings come from the checkpoint; where to write, from the command line
    resumed = pynn_train(tmp_path, "--resume", "ck", "--out", "stopped.npz")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming" in out and "saved stopped.npz" in out
    assert same_weights(tmp_path / "whole.npz", tmp_path / "stopped.npz")


def test_resume_from_a_damaged_checkpoint_is_one_line(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really")
    run = pynn_train(tmp_path, "--resume", "ck")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert len(err.strip().splitlines()) == 1 and "checkpoint.npz" in err
