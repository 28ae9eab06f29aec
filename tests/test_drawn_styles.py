"""The styles MNIST lacks, drawn as the pad draws (pynn.drawn.STYLES), and `pynn study drawn`,
which scores models on them side by side."""
import csv
import os

import numpy as np
import pytest

import pynn
from pynn import drawn
from pynn.preprocess import strokes_to_mnist
from pynn.study import drawings
from conftest import study


def test_each_style_set_holds_its_digit_as_mnist_inputs():
    for style, (digit, _) in drawn.STYLES.items():
        X, y = drawn.style_set(style, 12, seed=2)
        assert X.shape == (12, 784) and X.dtype == np.float32, style
        assert (y == digit).all() and y.dtype == np.int64, style
        assert 0 <= X.min() and 0.99 <= X.max() <= 1, style


def test_the_same_seed_gives_the_same_drawings_and_another_seed_others():
    a, _ = drawn.style_set("hooked 9", 5, seed=1)
    b, _ = drawn.style_set("hooked 9", 5, seed=1)
    c, _ = drawn.style_set("hooked 9", 5, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_every_drawing_of_a_set_differs_in_size_place_and_shape():
    strokes = drawn.style_strokes("barred 7", 20, seed=0)
    boxes = np.array([np.ptp(np.concatenate(s), axis=0) for s in strokes])
    starts = np.array([s[0][0] for s in strokes])
    assert boxes[:, 1].max() > 3 * boxes[:, 1].min()           # sizes from 30 to 300 pixels
    assert np.ptp(starts, axis=0).min() > 100                  # places all over the canvas
    images, _ = drawn.style_set("barred 7", 20, seed=0)
    assert len({im.tobytes() for im in images}) == 20          # no two drawings alike


def _crosses(a, b, c, d):
    """Whether segment ab crosses segment cd."""
    def side(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))
    return side(a, b, c) != side(a, b, d) and side(c, d, a) != side(c, d, b)


def _crossing(stroke, other):
    return any(_crosses(stroke[i], stroke[i + 1], other[j], other[j + 1])
               for i in range(len(stroke) - 1) for j in range(len(other) - 1))


def test_the_styles_have_their_shapes():
    """A 7's bar crosses its stem; the flagged 1s alternate without and with a base (a second
    stroke under the stem); the 4's stem crosses its across stroke and the top stays open (the
    two strokes' tops far apart); the 9's stroke ends turned round, no longer going down."""
    for s in drawn.style_strokes("barred 7", 10):
        assert len(s) == 2 and _crossing(s[1], s[0])
    for i, s in enumerate(drawn.style_strokes("flagged 1", 10)):
        assert len(s) == 1 + i % 2
        if len(s) == 2:
            assert s[1][:, 1].mean() > np.percentile(s[0][:, 1], 90)
    for s in drawn.style_strokes("open 4", 10):
        first, stem = s
        size = np.ptp(np.concatenate(s)[:, 1])
        assert len(s) == 2 and _crossing(stem, first)
        assert np.hypot(*(first[0] - stem[0])) > 0.1 * size
    for s in drawn.style_strokes("hooked 9", 10):
        (stroke,) = s
        end = stroke[-1] - stroke[-4]
        assert end[1] < 0.5 * np.hypot(*end)        # turned round: across or back up


def test_the_style_drawings_are_what_the_pad_sees():
    """The strokes drawn point by point on the pad (its curves through them, its
    preprocessing) give the same input as style_set, up to a few percent of the ink."""
    from pad.state import PadState
    net = pynn.Network([784, 10], seed=0)
    for style in drawn.STYLES:
        for s in drawn.style_strokes(style, 3, seed=4):
            s = [p - np.concatenate(s).min(axis=0) + 40 for p in s]   # inside the canvas
            pad = PadState(net)
            for stroke in s:
                pad.begin_stroke(*stroke[0])
                for x, y in stroke[1:]:
                    pad.add_point(x, y)
                pad.end_stroke()
            ours = strokes_to_mnist(s)
            assert np.abs(pad.prediction().image - ours).sum() <= 0.05 * ours.sum(), style


def test_an_unknown_style_is_refused():
    with pytest.raises(ValueError, match="styles: barred 7"):
        drawn.style_set("curly 2", 3)


def test_pad_set_is_drawn_sets_pad_strokes(mnist):
    X, _ = mnist.test
    np.testing.assert_array_equal(drawn.pad_set(X[:20], seed=3),
                                  drawn.drawn_sets(X[:20], seed=3)["strokes (pad)"])


# ---- pynn study drawn ----

def _always(digit):
    """A network that answers ``digit`` whatever it is shown."""
    net = pynn.Network([784, 10], seed=0)
    net.weights[0][:] = 0
    net.biases[0][:] = 0
    net.biases[0][digit] = 5
    return net


