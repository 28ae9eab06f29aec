"""Commands never destroy: pynn writes a model only over a regular file (never a device, a
directory or a FIFO), a checkpoint never chooses where pynn writes, --resume refuses settings
that would silently be ignored, and temporary files left by a killed save are cleaned up."""
import fcntl
import json
import os
import stat
import time

import numpy as np
import pytest

import pynn
from pynn import cli, modelfile
from pynn.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

from run_settings import run_settings


def small_net():
    return pynn.Network([4, 3, 2], seed=0)


@pytest.fixture
def no_rename(monkeypatch):
    """os.replace made to fail loudly: a refusal that regressed must not replace anything."""
    def refuse(*args):
        raise AssertionError(f"os.replace{args} was reached")
    monkeypatch.setattr(modelfile.os, "replace", refuse)


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink to a fifo"])
def test_saving_over_what_is_no_regular_file_is_refused_and_leaves_it(tmp_path, kind):
    target = tmp_path / "out.npz"
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        os.mkfifo(tmp_path / "pipe")
        target.symlink_to(tmp_path / "pipe")
    mode = os.stat(target).st_mode
    with pytest.raises(pynn.ModelFileError, match="not a regular file") as e:
        small_net().save(target)
    assert "\n" not in str(e.value)
    assert os.stat(target).st_mode == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.npz"] + (["pipe"] if kind.startswith("symlink") else []))   # no temporary file


def test_saving_over_dev_null_is_refused_before_any_rename(no_rename):
    # as root the rename would replace the device node with a regular file
    with pytest.raises(pynn.ModelFileError, match="character device"):
        small_net().save("/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_pynn_train_refuses_an_out_that_is_no_regular_file_before_training(tmp_path, capsys, no_rename):
    for out in ("/dev/null", str(tmp_path)):
        assert cli.main(["train", "--out", out, "--dataset", "idx", "--data-dir", "/nonexistent"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a regular file" in err[0]


@pytest.mark.parametrize("out, says", [("", "names no file"), ("sub/", "names no file"),
                                       ("/proc/x.npz", "cannot be written"),
                                       ("/dev/null/x.npz", "cannot be written")])
def test_pynn_train_refuses_an_out_it_could_not_write_before_training(capsys, out, says):
    # the data directory does not exist: a refusal of --out must come before the data is read
    assert cli.main(["train", "--out", out, "--dataset", "idx", "--data-dir", "/nonexistent"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


def make_temp(directory, name, age=0.0):
    path = directory / name
    path.write_bytes(b"half a save")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_temporary_files_a_killed_save_left_are_removed_by_the_next_save(tmp_path):
    stale = make_temp(tmp_path, ".m.npz.abcd1234.tmp", age=3600)
    fresh = make_temp(tmp_path, ".m.npz.efgh5678.tmp")                  # maybe a save writing now
    locked = make_temp(tmp_path, ".m.npz.ijkl9012.tmp", age=3600)      # a save still writing
    others = [make_temp(tmp_path, name, age=3600) for name in
              (".other.npz.abcd1234.tmp", ".m.npz.tmp", ".m.npz.abcd12345.tmp", "m.npz.abcd1234.tmp")]
    with open(locked, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        small_net().save(tmp_path / "m.npz")
    assert not stale.exists()
    assert fresh.exists() and locked.exists() and all(p.exists() for p in others)
    assert pynn.load(tmp_path / "m.npz").sizes == [4, 3, 2]


def test_a_stale_temporary_that_is_no_regular_file_is_left_alone(tmp_path):
    os.mkfifo(tmp_path / ".m.npz.abcd1234.tmp")
    then = time.time() - 3600
    os.utime(tmp_path / ".m.npz.abcd1234.tmp", (then, then))
    small_net().save(tmp_path / "m.npz")
    assert stat.S_ISFIFO(os.stat(tmp_path / ".m.npz.abcd1234.tmp").st_mode)


# ---- --resume ----

def checkpoint(directory, **changes):
    net, opt = small_net(), pynn.SGD(lr=0.05, momentum=0.9)
    save_checkpoint(directory, net, opt, 0, {"loss": [1.0], "accuracy": [0.5]},
                    run={"args": run_settings(**changes), "augment_rng": None})
    return directory


def test_a_checkpoint_naming_an_output_never_chooses_where_pynn_writes(tmp_path, capsys, monkeypatch):
    victim = tmp_path / "victim.npz"
    victim.write_bytes(b"precious")
    ck = checkpoint(tmp_path / "ck", out=str(victim))
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["train", "--resume", str(ck)])
    args.given = cli.given_settings(["--resume", str(ck)])
    net, *_ = cli.resume_run(args)
    assert args.out == "model.npz"                      # the command line's default, not the file's
    assert "victim.npz" in capsys.readouterr().out      # said, not obeyed
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("option", [["--epochs", "5"], ["--batch-size", "7"], ["--lr", "0.5"],
                                    ["--arch", "4-5-2"], ["--augment"]])
def test_resume_refuses_a_setting_that_differs_from_the_checkpoints(tmp_path, capsys, option):
    ck = checkpoint(tmp_path / "ck")
    assert cli.main(["train", "--resume", str(ck), "--out", str(tmp_path / "b.npz"), *option]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option[0] in err[0] and "start a new run" in err[0]
    assert not (tmp_path / "b.npz").exists()


def test_resume_takes_a_setting_given_that_equals_the_checkpoints(tmp_path):
    ck = checkpoint(tmp_path / "ck")
    argv = ["--resume", str(ck), "--epochs", "3", "--out", "b.npz"]
    args = cli.build_parser().parse_args(["train", *argv])
    args.given = cli.given_settings(argv)
    assert args.given == {"epochs", "out"}
    cli.resume_run(args)
    assert args.epochs == 3 and args.out == "b.npz" and args.arch == [4, 3, 2]


def test_given_settings_tells_written_options_from_defaults():
    assert cli.given_settings([]) == set()
    assert cli.given_settings(["--epochs", "10", "--augment", "--lr=0.1"]) == {"epochs", "augment", "lr"}
    assert cli.given_settings(["--epoch", "10"]) == {"epochs"}            # argparse's abbreviation


def test_load_checkpoint_still_reads_what_it_wrote(tmp_path):
    ck = load_checkpoint(checkpoint(tmp_path / "ck"))
    assert ck.run["args"]["epochs"] == 3 and ck.epoch == 0
    with open(checkpoint_path(tmp_path / "ck"), "rb") as f:
        assert f.read(2) == b"PK"
    assert json.loads(json.dumps(ck.history)) == {"loss": [1.0], "accuracy": [0.5]}
    assert np.isfinite(ck.net.weights[0]).all()


def test_threads_saving_to_one_path_leave_one_whole_file_and_no_temporaries(tmp_path):
    # each save's temporary file is its own, locked while written: no thread's clean-up
    # removes another's, and the last rename wins whole
    import threading
    nets = [pynn.Network([6, 5, 3], seed=s) for s in range(4)]
    path = tmp_path / "m.npz"
    errors = []

    def saver(net):
        try:
            for _ in range(15):
                net.save(path)
        except Exception as e:           # noqa: BLE001 - any failure fails the test below
            errors.append(e)
    threads = [threading.Thread(target=saver, args=(net,)) for net in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    loaded = pynn.load(path)
    assert any(all(np.array_equal(a, b) for a, b in zip(loaded.weights, net.weights)) for net in nets)
    assert os.listdir(tmp_path) == ["m.npz"]
