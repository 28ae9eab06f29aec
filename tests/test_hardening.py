"""Hardening: wrong input gets a clear error, the C checks its sizes, model files are checked.

The property tests (random shapes, dtypes, layouts) live in tests/props and run in a child
process (tests/test_properties.py); the cases here are the specific ones worth naming.
"""
import numpy as np
import pytest

from pynn import ops


# ---- aliasing the network relies on ----

@pytest.mark.parametrize("fused", [ops.softmax_cross_entropy, ops.sigmoid_cross_entropy])
def test_fused_loss_is_the_same_when_probs_overwrite_the_logits(fused):
    # The network passes probs=logits to save a buffer; the loss must not read the
    # probabilities back as if they were logits.
    rng = np.random.default_rng(0)
    z = (3 * rng.normal(size=(6, 7))).astype(np.float32)
    t = np.eye(7, dtype=np.float32)[rng.integers(0, 7, size=6)]
    loss, probs = fused(z.copy(), t)
    z_alias = z.copy()
    loss_alias, probs_alias = fused(z_alias, t, probs=z_alias)
    assert loss_alias == loss
    assert np.array_equal(probs_alias, probs)


# ---- the caller's floating-point mode ----

def test_kernels_leave_the_callers_denormals_alone():
    # The kernels flush denormals for speed; the caller's own numpy arithmetic on the same
    # thread must still see them afterwards (a flushed 1e-40 would be a silent wrong answer).
    a = np.ones((300, 300), dtype=np.float32)          # big enough for the threaded path
    for call in (lambda: ops.matmul(a, a), lambda: ops.matmul(a[:2], a[:, :2].copy()),
                 lambda: ops.matmul(a, a, reference=True)):
        call()
        assert np.float32(1e-40) * np.float32(1.0) != 0.0
        assert np.float32(1e-39) / np.float32(2.0) != 0.0


def test_training_and_inference_leave_the_callers_denormals_alone():
    import pynn
    X = np.random.default_rng(0).random((300, 64), dtype=np.float32)
    net = pynn.Network([64, 128, 10])
    for call in (lambda: net.fit(X, np.arange(300) % 10, epochs=1),
                 lambda: net.predict_proba(X), lambda: net.gradients(X[:5], np.arange(5))):
        call()
        assert np.float32(1e-40) * np.float32(1.0) != 0.0


# ---- model files: every kind of damage is one line, and nothing is unpickled ----

import json  # noqa: E402
import pickle  # noqa: E402
import zipfile  # noqa: E402

import pynn  # noqa: E402
from pynn import modelfile  # noqa: E402
from pynn.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402


def saved_model(tmp_path):
    net = pynn.Network([6, 5, 3], seed=1)
    path = tmp_path / "m.npz"
    net.save(path)
    return net, path


