"""Distorted copies of digits: more training data, and a network that reads drawings.

Simard, Steinkraus & Platt (2003) showed that a network trained on digits moved about a little
(affine maps: shift, rotation, scale, shear) and bent a little (elastic distortions: every
pixel displaced by a smooth random field) reads unseen digits better; people's drawings vary
in exactly these ways, and in the width of their pen, so the stroke width varies too.

    affine(images, rng, max_shift=2, max_rotation=15, max_scale=0.1, max_shear=0.2)
    elastic(images, rng, alpha=34, sigma=4)
    stroke_width(images, rng, max_thin=0.5, max_thick=1.0)
    Augmenter(...)(images, rng)       all three at once, one interpolation per image
    fit(net, images, labels, epochs, rng, ...)    Network.fit on fresh distortions every epoch
    distorted_epochs(images, rng, epochs)          the same distortions, made a step ahead

``images`` is (n, 28, 28) or (n, 784) float32; every function returns a new array of the same
shape. The randomness comes only from ``rng``, a numpy Generator, so the same seed gives the
same distortions. The pixel work (warping, smoothing the fields, dilating strokes) is done by
the C kernels in csrc/augment.c and csrc/preprocess.c; numpy only draws the random numbers.
"""
import copy

import numpy as np

from . import ops

CHUNK = 8192      # images per C call: bounds the memory the random fields take


def affine_matrices(n, rng, max_shift=2.0, max_rotation=15.0, max_scale=0.1, max_shear=0.2,
                    size=(28, 28)):
    """n random affine maps as (n, 6) float32 rows for ops.warp, about the image's centre.

    Each digit is sheared (x += shear*y), scaled by 1 +- max_scale along each axis, rotated by
    up to max_rotation degrees and shifted by up to max_shift pixels, all uniformly at random.
    ops.warp needs the inverse (where each output pixel comes from), which is what is returned.
    """
    for name, v in (("max_shift", max_shift), ("max_rotation", max_rotation),
                    ("max_scale", max_scale), ("max_shear", max_shear)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    if max_scale >= 1:
        raise ValueError(f"max_scale must be below 1 (a scale of 0 erases the digit), got {max_scale}")
    theta = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))
    sx, sy = 1 + rng.uniform(-max_scale, max_scale, (2, n))
    shear = rng.uniform(-max_shear, max_shear, n)
    tx, ty = rng.uniform(-max_shift, max_shift, (2, n))
    cos, sin = np.cos(theta), np.sin(theta)
    # forward map L = rotation . scale . shear, as [[a, b], [c, d]]
    a, b = cos * sx, cos * sx * shear - sin * sy
    c, d = sin * sx, sin * sx * shear + cos * sy
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    cy, cx = size[0] / 2, size[1] / 2
    # output point p comes from L^-1 (p - centre - shift) + centre
    ex, ey = cx + tx, cy + ty
    mats = np.stack([ia, ib, cx - ia * ex - ib * ey, ic, id_, cy - ic * ex - id_ * ey], axis=1)
    return np.ascontiguousarray(mats, dtype=np.float32)


def elastic_fields(n, rng, alpha=34.0, sigma=4.0, size=(28, 28)):
    """Displacement fields (dx, dy), each (n, h, w): random noise smoothed by a Gaussian of
    standard deviation sigma pixels, times alpha (Simard et al. 2003, section 2), for images of
    ``size`` (H, W); ops.warp reads them at each pixel's place.

    Two shortcuts make this several times cheaper than the paper's recipe without changing
    what comes out in any way that matters: the noise is normal rather than uniform, with the
    same variance (1/3), which numpy draws faster; and while sigma >= 2 the grid is halved,
    (h, w) = (H/2, W/2) with sigma/2 and half the gain (a Gaussian over cells four times as
    large sums a quarter as many), to 14x14 for MNIST's sigma 4; ops.warp interpolates the
    coarse field: a Gaussian that wide leaves nothing the coarse grid would miss.
    """
    if not (np.isfinite(alpha) and alpha >= 0 and np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"alpha and sigma must be finite numbers >= 0, got {alpha}, {sigma}")
    H, W = size
    gain = alpha / np.sqrt(3.0)
    while sigma >= 2 and H >= 16 and W >= 16:
        H, W, sigma, gain = (H + 1) // 2, (W + 1) // 2, sigma / 2, gain / 2
    noise = rng.standard_normal((2 * n, H, W), dtype=np.float32)
    smooth = ops.gaussian_blur(noise, sigma, gain=gain)
    return smooth[:n], smooth[n:]


