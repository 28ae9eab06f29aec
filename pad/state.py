"""What the pad knows, apart from any window: the strokes, the ink on the canvas, the answer.

Points arrive in canvas pixels, y down. A stroke is drawn as a smooth curve through its points
(a centripetal Catmull-Rom spline, which neither overshoots nor loops however unevenly the
mouse reports), so a fast stroke whose drag events lie far apart still has neither gaps nor
corners. The curve's last piece is provisional until the next point shows where it goes.

The network sees the same curves: ``pynn.preprocess.strokes_to_mnist`` turns them into the
28x28 image of an MNIST digit, and the network's softmax gives ten probabilities.

Teaching fine-tunes a *copy* of the network on a worker thread and then swaps the copy in under
a lock, so the window keeps answering with the old weights meanwhile and never reads weights
that are half updated. The live network's arrays are never written to after it is loaded.
"""
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

import pynn
from pynn import modelfile, ops
from pynn.preprocess import strokes_to_mnist

CANVAS = 448                  # canvas side in pixels: 16 canvas pixels to one MNIST pixel
PEN_WIDTH = 28.0              # default pen width in canvas pixels
PEN_RANGE = (4.0, 80.0)
CONFIDENT = 0.6               # below this top probability the pad says it is not sure
STEP = 3.0                    # the curve is cut into pieces about this long (pixels)
MAX_TAUGHT = 100              # corrections kept (in the personal model file too)
REHEARSE = 2                  # earlier corrections taught again with each new one


def data_dir():
    """Where the pad keeps the user's model: $XDG_DATA_HOME/pynn, or ~/.local/share/pynn."""
    base = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):   # the XDG spec says to ignore an empty or relative value
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "pynn")


def personal_model_path():
    return os.path.join(data_dir(), "pad-model.npz")


@dataclass
class Prediction:
    """The network's answer for one drawing."""
    probs: np.ndarray         # (10,) probabilities, summing to 1
    image: np.ndarray         # (28, 28) what the network saw
    digit: int                # the most likely digit
    confidence: float         # its probability
    confident: bool           # whether that is high enough to claim

    def title(self):
        if not self.confident:
            return "not sure"
        return f"{self.digit} ({self.confidence:.0%})"


# ---- curves ----

def catmull_rom(p0, p1, p2, p3, n):
    """n points on the centripetal Catmull-Rom curve from p1 (excluded) to p2 (included).

    Knots are spaced by the square root of the distance between points (Barry and Goldman's
    recursive form), which keeps the curve from overshooting where the points are uneven.
    """
    P = np.array([p0, p1, p2, p3], dtype=np.float64)
    d = np.sqrt(np.maximum(np.linalg.norm(np.diff(P, axis=0), axis=1), 1e-6))
    t0, t1, t2, t3 = 0.0, d[0], d[0] + d[1], d[0] + d[1] + d[2]
    t = np.linspace(t1, t2, n + 1)[1:, None]

    def lerp(a, b, ta, tb):
        return ((tb - t) * a + (t - ta) * b) / (tb - ta)

    a1, a2, a3 = lerp(P[0], P[1], t0, t1), lerp(P[1], P[2], t1, t2), lerp(P[2], P[3], t2, t3)
    b1, b2 = lerp(a1, a2, t0, t2), lerp(a2, a3, t1, t3)
    return lerp(b1, b2, t1, t2)


def curve_piece(points, i):
    """The curve between points[i] and points[i+1], given its neighbours where they exist.

    At the ends of a stroke the missing neighbour is the mirror image of the other one, which
    makes the curve leave and arrive straight.
    """
    p1, p2 = np.asarray(points[i], float), np.asarray(points[i + 1], float)
    p0 = np.asarray(points[i - 1], float) if i > 0 else 2 * p1 - p2
    p3 = np.asarray(points[i + 2], float) if i + 2 < len(points) else 2 * p2 - p1
    n = max(1, int(np.ceil(np.hypot(*(p2 - p1)) / STEP)))
    if n == 1:
        return p2[None, :]
    return catmull_rom(p0, p1, p2, p3, n)


