"""The pad's state without a window: strokes, ink, the answer, teaching, the personal model."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pynn
from pad import demo, state as pad_state
from pad.state import PEN_RANGE, PadState, catmull_rom, open_model, stamp
from pynn.preprocess import strokes_to_mnist

from pad_fixtures import data_home, pad_net  # noqa: F401  (fixtures)


@pytest.fixture
def pad(pad_net):
    p = PadState(pad_net)
    yield p
    p.close()


def redraw(pad):
    """The canvas drawn again from scratch from the state's strokes."""
    raster = np.zeros_like(pad.raster)
    for stroke in pad.strokes:
        stamp(raster, stroke.path(), stroke.width)
    return raster


# ---- strokes and ink ----

def test_a_fast_stroke_has_no_gaps(pad):
    # drag events 100 px apart: the curve between them is still continuous ink
    points = [(40, 60), (140, 80), (240, 160), (300, 260), (320, 380)]
    pad.begin_stroke(*points[0])
    for p in points[1:]:
        pad.add_point(*p)
    pad.end_stroke()
    path = pad.strokes[0].path()
    steps = np.hypot(*np.diff(path, axis=0).T)
    assert steps.max() < 1.5 * pad_state.STEP < pad.pen_width / 2   # no jump along the curve
    for p in points:                                      # it goes through every mouse point
        assert np.hypot(*(path - p).T).min() < 1e-3
    ix = np.clip(np.round(path).astype(int), 0, pad.size - 1)
    assert pad.raster[ix[:, 1], ix[:, 0]].min() > 0.99   # and is inked all along
    # smooth: no corner at the mouse points, the direction turns a little at each step
    d = np.diff(path, axis=0)
    turn = np.abs(np.angle((d[1:, 0] + 1j * d[1:, 1]) / (d[:-1, 0] + 1j * d[:-1, 1])))
    assert np.degrees(turn).max() < 20


def test_the_ink_is_the_pen_swept_along_the_curve(pad):
    """Every pixel's ink is how far its centre lies inside the pen (radius r) swept along the
    curve: clip(r + 1/2 - distance to the curve, 0, 1), computed here in float64."""
    for x, y in [(60, 300), (120, 180), (160, 175), (300, 120), (330, 200)]:
        pad.add_point(x, y)
    pad.end_stroke()
    path = pad.strokes[0].path().astype(np.float64)
    ys, xs = np.mgrid[0:pad.size, 0:pad.size] + 0.5
    dist = np.full(xs.shape, np.inf)
    for a, b in zip(path[:-1], path[1:]):
        e = b - a
        t = np.clip(((xs - a[0]) * e[0] + (ys - a[1]) * e[1]) / max(e @ e, 1e-12), 0, 1)
        dist = np.minimum(dist, np.hypot(xs - a[0] - t * e[0], ys - a[1] - t * e[1]))
    expected = np.clip(pad.pen_width / 2 + 0.5 - dist, 0, 1)
    np.testing.assert_allclose(pad.raster, expected, atol=1e-4)


def test_the_curve_does_not_overshoot_uneven_points():
    # collinear points, one gap ten times the others: a uniform spline would run past 11
    curve = catmull_rom((0.0, 0.0), (10.0, 0.0), (11.0, 0.0), (21.0, 0.0), 20)
    x = curve[:, 0]
    assert np.all(np.diff(x) > 0) and x.min() > 10 and x.max() <= 11 + 1e-9
    assert np.allclose(curve[:, 1], 0)


def test_incremental_ink_equals_a_redraw_at_every_event(pad):
    for stroke in demo.mouse_path(8) + demo.mouse_path(4):
        pad.begin_stroke(*stroke[0])
        for x, y in stroke[1:]:
            pad.add_point(x, y)
            np.testing.assert_array_equal(pad.raster, redraw(pad))
        pad.end_stroke()
        np.testing.assert_array_equal(pad.raster, redraw(pad))


def test_the_dirty_box_covers_every_change(pad):
    pad.take_dirty()
    for stroke in demo.mouse_path(3):
        pad.begin_stroke(*stroke[0])
        for x, y in stroke[1:]:
            before = pad.raster.copy()
            pad.add_point(x, y)
            box = pad.take_dirty()
            changed = np.argwhere(pad.raster != before)
            if len(changed):
                x0, y0, x1, y1 = box
                assert changed[:, 0].min() >= y0 and changed[:, 0].max() < y1
                assert changed[:, 1].min() >= x0 and changed[:, 1].max() < x1
        pad.end_stroke()
    assert pad.take_dirty() is None            # nothing new since the last look


def test_points_outside_the_canvas_are_clipped(pad):
    pad.begin_stroke(-50, 20)
    pad.add_point(pad.size + 90, 5000)
    pad.end_stroke()
    path = pad.strokes[0].path()
    assert path.min() >= 0 and path.max() <= pad.size - 1