def affine(images, rng, max_shift=2.0, max_rotation=15.0, max_scale=0.1, max_shear=0.2):
    """Each image under its own random affine map (see affine_matrices)."""
    stack, shape = _stack(images)
    mats = affine_matrices(len(stack), rng, max_shift, max_rotation, max_scale, max_shear,
                           stack.shape[1:])
    return ops.warp(stack, mats).reshape(shape)


def elastic(images, rng, alpha=34.0, sigma=4.0):
    """Each image bent by its own smooth random displacement field (see elastic_fields)."""
    stack, shape = _stack(images)
    dx, dy = elastic_fields(len(stack), rng, alpha, sigma, stack.shape[1:])
    return ops.warp(stack, _identity(len(stack)), dx, dy).reshape(shape)


def stroke_width(images, rng, max_thin=0.5, max_thick=1.0):
    """Each image's strokes narrowed or widened by a random amount in [-max_thin, max_thick]
    (1 widens by about two pixels, -1 narrows by as much; see ops.stroke_width)."""
    if not (0 <= max_thin <= 1 and 0 <= max_thick <= 1):
        raise ValueError(f"max_thin and max_thick must lie in [0, 1], got {max_thin}, {max_thick}")
    stack, shape = _stack(images)
    amount = rng.uniform(-max_thin, max_thick, len(stack)).astype(np.float32)
    return ops.stroke_width(stack, amount).reshape(shape)


class Augmenter:
    """All distortions at once: ``Augmenter()(images, rng)`` returns distorted copies.

    Every image gets a random affine map; a fraction ``p_elastic`` of them also an elastic field
    (both in one warp, so the image is interpolated once); then its stroke width changes.
    Set a strength to 0 to leave that distortion out.
    """

    def __init__(self, max_shift=2.0, max_rotation=15.0, max_scale=0.1, max_shear=0.2,
                 alpha=34.0, sigma=4.0, p_elastic=0.5, max_thin=0.5, max_thick=1.0):
        self.affine = dict(max_shift=max_shift, max_rotation=max_rotation, max_scale=max_scale,
                           max_shear=max_shear)
        if not 0 <= p_elastic <= 1:
            raise ValueError(f"p_elastic must lie in [0, 1], got {p_elastic}")
        self.alpha, self.sigma, self.p_elastic = alpha, sigma, p_elastic
        self.max_thin, self.max_thick = max_thin, max_thick
        affine_matrices(0, np.random.default_rng(0), **self.affine)     # check the settings now
        stroke_width(np.zeros((0, 1, 1), np.float32), np.random.default_rng(0), max_thin, max_thick)

    def __call__(self, images, rng):
        stack, shape = _stack(images)
        out = np.empty_like(stack)
        for start in range(0, len(stack), CHUNK):
            out[start:start + CHUNK] = self._chunk(stack[start:start + CHUNK], rng)
        return out.reshape(shape)

    def _chunk(self, stack, rng):
        n, size = len(stack), stack.shape[1:]
        mats = affine_matrices(n, rng, size=size, **self.affine)
        if self.p_elastic > 0 and self.alpha > 0:
            bent = rng.random(n) < self.p_elastic       # these get an elastic field, the rest none
            dx, dy = elastic_fields(int(bent.sum()), rng, self.alpha, self.sigma, size)
            warped = np.empty_like(stack)
            warped[~bent] = ops.warp(np.ascontiguousarray(stack[~bent]), mats[~bent])
            warped[bent] = ops.warp(np.ascontiguousarray(stack[bent]), mats[bent], dx, dy)
        else:
            warped = ops.warp(stack, mats)
        if self.max_thin == 0 and self.max_thick == 0:
            return warped
        return stroke_width(warped, rng, self.max_thin, self.max_thick)

    def __repr__(self):
        a = self.affine
        return (f"Augmenter(shift={a['max_shift']}, rotation={a['max_rotation']}, "
                f"scale={a['max_scale']}, shear={a['max_shear']}, elastic alpha={self.alpha} "
                f"sigma={self.sigma} p={self.p_elastic}, stroke -{self.max_thin}..+{self.max_thick})")


