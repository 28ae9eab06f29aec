"""A display to open windows on when there is none: a virtual X server (Xvfb), else headless.

Used by the screenshot and benchmark modes and by the window tests. pyglet chooses its platform
when it is first imported, so this has to run before ``import pyglet``.
"""
import contextlib
import os
import select
import shutil
import subprocess
import time


class NoDisplay(RuntimeError):
    """No display is set and none could be started; the message says why."""


def start_xvfb(timeout=20.0):
    """Start Xvfb on a free display number; returns (process, ":N").

    Xvfb picks the number itself and writes it to the pipe given by -displayfd once it accepts
    connections, so there is no guessing and no polling of a socket.
    """
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise NoDisplay("no DISPLAY is set and Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24",
                                 "-nolisten", "tcp"], pass_fds=(write_fd,),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        os.close(write_fd)
    number, deadline = b"", time.monotonic() + timeout
    try:
        while not number.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                proc.kill()
                raise NoDisplay(f"Xvfb did not start within {timeout:.0f} s")
            chunk = os.read(read_fd, 16)
            if not chunk:    # Xvfb closed the pipe: it exited
                err = proc.communicate()[1].decode(errors="replace").strip().splitlines()
                raise NoDisplay("Xvfb failed: " + (err[-1] if err else f"exit code {proc.returncode}"))
            number += chunk
    finally:
        os.close(read_fd)
    proc.stderr.close()
    return proc, ":" + number.decode().strip()


def stop_xvfb(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def virtual_display():
    """Somewhere to open windows for the duration: the DISPLAY already set, else a new Xvfb's,
    else pyglet's headless mode (EGL, no X server; PYGLET_HEADLESS=1, as when already set).

    Yields the DISPLAY value, or "headless".
    """
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if os.environ.get("PYGLET_HEADLESS"):
        yield "headless"
        return
    try:
        proc, display = start_xvfb()
    except NoDisplay:
        os.environ["PYGLET_HEADLESS"] = "1"
        try:
            yield "headless"
        finally:
            os.environ.pop("PYGLET_HEADLESS", None)
        return
    os.environ["DISPLAY"] = display
    try:
        yield display
    finally:
        os.environ.pop("DISPLAY", None)
        stop_xvfb(proc)
