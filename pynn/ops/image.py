"""Drawings to MNIST's form (csrc/image/preprocess.c) and distortions for training (csrc/image/augment.c),
on images (H,W) and image stacks (n,H,W).
"""
import numpy as np

from .._pynn import ffi, lib
from .checks import (check_array, check_shape, check_status, hyperparameter, i64ptr,
                     no_overlap, output, ptr, wptr)

DISTORT_MAX = lib.PYNN_DISTORT_MAX


def _finite(name, a):
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or Inf")


def _stack(name, a):
    """An (n,H,W) float32 image stack, checked; returns its shape."""
    check_array(name, a, ndim=3)
    return a.shape


def raster_strokes(canvas, xy, lengths, scale=1.0, off_x=0.0, off_y=0.0, radius=1.0):
    """Draw strokes into ``canvas`` (H,W) in place, keeping the brighter value at each pixel.

    xy (P,2) holds the (x,y) points of all strokes one after another, lengths (S,) int64 how
    many belong to each. A point lands at (x*scale + off_x, y*scale + off_y) canvas pixels; a
    stroke is every point within ``radius`` of its polyline, edges anti-aliased over a pixel.
    """
    check_array("canvas", canvas, ndim=2, writable=True)
    check_array("xy", xy, ndim=2)
    if xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (P, 2), got {xy.shape}")
    _finite("xy", xy)
    if not isinstance(lengths, np.ndarray) or lengths.dtype != np.int64 or lengths.ndim != 1:
        raise TypeError("lengths must be a 1-D int64 numpy array")
    lengths = np.ascontiguousarray(lengths)
    # each count within [0, P] before the sum, which then cannot wrap around int64 (four
    # counts of 2**62 would add up to 0) unless there are more than 2**63 / P of them
    if lengths.size and (lengths.min() < 0 or lengths.max() > xy.shape[0] or (
            sum(lengths.tolist()) if lengths.size * xy.shape[0] >= 2 ** 63
            else int(lengths.sum())) != xy.shape[0]):
        raise ValueError(f"lengths must be >= 0 and add up to the {xy.shape[0]} points in xy")
    if not lengths.size and xy.shape[0]:
        raise ValueError(f"lengths is empty but xy holds {xy.shape[0]} points")
    no_overlap(canvas, xy, lengths, name="canvas")
    lens = i64ptr(lengths)
    rc = lib.pynn_raster_strokes(wptr(canvas), canvas.shape[0], canvas.shape[1], ptr(xy), lens,
                                 lengths.size, hyperparameter("scale", scale, -np.inf),
                                 hyperparameter("off_x", off_x, -np.inf),
                                 hyperparameter("off_y", off_y, -np.inf),
                                 hyperparameter("radius", radius))
    check_status(rc, "raster_strokes")
    return canvas


def resample_area(inp, shape, y0=0.0, x0=0.0, sy=1.0, sx=1.0, gain=1.0, out=None):
    """An image of ``shape`` (h,w) whose pixel (i,j) is ``gain`` times the mean of ``inp`` (H,W)
    over the rectangle [y0 + i*sy, y0 + (i+1)*sy) x [x0 + j*sx, x0 + (j+1)*sx), inp being 0
    outside itself: area averaging, which anti-aliases when it shrinks."""
    check_array("inp", inp, ndim=2)
    h, w = (int(v) for v in shape)
    if h < 0 or w < 0:
        raise ValueError(f"shape must not be negative, got {tuple(shape)}")
    out = output(out, (h, w), inputs=(inp,), same_ok=False)
    rc = lib.pynn_resample_area(wptr(out), h, w, ptr(inp), inp.shape[0], inp.shape[1],
                                hyperparameter("y0", y0, -np.inf), hyperparameter("x0", x0, -np.inf),
                                hyperparameter("sy", sy, 1e-30), hyperparameter("sx", sx, 1e-30),
                                hyperparameter("gain", gain, -np.inf))
    check_status(rc, "resample_area")
    return out


def ink_moments(img):
    """(mass, cy, cx, edge) of an image (H,W): its sum, its centre of mass in pixel units
    (pixel (r,c)'s centre is (r+0.5, c+0.5)), and the summed gradient magnitude (the length
    of the ink's outline, so 2*mass/edge is a stroke's width)."""
    check_array("img", img, ndim=2)
    m = np.zeros(4, dtype=np.float64)
    check_status(lib.pynn_ink_moments(wptr(m, "double[]"),
                                      ptr(img), img.shape[0], img.shape[1]), "ink_moments")
    return tuple(float(v) for v in m)


def ink_bbox(img, threshold=0.0):
    """(r0, r1, c0, c1): rows r0..r1-1 and columns c0..c1-1 hold every value of img (H,W)
    above ``threshold``; None when none is."""
    check_array("img", img, ndim=2)
    box = np.zeros(4, dtype=np.int64)
    check_status(lib.pynn_ink_bbox(wptr(box, "int64_t[]"),
                                   ptr(img), img.shape[0], img.shape[1],
                                   hyperparameter("threshold", threshold, -np.inf)), "ink_bbox")
    return None if box[1] == 0 else tuple(int(v) for v in box)


def stroke_width(images, amount, out=None):
    """Images (n,H,W) with strokes widened (amount > 0, up to 2 pixels at 1) or narrowed
    (amount < 0): each image blended with its 3x3 grey dilation or erosion. amount: (n,) in [-1,1]."""
    n, H, W = _stack("images", images)
    check_array("amount", amount, ndim=1)
    check_shape("amount", amount, (n,))
    if n and not (np.abs(amount) <= 1.0).all():
        raise ValueError("amount must lie in [-1, 1]")
    out = output(out, images.shape, inputs=(images, amount), same_ok=False)
    check_status(lib.pynn_stroke_width(wptr(out), ptr(images), n, H, W, ptr(amount)), "stroke_width")
    return out


