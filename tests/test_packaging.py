"""The source distribution carries everything a build needs: the one header, every C file, the
cffi build script, and every Python package. Builds the sdist only (no compiler, a few seconds);
the wheel is checked by hand (see the packaging notes in the commit history).

Deselect with ``-m "not packaging"``."""
import importlib.util
import os
import runpy
import subprocess
import sys
import tarfile

import pytest

import pynn

pytestmark = pytest.mark.packaging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_build():
    if importlib.util.find_spec("build") is None:       # the "test" extra brings it
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "build"], check=True)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The members of a freshly built sdist, by path inside the package directory."""
    ensure_build()
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "build", "--sdist", "--outdir", str(out)]
    # with the build requirements already here, build without an isolated environment: no download
    if all(importlib.util.find_spec(m) for m in ("setuptools", "cffi", "wheel")):
        cmd.append("--no-isolation")
    run = subprocess.run(cmd + [ROOT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"python -m build --sdist failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    (name,) = [f for f in os.listdir(out) if f.endswith(".tar.gz")]
    with tarfile.open(out / name) as tar:
        tar.extractall(out / "unpacked", filter="data")
        top = f"pynn-{pynn.__version__}/"
        members = {m.name[len(top):] for m in tar.getmembers() if m.name.startswith(top)}
    return name, members, out / "unpacked" / top.rstrip("/")


def source_files(directory, suffixes):
    """The files under ``directory``, its subdirectories included, by path from the project."""
    return {os.path.relpath(os.path.join(d, f), ROOT)
            for d, _, files in os.walk(os.path.join(ROOT, directory)) for f in files
            if f.endswith(suffixes)}


def test_sdist_is_named_for_this_version(sdist):
    name, _, _ = sdist
    assert name == f"pynn-{pynn.__version__}.tar.gz"


def test_sdist_holds_the_header_and_every_c_file(sdist):
    _, members, _ = sdist
    assert {"csrc/pynn.h", "csrc/internal.h"} <= members
    missing = source_files("csrc", (".c", ".h")) - members
    assert not missing, f"the sdist lacks {sorted(missing)} (MANIFEST.in)"


def test_sdist_holds_the_build_files_and_every_package(sdist):
    _, members, _ = sdist
    assert {"setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "pynn/_build.py"} <= members
    packages = {os.path.relpath(d, ROOT) for top in ("pynn", "pad")
                for d, _, files in os.walk(os.path.join(ROOT, top)) if "__init__.py" in files}
    assert "pynn" in packages
    for package in packages:
        missing = source_files(package, ".py") - members
        assert not missing, f"the sdist lacks {sorted(missing)}"


def test_sdist_holds_no_build_products(sdist):
    _, members, _ = sdist
    built = sorted(m for m in members if m.endswith((".so", ".o", ".pyd", ".pyc"))
                   or m == "pynn/_pynn.c")
    assert not built, f"the sdist carries build products: {built}"


def test_sdist_build_script_reads_its_own_header(sdist):
    """The cffi build script, run from the unpacked sdist, parses the header it carries and
    compiles exactly the C files it carries (running it only declares; nothing compiles)."""
    _, members, unpacked = sdist
    here = os.getcwd()
    os.chdir(unpacked)                  # _build.py names its sources relative to the project
    try:
        build = runpy.run_path(str(unpacked / "pynn" / "_build.py"))
    finally:
        os.chdir(here)
    cdef = build["read_cdef"]()
    assert "pynn_gemm(" in cdef and "pynn_softmax_cross_entropy_backward(" in cdef
    assert set(build["sources"]) == {m for m in members if m.startswith("csrc/") and m.endswith(".c")}
