"""FolderDataset: your own images and masks from a folder, read one pair at a time.

    root/images/cat1.jpg   root/masks/cat1.png
    root/images/cat2.png   root/masks/cat2.png

Images and masks are paired by file name without extension (the "stem").
"""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .palette import check_palette, mask_from_rgb, voc_palette

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # lossless only: JPEG would change label values
IGNORE_INDEX = 255


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


def _open(path):
    """A fully decoded PIL image, or a ValueError naming ``path``."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so a truncated file fails here rather than later
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err


def load_image(path):
    """Image file -> (3, H, W) float32 in [0, 1]. Grayscale is copied to 3 channels, alpha dropped."""
    im = _open(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale
        a = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(a, 0, 1)[None], 3, axis=0)
    if im.mode == "F":
        raise ValueError(f"{path} holds floating-point pixels (mode 'F'); save it as 8- or 16-bit")
    a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def load_mask(path, palette=None):
    """Mask file -> (H, W) int64 class indices.

    - '1', 'L', 'I', 'I;16' (black-and-white or grayscale): the pixel value is the class;
    - 'P' (palette PNG): the palette index is the class (the PNG's own colours are ignored);
    - 'RGB'/'RGBA': each colour is looked up in ``palette`` (VOC by default, alpha dropped).
    255 is left as it is: by convention it marks pixels to ignore (VOC object borders).
    """
    im = _open(path)
    if im.mode in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(im).astype(np.int64)
    if im.mode in ("RGB", "RGBA"):
        try:
            return mask_from_rgb(np.asarray(im.convert("RGB")), palette)
        except ValueError as err:
            raise ValueError(f"mask {path}: {err}") from err
    raise ValueError(f"mask {path} has PIL mode {im.mode!r}; use an index PNG ('L' or 'P') or an RGB palette PNG")


class FolderDataset:
    """Image/mask pairs from ``root/images`` and ``root/masks``, loaded lazily (one pair per ``ds[i]``).

    Images: PNG/JPEG (also BMP/TIFF) -> (3, H, W) float32 in [0, 1]. Masks: lossless files read
    by ``load_mask`` -> (H, W) int64: index masks ('L' or 'P' mode, pixel value = class) or RGB
    masks painted with ``palette`` ((C, 3) uint8, the Pascal VOC palette by default). The value
    255 means "ignore this pixel" and passes through, to be used as the loss's ``ignore_index``.

    ``num_classes``: when given, a mask value outside 0..num_classes-1 (other than 255) is an
    error naming the file; when None it is counted on first use by reading every mask once.

    Every problem names the file: missing folders, an empty folder, images without masks and
    masks without images (checked when the data set is made), and unreadable files, images and
    masks of different sizes, unknown colours and out-of-range labels (checked when read).
    """

    def __init__(self, root, palette=None, num_classes=None, class_names=None):
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
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self._num_classes = None if num_classes is None else int(num_classes)
        self._class_names = None if class_names is None else tuple(str(c) for c in class_names)
        names, n = self._class_names, self._num_classes
        if names is not None and n is not None and len(names) != n:
            raise ValueError(f"{len(self._class_names)} class names for num_classes={self._num_classes}")

    def __len__(self):
        return len(self.stems)

    def __getitem__(self, i):
        """(image (3, H, W) float32, mask (H, W) int64) of pair ``i``, read from disk now."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} image/mask pairs in {self.root}")
        image = load_image(self.image_files[i])
        mask = load_mask(self.mask_files[i], self.mask_palette)
        if image.shape[1:] != mask.shape:
            raise ValueError(
                f"image {self.image_files[i]} is {image.shape[1]}x{image.shape[2]} but mask {self.mask_files[i]} "
                f"is {mask.shape[0]}x{mask.shape[1]} (height x width)"
            )
        if self._num_classes is not None:
            bad = (mask != IGNORE_INDEX) & ((mask < 0) | (mask >= self._num_classes))
            if bad.any():
                raise ValueError(
                    f"mask {self.mask_files[i]} has label {mask[bad][0]}, outside 0..{self._num_classes - 1} "
                    f"(and not the ignore label {IGNORE_INDEX})"
                )
        return image, mask

    @property
    def num_classes(self):
        if self._num_classes is None:
            if self._class_names is not None:
                self._num_classes = len(self._class_names)
            else:  # count once: the largest label in any mask, not counting the ignore label
                top = 0
                for path in self.mask_files:
                    mask = load_mask(path, self.mask_palette)
                    labels = mask[mask != IGNORE_INDEX]
                    top = max(top, int(labels.max()) if labels.size else 0)
                self._num_classes = top + 1
        return self._num_classes

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
