"""Every kernel with an output argument either refuses an output that overlaps what it reads, or
computes through the overlap exactly: an output shifted by part of an array over its input would
change values the kernel has yet to read, a silent wrong answer (ops.bias_backward(dz,
out=dz[3]) summed its own partial sums)."""
import inspect

import numpy as np
import pytest

import pynn
from pynn import ops

OUT_ARGUMENTS = ("out", "probs", "dinp")


def buffer(n, seed=0):
    return np.random.default_rng(seed).uniform(0.1, 0.9, size=n).astype(np.float32)


def shifted(shape, by=1, seed=0):
    """(an input of ``shape``, an output of ``shape`` over the same memory, ``by`` floats on)."""
    size = int(np.prod(shape))
    data = buffer(size + by, seed)
    return data[:size].reshape(shape), data[by:by + size].reshape(shape)


def images_and_mats(n=2, side=6):
    images, out = shifted((n, side, side))
    mats = np.tile(np.array([1, 0, 0.3, 0, 1, -0.2], np.float32), (n, 1))
    return images, out, mats


def cases():
    """name -> a call that runs the kernel with an output overlapping one of its inputs."""
    def matmul():
        a, out = shifted((4, 4))
        ops.matmul(a, buffer(16, 1).reshape(4, 4), out=out)

    def bias_backward():
        dz = buffer(24).reshape(6, 4)
        ops.bias_backward(dz, out=dz[3])

    def activation_forward():
        x, out = shifted((3, 5))
        ops.activation_forward("softmax", x, out=out)

    def activation_backward():
        y, d = shifted((3, 5))
        ops.activation_backward("sigmoid", y, buffer(15, 2).reshape(3, 5), dinp=d)

    def scale_u8():
        data = buffer(40)
        ops.scale_u8(data.view(np.uint8)[:40], out=data[:40])   # over the bytes it reads

    def loss(kind):
        def call():
            y, out = shifted((3, 5))
            t = np.eye(5, dtype=np.float32)[[0, 2, 4]]
            if kind == "quadratic_loss_backward":
                ops.quadratic_loss_backward(y, t, out=out)
            elif kind.endswith("_backward"):
                getattr(ops, kind)(y, t, out=out)
            else:
                getattr(ops, kind)(y, t, probs=out)
        return call

    def resample_area():
        inp, out = shifted((4, 4))
        ops.resample_area(inp, (4, 4), out=out)

    def stroke_width():
        images, out = shifted((2, 5, 5))
        ops.stroke_width(images, np.array([0.5, -0.5], np.float32), out=out)

    def warp():
        images, out, mats = images_and_mats()
        ops.warp(images, mats, out=out)

    def gaussian_blur():
        images, out = shifted((2, 6, 6))
        ops.gaussian_blur(images, 1.0, out=out)

    def distort():
        images, out, mats = images_and_mats()
        ops.distort(images, mats, out=out)

    def wrapper(name):
        def call():
            x, out = shifted((3, 5))
            getattr(ops, name)(x, out=out)
        return call

    def raster_strokes():
        canvas = np.zeros((4, 8), np.float32)
        canvas[0, :4] = [1, 1, 2, 2]
        ops.raster_strokes(canvas, canvas[0, :4].reshape(2, 2), np.array([2], np.int64))

    def conv2d_forward():
        x, out = shifted((1, 1, 5, 5))
        ops.conv2d_forward(x, buffer(9, 1).reshape(1, 1, 3, 3), padding=1, out=out)

    def maxpool2d_forward():
        x, out = shifted((1, 1, 4, 4))
        ops.maxpool2d_forward(x, 1, out=out)

    def conv2d_relu_pool_forward():
        data = buffer(17)
        x, out = data[:16].reshape(1, 1, 4, 4), data[1:5].reshape(1, 1, 2, 2)
        ops.conv2d_relu_pool_forward(x, buffer(9, 1).reshape(1, 1, 3, 3), buffer(1), 2,
                                     padding=1, out=out)

    def relu_maxpool2d_backward():
        data = buffer(17)
        out, dx = data[:4].reshape(1, 1, 2, 2), data[1:17].reshape(1, 1, 4, 4)
        argmax = np.array([0, 2, 8, 10], np.int32).reshape(1, 1, 2, 2)
        ops.relu_maxpool2d_backward(buffer(4, 1).reshape(1, 1, 2, 2), out, argmax, (1, 1, 4, 4),
                                    2, dx=dx)

    def conv2d_relu_pool_backward_weights():
        data = buffer(17)
        x, dw = data[:16].reshape(1, 1, 4, 4), data[7:16].reshape(1, 1, 3, 3)
        out = np.ones((1, 1, 2, 2), np.float32)
        argmax = np.array([0, 2, 8, 10], np.int32).reshape(1, 1, 2, 2)
        ops.conv2d_relu_pool_backward_weights(buffer(4, 1).reshape(1, 1, 2, 2), out, argmax, x,
                                              buffer(9, 1).reshape(1, 1, 3, 3), 2, padding=1,
                                              dw=dw)

    found = {"matmul": matmul, "bias_backward": bias_backward,
             "conv2d_relu_pool_backward_weights": conv2d_relu_pool_backward_weights,
             "conv2d_relu_pool_forward": conv2d_relu_pool_forward,
             "relu_maxpool2d_backward": relu_maxpool2d_backward,
             "conv2d_forward": conv2d_forward, "maxpool2d_forward": maxpool2d_forward,
             "activation_forward": activation_forward, "activation_backward": activation_backward,
             "scale_u8": scale_u8, "resample_area": resample_area, "stroke_width": stroke_width,
             "warp": warp, "gaussian_blur": gaussian_blur, "distort": distort,
             "raster_strokes": raster_strokes}
    for name in ("quadratic_loss_backward", "softmax_cross_entropy", "softmax_cross_entropy_backward",
                 "sigmoid_cross_entropy", "sigmoid_cross_entropy_backward"):
        found[name] = loss(name)
    for name in ("sigmoid", "relu", "tanh", "softmax"):
        found[name] = wrapper(name)
    return found


