"""Drawing helpers shared by the synthetic data sets: smooth textures and colours that stand out.

Everything works on a whole batch at once, (N, ...) arrays, with no loop over pixels.
"""

import numpy as np


def _interp_matrix(out_size, cells):
    # Row i holds the linear-interpolation weights that read output pixel i from a grid of
    # cells + 1 control points spread evenly across the image (pixel centres at (i + 0.5) / out_size).
    t = (np.arange(out_size) + 0.5) / out_size * cells
    i0 = np.minimum(np.floor(t).astype(np.int64), cells - 1)
    w = t - i0
    M = np.zeros((out_size, cells + 1))
    M[np.arange(out_size), i0] = 1 - w
    M[np.arange(out_size), i0 + 1] = w
    return M


def smooth_noise(rng, N, C, H, W, cells=4):
    """Smooth random fields (N, C, H, W) float32 with values in [-1, 1].

    Random values on a coarse (cells + 1) x (cells + 1) grid, bilinearly interpolated up to
    H x W: ``Mh @ grid @ Mw.T``, two small matrix products. More cells = finer texture.
    """
    grid = rng.uniform(-1.0, 1.0, size=(N, C, cells + 1, cells + 1)).astype(np.float32)
    Mh, Mw = _interp_matrix(H, cells).astype(np.float32), _interp_matrix(W, cells).astype(np.float32)
    return Mh @ grid @ Mw.T


def textured_background(rng, N, H, W, amplitude=1.0):
    """Backgrounds (N, 3, H, W) float32 in roughly [0, 1] and their base colours (N, 3).

    A random base colour plus two octaves of smooth colour noise, so a network cannot find the
    objects by looking for "the flat part of the image". ``amplitude`` scales the texture.
    """
    base = rng.uniform(0.15, 0.85, size=(N, 3))
    texture = 0.12 * smooth_noise(rng, N, 3, H, W, cells=3) + 0.06 * smooth_noise(rng, N, 3, H, W, cells=12)
    texture *= amplitude
    return base[:, :, None, None].astype(np.float32) + texture, base


def contrasting_colours(rng, avoid, min_distance=0.4, candidates=8):
    """One random RGB colour per image, (N, 3), kept away from the colours in ``avoid``.

    avoid: a list of (N, 3) arrays (the background base colour, earlier objects' colours). Each
    image draws ``candidates`` uniform colours and keeps the first whose Euclidean distance to
    every avoided colour is at least ``min_distance``, else the farthest one. The colour says
    nothing about the class; it only keeps objects visible.
    """
    N = avoid[0].shape[0]
    cand = rng.uniform(0.0, 1.0, size=(N, candidates, 3))
    dist = np.min([np.linalg.norm(cand - a[:, None, :], axis=2) for a in avoid], axis=0)  # (N, candidates)
    ok = dist >= min_distance
    pick = np.where(ok.any(axis=1), ok.argmax(axis=1), dist.argmax(axis=1))
    return cand[np.arange(N), pick]


def finish(images, rng, noise=0.04):
    """Add pixel noise (standard deviation ``noise``), clip to [0, 1] and return float32."""
    images = images + rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0, dtype=np.float32)
