"""Digit scenes: handwritten digits placed on textured backgrounds, an 11-class per-pixel task.

The glyphs are the 1797 8x8 handwritten digits that scikit-learn bundles (UCI "Optical
Recognition of Handwritten Digits"), shipped here as ``digits.npz`` (see DATA_LICENSES and
scripts/build_datasets.py), so scikit-learn is not needed at run time.

Each scene divides the image into four quadrants and puts a digit in 2 to 4 of them, scaled
2-4x, slightly rotated and coloured at random. A pixel's label is 0 (background) or 1 + the digit.
"""

import numpy as np

from .dataset import ArrayDataset
from .render import contrasting_colours, finish, textured_background
from .shipped import load_shipped

CLASS_NAMES = ("background",) + tuple(str(d) for d in range(10))
VAL_FRACTION = 0.2  # the last 20% of the glyphs are kept for split="val"


def load_glyphs():
    """The shipped glyphs (1797, 8, 8) uint8 with values 0..16, and their digits (1797,) uint8."""
    arrays = load_shipped("digits")
    return arrays["glyphs"], arrays["labels"]


def split_indices(split, total):
    """Glyph indices for ``split``: "train" the first 80%, "val" the last 20%, "all" everything."""
    cut = int(round(total * (1 - VAL_FRACTION)))
    ranges = {"train": (0, cut), "val": (cut, total), "all": (0, total)}
    if split not in ranges:
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    return np.arange(*ranges[split])


def _bilinear(glyphs, y, x):
    """Sample glyphs (N, h, w) at fractional positions y, x (N, H, W) -> (N, H, W); 0 outside.

    Glyph pixel (i, j) has its centre at (i, j). A zero border is padded on so that positions
    just outside the glyph fade to 0 instead of repeating its edge.
    """
    N, h, w = glyphs.shape
    padded = np.pad(glyphs, ((0, 0), (1, 1), (1, 1))).ravel()
    y = np.clip(y + 1, 0, h + 1)
    x = np.clip(x + 1, 0, w + 1)
    y0 = np.minimum(np.floor(y), h)
    x0 = np.minimum(np.floor(x), w)
    wy, wx = y - y0, x - x0
    # One flat index per pixel into the padded (N, h + 2, w + 2) stack: a single gather per corner.
    i = (np.arange(N)[:, None, None] * (h + 2) + y0.astype(np.intp)) * (w + 2) + x0.astype(np.intp)
    top = padded[i] * (1 - wx) + padded[i + 1] * wx
    bottom = padded[i + w + 2] * (1 - wx) + padded[i + w + 3] * wx
    return top * (1 - wy) + bottom * wy


def digit_scenes(n, size=64, seed=0, split="train"):
    """A data set of ``n`` scenes of handwritten digits, as an ``ArrayDataset``.

    ``ds.images`` (n, 3, size, size) float32 in [0, 1]; ``ds.masks`` (n, size, size) int64 with
    11 classes: 0 background, 1 + d for digit d. ``split`` picks the glyphs: "train" (first 80%
    of the 1797), "val" (the other 20%, written by the same people but never seen in training
    scenes) or "all". Digits are 16%-50% of ``size`` tall (2-4x the 8x8 glyph at size 64).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"digit_scenes(n) needs a positive number of images, got n={n!r}")
    if int(size) != size or size < 32:
        raise ValueError(f"digit_scenes(size) needs an integer size of at least 32 pixels, got size={size!r}")
    glyphs, labels = load_glyphs()
    pool = split_indices(split, len(glyphs))
    N, H, W = int(n), int(size), int(size)
    half = size / 2
    rng = np.random.default_rng(seed)
    images, base = textured_background(rng, N, H, W)
    count = rng.integers(2, 5, size=N)
    quadrant = np.argsort(rng.random((N, 4)), axis=1)  # a random order of the 4 quadrants per image
    yy, xx = (np.mgrid[0:H, 0:W] + 0.5).astype(np.float32)
    masks = np.zeros((N, H, W), dtype=np.int64)
    colours = [base]
    for k in range(4):
        pick = rng.choice(pool, size=N)
        side = rng.uniform(2, 4, size=N) * 8 * size / 64  # the glyph's box, in pixels
        q = quadrant[:, k]
        top = (q // 2) * half + rng.uniform(0, 1, size=N) * (half - side)
        left = (q % 2) * half + rng.uniform(0, 1, size=N) * (half - side)
        theta = rng.uniform(-0.25, 0.25, size=N)  # about +-15 degrees
        colour = contrasting_colours(rng, colours)
        colours.append(colour)

        # Inverse mapping: for every pixel, where in the 8x8 glyph does it land?
        c, s, cy, cx, scale = (
            a.astype(np.float32)[:, None, None]
            for a in (np.cos(theta), np.sin(theta), top + side / 2, left + side / 2, 8 / side)
        )
        dy, dx = yy - cy, xx - cx
        gy = (c * dy - s * dx) * scale + 3.5  # 3.5 = the glyph's centre in its own pixel coordinates
        gx = (c * dx + s * dy) * scale + 3.5
        ink = _bilinear(glyphs[pick].astype(np.float32) / 16, gy, gx)  # (N, H, W) in [0, 1]
        ink *= (k < count)[:, None, None]
        # Soft edges in the image, a hard threshold at the same mid-point for the label.
        alpha = np.clip((ink - 0.2) / 0.4, 0, 1)[:, None]
        images = images * (1 - alpha) + colour[:, :, None, None].astype(np.float32) * alpha
        masks = np.where(ink >= 0.4, 1 + labels[pick].astype(np.int64)[:, None, None], masks)
    return ArrayDataset(finish(images, rng), masks, CLASS_NAMES, name=f"digits-{split}")
