"""Colour palettes for masks: the Pascal VOC palette, mask -> colours and colours -> mask.

A palette is a (C, 3) uint8 array: row c is the RGB colour drawn for class c. Segmentation
data sets often store their labels as RGB PNGs painted with such a palette; ``mask_from_rgb``
turns those colours back into class indices.
"""

import numpy as np


def voc_palette(n=256):
    """The Pascal VOC colour map: (n, 3) uint8, row c is the colour of class c.

    The rule: write the class index in binary; its bits, read three at a time from the lowest,
    go to red, green and blue, filling each channel from its most significant bit downwards.
    So class 1 = (128, 0, 0), 2 = (0, 128, 0), 15 = (192, 128, 128), and 255 = (224, 224, 192)
    (the colour VOC uses for "ignore" borders). The 256 colours are all different.
    """
    if not 1 <= n <= 256:
        raise ValueError(f"voc_palette(n) needs 1 <= n <= 256, got {n}")
    c = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.int64)
    for j in range(8):  # 8 groups of 3 bits cover an 8-bit class index
        for channel in range(3):
            bit = (c >> (3 * j + channel)) & 1
            palette[:, channel] |= bit << (7 - j)
    return palette.astype(np.uint8)


def check_palette(palette):
    """``palette`` as a (C, 3) uint8 array, or a clear error."""
    p = np.asarray(palette)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ValueError(f"a palette must have shape (C, 3), got {p.shape}")
    if p.min() < 0 or p.max() > 255 or not np.all(p == np.round(p)):
        raise ValueError("palette colours must be integers in 0..255")
    return p.astype(np.uint8)


def colorize(mask, palette=None):
    """Paint class indices with their palette colours.

    mask (H, W) or (N, H, W) integer -> (H, W, 3) or (N, H, W, 3) uint8. ``palette`` (C, 3)
    defaults to the VOC palette; every value of ``mask`` must be a row of it (0 <= value < C).
    """
    palette = voc_palette() if palette is None else check_palette(palette)
    mask = np.asarray(mask)
    if not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(f"colorize needs an integer mask, got dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() >= len(palette)):
        bad = mask.min() if mask.min() < 0 else mask.max()
        raise ValueError(f"mask value {bad} has no colour: the palette has {len(palette)} rows (0..{len(palette) - 1})")
    return palette[mask]


def _rgb_keys(colours):
    # One integer per colour, r * 65536 + g * 256 + b, so colours compare and sort as numbers.
    colours = colours.astype(np.int64)
    return (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]


def mask_from_rgb(rgb, palette=None):
    """Turn an RGB mask back into class indices: the inverse of ``colorize``.

    rgb (H, W, 3) uint8 -> (H, W) int64, where pixel value c means rgb == palette[c].
    ``palette`` (C, 3) defaults to the VOC palette (so VOC's (224, 224, 192) borders become 255,
    the usual ignore label). A colour that is not in the palette raises a ValueError naming the
    colour and the (row, column) of its first pixel.
    """
    palette = voc_palette() if palette is None else check_palette(palette)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"mask_from_rgb needs an (H, W, 3) array, got shape {rgb.shape}")
    keys = _rgb_keys(palette)
    if len(np.unique(keys)) != len(keys):
        raise ValueError("the palette lists the same colour twice, so colours cannot be mapped back to classes")
    order = np.argsort(keys)
    sorted_keys = keys[order]
    pixels = _rgb_keys(rgb)
    # searchsorted finds where each pixel's key would sit among the palette keys; a match means a known colour.
    pos = np.clip(np.searchsorted(sorted_keys, pixels), 0, len(keys) - 1)
    known = sorted_keys[pos] == pixels
    if not known.all():
        row, col = np.argwhere(~known)[0]
        colour = tuple(int(v) for v in rgb[row, col])
        count = int((~known).sum())
        raise ValueError(
            f"unknown colour {colour} at pixel (row {row}, column {col}) ({count} pixels have colours "
            f"outside the {len(palette)}-colour palette)"
        )
    return order[pos].astype(np.int64)
