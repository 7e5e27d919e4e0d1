"""Mask values -> classes for your own folders, and the checks that keep a folder's labels from training a useless
model. Every reader of a folder (``FolderDataset``, ``--data PATH`` held in memory, ``--data folder:PATH`` read
from disk) goes through these, so ``--mask-values`` and ``--num-classes`` mean the same on every path.

    values = parse_mask_values("0,255")          # [0, 255]: black-and-white masks
    mask = map_mask_values(mask, values, path)   # 0 -> class 0, 255 -> class 1
    n = count_classes(seen, root)                # refuses no foreground, a stray label, more than 256 classes
"""

import numpy as np

IGNORE_INDEX = 255  # the label of pixels to ignore (VOC's object borders), never a class
MAX_CLASSES = 256  # more would be a stray label or 16-bit values, not classes (and memory for C score maps)


def parse_mask_values(text):
    """``"0,255"`` -> [0, 255]: the mask values that become the classes 0, 1, ...; ``""`` -> [].
    A list of numbers is checked the same way."""
    if isinstance(text, str) and not text.strip():
        return []
    try:
        values = [int(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise ValueError(f"--mask-values {text!r} must be comma-separated whole numbers, e.g. 0,255") from None
    if len(set(values)) != len(values) or len(values) == 1:
        raise ValueError(f"--mask-values {text!r} must name two or more different values, e.g. 0,255")
    return values


def map_mask_values(masks, values, source):
    """masks (..., H, W) with ``values[k]`` -> class k; 255 not in ``values`` stays the ignore label.
    ``source`` names the file or folder in the error for a value ``values`` lacks."""
    order = np.argsort(values)
    ranked = np.asarray(values)[order]
    at = np.searchsorted(ranked, masks).clip(0, len(values) - 1)
    hit = ranked[at] == masks
    stray = ~hit & (masks != IGNORE_INDEX)
    if stray.any():
        listed = ",".join(map(str, values))
        raise ValueError(f"{source} holds the value {masks[stray][0]}, which --mask-values {listed} lacks")
    return np.where(hit, order[at], IGNORE_INDEX)


def count_classes(labels, source, num_classes=0):
    """The number of classes of ``labels`` (masks, or the values they hold), or a ValueError for labels that would
    train a useless model: no foreground, a label far beyond the others, more than ``MAX_CLASSES``, a label outside
    ``num_classes`` (> 0: given with --num-classes). ``source`` names the folder in the message."""
    seen = np.unique(labels)
    values = ", ".join(map(str, seen[:8]))
    labels = seen[seen != IGNORE_INDEX]
    if labels.size == 0 or labels.max() == 0:
        hint = "; black-and-white masks? --mask-values 0,255 makes 255 the class 1" if IGNORE_INDEX in seen else ""
        raise ValueError(f"the masks in {source} hold no foreground label (values: {values}){hint}")
    top = int(labels.max())
    if labels.min() < 0:
        raise ValueError(f"the masks in {source} hold the negative label {labels.min()}; labels are 0, 1, 2, ...")
    if num_classes:
        if top >= num_classes:
            raise ValueError(f"the masks in {source} hold label {top}, outside --num-classes {num_classes}")
        return int(num_classes)
    if top >= MAX_CLASSES:
        raise ValueError(
            f"the masks in {source} hold label {top}: more than {MAX_CLASSES} classes; name the values that are "
            f"classes with --mask-values (e.g. {','.join(map(str, labels[:3]))},...)"
        )
    mapping = f"--mask-values {','.join(map(str, labels))}"
    second = int(labels[-2]) if labels.size > 1 else 0
    if top > 2 * second + 8:
        raise ValueError(
            f"the masks in {source} hold label {top}, far beyond the others (values: {values}); a stray label? "
            f"Map the values to classes with {mapping}, or keep them with --num-classes {top + 1}"
        )
    return top + 1
