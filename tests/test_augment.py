"""Distortions for training: pynn.augment and its kernels (csrc/image/augment.c)."""
import numpy as np
import pytest

from pynn import augment, ops


def digits(n=16, seed=0):
    """Blob-and-bar images standing in for digits: ink away from the border, some texture."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28), dtype=np.float32)
    for k in range(n):
        r, c = rng.integers(8, 14, 2)
        imgs[k, r:r + 8, c:c + 3] = 1.0
        imgs[k, r:r + 2, c:c + 7] = 0.8
        imgs[k, r + 3:r + 5, c + 3:c + 5] = rng.random((2, 2))
    return imgs


def reference_warp(imgs, mats, dx=None, dy=None):
    """ops.warp in float64 numpy: bilinear between pixel centres, 0 outside."""
    n, H, W = imgs.shape
    out = np.zeros((n, H, W))
    y, x = np.mgrid[0:H, 0:W] + 0.5
    for k in range(n):
        m = mats[k].astype(np.float64)
        u = m[0] * x + m[1] * y + m[2] + (0 if dx is None else dx[k])
        v = m[3] * x + m[4] * y + m[5] + (0 if dy is None else dy[k])
        fy, fx = v - 0.5, u - 0.5
        r0, c0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
        ty, tx = fy - r0, fx - c0
        padded = np.pad(imgs[k].astype(np.float64), 2)

        def at(r, c):
            return padded[np.clip(r + 2, 0, H + 3), np.clip(c + 2, 0, W + 3)]
        val = ((1 - ty) * ((1 - tx) * at(r0, c0) + tx * at(r0, c0 + 1))
               + ty * ((1 - tx) * at(r0 + 1, c0) + tx * at(r0 + 1, c0 + 1)))
        inside = (fy > -1) & (fy < H) & (fx > -1) & (fx < W)
        out[k] = np.where(inside, val, 0)
    return out


def centre_of_mass(img):
    _, cy, cx, _ = ops.ink_moments(np.ascontiguousarray(img))
    return np.array([cy, cx])


# ---- the kernels ----

def test_warp_matches_the_numpy_reference():
    rng = np.random.default_rng(3)
    imgs = digits(6)
    mats = augment.affine_matrices(6, rng, max_shift=3, max_rotation=30, max_scale=0.2,
                                   max_shear=0.3)
    dx = rng.normal(0, 1.5, imgs.shape).astype(np.float32)
    dy = rng.normal(0, 1.5, imgs.shape).astype(np.float32)
    np.testing.assert_allclose(ops.warp(imgs, mats), reference_warp(imgs, mats), atol=1e-5)
    np.testing.assert_allclose(ops.warp(imgs, mats, dx, dy), reference_warp(imgs, mats, dx, dy),
                               atol=1e-5)


def test_warp_by_whole_pixels_moves_the_image():
    imgs = digits(2)
    shift = np.array([[1, 0, -3, 0, 1, 2]] * 2, dtype=np.float32)   # right by 3, up by 2
    out = ops.warp(imgs, shift)
    np.testing.assert_array_equal(out[:, :-2, 3:], imgs[:, 2:, :-3])
    assert out[:, :, :3].max() == 0 and out[:, -2:].max() == 0


def test_gaussian_blur_matches_a_numpy_convolution():
    rng = np.random.default_rng(4)
    imgs = rng.random((3, 15, 11), dtype=np.float32)
    sigma, R = 1.5, 5
    g = np.exp(-0.5 * (np.arange(-R, R + 1) / sigma) ** 2)
    g /= g.sum()
    padded = np.pad(imgs.astype(np.float64), ((0, 0), (R, R), (R, R)))
    rows = sum(g[i] * padded[:, :, i:i + 11] for i in range(2 * R + 1))
    both = sum(g[i] * rows[:, i:i + 15, :] for i in range(2 * R + 1))
    np.testing.assert_allclose(ops.gaussian_blur(imgs, sigma, gain=2.0), 2 * both, atol=1e-5)
    np.testing.assert_array_equal(ops.gaussian_blur(imgs, 0.0), imgs)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.warp(digits(2), np.zeros((3, 6), np.float32)), "mats"),
    (lambda: ops.warp(digits(2), np.full((2, 6), np.nan, np.float32)), "mats"),
    (lambda: ops.warp(digits(2), np.zeros((2, 6), np.float32), dx=digits(2)), "dx and dy"),
    (lambda: ops.warp(digits(2).astype(np.float64), np.zeros((2, 6), np.float32)), "images"),
    (lambda: ops.gaussian_blur(digits(2), -1.0), "sigma"),
])
def test_kernel_arguments_are_checked(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()


# ---- the distortions ----

@pytest.mark.parametrize("fn", [augment.affine, augment.elastic, augment.stroke_width,
                                augment.Augmenter()])
def test_shapes_and_determinism(fn):
    imgs = digits(20)
    flat = imgs.reshape(20, 784)
    a = fn(imgs, np.random.default_rng(7))
    b = fn(imgs, np.random.default_rng(7))
    c = fn(imgs, np.random.default_rng(8))
    assert a.shape == imgs.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert fn(flat, np.random.default_rng(7)).shape == (20, 784)
    np.testing.assert_array_equal(fn(flat, np.random.default_rng(7)).reshape(imgs.shape), a)
    np.testing.assert_array_equal(imgs, digits(20))            # the input is left alone


def test_zero_strength_is_the_identity():
    imgs = digits(10)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(augment.affine(imgs, rng, 0, 0, 0, 0), imgs)
    np.testing.assert_array_equal(augment.elastic(imgs, rng, alpha=0), imgs)
    np.testing.assert_array_equal(augment.stroke_width(imgs, rng, 0, 0), imgs)
    still = augment.Augmenter(0, 0, 0, 0, alpha=0, max_thin=0, max_thick=0)
    np.testing.assert_array_equal(still(imgs, rng), imgs)


def test_mass_is_roughly_kept():
    imgs = digits(50)
    rng = np.random.default_rng(1)
    mass = imgs.sum(axis=(1, 2))
    moved = augment.affine(imgs, rng, max_shift=2, max_rotation=15, max_scale=0, max_shear=0)
    np.testing.assert_allclose(moved.sum(axis=(1, 2)), mass, rtol=0.08)
    # an elastic field stretches some parts and squeezes others: mass moves, on average it stays
    bent = augment.elastic(imgs, rng)
    ratio = bent.sum(axis=(1, 2)) / mass
    assert abs(ratio.mean() - 1) < 0.1 and ratio.min() > 0.3 and ratio.max() < 2.5
    assert np.abs(bent - imgs).mean() > 0.01                    # and it did bend them


def test_a_shifted_digit_is_shifted_by_the_drawn_amount():
    imgs = digits(30)
    rng = np.random.default_rng(5)
    moved = augment.affine(imgs, np.random.default_rng(5), max_shift=3, max_rotation=0,
                           max_scale=0, max_shear=0)
    mats = augment.affine_matrices(30, rng, max_shift=3, max_rotation=0, max_scale=0, max_shear=0)
    for k in range(30):
        drawn = -mats[k, [5, 2]]                                 # (down, right)
        np.testing.assert_allclose(centre_of_mass(moved[k]) - centre_of_mass(imgs[k]), drawn,
                                   atol=0.05)


def test_rotation_turns_the_digit():
    bar = np.zeros((1, 28, 28), dtype=np.float32)
    bar[0, 4:24, 13:15] = 1.0                                    # an upright bar
    turned = augment.affine(bar, np.random.default_rng(0), 0, 90, 0, 0)[0]
    rows = np.nonzero(turned.sum(axis=1) > 0.5)[0]
    cols = np.nonzero(turned.sum(axis=0) > 0.5)[0]
    angle = np.degrees(np.arctan2(np.ptp(rows), np.ptp(cols)))
    assert 0 < angle < 90 and abs(np.ptp(rows) - 19) > 1       # no longer upright


def test_stroke_width_changes_the_width():
    imgs = digits(20)
    thick = augment.stroke_width(imgs, np.random.default_rng(0), max_thin=0, max_thick=1)
    thin = augment.stroke_width(imgs, np.random.default_rng(0), max_thin=1, max_thick=0)
    assert (thick.sum(axis=(1, 2)) >= imgs.sum(axis=(1, 2)) - 1e-4).all()
    assert (thin.sum(axis=(1, 2)) <= imgs.sum(axis=(1, 2)) + 1e-4).all()


@pytest.mark.parametrize("make", [
    lambda: augment.affine(digits(2), np.random.default_rng(0), max_shift=-1),
    lambda: augment.affine(digits(2), np.random.default_rng(0), max_scale=1.0),
    lambda: augment.elastic(digits(2), np.random.default_rng(0), sigma=np.nan),
    lambda: augment.stroke_width(digits(2), np.random.default_rng(0), max_thick=2),
    lambda: augment.Augmenter(p_elastic=1.5),
    lambda: augment.affine(digits(2).reshape(2, 1, 28, 28), np.random.default_rng(0)),
])
def test_bad_settings_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_wrong_dtype_is_refused():
    with pytest.raises(TypeError, match="float32"):
        augment.affine(digits(2).astype(np.float64), np.random.default_rng(0))


def test_fit_with_no_distortion_is_network_fit():
    """augment.fit resumes Network.fit epoch by epoch; with every strength 0 it must train
    exactly as one Network.fit call does."""
    import pynn
    rng = np.random.default_rng(0)
    X = (rng.random((120, 28, 28)) * 255).astype(np.uint8)
    y = np.arange(120) % 10
    a, b = pynn.Network([784, 12, 10], seed=3), pynn.Network([784, 12, 10], seed=3)
    still = augment.Augmenter(0, 0, 0, 0, alpha=0, max_thin=0, max_thick=0)
    ha = augment.fit(a, X, y, 3, np.random.default_rng(1), augmenter=still, batch_size=16,
                     optimizer=pynn.SGD(0.05, momentum=0.9))
    hb = b.fit(X.reshape(120, 784), y, epochs=3, batch_size=16, optimizer=pynn.SGD(0.05, momentum=0.9))
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    assert ha["loss"] == hb["loss"] and len(ha["loss"]) == 3


def test_fit_distorts_afresh_every_epoch():
    import pynn
    X = digits(40)
    y = np.arange(40) % 10
    seen = []

    class Spy(augment.Augmenter):
        def __call__(self, images, rng):
            out = super().__call__(images, rng)
            seen.append(out)
            return out
    augment.fit(pynn.Network([784, 8, 10]), X, y, 2, np.random.default_rng(0), augmenter=Spy(),
                batch_size=8)
    assert len(seen) == 2 and not np.array_equal(seen[0], seen[1])


def test_a_coarse_field_is_read_at_each_pixels_place():
    """A field on a grid half as fine: a constant one moves the interior like the same
    constant at full resolution; a smooth one agrees with its bilinear enlargement."""
    imgs = digits(3)
    ident = np.tile(np.array([1, 0, 0, 0, 1, 0], dtype=np.float32), (3, 1))
    full = ops.warp(imgs, ident, np.full((3, 28, 28), 1.5, np.float32),
                    np.full((3, 28, 28), -0.5, np.float32))
    coarse = ops.warp(imgs, ident, np.full((3, 14, 14), 1.5, np.float32),
                      np.full((3, 14, 14), -0.5, np.float32))
    np.testing.assert_allclose(coarse[:, 2:-2, 2:-2], full[:, 2:-2, 2:-2], atol=1e-6)
    rng = np.random.default_rng(0)
    fx, fy = (ops.gaussian_blur(rng.normal(0, 5, (3, 14, 14)).astype(np.float32), 2.0)
              for _ in range(2))
    # the fields read at each fine pixel's centre, (y+0.5)/2 in coarse units, as ops.warp does
    up = [reference_warp(f, np.tile(np.array([0.5, 0, 0, 0, 0.5, 0], np.float32), (3, 1)))
          for f in (np.pad(fx, ((0, 0), (0, 14), (0, 14))), np.pad(fy, ((0, 0), (0, 14), (0, 14))))]
    np.testing.assert_allclose(ops.warp(imgs, ident, fx, fy),
                               reference_warp(imgs, ident, up[0], up[1]), atol=1e-4)


def test_distorted_epochs_are_the_augmenters_calls_in_order():
    """Made a step ahead on another thread, but from the same stream: the same as calling the
    Augmenter epoch after epoch."""
    X = digits(30)
    made = list(augment.distorted_epochs(X, np.random.default_rng(4), 3))
    rng = np.random.default_rng(4)
    expected = [augment.Augmenter()(X, rng) for _ in range(3)]
    assert len(made) == 3
    for a, b in zip(made, expected):
        np.testing.assert_array_equal(a, b)
    assert list(augment.distorted_epochs(X, np.random.default_rng(4), 0)) == []


def test_distorted_epochs_leave_rng_just_past_the_epoch_handed_over():
    X = digits(10)
    rng = np.random.default_rng(9)
    reference = np.random.default_rng(9)
    for _ in augment.distorted_epochs(X, rng, 3):
        augment.Augmenter()(X, reference)
        assert rng.bit_generator.state == reference.bit_generator.state


# ---- every distortion in one pass (ops.distort) ----

def _draws(n, seed, p=0.5, size=(28, 28)):
    """mats, field, noise, sigma, gain, amount as Augmenter draws them."""
    rng = np.random.default_rng(seed)
    mats = augment.affine_matrices(n, rng, size=size)
    bent = rng.random(n) < p
    field = np.where(bent, np.cumsum(bent) - 1, -1).astype(np.int64)
    _, _, sigma, gain = augment.field_grid(size)
    noise = augment.elastic_noise(int(bent.sum()), rng, size)
    amount = rng.uniform(-1, 1, n).astype(np.float32)
    return mats, field, noise, sigma, gain, amount


def test_one_pass_equals_the_separate_kernels():
    """The fused kernel makes the fields as gaussian_blur does, warps as ops.warp does and
    changes the stroke width as ops.stroke_width does: the same images up to rounding."""
    imgs = digits(40)
    mats, field, noise, sigma, gain, amount = _draws(40, 1)
    bent = field >= 0
    assert 0 < bent.sum() < 40
    dx, dy = augment.fields_from_noise(noise, sigma, gain)
    full_dx = np.zeros((40,) + dx.shape[1:], np.float32)
    full_dy = np.zeros_like(full_dx)
    full_dx[bent], full_dy[bent] = dx[field[bent]], dy[field[bent]]
    warped = ops.warp(imgs, mats, full_dx, full_dy)
    separate = ops.stroke_width(warped, amount)
    fused = ops.distort(imgs, mats, field, noise, sigma, gain, amount)
    np.testing.assert_allclose(fused, separate, atol=2e-5)
    np.testing.assert_allclose(ops.distort(imgs, mats, field, noise, sigma, gain), warped, atol=2e-5)
    np.testing.assert_allclose(ops.distort(imgs, mats), ops.warp(imgs, mats), atol=1e-5)
    assert np.abs(fused - imgs).mean() > 0.01


def test_the_augmenter_gives_the_same_digits_either_way():
    imgs = digits(50)
    fused, separate = np.empty_like(imgs), np.empty_like(imgs)
    augment.Augmenter()(imgs, np.random.default_rng(3), out=fused)
    augment.Augmenter()(imgs, np.random.default_rng(3), out=separate, separate=True)
    np.testing.assert_allclose(fused, separate, atol=2e-5)


def test_images_too_large_for_one_pass_take_the_separate_kernels():
    big = np.zeros((3, 70, 66), np.float32)
    big[:, 20:50, 30:36] = 1.0
    with pytest.raises(ValueError, match="at most 64x64"):
        ops.distort(big, augment.identity(3))
    a = augment.Augmenter()(big, np.random.default_rng(2))
    np.testing.assert_array_equal(a, augment.Augmenter()(big, np.random.default_rng(2)))
    assert a.shape == big.shape and np.abs(a - big).mean() > 0.001
    assert 0.5 < a.sum() / big.sum() < 2


@pytest.mark.parametrize("kernels", [k for k in ("generic", "avx2", "avx512f")
                                     if ops.lib.pynn_kernels_select(k.encode()) == 0])
def test_every_simd_path_gives_the_same_digits(kernels):
    ops.select_kernels("auto")
    imgs = digits(30)
    draws = _draws(30, 4)
    auto = ops.distort(imgs, *draws)
    try:
        ops.select_kernels(kernels)
        np.testing.assert_array_equal(ops.distort(imgs, *draws), auto)
    finally:
        ops.select_kernels("auto")


def test_one_pass_at_zero_strength_is_the_identity():
    imgs = digits(12)
    ident = augment.identity(12)
    np.testing.assert_array_equal(ops.distort(imgs, ident), imgs)
    # noise 1/2 is the field 2*(1/2) - 1 = 0 everywhere; amount 0 leaves the strokes alone
    half = np.full((12, 2, 14, 14), 0.5, np.float32)
    np.testing.assert_array_equal(
        ops.distort(imgs, ident, np.arange(12), half, 2.0, 17.0, np.zeros(12, np.float32)), imgs)
    np.testing.assert_array_equal(augment.elastic(imgs, np.random.default_rng(0), alpha=0), imgs)


def test_one_pass_of_odd_sizes_and_full_resolution_fields():
    """Any image size up to 64, fields coarser or as fine as the image: still the separate
    kernels' result."""
    rng = np.random.default_rng(6)
    for H, W, fh, fw in ((19, 33, 7, 12), (64, 64, 64, 64), (5, 3, 5, 3), (28, 28, 28, 28)):
        imgs = rng.random((4, H, W), dtype=np.float32)
        mats = augment.affine_matrices(4, rng, size=(H, W))
        noise = rng.random((4, 2, fh, fw), dtype=np.float32)
        amount = rng.uniform(-1, 1, 4).astype(np.float32)
        dx, dy = augment.fields_from_noise(noise, 1.5, 3.0)
        expected = ops.stroke_width(ops.warp(imgs, mats, dx, dy), amount)
        np.testing.assert_allclose(ops.distort(imgs, mats, np.arange(4), noise, 1.5, 3.0, amount),
                                   expected, atol=2e-5)


