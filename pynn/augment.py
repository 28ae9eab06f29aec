"""Distorted copies of digits: more training data, and a network that reads drawings.

Simard, Steinkraus & Platt (2003) showed that a network trained on digits moved about a little
(affine maps: shift, rotation, scale, shear) and bent a little (elastic distortions: every
pixel displaced by a smooth random field) reads unseen digits better; people's drawings vary
in exactly these ways, and in the width of their pen, so the stroke width varies too.

    affine(images, rng, max_shift=2, max_rotation=15, max_scale=0.1, max_shear=0.2)
    elastic(images, rng, alpha=34, sigma=4)
    stroke_width(images, rng, max_thin=0.5, max_thick=1.0)
    Augmenter(...)(images, rng)       all three at once, one interpolation per image
    named(kind)                        pynn train --augment's: "full" or "mild" (KINDS)
    fit(net, images, labels, epochs, rng, ...)    Network.fit on fresh distortions every epoch
    distorted_epochs(images, rng, epochs)          the same distortions, made a step ahead

``images`` is (n, 28, 28) or (n, 784) float32; every function returns a new array of the same
shape. The randomness comes only from ``rng``, a numpy Generator, so the same seed gives the
same distortions. The pixel work (warping, smoothing the fields, dilating strokes) is done by
the C kernels in csrc/image/augment.c and csrc/image/preprocess.c; numpy only draws the random numbers.
Augmenter makes each image in one C pass (ops.distort: field, warp and stroke width while the
image is in cache, one call per chunk of images); ``python -m pynn.augment --bench`` times one
epoch of it against a training epoch.
"""
import copy
import inspect
import sys

import numpy as np

from . import ops

CHUNK = 8192      # images per C call: bounds the memory the random fields take
_OWN_REFS = 2     # sys.getrefcount(spent[i]) of an array only distorted_epochs' list holds


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


def field_grid(size, sigma=4.0, alpha=34.0):
    """(fh, fw, sigma, gain): the grid the elastic noise of images of ``size`` (H, W) is drawn
    on, and the smoothing and gain there. While sigma >= 2 the grid is halved, with sigma/2 and
    half the gain (a Gaussian over cells four times as large sums a quarter as many), to 14x14
    for MNIST's sigma 4: a Gaussian that wide leaves nothing the coarse grid would miss, and the
    warp reads the coarse field bilinearly at each pixel."""
    if not (np.isfinite(alpha) and alpha >= 0 and np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"alpha and sigma must be finite numbers >= 0, got {alpha}, {sigma}")
    H, W = size
    gain = float(alpha)
    while sigma >= 2 and H >= 16 and W >= 16:
        H, W, sigma, gain = (H + 1) // 2, (W + 1) // 2, sigma / 2, gain / 2
    return H, W, float(sigma), gain


def elastic_noise(n, rng, size, sigma=4.0):
    """The random numbers of n elastic fields: (n, 2, fh, fw) uniform in [0, 1), the pair
    (dx, dy) of each image on the grid field_grid gives."""
    fh, fw, _, _ = field_grid(size, sigma)
    return rng.random((n, 2, fh, fw), dtype=np.float32)


def fields_from_noise(noise, sigma, gain):
    """Displacement fields (dx, dy), each (n, fh, fw), from elastic_noise: the uniform noise
    2u - 1 on (-1, 1) smoothed by a Gaussian of standard deviation sigma cells, times gain
    (Simard et al. 2003, section 2, with the sigma and gain of field_grid). ops.distort makes
    the same fields inside its warp; this is the separate way, for ops.warp."""
    n, _, fh, fw = noise.shape
    smooth = ops.gaussian_blur((2 * noise - 1).reshape(2 * n, fh, fw), sigma, gain=gain)
    smooth = smooth.reshape(n, 2, fh, fw)
    return np.ascontiguousarray(smooth[:, 0]), np.ascontiguousarray(smooth[:, 1])


def elastic_fields(n, rng, alpha=34.0, sigma=4.0, size=(28, 28)):
    """n displacement fields (dx, dy), each (n, fh, fw), for images of ``size`` (H, W): uniform
    noise in (-1, 1) smoothed by a Gaussian of sigma pixels, times alpha (Simard et al. 2003),
    made on the coarse grid of field_grid; ops.warp reads them at each pixel's place."""
    fh, fw, s, gain = field_grid(size, sigma, alpha)
    return fields_from_noise(elastic_noise(n, rng, size, sigma), s, gain)


def affine(images, rng, max_shift=2.0, max_rotation=15.0, max_scale=0.1, max_shear=0.2):
    """Each image under its own random affine map (see affine_matrices)."""
    stack, shape = _stack(images)
    mats = affine_matrices(len(stack), rng, max_shift, max_rotation, max_scale, max_shear,
                           stack.shape[1:])
    return ops.warp(stack, mats).reshape(shape)


