"""Kernels loop over the work there is, not over a declared size: 2**40 rows of no columns hold
nothing, and a kernel given them returns at once instead of walking the rows for hours.

The calls run in a child process with a time limit, as a kernel stuck in C cannot be
interrupted from Python."""
import subprocess
import sys
import textwrap

CALLS = textwrap.dedent("""
    import numpy as np
    from pynn import ops
    tall = np.empty((2 ** 40, 0), np.float32)          # no bytes, 2**40 rows
    wide = np.empty((0, 2 ** 40), np.float32)
    t = np.empty((2 ** 40, 0), np.float32)
    results = {
        "softmax": ops.softmax(tall).shape,
        "softmax_backward": ops.activation_backward("softmax", tall, tall).shape,
        "softmax_cross_entropy": ops.softmax_cross_entropy(tall, t)[0],
        "softmax_cross_entropy_backward": ops.softmax_cross_entropy_backward(tall, t).shape,
        "sigmoid_cross_entropy": ops.sigmoid_cross_entropy(tall, t)[0],
        "quadratic_loss": ops.quadratic_loss(tall, t),
        "ink_moments": ops.ink_moments(tall),
        "ink_bbox": ops.ink_bbox(tall),
        "ink_moments_wide": ops.ink_moments(wide),
        "raster_strokes": ops.raster_strokes(tall, np.array([[0, 0], [1e6, 1e12]], np.float32),
                                             np.array([2], np.int64), scale=1.0).shape,
        "resample_area_from_nothing": ops.resample_area(tall, (3, 3), sy=2 ** 38).tolist(),
        "resample_area_to_nothing": ops.resample_area(np.ones((4, 4), np.float32), (2 ** 40, 0)).shape,
        "bias_backward": ops.bias_backward(tall).shape,
        "matmul": ops.matmul(tall, np.empty((0, 0), np.float32), reference=True).shape,
        "matmul_fast": ops.matmul(tall, np.empty((0, 0), np.float32)).shape,
    }
    for name, value in results.items():
        print(name, value)
""")


def test_kernels_given_rows_without_columns_return_at_once():
    proc = subprocess.run([sys.executable, "-c", CALLS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    assert out["softmax_cross_entropy"] == "0.0"
    assert out["sigmoid_cross_entropy"] == "0.0"
    assert out["ink_moments"] == "(0.0, 0.0, 0.0, 0.0)"
    assert out["ink_bbox"] == "None"
    assert out["resample_area_from_nothing"] == str([[0.0] * 3] * 3)
    assert out["softmax"] == str((2 ** 40, 0))
    assert len(out) == 15
