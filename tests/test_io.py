"""Saving and loading: a round trip changes nothing, and a damaged file is refused with a
message naming it and the problem."""
import json
import os
import signal
import time

import numpy as np
import pytest

import pynn
from pynn import modelfile


def trained_net(**kwargs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    net = pynn.Network([12, 9, 7, 3], seed=4, **kwargs)
    net.fit(X, y, epochs=2, batch_size=32, optimizer=pynn.Adam(lr=0.01))
    return net, X


@pytest.mark.parametrize("kwargs", [{}, dict(activation="tanh", output="sigmoid", loss="quadratic"),
                                    dict(activation="sigmoid", output="linear", loss="quadratic")])
def test_round_trip_gives_bit_identical_predictions(tmp_path, kwargs):
    net, X = trained_net(**kwargs)
    path = tmp_path / "model.npz"
    net.save(path)
    back = pynn.load(path)
    assert repr(back) == repr(net)
    assert back.sizes == net.sizes
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(back.predict_proba(X), net.predict_proba(X))
    assert np.array_equal(back.predict(X), net.predict(X))
    # and the loaded network trains on: its arrays are its own, writable, contiguous
    assert all(p.flags.writeable and p.flags.c_contiguous for p in back.weights + back.biases)


def test_save_accepts_str_paths_and_replaces_the_old_file(tmp_path):
    net, X = trained_net()
    path = str(tmp_path / "sub" / "m.npz")              # the directory is made
    pynn.Network([12, 9, 7, 3], seed=99).save(path)
    net.save(path)
    assert np.array_equal(pynn.load(path).predict_proba(X), net.predict_proba(X))
    assert sorted(os.listdir(tmp_path / "sub")) == ["m.npz"]    # no temporary file left


def test_failed_save_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "m.npz"
    net, X = trained_net()
    net.save(path)
    before = path.read_bytes()

    def crash(f):
        f.write(b"half a file")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        modelfile.atomic_write(path, crash)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_ctrl_c_during_a_save_is_raised_once_the_file_is_whole(tmp_path):
    # numpy's zip writer, interrupted mid-file, raises zipfile's ValueError instead of the
    # KeyboardInterrupt (so pynn train printed a traceback instead of saving its state): the
    # Ctrl+C is held until the file is in place, then raised
    path = tmp_path / "m.npz"
    net, X = trained_net()
    arrays = modelfile.network_arrays(net)
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal
    try:
        def ctrl_c_mid_write(f):
            f.write(b"")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)                     # Python runs its handler meanwhile
            np.savez(f, **arrays)
        with pytest.raises(KeyboardInterrupt):
            modelfile.atomic_write(path, ctrl_c_mid_write)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        loaded = pynn.load(path)
        np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
        assert os.listdir(tmp_path) == ["m.npz"]
        modelfile.atomic_write(path, lambda f: np.savez(f, **arrays))    # no Ctrl+C: nothing raised
    finally:
        signal.signal(signal.SIGINT, before)


def save_arrays(path, **changes):
    net = pynn.Network([4, 3, 2], seed=0)
    arrays = modelfile.network_arrays(net)
    if "architecture" in changes:           # arch() writes the first format's architecture
        arrays["format_version"] = np.array(1)
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def arch(**changes):
    a = {"sizes": [4, 3, 2], "activation": "relu", "output": "softmax", "loss": "cross_entropy"}
    a.update(changes)
    return np.array(json.dumps(a))


@pytest.mark.parametrize("changes,words", [
    (dict(format_version=np.array(99)), "version 99"),
    (dict(format_version=None), "not a pynn model"),
    (dict(architecture=arch(sizes=[4, 5, 2])), "W0"),
    (dict(architecture=arch(activation="swish")), "bad architecture"),
    (dict(architecture=np.array("{not json")), "bad architecture"),
    (dict(W1=None), "W1 is missing"),
    (dict(b0=np.zeros(3, np.float64)), "b0 is float64"),
    (dict(W0=np.zeros((4, 3), np.float32)), "W0"),
    (dict(W0=np.full((3, 4), np.nan, np.float32)), "NaN"),
    (dict(b1=np.array([0.0, np.inf], np.float32)), "Inf"),
])
def test_bad_model_files_are_refused(tmp_path, changes, words):
    path = save_arrays(tmp_path / "bad.npz", **changes)
    with pytest.raises(pynn.ModelFileError, match=words) as info:
        pynn.load(path)
    assert str(path) in str(info.value)


def test_truncated_missing_and_pickled_files_are_refused(tmp_path):
    good = tmp_path / "good.npz"
    pynn.Network([4, 3, 2]).save(good)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(pynn.ModelFileError, match="cut.npz"):
        pynn.load(cut)
    with pytest.raises(pynn.ModelFileError, match="no such file"):
        pynn.load(tmp_path / "absent.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is no zip file at all")
    with pytest.raises(pynn.ModelFileError, match="junk.npz"):
        pynn.load(junk)
    pickled = tmp_path / "pickled.npz"
    arrays = modelfile.network_arrays(pynn.Network([4, 3, 2]))
    arrays["W0"] = np.array([{"a": 1}], dtype=object)
    np.savez(pickled, **arrays)
    with pytest.raises(pynn.ModelFileError, match="pickle"):
        pynn.load(pickled)
    assert issubclass(pynn.ModelFileError, ValueError)


def test_saved_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path):
    import os
    import stat
    old = os.umask(0o022)
    try:
        net = pynn.Network([3, 2], seed=0)
        net.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o644


def test_scripts_that_import_pynn_io_still_work(tmp_path):
    # pynn.modelfile's earlier name: `from pynn import io`, `import pynn.io` and
    # `from pynn.io import load` reach the same module
    import pynn.io
    from pynn import io as old
    from pynn.io import load as old_load
    assert pynn.io is old is modelfile and old_load is pynn.load
    pynn.Network([4, 3, 2], seed=0).save(tmp_path / "m.npz")
    assert old.load(tmp_path / "m.npz").sizes == [4, 3, 2]
