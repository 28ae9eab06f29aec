"""Drawings into the input the network takes: MNIST's own 28x28 form.

MNIST's digits were made like this (LeCun, Cortes & Burges): the digit's bounding box is scaled
so that its longer side is 20 pixels, keeping the aspect ratio, anti-aliased; the result is
placed in a 28x28 field so that its centre of mass is the centre. A drawing that goes the same
way reaches the network in the form it was trained on, wherever on the canvas it was drawn,
at whatever size, with whatever pen:

    strokes_to_mnist(strokes)   the pad's strokes, (n,2) point arrays in canvas pixels, y down
    to_mnist(image)             any 2-D grayscale image, ink bright on dark

Both return a (28, 28) float32 array, values 0..1, ink bright; an empty drawing gives zeros.

Strokes are drawn again from their points with MNIST's pen, so the width of the line on the
screen changes nothing. An image has no points; its stroke width is measured (twice the ink's
mass over the length of its outline) and brought to MNIST's by grey dilation or erosion.

The work is done on a fine grid, SUPER times finer than the 28x28 field, then averaged down:
that is the anti-aliasing. The kernels are in csrc/image/preprocess.c; this module only decides
the scale and the offsets.
"""
import numpy as np

from . import ops

SIZE = 28          # the field is SIZE x SIZE
BOX = 20.0         # the longer side of the digit's bounding box, ink included
WEIGHT = 2.4       # MNIST's stroke width in field pixels (the median over its training digits,
                   # measured as 2 * mass / outline with ops.ink_moments)
PEN = 2.6          # the pen strokes are drawn with: its lines measure WEIGHT wide (anti-aliasing
                   # softens the edges, so the pen is a little wider than what is measured)
CENTRE = 14.5      # where MNIST puts the centre of mass: the middle of pixel (14, 14)
SUPER = 4          # fine-grid pixels per field pixel
MARGIN = 2         # field pixels of fine grid around the 20-pixel box
INK = 0.1          # in an image, what is brighter than INK * its brightest pixel is ink
MAX_STEPS = 40     # at most this many fine-grid dilations or erosions to fix an image's weight

_FINE = int((BOX + 2 * MARGIN) * SUPER)


def strokes_to_mnist(strokes):
    """The 28x28 float32 input for a drawing given as strokes.

    strokes: a list of (n, 2) arrays of (x, y) points in canvas pixels, y down (any units
    would do: only the shape counts). Empty strokes are skipped; no points at all gives zeros;
    a single dot gives a dot of MNIST's stroke width in the middle.
    """
    xy, lengths = _gather(strokes)
    if xy.shape[0] == 0:
        return np.zeros((SIZE, SIZE), dtype=np.float32)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    extent = float((hi - lo).max())
    # the points' box (the pen's centre line) gets BOX - PEN, the pen adds PEN around it
    scale = (BOX - PEN) * SUPER / extent if extent > 0 else 0.0
    mid = (lo.astype(np.float64) + hi) / 2
    canvas = np.zeros((_FINE, _FINE), dtype=np.float32)
    ops.raster_strokes(canvas, xy, lengths, scale, _FINE / 2 - mid[0] * scale,
                       _FINE / 2 - mid[1] * scale, radius=PEN * SUPER / 2)
    return _centre(canvas)


def to_mnist(image):
    """The 28x28 float32 input for a grayscale image (H, W) with bright ink on a dark ground.

    Any size, any numeric dtype (uint8 is read as 0..255, the rest by its brightest pixel). The
    ink's box is scaled to MNIST's 20 pixels, its strokes brought to MNIST's width, its centre
    of mass put in the middle. A blank image gives zeros.
    """
    img = _as_image(image)
    peak = float(img.max()) if img.size else 0.0
    if peak <= 0:
        return np.zeros((SIZE, SIZE), dtype=np.float32)
    r0, r1, c0, c1 = ops.ink_bbox(img, INK * peak)
    crop = np.ascontiguousarray(img[r0:r1, c0:c1])
    mass, _, _, edge = ops.ink_moments(crop)
    width = 2 * mass / edge                        # stroke width, image pixels
    extent = max(r1 - r0, c1 - c0)
    # the centre line's box should become BOX - WEIGHT; the ink's box never more than BOX
    line = max(extent - width, 1e-6)
    scale = min((BOX - WEIGHT) / line, BOX / extent)   # field pixels per image pixel
    step = 1.0 / (scale * SUPER)                        # image pixels per fine pixel
    fine = ops.resample_area(crop, (_FINE, _FINE), (r1 - r0) / 2 - _FINE / 2 * step,
                             (c1 - c0) / 2 - _FINE / 2 * step, step, step, gain=1.0 / peak)
    # one full dilation or erosion on the fine grid moves the width by 2 / SUPER field pixels
    return _centre(_set_weight(fine, (WEIGHT - width * scale) * SUPER / 2))


def _set_weight(fine, steps):
    """The fine image with strokes widened (steps > 0) or narrowed by ``steps`` fine pixels a side."""
    steps = float(np.clip(steps, -MAX_STEPS, MAX_STEPS))
    img = fine.reshape(1, *fine.shape)
    while abs(steps) > 1e-3:
        amount = np.array([np.clip(steps, -1.0, 1.0)], dtype=np.float32)
        img = ops.stroke_width(img, amount)
        steps -= float(amount[0])
    return img[0]


def _centre(fine):
    """Average the fine grid down to the 28x28 field, its centre of mass at the field's CENTRE."""
    mass, cy, cx, _ = ops.ink_moments(fine)
    if mass <= 0:
        return np.zeros((SIZE, SIZE), dtype=np.float32)
    out = ops.resample_area(fine, (SIZE, SIZE), cy - CENTRE * SUPER, cx - CENTRE * SUPER,
                            SUPER, SUPER)
    return out


def _gather(strokes):
    """All points in one (P, 2) float32 array and the number in each non-empty stroke."""
    if isinstance(strokes, np.ndarray) and strokes.ndim == 2:
        strokes = [strokes]
    if not isinstance(strokes, (list, tuple)):
        raise TypeError(f"strokes must be a list of (n, 2) point arrays, got {type(strokes).__name__}")
    parts, lengths = [], []
    for i, s in enumerate(strokes):
        try:
            pts = np.asarray(s, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"stroke {i} is not an array of numbers") from None
        if pts.size == 0:
            continue
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"stroke {i} must have shape (n, 2), got {pts.shape}")
        if not np.isfinite(pts).all():
            raise ValueError(f"stroke {i} holds NaN or Inf")
        parts.append(pts)
        lengths.append(len(pts))
    if not parts:
        return np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=np.int64)
    xy = np.concatenate(parts)
    # only the shape counts: move the points near 0 so float32 keeps their precision
    xy = (xy - xy.min(axis=0)).astype(np.float32)
    return xy, np.array(lengths, dtype=np.int64)


def _as_image(image):
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a 2-D numpy array, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W) grayscale, got shape {image.shape}")
    if image.dtype == np.uint8:
        return ops.scale_u8(np.ascontiguousarray(image))
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_) or \
            np.issubdtype(image.dtype, np.complexfloating):
        raise TypeError(f"image must hold real numbers, got dtype {image.dtype}")
    img = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(img).all():
        raise ValueError("image holds NaN or Inf")
    return img
