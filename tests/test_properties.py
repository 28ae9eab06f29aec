"""Runs the property tests in tests/props, each module in a child process.

A bug in C can end a process with a segmentation fault; in the child that becomes a failed
test here that names the signal and shows the child's traceback (faulthandler), instead of
taking the whole pytest run down with it.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROPS = Path(__file__).parent / "props"
MODULES = sorted(p.name for p in PROPS.glob("props_*.py"))


def run_child(args, timeout=600, env=None):
    """Run ``python -X faulthandler args`` and describe how it ended (crash, failure, success)."""
    proc = subprocess.run([sys.executable, "-X", "faulthandler", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=PROPS.parent.parent)
    tail = (proc.stdout + proc.stderr)[-6000:]
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        pytest.fail(f"the child crashed with {name}:\n{tail}", pytrace=False)
    return proc.returncode, tail


@pytest.mark.parametrize("module", MODULES)
def test_properties_hold_in_a_child_process(module):
    rc, tail = run_child(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(PROPS / module)])
    assert rc == 0, f"property tests in {module} failed:\n{tail}"


def test_a_crash_in_the_child_is_reported_as_a_failure():
    # The harness must be able to fail: a child that dies of SIGSEGV fails with the signal's name.
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(pytest.fail.Exception, match="SIGSEGV"):
        run_child(["-c", code], env={**os.environ, "PYTHONFAULTHANDLER": "1"})
