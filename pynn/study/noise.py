"""Noise that a digit meets outside the training set, at graded levels (the seed's task 5),
and noise in the labels: training digits filed under the wrong class (``wrong_labels``).

Every function takes images as float32 in 0..1, shaped (n, 784) or (n, 28, 28), and returns a
new array of the same shape; the input is never changed. Each draws its randomness from
``rng`` (a numpy Generator or an int seed), so the same seed gives the same noisy images. The
work is vectorised over the images: the whole test set is noised in one call.

``LEVELS[name]`` lists the amounts the study grades a noise at: level 0 is the clean image
(every function returns its input unchanged at amount 0), and the effect grows with the level.
``apply(name, X, level, seed)`` noises X at level index ``level``.

This is data preparation, outside the network's training and inference path: numpy does
the arithmetic here, except the resampling of shifted and rotated images, which runs in C
(pynn.ops.warp).
"""
import numpy as np

from .. import ops

SIDE = 28


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _images(X):
    """X as (n, 28, 28) float32 (a copy), and a function giving results X's own shape back."""
    if not isinstance(X, np.ndarray):
        raise TypeError(f"X must be a numpy array of images, got {type(X).__name__}")
    if X.dtype != np.float32:
        raise TypeError(f"X must be float32 pixels in 0..1, got {X.dtype}")
    if X.ndim == 1 and X.size == SIDE * SIDE:
        X = X.reshape(1, -1)
    if X.ndim < 2 or int(np.prod(X.shape[1:])) != SIDE * SIDE:
        raise ValueError(f"X must hold 28x28 images, (n, 784) or (n, 28, 28); got shape {X.shape}")
    shape = X.shape
    return X.reshape(-1, SIDE, SIDE).copy(), lambda img: np.ascontiguousarray(img.reshape(shape))


def _amount(name, value, high=None):
    value = float(value)
    if not np.isfinite(value) or value < 0 or (high is not None and value > high):
        bound = f"in [0, {high}]" if high is not None else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def gaussian(X, sigma, rng=0):
    """Add N(0, sigma^2) to every pixel, then clip to 0..1 (sensor noise)."""
    img, back = _images(X)
    sigma = _amount("sigma", sigma)
    if sigma > 0:
        img += _rng(rng).normal(0.0, sigma, size=img.shape).astype(np.float32)
        np.clip(img, 0.0, 1.0, out=img)
    return back(img)


def salt_pepper(X, fraction, rng=0):
    """Set a ``fraction`` of the pixels, chosen at random, to 0 or 1 (half each)."""
    img, back = _images(X)
    fraction = _amount("fraction", fraction, 1.0)
    if fraction > 0:
        g = _rng(rng)
        hit = g.random(img.shape) < fraction
        img[hit] = (g.random(int(hit.sum())) < 0.5).astype(np.float32)
    return back(img)


def _filter(img, kernel, axis):
    """Correlate every image with a 1-D kernel along one axis (zero padding at the edges)."""
    r = len(kernel) // 2
    pad = [(0, 0)] * 3
    pad[axis] = (r, r)
    p = np.pad(img, pad)
    out = np.zeros_like(img)
    for i, w in enumerate(kernel):
        out += w * np.take(p, np.arange(i, i + SIDE), axis=axis)
    return out


def blur(X, sigma, rng=0):
    """Gaussian blur of width ``sigma`` pixels (an out-of-focus camera). Not random."""
    img, back = _images(X)
    sigma = _amount("sigma", sigma)
    if sigma > 0:
        r = max(1, int(np.ceil(3 * sigma)))
        t = np.arange(-r, r + 1, dtype=np.float32)
        k = np.exp(-0.5 * (t / sigma) ** 2)
        k /= k.sum()
        img = _filter(_filter(img, k, 1), k, 2)
    return back(img)


def warp(img, A, t):
    """Resample each image through an affine map, bilinearly, with 0 outside the image.

    img (n,28,28); A (n,2,2) and t (n,2) map an output pixel's (row, col), measured from the
    image centre, to the input position it reads: src = A @ p + t. The resampling runs in C
    (ops.warp, whose maps take (x, y) with pixel centres at i + 0.5, so the centre is 14).
    """
    c = SIDE / 2.0
    m = np.empty((img.shape[0], 6))
    m[:, 0], m[:, 1] = A[:, 1, 1], A[:, 1, 0]          # source x from (x, y)
    m[:, 2] = t[:, 1] + c - (A[:, 1, 1] + A[:, 1, 0]) * c
    m[:, 3], m[:, 4] = A[:, 0, 1], A[:, 0, 0]          # source y from (x, y)
    m[:, 5] = t[:, 0] + c - (A[:, 0, 1] + A[:, 0, 0]) * c
    return ops.warp(np.ascontiguousarray(img, dtype=np.float32), m.astype(np.float32))


def shift(X, pixels, rng=0):
    """Move each digit by exactly ``pixels`` in a random direction (bilinear, zero fill)."""
    img, back = _images(X)
    pixels = _amount("pixels", pixels)
    if pixels > 0:
        n = img.shape[0]
        angle = _rng(rng).uniform(0, 2 * np.pi, n)
        t = -pixels * np.stack([np.sin(angle), np.cos(angle)], axis=1)
        img = warp(img, np.broadcast_to(np.eye(2), (n, 2, 2)), t)
    return back(img)


