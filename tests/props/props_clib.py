"""The C functions called directly, below pynn.ops's checks: NULL pointers, negative sizes and
sizes whose products overflow int64 must come back as status codes, never as a touched byte.

Every function declared in csrc/pynn.h is found from the header itself, so functions added
later are covered too. Runs in a child process (tests/test_properties.py), and under ASan in
.ci/sanitize, where an access outside the small buffers handed in here stops the run.
"""
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pynn._build import read_cdef
from pynn._pynn import ffi, lib
from strategies import SETTINGS

BIG = 2 ** 62
INT64_MAX = 2 ** 63 - 1
BUFFER = 1 << 16     # elements in every buffer handed in: more than any size <= 3 needs
# the functions pynn.ops wraps, whose every pointer is required when the sizes are > 0
CORE = {"gemm", "gemm_ref", "bias_forward", "bias_backward", "sigmoid_forward", "sigmoid_backward",
        "relu_forward", "relu_backward", "tanh_forward", "tanh_backward", "softmax_forward",
        "softmax_backward", "activation_forward", "activation_backward",
        "quadratic_loss_forward", "quadratic_loss_backward", "softmax_cross_entropy_forward",
        "softmax_cross_entropy_backward", "sigmoid_cross_entropy_forward",
        "sigmoid_cross_entropy_backward", "sgd_update", "momentum_update", "adam_update",
        "scale_u8", "argmax_rows"}


def declarations():
    """[(name, [(ctype, param_name, is_pointer), ...])] for every int-returning pynn_ function."""
    found = []
    for m in re.finditer(r"\bint\s+pynn_(\w+)\s*\(([^)]*)\)\s*;", read_cdef()):
        params = []
        for p in m.group(2).split(","):
            p = p.strip()
            if p in ("", "void"):
                continue
            ptr = "*" in p
            name = p.replace("*", " ").split()[-1]
            ctype = " ".join(p.replace("*", " * ").split()[:-1]).replace("const ", "")
            params.append((ctype, name, ptr))
        found.append((m.group(1), params))
    return found


FUNCTIONS = [(n, p) for n, p in declarations() if n not in ("set_num_threads", "get_num_threads")]
NAMES = [n for n, _ in FUNCTIONS]
_buffers = {}


def buffer(ctype):
    """A zeroed buffer of BUFFER elements of what ``ctype`` points to (for a table of pointers,
    ``float **``, NULL pointers), kept alive for the whole run."""
    base = ctype.strip()[:-1].strip()
    if base not in _buffers:
        _buffers[base] = ffi.new(f"{base}[]", BUFFER)
    return _buffers[base]


def call(name, params, sizes, pointers="valid", ints=0, floats=0.5):
    """Call pynn_<name> with every int64 parameter from ``sizes`` (a value or dict by name)."""
    args = []
    for ctype, pname, ptr in params:
        if ptr:
            args.append(ffi.NULL if pointers == "null" or (isinstance(pointers, set) and pname in pointers)
                        else buffer(ctype))
        elif ctype == "int64_t":
            args.append(sizes.get(pname, 1) if isinstance(sizes, dict) else sizes)
        elif ctype == "uint64_t":        # a seed or counter (dropout's): every value is valid
            args.append(2 ** 64 - 1)
        elif ctype == "int":
            args.append(ints.get(pname, 0) if isinstance(ints, dict) else ints)
        else:
            args.append(floats.get(pname, 0.5) if isinstance(floats, dict) else floats)
    return getattr(lib, f"pynn_{name}")(*args)


def int64_params(params):
    return [pname for ctype, pname, ptr in params if ctype == "int64_t" and not ptr]


def test_every_function_is_found():
    assert {"gemm", "bias_forward", "adam_update", "argmax_rows"} <= set(NAMES)


@pytest.mark.parametrize("name,params", FUNCTIONS, ids=NAMES)
def test_null_pointers_with_empty_sizes_do_not_crash(name, params):
    call(name, params, 0, pointers="null")


@pytest.mark.parametrize("name,params", [f for f in FUNCTIONS if f[0] in CORE],
                         ids=[n for n in NAMES if n in CORE])
def test_null_pointers_with_data_are_refused(name, params):
    pointers = [pname for _, pname, ptr in params if ptr]
    for missing in pointers:          # each pointer NULL on its own, then all of them
        assert call(name, params, 1, pointers={missing}) == lib.PYNN_ERR_NULL, missing
    assert call(name, params, 1, pointers="null") == lib.PYNN_ERR_NULL


@pytest.mark.parametrize("name,params", FUNCTIONS, ids=NAMES)
def test_each_negative_size_is_refused(name, params):
    # the other sizes 1, or 0 (nothing to do is no excuse for accepting a negative size)
    for pname in int64_params(params):
        for bad, others in itertools.product((-1, -INT64_MAX - 1), (1, 0)):
            sizes = {p: others for p in int64_params(params)} | {pname: bad}
            rc = call(name, params, sizes)
            assert rc in (lib.PYNN_ERR_SIZE, lib.PYNN_ERR_ARG, lib.PYNN_ERR_OVERFLOW), (pname, bad, others, rc)


