"""The pad's real window, driven through its own event handlers, its pixels read back.

pyglet picks its platform when it is imported, and a GL crash would take pytest down with it,
so the window runs in a child process: this file run as a script (``session``) with a display
from the display_env fixture (Xvfb, else headless EGL). The child draws, presses keys, takes
screenshots and writes what it saw to a directory; the tests below check it.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from pad_fixtures import display_env, no_display, pad_net  # noqa: F401  (fixtures)

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- the child: runs with a display ----

def session(out, model):
    """Drive a PadWindow; write results.json and the frames (as .npy and .png) into ``out``."""
    from pyglet.window import key, mouse

    import pynn
    from pad import demo, window as pad_window
    from pad import state as pad_state
    from pad.state import PadState

    pynn.set_num_threads(1)
    results = {"geometry": {
        "height": pad_window.HEIGHT, "width": pad_window.WIDTH,
        "canvas": [pad_window.CANVAS_X, pad_window.CANVAS_Y], "panel_x": pad_window.PANEL_X,
        "scale": pad_window.PREVIEW_SCALE, "bar": [pad_window.BAR_X, pad_window.BAR_W,
                                                    pad_window.BAR_TOP, pad_window.BAR_ROW],
        "paper": pad_window.PAPER.tolist(), "ink": pad_window.INK.tolist(),
        "top_bar": list(pad_window.TOP_BAR), "bar_color": list(pad_window.BAR),
        "unsure_bar": list(pad_window.UNSURE_BAR), "confident": pad_state.CONFIDENT}}
    state = PadState(pynn.load(model), personal_path=os.path.join(out, "personal.npz"))
    win = pad_window.PadWindow(state)

    def press(symbol, modifiers=0):
        win.dispatch_event("on_key_press", symbol, modifiers)
        win.dispatch_events()
        win.refresh()

    def click(x, y, button=mouse.LEFT):
        win.dispatch_event("on_mouse_press", x, y, button, 0)
        win.dispatch_event("on_mouse_release", x, y, button, 0)
        win.dispatch_events()
        win.refresh()

    def snapshot(name):
        frame = win.screenshot(os.path.join(out, name + ".png"))
        np.save(os.path.join(out, name + ".npy"), frame)
        answer = state.prediction()
        np.save(os.path.join(out, name + "-raster.npy"), state.raster)
        if answer is not None:
            np.save(os.path.join(out, name + "-image.npy"), answer.image)
            np.save(os.path.join(out, name + "-probs.npy"), answer.probs)
        return {"caption": win.title, "digit_label": win.digit_label.text,
                "confidence_label": win.confidence_label.text, "strokes": len(state.strokes),
                "digit": None if answer is None else answer.digit}

    results["fresh"] = snapshot("fresh")
    drawn = {}
    for digit in (3, 7):
        win.clear_drawing()
        demo.draw_on_window(win, digit)
        drawn[digit] = snapshot(f"drawn{digit}")
    results["drawn"] = drawn
    state.confident = 1.01            # nothing is that sure: the pad must say so
    win.clear_drawing()
    demo.draw_on_window(win, 3)
    results["unsure"] = snapshot("unsure")
    state.confident = pad_state.CONFIDENT

    keys = {}
    demo.draw_on_window(win, 4)           # the 7 and a 4 over it: two strokes
    keys["before"] = len(state.strokes)
    press(key.U)
    keys["after_u"] = len(state.strokes)
    press(key.Z, key.MOD_CTRL)
    keys["after_ctrl_z"] = len(state.strokes)
    demo.draw_on_window(win, 4)
    press(key.ESCAPE)
    keys["after_escape"] = [len(state.strokes), bool(win.has_exit)]
    demo.draw_on_window(win, 4)
    press(key.C)
    keys["after_c"] = len(state.strokes)
    demo.draw_on_window(win, 4)
    click(*win.from_canvas(200, 200), button=mouse.RIGHT)
    keys["after_right_click"] = len(state.strokes)
    demo.draw_on_window(win, 4)
    clear = win.buttons[0]
    click(clear.x + clear.w / 2, clear.y + clear.h / 2)
    keys["after_clear_button"] = len(state.strokes)
    width = state.pen_width
    press(key.BRACKETRIGHT)
    press(key.BRACKETRIGHT)
    press(key.BRACKETLEFT)
    keys["pen"] = [width, state.pen_width, win.status_text]
    keys["empty"] = snapshot("empty")
    results["keys"] = keys

    # teach by pressing the right digit's key
    demo.draw_on_window(win, 1)
    before = state.prediction()
    label = (before.digit + 4) % 10
    press(key._0 + label)
    teaching_status = win.status_text
    for _ in range(30 * 60):              # the window keeps drawing frames while the worker teaches
        if not state.teaching:
            break
        win.dispatch_events()
        win.on_draw()
        win.flip()
        time.sleep(1 / 60)
    win.refresh()
    results["teach"] = {"before": before.digit, "label": label, "status_while": teaching_status,
                        "status_after": win.status_text, "after": state.prediction().digit,
                        "saved": os.path.exists(os.path.join(out, "personal.npz")),
                        "generation": state.generation}
    results["teach"].update(snapshot("taught"))
    win.close()
    state.close()
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)


# ---- the tests: run the child, check what it saw ----

def run_child(env, out, model):
    cmd = [sys.executable, os.path.abspath(__file__), str(out), str(model)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=HERE)
    assert r.returncode == 0, f"the window session failed:\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def seen(display_env, pad_net, tmp_path_factory):
    out = tmp_path_factory.mktemp("pad-window")
    model = out / "model.npz"
    pad_net.save(model)
    run_child(display_env, out, model)
    with open(out / "results.json") as f:
        results = json.load(f)
    results["out"] = out
    return results


def frame(seen, name):
    return np.load(seen["out"] / f"{name}.npy")


@pytest.mark.parametrize("digit", [3, 7])
def test_a_digit_drawn_with_the_mouse_is_recognised(seen, digit):
    d = seen["drawn"][str(digit)]
    assert d["digit"] == digit and d["strokes"] == 1
    probs = np.load(seen["out"] / f"drawn{digit}-probs.npy")
    assert d["caption"] == f"pynn pad: {digit} ({probs[digit]:.0%})"
    assert d["digit_label"] == str(digit)
    assert d["confidence_label"] == f"{probs[digit]:.0%} sure"


@pytest.mark.parametrize("digit", [3, 7])
def test_the_canvas_on_screen_is_the_raster(seen, digit):
    g = seen["geometry"]
    pixels = frame(seen, f"drawn{digit}")
    assert pixels.shape == (g["height"], g["width"], 4)
    raster = np.load(seen["out"] / f"drawn{digit}-raster.npy")
    size = raster.shape[0]
    x, top = g["canvas"][0], g["height"] - g["canvas"][1] - size   # rows come top first
    canvas = pixels[top:top + size, x:x + size, :3].astype(np.float32)
    paper, ink = np.array(g["paper"]), np.array(g["ink"])
    expected = paper + (ink - paper) * raster[..., None]
    assert np.abs(canvas - expected).max() <= 3
    assert (raster == 1).sum() > 2000 and (raster == 0).sum() > 100000


@pytest.mark.parametrize("digit", [3, 7])
def test_the_preview_shows_what_the_network_sees(seen, digit):
    g = seen["geometry"]
    pixels = frame(seen, f"drawn{digit}")
    image = np.load(seen["out"] / f"drawn{digit}-image.npy")
    s, x0 = g["scale"], g["panel_x"]
    top = g["height"] - (g["canvas"][1] + 448)
    # every preview pixel is a flat s x s square of the image's grey
    squares = pixels[top:top + 28 * s, x0:x0 + 28 * s, 0].reshape(28, s, 28, s).astype(int)
    assert (squares.max(axis=(1, 3)) - squares.min(axis=(1, 3))).max() <= 1
    assert np.abs(squares[:, 0, :, 0] - np.clip(image, 0, 1) * 255).max() <= 2


@pytest.mark.parametrize("digit", [3, 7])
def test_the_bars_show_the_probabilities(seen, digit):
    g = seen["geometry"]
    pixels = frame(seen, f"drawn{digit}")
    probs = np.load(seen["out"] / f"drawn{digit}-probs.npy")
    bar_x, bar_w, bar_top, row = g["bar"]
    for d in range(10):
        y = g["height"] - (bar_top - (d + 1) * row + row // 2)     # the middle of bar d
        line = pixels[y, bar_x:bar_x + bar_w, :3]
        color = g["top_bar"] if d == digit else g["bar_color"]
        filled = np.all(np.abs(line.astype(int) - color) <= 2, axis=1).sum()
        assert abs(filled - probs[d] * bar_w) <= 2, (d, filled, probs[d])


def test_it_says_when_it_is_not_sure(seen):
    u = seen["unsure"]
    probs = np.load(seen["out"] / "unsure-probs.npy")
    assert u["digit"] == 3 and u["digit_label"] == "?" and u["caption"] == "pynn pad: not sure"
    assert u["confidence_label"] == f"not sure (3? {probs[3]:.0%})"
    g = seen["geometry"]
    bar_x, bar_w, bar_top, row = g["bar"]
    y = g["height"] - (bar_top - 4 * row + row // 2)         # the middle of bar 3
    line = frame(seen, "unsure")[y, bar_x:bar_x + bar_w, :3].astype(int)
    assert np.all(np.abs(line - g["unsure_bar"]) <= 2, axis=1).sum() >= probs[3] * bar_w - 2


def test_the_keys_mouse_and_button(seen):
    k = seen["keys"]
    assert k["before"] == 2
    assert k["after_u"] == 1 and k["after_ctrl_z"] == 0
    assert k["after_escape"] == [0, False]          # Escape clears; it does not close the pad
    assert k["after_c"] == 0 and k["after_right_click"] == 0 and k["after_clear_button"] == 0
    width, now, status = k["pen"]
    assert now == width + 4 and status.startswith(f"pen {now:.0f} px")
    g = seen["geometry"]
    for name in ("empty", "fresh"):
        check_empty(seen, g, name, k["empty"] if name == "empty" else seen["fresh"])


def check_empty(seen, g, name, empty):
    assert empty["digit"] is None and empty["caption"] == "pynn pad"
    assert empty["confidence_label"] == "draw a digit" and empty["digit_label"] == ""
    pixels = frame(seen, name)
    (x, y), size = g["canvas"], 448
    top = g["height"] - y - size
    canvas = pixels[top:top + size, x:x + size, :3]
    assert np.all(np.abs(canvas.astype(int) - g["paper"]) <= 1)     # no ink
    s, x0 = g["scale"], g["panel_x"]
    assert pixels[top:top + 28 * s, x0:x0 + 28 * s, :3].max() == 0  # a black preview
    bar_x, bar_w, bar_top, row = g["bar"]
    bars = pixels[g["height"] - bar_top:g["height"] - bar_top + 10 * row, bar_x:bar_x + bar_w, :3]
    for color in (g["top_bar"], g["bar_color"]):                     # and no bars
        assert not np.any(np.all(np.abs(bars.astype(int) - color) <= 2, axis=2))


def test_teaching_from_the_keyboard(seen):
    t = seen["teach"]
    assert t["before"] != t["label"]
    assert t["status_while"] == f"teaching: that is a {t['label']}…"
    assert t["after"] == t["label"] and t["digit"] == t["label"] and t["generation"] == 1
    assert t["saved"] and t["status_after"] == f"learned: that is a {t['label']} (saved)"
    probs = np.load(seen["out"] / "taught-probs.npy")     # the title says what the bars say
    sure = probs[t["label"]] >= seen["geometry"]["confident"]
    assert t["caption"] == ("pynn pad: " + (f"{t['label']} ({probs[t['label']]:.0%})" if sure
                                            else "not sure"))


def png_size(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]   # IHDR intact
    return struct.unpack(">II", data[16:24])


def test_the_screenshots_are_pngs_of_the_window(seen):
    g = seen["geometry"]
    for name in ("fresh", "drawn3", "drawn7", "empty", "taught"):
        assert png_size(seen["out"] / f"{name}.png") == (g["width"], g["height"])


def test_the_command_line_screenshot_and_reset(display_env, tmp_path, pad_net, seen):
    """python -m pad --reset --screenshot PNG --demo 7: the pad as a user starts it."""
    personal = tmp_path / "data" / "pynn" / "pad-model.npz"
    personal.parent.mkdir(parents=True)
    pad_net.save(personal)
    png = tmp_path / "shot.png"
    env = dict(display_env, XDG_DATA_HOME=str(tmp_path / "data"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(HERE), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "pad", "--reset", "--screenshot", str(png),
                        "--demo", "7"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert png_size(png) == (seen["geometry"]["width"], seen["geometry"]["height"])
    assert not personal.exists()


# ---- the pad as a user runs it, driven by real X events (xdotool) ----

class Pad:
    """``python -m pad`` running on the X display in ``env``, its window found by xdotool."""

    def __init__(self, env, *args):
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-m", "pad", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # mapped, not only made: a stroke sent to a window not yet on the screen is lost
        self.wid = self.xdo("search", "--sync", "--onlyvisible", "--name", "^pynn pad").split()[0]

    def xdo(self, *args):
        return subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()

    def title(self):
        return self.xdo("getwindowname", self.wid)

    def wait_title(self, check, timeout=60):
        deadline = time.monotonic() + timeout
        while not check(self.title()):
            assert time.monotonic() < deadline, f"the title stayed {self.title()!r}"
            time.sleep(0.05)
        return self.title()

    def stroke(self, points):
        """Drag with the left button through window points (x, y from the top left)."""
        self.xdo("mousemove", "--window", self.wid, *map(str, points[0]), "mousedown", "1")
        for x, y in points[1:]:
            self.xdo("mousemove", "--window", self.wid, str(x), str(y))
        self.xdo("mouseup", "1")

    def quit(self):
        self.xdo("key", "--clearmodifiers", "ctrl+q")
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def draw_a_one(pad):
    # canvas x = 224, from y = 80 to 420; the canvas starts 16 px from the window's top left
    pad.stroke([(240, 96 + 20 * i) for i in range(18)])


def test_real_mouse_and_keys_teach_and_remember(display_env, tmp_path):
    if not display_env.get("DISPLAY"):
        no_display("xdotool needs an X display; only headless EGL is available")
    if shutil.which("xdotool") is None:
        no_display("xdotool is not installed (apt-get install xdotool)")
    env = dict(display_env, XDG_DATA_HOME=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(HERE), env.get("PYTHONPATH")]))
    personal = tmp_path / "pynn" / "pad-model.npz"

    pad = Pad(env, "--demo", "3")
    try:
        pad.wait_title(lambda t: t.startswith("pynn pad: 3 ("))   # the scripted 3, drawn live
        time.sleep(1.5)                                          # to its end
        assert pad.title().startswith("pynn pad: 3 (")
        pad.xdo("key", "--clearmodifiers", "c")
        pad.wait_title(lambda t: t == "pynn pad")
        draw_a_one(pad)
        first = pad.wait_title(lambda t: t != "pynn pad")
        assert first.startswith("pynn pad: 1 (")
        pad.xdo("key", "--clearmodifiers", "7")          # no: it is a 7
        assert pad.wait_title(lambda t: t != first).startswith("pynn pad: 7 (")
        assert "the shipped model" in pad.quit()
    finally:
        pad.kill()
    assert personal.exists()

    pad = Pad(env)                                          # the next start remembers
    try:
        draw_a_one(pad)
        assert pad.wait_title(lambda t: t != "pynn pad").startswith("pynn pad: 7 (")
        assert "your taught model" in pad.quit()
    finally:
        pad.kill()

    pad = Pad(env, "--reset")                               # and --reset forgets
    try:
        assert not personal.exists()
        draw_a_one(pad)
        assert pad.wait_title(lambda t: t != "pynn pad").startswith("pynn pad: 1 (")
    finally:
        pad.quit() if pad.proc.poll() is None else None
        pad.kill()


if __name__ == "__main__":
    session(sys.argv[1], sys.argv[2])