def warp(images, mats, dx=None, dy=None, out=None):
    """Images (n,H,W) warped: out_k at pixel centre (y,x) is images_k, bilinearly, at
    u = m0*x + m1*y + m2 + dx_k(y,x), v = m3*x + m4*y + m5 + dy_k(y,x), with m = mats[k] (n,6)
    (pixel units, y down), 0 outside. dx, dy: (n,fh,fw) displacement fields, or both None; a
    coarser field than the image is read bilinearly at the pixel's place in it."""
    n, H, W = _stack("images", images)
    check_array("mats", mats, ndim=2)
    check_shape("mats", mats, (n, 6))
    _finite("mats", mats)
    if (dx is None) != (dy is None):
        raise ValueError("dx and dy go together: give both displacement fields or neither")
    fh = fw = 0
    if dx is not None:
        check_array("dx", dx, ndim=3)
        if dx.shape[0] != n or min(dx.shape) < 1:
            raise ValueError(f"dx must have shape ({n}, fh, fw) with fh, fw >= 1, got {dx.shape}")
        check_array("dy", dy, ndim=3)
        check_shape("dy", dy, dx.shape)
        _finite("dx", dx)
        _finite("dy", dy)
        fh, fw = dx.shape[1:]
    out = output(out, images.shape, inputs=(images, mats, dx, dy), same_ok=False)
    rc = lib.pynn_warp(wptr(out), ptr(images), n, H, W, ptr(mats),
                       ffi.NULL if dx is None else ptr(dx), ffi.NULL if dy is None else ptr(dy),
                       fh, fw)
    check_status(rc, "warp")
    return out


def gaussian_blur(images, sigma, gain=1.0, out=None):
    """Images (n,H,W) convolved with a Gaussian of standard deviation ``sigma`` pixels (cut at
    3 sigma, at most 64 pixels) and multiplied by ``gain``, 0 outside each image."""
    n, H, W = _stack("images", images)
    out = output(out, images.shape, inputs=(images,), same_ok=False)
    tmp = np.empty_like(images)
    check_status(lib.pynn_gaussian_blur(wptr(out), wptr(tmp), ptr(images), n, H, W,
                                        hyperparameter("sigma", sigma),
                                        hyperparameter("gain", gain, -np.inf)),
                 "gaussian_blur")
    return out


def distort(images, mats, field=None, noise=None, sigma=0.0, gain=0.0, amount=None, out=None):
    """Images (n,H,W), H and W at most DISTORT_MAX (64), each warped as ``warp`` does by its
    affine map mats[k] plus, where field[k] >= 0, the elastic field gain * gaussian_blur(2 *
    noise[field[k]] - 1, sigma) (dx the first of the pair, dy the second) on the (fh, fw) grid,
    then its stroke width changed by amount[k] as ``stroke_width`` does; all in one pass.
    field: (n,) int64 in [-1, m), or None for no fields; noise: (m, 2, fh, fw) uniform in [0,1];
    amount: (n,) in [-1,1], or None to leave the stroke width alone."""
    n, H, W = _stack("images", images)
    if H > DISTORT_MAX or W > DISTORT_MAX:
        raise ValueError(f"images must be at most {DISTORT_MAX}x{DISTORT_MAX} for distort, got "
                         f"{H}x{W} (warp, gaussian_blur and stroke_width take any size)")
    check_array("mats", mats, ndim=2)
    check_shape("mats", mats, (n, 6))
    _finite("mats", mats)
    m = fh = fw = 0
    fptr = nptr = ffi.NULL
    if (field is None) != (noise is None):
        raise ValueError("field and noise go together: give both or neither")
    if field is not None:
        check_array("noise", noise, ndim=4)
        m, two, fh, fw = noise.shape
        if two != 2 or fh < 1 or fw < 1 or fh > DISTORT_MAX or fw > DISTORT_MAX:
            raise ValueError(f"noise must have shape (m, 2, fh, fw) with 1 <= fh, fw <= "
                             f"{DISTORT_MAX}, got {noise.shape}")
        if not isinstance(field, np.ndarray) or field.dtype != np.int64 or field.shape != (n,):
            raise TypeError(f"field must be an int64 numpy array of shape ({n},)")
        field = np.ascontiguousarray(field)
        if n and (field.min() < -1 or field.max() >= m):
            raise ValueError(f"field must hold -1 or an index of noise's {m} fields")
        fptr = i64ptr(field)
        nptr = ptr(noise)
    if amount is not None:
        check_array("amount", amount, ndim=1)
        check_shape("amount", amount, (n,))
        if n and not (np.abs(amount) <= 1.0).all():
            raise ValueError("amount must lie in [-1, 1]")
    out = output(out, images.shape, inputs=(images, mats, noise, amount), same_ok=False)
    rc = lib.pynn_distort(wptr(out), ptr(images), n, H, W, ptr(mats), fptr, nptr, m, fh, fw,
                          hyperparameter("sigma", sigma), hyperparameter("gain", gain, -np.inf),
                          ffi.NULL if amount is None else ptr(amount))
    if rc == lib.PYNN_ERR_ARG:
        raise ValueError("noise must lie in [0, 1] (uniform random numbers)")
    check_status(rc, "distort")
    return out
