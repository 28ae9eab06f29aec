"""Images and IDX files handed to pynn are read with bounded memory and never block: a
decompression bomb, a header claiming 65535x65535, /dev/zero, a FIFO or a gzip stream that
inflates to gigabytes ends in one line naming the file."""
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest

import pynn
from pynn import cli, idx


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    pynn.Network([784, 16, 10], seed=0).save(path)
    return path


def predict(model, image, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "pynn", "predict", str(model), str(image)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def png_header(width, height):
    """The start of a PNG: signature and IHDR for an 8-bit grey image of that size."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [65535, 20000, 9500, 5000])
def test_a_png_claiming_too_many_pixels_is_one_line(tmp_path, model, side):
    # 65535 and 20000: Pillow's own bomb error; 9500: its warning; 5000: pynn's bound
    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(png_header(side, side))
    assert "pixels" in predict(model, path)


def test_a_pgm_claiming_65535_squared_is_one_line(tmp_path, model):
    path = tmp_path / "huge.pgm"
    path.write_bytes(b"P5 65535 65535 255\n" + bytes(100))
    assert "pixels" in predict(model, path)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "directory"])
def test_an_image_path_that_is_no_regular_file_is_refused_at_once(tmp_path, model, kind):
    path = {"dev_zero": "/dev/zero", "fifo": tmp_path / "pipe.png", "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    assert "not a regular file" in predict(model, path, timeout=30)


def test_an_image_file_larger_than_the_bound_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.pgm"
    path.write_bytes(b"P5 10 10 255\n" + bytes(100))
    monkeypatch.setattr(cli, "MAX_IMAGE_BYTES", 50)
    with pytest.raises(cli.UserError, match="more than 50 bytes"):
        cli.read_image(path)


def gzip_stream(*parts):
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join(c.compress(p) for p in parts) + c.flush()


def test_a_gzip_idx_whose_header_declares_gigabytes_is_refused_before_inflating(tmp_path):
    header = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") * 3       # 216 TB declared
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip_stream(header, *[bytes(1 << 24)] * 16))     # 256 MiB of zeros
    tracemalloc.start()
    try:
        with pytest.raises(idx.IdxError, match="declares") as e:
            idx.read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(e.value) and peak < 32 << 20


def test_a_gzip_idx_holding_far_more_than_its_header_declares_stops_early(tmp_path):
    header = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big")
    path = tmp_path / "long-idx1-ubyte.gz"
    path.write_bytes(gzip_stream(header, bytes(10), *[bytes(1 << 24)] * 16))
    tracemalloc.start()
    try:
        with pytest.raises(idx.IdxError, match="more than the 18 bytes its header declares"):
            idx.read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20


def test_a_gzip_stream_without_an_idx_header_stops_at_the_bound(tmp_path):
    path = tmp_path / "noise.gz"
    path.write_bytes(gzip_stream(*[bytes(1 << 20)] * 8))
    with pytest.raises(idx.IdxError, match="more than the 1000000 bytes"):
        idx.read_bytes(path, max_bytes=1000000)


def test_gzip_members_and_zero_padding_still_decode(tmp_path):
    a = np.arange(1000, dtype=np.uint8)
    data = idx.encode(a)
    path = tmp_path / "two-idx1-ubyte.gz"
    path.write_bytes(gzip_stream(data[:500]) + gzip_stream(data[500:]) + bytes(7))
    assert np.array_equal(idx.read(path), a)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_an_idx_path_that_is_no_regular_file_is_refused(tmp_path, kind):
    path = tmp_path / "f-idx1-ubyte"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    with pytest.raises(idx.IdxError, match="not a regular file"):
        idx.read(path)