def test_a_drag_without_a_press_starts_a_stroke_and_a_dot_is_ink(pad):
    pad.add_point(200, 200)
    assert len(pad.strokes) == 1 and pad.drawing
    pad.end_stroke()
    assert not pad.drawing and pad.raster[200, 200] == 1.0
    answer = pad.prediction()                   # the dot reaches the network as ink
    assert answer.image.max() > 0.5 and answer.probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_undo_and_clear(pad):
    demo.draw(pad, 4)
    assert len(pad.strokes) == 1
    one = pad.raster.copy()
    pad.begin_stroke(20, 20)
    pad.add_point(60, 30)
    pad.end_stroke()
    assert len(pad.strokes) == 2 and not np.array_equal(pad.raster, one)
    pad.undo()
    assert len(pad.strokes) == 1
    np.testing.assert_array_equal(pad.raster, one)
    pad.begin_stroke(20, 20)          # undo while the pen is down takes that stroke back
    pad.add_point(60, 30)
    pad.undo()
    assert not pad.drawing and len(pad.strokes) == 1
    np.testing.assert_array_equal(pad.raster, one)
    pad.clear()
    assert pad.empty and pad.raster.max() == 0 and pad.prediction() is None
    pad.undo()                        # nothing left to undo: nothing happens
    assert pad.empty and pad.title() == "pynn pad"


def test_pen_width_is_clipped_and_applies_to_new_strokes(pad):
    assert pad.set_pen_width(1000) == PEN_RANGE[1]
    assert pad.set_pen_width(-3) == PEN_RANGE[0]
    pad.set_pen_width(10)
    pad.begin_stroke(100, 100)
    pad.add_point(300, 100)
    pad.end_stroke()
    pad.set_pen_width(40)
    pad.begin_stroke(100, 300)
    pad.add_point(300, 300)
    pad.end_stroke()
    thin = (pad.raster[:, 200] > 0.5)[:200].sum()
    thick = (pad.raster[:, 200] > 0.5)[200:].sum()
    assert thin == 10 and thick == 40
    assert [s.width for s in pad.strokes] == [10, 40]


# ---- the answer ----

@pytest.mark.parametrize("digit", range(10))
def test_the_shipped_model_reads_the_scripted_digits(pad, digit):
    assert pad.prediction() is None
    demo.draw(pad, digit)
    answer = pad.prediction()
    np.testing.assert_array_equal(answer.image, strokes_to_mnist(pad.paths()))
    assert answer.image.shape == (28, 28) and answer.image.dtype == np.float32
    assert answer.probs.shape == (10,) and abs(float(answer.probs.sum()) - 1) < 1e-4
    assert answer.digit == digit and answer.confident
    assert pad.title() == f"pynn pad: {digit} ({answer.confidence:.0%})"


def test_the_answer_follows_the_drawing_and_is_computed_once_per_change(pad):
    demo.draw(pad, 7)
    first = pad.prediction()
    assert pad.prediction() is first               # nothing changed: not computed again
    pad.begin_stroke(150, 250)                     # a bar across the 7
    pad.add_point(300, 250)
    pad.end_stroke()
    second = pad.prediction()
    assert second is not first and not np.array_equal(second.image, first.image)


def test_the_pen_width_on_screen_does_not_change_what_the_network_sees(pad_net):
    images = []
    for width in (8, 60):
        p = PadState(pad_net, pen_width=width)
        demo.draw(p, 2)
        images.append(p.prediction().image)
        p.close()
    np.testing.assert_array_equal(*images)


def test_it_says_when_it_is_not_sure(pad_net):
    p = PadState(pad_net, confident=1.01)     # nothing can be that sure
    demo.draw(p, 3)
    answer = p.prediction()
    assert not answer.confident and answer.digit == 3
    assert p.title() == "pynn pad: not sure"
    p.close()


# ---- teaching ----

def draw_wrongly_read_digit(pad):
    """Draw the scripted 1 and return it with a label the network does not give it."""
    demo.draw(pad, 1)
    answer = pad.prediction()
    return answer, (answer.digit + 4) % 10


def test_teach_wants_a_digit_and_a_drawing(pad):
    with pytest.raises(ValueError, match="digit 0..9"):
        pad.teach(10)
    with pytest.raises(ValueError, match="digit 0..9"):
        pad.teach(True)
    assert pad.teach(3) is None                # nothing drawn: nothing to learn from


