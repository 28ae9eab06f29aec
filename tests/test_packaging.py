"""The source distribution carries everything a build needs: the one header, every C file, the
cffi build script, every Python package and the licence. The metadata a wheel gets (its
.dist-info, made by the build backend's own hook) names the distribution, its licence and one
version. Builds the sdist and the metadata only (no compiler, a few seconds); the wheel itself is
built, repaired and installed without a compiler by .ci/wheel.

Deselect with ``-m "not packaging"``."""
import email
import importlib.metadata
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
DIST = "pynn_digits"          # the distribution pynn-digits, in the form file names take


def ensure_build():
    if importlib.util.find_spec("build") is None:       # the "test" extra brings it
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "build"], check=True)


def backend_installed():
    """Whether this environment has what pyproject.toml's build-system requires, so that a build
    runs here without an isolated environment (and without a download)."""
    from build import ProjectBuilder
    from packaging.requirements import Requirement
    for text in ProjectBuilder(ROOT).build_system_requires:
        requirement = Requirement(text)
        try:
            have = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            return False
        if not requirement.specifier.contains(have, prereleases=True):
            return False
    return True


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The members of a freshly built sdist, by path inside the package directory."""
    ensure_build()
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "build", "--sdist", "--outdir", str(out)]
    if backend_installed():
        cmd.append("--no-isolation")
    run = subprocess.run(cmd + [ROOT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"python -m build --sdist failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    (name,) = [f for f in os.listdir(out) if f.endswith(".tar.gz")]
    with tarfile.open(out / name) as tar:
        tar.extractall(out / "unpacked", filter="data")
        top = f"{DIST}-{pynn.__version__}/"
        members = {m.name[len(top):] for m in tar.getmembers() if m.name.startswith(top)}
    return name, members, out / "unpacked" / top.rstrip("/")


@pytest.fixture(scope="module")
def dist_info(tmp_path_factory):
    """The .dist-info directory a wheel of this tree gets, from the build backend's
    prepare_metadata_for_build_wheel hook (which compiles nothing)."""
    ensure_build()
    from build import ProjectBuilder
    from build.env import DefaultIsolatedEnv
    out = tmp_path_factory.mktemp("metadata")
    if backend_installed():
        return ProjectBuilder(ROOT).metadata_path(out)
    with DefaultIsolatedEnv() as env:
        builder = ProjectBuilder.from_isolated_env(env, ROOT)
        env.install(builder.build_system_requires)
        env.install(builder.get_requires_for_build("wheel"))
        return builder.metadata_path(out)


@pytest.fixture(scope="module")
def metadata(dist_info):
    with open(os.path.join(dist_info, "METADATA"), encoding="utf-8") as f:
        return email.message_from_file(f)


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def source_files(directory, suffixes):
    """The files under ``directory``, its subdirectories included, by path from the project."""
    return {os.path.relpath(os.path.join(d, f), ROOT)
            for d, _, files in os.walk(os.path.join(ROOT, directory)) for f in files
            if f.endswith(suffixes)}


def test_sdist_is_named_for_the_distribution_and_this_version(sdist):
    name, _, _ = sdist
    assert name == f"{DIST}-{pynn.__version__}.tar.gz"


def test_sdist_holds_the_header_and_every_c_file(sdist):
    _, members, _ = sdist
    assert {"csrc/pynn.h", "csrc/internal.h"} <= members
    missing = source_files("csrc", (".c", ".h")) - members
    assert not missing, f"the sdist lacks {sorted(missing)} (MANIFEST.in)"


def test_sdist_holds_the_build_files_the_licence_and_every_package(sdist):
    _, members, _ = sdist
    assert {"setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE",
            "pynn/_build.py"} <= members
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


# ---- the distribution's metadata ----

def pyproject():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def requirements(metadata):
    """Requires-Dist as {extra or None: {project name, lower case}}."""
    from packaging.requirements import Requirement
    extras = {None: set(), **{extra: set() for extra in metadata.get_all("Provides-Extra") or []}}
    for text in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(text)
        for extra in extras:
            if (requirement.marker is None if extra is None
                    else requirement.marker is not None and requirement.marker.evaluate({"extra": extra})):
                extras[extra].add(requirement.name.lower())
    return extras


def test_the_distribution_is_pynn_digits_and_installs_pynn_and_its_commands(metadata, dist_info):
    import configparser
    assert metadata["Name"] == "pynn-digits"
    with open(os.path.join(dist_info, "top_level.txt"), encoding="utf-8") as f:
        assert set(f.read().split()) == {"pynn", "pad"}
    entry_points = configparser.ConfigParser()
    entry_points.read(os.path.join(dist_info, "entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"pynn": "pynn.cli:main",
                                                     "pynn-pad": "pad.__main__:main"}


def test_the_version_is_written_once_in_pynn_init(metadata, capsys):
    from pynn import cli
    config = pyproject()
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pynn.__version__"}
    assert metadata["Version"] == pynn.__version__
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out == f"pynn {pynn.__version__}\n"


def test_the_licence_is_mit_for_the_pynn_authors_in_the_sdist_and_the_wheel(sdist, metadata,
                                                                          dist_info):
    text = read("LICENSE")
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 the pynn authors" in text
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert not [c for c in metadata.get_all("Classifier") if c.startswith("License ::")]
    with open(os.path.join(dist_info, "licenses", "LICENSE"), encoding="utf-8") as f:
        assert f.read() == text
    _, _, unpacked = sdist
    assert (unpacked / "LICENSE").read_text(encoding="utf-8") == text


def test_the_metadata_gives_an_index_page_its_summary_readme_and_classifiers(metadata):
    assert "handwritten digits" in metadata["Summary"]
    assert metadata["Author"] == "the pynn authors"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip() == read("README.md").strip()
    assert metadata["Requires-Python"] == ">=3.9"
    assert {"MNIST", "handwritten digits", "neural network"} <= set(metadata["Keywords"].split(","))
    classifiers = set(metadata.get_all("Classifier"))
    assert {"Programming Language :: Python :: 3", "Programming Language :: C",
            "Topic :: Scientific/Engineering :: Image Recognition"} <= classifiers


def test_the_sources_are_python_3_9_as_requires_python_says():
    import ast
    for top in ("pynn", "pad"):
        for directory, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    with open(path, encoding="utf-8") as f:
                        ast.parse(f.read(), path, feature_version=(3, 9))


def test_the_core_needs_numpy_cffi_tqdm_and_pillow_and_the_pad_extra_brings_pyglet(metadata):
    needs = requirements(metadata)
    assert needs[None] == {"numpy", "cffi", "tqdm", "pillow"}
    assert needs["pad"] == {"pyglet"}
    assert "pyglet" in needs["test"]          # the window tests drive the pad
    assert {"test", "plots", "bench", "pad"} <= set(needs)


def test_the_library_the_command_and_the_pad_state_import_without_pyglet():
    """Every module but pad.window (the pyglet window itself) imports with pyglet absent."""
    code = """if True:
        import pkgutil, sys
        sys.modules["pyglet"] = None                  # import pyglet now raises ImportError
        import pad, pynn
        names = [m.name for package in (pynn, pad)
                 for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
        # not pad.window (the pyglet window), the build script, nor python -m pynn (it runs)
        names = [n for n in names if n not in ("pad.window", "pynn._build", "pynn.__main__")]
        for name in names:
            __import__(name)
        from pynn import cli
        assert cli.build_parser().parse_args(["predict", "m.npz", "d.png"]).command == "predict"
        print(len(names))"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert int(run.stdout) >= 20


def test_the_pad_without_pyglet_says_which_extra_brings_it(monkeypatch):
    import importlib.util as util
    from pad import __main__ as pad_main
    find_spec = util.find_spec
    monkeypatch.setattr(util, "find_spec",
                        lambda name, *args: None if name == "pyglet" else find_spec(name, *args))
    with pytest.raises(SystemExit) as stop:
        pad_main.main([])
    assert stop.value.code == ("pad: the drawing pad needs pyglet, which pynn installs only with "
                               "the pad extra: pip install 'pynn-digits[pad]'")
