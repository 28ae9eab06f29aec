"""Shared pieces of the property tests: arrays that are right, and every way they can be wrong.

The modules in this directory are not collected by a plain ``pytest`` run (their names do not
start with test_): tests/test_properties.py runs each one in a child process, so that a crash
in C shows up as a failed test instead of taking pytest down. Run one directly with
``python -m pytest tests/props/props_ops.py``; PYNN_PROPS_EXAMPLES sets how many cases each
property tries (default 60), PYNN_PROPS_RANDOM=1 draws new cases instead of the fixed ones.
"""
import os
import re

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SETTINGS = settings(
    max_examples=int(os.environ.get("PYNN_PROPS_EXAMPLES", "60")),
    deadline=None,
    derandomize=os.environ.get("PYNN_PROPS_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0]
# dtypes that are not float32: each must be refused, never converted silently
WRONG_DTYPES = [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, object]
# the ways an array can be wrong apart from its values; "ok" comes up half the time
LAYOUTS = ["ok"] * 6 + ["dtype", "strided", "reversed", "fortran", "readonly", "shape", "list",
                        "none", "scalar"]
dims = st.integers(0, 5)


def float32s(special=True):
    finite = st.floats(-8.0, 8.0, width=32)
    return st.one_of(finite, st.sampled_from(SPECIALS)) if special else finite


@st.composite
def values(draw, shape, special=None):
    """A C-contiguous float32 array of ``shape``; NaN and +-Inf in about a fifth of the draws."""
    if special is None:
        special = draw(st.integers(0, 4)) == 0
    return draw(hnp.arrays(np.float32, shape, elements=float32s(special)))


@st.composite
def variant(draw, shape, special=None, layouts=LAYOUTS):
    """The float32 array of ``shape`` an operation wants, or one of the ways it can be wrong:
    another dtype, a non-contiguous or negatively strided view, Fortran order, read-only,
    another shape, a list, None or a scalar. Which one it is, is judged afterwards from the
    array itself (``is_f32``), because some of these are harmless for some shapes (a reversed
    view of one row is still C-contiguous)."""
    how = draw(st.sampled_from(layouts))
    a = draw(values(shape, special))
    if how == "dtype":
        dtype = np.dtype(draw(st.sampled_from(WRONG_DTYPES)))
        if dtype.kind in "iub":   # NaN and Inf have no integer value
            a = np.abs(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=1.0))
        return a.astype(dtype)
    if how == "strided":     # every other element along the last axis of a wider array
        wide = draw(values(shape[:-1] + (2 * shape[-1],), special)) if shape else a
        return wide[..., ::2] if shape else a
    if how == "reversed":
        return a[::-1] if a.ndim else a
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "readonly":
        a.flags.writeable = False
        return a
    if how == "shape":
        return draw(values(other_shape(draw, shape), special))
    if how == "list":
        return a.tolist()
    if how == "none":
        return None
    if how == "scalar":
        return np.float32(1.5)
    return a


def other_shape(draw, shape):
    """A shape that differs from ``shape``: one more or one fewer axis, or one size changed."""
    options = ["more"] + (["fewer", "resize"] if shape else [])
    how = draw(st.sampled_from(options))
    if how == "more":
        return shape + (draw(st.integers(1, 3)),)
    if how == "fewer":
        return shape[:-1]
    i = draw(st.integers(0, len(shape) - 1))
    size = draw(st.integers(0, 6).filter(lambda s: s != shape[i]))
    return shape[:i] + (size,) + shape[i + 1:]


def is_f32(a, ndim=None, writable=False):
    """True when ``a`` may cross into C as it is: float32, C-contiguous, writable if written."""
    return (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
            and (ndim is None or a.ndim == ndim) and (a.flags.writeable or not writable))


def names_one_of(message, names):
    """True when the error message begins with, or quotes as op(...), one of ``names``."""
    first = re.split(r"[\s:]", message.strip(), maxsplit=1)[0]
    return first in names or any(f"op({n})" in message for n in names)


def assert_refused(excinfo, bad, call):
    """The call raised TypeError or ValueError naming one of the arguments in ``bad``."""
    err = excinfo.value
    assert isinstance(err, (TypeError, ValueError)), f"{call}: {type(err).__name__}: {err}"
    assert names_one_of(str(err), bad), f"{call}: the message {str(err)!r} names none of {sorted(bad)}"


def close(actual, expected, rtol=1e-4, atol=1e-4):
    """Equal within float32 rounding, with NaN where the reference has NaN and Inf matching."""
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol,
                               atol=atol, equal_nan=True)