def stamp(raster, path, width):
    """Draw the polyline ``path`` (m, 2) with a round pen ``width`` pixels wide into ``raster``
    (H, W), keeping the darker of old and new ink (anti-aliased over a pixel at the edge, as
    pynn's preprocessing draws). Returns the (x0, y0, x1, y1) box it touched, or None.

    Each segment goes to pynn.ops.raster_strokes as a stroke of its own: a longer stroke it
    would thin, dropping points nearer than a quarter of the pen's width, which is right for
    the network's 28x28 image but shows as corners on the screen. Segment by segment, the ink
    is exactly that of the whole curve, however it is cut: drawn as it grows or all at once.
    """
    path = np.asarray(path, dtype=np.float32).reshape(-1, 2)
    ends = np.repeat(path, 2, axis=0)[1:-1] if len(path) > 1 else path   # a0 b0 a1 b1 ...
    lengths = np.full(max(len(path) - 1, 1), 2 if len(path) > 1 else 1, dtype=np.int64)
    ops.raster_strokes(raster, np.ascontiguousarray(ends), lengths, radius=width / 2.0)
    reach = width / 2.0 + 1.0
    (x0, y0), (x1, y1) = path.min(axis=0) - reach, path.max(axis=0) + reach + 1.0
    H, W = raster.shape
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(x1), W), min(int(y1), H)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _pen(width):
    """A pen width clipped to PEN_RANGE; NaN or what is no number is refused, not stored."""
    try:
        width = float(width)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"pen width must be a number, got {width!r}") from None
    if math.isnan(width):
        raise ValueError("pen width must be a number, got NaN")
    return min(max(width, PEN_RANGE[0]), PEN_RANGE[1])


def _union(box, other):
    if box is None:
        return other
    if other is None:
        return box
    return (min(box[0], other[0]), min(box[1], other[1]), max(box[2], other[2]), max(box[3], other[3]))


class _Stroke:
    """One stroke: the mouse's points, its pen width, and the curve drawn through them so far."""

    def __init__(self, point, width):
        self.points = [point]
        self.width = width
        self.curve = [np.asarray(point, dtype=np.float64)[None, :]]   # final pieces
        self.tail = None                                             # the provisional piece
        self.active = True                                           # the pen is down

    def path(self):
        pieces = self.curve + ([self.tail] if self.tail is not None else [])
        return np.concatenate(pieces).astype(np.float32)


# ---- the pad ----

