"""Drawn digits: MNIST test digits turned back into strokes and drawn again, the way the pad
and a paint program would, to measure what a user sees rather than what MNIST's test set sees.

    python -m pynn.drawn                 # the shipped model on MNIST, drawn digits (strokes and
                                         # images at several pen widths), and the teach study
    python -m pynn.drawn --no-teach      # only the first part

A digit becomes strokes in three steps: thinned to a one-pixel skeleton (Zhang & Suen 1984),
the skeleton traced into polylines (each walk from an end or a junction until it runs out of
unvisited neighbours), the polylines smoothed a little. Those strokes are then drawn again:
at several sizes and places through preprocess.strokes_to_mnist (what the pad does), and
rendered as images with pens of several widths through preprocess.to_mnist (what
``pynn predict`` does with a picture).

The teach study builds a writer who crosses their 7s and puts a long flag on their 1s (the
European way, which MNIST-trained networks misread), teaches the network k examples of each
with pynn.adapt.teach, and reads held-out drawings of the same style.

The style sets (STYLES: a barred 7, a flagged 1, a hooked 9, an open 4) are drawn from scratch
rather than from MNIST: each style a recipe of strokes in a seeded hand, on the pad's canvas,
through strokes_to_mnist. ``pynn study drawn`` scores models on them.

This module makes test data: numpy does the image work here, outside the inference path.
"""
import argparse
import sys
import time

import numpy as np

from . import ops
from .preprocess import PEN, strokes_to_mnist, to_mnist

# the eight neighbours in Zhang & Suen's order P2..P9: N, NE, E, SE, S, SW, W, NW
_NEIGHBOURS = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