def rotate(X, degrees, rng=0):
    """Rotate each digit about the image centre by ``degrees``, clockwise or anticlockwise at random."""
    img, back = _images(X)
    degrees = _amount("degrees", degrees, 180.0)
    if degrees > 0:
        n = img.shape[0]
        a = np.deg2rad(degrees) * _rng(rng).choice([-1.0, 1.0], n)
        cos, sin = np.cos(a), np.sin(a)
        A = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)
        img = warp(img, A, np.zeros((n, 2)))
    return back(img)


def occlude(X, side, rng=0):
    """Blank a ``side`` x ``side`` block (set it to background) centred at a random point of
    the digit's central 16x16 area: something lies over part of the digit."""
    img, back = _images(X)
    side = int(round(_amount("side", side, SIDE)))
    if side > 0:
        n = img.shape[0]
        centre = _rng(rng).integers(6, SIDE - 6, size=(n, 2))
        lo = centre - side // 2
        ar = np.arange(SIDE)
        in_r = (ar[None, :] >= lo[:, :1]) & (ar[None, :] < lo[:, :1] + side)
        in_c = (ar[None, :] >= lo[:, 1:]) & (ar[None, :] < lo[:, 1:] + side)
        img[in_r[:, :, None] & in_c[:, None, :]] = 0.0
    return back(img)


def _neighbours(img, reduce):
    """Each pixel's max (dilation) or min (erosion) over itself and its 4 neighbours."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    stack = [p[:, 1:-1, 1:-1], p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]]
    return reduce.reduce(stack)


def _morph(img, amount, reduce):
    """``amount`` steps of dilation/erosion; a fractional last step blends it in part."""
    whole, part = int(amount), amount - int(amount)
    for _ in range(whole):
        img = _neighbours(img, reduce)
    if part > 0:
        img = (1 - part) * img + part * _neighbours(img, reduce)
    return img.astype(np.float32)


def thicken(X, amount, rng=0):
    """Widen the strokes: grey dilation, ``amount`` pixels (a thick pen). Not random."""
    img, back = _images(X)
    return back(_morph(img, _amount("amount", amount, 5), np.maximum))


def thin(X, amount, rng=0):
    """Narrow the strokes: grey erosion, ``amount`` pixels (a fine pen). Not random."""
    img, back = _images(X)
    return back(_morph(img, _amount("amount", amount, 5), np.minimum))


# name -> (function, amounts at levels 0..5, what the amount measures)
NOISES = {
    "gaussian": (gaussian, [0, 0.1, 0.2, 0.3, 0.45, 0.6], "sigma"),
    "salt_pepper": (salt_pepper, [0, 0.05, 0.1, 0.2, 0.3, 0.4], "fraction of pixels"),
    "blur": (blur, [0, 0.5, 1.0, 1.5, 2.0, 2.5], "sigma (px)"),
    "shift": (shift, [0, 1, 2, 3, 4, 5], "pixels"),
    "rotate": (rotate, [0, 10, 20, 30, 45, 60], "degrees"),
    "occlude": (occlude, [0, 4, 6, 8, 10, 12], "block side (px)"),
    "thin": (thin, [0, 0.2, 0.4, 0.6, 0.8, 1.0], "erosion (px)"),
    "thicken": (thicken, [0, 0.25, 0.5, 1.0, 1.5, 2.0], "dilation (px)"),
}
LEVELS = {name: amounts for name, (_, amounts, _) in NOISES.items()}
MIDDLE = 3   # the level the comparison table reports


def apply(name, X, level, rng=0):
    """X with noise ``name`` at level index ``level`` (0 = clean .. len(LEVELS[name]) - 1)."""
    if name not in NOISES:
        raise ValueError(f"noise must be one of {', '.join(NOISES)}; got {name!r}")
    fn, amounts, _ = NOISES[name]
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level < len(amounts):
        raise ValueError(f"level must be an int in 0..{len(amounts) - 1}, got {level!r}")
    return fn(X, amounts[level], rng)


TEST_SEED = 12345


def noisy_test_set(name, X, level):
    """The test digits X under noise ``name`` at ``level``, with a fixed seed per level, so
    that every model and every method meets the same noisy digits."""
    return apply(name, X, level, TEST_SEED + 97 * level)


def apply_mixed(name, X, rng=0, levels=None):
    """X with noise ``name`` at a level drawn per image from ``levels`` (default: 1..top):
    the training data of a model that should cope with every level."""
    g = _rng(rng)
    levels = list(levels or range(1, len(LEVELS[name])))
    which = g.choice(levels, size=X.shape[0])
    out = X.copy()
    for level in levels:
        sel = which == level
        if sel.any():
            out[sel] = apply(name, X[sel], level, g)
    return out


# ---- noise in the labels ----

LABEL_SHARES = [0, 0.1, 0.2, 0.3, 0.4, 0.5]   # the shares of wrong training labels studied
LABEL_SEED = 2718


def wrong_labels(y, share, rng=LABEL_SEED, n_classes=10):
    """A copy of the labels ``y`` in which exactly round(share * n) of them, chosen at random,
    are replaced by another class, drawn uniformly from the n_classes - 1 others (so a
    replaced label is never its old value). The same seed picks nested sets: every label
    wrong at a smaller share is wrong, and the same, at a larger one."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must be a 1-D array of integer labels, got {y.dtype} of shape {y.shape}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    share = _amount("share", share, 1.0)
    g = _rng(rng)
    n = len(y)
    order = g.permutation(n)                          # who goes wrong first
    offset = g.integers(1, n_classes, size=n)         # by how much: 1..C-1 classes along
    pick = order[:int(round(share * n))]
    out = y.copy()
    out[pick] = (y[pick] + offset[pick]) % n_classes
    return out
