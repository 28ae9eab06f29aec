"""At the network's edges (csrc/ref/convert.c): uint8 pixels in, the predicted class out."""
import numpy as np

from .._pynn import lib
from .checks import check_array, check_status, check_typed, hyperparameter, output, ptr, wptr


def scale_u8(x, scale=1.0 / 255.0, out=None):
    """uint8 pixels to float32 values x * scale (default: 0..255 to 0..1)."""
    check_typed("x", x, np.uint8)
    y = output(out, x.shape, inputs=(x,), same_ok=False)
    src = ptr(x, "uint8_t[]")
    check_status(lib.pynn_scale_u8(wptr(y), src, x.size, hyperparameter("scale", scale, -np.inf)),
                 "scale_u8")
    return y


def argmax_rows(x):
    """The column of each row's largest value, as int64 (B,); -1 for a row holding NaN."""
    check_array("x", x, ndim=2)
    if x.shape[1] == 0 and x.shape[0] > 0:
        raise ValueError("x has no columns: there is no largest value")
    out = np.empty(x.shape[0], dtype=np.int64)
    dst = wptr(out, "int64_t[]")
    check_status(lib.pynn_argmax_rows(dst, ptr(x), x.shape[0], x.shape[1]), "argmax_rows")
    return out