def test_coarse_uniform_noise_bends_as_the_papers_recipe():
    """Uniform noise in (-1, 1) smoothed on the 14x14 grid moves pixels as far as the paper's
    recipe at full resolution (the same noise on 28x28, sigma 4, alpha 34) does."""
    rng = np.random.default_rng(0)
    fine = ops.gaussian_blur(rng.uniform(-1, 1, (1000, 28, 28)).astype(np.float32), 4.0, gain=34.0)
    dx, dy = augment.elastic_fields(1000, rng)
    assert dx.shape == (1000, 14, 14)
    rms = lambda a: np.sqrt((a ** 2).mean())
    assert 0.9 < rms(dx) / rms(fine) < 1.1 and 0.9 < rms(dy) / rms(fine) < 1.1
    assert abs(dx.mean()) < 0.1 and abs(np.corrcoef(dx.ravel(), dy.ravel())[0, 1]) < 0.05


@pytest.mark.parametrize("call, error, message", [
    (lambda: ops.distort(digits(2), np.zeros((3, 6), np.float32)), ValueError, "mats"),
    (lambda: ops.distort(digits(2), np.full((2, 6), np.inf, np.float32)), ValueError, "mats"),
    (lambda: ops.distort(digits(2), augment.identity(2), np.zeros(2, np.int64)), ValueError,
     "field and noise"),
    (lambda: ops.distort(digits(2), augment.identity(2), np.array([0, 1]),
                         np.full((1, 2, 14, 14), 0.5, np.float32)), ValueError, "field"),
    (lambda: ops.distort(digits(2), augment.identity(2), np.array([0, -1]),
                         np.full((1, 2, 14, 14), 1.5, np.float32)), ValueError, "noise"),
    (lambda: ops.distort(digits(2), augment.identity(2), np.array([0, -1]),
                         np.full((1, 2, 14, 14), np.nan, np.float32)), ValueError, "noise"),
    (lambda: ops.distort(digits(2), augment.identity(2), np.array([0, -1]),
                         np.full((1, 3, 14, 14), 0.5, np.float32)), ValueError, "noise"),
    (lambda: ops.distort(digits(2), augment.identity(2), np.array([0, -1], np.int32),
                         np.full((1, 2, 14, 14), 0.5, np.float32)), TypeError, "field"),
    (lambda: ops.distort(digits(2), augment.identity(2), amount=np.full(2, 2, np.float32)),
     ValueError, "amount"),
    (lambda: ops.distort(digits(2), augment.identity(2), np.array([0, -1]),
                         np.full((1, 2, 14, 14), 0.5, np.float32), sigma=-1.0), ValueError, "sigma"),
])
def test_one_pass_arguments_are_checked(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_kernel_refuses_what_python_would_not_pass():
    """The C entry point checks on its own too: NULLs, sizes, noise and amount out of range."""
    from pynn._pynn import ffi, lib
    img = np.zeros((1, 4, 4), np.float32)
    out = np.empty_like(img)
    mats = augment.identity(1)
    p = lambda a: ffi.cast("float *", ffi.from_buffer(a))
    field = np.zeros(1, np.int64)
    fptr = ffi.cast("int64_t *", ffi.from_buffer(field))
    bad = np.full((1, 2, 2, 2), 2.0, np.float32)
    args = (p(out), p(img), 1, 4, 4, p(mats))
    assert lib.pynn_distort(*args, fptr, p(bad), 1, 2, 2, 1.0, 1.0, ffi.NULL) == lib.PYNN_ERR_ARG
    assert lib.pynn_distort(*args, fptr, ffi.NULL, 1, 2, 2, 1.0, 1.0, ffi.NULL) == lib.PYNN_ERR_NULL
    assert lib.pynn_distort(*args, fptr, p(bad), 1, 0, 2, 1.0, 1.0, ffi.NULL) == lib.PYNN_ERR_SIZE
    assert lib.pynn_distort(p(out), p(img), 1, 65, 4, p(mats), ffi.NULL, ffi.NULL, 0, 0, 0, 0.0,
                            0.0, ffi.NULL) == lib.PYNN_ERR_SIZE
    amount = np.full(1, -1.5, np.float32)
    assert lib.pynn_distort(*args, ffi.NULL, ffi.NULL, 0, 0, 0, 0.0, 0.0, p(amount)) == lib.PYNN_ERR_ARG
    assert lib.pynn_distort(*args, ffi.NULL, ffi.NULL, 0, 0, 0, 0.0, 0.0, ffi.NULL) == lib.PYNN_OK


def test_distorted_epochs_write_into_arrays_the_caller_let_go():
    """A loop that drops each epoch's digits gets them in a few arrays written again, with the
    same values as fresh calls; a caller that keeps them (as list() does) gets new arrays."""
    X = digits(30)
    rng = np.random.default_rng(4)
    places = []
    for a in augment.distorted_epochs(X, np.random.default_rng(4), 7):
        a = a.reshape(30, 784)                  # a view, as training loops make
        np.testing.assert_array_equal(a, augment.Augmenter()(X, rng).reshape(30, 784))
        places.append(a.__array_interface__["data"][0])
    assert len(set(places)) <= 3
    kept = list(augment.distorted_epochs(X, np.random.default_rng(4), 7))
    assert len({a.__array_interface__["data"][0] for a in kept}) == 7
    rng = np.random.default_rng(4)
    for a in kept:
        np.testing.assert_array_equal(a, augment.Augmenter()(X, rng))


def test_augmenter_writes_into_out():
    X = digits(10)
    out = np.full((10, 784), np.nan, np.float32)
    got = augment.Augmenter()(X.reshape(10, 784), np.random.default_rng(1), out=out)
    assert np.shares_memory(got, out)
    np.testing.assert_array_equal(out, augment.Augmenter()(X, np.random.default_rng(1)).reshape(10, 784))
    with pytest.raises(ValueError, match="out"):
        augment.Augmenter()(X, np.random.default_rng(1), out=np.empty((10, 784), np.float32))
    with pytest.raises(ValueError, match="overlap"):
        augment.Augmenter()(X, np.random.default_rng(1), out=X)
