"""The checks every array passes before its pointer crosses into C take a short way for the
common case (a plain, C-contiguous float32 array): every other array still takes the long way,
and gets the error that names its fault or, when it may cross, the right answer."""
import gc
import weakref

import numpy as np
import pytest

from pynn import ops


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def product(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


class Tagged(np.ndarray):
    """A subclass of ndarray, as a library might hand one over."""


NOT_CONTIGUOUS = [
    ("every other column", lambda a: a[:, ::2]),
    ("Fortran order", lambda a: np.asfortranarray(a)),
    ("transposed view", lambda a: a.T),
]


@pytest.mark.parametrize("how,make", NOT_CONTIGUOUS, ids=[h for h, _ in NOT_CONTIGUOUS])
@pytest.mark.parametrize("which", ["a", "b"])
def test_a_float32_input_that_is_not_c_contiguous_is_refused(how, make, which):
    a, b = rand(4, 4), rand(4, 4, seed=1)
    args = {"a": a, "b": b}
    args[which] = make(args[which])
    assert args[which].dtype == np.float32 and not args[which].flags.c_contiguous
    with pytest.raises(ValueError, match=f"{which} must be C-contiguous"):
        ops.matmul(args["a"], args["b"])


@pytest.mark.parametrize("how,make", NOT_CONTIGUOUS, ids=[h for h, _ in NOT_CONTIGUOUS])
def test_an_output_that_is_not_c_contiguous_is_refused_and_left_alone(how, make):
    c = make(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="c must be C-contiguous"):
        ops.gemm(rand(4, 4), rand(4, 4, seed=1), c)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ops.matmul(rand(4, 4), rand(4, 4, seed=1), out=c)
    assert not c.any()


def test_a_subclass_of_ndarray_crosses_and_gives_the_right_product():
    a, b = rand(3, 5), rand(5, 2, seed=1)
    c = np.zeros((3, 2), np.float32).view(Tagged)
    got = ops.matmul(a.view(Tagged), b.view(Tagged))
    np.testing.assert_allclose(got, product(a, b), rtol=1e-5, atol=1e-5)
    ops.gemm(a.view(Tagged), b, c)
    np.testing.assert_allclose(c, product(a, b), rtol=1e-5, atol=1e-5)


def test_a_subclass_is_still_checked_for_layout_and_dtype():
    with pytest.raises(ValueError, match="a must be C-contiguous"):
        ops.matmul(rand(4, 4).view(Tagged)[:, ::2], rand(2, 3))
    with pytest.raises(TypeError, match="a must have dtype float32"):
        ops.matmul(np.ones((2, 2)).view(Tagged), rand(2, 2))


def test_a_read_only_input_crosses_but_a_read_only_output_is_refused():
    a, b = rand(3, 4), rand(4, 2, seed=1)
    a.flags.writeable = False
    np.testing.assert_allclose(ops.matmul(a, b), product(a, b), rtol=1e-5, atol=1e-5)
    c = np.zeros((3, 2), np.float32)
    c.flags.writeable = False
    with pytest.raises(ValueError, match="c is read-only"):
        ops.gemm(a, b, c)
    with pytest.raises(ValueError, match="out is read-only"):
        ops.matmul(a, b, out=c)
    with pytest.raises(ValueError, match="z is read-only"):
        ops.bias_forward(c, np.ones(2, np.float32))


@pytest.mark.parametrize("dtype", [np.dtype(">f4"), np.float64, np.float16, np.int32])
def test_an_array_of_another_dtype_is_refused_even_when_it_is_four_byte_float(dtype):
    with pytest.raises(TypeError, match="a must have dtype float32"):
        ops.matmul(np.ones((2, 2), dtype), rand(2, 2))


def test_an_array_of_the_wrong_rank_is_refused():
    with pytest.raises(ValueError, match="b must be 2-D"):
        ops.matmul(rand(2, 3), rand(3))
    with pytest.raises(ValueError, match="c must be 2-D"):
        ops.gemm(rand(2, 3), rand(3, 2), np.zeros(4, np.float32))


def test_an_output_over_an_input_is_refused_whole_or_in_part():
    a = rand(4, 4)
    b = rand(4, 4, seed=1)
    keep = a.copy()
    for a_rows, c in ((a, a), (a, b), (a[:2], a[1:3]), (a[:2], b[2:])):
        with pytest.raises(ValueError, match="out must not overlap"):
            ops.matmul(a_rows, b, out=c)
    with pytest.raises(ValueError, match="c must not overlap"):
        ops.gemm(a, b, a)
    np.testing.assert_array_equal(a, keep)


def test_an_output_beside_an_input_in_one_buffer_is_accepted():
    buf = np.zeros((8, 4), np.float32)
    a, c = buf[:4], buf[4:]
    a[...] = rand(4, 4)
    b = rand(4, 4, seed=1)
    ops.matmul(a, b, out=c)
    np.testing.assert_allclose(c, product(a, b), rtol=1e-5, atol=1e-5)


def test_a_fresh_result_shares_no_memory_with_the_inputs():
    a, b = rand(1, 784), rand(784, 128, seed=1)
    c = ops.matmul(a, b)
    assert type(c) is np.ndarray and c.dtype == np.float32 and c.flags.c_contiguous
    assert not np.shares_memory(c, a) and not np.shares_memory(c, b)
    np.testing.assert_allclose(c, product(a, b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape_a,shape_b", [((0, 3), (3, 4)), ((2, 0), (0, 3)), ((2, 3), (3, 0))])
def test_an_empty_product_crosses_as_null_and_gives_zeros(shape_a, shape_b):
    c = ops.matmul(np.ones(shape_a, np.float32), np.ones(shape_b, np.float32))
    assert c.shape == (shape_a[0], shape_b[1]) and not c.any()


def test_the_c_pointer_made_for_an_array_keeps_the_array_alive():
    from pynn.ops.checks import ptr, wptr
    for make in (ptr, wptr):
        a = np.full(1000, 3.0, np.float32)
        alive = weakref.ref(a)
        p = make(a)
        del a
        gc.collect()
        assert alive() is not None and p[999] == 3.0
        del p
        gc.collect()
        assert alive() is None


@pytest.mark.parametrize("how,make", NOT_CONTIGUOUS, ids=[h for h, _ in NOT_CONTIGUOUS])
def test_one_row_that_is_not_c_contiguous_is_refused_on_the_short_way_too(how, make):
    # matmul's plain product makes its pointers before it knows the layout: the buffer
    # protocol must refuse the array, and the long way name it
    row = make(rand(8, 8))[:1]
    assert not row.flags.c_contiguous
    with pytest.raises(ValueError, match="a must be C-contiguous"):
        ops.matmul(row, rand(row.shape[1], 3))
    with pytest.raises(ValueError, match="b must be C-contiguous"):
        ops.matmul(rand(1, 8), make(rand(8, 8)))


@pytest.mark.parametrize("shape_a,shape_b", [((1, 784), (784, 128)), ((1, 128), (128, 10)),
                                             ((3, 5), (5, 2)), ((2, 0), (0, 3))])
def test_the_short_way_of_matmul_gives_the_bits_of_gemm(shape_a, shape_b):
    a, b = rand(*shape_a), rand(*shape_b, seed=1)
    c = np.full((shape_a[0], shape_b[1]), np.nan, np.float32)
    ops.gemm(a, b, c)
    np.testing.assert_array_equal(ops.matmul(a, b), c)
    np.testing.assert_allclose(c, product(a, b), rtol=1e-4, atol=1e-4)