CASES = cases()


def test_every_kernel_with_an_output_argument_has_a_case_here():
    with_out = {name for name, f in inspect.getmembers(ops, inspect.isfunction)
                if f.__module__.startswith(ops.__name__ + ".") and not name.startswith("_")
                and any(p in inspect.signature(f).parameters for p in OUT_ARGUMENTS)}
    assert with_out <= set(CASES), f"no overlap case for {sorted(with_out - set(CASES))}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_output_over_part_of_an_input_is_refused(name):
    with pytest.raises(ValueError, match="overlap"):
        CASES[name]()


def test_bias_backward_into_a_row_of_its_own_input_is_refused_not_summed_wrong():
    dz = np.ones((6, 4), np.float32)
    with pytest.raises(ValueError, match="out must not overlap"):
        ops.bias_backward(dz, out=dz[3])
    assert np.array_equal(dz, np.ones((6, 4), np.float32))     # nothing was written


@pytest.mark.parametrize("kind", ["sigmoid", "relu", "tanh", "softmax", "linear"])
def test_an_activation_written_over_its_own_input_exactly_is_right(kind):
    x = buffer(15).reshape(3, 5) - np.float32(0.5)
    expected = ops.activation_forward(kind, x.copy())
    view = x[:]                                   # another array object over the same memory
    assert np.array_equal(ops.activation_forward(kind, x, out=view), expected)


def test_an_optimiser_state_that_is_a_weight_array_is_refused():
    # the one-call training step writes weights and state: sharing memory would corrupt both
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 3, 40)
    for opt in (pynn.Adam(lr=0.01), pynn.SGD(lr=0.1, momentum=0.9)):
        net = pynn.Network([6, 5, 3], seed=0)
        net.fit(X, y, epochs=1, optimizer=opt)
        opt.state[0][0] = net.weights[0]
        before = [w.copy() for w in net.weights]
        with pytest.raises(ValueError, match="overlap"):
            net.fit(X, y, epochs=1, optimizer=opt)
        assert all(np.array_equal(a, b) for a, b in zip(net.weights, before))


def test_training_inputs_inside_the_weights_are_refused():
    net = pynn.Network([4, 3, 2], seed=0)
    X = net.weights[0]                            # (3, 4): three samples that are the weights
    with pytest.raises(ValueError, match="overlap"):
        net.fit(X, np.array([0, 1, 0]), epochs=1, optimizer=pynn.SGD(lr=0.1))