def distorted_epochs(images, rng, epochs, augmenter=None):
    """Yield ``epochs`` freshly distorted copies of ``images`` (n, H, W), one per epoch.

    Each copy is made on a second thread while the caller trains on the one before: the C
    kernels and numpy let go of Python's lock while they work, so on a machine with a core to
    spare the distortions cost no training time. The draws come from ``rng`` one epoch after
    another, so a seed still gives the same distortions; while the caller trains on an epoch,
    ``rng`` stands just past that epoch's draws (so a checkpoint may save it).
    """
    from concurrent.futures import ThreadPoolExecutor
    augmenter = Augmenter() if augmenter is None else augmenter
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        images = ops.scale_u8(np.ascontiguousarray(images))
    stack, _ = _stack(images)
    if epochs <= 0:
        return
    # the thread draws from a copy, and ``rng`` takes the copy's state when an epoch's digits
    # are handed over: while an epoch trains, ``rng`` is just past that epoch's draws, which is
    # what a checkpoint saved at the epoch's end must hold for a resumed run to go on the same
    with ThreadPoolExecutor(max_workers=1) as worker:
        ahead = copy.deepcopy(rng)
        upcoming = worker.submit(augmenter, stack, ahead)
        for epoch in range(epochs):
            current = upcoming.result()
            rng.bit_generator.state = ahead.bit_generator.state
            if epoch + 1 < epochs:
                ahead = copy.deepcopy(rng)
                upcoming = worker.submit(augmenter, stack, ahead)
            yield current


def fit(net, images, labels, epochs, rng, augmenter=None, start_epoch=0, history=None, **kwargs):
    """Network.fit, but every epoch on freshly distorted copies of ``images``.

    images (n, H, W) uint8 or float32, labels as Network.fit takes them; ``augmenter`` defaults
    to Augmenter(). The other keyword arguments (batch_size, optimizer, validation, callback,
    on_epoch_end) go to Network.fit, which is called once per epoch and resumed from its history,
    so the optimiser's state and the history run on across epochs. The next epoch's digits are
    distorted while this one trains (see distorted_epochs).
    """
    n = len(images)
    for epoch, distorted in zip(range(start_epoch, epochs),
                                distorted_epochs(images, rng, epochs - start_epoch, augmenter)):
        history = net.fit(distorted.reshape(n, -1), labels, epochs=epoch + 1, start_epoch=epoch,
                          history=history, **kwargs)
    return history


def _identity(n):
    return np.tile(np.array([1, 0, 0, 0, 1, 0], dtype=np.float32), (n, 1))


def _stack(images):
    """images as a C-contiguous (n, H, W) float32 stack (28x28 when given flat), and its shape."""
    if not isinstance(images, np.ndarray) or images.dtype != np.float32:
        raise TypeError("images must be a float32 numpy array, (n, 28, 28) or (n, 784)")
    if images.ndim == 2 and images.shape[1] == 784:
        stack = images.reshape(-1, 28, 28)
    elif images.ndim == 3:
        stack = images
    else:
        raise ValueError(f"images must be (n, H, W) or (n, 784), got shape {images.shape}")
    return np.ascontiguousarray(stack), images.shape
