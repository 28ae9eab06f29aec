"""docs/MATH.md names the C function and the Python line behind every equation; these tests
fail when a name, file or quoted line no longer exists where the document says it is."""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_PATH = os.path.join(ROOT, "docs", "MATH.md")


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


DOC = read("docs/MATH.md")
# "`pynn_name` in `csrc/dir/file.c`"
C_REFS = sorted(set(re.findall(r"`(pynn_\w+)` in `(csrc/[\w./]+)`", DOC)))
# "`Class.method` in `pynn/file.py`" optionally followed by ": `a quoted line`"
PY_REFS = sorted(set(re.findall(r"`([A-Za-z_][\w.]*)` in `(pynn/[\w/]+\.py)`(?:: `([^`]+)`)?", DOC)))
PATHS = sorted(set(re.findall(r"`((?:csrc|pynn|tests|docs)/[\w./]+)`", DOC)))
C_NAMES = sorted(set(re.findall(r"`(pynn_\w+)`", DOC)))


def c_definition(name, source):
    """Where ``name`` is defined (return type at the line start, parameters, then '{')."""
    return re.search(rf"^[A-Za-z_][\w \t*]*\b{name}\s*\([^;{{}}]*\)\s*\{{", source, re.M)


def squash(text):
    return re.sub(r"\s+", " ", text).strip()


def python_function(path, qualname):
    """The source of ``qualname`` (``func`` or ``Class.method``) in ``path``, or None."""
    source = read(path)
    scope = ast.parse(source).body
    node = None
    for part in qualname.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return None
        scope = node.body
    return ast.get_source_segment(source, node)


def test_the_document_names_code():
    assert len(C_REFS) >= 15 and len(PY_REFS) >= 10 and len(C_NAMES) >= 20


@pytest.mark.parametrize("path", PATHS)
def test_every_path_exists(path):
    assert os.path.exists(os.path.join(ROOT, path)), f"docs/MATH.md names {path}, which does not exist"


@pytest.mark.parametrize("name,path", C_REFS)
def test_c_function_is_defined_in_the_named_file(name, path):
    assert os.path.exists(os.path.join(ROOT, path)), f"docs/MATH.md: no file {path}"
    assert c_definition(name, read(path)), f"docs/MATH.md: {name} is not defined in {path}"


@pytest.mark.parametrize("name", C_NAMES)
def test_c_function_is_in_the_api_and_defined(name):
    header = read("csrc/pynn.h")
    cdef = header[header.index("/* cdef begin */"):header.index("/* cdef end */")]
    assert re.search(rf"\b{name}\s*\(", cdef), f"docs/MATH.md: {name} is not declared in csrc/pynn.h"
    sources = [os.path.relpath(os.path.join(d, f), ROOT)
               for d, _, files in os.walk(os.path.join(ROOT, "csrc")) for f in files if f.endswith(".c")]
    assert any(c_definition(name, read(f)) for f in sources), \
        f"docs/MATH.md: {name} is defined in no csrc/**/*.c"


@pytest.mark.parametrize("qualname,path,line", PY_REFS)
def test_python_line_is_in_the_named_function(qualname, path, line):
    body = python_function(path, qualname)
    assert body is not None, f"docs/MATH.md: {path} has no {qualname}"
    if line:
        assert squash(line) in squash(body), \
            f"docs/MATH.md quotes `{line}` from {path} {qualname}, which no longer has it"


def test_the_checks_catch_drift():
    """The checkers themselves: a wrong name, file or line is reported, a right one is not."""
    assert c_definition("pynn_gemm_ref", read("csrc/ref/gemm.c"))
    assert not c_definition("pynn_gemm_ref", read("csrc/ref/losses.c"))
    assert not c_definition("pynn_no_such_kernel", read("csrc/ref/gemm.c"))
    assert not c_definition("pynn_gemm_check", read("csrc/internal.h"))   # declared, not defined
    assert python_function("pynn/layers.py", "Linear.backward") is not None
    assert python_function("pynn/layers.py", "Linear.no_such_method") is None
    assert "ops.bias_backward(dout)" in squash(python_function("pynn/layers.py", "Linear.backward"))
    assert "ops.bias_backward(dout)" not in squash(python_function("pynn/layers.py", "Linear.forward"))


def test_every_paper_equation_is_cited():
    """Equations 1-52 of the paper each appear as "eq. N", in a list or range such as
    "eq. 36, 47" or "eq. 5–9", or as "(31–35)" in the backpropagation table."""
    cited = set()
    groups = re.findall(r"eq\.\s*(\d+(?:\s*[–-]\s*\d+)?(?:,\s*\d+(?:\s*[–-]\s*\d+)?)*)", DOC)
    groups += re.findall(r"\((\d+\s*[–-]\s*\d+)\)", DOC)
    for group in groups:
        for part in group.split(","):
            a, _, b = part.replace("–", "-").partition("-")
            cited.update(range(int(a), int(b or a) + 1))
    missing = sorted(set(range(1, 53)) - cited)
    assert not missing, f"docs/MATH.md cites no eq. {missing}"