def test_score_gives_each_set_its_accuracy():
    """A network that always answers 7 reads every barred 7 and nothing else; its MNIST error
    is the share of the digits that are not 7s."""
    rng = np.random.default_rng(0)
    X = rng.random((50, 784), dtype=np.float32)
    y = np.arange(50) % 10
    styles = drawn.style_sets(4)
    row = drawings.score(_always(7), (X, y), X, styles, max_error=0.95)
    assert row["mnist_error"] == pytest.approx(0.9) and row["pad_drawn"] == pytest.approx(0.1)
    assert row["barred 7"] == 1.0
    assert row["flagged 1"] == row["hooked 9"] == row["open 4"] == 0.0
    assert row["drawn_mean"] == pytest.approx((0.1 + 1.0) / 5)
    assert row["ships"] and not drawings.score(_always(7), (X, y), X, styles)["ships"]


def test_the_best_reader_is_the_best_drawn_mean_among_those_that_may_ship():
    rows = [{"model": "a", "ships": True, "drawn_mean": 0.9},
            {"model": "b", "ships": False, "drawn_mean": 0.99},
            {"model": "c", "ships": True, "drawn_mean": 0.95},
            {"model": "d", "ships": True, "drawn_mean": 0.95}]
    assert drawings.best_reader(rows)["model"] == "c"
    assert drawings.best_reader([rows[1]]) is None


def test_study_drawn_scores_models_side_by_side(tmp_path, capsys):
    """A network that always answers 9 beside one trained a little: one table, one row each,
    the 9-network failing all but the hooked 9s; with --max-error 1 both may ship and the
    trained one is the best reader."""
    from pynn.study.common import load_split
    X, y = load_split(quick=True)["train"]
    trained = pynn.Network([784, 32, 10], seed=0)
    trained.fit(X, y, epochs=2, batch_size=32, optimizer=pynn.SGD(lr=0.05, momentum=0.9),
                score=False)
    paths = [str(tmp_path / "nine.npz"), str(tmp_path / "trained.npz")]
    _always(9).save(paths[0])
    trained.save(paths[1])
    out = str(tmp_path / "out")
    assert study(["drawn", "--quick", "--styles", "20", "--limit", "200", "--max-error", "1",
                  "--corrections", "2", "--out", out, *paths]) == 0
    with open(os.path.join(out, "drawn.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == paths
    nine, ours = rows
    assert float(nine["hooked 9"]) == 1.0 and float(nine["barred 7"]) == 0.0
    assert float(ours["pad_drawn"]) > 0.5 and float(ours["drawn_mean"]) > float(nine["drawn_mean"])
    assert [r["lessons"] for r in rows] == ["2", "2"]
    assert float(ours["mnist_error_after"]) < 0.5 and float(ours["cpu_median"]) > 0
    report = open(os.path.join(out, "drawn.md")).read()
    assert "Made by:" in report and f"The best reader: **{paths[1]}**" in report
    assert "| hooked 9 |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--max-error", "2"], "--max-error"),
    (["--styles", "0"], "--styles"),
    (["--limit", "-3"], "--limit"),
    (["--corrections", "-1"], "--corrections"),
])
def test_study_drawn_refuses_bad_settings(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        study(["drawn", "--quick", "--out", str(tmp_path), *argv])


def test_study_drawn_names_a_missing_model_or_one_that_reads_no_digits(tmp_path):
    with pytest.raises(SystemExit, match="missing.npz: no such file"):
        study(["drawn", "--quick", "--out", str(tmp_path), str(tmp_path / "missing.npz")])
    pynn.Network([20, 5, 3]).save(tmp_path / "small.npz")
    with pytest.raises(SystemExit, match="small.npz: a digit network reads 784 pixels"):
        study(["drawn", "--quick", "--out", str(tmp_path), "shipped", str(tmp_path / "small.npz")])


def test_corrections_are_the_misread_drawings_first_one_style_after_another():
    styles = drawn.style_sets(3)
    lessons = drawings.corrections(_always(9), styles, 7)
    # the 9-network misreads every 7, 1 and 4 and reads every 9
    assert [int(label) for _, label in lessons] == [7, 1, 4, 7, 1, 4, 7]
    assert len(drawings.corrections(_always(9), styles, 100)) == 12


def test_teaching_as_the_pad_does_rehearses_as_many_earlier_corrections_as_the_pad():
    from pad.state import REHEARSE
    assert drawings.REHEARSE == REHEARSE
    lessons = drawings.corrections(_always(9), drawn.style_sets(2), 3)
    before = _always(9)
    taught, seconds = drawings.teach_as_the_pad_does(before, lessons)
    assert len(seconds) == 3 and taught is not before
    assert before.predict(np.stack([x for x, _ in lessons])).tolist() == [9, 9, 9]
    assert (taught.predict(np.stack([x for x, _ in lessons])) == [y for _, y in lessons]).all()
