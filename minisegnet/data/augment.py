"""Augmentations that move image and mask together.

An augmentation is any callable ``(image, mask, rng) -> (image, mask)``: image (3, H, W), mask
(H, W) or (C, H, W) for multi-label data, ``rng`` a ``numpy.random.Generator``. Every geometric
change is applied to the last two axes of both arrays with the same random numbers, so each
label stays on its pixel. ``DataLoader(..., augment=Compose([flip, rot90, random_crop(48)]))``.
"""

import numpy as np


def _check_pair(image, mask):
    if image.shape[-2:] != mask.shape[-2:]:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must share their last two (H, W) axes")


def flip(image, mask, rng):
    """Mirror left-right with probability 1/2, then top-bottom with probability 1/2."""
    _check_pair(image, mask)
    if rng.random() < 0.5:
        image, mask = image[..., ::-1], mask[..., ::-1]
    if rng.random() < 0.5:
        image, mask = image[..., ::-1, :], mask[..., ::-1, :]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def rot90(image, mask, rng):
    """Rotate by a random multiple of 90 degrees (0, 90, 180 or 270).

    A non-square image is only turned by 0 or 180 degrees, so every example in a batch keeps
    its (H, W) and the batch can still be stacked.
    """
    _check_pair(image, mask)
    H, W = image.shape[-2:]
    k = int(rng.integers(4)) if H == W else 2 * int(rng.integers(2))
    image, mask = np.rot90(image, k, axes=(-2, -1)), np.rot90(mask, k, axes=(-2, -1))
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class random_crop:  # lowercase like flip and rot90: it is used the same way
    """``random_crop(size)``: an augmentation cutting a random (size x size) or (h, w) window.

    Raises a ValueError naming both sizes when the image is smaller than the window.
    """

    def __init__(self, size):
        h, w = (size, size) if np.isscalar(size) else tuple(size)
        if int(h) != h or int(w) != w or h < 1 or w < 1:
            raise ValueError(f"random_crop needs a positive int or (h, w) pair, got {size!r}")
        self.size = (int(h), int(w))

    def __call__(self, image, mask, rng):
        _check_pair(image, mask)
        H, W = image.shape[-2:]
        h, w = self.size
        if h > H or w > W:
            raise ValueError(f"random_crop({h}, {w}) does not fit in an image of {H}x{W}")
        top, left = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
        return image[..., top : top + h, left : left + w].copy(), mask[..., top : top + h, left : left + w].copy()

    def __repr__(self):
        return f"random_crop({self.size})"


class Compose:
    """Apply augmentations one after another, all drawing from the same ``rng``."""

    def __init__(self, augmentations):
        self.augmentations = list(augmentations)
        for a in self.augmentations:
            if not callable(a):
                raise TypeError(f"Compose takes callables (image, mask, rng) -> (image, mask), got {a!r}")

    def __call__(self, image, mask, rng):
        for a in self.augmentations:
            image, mask = a(image, mask, rng)
        return image, mask

    def __repr__(self):
        names = ", ".join(getattr(a, "__name__", repr(a)) for a in self.augmentations)
        return f"Compose([{names}])"
