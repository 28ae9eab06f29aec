"""Drawings into MNIST's form: pynn.preprocess and the kernels under it (csrc/image/preprocess.c)."""
import numpy as np
import pytest

from pynn import ops
from pynn.preprocess import CENTRE, SIZE, WEIGHT, strokes_to_mnist, to_mnist

SEVEN = [np.array([[100, 100], [200, 100], [140, 260]], dtype=float)]
FOUR = [np.array([[150, 50], [100, 180], [210, 180]], dtype=float),
        np.array([[180, 110], [180, 280]], dtype=float)]


def render(strokes, shape=(400, 400), pen=10.0):
    """The strokes drawn as an image, the way a paint program would, with a pen ``pen`` wide."""
    img = np.zeros(shape, dtype=np.float32)
    xy = np.concatenate(strokes).astype(np.float32)
    ops.raster_strokes(img, xy, np.array([len(s) for s in strokes], dtype=np.int64),
                       radius=pen / 2)
    return img


def width(img):
    mass, _, _, edge = ops.ink_moments(img)
    return 2 * mass / edge


def box(img, threshold=0.3):
    r0, r1, c0, c1 = ops.ink_bbox(img, threshold)
    return r1 - r0, c1 - c0


# ---- what the network gets ----

@pytest.mark.parametrize("strokes", [SEVEN, FOUR])
def test_output_is_mnist_form(strokes):
    x = strokes_to_mnist(strokes)
    assert x.shape == (SIZE, SIZE) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.99
    _, cy, cx, _ = ops.ink_moments(x)
    assert abs(cy - CENTRE) < 0.05 and abs(cx - CENTRE) < 0.05
    assert max(box(x)) in (19, 20, 21)              # the longer side is MNIST's 20 pixels
    assert abs(width(x) - WEIGHT) < 0.3             # and the strokes MNIST's width


def test_size_and_place_on_the_canvas_do_not_matter():
    big = strokes_to_mnist(FOUR)
    small_in_corner = strokes_to_mnist([s * 0.1 + [3, 900] for s in FOUR])
    off_canvas = strokes_to_mnist([s - 1000 for s in FOUR])
    np.testing.assert_allclose(small_in_corner, big, atol=1e-4)
    np.testing.assert_allclose(off_canvas, big, atol=1e-4)


def test_aspect_ratio_is_kept():
    tall = strokes_to_mnist([np.array([[50, 0], [50, 300]])])     # a "1"
    h, w = box(tall)
    assert h in (19, 20, 21) and w <= 4
    wide = strokes_to_mnist([np.array([[0, 0], [100, 0], [100, 50]])])
    h, w = box(wide)
    assert w in (19, 20, 21) and 9 <= h <= 12


def test_empty_and_degenerate_drawings():
    zeros = np.zeros((SIZE, SIZE), dtype=np.float32)
    np.testing.assert_array_equal(strokes_to_mnist([]), zeros)
    np.testing.assert_array_equal(strokes_to_mnist([np.zeros((0, 2))]), zeros)
    dot = strokes_to_mnist([np.array([[7.0, 9.0]])])
    same_dot = strokes_to_mnist([np.array([[3.0, 1.0], [3.0, 1.0]])])
    np.testing.assert_allclose(dot, same_dot, atol=1e-6)
    _, cy, cx, _ = ops.ink_moments(dot)
    assert abs(cy - CENTRE) < 0.05 and abs(cx - CENTRE) < 0.05
    assert max(box(dot)) <= 4                      # a dot stays a dot, MNIST's pen wide
    np.testing.assert_array_equal(to_mnist(np.zeros((50, 70))), zeros)
    np.testing.assert_array_equal(to_mnist(np.zeros((0, 0), dtype=np.float32)), zeros)


def test_pen_width_of_an_image_is_brought_to_mnists():
    reference = strokes_to_mnist(SEVEN)
    for pen in (3, 8, 15, 30):
        x = to_mnist(render(SEVEN, pen=pen))
        assert abs(width(x) - WEIGHT) < 0.4, pen
        assert np.abs(x - reference).mean() < 0.06, pen