def test_teach_works_on_a_copy_and_swaps_it_in_whole(pad, monkeypatch):
    """While the worker fine-tunes, the live network is never written to and the answers stay
    those of the old network; after the swap they are the new network's."""
    live = pad.net
    weights = [w.copy() for w in live.weights]
    started, proceed = threading.Event(), threading.Event()
    seen = {}

    def slow_teach(net, inputs, labels):
        seen["net"], seen["thread"] = net, threading.current_thread()
        seen["inputs"], seen["labels"] = inputs, labels
        started.set()
        for W in net.weights:                  # half-updated weights for a while
            W *= 0.5
            proceed.wait(5)
        net.biases[-1][labels[0]] += 100.0     # then certain of the taught label
        return net

    monkeypatch.setattr(pad_state, "teach_network", slow_teach)
    old, label = draw_wrongly_read_digit(pad)
    future = pad.teach(label)
    assert started.wait(5)
    assert seen["net"] is not live and seen["thread"] is not threading.current_thread()
    assert pad.teaching == 1 and pad.generation == 0
    for _ in range(3):                          # inference meanwhile: the old weights, whole
        assert pad.net is live
        np.testing.assert_array_equal(pad.prediction().probs, old.probs)
        for W, W0 in zip(live.weights, weights):
            np.testing.assert_array_equal(W, W0)
        time.sleep(0.01)
    proceed.set()
    assert future.result(10) is None            # no personal path: nothing saved
    assert pad.net is seen["net"] and pad.generation == 1 and pad.teaching == 0
    assert pad.prediction().digit == label      # the answer is the new network's
    for W, W0 in zip(live.weights, weights):    # and the old network was never touched
        np.testing.assert_array_equal(W, W0)
    assert seen["inputs"].shape == (1, 784) and seen["inputs"].dtype == np.float32
    np.testing.assert_array_equal(seen["inputs"][0], old.image.ravel())
    assert seen["labels"].tolist() == [label]
    assert pad.last_taught == (label, None, None)


def test_a_failed_teach_keeps_the_old_network(pad, monkeypatch):
    def broken(net, inputs, labels):
        raise FloatingPointError("loss became nan")
    monkeypatch.setattr(pad_state, "teach_network", broken)
    live = pad.net
    demo.draw(pad, 5)
    future = pad.teach(3)
    with pytest.raises(FloatingPointError):
        future.result(10)
    assert pad.net is live and pad.generation == 0 and pad.teaching == 0
    assert isinstance(pad.last_taught[2], FloatingPointError)


def test_teaching_changes_the_answer_while_inference_goes_on(pad):
    """The real fine-tuning: the drawing is read as taught afterwards, and every answer given
    while it ran was exactly the old network's or exactly the new one's, never a mixture."""
    old, label = draw_wrongly_read_digit(pad)
    x = old.image
    answers = []
    future = pad.teach(label)
    while not future.done():
        answers.append(pad.net.predict_one(x))
    future.result(30)
    new = pad.prediction()
    assert new.digit == label, f"taught {label}, still read as {new.digit} ({new.probs})"
    for probs in answers:
        assert np.array_equal(probs, old.probs) or np.array_equal(probs, new.probs)


def test_teach_requests_run_one_after_another(pad, monkeypatch):
    nets, order = [], []

    def record(net, inputs, labels):
        order.append(labels.tolist())
        nets.append(net)
        time.sleep(0.05)
        return net

    monkeypatch.setattr(pad_state, "teach_network", record)
    demo.draw(pad, 6)
    first = pad.teach(6)
    pad.clear()
    demo.draw(pad, 0)
    second = pad.teach(0)
    first.result(10), second.result(10)
    # the second starts from the first's network and rehearses the first correction too
    assert order == [[6], [0, 6]]
    assert pad.generation == 2 and pad.net is nets[1]


def test_each_lesson_rehearses_a_few_earlier_corrections(pad, monkeypatch, tmp_path):
    lessons = []
    monkeypatch.setattr(pad_state, "teach_network",
                        lambda net, inputs, labels: lessons.append((inputs, labels)) or net)
    pad.personal_path = str(tmp_path / "personal.npz")
    for digit in range(6):
        pad.clear()
        demo.draw(pad, digit)
        pad.teach(digit).result(10)
    inputs, labels = lessons[-1]
    assert len(labels) == 1 + pad_state.REHEARSE and labels[0] == 5
    assert len(set(labels.tolist())) == len(labels) and set(labels[1:]) <= {0, 1, 2, 3, 4}
    for x, y in zip(inputs, labels):              # each with its own drawing
        np.testing.assert_array_equal(x, pad.taught_images[y].ravel())
    saved = pad_state.load_taught(pad.personal_path)     # all six are kept
    assert saved[1].tolist() == list(range(6)) and saved[0].shape == (6, 28, 28)


