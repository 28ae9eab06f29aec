"""The pad's window: draws a PadState and turns mouse and keys into calls on it.

    +-----------------------+  +--------+   7
    |                       |  | 28x28  |  98% sure
    |   canvas (448x448)    |  +--------+
    |                       |  0 |                 0%
    |                       |  1 |=                1%
    |                       |  ...
    +-----------------------+  9 |                 0%
    [Clear] [Undo]             status
    keys

Everything the window shows comes from the state; the window holds no drawing or answer of
its own. The answer is brought up to date once per frame (``refresh``), however many drag
events arrived since the last one.
"""
import numpy as np
import pyglet
from pyglet import gl
from pyglet.window import key, mouse

from .state import PEN_RANGE

MARGIN = 16
CANVAS_X, CANVAS_Y = MARGIN, 88         # the canvas's bottom-left corner in the window
PANEL_X = 480                           # where the right-hand panel starts
WIDTH, HEIGHT = 880, 552
PREVIEW_SCALE = 6                       # 28x28 -> 168x168, each pixel a square
BAR_X, BAR_W, BAR_ROW = PANEL_X + 28, 290, 24
BAR_TOP = CANVAS_Y + 10 * BAR_ROW + 4   # ten rows of bars, the last level with the canvas

BACKGROUND = (34, 38, 46)
PAPER = np.array([250, 250, 246], dtype=np.float32)
INK = np.array([22, 26, 36], dtype=np.float32)
TEXT = (230, 232, 236, 255)
DIM = (150, 156, 168, 255)
TRACK = (52, 58, 70)
BAR = (96, 116, 150)
TOP_BAR = (240, 160, 60)
UNSURE_BAR = (170, 150, 120)
BUTTON = (64, 72, 88)
FONT = ("DejaVu Sans", "Helvetica", "Arial")

HELP = "C/Esc/right click clear · U/Ctrl+Z undo · [ ] pen width · 0–9 teach the right digit · Ctrl+Q quit"


def run(window, fps=60):
    """Run pyglet's loop for ``window``, which draws a frame only when the pad changed."""
    pyglet.clock.schedule_interval(window.tick, 1 / fps)
    try:
        pyglet.app.run(None)
    finally:
        pyglet.clock.unschedule(window.tick)


class Button:
    def __init__(self, text, x, y, w, h, action, batch, groups):
        self.x, self.y, self.w, self.h, self.action = x, y, w, h, action
        self.box = pyglet.shapes.Rectangle(x, y, w, h, color=BUTTON, batch=batch, group=groups[0])
        self.label = pyglet.text.Label(text, x=x + w / 2, y=y + h / 2, anchor_x="center",
                                       anchor_y="center", font_name=FONT, font_size=12,
                                       color=TEXT, batch=batch, group=groups[2])

    def hit(self, x, y):
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h


