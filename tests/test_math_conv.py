"""docs/MATH.md section 13's worked example of a convolution and a max pooling, computed by the
readable and the fast C kernels and held exactly to the numbers worked out by hand there (every
number is a small integer or half-integer, so float32 holds each sum exactly, in any order)."""
import numpy as np
import pytest

from pynn import ops

# the 1x1x4x4 image, the 1x1x2x2 kernel and its bias
X = np.array([[1, 2, 0, 1],
              [0, 1, 3, 2],
              [2, 0, 1, 4],
              [1, 3, 2, 0]], dtype=np.float32).reshape(1, 1, 4, 4)
W = np.array([[1, 0],
              [-1, 2]], dtype=np.float32).reshape(1, 1, 2, 2)
BIAS = np.array([0.5], dtype=np.float32)
# out[y,x] = 0.5 + x[y,x] - x[y+1,x] + 2 x[y+1,x+1], e.g. out[0,0] = 0.5 + 1 - 0 + 2*1
OUT = [[3.5, 7.5, 1.5],
       [-1.5, 3.5, 10.5],
       [7.5, 1.5, -0.5]]
# im2col: row (y,x) of the patch matrix is the 2x2 patch under output (y,x), read row by row
PATCHES = [[1, 2, 0, 1], [2, 0, 1, 3], [0, 1, 3, 2],
           [0, 1, 2, 0], [1, 3, 0, 1], [3, 2, 1, 4],
           [2, 0, 1, 3], [0, 1, 3, 2], [1, 4, 2, 0]]
# the gradient arriving at the output, and what it gives back
DOUT = np.array([[1, 0, -1],
                 [0, 2, 0],
                 [1, 0, 0]], dtype=np.float32).reshape(1, 1, 3, 3)
DW = [[5, 7],          # dW[i,j] = sum over y,x of dout[y,x] x[y+i,x+j]
      [-2, 4]]
DB = [3]               # the sum of dout
DX = [[1, 0, -1, 0],   # dx[h,w] = sum over i,j of W[i,j] dout[h-i,w-j]
      [-1, 4, 1, -2],
      [1, -2, 4, 0],
      [-1, 2, 0, 0]]
# 2x2 max pooling of the image: each window's largest value and where it is (h*4 + w)
POOLED = [[2, 3], [3, 4]]
ARGMAX = [[1, 6], [13, 11]]
DPOOLED = np.array([[1, 2], [3, 4]], dtype=np.float32).reshape(1, 1, 2, 2)
DX_POOL = [[0, 1, 0, 0],
           [0, 0, 2, 0],
           [0, 0, 0, 4],
           [0, 3, 0, 0]]

KERNELS = pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])


@KERNELS
def test_convolution_forward_is_the_sum_over_the_kernel(reference):
    out = ops.conv2d_forward(X, W, BIAS, reference=reference)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0].tolist() == OUT


def test_the_hand_numbers_are_the_sum_over_the_kernel():
    # the document's formula, term by term in float64: the numbers above are that sum
    x, w = X[0, 0].astype(np.float64), W[0, 0].astype(np.float64)
    want = [[BIAS[0] + sum(w[i, j] * x[y + i, c + j] for i in range(2) for j in range(2))
             for c in range(3)] for y in range(3)]
    assert want == OUT
    assert [x[y:y + 2, c:c + 2].ravel().tolist() for y in range(3) for c in range(3)] == PATCHES


@KERNELS
def test_convolution_is_the_patch_matrix_times_the_kernel(reference):
    # out (9,1) = patches (9,4) times W reshaped (1,4), transposed, plus the bias
    patches = np.array(PATCHES, dtype=np.float32)
    product = ops.matmul(patches, W.reshape(1, 4), trans_b=True, reference=reference)
    assert (product[:, 0] + BIAS[0]).reshape(3, 3).tolist() == OUT


@KERNELS
def test_convolution_gradients_are_the_forwards_products_read_backwards(reference):
    dx, dw, db = ops.conv2d_backward(DOUT, X, W, reference=reference)
    assert dw[0, 0].tolist() == DW
    assert db.tolist() == DB
    assert dx[0, 0].tolist() == DX


@KERNELS
def test_the_gradients_in_matrix_form(reference):
    # dW (1,4) = dout (1,9) times the patches (9,4); dpatches (9,4) = dout (9,1) times W (1,4),
    # each row then added back onto the 2x2 of the image it was copied from (col2im)
    patches = np.array(PATCHES, dtype=np.float32)
    dout = DOUT.reshape(1, 9)
    assert ops.matmul(dout, patches, reference=reference).reshape(2, 2).tolist() == DW
    dpatches = ops.matmul(dout, W.reshape(1, 4), trans_a=True, reference=reference)
    dx = np.zeros((4, 4))
    for row, (y, c) in enumerate((y, c) for y in range(3) for c in range(3)):
        dx[y:y + 2, c:c + 2] += dpatches[row].reshape(2, 2)
    assert dx.tolist() == DX


@KERNELS
def test_max_pooling_keeps_each_windows_largest_and_where_it_was(reference):
    out, argmax = ops.maxpool2d_forward(X, 2, reference=reference)
    assert out[0, 0].tolist() == POOLED
    assert argmax[0, 0].tolist() == ARGMAX
    assert [[X[0, 0].ravel()[a] for a in row] for row in ARGMAX] == POOLED


@KERNELS
def test_max_pooling_backward_sends_each_gradient_to_its_windows_argmax(reference):
    _, argmax = ops.maxpool2d_forward(X, 2, reference=reference)
    dx = ops.maxpool2d_backward(DPOOLED, argmax, X.shape, 2, reference=reference)
    assert dx[0, 0].tolist() == DX_POOL