def test_image_size_and_place_do_not_matter():
    big = to_mnist(render(FOUR, pen=12))
    small = to_mnist(render([s * 0.25 + [5, 20] for s in FOUR], shape=(300, 120), pen=3))
    assert np.abs(big - small).mean() < 0.05
    _, cy, cx, _ = ops.ink_moments(small)
    assert abs(cy - CENTRE) < 0.05 and abs(cx - CENTRE) < 0.05


def test_image_dtypes():
    img = render(SEVEN, pen=10)
    as_u8 = (img * 255).round().astype(np.uint8)
    np.testing.assert_allclose(to_mnist(as_u8), to_mnist(img), atol=0.02)
    np.testing.assert_allclose(to_mnist(img > 0.5), to_mnist(img), atol=0.25)
    np.testing.assert_allclose(to_mnist(img.astype(np.float64) * 7), to_mnist(img), atol=1e-5)


def test_an_mnist_shaped_digit_passes_nearly_unchanged():
    x = strokes_to_mnist(FOUR)
    again = to_mnist(x)
    assert np.abs(again - x).mean() < 0.03


@pytest.mark.parametrize("bad, error", [
    ("not strokes", TypeError),
    ([np.array([1.0, 2.0, 3.0])], ValueError),
    ([np.array([[0.0, 1.0], [np.nan, 2.0]])], ValueError),
    ([np.array([[0.0, 1.0], [np.inf, 2.0]])], ValueError),
    ([[["a", "b"]]], TypeError),
])
def test_bad_strokes_are_refused(bad, error):
    with pytest.raises(error):
        strokes_to_mnist(bad)


@pytest.mark.parametrize("bad, error", [
    ([[0.0, 1.0]], TypeError),
    (np.zeros((3, 28, 28)), ValueError),
    (np.full((5, 5), np.nan), ValueError),
    (np.array([["a"]]), TypeError),
])
def test_bad_images_are_refused(bad, error):
    with pytest.raises(error):
        to_mnist(bad)


def test_strokes_accept_lists_and_huge_coordinates():
    a = strokes_to_mnist([[[0, 0], [10, 0], [4, 16]]])
    b = strokes_to_mnist([np.array([[0, 0], [10, 0], [4, 16]]) + 1e7])
    np.testing.assert_allclose(a, b, atol=1e-4)


# ---- the kernels against numpy ----

def test_resample_area_shrinks_by_block_means():
    rng = np.random.default_rng(0)
    img = rng.random((12, 8), dtype=np.float32)
    out = ops.resample_area(img, (3, 2), 0, 0, 4, 4)
    np.testing.assert_allclose(out, img.reshape(3, 4, 2, 4).mean(axis=(1, 3)), rtol=1e-5)


def test_resample_area_enlarges_and_shifts():
    img = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(ops.resample_area(img, (4, 6), 0, 0, 0.5, 0.5),
                               img.repeat(2, 0).repeat(2, 1), rtol=1e-6)
    # half a pixel to the right: every output pixel is the mean of two neighbours (0 outside)
    shifted = ops.resample_area(img, (2, 3), 0, -0.5, 1, 1)
    padded = np.hstack([np.zeros((2, 1)), img])
    np.testing.assert_allclose(shifted, (padded[:, :-1] + padded[:, 1:]) / 2, rtol=1e-6)
    np.testing.assert_allclose(ops.resample_area(img, (2, 3), 0, 0, 1, 1, gain=3), img * 3)


