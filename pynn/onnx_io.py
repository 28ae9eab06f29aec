"""A network as an ONNX graph, the format other runtimes (onnxruntime, browsers, phones) read,
and back.

``to_onnx`` writes one node per layer, in order, on a tensor "input" (N, *input_shape) with N
left free, ending in "probabilities" (N, n_out):

    Linear   Gemm(x, W, b, transB=1)      z = x W^T + b, W kept as pynn holds it (n_out, n_in)
    Conv2d   Conv(x, W, b)                W (OC, C, KH, KW), strides and symmetric zero pads
    MaxPool2d MaxPool(x)                  k x k windows at stride k, no padding, floor
    ReLU, Sigmoid, Tanh, Flatten          Relu, Sigmoid, Tanh, Flatten(axis=1)
    Dropout                               nothing: at inference it is the identity
    output   Softmax(axis=1), Sigmoid, or nothing for "linear"

``from_onnx`` reads such a graph back: a chain of those nodes (and MatMul followed by Add, the
other way to write a dense layer) into the same arrays a .npz model file holds, which
pynn.modelfile then checks and builds as it does a file's. Any other graph is refused, with one line
saying which node pynn cannot read.

The module is named onnx_io, not onnx, so that it never stands in for the onnx package (a
script run from inside pynn/ has this directory first on its path).
"""
import json
import os

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    raise ImportError("ONNX needs the onnx package, which pynn installs only with the onnx "
                      "extra: pip install 'pynn-digits[onnx]'") from None

from . import __version__, layers
from .modelfile import FORMAT_VERSION, ModelFileError, atomic_write, network_from_arrays, read_regular
from .network import LOSSES, MAX_LAYER_LIST

# Opset 13 has every operator written here with today's meaning (Softmax over one axis); IR
# version 7 is what opset 13 came with, so runtimes of that age read the file too.
OPSET = 13
IR_VERSION = 7
INPUT, OUTPUT = "input", "probabilities"
MAX_BYTES = 1 << 30     # what from_onnx reads of a file; protobuf's own limit is 2 GiB


def _kind(layer):
    """The layer's class name when it is one of pynn.layers' own (a subclass may compute
    something else, so it has no known graph)."""
    name = type(layer).__name__
    return name if getattr(layers, name, None) is type(layer) else None


def to_onnx(net, path):
    """Write ``net`` (a pynn.Network) to ``path`` as an ONNX model, atomically (pynn.modelfile).
    ValueError naming the layer when one has no ONNX form."""
    atomic_write(path, lambda f: f.write(onnx_model(net).SerializeToString()))


def onnx_model(net):
    """The onnx.ModelProto of ``net``: the graph of the module docstring, checked by onnx."""
    nodes, weights = [], []
    x = INPUT

    def add(op, inputs, **attributes):
        nonlocal x
        out = f"{op.lower()}{len(nodes)}"
        nodes.append(helper.make_node(op, [x, *inputs], [out], **attributes))
        x = out

    def param(name, a):
        weights.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))
        return name

    k = 0           # which layer with parameters, as in a .npz file's W0, b0, W1, ...
    shape = net.input_shape
    for i, layer in enumerate(net.layers):
        kind = _kind(layer)
        shape = layer.output_shape(shape)
        if kind == "Linear":
            add("Gemm", [param(f"W{k}", layer.W), param(f"b{k}", layer.b)], transB=1)
        elif kind == "Conv2d":
            s, p, size = layer.stride, layer.padding, layer.kernel_size
            add("Conv", [param(f"W{k}", layer.W), param(f"b{k}", layer.b)],
                kernel_shape=[size, size], strides=[s, s], pads=[p, p, p, p])
        elif kind == "MaxPool2d":
            size = layer.kernel_size
            add("MaxPool", [], kernel_shape=[size, size], strides=[size, size])
        elif kind in ("ReLU", "Sigmoid", "Tanh"):
            add({"ReLU": "Relu"}.get(kind, kind), [])
        elif kind == "Flatten":
            add("Flatten", [], axis=1)
        elif kind == "Dropout":
            pass
        else:
            raise ValueError(f"layer {i} ({layer!r}) has no ONNX form: pynn exports Linear, "
                             f"Conv2d, MaxPool2d, ReLU, Sigmoid, Tanh, Dropout and Flatten")
        k += bool(layer.params)
    if len(shape) > 1:             # the output is one row a sample, as pynn gives it
        add("Flatten", [], axis=1)
    if net.output == "softmax":
        add("Softmax", [], axis=1)
    elif net.output == "sigmoid":
        add("Sigmoid", [])
    nodes[-1].output[0] = OUTPUT
    graph = helper.make_graph(
        nodes, "pynn",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *net.input_shape])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", net.n_out])],
        initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pynn", producer_version=__version__,
                              doc_string=repr(net))
    model.ir_version = IR_VERSION
    # the loss leaves no trace in the graph; kept so that a model read back trains as before
    helper.set_model_props(model, {"pynn.loss": net.loss})
    onnx.checker.check_model(model)
    return model


