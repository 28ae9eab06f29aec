"""ONNX: the graph pynn writes (pynn.onnx_io, Network.to_onnx, ``pynn export``) gives, in
onnxruntime, the probabilities pynn gives on real MNIST test digits; pynn reads it back to the
same network; what ONNX or pynn cannot express is refused with one line saying what."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import pynn  # noqa: E402
from pynn import layers, ops  # noqa: E402
from pynn.layers import Dropout, Flatten, Layer, Linear, ReLU, Sigmoid, Tanh  # noqa: E402
from pynn.onnx_io import from_onnx, to_onnx  # noqa: E402

needs_conv = pytest.mark.skipif(not hasattr(layers, "Conv2d"),
                                reason="pynn.layers has no Conv2d yet")


@pytest.fixture(scope="module")
def digits(mnist):
    """The first 500 MNIST test digits as float32 in 0..1 (pynn's own scaling), and labels."""
    X, y = mnist.test
    return ops.scale_u8(np.ascontiguousarray(X[:500])), y[:500].astype(np.int64)


@pytest.fixture(scope="module")
def train_set(mnist):
    X, y = mnist.train
    return np.ascontiguousarray(X[:2000]), y[:2000].astype(np.int64)


def onnxruntime_output(path, net, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": X.reshape(len(X), *net.input_shape)})
    return out


def assert_onnxruntime_agrees(net, digits, path):
    """onnxruntime's output for the test digits is pynn's within 1e-5, and so is every
    predicted digit; returns pynn's output."""
    X, y = digits
    net.to_onnx(path)
    theirs = onnxruntime_output(path, net, X)
    ours = net.predict_proba(X)
    assert theirs.shape == ours.shape == (len(X), net.n_out) and theirs.dtype == np.float32
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5)
    assert np.array_equal(theirs.argmax(axis=1), net.predict(X))
    return ours


def assert_round_trip(net, digits, path):
    """The network read back from ``path`` gives bit for bit the same output, and has the same
    layers (less Dropout, which the graph leaves out)."""
    X, _ = digits
    again = pynn.load(path)
    assert again.input_shape == net.input_shape
    assert (again.output, again.loss) == (net.output, net.loss)
    assert repr(again.layers) == repr([x for x in net.layers if not isinstance(x, Dropout)])
    assert np.array_equal(again.predict_proba(X), net.predict_proba(X))


# ---- what onnxruntime makes of the graphs ----

def test_a_dense_network_gives_the_same_probabilities_in_onnxruntime(digits, train_set, tmp_path):
    net = pynn.Network([784, 64, 32, 10], activation="relu", seed=3)
    net.fit(*train_set, epochs=1, batch_size=32, optimizer=pynn.SGD(lr=0.05, momentum=0.9))
    ours = assert_onnxruntime_agrees(net, digits, tmp_path / "dense.onnx")
    assert ours.max(axis=1).mean() > 0.7          # trained: the digits are told apart
    assert_round_trip(net, digits, tmp_path / "dense.onnx")


def test_the_shipped_model_gives_the_same_probabilities_in_onnxruntime(digits, tmp_path):
    net = pynn.load_default()
    ours = assert_onnxruntime_agrees(net, digits, tmp_path / "default.onnx")
    assert np.mean(ours.argmax(axis=1) == digits[1]) > 0.97
    assert_round_trip(net, digits, tmp_path / "default.onnx")


@pytest.mark.parametrize("output, loss", [("softmax", "cross_entropy"),
                                          ("sigmoid", "cross_entropy"),
                                          ("linear", "quadratic")])
def test_a_mixed_layer_list_gives_the_same_output_in_onnxruntime(output, loss, digits,
                                                                  train_set, tmp_path):
    net = pynn.Network([Flatten(), Linear(784, 48), Tanh(), Dropout(0.3), Linear(48, 24),
                        Sigmoid(), Linear(24, 16), ReLU(), Linear(16, 10)],
                       output=output, loss=loss, input_shape=(1, 28, 28), seed=5)
    net.fit(*train_set, epochs=1, batch_size=32, optimizer=pynn.SGD(lr=0.05, momentum=0.9))
    assert_onnxruntime_agrees(net, digits, tmp_path / "mixed.onnx")
    assert_round_trip(net, digits, tmp_path / "mixed.onnx")


@needs_conv
@pytest.mark.parametrize("pool", [2, 3])           # 3 does not divide 28: the floor drops a row
def test_a_convolutional_network_gives_the_same_probabilities_in_onnxruntime(
        pool, digits, train_set, tmp_path):
    from pynn.layers import Conv2d, MaxPool2d
    side = (28 // pool + 2 - 3) // 2 + 1
    net = pynn.Network([Conv2d(1, 4, 5, padding=2), ReLU(), MaxPool2d(pool),
                        Conv2d(4, 6, 3, stride=2, padding=1), Tanh(), Flatten(),
                        Linear(6 * side * side, 10)], input_shape=(1, 28, 28), seed=2)
    X, y = train_set
    net.fit(X[:500], y[:500], epochs=1, batch_size=32, optimizer=pynn.SGD(lr=0.05, momentum=0.9))
    assert_onnxruntime_agrees(net, digits, tmp_path / "conv.onnx")
    ops_in_graph = [n.op_type for n in onnx.load(tmp_path / "conv.onnx").graph.node]
    assert ops_in_graph == ["Conv", "Relu", "MaxPool", "Conv", "Tanh", "Flatten", "Gemm", "Softmax"]
    assert_round_trip(net, digits, tmp_path / "conv.onnx")


@needs_conv
def test_a_network_ending_in_images_gives_them_one_row_a_sample(digits, tmp_path):
    """pynn gives the last layer's output as one row a sample; the graph flattens it too."""
    from pynn.layers import Conv2d, MaxPool2d
    net = pynn.Network([Conv2d(1, 2, 5, stride=3), Sigmoid(), MaxPool2d(2), Conv2d(2, 3, 3)],
                       output="linear", loss="quadratic", input_shape=(1, 28, 28), seed=4)
    assert net.n_out == 3 * 2 * 2
    assert_onnxruntime_agrees(net, digits, tmp_path / "images.onnx")
    again = pynn.load(tmp_path / "images.onnx")
    assert repr(again.layers) == repr(net.layers + [Flatten()])
    assert np.array_equal(again.predict_proba(digits[0]), net.predict_proba(digits[0]))


def test_the_graph_is_the_standard_one_with_a_free_batch_size(digits, tmp_path):
    net = pynn.Network([784, 512, 10], seed=1)
    net.to_onnx(tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    assert [n.op_type for n in graph.node] == ["Gemm", "Relu", "Gemm", "Softmax"]
    (given,), (result,) = graph.input, graph.output
    assert given.name == "input" and result.name == "probabilities"
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(given) == ["N", 784] and dims(result) == ["N", 10]
    X, _ = digits
    for n in (1, 7):
        np.testing.assert_allclose(onnxruntime_output(tmp_path / "m.onnx", net, X[:n]),
                                   net.predict_proba(X[:n]), rtol=0, atol=1e-5)


def test_a_matmul_and_add_graph_reads_as_the_same_network(digits, tmp_path):
    """The other common way to write a dense layer (W stored (n_in, n_out), then a bias
    added, the logits' softmax over the last axis) reads as the layers it stands for."""
    net = pynn.Network([784, 512, 10], seed=1)
    nodes, weights, x = [], [], "pixels"
    for k, (W, b) in enumerate(zip(net.weights, net.biases)):
        weights += [numpy_helper.from_array(np.ascontiguousarray(W.T), f"w{k}"),
                    numpy_helper.from_array(b, f"c{k}")]
        nodes += [helper.make_node("MatMul", [x, f"w{k}"], [f"m{k}"]),
                  helper.make_node("Add", [f"c{k}", f"m{k}"], [f"z{k}"])]
        x = f"z{k}"
        if k < len(net.weights) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"a{k}"]))
            x = f"a{k}"
    nodes.append(helper.make_node("Softmax", [x], ["p"], axis=-1))
    graph = helper.make_graph(nodes, "by hand",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["B", 784])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["B", 10])],
                              initializer=weights)
    onnx.save(helper.make_model(graph), tmp_path / "hand.onnx")
    again = from_onnx(tmp_path / "hand.onnx")
    assert repr(again) == repr(net)
    X, _ = digits
    assert np.array_equal(again.predict_proba(X), net.predict_proba(X))