def test_ink_moments_and_bbox_against_numpy():
    rng = np.random.default_rng(1)
    img = np.zeros((20, 30), dtype=np.float32)
    img[4:9, 10:25] = rng.random((5, 15), dtype=np.float32)
    mass, cy, cx, edge = ops.ink_moments(img)
    r, c = np.mgrid[0:20, 0:30] + 0.5
    assert mass == pytest.approx(img.sum(dtype=np.float64), rel=1e-6)
    assert cy == pytest.approx((img * r).sum() / img.sum(), rel=1e-6)
    assert cx == pytest.approx((img * c).sum() / img.sum(), rel=1e-6)
    # forward differences (0 beyond the image), plus the steps in from the top and left edges
    padded = np.pad(img.astype(np.float64), ((0, 1), (0, 1)))
    gx = padded[:-1, 1:] - padded[:-1, :-1]
    gy = padded[1:, :-1] - padded[:-1, :-1]
    outline = np.hypot(gx, gy).sum() + np.abs(img[:, 0]).sum() + np.abs(img[0]).sum()
    assert edge == pytest.approx(outline, rel=1e-5)
    assert ops.ink_bbox(img, 0.0) == (4, 9, 10, 25)
    assert ops.ink_bbox(img, 2.0) is None
    square = np.zeros((20, 20), dtype=np.float32)
    square[5:15, 2:8] = 1                           # a 6-wide bar: 2*mass/outline ~ 2*60/32
    assert 2 * ops.ink_moments(square)[0] / ops.ink_moments(square)[3] == pytest.approx(3.75, rel=0.03)


def test_stroke_width_is_a_blend_with_grey_dilation_or_erosion():
    rng = np.random.default_rng(2)
    imgs = rng.random((3, 9, 7), dtype=np.float32)
    amount = np.array([1.0, -1.0, 0.25], dtype=np.float32)
    out = ops.stroke_width(imgs, amount)
    padded = np.pad(imgs, ((0, 0), (1, 1), (1, 1)))
    windows = np.stack([padded[:, i:i + 9, j:j + 7] for i in range(3) for j in range(3)])
    np.testing.assert_allclose(out[0], windows.max(axis=0)[0], rtol=1e-6)
    np.testing.assert_allclose(out[1], windows.min(axis=0)[1], rtol=1e-6)
    np.testing.assert_allclose(out[2], 0.75 * imgs[2] + 0.25 * windows.max(axis=0)[2], rtol=1e-5)
    with pytest.raises(ValueError, match="amount"):
        ops.stroke_width(imgs, np.array([1.5, 0, 0], dtype=np.float32))


def test_raster_strokes_covers_the_line_and_nothing_else():
    canvas = np.zeros((20, 20), dtype=np.float32)
    ops.raster_strokes(canvas, np.array([[2, 10.25], [17, 10.25]], dtype=np.float32),
                       np.array([2], dtype=np.int64), radius=2.0)
    assert canvas[9:12, 2:17].min() == 1.0          # pixel centres within 1.5 of the line
    assert canvas[:8].max() == 0 and canvas[13:].max() == 0   # beyond radius + 1/2
    # the edge is anti-aliased: coverage falls from 1 to 0 as the distance goes from 1.5 to 2.5
    assert canvas[8, 10] == pytest.approx(0.75) and canvas[12, 10] == pytest.approx(0.25)
    assert canvas[10, 0] > 0.9 and canvas[10, 19] == 0      # round caps reach 2.5 past the ends


@pytest.mark.parametrize("call, message", [
    (lambda: ops.raster_strokes(np.zeros((4, 4), np.float64), np.zeros((1, 2), np.float32),
                                np.array([1])), "canvas"),
    (lambda: ops.raster_strokes(np.zeros((4, 4), np.float32), np.zeros((2, 2), np.float32),
                                np.array([3])), "lengths"),
    (lambda: ops.raster_strokes(np.zeros((4, 4), np.float32), np.zeros((2, 2), np.float32),
                                np.array([2]), radius=-1), "radius"),
    (lambda: ops.resample_area(np.zeros((4, 4), np.float32), (2, 2), sy=0), "sy"),
    (lambda: ops.ink_moments(np.zeros(4, np.float32)), "img"),
])
def test_kernel_arguments_are_checked(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()