def elastic(images, rng, alpha=34.0, sigma=4.0):
    """Each image bent by its own smooth random displacement field (see elastic_fields)."""
    stack, shape = _stack(images)
    n, size = len(stack), stack.shape[1:]
    _, _, s, gain = field_grid(size, sigma, alpha)
    noise = elastic_noise(n, rng, size, sigma)
    return _distort(stack, identity(n), np.arange(n), noise, s, gain, None).reshape(shape)


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

    def __call__(self, images, rng, out=None, separate=False):
        """Distorted copies of images; into ``out`` (float32, C-contiguous, images' shape, apart
        from images) when given, which saves a fresh array's page faults every epoch.
        ``separate`` runs the distortions as separate kernels (warp, blur, stroke width) instead
        of one pass: the same digits apart from rounding, slower; for timing and tests."""
        stack, shape = _stack(images)
        if out is None:
            out = np.empty_like(stack)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.float32
                  and out.flags.c_contiguous and out.shape == shape):
            raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}")
        else:
            out = out.reshape(stack.shape)
        for start in range(0, len(stack), CHUNK):
            self._chunk(stack[start:start + CHUNK], rng, out[start:start + CHUNK], separate)
        return out.reshape(shape)

    def _chunk(self, stack, rng, out, separate=False):
        n, size = len(stack), stack.shape[1:]
        mats = affine_matrices(n, rng, size=size, **self.affine)
        field = noise = None
        sigma = gain = 0.0
        if self.p_elastic > 0 and self.alpha > 0:
            bent = rng.random(n) < self.p_elastic       # these get an elastic field, the rest none
            field = np.where(bent, np.cumsum(bent) - 1, -1).astype(np.int64)
            _, _, sigma, gain = field_grid(size, self.sigma, self.alpha)
            noise = elastic_noise(int(bent.sum()), rng, size, self.sigma)
        amount = None
        if self.max_thin != 0 or self.max_thick != 0:
            amount = rng.uniform(-self.max_thin, self.max_thick, n).astype(np.float32)
        return _distort(stack, mats, field, noise, sigma, gain, amount, out, separate)

    def __repr__(self):
        a = self.affine
        return (f"Augmenter(shift={a['max_shift']}, rotation={a['max_rotation']}, "
                f"scale={a['max_scale']}, shear={a['max_shear']}, elastic alpha={self.alpha} "
                f"sigma={self.sigma} p={self.p_elastic}, stroke -{self.max_thin}..+{self.max_thick})")


# what ``pynn train --augment KIND`` trains on. "mild" is for the last epochs of a long run,
# started from its saved model with --init: after many epochs on strongly bent digits, a few on
# digits that are only moved about a little let the network settle on digits as MNIST has them.
KINDS = {
    "full": {},
    "mild": dict(max_rotation=10.0, max_shear=0.1, p_elastic=0.0, max_thin=0.0, max_thick=0.0),
}


def named(kind):
    """The Augmenter of ``pynn train --augment KIND`` (a name in KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"augment must be one of {', '.join(KINDS)}; got {kind!r}")
    return Augmenter(**KINDS[kind])


def distorted_epochs(images, rng, epochs, augmenter=None):
    """Yield ``epochs`` freshly distorted copies of ``images`` (n, H, W), one per epoch.

    Each copy is made on a second thread while the caller trains on the one before: the C
    kernels and numpy let go of Python's lock while they work, so on a machine with a core to
    spare the distortions cost no training time. The draws come from ``rng`` one epoch after
    another, so a seed still gives the same distortions; while the caller trains on an epoch,
    ``rng`` stands just past that epoch's draws (so a checkpoint may save it). An Augmenter
    writes into the array of an epoch the caller has let go of (no other reference to it is
    left) rather than into a fresh one: 188 MB of new pages an epoch cost CPU time too.
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
    takes_out = "out" in inspect.signature(augmenter).parameters
    spent = []              # arrays of epochs handed over, kept to be written again once free

    def make(state):
        if not takes_out:
            return worker.submit(augmenter, stack, state), None
        # the caller holds the epoch it trains on and, until its loop moves on, the one before;
        # an older array that nothing else refers to any more is free to take the next epoch
        free = [i for i in range(len(spent)) if sys.getrefcount(spent[i]) <= _OWN_REFS]
        buf = spent.pop(free[0]) if free else np.empty_like(stack)
        del spent[:-2]
        return worker.submit(augmenter, stack, state, out=buf), buf

    with ThreadPoolExecutor(max_workers=1) as worker:
        ahead = copy.deepcopy(rng)
        upcoming, buf = make(ahead)
        for epoch in range(epochs):
            current = upcoming.result()
            if buf is not None:
                spent.append(buf)
            rng.bit_generator.state = ahead.bit_generator.state
            if epoch + 1 < epochs:
                ahead = copy.deepcopy(rng)
                upcoming, buf = make(ahead)
            yield current
            del current


