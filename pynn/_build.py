"""cffi build script (out-of-line API mode): compiles csrc/ into the extension pynn._pynn.

The declarations cffi sees are read from csrc/pynn.h, between its "cdef begin" and "cdef end"
markers, so the C API is written once. setup.py names this file in ``cffi_modules``.

The build never uses -march=native: the fast kernels pick their SIMD path at run time, so a
wheel built here runs on any x86-64 (and the portable C path on anything else).
Set PYNN_SANITIZE=1 to build with AddressSanitizer and UndefinedBehaviorSanitizer.
"""
import os
import re

from cffi import FFI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
HEADER = os.path.join(CSRC, "pynn.h")


def read_cdef(path=HEADER):
    """The text between the cdef markers of the header, comments removed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"/\* cdef begin \*/(.*?)/\* cdef end \*/", text, re.S)
    if match is None:
        raise RuntimeError(f"{path}: no '/* cdef begin */ ... /* cdef end */' block")
    body = re.sub(r"/\*.*?\*/", "", match.group(1), flags=re.S)
    return re.sub(r"//[^\n]*", "", body)


def compile_flags():
    # -pthread: the kernels' thread pool (csrc/runtime.c) is the only threading; no OpenMP.
    # -falign-loops=64: every loop starts on a cache line, so a kernel's inner loop runs at
    # the same speed wherever an unrelated change moves it in the library
    flags = ["-O3", "-falign-loops=64", "-std=c11", "-fno-math-errno", "-Wall", "-Wextra",
             "-Wno-unused-parameter", "-pthread"]
    link = ["-pthread", "-lm"]
    if os.environ.get("PYNN_SANITIZE"):
        flags = [f for f in flags if f != "-O3"] + [
            "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined"]
        link += ["-fsanitize=address,undefined"]
    return flags, link


# every .c under csrc/, subfolders (ref/, fast/) included; they include "pynn.h" from csrc/
sources = sorted(os.path.relpath(os.path.join(d, name), ROOT) for d, _, names in os.walk(CSRC)
                 for name in names if name.endswith(".c"))
cflags, ldflags = compile_flags()

ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "pynn._pynn",
    '#include "pynn.h"',
    sources=sources,
    include_dirs=["csrc"],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
