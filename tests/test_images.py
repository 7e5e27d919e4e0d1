"""minisegnet/data/images.py: the one reader of picture files: upright by EXIF, huge ones refused from the header."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from minisegnet.data.images import load_image, load_mask, mask_labels, max_pixels

ROOT = Path(__file__).resolve().parents[1]


def header_only_png(path, W, H):
    """A PNG whose header says W x H but which holds almost no pixel data: a huge picture in a few bytes."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)  # 8-bit RGB
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def rotated(path, array, orientation=6):
    """Save ``array`` with an EXIF orientation: 6 = "turn 90 degrees clockwise to show it"."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def test_a_picture_marked_rotate_90_reads_upright(tmp_path):
    stored = np.zeros((40, 64, 3), np.uint8)
    stored[:16, :16] = (255, 0, 0)  # red block top left as stored; top right once turned clockwise
    for suffix in (".jpg", ".png"):
        image = load_image(rotated(tmp_path / f"photo{suffix}", stored))
        assert image.shape == (3, 64, 40)
        assert image[0, :16, -16:].mean() > 0.9 and image[0, :16, :16].mean() < 0.1
    mask = np.zeros((40, 64), np.uint8)
    mask[:16, :16] = 1
    labels = load_mask(rotated(tmp_path / "mask.png", mask))
    assert labels.shape == (64, 40) and labels[:16, -16:].all() and labels.sum() == 16 * 16
    small = load_image(tmp_path / "photo.jpg", size=(16, 10))  # resized after turning: (H, W) as asked
    assert small.shape == (3, 16, 10) and small[0, :4, -4:].mean() > 0.9


def test_a_huge_picture_is_refused_from_its_header_naming_file_size_and_limit(tmp_path, monkeypatch):
    def no_decoding(self):
        raise AssertionError("a huge picture was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    limit = f"{max_pixels():,}"
    huge = header_only_png(tmp_path / "huge.png", 20000, 20000)  # beyond twice the limit: Pillow refuses to open
    with pytest.raises(ValueError, match=rf"{huge} has 400,000,000 pixels, more than the {limit} minisegnet reads"):
        load_image(huge)
    large = header_only_png(tmp_path / "large.png", 10000, 10000)  # between once and twice: Pillow only warns
    with pytest.raises(ValueError, match=rf"{large} has 10000x10000 = 100,000,000 pixels, more than the {limit}"):
        load_mask(large)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the limit is Pillow's, so a user can move it
    with pytest.raises(ValueError, match=r"has 11x10 = 110 pixels, more than the 100 minisegnet reads"):
        load_image(header_only_png(tmp_path / "small.png", 11, 10))


def test_no_warning_escapes_for_a_large_picture(tmp_path, recwarn):
    with pytest.raises(ValueError, match="more than"):
        load_image(header_only_png(tmp_path / "large.png", 10000, 10000))
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


MEASURE = """
import resource, sys
from minisegnet.data.images import load_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_image(sys.argv[1], size=(32, 32))
assert image.shape == (3, 32, 32)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.slow
def test_reading_a_large_picture_small_needs_no_float_copy_of_it(tmp_path):
    # 3000x3000: 27 MB of 8-bit pixels, 108 MB as float32. Measured growth of the peak: PNG 3.9 bytes a pixel
    # (the 8-bit decode), JPEG 0.1 (decoded at 1/8 scale); a float copy of the whole picture would be 12.
    y, x = np.mgrid[0:3000, 0:3000]
    picture = Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8))
    picture.save(tmp_path / "big.png", compress_level=1)
    picture.save(tmp_path / "big.jpg", quality=80)
    for name, most in (("big.png", 6), ("big.jpg", 1)):
        run = subprocess.run(
            [sys.executable, "-c", MEASURE, str(tmp_path / name)], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert run.returncode == 0, run.stderr
        assert int(run.stdout) < most * 3000 * 3000, (name, int(run.stdout))


def test_every_problem_names_the_file(tmp_path):
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(ValueError, match=r"cannot read .*text\.png"):
        load_image(tmp_path / "text.png")
    Image.fromarray(np.zeros((4, 4), np.float32), mode="F").save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float\.tif holds floating-point pixels"):
        load_image(tmp_path / "float.tif")


def test_the_labels_a_mask_holds_are_counted_without_reading_it_into_an_array(tmp_path):
    mask = np.zeros((30, 40), np.uint8)
    mask[3, 4], mask[10:12, 10:12] = 7, 255
    Image.fromarray(mask).save(tmp_path / "l.png")
    Image.fromarray(mask.astype(bool)).save(tmp_path / "bw.png")  # a 1-bit mask: labels 0 and 1
    Image.fromarray(mask.astype(np.uint16) * 200).save(tmp_path / "i16.png")
    assert mask_labels(tmp_path / "l.png").tolist() == [0, 7, 255]
    assert mask_labels(tmp_path / "bw.png").tolist() == [0, 1] == np.unique(load_mask(tmp_path / "bw.png")).tolist()
    assert mask_labels(tmp_path / "i16.png").tolist() == [0, 1400, 51000]
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[5:7, 6:9] = (128, 0, 0)  # VOC's class 1
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert mask_labels(tmp_path / "rgb.png").tolist() == [0, 1]
    rgb[20, 30] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png: unknown colour \(1, 2, 3\) at pixel \(row 20, column 30\)"):
        mask_labels(tmp_path / "rgb.png")