class PadState:
    """The pad without its window: strokes in, ink and the network's answer out.

        pad = PadState(net)
        pad.begin_stroke(x, y); pad.add_point(x, y); ...; pad.end_stroke()
        pad.prediction()          # Prediction, or None while the canvas is empty
        pad.teach(7)              # a Future; the answer changes when it is done

    ``personal_path``: where teaching saves the fine-tuned model (None: never saved).
    ``taught``: earlier corrections (images (k, 28, 28), labels (k,)) replayed when teaching.
    """

    def __init__(self, net, size=CANVAS, pen_width=PEN_WIDTH, personal_path=None, taught=None,
                 confident=CONFIDENT):
        self.size = size
        self.pen_width = _pen(pen_width)
        self.confident = confident
        self.personal_path = personal_path
        self.strokes = []
        self.raster = np.zeros((size, size), dtype=np.float32)   # ink 0..1, what is shown
        self._committed = np.zeros_like(self.raster)             # ink without the tail
        self._tail_box = None
        self._dirty = (0, 0, size, size)
        self._changes = 0            # counts stroke changes; keys the cached prediction
        self._cached = (None, None)
        self._lock = threading.Lock()
        self._net = net
        self._net_generation = 0
        self._teacher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pad-teach")
        self._pending = 0            # teach requests not finished yet
        self._rng = np.random.default_rng(0)
        self.last_taught = None      # (label, saved path or None, error or None)
        if taught is not None:
            self.taught_images = [np.asarray(x, dtype=np.float32) for x in taught[0]]
            self.taught_labels = [int(y) for y in taught[1]]
        else:
            self.taught_images, self.taught_labels = [], []

    # ---- the network, swapped whole ----

    @property
    def net(self):
        """The network answering now. Never modified in place: teaching replaces it."""
        with self._lock:
            return self._net

    @property
    def generation(self):
        """How many times teaching has swapped in a new network."""
        with self._lock:
            return self._net_generation

    @property
    def teaching(self):
        """Teach requests not finished yet."""
        with self._lock:
            return self._pending

    # ---- strokes ----

    def _clip(self, x, y):
        """(x, y) moved onto the canvas; a point that is no finite number is refused here,
        before any stroke holds it (once stored, every later prediction would fail)."""
        point = []
        for name, v in (("x", x), ("y", y)):
            try:
                v = float(v)
            except (TypeError, ValueError, OverflowError):
                raise TypeError(f"{name} must be a number, got {v!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v}")
            point.append(min(max(v, 0.0), self.size - 1.0))
        return tuple(point)

    def begin_stroke(self, x, y):
        """Put the pen down at (x, y): a new stroke, a dot so far."""
        self.end_stroke()
        stroke = _Stroke(self._clip(x, y), self.pen_width)
        self.strokes.append(stroke)
        self._draw_final(stroke, stroke.curve[0])

    def add_point(self, x, y):
        """The pen moved to (x, y) while down: the curve grows towards it."""
        stroke = self._active()
        if stroke is None:
            self.begin_stroke(x, y)
            return
        point = self._clip(x, y)
        if np.hypot(point[0] - stroke.points[-1][0], point[1] - stroke.points[-1][1]) < 0.5:
            return                    # no visible movement: nothing changes
        stroke.points.append(point)
        n = len(stroke.points)
        if n >= 3:                    # the piece before the last now knows where it goes
            piece = curve_piece(stroke.points, n - 3)
            stroke.curve.append(piece)
            self._draw_final(stroke, np.concatenate([stroke.curve[-2][-1:], piece]))
        stroke.tail = np.concatenate([stroke.curve[-1][-1:], curve_piece(stroke.points, n - 2)])
        self._draw_tail(stroke)

    def end_stroke(self):
        """Lift the pen: the provisional last piece becomes final as it is."""
        stroke = self._active()
        if stroke is None:
            return
        stroke.active = False
        if stroke.tail is not None:   # already shown; now part of the committed ink too
            stamp(self._committed, stroke.tail, stroke.width)
            stroke.curve.append(stroke.tail[1:])
            stroke.tail = None
            self._tail_box = None

    def _active(self):
        if self.strokes and self.strokes[-1].active:
            return self.strokes[-1]
        return None

    def _draw_final(self, stroke, path):
        box = stamp(self._committed, path, stroke.width)
        stamp(self.raster, path, stroke.width)
        self._changed(box)

    def _draw_tail(self, stroke):
        """Rub out the old provisional piece (restore the committed ink under it), draw the new."""
        box = self._tail_box
        if box is not None:
            x0, y0, x1, y1 = box
            self.raster[y0:y1, x0:x1] = self._committed[y0:y1, x0:x1]
        self._tail_box = stamp(self.raster, stroke.tail, stroke.width)
        self._changed(_union(box, self._tail_box))

    def _changed(self, box):
        self._dirty = _union(self._dirty, box)
        self._changes += 1

    def _redraw(self):
        self._committed[:] = 0.0
        self._tail_box = None
        for stroke in self.strokes:
            stamp(self._committed, stroke.path(), stroke.width)
        self.raster[:] = self._committed
        self._changed((0, 0, self.size, self.size))

    def undo(self):
        """Take back the last stroke (the one being drawn, if the pen is down)."""
        if self.strokes:
            self.strokes.pop()
            self._redraw()

    def clear(self):
        if self.strokes:
            self.strokes.clear()
            self._redraw()

    def set_pen_width(self, width):
        """The width of the strokes drawn from now on, clipped to the pen's range."""
        self.pen_width = _pen(width)
        return self.pen_width

    def take_dirty(self):
        """The (x0, y0, x1, y1) box of the raster changed since the last call, or None."""
        box, self._dirty = self._dirty, None
        return box

    def paths(self):
        """Every stroke's curve as an (n, 2) float32 array in canvas pixels, y down."""
        return [s.path() for s in self.strokes]

    @property
    def drawing(self):
        """Whether the pen is down."""
        return self._active() is not None

    @property
    def empty(self):
        return not self.strokes

    # ---- the answer ----

    def image(self):
        """The 28x28 float32 image the network sees, or None while nothing is drawn."""
        return self.prediction().image if self.strokes else None

    def prediction(self):
        """The network's answer for the drawing as it is now (None while nothing is drawn).

        Computed at most once per change of the drawing or of the network.
        """
        if not self.strokes:
            return None
        with self._lock:
            net, key = self._net, (self._changes, self._net_generation)
        if self._cached[0] == key:
            return self._cached[1]
        image = strokes_to_mnist(self.paths())
        probs = net.predict_one(image)      # (10,): one C call, for a dense or a convolutional network
        digit = int(ops.argmax_rows(probs[None])[0])
        confidence = float(probs[digit])
        answer = Prediction(probs, image, digit, confidence, confidence >= self.confident)
        self._cached = (key, answer)
        return answer

    def title(self):
        answer = self.prediction()
        return "pynn pad" if answer is None else f"pynn pad: {answer.title()}"

    # ---- teaching ----

    def teach(self, label):
        """Teach the network that the drawing is ``label``; returns a Future (None if empty).

        The fine-tuning runs on a worker thread, one request after another, each on a copy of
        the network then answering; when it is done the copy replaces the live network.
        The Future's result is the path the model was saved to (or None).
        """
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
            raise ValueError(f"label must be a digit 0..9, got {label!r}")
        if not self.strokes:
            return None
        image = self.prediction().image.copy()
        # A few earlier corrections, chosen at random, are taught again with the new one, so
        # that a new lesson does not undo an old one; a few, because the time grows with each.
        earlier = self._rng.permutation(len(self.taught_images))[:REHEARSE]
        inputs = np.stack([image] + [self.taught_images[i] for i in earlier]).reshape(-1, 784)
        labels = np.array([label] + [self.taught_labels[i] for i in earlier], dtype=np.int64)
        self.taught_images.append(image)
        self.taught_labels.append(int(label))
        del self.taught_images[:-MAX_TAUGHT], self.taught_labels[:-MAX_TAUGHT]
        kept = (np.stack(self.taught_images), np.array(self.taught_labels, dtype=np.int64))
        with self._lock:
            self._pending += 1
        return self._teacher.submit(self._teach_job, int(label), inputs.astype(np.float32),
                                    labels, kept)

    def _teach_job(self, label, inputs, labels, kept):
        saved, error = None, None
        try:
            # The live network is never written to, so copying it needs no lock. The copy goes
            # through what a model file holds, the architecture and the parameters: nothing
            # else of the live network (buffers, caches) is shared or needs to be copyable.
            net = modelfile.network_from_arrays(modelfile.network_arrays(self.net))
            result = teach_network(net, inputs, labels)
            with self._lock:
                self._net = result
                self._net_generation += 1
            if self.personal_path is not None:
                modelfile.save(result, self.personal_path,
                        extra={"taught_images": kept[0], "taught_labels": kept[1]})
                saved = self.personal_path
            return saved
        except BaseException as e:
            error = e
            raise
        finally:
            self.last_taught = (label, saved, error)
            with self._lock:
                self._pending -= 1

    def close(self, wait=True):
        """Stop the teaching thread (after the requests already made, when ``wait``)."""
        self._teacher.shutdown(wait=wait)