# ---- what cannot be written or read ----

class Square(Layer):
    """A layer of pynn's kind that ONNX export does not know."""

    def forward(self, x, out, tape):
        np.multiply(x, x, out=out)


class LeakyReLU(ReLU):
    """A subclass of a known layer may compute something else: it is not exported as that."""


@pytest.mark.parametrize("odd", [Square(), LeakyReLU()])
def test_a_layer_onnx_export_does_not_know_is_named(odd, tmp_path):
    net = pynn.Network([Linear(784, 16), odd, Linear(16, 10)])
    with pytest.raises(ValueError, match=rf"layer 1 \({type(odd).__name__}\(\)\) has no ONNX form"):
        net.to_onnx(tmp_path / "odd.onnx")
    assert not os.listdir(tmp_path)


def save_graph(path, nodes, inputs, weights=(), output="y", shape=("N", 784)):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
                     for name in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], initializer=list(weights))
    onnx.save(helper.make_model(graph), path)
    return path


W = numpy_helper.from_array(np.zeros((10, 784), np.float32), "W")
b = numpy_helper.from_array(np.zeros(10, np.float32), "b")
GEMM = helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1)


@pytest.mark.parametrize("nodes, inputs, weights, output, shape, says", [
    ([GEMM, helper.make_node("LeakyRelu", ["z"], ["y"])], ["x"], [W, b], "y", ("N", 784),
     "node 1 (LeakyRelu) is not one pynn reads"),
    ([GEMM, helper.make_node("Softmax", ["z"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
     ["x"], [W, b], "y", ("N", 784), "node 1 (Softmax): pynn reads a softmax only as the last"),
    ([helper.make_node("Add", ["x", "x2"], ["a"]), helper.make_node("Gemm", ["a", "W", "b"], ["y"])],
     ["x", "x2"], [W, b], "y", ("N", 784), "graphs of one input and one output, this one has 2"),
    ([GEMM, helper.make_node("Relu", ["x"], ["y"])], ["x"], [W, b], "y", ("N", 784),
     "node 1 (Relu) does not take the previous node's output"),
    ([helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1, alpha=2.0)], ["x"], [W, b], "y",
     ("N", 784), "Gemm node 0 scales or transposes its input"),
    ([helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], ["x"], [W, b], "y", ("N", "F"),
     "input 'x' must be a batch of samples of a fixed shape"),
    ([helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], ["x"], [W, b], "y", ("N", 100),
     "bad architecture"),
    ([helper.make_node("Gemm", ["x", "W", "x"], ["y"], transB=1)], ["x"], [W], "y", ("N", 784),
     "input 2 is not a stored tensor"),
])
def test_a_graph_pynn_cannot_read_is_refused_in_one_line(nodes, inputs, weights, output, shape,
                                                         says, tmp_path):
    path = save_graph(tmp_path / "g.onnx", nodes, inputs, weights, output, shape)
    with pytest.raises(pynn.ModelFileError, match=re.escape(says)) as error:
        pynn.load(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_a_damaged_missing_or_unreadable_onnx_file_is_refused_in_one_line(tmp_path):
    net = pynn.load_default()
    net.to_onnx(tmp_path / "m.onnx")
    data = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.onnx").write_text("not a model at all\n")
    os.mkfifo(tmp_path / "pipe.onnx")                    # a read would wait for a writer
    for name, says in [("cut.onnx", "not an ONNX model"), ("text.onnx", "not an ONNX model"),
                       ("missing.onnx", "no such file"), ("pipe.onnx", "a FIFO, not a regular file"),
                       (".", "a directory, not a regular file")]:
        with pytest.raises(pynn.ModelFileError, match=says) as error:
            from_onnx(tmp_path / name)
        assert "\n" not in str(error.value)


def test_a_graph_longer_than_any_network_is_refused_before_it_is_walked(tmp_path):
    from pynn.network import MAX_LAYER_LIST
    n = 2 * MAX_LAYER_LIST + 1
    nodes = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"]) for i in range(n)]
    path = save_graph(tmp_path / "long.onnx", nodes, ["t0"], output=f"t{n}")
    with pytest.raises(pynn.ModelFileError, match=f"{n} nodes, more than a pynn network"):
        from_onnx(path)


def test_a_tensor_kept_in_another_file_is_not_read(tmp_path):
    """ONNX lets a tensor's bytes live in a file the model names; pynn opens no such path."""
    (tmp_path / "secret").write_bytes(np.zeros(7850, np.float32).tobytes())
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[10, 784])
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="secret")
    path = save_graph(tmp_path / "g.onnx", [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)],
                      ["x"], [weight, b])
    with pytest.raises(pynn.ModelFileError, match="tensor 'W' keeps its data in another file"):
        from_onnx(path)