ROWS_COLS = [(n, p) for n, p in FUNCTIONS if {"B", "n"} <= set(int64_params(p))]


@pytest.mark.parametrize("name,params", ROWS_COLS, ids=[n for n, _ in ROWS_COLS])
def test_a_batch_whose_element_count_overflows_is_refused(name, params):
    # B * n > INT64_MAX: refused before any pointer arithmetic, with valid (small) buffers
    for B, n in ((BIG, BIG), (INT64_MAX, 2), (2, INT64_MAX), (2 ** 32, 2 ** 32)):
        assert call(name, params, {"B": B, "n": n}) == lib.PYNN_ERR_OVERFLOW, (B, n)


@pytest.mark.parametrize("gemm", ["gemm", "gemm_ref"])
def test_gemm_sizes_that_overflow_are_refused(gemm):
    params = dict(FUNCTIONS)[gemm]
    huge = {"M": 2 ** 32, "N": 2 ** 32, "K": 2 ** 32, "lda": 2 ** 32, "ldb": 2 ** 32, "ldc": 2 ** 32}
    assert call(gemm, params, huge) == lib.PYNN_ERR_OVERFLOW
    # each matrix fits in int64, but M*N*K does not (the flop count the kernels may compute)
    cube = {k: 2 ** 21 for k in huge}
    assert call(gemm, params, cube) == lib.PYNN_ERR_OVERFLOW
    for trans in ({"trans_a": 1}, {"trans_b": 1}, {"trans_a": 1, "trans_b": 1}):
        assert call(gemm, params, huge, ints=trans) == lib.PYNN_ERR_OVERFLOW, trans
    # a row stride shorter than the row: the rows would overlap
    for ld in ("lda", "ldb", "ldc"):
        sizes = {"M": 3, "N": 3, "K": 3, "lda": 3, "ldb": 3, "ldc": 3, ld: 2}
        assert call(gemm, params, sizes) == lib.PYNN_ERR_SIZE, ld


@pytest.mark.parametrize("gemm", ["gemm", "gemm_ref"])
def test_gemm_with_an_empty_side_still_needs_the_operand_that_holds_data(gemm):
    # C is (M,0): nothing to write, but A (M,K) has data and the fast kernel walks it
    params = dict(FUNCTIONS)[gemm]
    sizes = {"M": 2, "N": 0, "K": 3, "lda": 3, "ldb": 1, "ldc": 1}
    assert call(gemm, params, sizes, pointers={"A", "C"}) == lib.PYNN_ERR_NULL
    assert call(gemm, params, {**sizes, "M": 0, "N": 2}, pointers={"B", "C"}) == lib.PYNN_ERR_NULL


def test_empty_image_rows_are_not_read():
    # an (H,0) image has no first column to read
    assert lib.pynn_ink_moments(ffi.new("double[4]"), ffi.NULL, 2, 0) == lib.PYNN_OK


def test_set_num_threads_refuses_out_of_range():
    before = lib.pynn_get_num_threads()
    for n in (0, -1, 1025, -2 ** 31):
        assert lib.pynn_set_num_threads(n) == lib.PYNN_ERR_ARG
    assert lib.pynn_get_num_threads() == before


sizes_small = st.sampled_from([-1, 0, 1, 2, 3])


@SETTINGS
@given(st.sampled_from(FUNCTIONS), st.data())
def test_random_sizes_pointers_and_arguments(function, data):
    """Sizes in -1..3, some pointers NULL, odd ints and floats: a status code, never a crash;
    negative sizes always refused; a missing array refused when there is data to read."""
    name, params = function
    sizes = {p: data.draw(sizes_small, label=p) for p in int64_params(params)}
    null = {pname for _, pname, ptr in params if ptr and data.draw(st.booleans(), label=f"{pname} NULL")}
    ints = {pname: data.draw(st.sampled_from([0, 1, 2, 4, -1, 99]), label=pname)
            for ctype, pname, ptr in params if ctype == "int" and not ptr}
    floats = {pname: data.draw(st.sampled_from([0.5, 0.0, -1.0, float("nan"), float("inf")]), label=pname)
              for ctype, pname, ptr in params if ctype == "float" and not ptr}
    rc = call(name, params, sizes, pointers=null, ints=ints, floats=floats)
    assert rc in (lib.PYNN_OK, lib.PYNN_ERR_NULL, lib.PYNN_ERR_SIZE, lib.PYNN_ERR_ARG,
                  lib.PYNN_ERR_OVERFLOW), rc
    if any(v < 0 for v in sizes.values()):
        assert rc != lib.PYNN_OK, f"{name} accepted negative sizes {sizes}"
    elif name in CORE and null and all(v > 0 for v in sizes.values()):
        assert rc != lib.PYNN_OK, f"{name} accepted NULL {sorted(null)} with sizes {sizes}"
