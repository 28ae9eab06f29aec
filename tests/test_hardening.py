"""Hardening: wrong input gets a clear error, the C checks its sizes, model files are checked.

The property tests (random shapes, dtypes, layouts) live in tests/props and run in a child
process (tests/test_properties.py); the cases here are the specific ones worth naming.
"""
import numpy as np
import pytest

from pynn import ops


# ---- aliasing the network relies on ----

@pytest.mark.parametrize("fused", [ops.softmax_cross_entropy, ops.sigmoid_cross_entropy])
def test_fused_loss_is_the_same_when_probs_overwrite_the_logits(fused):
    # The network passes probs=logits to save a buffer; the loss must not read the
    # probabilities back as if they were logits.
    rng = np.random.default_rng(0)
    z = (3 * rng.normal(size=(6, 7))).astype(np.float32)
    t = np.eye(7, dtype=np.float32)[rng.integers(0, 7, size=6)]
    loss, probs = fused(z.copy(), t)
    z_alias = z.copy()
    loss_alias, probs_alias = fused(z_alias, t, probs=z_alias)
    assert loss_alias == loss
    assert np.array_equal(probs_alias, probs)


# ---- the caller's floating-point mode ----

def test_kernels_leave_the_callers_denormals_alone():
    # The kernels flush denormals for speed; the caller's own numpy arithmetic on the same
    # thread must still see them afterwards (a flushed 1e-40 would be a silent wrong answer).
    a = np.ones((300, 300), dtype=np.float32)          # big enough for the threaded path
    for call in (lambda: ops.matmul(a, a), lambda: ops.matmul(a[:2], a[:, :2].copy()),
                 lambda: ops.matmul(a, a, reference=True)):
        call()
        assert np.float32(1e-40) * np.float32(1.0) != 0.0
        assert np.float32(1e-39) / np.float32(2.0) != 0.0