# ---- reading back ----

def from_onnx(path):
    """The Network in the ONNX file at ``path``, for graphs ``to_onnx`` writes (and chains of
    the same operators written otherwise); ModelFileError naming the file and what pynn
    cannot read. Dropout is not in the graph, so a network read back has none."""
    path = os.fspath(path)
    data = read_regular(path, MAX_BYTES, what="ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:    # protobuf's DecodeError and friends: any damage to the bytes
        reason = " ".join(f"{e.__class__.__name__}: {e}".split())
        raise ModelFileError(f"{path}: not an ONNX model ({reason})") from None
    arrays = _Reader(model, path).arrays()
    return network_from_arrays(arrays, path)


class _Reader:
    """Walks a graph's nodes as one chain from its input to its output, turning each into a
    layer spec (and its parameters into W0, b0, ...), as pynn.modelfile's file format has them."""

    def __init__(self, model, path):
        self.path = path
        self.graph = model.graph
        self.weights = {t.name: t for t in self.graph.initializer}
        self.props = {p.key: p.value for p in model.metadata_props}

    def refuse(self, what):
        raise ModelFileError(f"{self.path}: {what}")

    def arrays(self):
        graph = self.graph
        inputs = [v for v in graph.input if v.name not in self.weights]
        if len(inputs) != 1 or len(graph.output) != 1:
            self.refuse(f"pynn reads graphs of one input and one output, this one has "
                        f"{len(inputs)} and {len(graph.output)}")
        input_shape = self.input_shape(inputs[0])
        if len(graph.node) > 2 * MAX_LAYER_LIST:
            self.refuse(f"{len(graph.node)} nodes, more than a pynn network of "
                        f"{MAX_LAYER_LIST} layers makes")
        specs, params, output = [], {}, "linear"
        x, nodes, i = inputs[0].name, list(graph.node), 0
        flat = len(input_shape) == 1
        k = 0           # layers with parameters so far, as in W0, b0, W1, ...
        while i < len(nodes):
            node, last = nodes[i], i == len(nodes) - 1
            if not node.input or node.input[0] != x or not node.output:
                self.refuse(f"node {i} ({node.op_type}) does not take the previous node's "
                            f"output: pynn reads a chain of layers")
            op = node.op_type
            if op in ("Gemm", "MatMul"):
                W, b, used = self.dense(nodes, i)
                specs.append({"type": "Linear", "n_in": W.shape[1], "n_out": W.shape[0]})
                params[f"W{k}"], params[f"b{k}"] = W, b
                node, i, flat, k = nodes[i + used - 1], i + used - 1, True, k + 1
            elif op == "Conv":
                specs.append(self.conv(node, params, k))
                flat, k = False, k + 1
            elif op == "MaxPool":
                specs.append(self.maxpool(node))
                flat = False
            elif op == "Flatten":
                if self.attributes(node).get("axis", 1) != 1:
                    self.refuse(f"node {i} (Flatten) flattens from an axis other than 1")
                specs.append({"type": "Flatten"})
                flat = True
            elif op == "Softmax":
                if not (last and flat and self.attributes(node).get("axis", 1) in (1, -1)):
                    self.refuse(f"node {i} (Softmax): pynn reads a softmax only as the last "
                                f"node, over the row of each sample")
                output = "softmax"
            elif op == "Sigmoid" and last and flat:
                output = "sigmoid"
            elif op in ("Relu", "Sigmoid", "Tanh"):
                specs.append({"type": {"Relu": "ReLU"}.get(op, op)})
            elif op not in ("Dropout", "Identity"):          # the identity at inference
                self.refuse(f"node {i} ({op}) is not one pynn reads (it reads Gemm, MatMul "
                            f"and Add, Conv, MaxPool, Relu, Sigmoid, Tanh, Flatten, Dropout, "
                            f"Identity and a last Softmax)")
            x = node.output[0]
            i += 1
        if x != graph.output[0].name:
            self.refuse(f"the graph's output {graph.output[0].name!r} is not the end of its "
                        f"chain of nodes")
        loss = self.props.get("pynn.loss")
        if output == "linear":
            loss = "quadratic"              # cross-entropy needs probabilities
        elif loss not in LOSSES:
            loss = "cross_entropy"
        architecture = {"layers": specs, "input_shape": list(input_shape),
                        "output": output, "loss": loss}
        return {"format_version": np.array(FORMAT_VERSION),
                "architecture": np.array(json.dumps(architecture)), **params}

    def input_shape(self, value):
        tensor = value.type.tensor_type
        if tensor.elem_type != TensorProto.FLOAT:
            self.refuse(f"input {value.name!r} is not float32")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
            self.refuse(f"input {value.name!r} must be a batch of samples of a fixed shape "
                        f"(N, ...), got {[d if d is not None else '?' for d in dims]}")
        return dims[1:]

    def attributes(self, node):
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def weight(self, node, j):
        """Input j of ``node``, which must be a stored tensor, as a float32 array."""
        if j >= len(node.input) or node.input[j] not in self.weights:
            self.refuse(f"{node.op_type} node {node.name or node.output[0]!r}: input {j} is "
                        f"not a stored tensor")
        a = self.array(node.input[j])
        if a.dtype != np.float32:
            self.refuse(f"{node.input[j]} is {a.dtype}, pynn's parameters are float32")
        return a

    def array(self, name):
        """The stored tensor ``name`` as an array. Only tensors inside the file are read: one
        whose data lies in another file would have pynn open a path the model names."""
        tensor = self.weights[name]
        if tensor.data_location == TensorProto.EXTERNAL:
            self.refuse(f"tensor {name!r} keeps its data in another file, which pynn does not read")
        try:
            return numpy_helper.to_array(tensor)
        except Exception as e:      # a tensor whose bytes do not fit its declared shape
            self.refuse(f"tensor {name!r} cannot be read ({' '.join(str(e).split())})")

    def dense(self, nodes, i):
        """(W (n_out, n_in), b (n_out,), how many nodes) of the dense layer at nodes[i]: a
        Gemm, or a MatMul with an Add of the bias after it (or without one, b = 0)."""
        node = nodes[i]
        if node.op_type == "Gemm":
            at = self.attributes(node)
            if at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0 or at.get("transA", 0):
                self.refuse(f"Gemm node {i} scales or transposes its input (alpha, beta, transA)")
            W = self.weight(node, 1)
            W = W if at.get("transB", 0) else W.T
            b = self.weight(node, 2).reshape(-1) if len(node.input) > 2 and node.input[2] else None
            used = 1
        else:
            W = self.weight(node, 1).T
            b, used = None, 1
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if (nxt is not None and nxt.op_type == "Add" and node.output[0] in nxt.input
                    and nxt.output):
                other = [name for name in nxt.input if name != node.output[0]]
                if len(other) != 1 or other[0] not in self.weights:
                    self.refuse(f"Add node {i + 1} does not add a stored bias")
                b = self.array(other[0]).reshape(-1)
                used = 2
        if W.ndim != 2:
            self.refuse(f"node {i} ({node.op_type}) has weights of shape {W.shape}, not a matrix")
        if b is None:
            b = np.zeros(W.shape[0], dtype=np.float32)
        return np.ascontiguousarray(W), np.ascontiguousarray(b), used

    def conv(self, node, params, k):
        at = self.attributes(node)
        W = self.weight(node, 1)
        b = (self.weight(node, 2) if len(node.input) > 2 and node.input[2]
             else np.zeros(W.shape[:1], dtype=np.float32))
        if W.ndim != 4 or W.shape[2] != W.shape[3]:
            self.refuse(f"Conv node {node.output[0]!r}: pynn reads square 2-D kernels, "
                        f"got weights {W.shape}")
        strides = at.get("strides", [1, 1])
        pads = at.get("pads", [0, 0, 0, 0])
        if (at.get("group", 1) != 1 or any(d != 1 for d in at.get("dilations", [1, 1]))
                or at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                or len(set(strides)) != 1 or len(set(pads)) != 1):
            self.refuse(f"Conv node {node.output[0]!r}: pynn reads one stride and one zero "
                        f"padding for both axes, no groups, dilations or auto_pad")
        params[f"W{k}"], params[f"b{k}"] = W, b
        return {"type": "Conv2d", "in_channels": W.shape[1], "out_channels": W.shape[0],
                "kernel_size": W.shape[2], "stride": strides[0], "padding": pads[0]}

    def maxpool(self, node):
        at = self.attributes(node)
        size = at.get("kernel_shape", [])
        if (len(size) != 2 or size[0] != size[1] or at.get("strides") != size
                or any(at.get("pads", [0])) or at.get("ceil_mode", 0)
                or any(d != 1 for d in at.get("dilations", [1, 1]))
                or at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                or len([o for o in node.output if o]) != 1):
            self.refuse(f"MaxPool node {node.output[0]!r}: pynn reads square windows at a "
                        f"stride of their size, without padding")
        return {"type": "MaxPool2d", "kernel_size": size[0]}
