"""A checkpoint's saved settings are as untrusted as a command line: each is checked the way
the command line checks it, and a bad one ends ``pynn train --resume`` with one line naming
the file, never a traceback or a run with a batch size of 0 or a learning rate of NaN."""
import json

import numpy as np
import pytest

import pynn
from pynn import cli, modelfile
from pynn.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

from run_settings import run_settings


def write(directory, run=None, history=None, **settings):
    net, opt = pynn.Network([4, 3, 2], seed=0), pynn.Adam(lr=0.01)
    opt.fused([p for pair in zip(net.weights, net.biases) for p in pair])     # its state arrays
    save_checkpoint(directory, net, opt, 0, history or {"loss": [1.0], "accuracy": [0.5]},
                    run=run if run is not None else {"args": run_settings(**settings),
                                                     "augment_rng": None})
    return directory


def resume_error(directory, capsys):
    assert cli.main(["train", "--resume", str(directory)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "checkpoint.npz" in err[0]
    return err[0]


@pytest.mark.parametrize("setting, value, says", [
    ("batch_size", 0, "--batch-size"),
    ("epochs", -5, "--epochs"),
    ("lr", float("nan"), "--lr"),
    ("lr", -1.0, "--lr"),
    ("l2", float("inf"), "--l2"),
    ("dropout", 1.5, "--dropout"),
    ("schedule", "sideways", "--schedule"),
    ("optimizer", "rmsprop", "--optimizer"),
    ("activation", 3, "activation"),
    ("batch_size", "64", "batch_size"),
    ("batch_size", 6.5, "batch_size"),
    ("epochs", True, "epochs"),
    ("augment", "yes", "augment"),
    ("augment", 3, "augment"),
    ("init", 5, "init"),
    ("arch", [4, "3", 2], "arch"),
    ("arch", [4, [[[[3]]]], 2], "arch"),
    ("arch", [4, 10 ** 9, 2], "--arch"),
    ("seed", -1, "--seed"),
    ("bogus", 1, "bogus"),
])
def test_a_bad_saved_setting_is_one_line_naming_it(tmp_path, capsys, setting, value, says):
    directory = write(tmp_path / "ck", **{setting: value})
    assert says in resume_error(directory, capsys)


def test_run_settings_nested_deep_are_one_line(tmp_path, capsys):
    directory = write(tmp_path / "ck")
    arrays = modelfile.read_npz(checkpoint_path(directory))
    arrays["run"] = np.array('{"args": ' + "[" * 100000 + "]" * 100000 + "}")
    np.savez(checkpoint_path(directory), **arrays)
    assert "nested deeper" in resume_error(directory, capsys)


@pytest.mark.parametrize("run", [{"args": []}, {"args": run_settings(), "augment_rng": {"bit_generator": "os"}},
                                 {"args": run_settings(), "augment_rng": [1, 2]}])
def test_a_bad_run_or_generator_state_is_one_line(tmp_path, capsys, run):
    resume_error(write(tmp_path / "ck", run=run), capsys)


def test_a_history_that_is_not_what_the_run_keeps_is_one_line(tmp_path, capsys):
    directory = write(tmp_path / "ck", history={"loss": [1.0]})              # no accuracy
    assert "history" in resume_error(directory, capsys)
    directory = write(tmp_path / "ck2", history={"loss": ["a"], "accuracy": [0.5]})
    assert "history" in resume_error(directory, capsys)


@pytest.mark.parametrize("change, says", [
    (lambda spec: spec.update(steps=2 ** 70), "steps"),
    (lambda spec: spec.update(steps="3"), "steps"),
    (lambda spec: spec.update(state=["x"] * 4), "state counts"),
    (lambda spec: spec.update(state=[10 ** 9] * 4), "state counts"),
    (lambda spec: spec.update(settings={"lr": "0.1"}), "lr"),
    (lambda spec: spec.update(settings={"lr": float("nan")}), "lr"),
    (lambda spec: spec.update(settings=[1]), "settings"),
    (lambda spec: spec.update(kind=["Adam"]), "unknown"),
])
def test_a_damaged_optimiser_spec_is_one_line(tmp_path, change, says):
    directory = write(tmp_path / "ck")
    arrays = modelfile.read_npz(checkpoint_path(directory))
    spec = json.loads(str(arrays["optimizer"]))
    change(spec)
    arrays["optimizer"] = np.array(json.dumps(spec))
    np.savez(checkpoint_path(directory), **arrays)
    with pytest.raises(pynn.ModelFileError, match=says) as e:
        load_checkpoint(directory)
    assert "\n" not in str(e.value)


def test_optimiser_state_inflating_beyond_its_shape_is_refused(tmp_path):
    directory = write(tmp_path / "ck")
    arrays = modelfile.read_npz(checkpoint_path(directory))
    arrays["opt0_0"] = np.zeros(1 << 22, np.float32)        # 16 MB where 48 bytes are needed
    arrays["unasked"] = np.zeros(3, np.float32)
    np.savez_compressed(checkpoint_path(directory), **arrays)
    with pytest.raises(pynn.ModelFileError, match="unasked"):
        load_checkpoint(directory)
    del arrays["unasked"]
    np.savez_compressed(checkpoint_path(directory), **arrays)
    with pytest.raises(pynn.ModelFileError, match="opt0_0 would inflate"):
        load_checkpoint(directory)


@pytest.mark.parametrize("kept, means", [(True, "full"), (False, None), ("mild", "mild")])
def test_augment_kept_as_true_or_false_by_older_checkpoints_still_reads(kept, means):
    assert cli.saved_settings({"augment": kept}, "ck") == {"augment": means}