def skeletons(images, threshold=0.35):
    """One-pixel-wide skeletons (n, H, W) bool of images (n, H, W) by Zhang-Suen thinning."""
    B = np.pad(np.asarray(images) > threshold * np.asarray(images).max(), ((0, 0), (1, 1), (1, 1)))
    H, W = B.shape[1] - 2, B.shape[2] - 2
    while True:
        changed = False
        for step in (0, 1):
            P = [B[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy, dx in _NEIGHBOURS]
            count = sum(p.astype(np.int8) for p in P)
            # A: the number of 0 -> 1 changes going round P2, P3, ..., P9, P2
            A = sum((~P[i] & P[(i + 1) % 8]).astype(np.int8) for i in range(8))
            p2, p4, p6, p8 = P[0], P[2], P[4], P[6]
            if step == 0:
                side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                side = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            core = B[:, 1:-1, 1:-1]
            remove = core & (count >= 2) & (count <= 6) & (A == 1) & side
            if remove.any():
                core[remove] = False
                changed = True
        if not changed:
            return B[:, 1:-1, 1:-1].copy()


def trace(skeleton):
    """The skeleton (H, W) bool as strokes: a list of (n, 2) float arrays of (x, y) pixel centres."""
    pixels = set(zip(*np.nonzero(skeleton)))
    if not pixels:
        return []

    def neighbours(p):
        return [(p[0] + dy, p[1] + dx) for dy, dx in _NEIGHBOURS if (p[0] + dy, p[1] + dx) in pixels]

    used = set()      # edges walked, as frozensets of two pixels

    def free(p):
        return [q for q in neighbours(p) if frozenset((p, q)) not in used]

    def walk(p):
        path = [p]
        while True:
            options = free(p)
            if not options:
                return path
            if len(path) > 1:      # go on as straight as possible
                d = (p[0] - path[-2][0], p[1] - path[-2][1])
                options.sort(key=lambda q: -((q[0] - p[0]) * d[0] + (q[1] - p[1]) * d[1]))
            q = options[0]
            used.add(frozenset((p, q)))
            path.append(q)
            p = q

    strokes = []
    order = sorted(pixels, key=lambda p: (len(neighbours(p)) != 1, p))   # ends first
    for p in order:
        while free(p):
            strokes.append(walk(p))
    drawn = {q for s in strokes for q in s}
    strokes += [[p] for p in sorted(pixels - drawn)]                     # lone dots
    return [_smooth(np.array([(c + 0.5, r + 0.5) for r, c in s], dtype=np.float64))
            for s in strokes]


def _smooth(points):
    """Soften the pixel staircase: each inner point moves to a 1-2-1 average of its neighbours."""
    if len(points) < 3:
        return points
    out = points.copy()
    out[1:-1] = (points[:-2] + 2 * points[1:-1] + points[2:]) / 4
    return out


def as_strokes(images):
    """Strokes for each image (n, 28, 28): a list of lists of (n, 2) arrays."""
    return [trace(s) for s in skeletons(images)]


def place(strokes, scale, offset):
    """The strokes scaled by ``scale`` and moved by ``offset`` (canvas pixels)."""
    return [s * scale + np.asarray(offset, dtype=np.float64) for s in strokes]


def render(strokes, shape, pen):
    """The strokes drawn as a grayscale image of ``shape`` with a round pen ``pen`` pixels wide."""
    img = np.zeros(shape, dtype=np.float32)
    if strokes:
        xy = np.concatenate(strokes).astype(np.float32)
        ops.raster_strokes(img, xy, np.array([len(s) for s in strokes], dtype=np.int64),
                           radius=pen / 2)
    return img


def drawn_sets(images, seed=0):
    """Drawn versions of ``images``, as {name: (n, 784) float32 inputs}.

    traced, redrawn in place: the strokes at their own place and size with MNIST's pen (the
             control: no preprocessing);
    strokes: each digit's strokes at a random size (a box 30 to 300 canvas pixels) and place,
             through strokes_to_mnist;
    image, pen P: the strokes rendered on a 280x280 canvas, 200 pixels tall, with a pen P
             pixels wide, through to_mnist.
    """
    rng = np.random.default_rng(seed)
    strokes = as_strokes(images)
    sets = {"traced, redrawn in place": [], "strokes (pad)": [], "image, pen 6": [],
            "image, pen 16": [], "image, pen 30": []}
    for s in strokes:
        # the control: the strokes drawn back where they came from with MNIST's pen, no
        # preprocessing; what this misreads, tracing lost, not preprocessing
        sets["traced, redrawn in place"].append(render(s, (28, 28), PEN))
        sets["strokes (pad)"].append(_on_the_pad(s, rng))
        big = place(s, 200 / 28, (40, 40))
        for pen in (6, 16, 30):
            sets[f"image, pen {pen}"].append(to_mnist(render(big, (280, 280), pen)))
    return {k: np.stack(v).reshape(len(v), 784) for k, v in sets.items()}


def _on_the_pad(strokes, rng):
    """A 28x28 digit's strokes drawn on the pad at a random size (a box 30 to 300 canvas
    pixels) and place, through strokes_to_mnist."""
    size = rng.uniform(30, 300)
    return strokes_to_mnist(place(strokes, size / 28, rng.uniform(0, 500, 2)))


def pad_set(images, seed=0):
    """The "strokes (pad)" set of drawn_sets alone, the same drawings for the same seed:
    (n, 784) float32."""
    rng = np.random.default_rng(seed)
    return np.stack([_on_the_pad(s, rng) for s in as_strokes(images)]).reshape(len(images), 784)


# ---- a European writer: crossed 7s, flagged 1s ----

def european(strokes, label, rng):
    """The digit's strokes with a bar across a 7's stem or a flag on a 1's top, in the hand of
    someone who writes them the European way."""
    pts = np.concatenate(strokes)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    h = max(y1 - y0, 1.0)
    if label == 7:
        # across the stem, a little above the middle of the digit's height
        y = y0 + h * rng.uniform(0.45, 0.6)
        near = pts[np.abs(pts[:, 1] - y) < 0.12 * h]
        x = near[:, 0].mean() if len(near) else (x0 + x1) / 2
        half = h * rng.uniform(0.2, 0.3)
        tilt = h * rng.uniform(-0.05, 0.05)
        bar = np.array([[x - half, y + tilt], [x + half, y - tilt]])
        return strokes + [bar]
    if label == 1:
        # a flag from the top of the stem down to the left, a third of the height long
        top = pts[np.argmin(pts[:, 1])]
        length = h * rng.uniform(0.3, 0.45)
        angle = np.deg2rad(rng.uniform(25, 50))
        start = top + length * np.array([-np.cos(angle), np.sin(angle)])
        return [np.array([start, top])] + strokes
    raise ValueError(f"only 7s and 1s have a European form here, got {label}")


def european_set(images, labels, seed=0):
    """European-style drawings of the 7s and 1s among ``images``: (inputs (n, 784), labels)."""
    rng = np.random.default_rng(seed)
    keep = np.nonzero((labels == 7) | (labels == 1))[0]
    out = []
    for i, s in zip(keep, as_strokes(images[keep])):
        out.append(strokes_to_mnist(european(s, int(labels[i]), rng)))
    return np.stack(out).reshape(len(out), 784), labels[keep].astype(np.int64)


# ---- styles MNIST lacks, drawn on the pad ----
#
# Each style is a hand's recipe: strokes through points of a unit box (x right, y down, the
# digit inside about 0.1..0.9), every proportion drawn at random within what such hands do.
# A writer's own slant, a little rotation and width, and a tremor along each stroke come on
# top, and the digit lands on the canvas at a random size and place, its strokes as points
# every STEP pixels, as the pad's curves are (pad.state), then goes through strokes_to_mnist
# as the pad's drawing does. The pen's width never reaches the network on that path
# (strokes_to_mnist draws with MNIST's pen), so the sets have none to vary.

STEP = 3.0        # canvas pixels between a stroke's points, as on the pad's curves


def _line(a, b, n=24):
    return np.linspace(a, b, n)


def _bend(a, via, b, n=32):
    """A quadratic Bezier curve from a to b pulled towards ``via``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, via, b = (np.asarray(p, dtype=np.float64) for p in (a, via, b))
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * via + t ** 2 * b


def _arc(centre, rx, ry, start, end, n=48):
    """Points of an ellipse from angle ``start`` to ``end`` (degrees; y down, so a growing
    angle turns clockwise on the screen)."""
    t = np.deg2rad(np.linspace(start, end, n))
    return np.stack([centre[0] + rx * np.cos(t), centre[1] + ry * np.sin(t)], axis=1)


def _stroke(*pieces):
    return np.concatenate(pieces)


def _barred_7(rng):
    """A top bar, a stem from its right end, and a bar across the stem; some hands start the
    top with a short rising tick."""
    top, bottom = rng.uniform(0.1, 0.2), rng.uniform(0.82, 0.92)
    left, right, foot = rng.uniform(0.22, 0.35), rng.uniform(0.65, 0.78), rng.uniform(0.35, 0.55)
    tilt = rng.uniform(-0.03, 0.03)
    corner, end = (right, top + tilt), (foot, bottom)
    mid = ((right + foot) / 2 + rng.uniform(-0.03, 0.06), (top + bottom) / 2)
    stem = _bend(corner, mid, end)
    head = _line((left, top - tilt), corner)
    if rng.random() < 0.35:
        head = _stroke(_line((left, top - tilt + rng.uniform(0.06, 0.12)), (left, top - tilt), 8), head)
    across = stem[int(len(stem) * rng.uniform(0.4, 0.6))] + [rng.uniform(-0.03, 0.03), 0.0]
    half, lean = rng.uniform(0.1, 0.22), rng.uniform(-0.03, 0.03)
    bar = _line(across - [half, -lean], across + [half, -lean])
    return [_stroke(head, stem), bar]


def _flagged_1(rng, base):
    """A long flag down to the left from the top of the stem, the stem, and a base under it
    when ``base``."""
    x_top, top, bottom = rng.uniform(0.45, 0.6), rng.uniform(0.1, 0.18), rng.uniform(0.82, 0.92)
    x_foot = x_top + rng.uniform(-0.05, 0.05)
    length, angle = (bottom - top) * rng.uniform(0.25, 0.45), np.deg2rad(rng.uniform(25, 55))
    start = (x_top - length * np.cos(angle), top + length * np.sin(angle))
    strokes = [_stroke(_line(start, (x_top, top)), _line((x_top, top), (x_foot, bottom), 32))]
    if base:
        half, lean = rng.uniform(0.12, 0.2), rng.uniform(-0.02, 0.02)
        strokes.append(_line((x_foot - half, bottom + lean), (x_foot + half, bottom - lean)))
    return strokes


def _hooked_9(rng):
    """A loop drawn anticlockwise from its right side, a stem down from there, and a hook
    that curls the stem's end round to the left."""
    cx, cy = rng.uniform(0.42, 0.52), rng.uniform(0.27, 0.35)
    rx, ry = rng.uniform(0.14, 0.2), rng.uniform(0.11, 0.17)
    begin = rng.uniform(-20, 20)
    loop = _arc((cx, cy), rx, ry, -begin, -begin - 360 - rng.uniform(0, 30))
    r = rng.uniform(0.07, 0.15)
    end = (cx + rx + rng.uniform(-0.08, 0.02), rng.uniform(0.88, 0.93) - r)
    stem = _bend(loop[-1], ((loop[-1][0] + end[0]) / 2 + rng.uniform(-0.02, 0.03),
                            (loop[-1][1] + end[1]) / 2), end)
    hook = _arc((end[0] - r, end[1]), r, r * rng.uniform(0.7, 1.1), 0, rng.uniform(100, 250))
    return [_stroke(loop, stem, hook)]


def _open_4(rng):
    """Two strokes: down and then across, and a long stem that crosses the across stroke;
    the top is left open."""
    top, left, lean = rng.uniform(0.1, 0.22), rng.uniform(0.3, 0.45), rng.uniform(-0.02, 0.12)
    y_mid, right = rng.uniform(0.52, 0.65), rng.uniform(0.74, 0.86)
    x_stem = rng.uniform(max(0.55, left + 0.12), right - 0.08)
    corner = (left - lean, y_mid)
    first = _stroke(_line((left, top), corner), _line(corner, (right, y_mid + rng.uniform(-0.03, 0.03))))
    stem = _line((x_stem + rng.uniform(-0.03, 0.03), rng.uniform(0.12, 0.35)),
                 (x_stem, rng.uniform(0.82, 0.92)), 32)
    return [first, stem]


# style: (the digit, the recipe); a recipe takes the generator and the sample's number
STYLES = {
    "barred 7": (7, lambda rng, i: _barred_7(rng)),
    "flagged 1": (1, lambda rng, i: _flagged_1(rng, base=i % 2 == 1)),   # every other with a base
    "hooked 9": (9, lambda rng, i: _hooked_9(rng)),
    "open 4": (4, lambda rng, i: _open_4(rng)),
}


def _by_hand(strokes, rng):
    """The recipe's strokes in a writer's hand: slanted, turned and stretched a little, with a
    slow tremor along each stroke, on the canvas at a random size (a box 30 to 300 pixels)
    and place, a point every STEP pixels."""
    slant, turn = rng.uniform(-0.1, 0.35), np.deg2rad(rng.uniform(-8, 8))
    width = rng.uniform(0.8, 1.2)
    size, offset = rng.uniform(30, 300), rng.uniform(0, 500, 2)
    rotate = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    out = []
    for s in strokes:
        s = s - 0.5
        s = np.stack([width * (s[:, 0] - slant * s[:, 1]), s[:, 1]], axis=1) @ rotate.T
        along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(s, axis=0).T))])
        phase, cycles = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.5, 1.5)
        wave = 2 * np.pi * cycles * along / max(along[-1], 1e-9)
        s = s + rng.uniform(0, 0.015) * np.stack([np.sin(wave + phase[0]), np.sin(wave + phase[1])], axis=1)
        s = (s + 0.5) * size + offset
        along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(s, axis=0).T))])
        at = np.append(np.arange(0.0, along[-1], STEP), along[-1])
        out.append(np.stack([np.interp(at, along, s[:, 0]), np.interp(at, along, s[:, 1])], axis=1))
    return out