def teach_network(net, inputs, labels):
    """Fine-tune ``net`` on the taught images (adapt.teach changes it in place); returns it.
    The one place the pad trains, so tests can stand in for it."""
    from pynn import adapt
    adapt.teach(net, inputs, labels)
    return net


# ---- which model ----

def load_taught(path):
    """The corrections stored with a personal model: (images (k, 28, 28) float32 in 0..1,
    labels (k,) digits) or None when it has none. ModelFileError when they are damaged (NaN,
    a label that is no digit, more than MAX_TAUGHT): every later lesson would fail on them."""
    with modelfile.Archive(path) as z:
        if "taught_images" not in z and "taught_labels" not in z:
            return None
        labels = z.array("taught_labels", max_bytes=modelfile.MAX_HEADER + 8 * MAX_TAUGHT)
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) > MAX_TAUGHT:
            raise modelfile.ModelFileError(f"{path}: taught_labels is {labels.dtype} {labels.shape}, "
                                    f"not a list of at most {MAX_TAUGHT} digits")
        images = z.array("taught_images", np.float32, (len(labels), 28, 28))
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise modelfile.ModelFileError(f"{path}: taught_labels holds {labels.min()}..{labels.max()}, not digits 0..9")
    if not (np.isfinite(images).all() and (images >= 0).all() and (images <= 1 + 1e-6).all()):
        raise modelfile.ModelFileError(f"{path}: taught_images holds values that are not in 0..1 (NaN?)")
    return images, labels.astype(np.int64)


def forget_personal_model(path=None):
    """Delete the personal model (what the user taught); True if there was one."""
    path = personal_model_path() if path is None else path
    try:
        os.remove(path)
        return True
    except FileNotFoundError:
        return False


def load_model(path):
    """The network in ``path``, refused (ModelFileError) unless it reads 28x28 digits."""
    net = pynn.load(path)
    if net.sizes[0] != 784 or net.sizes[-1] != 10:
        raise modelfile.ModelFileError(f"{path}: {net!r} does not read digits; the pad needs "
                                f"784 inputs (28x28) and 10 outputs")
    return net


def open_model(model=None, reset=False, personal=None):
    """Choose the network the pad starts with; returns (net, personal_path, taught, message).

    model     a model file to use instead (teaching then lasts for the session only, so a
              file the user named is never overwritten)
    reset     forget the personal model: delete it and start from the shipped one
    personal  the personal model's path (default: in the user's data directory)
    """
    personal = personal_model_path() if personal is None else personal
    if reset:
        forget_personal_model(personal)
    if model is not None:
        return load_model(model), None, None, f"model {os.path.basename(model)} (teaching is not saved)"
    if os.path.exists(personal):
        try:
            return load_model(personal), personal, load_taught(personal), "your taught model"
        except modelfile.ModelFileError as e:
            message = f"ignoring your model ({e}); using the shipped one"
            return pynn.load_default(), personal, None, message
    return pynn.load_default(), personal, None, "the shipped model"
