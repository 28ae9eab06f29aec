"""python -m pad (or pynn-pad): draw a digit, watch the network read it while you draw.

    python -m pad                        the pad, with your taught model if you have one
    python -m pad --model net.npz        another model (what it is taught is not saved)
    python -m pad --reset                forget what you taught, back to the shipped model
    python -m pad --demo 7               draw a scripted 7 to show how it works
    python -m pad --screenshot docs/pad.png --demo 7
                                         draw it, save a picture of the window, quit
                                         (on Xvfb or headless EGL if there is no display)
"""
import argparse
import importlib.util
import os
import sys

import pynn

from . import demo
from .display import virtual_display
from .state import (PadState, forget_personal_model, load_model, open_model,
                    personal_model_path)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m pad", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="keys: C/Esc/right click clear, U/Ctrl+Z undo, [ ] pen "
                                       "width, 0-9 teach the digit you drew")
    p.add_argument("--model", metavar="PATH", help="the model to use (default: your taught model "
                   f"at {personal_model_path()} if there is one, else the shipped model)")
    p.add_argument("--reset", action="store_true", help="delete your taught model and start "
                   "from the shipped one")
    p.add_argument("--demo", type=int, choices=range(10), metavar="DIGIT",
                   help="draw this digit from a script")
    p.add_argument("--screenshot", metavar="PNG", help="draw a frame, save it here, and quit "
                   "(uses the shipped model unless --model is given; starts a virtual display "
                   "if there is none)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # pyglet is an extra: the library and the pynn command run without it. Looked up, not
    # imported: pyglet picks its platform on import, which a virtual display must precede.
    if importlib.util.find_spec("pyglet") is None:
        sys.exit("pad: the drawing pad needs pyglet, which pynn installs only with the pad extra: "
                 "pip install 'pynn-digits[pad]'")
    # One thread for the kernels in this process: a single image through the network is far
    # too small to gain anything from threads, and a worker woken for it would spin for a
    # moment after each job, CPU time the window needs to keep the display's frame rate.
    pynn.set_num_threads(1)
    try:
        if args.screenshot:   # a picture for the docs: the shipped model, never the user's
            if args.reset:
                forget_personal_model()
            net = load_model(args.model) if args.model else pynn.load_default()
            personal, taught = None, None
            message = f"model {args.model}" if args.model else "the shipped model"
        else:
            net, personal, taught, message = open_model(args.model, args.reset)
    except (OSError, ValueError) as e:     # pynn.ModelFileError is a ValueError
        sys.exit(f"pad: {e}")
    state = PadState(net, personal_path=personal, taught=taught)

    if args.screenshot:
        try:
            with virtual_display():
                save_screenshot(state, args.screenshot, args.demo, status=message)
        finally:
            state.close()
        print(f"pad: saved {args.screenshot}")
        return 0

    print(f"pad: {message}" + (f"; what you teach is saved in {personal}" if personal else ""))
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        state.close()
        sys.exit("pad: no display (DISPLAY is not set)")
    from .window import PadWindow, run
    window = PadWindow(state, status=message)
    if args.demo is not None:
        demo.animate(window, args.demo)
    run(window)
    return 0


def save_screenshot(state, path, digit=None, status=""):
    from .window import PadWindow   # imports pyglet: only once a display is there
    window = PadWindow(state, status=status)
    try:
        if digit is not None:
            demo.draw_on_window(window, digit)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        window.screenshot(path)
    finally:
        window.close()


if __name__ == "__main__":
    sys.exit(main())