class PadWindow(pyglet.window.Window):
    """A pyglet window showing ``state`` (a PadState): canvas, what the network sees, the answer."""

    def __init__(self, state, status="", **kwargs):
        kwargs.setdefault("caption", "pynn pad")
        try:   # 8 bits a colour: some headless (EGL) defaults have 5-6-5, which bands the greys
            super().__init__(WIDTH, HEIGHT, config=gl.Config(red_size=8, green_size=8, blue_size=8,
                                                             double_buffer=True), **kwargs)
        except pyglet.window.NoSuchConfigException:
            super().__init__(WIDTH, HEIGHT, **kwargs)
        self.state = state
        self.status_text = ""
        self._stale = True          # something changed since the last frame drawn
        self.title = kwargs["caption"]
        self._shown = ()            # the Prediction on screen (None: the empty canvas's)
        self._teach_seen = None
        self.batch = pyglet.graphics.Batch()
        self._groups = [pyglet.graphics.Group(order=i) for i in range(3)]  # back to front
        self._build(self._groups)
        self.set_status(status)
        self.refresh()

    # ---- building the scene ----

    def _build(self, groups):
        size, b = self.state.size, self.batch
        label = self._label
        self._keep = []   # shapes that never change, kept alive here (a batch holds no reference)

        self.canvas_texture = pyglet.image.Texture.create(size, size, min_filter=gl.GL_LINEAR,
                                                          mag_filter=gl.GL_LINEAR)
        self.canvas_sprite = pyglet.sprite.Sprite(self.canvas_texture, CANVAS_X, CANVAS_Y,
                                                  batch=b, group=groups[1])

        # What the network sees: 28x28 texels, magnified without smoothing.
        top = CANVAS_Y + size
        side = 28 * PREVIEW_SCALE
        self.preview_texture = pyglet.image.Texture.create(28, 28, min_filter=gl.GL_NEAREST,
                                                           mag_filter=gl.GL_NEAREST)
        self.preview_sprite = pyglet.sprite.Sprite(self.preview_texture, PANEL_X, top - side,
                                                   batch=b, group=groups[1])
        self.preview_sprite.scale = PREVIEW_SCALE
        self._keep.append(label("what the network sees (28×28)", PANEL_X, top - side - 18, 10, DIM))

        mid = (PANEL_X + side + WIDTH - MARGIN) / 2
        self.digit_label = label("", mid, top - 70, 80, TEXT, anchor_x="center", anchor_y="center",
                                 weight="bold")
        self.confidence_label = label("", mid, top - side + 4, 13, TEXT, anchor_x="center")

        self.bars, self.bar_labels, self.digit_names = [], [], []
        for d in range(10):
            y = BAR_TOP - (d + 1) * BAR_ROW
            self.digit_names.append(label(str(d), PANEL_X + 6, y + 5, 13, DIM))
            self._keep.append(pyglet.shapes.Rectangle(BAR_X, y + 3, BAR_W, BAR_ROW - 6,
                                                      color=TRACK, batch=b, group=groups[0]))
            self.bars.append(pyglet.shapes.Rectangle(BAR_X, y + 3, 0, BAR_ROW - 6, color=BAR,
                                                     batch=b, group=groups[1]))
            self.bar_labels.append(label("", WIDTH - MARGIN, y + 6, 11, DIM, anchor_x="right"))

        self.buttons = [Button("Clear", MARGIN, 40, 88, 32, self.clear_drawing, b, groups),
                        Button("Undo", MARGIN + 96, 40, 88, 32, self.undo, b, groups)]
        self.status_label = label("", PANEL_X, 51, 11, TEXT)
        self.help_label = label(HELP, MARGIN, 12, 10, DIM)

    def _label(self, text, x, y, size, color, **kw):
        return pyglet.text.Label(text, x=x, y=y, font_name=FONT, font_size=size, color=color,
                                 batch=self.batch, group=self._groups[2], **kw)

    # ---- bringing the screen up to date ----

    def refresh(self):
        """Upload the ink that changed, and show the current answer. Cheap when nothing changed.
        Returns whether anything on the screen changed (since the last frame drawn)."""
        state = self.state
        box = state.take_dirty()
        if box is not None:
            self._upload_canvas(box)
            self._stale = True
        answer = state.prediction()
        if answer is not self._shown:
            self._show(answer)
            self._stale = True
        self._show_teaching()
        return self._stale

    def _upload_canvas(self, box):
        x0, y0, x1, y1 = box
        ink = self.state.raster[y0:y1, x0:x1, None]
        rgb = PAPER + (INK - PAPER) * ink                      # (h, w, 3)
        rgba = np.empty(ink.shape[:2] + (4,), dtype=np.uint8)
        rgba[..., :3] = rgb[::-1]                               # textures count rows bottom-up
        rgba[..., 3] = 255
        image = pyglet.image.ImageData(x1 - x0, y1 - y0, "RGBA", rgba.tobytes())
        self.canvas_texture.blit_into(image, x0, self.state.size - y1, 0)

    def _show(self, answer):
        self._shown = answer
        if answer is None:
            pixels = np.zeros((28, 28), dtype=np.uint8)
            probs = np.zeros(10, dtype=np.float32)
            self.digit_label.text = ""
            self.confidence_label.text = "draw a digit"
        else:
            pixels = (np.clip(answer.image, 0.0, 1.0) * 255).astype(np.uint8)
            probs = answer.probs
            if answer.confident:
                self.digit_label.text = str(answer.digit)
                self.confidence_label.text = f"{answer.confidence:.0%} sure"
            else:
                self.digit_label.text = "?"
                self.confidence_label.text = f"not sure ({answer.digit}? {answer.confidence:.0%})"
        rgba = np.repeat(pixels[::-1, :, None], 4, axis=2)
        rgba[..., 3] = 255
        self.preview_texture.blit_into(pyglet.image.ImageData(28, 28, "RGBA", rgba.tobytes()), 0, 0, 0)
        top = -1 if answer is None else answer.digit
        for d in range(10):
            self.bars[d].width = float(probs[d]) * BAR_W
            color = (TOP_BAR if answer.confident else UNSURE_BAR) if d == top else BAR
            if self.bars[d].color[:3] != color:
                self.bars[d].color = color
            text = f"{probs[d]:.0%}" if answer is not None else ""
            if self.bar_labels[d].text != text:        # a new text costs a layout: only if needed
                self.bar_labels[d].text = text
        caption = self.state.title()
        if caption != self.title:
            self.title = caption       # kept here too: a headless window has no caption
            self.set_caption(caption)

    def _show_teaching(self):
        """Once a teach request is done, say how it went (``teach`` said it started)."""
        done = self.state.last_taught
        if done is None or done is self._teach_seen or self.state.teaching:
            return
        self._teach_seen = done
        label, saved, error = done
        if error is not None:
            self.set_status(f"teaching failed: {error}")
        else:
            self.set_status(f"learned: that is a {label}" + (" (saved)" if saved else " (this session)"))

    def set_status(self, text):
        if text != self.status_text:
            self.status_text = text
            self.status_label.text = text
            self._stale = True

    # ---- drawing ----

    def on_draw(self):
        self.refresh()
        gl.glClearColor(*(c / 255 for c in BACKGROUND), 1.0)
        self.clear()
        self.batch.draw()
        self._stale = False

    def tick(self, dt):
        """Called at the display's frame rate: draw a frame when something on it has changed.
        An idle pad draws nothing, and so costs next to no CPU time."""
        if self.refresh():
            self.draw(dt)

    def on_expose(self):        # the window's pixels were lost (uncovered, mapped): draw again
        self._stale = True

    def on_resize(self, width, height):
        self._stale = True
        return super().on_resize(width, height)

    def framebuffer(self):
        """The window's pixels as (height, width, 4) uint8, top row first."""
        image = pyglet.image.get_buffer_manager().get_color_buffer().get_image_data()
        data = np.frombuffer(image.get_data("RGBA", image.width * 4), dtype=np.uint8)
        return data.reshape(image.height, image.width, 4)[::-1]

    def screenshot(self, path):
        """Draw a frame and save it as a PNG at ``path``; returns the pixels (as framebuffer)."""
        self.switch_to()
        self.on_draw()
        pixels = self.framebuffer()
        pyglet.image.get_buffer_manager().get_color_buffer().get_image_data().save(path)
        return pixels

    # ---- input ----

    def to_canvas(self, x, y):
        """Window coordinates (y up) to canvas pixels (y down)."""
        return x - CANVAS_X, CANVAS_Y + self.state.size - y

    def from_canvas(self, x, y):
        """Canvas pixels (y down) to window coordinates (y up)."""
        return CANVAS_X + x, CANVAS_Y + self.state.size - y

    def on_canvas(self, x, y):
        cx, cy = self.to_canvas(x, y)
        return 0 <= cx < self.state.size and 0 <= cy < self.state.size

    def on_mouse_press(self, x, y, button, modifiers):
        if button & mouse.RIGHT:
            self.clear_drawing()
        elif button & mouse.LEFT:
            for b in self.buttons:
                if b.hit(x, y):
                    b.action()
                    return
            if self.on_canvas(x, y):
                self.state.begin_stroke(*self.to_canvas(x, y))

    def on_mouse_drag(self, x, y, dx, dy, buttons, modifiers):
        if buttons & mouse.LEFT and self.state.drawing:
            self.state.add_point(*self.to_canvas(x, y))

    def on_mouse_release(self, x, y, button, modifiers):
        if button & mouse.LEFT:
            self.state.end_stroke()

    def on_key_press(self, symbol, modifiers):
        ctrl = modifiers & (key.MOD_CTRL | key.MOD_COMMAND)
        if symbol in (key.Q, key.W) and ctrl:
            self.on_close()
        elif symbol in (key.C, key.ESCAPE, key.DELETE, key.BACKSPACE):
            self.clear_drawing()
        elif symbol == key.U or (symbol == key.Z and ctrl):
            self.undo()
        elif symbol in (key.BRACKETLEFT, key.BRACKETRIGHT):
            step = 4 if symbol == key.BRACKETRIGHT else -4
            width = self.state.set_pen_width(self.state.pen_width + step)
            self.set_status(f"pen {width:.0f} px ({PEN_RANGE[0]:.0f}–{PEN_RANGE[1]:.0f})")
        elif not ctrl and (key._0 <= symbol <= key._9 or key.NUM_0 <= symbol <= key.NUM_9):
            digit = symbol - (key._0 if symbol <= key._9 else key.NUM_0)
            self.teach(digit)

    def clear_drawing(self):     # not ``clear``: pyglet's Window.clear clears the frame
        self.state.clear()
        self.set_status("")

    def undo(self):
        self.state.undo()

    def teach(self, digit):
        if self.state.teach(digit) is None:
            self.set_status("draw the digit first, then press its key")
        else:
            self.set_status(f"teaching: that is a {digit}…")

    def on_close(self):
        self.state.close(wait=True)    # let a running teach finish and save
        super().on_close()
