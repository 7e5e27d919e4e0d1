"""The data set protocol every minisegnet loader follows, and ``ArrayDataset``, which holds arrays.

A data set is any object with

- ``len(ds)``: the number of examples;
- ``ds[i]`` -> ``(image, mask)``: image (3, H, W) float32 in [0, 1], mask (H, W) int64 class
  indices (or, for a multi-label set, (C, H, W) uint8 with one 0/1 channel per class);
- ``ds.num_classes`` and ``ds.class_names`` (a tuple of ``num_classes`` strings);
- optionally ``ds.palette``: (num_classes, 3) uint8 colours for drawing masks.

``DataLoader`` needs nothing more, so a few lines of your own code make a new data set.
"""

import numpy as np

from .palette import check_palette, voc_palette


class ArrayDataset:
    """A data set held in memory as two arrays.

    images (N, 3, H, W) float32 in [0, 1]; masks (N, H, W) int64 class indices, or (N, C, H, W)
    uint8 for multi-label data (one channel per class, pixels may be on in several channels).
    ``class_names`` gives ``num_classes``; ``palette`` (num_classes, 3) uint8 defaults to the first
    rows of the VOC palette.

    Use the arrays directly (``ds.images``, ``ds.masks``) or index it: ``image, mask = ds[i]``.
    """

    def __init__(self, images, masks, class_names, palette=None, name="arrays"):
        images, masks = np.asarray(images), np.asarray(masks)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {images.shape}")
        if masks.ndim not in (3, 4) or masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
            raise ValueError(
                f"masks must have shape (N, H, W) or (N, C, H, W) matching images {images.shape}, got {masks.shape}"
            )
        self.class_names = tuple(str(c) for c in class_names)
        if masks.ndim == 4 and masks.shape[1] != len(self.class_names):
            n = len(self.class_names)
            raise ValueError(f"multi-label masks have {masks.shape[1]} channels but there are {n} class names")
        self.images = images.astype(np.float32, copy=False)
        self.masks = masks.astype(np.int64 if masks.ndim == 3 else np.uint8, copy=False)
        n = self.num_classes
        # VOC colours by default (repeating after 256 classes: only drawing uses them).
        self.palette = voc_palette()[np.arange(n) % 256] if palette is None else check_palette(palette)
        self.name = name

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def multilabel(self):
        """True when masks are (N, C, H, W) channels rather than (N, H, W) indices."""
        return self.masks.ndim == 4

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        """(image (3, H, W) float32, mask (H, W) int64 or (C, H, W) uint8) of example ``i``."""
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"index a data set with an int, got {type(i).__name__}; use ds.images[...] for slices")
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is out of range for a data set of {len(self)} examples")
        return self.images[i], self.masks[i]

    def __repr__(self):
        N, _, H, W = self.images.shape
        kind = "multi-label" if self.multilabel else "multi-class"
        return f"ArrayDataset({self.name!r}, {N} images of {H}x{W}, {self.num_classes} classes, {kind})"
