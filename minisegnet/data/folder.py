"""FolderDataset: your own images and masks from a folder, read one pair at a time.

    root/images/cat1.jpg   root/masks/cat1.png
    root/images/cat2.png   root/masks/cat2.png

Images and masks are paired by file name without extension (the "stem").
"""

from pathlib import Path

import numpy as np

from .images import load_image, load_mask, mask_labels
from .labels import IGNORE_INDEX, count_classes, map_mask_values, parse_mask_values
from .palette import check_palette, voc_palette

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # lossless only: JPEG would change label values


def _list_files(folder, suffixes, what):
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist (expected root/images and root/masks)")
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() in (".jpg", ".jpeg") and what == "masks":
            raise ValueError(f"mask {path} is a JPEG: its lossy compression changes label values; save masks as PNG")
        if path.suffix.lower() not in suffixes:
            continue
        if path.stem in files:
            raise ValueError(f"{files[path.stem]} and {path} have the same name; keep one file per stem")
        files[path.stem] = path
    return files


class FolderDataset:
    """Image/mask pairs from ``root/images`` and ``root/masks``, loaded lazily (one pair per ``ds[i]``).

    Images: PNG/JPEG (also BMP/TIFF) -> (3, H, W) float32 in [0, 1]. Masks: lossless files read
    by ``load_mask`` -> (H, W) int64: index masks ('L' or 'P' mode, pixel value = class) or RGB
    masks painted with ``palette`` ((C, 3) uint8, the Pascal VOC palette by default). The value
    255 means "ignore this pixel" and passes through, to be used as the loss's ``ignore_index``.

    ``mask_values`` ("0,255" or [0, 255]): the mask values that are the classes 0, 1, ... (black-and-white
    masks); every other value but 255 is an error naming the file. ``num_classes``: when given, a class outside
    0..num_classes-1 (other than 255) is an error naming the file; when None it is ``len(class_names)``,
    ``len(mask_values)``, or counted on first use by reading every mask once (``check_labels``).

    Every problem names the file: missing folders, an empty folder, images without masks and
    masks without images (checked when the data set is made), and unreadable files, images and
    masks of different sizes, unknown colours and out-of-range labels (checked when read).
    """

    def __init__(self, root, palette=None, num_classes=None, class_names=None, mask_values=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data folder {self.root} does not exist")
        images = _list_files(self.root / "images", IMAGE_SUFFIXES, "images")
        masks = _list_files(self.root / "masks", MASK_SUFFIXES, "masks")
        if not images:
            raise ValueError(f"{self.root / 'images'} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        lonely_images = sorted(set(images) - set(masks))
        lonely_masks = sorted(set(masks) - set(images))
        if lonely_images:
            names = ", ".join(str(images[s]) for s in lonely_images[:5])
            where = self.root / "masks"
            raise ValueError(f"{len(lonely_images)} image(s) have no mask of the same name in {where}: {names}")
        if lonely_masks:
            names = ", ".join(str(masks[s]) for s in lonely_masks[:5])
            where = self.root / "images"
            raise ValueError(f"{len(lonely_masks)} mask(s) have no image of the same name in {where}: {names}")
        self.stems = sorted(images)
        self.image_files = [images[s] for s in self.stems]
        self.mask_files = [masks[s] for s in self.stems]
        self.mask_palette = voc_palette() if palette is None else check_palette(palette)
        self.mask_values = parse_mask_values("" if mask_values is None else mask_values)
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self._class_names = None if class_names is None else tuple(str(c) for c in class_names)
        names = self._class_names
        given = num_classes or (len(names) if names is not None else len(self.mask_values))
        self._num_classes = int(given) if given else None
        if names is not None and len(names) != self._num_classes:
            raise ValueError(f"{len(names)} class names for num_classes={self._num_classes}")
        self._checked = False

    def __len__(self):
        return len(self.stems)

    def classes(self, labels, mask_file):
        """A mask's labels (H, W) as classes: ``mask_values`` mapped, then checked against the class count."""
        if self.mask_values:
            labels = map_mask_values(labels, self.mask_values, f"mask {mask_file}")
        n = self._num_classes
        if n is not None:
            bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= n))
            if bad.any():
                raise ValueError(
                    f"mask {mask_file} has label {labels[bad][0]}, outside 0..{n - 1} for {n} classes "
                    f"(and not the ignore label {IGNORE_INDEX})"
                )
        return labels

    def read_mask(self, i):
        """Mask ``i`` as classes, (H, W) int64."""
        return self.classes(load_mask(self.mask_files[i], self.mask_palette), self.mask_files[i])

    def __getitem__(self, i):
        """(image (3, H, W) float32, mask (H, W) int64) of pair ``i``, read from disk now."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} image/mask pairs in {self.root}")
        image, mask = load_image(self.image_files[i]), self.read_mask(i)
        if image.shape[1:] != mask.shape:
            raise ValueError(
                f"image {self.image_files[i]} is {image.shape[1]}x{image.shape[2]} but mask {self.mask_files[i]} "
                f"is {mask.shape[0]}x{mask.shape[1]} (height x width)"
            )
        return image, mask

    def check_labels(self):
        """Read every mask once and return the number of classes, or the ValueError of ``count_classes`` (no
        foreground, a stray label, more than 256 classes, a label outside the ``num_classes`` given)."""
        if not self._checked:
            found = [self.classes(mask_labels(path, self.mask_palette), path) for path in self.mask_files]
            seen = np.unique(np.concatenate(found))
            self._num_classes = count_classes(seen, self.root, self._num_classes or 0)
            self._checked = True
        return self._num_classes

    @property
    def num_classes(self):
        return self.check_labels() if self._num_classes is None else self._num_classes

    @property
    def class_names(self):
        if self._class_names is None:
            self._class_names = ("background",) + tuple(f"class {c}" for c in range(1, self.num_classes))
        return self._class_names

    @property
    def palette(self):
        """(num_classes, 3) uint8 colours for drawing: the mask palette's first rows (VOC by default)."""
        n = self.num_classes
        if n <= len(self.mask_palette):
            return self.mask_palette[:n]
        return voc_palette()[np.arange(n) % 256]

    def __repr__(self):
        return f"FolderDataset({str(self.root)!r}, {len(self)} pairs)"