def style_strokes(style, n, seed=0):
    """``n`` drawings of ``style`` (a key of STYLES) as the pad's strokes: a list of lists of
    (m, 2) float64 arrays in canvas pixels, y down. The same seed gives the same drawings."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; styles: {', '.join(STYLES)}")
    recipe = STYLES[style][1]
    rng = np.random.default_rng([seed, list(STYLES).index(style)])
    return [_by_hand(recipe(rng, i), rng) for i in range(n)]


def style_set(style, n, seed=0):
    """``n`` drawings of ``style`` through strokes_to_mnist: (inputs (n, 784) float32,
    labels (n,) int64)."""
    inputs = [strokes_to_mnist(s) for s in style_strokes(style, n, seed)]
    return np.stack(inputs).reshape(n, 784), np.full(n, STYLES[style][0], dtype=np.int64)


def style_sets(n, seed=0):
    """Every style's set: {style: (inputs (n, 784), labels (n,))}."""
    return {style: style_set(style, n, seed) for style in STYLES}


def teach_study(net_loader, mnist_test, examples=(1, 2, 3, 5, 10), seed=0, log=print):
    """How many taught examples of a European writer's 7s and 1s it takes before held-out
    drawings of theirs are read right, and what it costs on the MNIST test set."""
    from .adapt import teach
    X_test, y_test = mnist_test
    X_test = ops.scale_u8(np.ascontiguousarray(X_test)).reshape(len(X_test), 784)
    y_test = y_test.astype(np.int64)
    # the writer's drawings: made from MNIST test 7s and 1s; the first 100 are the pool the
    # lessons come from, the rest are held out
    E, E_y = european_set(*mnist_test, seed=seed)
    pool, pool_y, held, held_y = E[:100], E_y[:100], E[100:], E_y[100:]
    net = net_loader()
    base_mnist, base_held = net.accuracy(X_test, y_test), net.accuracy(held, held_y)
    log(f"before teaching: European 7s and 1s read right {100 * base_held:.1f}% "
        f"({len(held)} held-out drawings), MNIST test {100 * base_mnist:.2f}%")
    rows = []
    for k in examples:
        pick = np.concatenate([np.nonzero(pool_y == 7)[0][:k], np.nonzero(pool_y == 1)[0][:k]])
        net = net_loader()
        start = time.perf_counter()
        teach(net, pool[pick], pool_y[pick])
        seconds = time.perf_counter() - start
        held_acc, mnist_acc = net.accuracy(held, held_y), net.accuracy(X_test, y_test)
        rows.append((k, held_acc, mnist_acc, seconds))
        log(f"taught {k} of each: European 7s and 1s {100 * held_acc:.1f}%, MNIST test "
            f"{100 * mnist_acc:.2f}% ({100 * (mnist_acc - base_mnist):+.2f} points), "
            f"teach took {seconds:.2f} s")
    return (base_held, base_mnist), rows


def main(argv=None):
    from . import datasets, load_default
    p = argparse.ArgumentParser(prog="python -m pynn.drawn", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a .npz network (default: the shipped one)")
    p.add_argument("--limit", type=int, default=10000, help="test digits to draw (default all)")
    p.add_argument("--no-teach", action="store_true", help="skip the teach study")
    args = p.parse_args(argv)
    from .modelfile import load
    loader = (lambda: load(args.model)) if args.model else load_default
    net = loader()
    X_test, y_test = datasets.mnist("test")
    X_test, y_test = X_test[:args.limit], y_test[:args.limit]
    labels = y_test.astype(np.int64)
    print(f"{net} on {len(labels)} MNIST test digits")
    print(f"  MNIST test images: error {100 * (1 - net.accuracy(X_test.reshape(-1, 784), labels)):.2f}%")
    for name, X in drawn_sets(X_test).items():
        print(f"  drawn, {name}: error {100 * (1 - net.accuracy(X, labels)):.2f}%")
    if not args.no_teach:
        teach_study(loader, (X_test, y_test))
    return 0


if __name__ == "__main__":
    sys.exit(main())