def fit(net, images, labels, epochs, rng, augmenter=None, **kwargs):
    """Network.fit on freshly distorted copies of ``images`` every epoch, drawn from ``rng``
    (``augmenter`` defaults to Augmenter()); the other keyword arguments go to Network.fit."""
    return net.fit(images, labels, epochs=epochs, transform=augmenter or Augmenter(),
                   transform_rng=rng, **kwargs)


def identity(n):
    """n affine maps (n,6) that leave a digit where it is: the rows (1, 0, 0, 0, 1, 0) that
    ops.distort and ops.warp take."""
    return np.tile(np.array([1, 0, 0, 0, 1, 0], dtype=np.float32), (n, 1))


def _distort(stack, mats, field, noise, sigma, gain, amount, out=None, separate=False):
    """stack (n,H,W) warped by mats (n,6) and the elastic fields of noise where field >= 0,
    then its stroke width changed by amount: in one C pass (ops.distort) where the images are
    small enough, else (or when ``separate``) with ops.warp, gaussian_blur and stroke_width,
    which do the same arithmetic apart from rounding."""
    if not separate and max(stack.shape[1:], default=0) <= ops.DISTORT_MAX:
        return ops.distort(stack, mats, field, noise, sigma, gain, amount, out=out)
    warped = np.empty_like(stack)
    if field is None:
        warped[:] = ops.warp(stack, mats)
    else:
        bent = field >= 0
        dx, dy = fields_from_noise(noise, sigma, gain)
        warped[~bent] = ops.warp(np.ascontiguousarray(stack[~bent]), mats[~bent])
        warped[bent] = ops.warp(np.ascontiguousarray(stack[bent]), mats[bent],
                                dx[field[bent]], dy[field[bent]])
    if amount is not None:
        warped = ops.stroke_width(warped, amount)
    if out is None:
        return warped
    out[:] = warped
    return out


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


def bench(rounds=3, data_dir=None, out=print):
    """CPU time of one epoch's distortions (Augmenter() on MNIST's 60,000 training digits, as
    train_default and ``pynn train --augment`` make them through distorted_epochs, which
    writes each epoch into an array an earlier epoch left) next to one training epoch of
    784-800-10 and of 784-512-10 at batch 64 (Network.train_epoch), all on one thread, taking
    turns ``rounds`` times after a warm-up; medians. For comparison the distortions are also
    timed into a fresh array, and with the separate kernels (ops.warp, gaussian_blur,
    stroke_width) one after another."""
    import statistics
    import time
    from . import datasets
    from .network import Network
    from .optim import SGD
    ops.set_num_threads(1)
    X, y = datasets.mnist("train", data_dir=data_dir)
    X = ops.scale_u8(np.ascontiguousarray(X)).reshape(len(X), 28, 28)
    flat, y = X.reshape(len(X), 784), y.astype(np.int64)
    augmenter, rng, reused = Augmenter(), np.random.default_rng(0), np.empty_like(X)
    nets = {h: (Network([784, h, 10], seed=0), SGD(lr=0.05, momentum=0.9)) for h in (800, 512)}

    def train(h):
        net, opt = nets[h]
        net.train_epoch(flat, y, 64, opt, order=net.rng.permutation(len(flat)))

    ONE = "distortions, one pass, as in training"
    jobs = {ONE: lambda: augmenter(X, rng, out=reused),
            "distortions, one pass, into a new array": lambda: augmenter(X, rng),
            "distortions, separate kernels": lambda: augmenter(X, rng, separate=True),
            "training epoch 784-800-10, batch 64": lambda: train(800),
            "training epoch 784-512-10, batch 64": lambda: train(512)}
    times = {name: [] for name in jobs}
    for r in range(rounds + 1):
        for name, job in jobs.items():
            start = time.process_time()
            job()
            if r:                                   # round 0 warms up
                times[name].append(time.process_time() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    out(f"one epoch of {len(X):,} MNIST digits, one thread: CPU seconds (user + system), "
        f"median of {rounds} rounds taken in turns\n{augmenter}")
    for name, t in med.items():
        out(f"  {name:42s} {t:6.2f} s")
    for h in (800, 512):
        train_t = med[f"training epoch 784-{h}-10, batch 64"]
        others = ", ".join(f"{name.split(', ', 1)[1]} {t / train_t:.2f}"
                           for name, t in med.items() if name.startswith("dist") and name != ONE)
        out(f"  distortions / training epoch 784-{h}-10: {med[ONE] / train_t:.2f}  ({others})")
    return med


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="python -m pynn.augment",
                                description="Distorted digits for training; --bench times them.")
    p.add_argument("--bench", action="store_true", help="CPU time of one epoch's distortions "
                   "next to a training epoch of 784-800-10 and 784-512-10, one thread")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the benchmark (default 3)")
    p.add_argument("--data-dir", default=None, help="where MNIST's files are (default: the cache)")
    args = p.parse_args(argv)
    if not args.bench:
        p.print_help()
        return 0
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    print("command: python -m pynn.augment " + " ".join(sys.argv[1:] if argv is None else argv))
    bench(args.rounds, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
