"""The pad's state recovers: a point or a pen width that is no finite number is refused before
it is stored (once stored, every later prediction would fail until the canvas is cleared), and a
personal model whose taught drawings are damaged gives way to the shipped model with a note."""
import numpy as np
import pytest

import pynn
from pad import state as pad_state
from pad.state import PadState, open_model

from pad_fixtures import data_home, pad_net  # noqa: F401  (fixtures)


@pytest.fixture
def pad(pad_net):
    p = PadState(pad_net)
    yield p
    p.close()


@pytest.mark.parametrize("point", [(np.nan, 10), (10, np.inf), (-np.inf, 3), (10 ** 400, 5),
                                   ("ten", 5), (None, 5)])
def test_a_point_that_is_no_finite_number_is_refused_and_not_kept(pad, point):
    pad.begin_stroke(100, 100)
    pad.add_point(200, 220)
    before = pad.prediction()
    strokes = [list(s.points) for s in pad.strokes]
    with pytest.raises((ValueError, TypeError)):
        pad.add_point(*point)
    with pytest.raises((ValueError, TypeError)):
        pad.begin_stroke(*point)
    assert [list(s.points) for s in pad.strokes] == strokes
    pad.add_point(240, 300)                       # drawing goes on, and so do the answers
    assert pad.prediction() is not None and pad.prediction() is not before


def test_a_point_far_outside_the_canvas_is_moved_onto_it(pad):
    pad.begin_stroke(-1e30, 1e30)
    assert pad.strokes[0].points[0] == (0.0, pad.size - 1.0)
    assert pad.prediction() is not None


@pytest.mark.parametrize("width", [np.nan, "wide", None])
def test_a_pen_width_that_is_no_number_is_refused_and_not_kept(pad, width):
    before = pad.pen_width
    with pytest.raises((ValueError, TypeError)):
        pad.set_pen_width(width)
    assert pad.pen_width == before
    pad.begin_stroke(100, 100)
    pad.add_point(200, 200)
    assert pad.prediction() is not None


def test_a_pad_made_with_a_nan_pen_is_refused(pad_net):
    with pytest.raises(ValueError):
        PadState(pad_net, pen_width=float("nan"))


@pytest.mark.parametrize("images, labels, says", [
    (np.full((2, 28, 28), np.nan, np.float32), np.array([1, 2]), "taught_images"),
    (np.zeros((2, 28, 28), np.float32), np.array([1, 12]), "taught_labels"),
    (np.zeros((2, 28, 28), np.float32), np.array([-1, 2]), "taught_labels"),
    (np.zeros((2, 28, 28), np.float32), np.array([1.0, 2.0]), "taught_labels"),
    (np.zeros((3, 28, 28), np.float32), np.array([1, 2]), "taught_images"),
    (np.zeros((2, 28, 28), np.float64), np.array([1, 2]), "taught_images"),
    (np.zeros((101, 28, 28), np.float32), np.arange(101) % 10, "taught_labels"),
])
def test_a_personal_model_with_damaged_lessons_gives_way_to_the_shipped_one(
        data_home, pad_net, images, labels, says):
    personal = pad_state.personal_model_path()
    pynn.modelfile.save(pad_net, personal, extra={"taught_images": images, "taught_labels": labels})
    net, path, taught, message = open_model()
    assert taught is None and path == personal
    assert message.startswith("ignoring your model") and says in message and "\n" not in message
    assert "shipped" in message


def test_a_personal_model_with_good_lessons_opens_with_them(data_home, pad_net):
    personal = pad_state.personal_model_path()
    images = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    pynn.modelfile.save(pad_net, personal, extra={"taught_images": images, "taught_labels": np.array([3, 1, 4])})
    net, path, taught, message = open_model()
    assert message == "your taught model"
    assert np.array_equal(taught[0], images) and taught[1].tolist() == [3, 1, 4]
