"""Nuclei: one real fluorescence microscopy image (2018 Data Science Bowl) cut into patches.

The 512x512 image and its hand-drawn nucleus outlines come from the stardist package (see
DATA_LICENSES and scripts/build_datasets.py) and are shipped here as ``nuclei.npz``. The task is
binary: 0 background, 1 nucleus. The left part of the image gives training patches, the right
part validation patches, so the two splits never share a pixel.
"""

import numpy as np

from .dataset import ArrayDataset
from .shipped import load_shipped

CLASS_NAMES = ("background", "nucleus")


def load_nuclei():
    """The shipped image (512, 512) uint8 and its instance labels (512, 512) uint8 (0 = background)."""
    arrays = load_shipped("nuclei")
    return arrays["image"], arrays["instances"]


def normalize_percentile(image, low=1.0, high=99.8):
    """Stretch intensities so the ``low`` and ``high`` percentiles map to 0 and 1, then clip.

    The usual first step for fluorescence images, whose raw values use only a small part of
    their range (this one: most nuclei sit near 60 of 255).
    """
    lo, hi = np.percentile(image, [low, high])
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def _tile_starts(length, size, stride):
    # Patch starts along one axis; the last patch is pushed back so it ends exactly at the edge.
    if length < size:
        return []
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def nuclei(split="train", size=64, stride=None, val_fraction=0.25):
    """Patches of the nuclei image, as an ``ArrayDataset`` (binary: 0 background, 1 nucleus).

    ``ds.images`` (N, 3, size, size) float32 in [0, 1] (the grayscale image, percentile-normalised,
    copied to 3 channels); ``ds.masks`` (N, size, size) int64; ``ds.instances`` (N, size, size)
    int64 numbers the nuclei (for instance-aware extras such as U-Net border weights).

    The image's columns are split: the right ``val_fraction`` (128 of 512 columns by default) is
    "val", the rest "train". Patches never cross that line. ``stride`` defaults to size // 2 for
    train (overlapping patches, more examples) and ``size`` for val (each pixel counted once).
    With size=64: 165 train and 16 val patches.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction!r}")
    image, instances = load_nuclei()
    H, W = image.shape
    cut = int(round(W * (1 - val_fraction)))
    region = slice(0, cut) if split == "train" else slice(cut, W)
    image, instances = normalize_percentile(image)[:, region], instances[:, region]
    stride = (size // 2 if split == "train" else size) if stride is None else stride
    if int(size) != size or size < 8 or int(stride) != stride or stride < 1:
        raise ValueError(f"size (>= 8) and stride (>= 1) must be integers, got size={size!r}, stride={stride!r}")
    ys, xs = _tile_starts(H, size, stride), _tile_starts(image.shape[1], size, stride)
    if not ys or not xs:
        raise ValueError(f"size={size} is larger than the {split} region ({H}x{image.shape[1]} pixels)")
    patches = [(y, x) for y in ys for x in xs]
    images = np.stack([image[y : y + size, x : x + size] for y, x in patches])
    inst = np.stack([instances[y : y + size, x : x + size] for y, x in patches]).astype(np.int64)
    rgb = np.repeat(images[:, None], 3, axis=1)  # grayscale -> 3 identical channels
    ds = ArrayDataset(rgb, (inst > 0).astype(np.int64), CLASS_NAMES, name=f"nuclei-{split}")
    ds.instances = inst
    return ds
