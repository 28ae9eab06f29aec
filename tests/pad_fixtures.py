"""Fixtures for the pad's tests (imported by tests/test_pad_*.py).

``pad_net``: the network the pad starts with, the shipped model.
``data_home``: a fresh user data directory, whose shipped model is pad_net.
``display_env``: the environment for a child process that opens windows: the DISPLAY already
set, else a new Xvfb's, else pyglet's headless EGL mode. Where none can be had the test is
skipped with the reason, unless PYNN_REQUIRE_DISPLAY=1 (as in CI), where that is a failure.
"""
import os
import subprocess
import sys

import pytest

import pynn


@pytest.fixture(scope="session")
def pad_net():
    return pynn.load_default()


@pytest.fixture
def data_home(tmp_path, monkeypatch, pad_net):
    """A fresh user data directory; the shipped model is pad_net (read from a file each time)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    shipped = tmp_path / "shipped.npz"
    pad_net.save(shipped)
    monkeypatch.setattr(pynn, "load_default", lambda: pynn.load(shipped))
    return tmp_path


def no_display(reason):
    if os.environ.get("PYNN_REQUIRE_DISPLAY") == "1":
        pytest.fail(f"PYNN_REQUIRE_DISPLAY=1 but there is no display for the window tests: {reason}")
    pytest.skip(f"no display for the window tests: {reason}")


def _can_open_window(env):
    """Whether pyglet can open a window with ``env``; the reason if not."""
    probe = "import pyglet; w = pyglet.window.Window(64, 64); w.close()"
    try:
        r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                           text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "opening a window timed out"
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
    return None


@pytest.fixture(scope="session")
def display_env():
    from pad.display import NoDisplay, start_xvfb, stop_xvfb
    env = dict(os.environ)
    proc, reasons = None, []
    if not env.get("DISPLAY"):
        try:
            proc, env["DISPLAY"] = start_xvfb()
        except NoDisplay as e:
            reasons.append(str(e))
    try:
        if env.get("DISPLAY"):
            why = _can_open_window(env)
            if why is None:
                yield env
                return
            reasons.append(f"DISPLAY={env['DISPLAY']}: {why}")
        headless = dict(os.environ, PYGLET_HEADLESS="1")
        headless.pop("DISPLAY", None)
        why = _can_open_window(headless)
        if why is None:
            yield headless
            return
        reasons.append(f"headless EGL: {why}")
        no_display("; ".join(reasons))
    finally:
        if proc is not None:
            stop_xvfb(proc)