def assert_one_line_refusal(load, path):
    with pytest.raises(pynn.ModelFileError) as e:
        load(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_model_cut_anywhere_is_refused_in_one_line(tmp_path):
    net, path = saved_model(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    for n in list(range(0, len(data), max(1, len(data) // 97))) + [len(data) - 1]:
        cut.write_bytes(data[:n])
        assert_one_line_refusal(pynn.load, cut)


def test_flipped_bytes_are_refused_or_harmless(tmp_path):
    # Any byte changed: the load refuses in one line, or (the byte was in a part nothing reads)
    # gives back exactly the saved parameters. Never another exception, never other weights.
    net, path = saved_model(tmp_path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    bad = tmp_path / "flipped.npz"
    refused = 0
    for pos in rng.choice(len(data), size=300, replace=False):
        damaged = bytearray(data)
        damaged[pos] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(bytes(damaged))
        try:
            loaded = pynn.load(bad)
        except pynn.ModelFileError as e:
            assert "\n" not in str(e)
            refused += 1
            continue
        for a, b in zip(loaded.weights + loaded.biases, net.weights + net.biases):
            assert np.array_equal(a, b), f"byte {pos} changed the weights without an error"
    assert refused > 150


class Marker:
    """Unpickling this creates a file: proof that something was unpickled."""
    path = None

    def __reduce__(self):
        return (open, (str(Marker.path), "w"))


def test_nothing_is_ever_unpickled(tmp_path):
    Marker.path = tmp_path / "unpickled"
    raw = tmp_path / "raw.npz"                 # a bare pickle with a model's name
    raw.write_bytes(pickle.dumps({"W0": Marker()}))
    inside = tmp_path / "inside.npz"           # an object array inside a real .npz
    arrays = modelfile.network_arrays(pynn.Network([6, 5, 3]))
    arrays["W0"] = np.array([Marker()], dtype=object)
    np.savez(inside, **arrays)
    for path in (raw, inside):
        assert "pickle" in assert_one_line_refusal(pynn.load, path)
    assert not Marker.path.exists()


def test_other_files_that_are_not_models(tmp_path):
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros(3, np.float32))
    assert ".npy" in assert_one_line_refusal(pynn.load, npy)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert_one_line_refusal(pynn.load, empty)
    assert_one_line_refusal(pynn.load, tmp_path)          # a directory
    text = tmp_path / "zip_of_text.npz"
    with zipfile.ZipFile(text, "w") as z:
        z.writestr("readme.txt", "hello")
    assert_one_line_refusal(pynn.load, text)


def test_an_architecture_far_larger_than_the_file_is_refused_before_allocating(tmp_path):
    # A damaged architecture asking for 10^5 x 10^5 layers must not try to allocate 80 GB.
    arrays = modelfile.network_arrays(pynn.Network([6, 5, 3]))
    arrays["format_version"] = np.array(1)
    arrays["architecture"] = np.array(json.dumps({"sizes": [100000, 100000, 3], "activation": "relu",
                                                  "output": "softmax", "loss": "cross_entropy"}))
    path = tmp_path / "huge.npz"
    np.savez(path, **arrays)
    assert "W0" in assert_one_line_refusal(pynn.load, path)
    # the same in the format of layers
    arrays["format_version"] = np.array(2)
    arrays["architecture"] = np.array(json.dumps({
        "layers": [{"type": "Linear", "n_in": 100000, "n_out": 100000}, {"type": "ReLU"},
                   {"type": "Linear", "n_in": 100000, "n_out": 3}],
        "input_shape": [100000], "output": "softmax", "loss": "cross_entropy"}))
    np.savez(path, **arrays)
    assert "W0" in assert_one_line_refusal(pynn.load, path)


def test_damaged_checkpoints_are_refused_in_one_line(tmp_path):
    net, opt = pynn.Network([6, 5, 3], seed=1), pynn.SGD(lr=0.1, momentum=0.9)
    X = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    net.fit(X, np.arange(20) % 3, epochs=1, optimizer=opt)
    save_checkpoint(tmp_path, net, opt, 0, {"loss": [1.0]})
    path = tmp_path / "checkpoint.npz"
    good = modelfile.read_npz(path)

    def damaged(**changes):
        arrays = {**good, **changes}
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
        return assert_one_line_refusal(load_checkpoint, tmp_path)

    assert "version 7" in damaged(checkpoint_version=np.array(7))
    assert "not a pynn checkpoint" in damaged(checkpoint_version=None)
    assert "rng_state" in damaged(rng_state=np.array("{not json"))
    assert "bit generator" in damaged(rng_state=np.array(json.dumps({"bit_generator": "os.system"})))
    assert "optimizer" in damaged(optimizer=np.array(json.dumps({"kind": "Network", "settings": {},
                                                                  "steps": 1, "state": []})))
    assert "opt0_0" in damaged(opt0_0=np.zeros((2, 2), np.float32))
    assert "opt1_0" in damaged(opt1_0=None)
    assert "NaN" in damaged(opt2_0=np.full((3, 5), np.nan, np.float32))
    assert "history" in damaged(history=np.array("[1, 2]"))
    assert "W1" in damaged(W1=np.zeros((5, 3), np.float32))
    (tmp_path / "checkpoint.npz").unlink()
    assert "no such file" in assert_one_line_refusal(load_checkpoint, tmp_path)


# ---- data files: any damage to an IDX file or its gzip is an IdxError, or harmless ----

import gzip  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pynn import idx  # noqa: E402

IDX_DTYPES = [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"]


@st.composite
def idx_bytes(draw):
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    dtype = np.dtype(draw(st.sampled_from(IDX_DTYPES)))
    array = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    return idx.encode(array)


def damage(draw, data):
    how = draw(st.sampled_from(["cut", "flip", "append", "dims"]))
    data = bytearray(data)
    if how == "cut":
        return bytes(data[:draw(st.integers(0, max(0, len(data) - 1)))])
    if how == "flip" and data:
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] ^= 1 << draw(st.integers(0, 7))
    if how == "append":
        data += bytes(draw(st.integers(1, 9)))
    if how == "dims" and len(data) >= 8:   # a dimension count anywhere up to 2^32 - 1
        data[4:8] = draw(st.integers(0, 2 ** 32 - 1)).to_bytes(4, "big")
    return bytes(data)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(idx_bytes(), st.data())
def test_damaged_idx_bytes_are_refused_or_read_back_exactly(data, draw):
    damaged = damage(draw.draw, data)
    try:
        array = idx.parse(damaged, "f.idx")
    except idx.IdxError as e:
        assert "\n" not in str(e) and str(e).startswith("f.idx: ")
        return
    assert idx.encode(array.astype(array.dtype.newbyteorder(">"))) == damaged


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(idx_bytes(), st.data())
def test_damaged_gzip_is_refused_or_decodes(tmp_path_factory, data, draw):
    path = tmp_path_factory.mktemp("gz") / "f-idx1-ubyte.gz"
    path.write_bytes(damage(draw.draw, gzip.compress(data)))
    try:
        idx.parse(idx.read_bytes(path), str(path))
    except idx.IdxError as e:
        assert "\n" not in str(e) and str(path) in str(e)


def test_dimensions_whose_product_wraps_around_int64_are_refused():
    # 65536^4 = 2^64 elements would wrap to 0 in int64 and match an empty body
    header = bytes([0, 0, 0x08, 4]) + (65536).to_bytes(4, "big") * 4
    with pytest.raises(idx.IdxError, match="truncated"):
        idx.parse(header, "wrap.idx")


def test_the_command_line_says_what_is_wrong_with_a_model_in_one_line(tmp_path):
    import subprocess
    import sys
    net, path = saved_model(tmp_path)
    data = path.read_bytes()
    cases = {"cut.npz": data[:len(data) // 2], "junk.npz": b"not a model", "empty.npz": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        proc = subprocess.run([sys.executable, "-m", "pynn", "eval", str(tmp_path / name)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in proc.stderr, proc.stderr


# ---- found by attacking the project again (issue 15's families, cases beyond its examples) ----

def test_stroke_lengths_whose_sum_wraps_around_int64_are_refused():
    # four strokes of 2**62 points each add up to 2 in int64: the C rasteriser, trusting the
    # sum, would read far beyond the two points there are
    canvas = np.zeros((8, 8), np.float32)
    xy = np.zeros((2, 2), np.float32)
    for lengths in ([2 ** 62, 2 ** 62, 2 ** 62, 2 ** 62 + 2], [2 ** 63 - 1, 2 ** 63 - 1, 4], [3, -1]):
        with pytest.raises(ValueError, match="lengths"):
            ops.raster_strokes(canvas, xy, np.array(lengths, np.int64))
    assert not canvas.any()


def test_saving_a_network_holding_nan_leaves_the_old_file(tmp_path):
    net, path = saved_model(tmp_path)
    before = path.read_bytes()
    broken = pynn.Network([6, 5, 3], seed=2)
    broken.weights[1][0, 0] = np.nan
    with pytest.raises(ValueError, match="W1 holds NaN"):
        broken.save(path)
    assert path.read_bytes() == before and pynn.load(path).sizes == [6, 5, 3]


def test_extra_arrays_cannot_take_the_networks_names(tmp_path):
    net = pynn.Network([6, 5, 3], seed=1)
    with pytest.raises(ValueError, match="W0"):
        modelfile.save(net, tmp_path / "m.npz", extra={"W0": np.zeros((5, 6), np.float32)})
    assert not (tmp_path / "m.npz").exists()


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["sigmoid", "relu", "tanh", "softmax", "linear"]),
       st.integers(1, 6), st.integers(1, 6), st.integers(-12, 12), st.booleans())
def test_an_output_anywhere_over_the_input_is_refused_or_gives_the_fresh_answer(kind, B, n, shift, back):
    # element-wise kernels and row-wise softmax: writing over the input exactly is allowed and
    # exact; any other overlap is refused; no overlap gives the fresh answer
    size = B * n
    data = (np.random.default_rng(size + shift + 12).uniform(-2, 2, size + 2 * 12)).astype(np.float32)
    x = data[12:12 + size].reshape(B, n)
    out = data[12 + shift:12 + shift + size].reshape(B, n)
    dout = np.linspace(-1, 1, size, dtype=np.float32).reshape(B, n)
    x_copy = x.copy()
    expected = (ops.activation_backward(kind, x_copy, dout) if back
                else ops.activation_forward(kind, x_copy))
    try:
        got = (ops.activation_backward(kind, x, dout, dinp=out) if back
               else ops.activation_forward(kind, x, out=out))
    except ValueError as e:
        assert "overlap" in str(e) and shift != 0 and abs(shift) < size
        assert np.array_equal(x, x_copy)            # refused before anything was written
        return
    assert shift == 0 or abs(shift) >= size
    assert np.array_equal(got, expected)


from pynn import cli  # noqa: E402

JSON_LEAVES = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats()
               | st.text(max_size=12) | st.sampled_from(["relu", "softmax", "Adam", "PCG64", "cosine"]))
JSON_KEYS = st.sampled_from(["kind", "settings", "steps", "state", "bit_generator", "loss", "accuracy",
                             "args", "lr", "sizes", "activation"])
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(JSON_KEYS, inner, max_size=4), max_leaves=12)
ODD_ARRAYS = st.sampled_from([np.array(1), np.array(-1), np.array(2 ** 62), np.array(1.5),
                              np.array([1, 2]), np.zeros(3, np.float32), np.array("x"), np.array(True)])


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(st.sampled_from(["checkpoint_version", "epoch", "rng_state", "dropout_state",
                                        "history", "optimizer", "run", "architecture", "opt0_0"]),
                       JSON_VALUES.map(lambda v: np.array(json.dumps(v))) | ODD_ARRAYS, max_size=3))
def test_any_value_in_any_part_of_a_checkpoint_loads_or_is_one_line(tmp_path_factory, changes):
    directory = tmp_path_factory.mktemp("ck")
    net, opt = pynn.Network([4, 3, 2], seed=0), pynn.Adam(lr=0.01)
    opt.fused([p for pair in zip(net.weights, net.biases) for p in pair])
    save_checkpoint(directory, net, opt, 0, {"loss": [1.0], "accuracy": [0.5]}, run={"args": {}})
    path = directory / "checkpoint.npz"
    np.savez(path, **{**modelfile.read_npz(path), **changes})
    try:
        load_checkpoint(directory)
    except pynn.ModelFileError as e:
        assert "\n" not in str(e) and str(path) in str(e)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(sorted(cli.SETTING_TYPES) + ["unknown"]), JSON_VALUES)
def test_any_saved_run_setting_is_taken_as_the_command_line_would_or_is_one_line(key, value):
    settings_ = {**vars(cli.build_parser().parse_args(["train"])), key: value}
    settings_ = {k: v for k, v in settings_.items() if k in cli.SETTING_TYPES or k == key}
    try:
        checked = cli.saved_settings(settings_, "ck/checkpoint.npz")
    except cli.UserError as e:
        assert "\n" not in str(e) and "ck/checkpoint.npz" in str(e)
        return
    assert checked[key] == value or key == "arch"
