"""A model file is hostile until checked: whatever it holds, loading it ends in the network or
in one line naming the file (from pynn.load, pynn eval and pynn predict), with memory bounded
by what the architecture needs, never by what the file claims."""
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import pynn
from pynn import modelfile


def arrays(**changes):
    a = modelfile.network_arrays(pynn.Network([4, 3, 2], seed=0))
    if "sizes" in str(changes.get("architecture", "")):
        a["format_version"] = np.array(1)          # the first format: widths and one activation
    a.update(changes)
    return {k: v for k, v in a.items() if v is not None}


def architecture_text(sizes_json):
    return ('{"sizes": ' + sizes_json + ', "activation": "relu", "output": "softmax", '
            '"loss": "cross_entropy"}')


def write(path, **changes):
    np.savez(path, **arrays(**changes))
    return path


def one_line(path, load=pynn.load):
    with pytest.raises(pynn.ModelFileError) as e:
        load(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    return message


def pynn_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "pynn", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("sizes", ["[4, Infinity, 2]", "[4, 1e400, 2]", "[4, NaN, 2]",
                                   "[4, 3.5, 2]", "[4, true, 2]", "Infinity", '{"a": 1}',
                                   "[4, " + "[" * 100000 + "]" * 100000 + ", 2]"])
def test_sizes_that_are_no_widths_are_one_line(tmp_path, sizes):
    path = write(tmp_path / "m.npz", architecture=np.array(architecture_text(sizes)))
    assert "bad architecture" in one_line(path)


def test_json_nested_100000_deep_is_one_line(tmp_path):
    path = write(tmp_path / "deep.npz", architecture=np.array("[" * 100000 + "]" * 100000))
    assert "nested deeper" in one_line(path)


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_the_commands_say_it_in_one_line_too(tmp_path, command):
    path = write(tmp_path / "inf.npz", architecture=np.array(architecture_text("[784, 1e400, 10]")))
    deep = write(tmp_path / "deep.npz", architecture=np.array("[" * 100000 + "]" * 100000))
    image = tmp_path / "digit.pgm"
    image.write_bytes(b"P5 2 2 255\n" + bytes(4))
    for model in (path, deep):
        proc = pynn_cli(command, model, *([image] if command == "predict" else []))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and model.name in lines[0], proc.stderr


def zip_with(path, members):
    """An .npz written member by member (name -> bytes of an .npy), compressed."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)
    return path


def npy_bytes(array):
    import io as stdio
    buf = stdio.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_a_member_that_would_inflate_far_beyond_its_shape_is_refused_before_inflating(tmp_path):
    # W0 needs 48 bytes; this one inflates to 256 MB of zeros (about 250 KB compressed)
    members = {k: npy_bytes(v) for k, v in arrays().items()}
    members["W0"] = npy_bytes(np.zeros((3, 4), np.float32))[:-48] + bytes(256 << 20)
    path = zip_with(tmp_path / "bomb.npz", members)
    assert os.path.getsize(path) < 2 << 20
    tracemalloc.start()
    try:
        message = one_line(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "W0" in message and "inflate" in message
    assert peak < 16 << 20, f"{peak} bytes allocated to refuse it"


def test_a_header_claiming_another_shape_than_its_size_is_refused(tmp_path):
    members = {k: npy_bytes(v) for k, v in arrays().items()}
    header = npy_bytes(np.zeros((3, 4), np.float32))[:-48]
    members["W0"] = header.replace(b"(3, 4)", b"(4, 3)")[:len(header)] + bytes(48)
    path = zip_with(tmp_path / "lie.npz", members)
    assert "W0" in one_line(path)
    members["b0"] = npy_bytes(np.zeros(3, np.float32))[:-4]             # data cut short
    members["W0"] = npy_bytes(np.zeros((3, 4), np.float32))
    path = zip_with(tmp_path / "short.npz", members)
    assert "b0" in one_line(path)


def test_a_zip_directory_of_more_members_than_any_pynn_file_is_refused_before_it_is_read(tmp_path):
    # zipfile reads every entry of the central directory when it opens an archive: 200,000
    # empty members take seconds and 100 MB before anything else can be checked
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(modelfile.MAX_MEMBERS + 1):
            z.writestr(f"m{i}.npy", b"")
    assert "members" in one_line(path)
    assert "members" in one_line(path, load=modelfile.read_npz)


def test_a_member_nobody_asked_for_is_refused(tmp_path):
    path = write(tmp_path / "extra.npz", W7=np.zeros(3, np.float32), payload=np.zeros(10, np.uint8))
    message = one_line(path)
    assert "nobody asked for" in message and "W7" in message and "payload" in message


def test_a_checkpoint_given_as_a_model_says_what_it_is(tmp_path):
    from pynn.checkpoint import save_checkpoint
    path = save_checkpoint(tmp_path, pynn.Network([4, 3, 2]), pynn.SGD(), 0, {"loss": [1.0]})
    assert "a checkpoint, not a model" in one_line(path)


def test_the_pads_taught_drawings_are_allowed_in_a_model_file_and_left_unread(tmp_path):
    path = write(tmp_path / "pad.npz", taught_images=np.zeros((2, 28, 28), np.float32),
                 taught_labels=np.array([1, 2]))
    assert pynn.load(path).sizes == [4, 3, 2]


def test_fortran_ordered_parameters_load_with_their_values(tmp_path):
    net = pynn.Network([4, 3, 2], seed=3)
    a = modelfile.network_arrays(net)
    a["W0"] = np.asfortranarray(a["W0"])
    np.savez(tmp_path / "f.npz", **a)
    back = pynn.load(tmp_path / "f.npz")
    assert np.array_equal(back.weights[0], net.weights[0]) and back.weights[0].flags.c_contiguous


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_model_path_that_is_no_regular_file_is_refused_at_once(tmp_path, kind):
    path = {"fifo": tmp_path / "pipe.npz", "device": "/dev/zero", "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    # in a child with a time limit: a FIFO opened for reading blocks until a writer comes
    for args in (["eval", path], ["predict", path, path]):
        proc = pynn_cli(*args, timeout=30)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and "not a regular file" in lines[0], proc.stderr


def test_a_model_file_damaged_at_random_is_refused_or_exact(tmp_path):
    # every kind of member damage the reader meets, through hypothesis-like random bytes
    rng = np.random.default_rng(1)
    net = pynn.Network([6, 5, 3], seed=1)
    good = tmp_path / "good.npz"
    net.save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.npz"
    for _ in range(200):
        damaged = bytearray(data)
        for pos in rng.choice(len(data), size=int(rng.integers(1, 5)), replace=False):
            damaged[pos] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(damaged))
        try:
            back = pynn.load(bad)
        except pynn.ModelFileError as e:
            assert "\n" not in str(e)
            continue
        for x, y in zip(back.weights + back.biases, net.weights + net.biases):
            assert np.array_equal(x, y)


def test_parse_json_bounds_length_and_depth():
    assert modelfile.parse_json('{"a": [1, [2, [3]]]}') == {"a": [1, [2, [3]]]}
    with pytest.raises(ValueError, match="nested deeper than 3"):
        modelfile.parse_json("[[[[1]]]]", max_depth=3)
    with pytest.raises(ValueError, match="more than 10"):
        modelfile.parse_json("[" + "1," * 10 + "1]", max_chars=10)
    with pytest.raises(ValueError, match="nested deeper"):
        modelfile.parse_json("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="not JSON"):
        modelfile.parse_json("{")


def test_an_architecture_needing_more_than_the_file_is_refused_naming_the_member(tmp_path):
    path = write(tmp_path / "huge.npz", architecture=np.array(json.dumps({
        "sizes": [4, 3000000, 2], "activation": "relu", "output": "softmax", "loss": "cross_entropy"})))
    assert "W0" in one_line(path)


@pytest.mark.parametrize("members, says", [
    ({"images": np.zeros((2, 28, 28), np.uint8), "labels": np.zeros(2, np.int64),
      "bomb": np.zeros(10, np.uint8)}, "it holds bomb, which it should not"),
    ({"images": np.zeros((2, 28, 28), np.uint8)}, "it lacks labels"),
])
def test_a_replay_set_with_other_members_is_refused_unread(tmp_path, members, says):
    from pynn import adapt
    path = tmp_path / "replay.npz"
    np.savez(path, **members)
    assert says in one_line(path, load=adapt.replay_set.__wrapped__)
    good = tmp_path / "good.npz"
    np.savez(good, images=np.full((2, 28, 28), 128, np.uint8), labels=np.array([3, 5]))
    X, y = adapt.replay_set.__wrapped__(good)
    np.testing.assert_array_equal(y, [3, 5])
    np.testing.assert_allclose(X, 128 / 255, rtol=1e-6)