def test_to_onnx_replaces_an_old_file_and_leaves_no_temporary_behind(tmp_path):
    """to_onnx writes through pynn.modelfile.atomic_write: over an old file, nothing else is left."""
    net = pynn.load_default()
    (tmp_path / "m.onnx").write_bytes(b"old")
    to_onnx(net, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == ["m.onnx"] and onnx.load(tmp_path / "m.onnx").graph.node


# ---- the command ----

def run(*args, code=None):
    command = [sys.executable, "-m", "pynn", *map(str, args)] if code is None else \
        [sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


MODEL = os.path.join(os.path.dirname(pynn.__file__), "models", "default.npz")


def test_pynn_export_writes_the_graph_onnxruntime_reads(digits, tmp_path):
    result = run("export", MODEL, tmp_path / "default.onnx")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"saved {tmp_path / 'default.onnx'} (ONNX)")
    net = pynn.load_default()
    X, _ = digits
    np.testing.assert_allclose(onnxruntime_output(tmp_path / "default.onnx", net, X),
                               net.predict_proba(X), rtol=0, atol=1e-5)
    result = run("eval", tmp_path / "default.onnx", "--limit", 100)   # pynn reads it back
    assert result.returncode == 0 and "test error" in result.stdout, result.stderr


WITHOUT_ONNX = "import sys; sys.modules['onnx'] = None; from pynn import cli; sys.exit(cli.main(sys.argv[1:]))"


@pytest.mark.parametrize("args, says, code", [
    (["export", "{d}/missing.npz", "{d}/out.onnx"], "missing.npz: no such file", None),
    (["export", MODEL, "{d}"], "a directory, not a regular file", None),
    (["export", MODEL, "{d}/pipe"], "a FIFO, not a regular file", None),
    (["export", MODEL], "the following arguments are required: OUT", None),
    (["export", MODEL, "{d}/out.onnx"], "pip install 'pynn-digits[onnx]'", WITHOUT_ONNX),
])
def test_export_errors_are_one_line_and_write_nothing(args, says, code, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    result = run(*[a.format(d=tmp_path) for a in args], code=code)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pynn") and says in lines[0], result.stderr
    assert os.listdir(tmp_path) == ["pipe"]


def test_export_has_help():
    result = run("export", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: pynn export")
    assert "MODEL" in result.stdout and "OUT" in result.stdout


def test_to_onnx_without_the_extra_says_which_extra_brings_it():
    code = ("import sys; sys.modules['onnx'] = None\nimport pynn\n"
            "try:\n    pynn.load_default().to_onnx('never.onnx')\n"
            "except ImportError as e:\n    print(e)")
    result = run(code=code)
    assert result.stdout.strip() == ("ONNX needs the onnx package, which pynn installs only "
                                     "with the onnx extra: pip install 'pynn-digits[onnx]'")
