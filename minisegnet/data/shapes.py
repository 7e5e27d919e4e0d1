"""Synthetic shapes: squares, circles, triangles, rings and crosses on textured, noisy backgrounds.

Each image holds 1 to ``max_shapes`` shapes of random size, position and colour (and rotation,
with ``rotate=True``); later shapes hide earlier ones. A shape's colour is random and has nothing
to do with its class, so a network has to learn geometry (corners, holes, arms) to tell the
classes apart.

Drawing is vectorised: for each shape slot, every image's shape is a boolean test on a
coordinate grid, e.g. a circle is ``u**2 + v**2 <= r**2`` in coordinates centred on the shape.
"""

import numpy as np

from .dataset import ArrayDataset
from .render import contrasting_colours, finish, smooth_noise, textured_background

SHAPE_NAMES = ("square", "circle", "triangle", "ring", "cross")
CLASS_NAMES = ("background",) + SHAPE_NAMES


def _shape_masks(u, v, r):
    """Boolean masks (N, H, W) of the 5 shapes, in the order of SHAPE_NAMES.

    u, v (N, H, W): pixel coordinates in each shape's own rotated frame, centred on it;
    r (N, 1, 1): the shape's radius. Sizes are chosen so the five shapes cover similar areas.
    """
    d2 = u * u + v * v
    square = np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r
    circle = d2 <= r * r
    ring = circle & (d2 >= (0.55 * r) ** 2)
    # An equilateral triangle with circumradius 1.2 r is the set of points within 0.6 r (its
    # inradius) of the centre along each of the three edge normals.
    triangle = np.ones_like(circle)
    for a in np.pi / 2 + 2 * np.pi / 3 * np.arange(3):
        triangle &= u * np.cos(a) + v * np.sin(a) <= 0.6 * r
    arm, length = 0.3 * r, 0.95 * r
    cross = ((np.abs(u) <= arm) & (np.abs(v) <= length)) | ((np.abs(v) <= arm) & (np.abs(u) <= length))
    return square, circle, triangle, ring, cross


def shapes(n, size=64, seed=0, multilabel=False, max_shapes=3, rotate=False, max_hidden=1 / 3):
    """A synthetic data set of ``n`` images of overlapping shapes, as an ``ArrayDataset``.

    Returns ``ds`` with ``ds.images`` (n, 3, size, size) float32 in [0, 1] and ``ds.masks``:

    - multilabel=False: (n, size, size) int64, 6 classes: 0 background, 1 square, 2 circle,
      3 triangle, 4 ring, 5 cross; where shapes overlap, the label is the shape drawn on top.
    - multilabel=True: (n, 5, size, size) uint8, channel k is 1 wherever shape class k + 1 lies,
      hidden or not (overlaps are kept); ``ds.class_names`` are then the 5 shape names.

    The images are the same for both modes and depend only on (n, size, seed, max_shapes, rotate,
    max_hidden). Radii are 18%-32% of ``size`` (11 to 20 pixels at 64), with 1 to ``max_shapes``
    shapes each. A shape is left out of an image where it would hide more than ``max_hidden`` of
    the visible pixels of a shape drawn before it, so every shape keeps enough of its outline to
    be told apart (a sliver of a square and a sliver of a circle look alike); ``max_hidden=1``
    allows any overlap.
    Shapes stand upright by default (flip and rot90 augmentations still turn them by multiples of
    90 degrees); ``rotate=True`` turns each by a random angle, a harder task that needs several
    times more training steps. The defaults are tuned so a small U-Net learns them in minutes.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"shapes(n) needs a positive number of images, got n={n!r}")
    if int(size) != size or size < 16:
        raise ValueError(f"shapes(size) needs an integer size of at least 16 pixels, got size={size!r}")
    if int(max_shapes) != max_shapes or max_shapes < 1:
        raise ValueError(f"max_shapes must be a positive integer, got {max_shapes!r}")
    if not 0 <= max_hidden <= 1:
        raise ValueError(f"max_hidden is a fraction of a shape, from 0 to 1, got {max_hidden!r}")
    N, H, W = int(n), int(size), int(size)
    rng = np.random.default_rng(seed)
    images, base = textured_background(rng, N, H, W, amplitude=0.5)
    fill_texture = 0.04 * smooth_noise(rng, N, 3, H, W, cells=6)  # shapes are not flat either
    count = rng.integers(1, max_shapes + 1, size=N)  # shapes in each image
    yy, xx = (np.mgrid[0:H, 0:W] + 0.5).astype(np.float32)  # pixel centres; float32 halves the work
    masks = np.zeros((N, H, W), dtype=np.int64)
    owner = np.full((N, H, W), -1, dtype=np.int8)  # which slot's shape shows at each pixel
    multi = np.zeros((N, len(SHAPE_NAMES), H, W), dtype=np.uint8)
    colours = [base]
    for k in range(int(max_shapes)):
        # Every slot draws its random numbers for every image, so the stream never depends on counts.
        cls = rng.integers(1, len(SHAPE_NAMES) + 1, size=N)
        r = rng.uniform(0.18, 0.32, size=N) * size
        cy = 0.6 * r + rng.uniform(0, 1, size=N) * (H - 1.2 * r)  # at most 40% of a shape leaves the image
        cx = 0.6 * r + rng.uniform(0, 1, size=N) * (W - 1.2 * r)
        theta = rng.uniform(0, 2 * np.pi, size=N) * bool(rotate)
        colour = contrasting_colours(rng, colours)
        colours.append(colour)

        c, s, cx, cy, r = (a.astype(np.float32)[:, None, None] for a in (np.cos(theta), np.sin(theta), cx, cy, r))
        dx, dy = xx - cx, yy - cy
        u, v = c * dx + s * dy, c * dy - s * dx  # rotate the grid by -theta: the shape turns by +theta
        candidates = _shape_masks(u, v, r)
        inside = np.select([cls[:, None, None] == j + 1 for j in range(len(SHAPE_NAMES))], candidates, False)
        inside &= (k < count)[:, None, None]
        for j in range(k):  # leave the shape out where it would hide too much of shape j
            visible = owner == j
            hidden = (visible & inside).sum(axis=(1, 2))
            inside &= (hidden <= max_hidden * visible.sum(axis=(1, 2)))[:, None, None]
        owner[inside] = k

        masks = np.where(inside, cls[:, None, None], masks)
        multi[np.arange(N), cls - 1] |= inside
        images = np.where(inside[:, None], colour[:, :, None, None].astype(np.float32) + fill_texture, images)
    images = finish(images, rng, noise=0.03)
    if multilabel:
        return ArrayDataset(images, multi, SHAPE_NAMES, name="shapes-multilabel")
    return ArrayDataset(images, masks, CLASS_NAMES, name="shapes")