def test_the_personal_model_is_saved_reloaded_and_reset(data_home, pad_net):
    path = data_home / "pynn" / "pad-model.npz"
    net, personal, taught, message = open_model()
    assert personal == str(path) and taught is None and message == "the shipped model"
    pad = PadState(net, personal_path=personal, taught=taught)
    old, label = draw_wrongly_read_digit(pad)
    assert pad.teach(label).result(30) == str(path)
    assert path.exists()
    taught_net = pad.net
    pad.close()

    # next start: the personal model, with the corrections to replay
    net, personal, taught, message = open_model()
    assert message == "your taught model"
    for W, W1 in zip(net.weights, taught_net.weights):
        np.testing.assert_array_equal(W, W1)
    np.testing.assert_array_equal(taught[0][0], old.image)
    assert taught[1].tolist() == [label]
    pad = PadState(net, personal_path=personal, taught=taught)
    demo.draw(pad, 1)
    assert pad.prediction().digit == label
    pad.close()

    # --reset: the file is gone and the shipped model is back
    net, personal, taught, message = open_model(reset=True)
    assert not path.exists() and taught is None and message == "the shipped model"
    for W, W0 in zip(net.weights, pynn.load_default().weights):
        np.testing.assert_array_equal(W, W0)


def test_a_damaged_personal_model_falls_back_to_the_shipped_one(data_home):
    path = data_home / "pynn" / "pad-model.npz"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 not really a zip")
    net, personal, taught, message = open_model()
    assert "ignoring your model" in message and personal == str(path)
    for W, W0 in zip(net.weights, pynn.load_default().weights):
        np.testing.assert_array_equal(W, W0)


def test_another_model_is_used_and_never_written(data_home, tmp_path, pad_net):
    other = tmp_path / "other.npz"
    small = pynn.Network([784, 16, 10], seed=3)
    small.save(other)
    before = other.read_bytes()
    net, personal, taught, message = open_model(model=str(other))
    assert net.sizes == [784, 16, 10] and personal is None and "not saved" in message
    pad = PadState(net, personal_path=personal)
    demo.draw(pad, 2)
    pad.teach(2).result(30)
    pad.close()
    assert other.read_bytes() == before and not (data_home / "pynn").exists()


def test_the_data_directory_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert pad_state.personal_model_path() == str(tmp_path / "pynn" / "pad-model.npz")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")   # the spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pad_state.data_dir() == str(tmp_path / ".local" / "share" / "pynn")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert pad_state.data_dir() == str(tmp_path / ".local" / "share" / "pynn")


def test_a_model_that_does_not_read_digits_is_refused(tmp_path):
    other = tmp_path / "other.npz"
    pynn.Network([20, 8, 4]).save(other)
    with pytest.raises(pynn.ModelFileError, match="the pad needs 784 inputs"):
        open_model(model=str(other), personal=str(tmp_path / "p.npz"))
    r = subprocess.run([sys.executable, "-m", "pad", "--model", str(other), "--screenshot",
                        str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "the pad needs 784 inputs" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_command_line_refuses_a_bad_model_with_one_line(tmp_path):
    bad = tmp_path / "nothing.npz"
    for args in (["--model", str(bad)], ["--model", str(bad), "--screenshot", str(tmp_path / "x.png")]):
        r = subprocess.run([sys.executable, "-m", "pad", *args], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "XDG_DATA_HOME": str(tmp_path)})
        assert r.returncode == 1 and r.stderr.strip() == f"pad: {bad}: no such file"


def test_the_bench_times_every_drag_event_of_the_script(pad_net):
    from pad import bench
    results = bench.state_pass(pad_net, repeats=1)
    drags = sum(len(stroke) - 1 for d in range(10) for stroke in demo.mouse_path(d))
    for step in ("ink", "preprocess", "inference", "preprocess+inference"):
        r = results[step]
        assert r["count"] == drags
        assert 0 < r["cpu_median_ms"] and r["median_ms"] <= r["p95_ms"] <= r["max_ms"]
    both = results["preprocess+inference"]
    assert both["median_ms"] >= results["preprocess"]["median_ms"]
    assert "preprocess+inference: median" in bench.report(results)


def test_a_convolutional_model_draws_answers_learns_and_is_saved(data_home, tmp_path):
    conv = tmp_path / "conv.npz"
    pynn.Network("1x28x28-c4k5-pool2-c8k3s2-32-10", seed=0).save(conv)
    net, personal, taught, message = open_model(model=str(conv))
    assert "Conv2d" in repr(net) and personal is None
    pad = PadState(net, personal_path=str(tmp_path / "taught.npz"))
    demo.draw(pad, 3)
    answer = pad.prediction()
    assert 0 <= answer.digit <= 9 and abs(float(np.sum(answer.probs)) - 1) < 1e-5
    assert pad.teach(3).result(60) == str(tmp_path / "taught.npz")
    assert pad.prediction().digit == 3
    pad.close()
    back = pad_state.load_model(str(tmp_path / "taught.npz"))
    assert repr(back) == repr(pad.net)
