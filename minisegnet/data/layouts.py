"""The data sets people have, in the layouts they ship in, read one image at a time.

    voc          root/JPEGImages/NAME.jpg, root/SegmentationClass/NAME.png (palette PNGs, 255 = ignore),
                 root/ImageSets/Segmentation/{train,val}.txt                       Pascal VOC 2012, 21 classes
    pet          root/images/NAME.jpg, root/annotations/trimaps/NAME.png (1 pet, 2 background, 3 border),
                 root/annotations/{trainval,test}.txt                              Oxford-IIIT Pet, 3 classes
    cityscapes   root/leftImg8bit/{train,val}/CITY/X_leftImg8bit.png,
                 root/gtFine/{train,val}/CITY/X_gtFine_labelIds.png      Cityscapes' 19 training classes, 255 ignore
    folder       root/images/ and root/masks/ (as FolderDataset), a seeded fifth held out for validation; its
                 labels go through ``labels.py`` (--mask-values, --num-classes and the same checks as a folder
                 held in memory, which is this reader with ``size=None``, read once)

``--data PATH`` finds the layout from the folders it holds; ``--data voc:PATH`` names it. Every image and mask
is resized to ``size`` x ``size`` (bilinear for the image, nearest for the mask) or, with ``crop=True``, resized
only as far as needed for its shorter side to reach ``size`` and then cropped: at random in training (drawn from
(seed, epoch, index), so a resumed run sees the same crops), in the centre for validation. Pictures are read by
``images.py``: upright as their EXIF says, refused from their header when huge, resized while still 8-bit.

A data set is refused when it is built, not some epochs into training: a split that is empty, splits that share
an image, a picture that is unreadable or too large (from its header), a split whose masks are all ignored (void)
pixels, and for a folder the label problems of ``labels.py``.
"""

import codecs
from pathlib import Path

import numpy as np

from .folder import FolderDataset
from .images import decode, fit, image_array, labels_in, mask_array, mask_labels, open_image, upright_size
from .labels import IGNORE_INDEX
from .palette import voc_palette

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
PET_CLASSES = ("background", "pet", "border")
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
# Cityscapes' label ids (0..33) of its 19 training classes, in train-id order; every other id is ignored (255).
CITYSCAPES_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
LAYOUTS = ("voc", "pet", "cityscapes", "folder")


def _lookup(table_size, pairs):
    # A label -> class table; -1 marks a label the layout does not define.
    table = np.full(table_size, -1, dtype=np.int64)
    for label, cls in pairs:
        table[label] = cls
    return table


VOC_TABLE = _lookup(256, [(c, c) for c in range(21)] + [(255, IGNORE_INDEX)])
PET_TABLE = _lookup(256, [(1, 1), (2, 0), (3, 2)])
CITYSCAPES_TABLE = _lookup(256, [(i, IGNORE_INDEX) for i in range(34)] + [(i, c) for c, i in enumerate(CITYSCAPES_IDS)])
DEFINED = {"voc": "0..20 or 255", "pet": "1, 2 or 3", "cityscapes": "a label id 0..33", "folder": "any"}


def parse(data):
    """``data`` ("voc:PATH", or a PATH whose folders show a layout) -> (layout, Path), or None for anything else."""
    name, _, rest = str(data).partition(":")
    if rest and name in LAYOUTS:
        return name, Path(rest)
    root = Path(data)
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        return "voc", root
    if (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir():
        return "pet", root
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes", root
    return None


def read_split_list(path):
    """The image names a split list holds: the first word of each line (Pet's lists add class numbers after it).

    Read as the tools that write such lists do: UTF-8 with or without a byte-order mark (or UTF-16 with one),
    Windows (CRLF) or Unix line ends, blank lines and ``#`` comment lines skipped.
    """
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    raw = path.read_bytes()
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        text = raw.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"split file {path} is not UTF-8 text: {err}") from None
    names = [line.split()[0] for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise ValueError(f"split file {path} lists no images")
    return names


def _cityscapes_files(root, split):
    folder = root / "leftImg8bit" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder {folder} does not exist")
    images = sorted(folder.glob("*/*_leftImg8bit.png"))
    if not images:
        raise ValueError(f"split folder {folder} holds no CITY/*_leftImg8bit.png images")
    masks = [
        root / "gtFine" / split / p.parent.name / p.name.replace("_leftImg8bit", "_gtFine_labelIds") for p in images
    ]
    return images, masks, folder


def split_files(layout, root, split):
    """(image paths, mask paths, the split list or folder they come from) of ``split`` ("train" or "val") in a
    VOC, Pet or Cityscapes data set at ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    if layout == "voc":
        source = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        names = read_split_list(source)
        images = [root / "JPEGImages" / f"{n}.jpg" for n in names]
        masks = [root / "SegmentationClass" / f"{n}.png" for n in names]
    elif layout == "pet":
        source = root / "annotations" / ("trainval.txt" if split == "train" else "test.txt")
        names = read_split_list(source)
        images = [root / "images" / f"{n}.jpg" for n in names]
        masks = [root / "annotations" / "trimaps" / f"{n}.png" for n in names]
    elif layout == "cityscapes":
        images, masks, source = _cityscapes_files(root, split)
    else:
        raise ValueError(f"split_files reads voc, pet or cityscapes, got {layout!r}; a folder is split by hold_out")
    for path in images + masks:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in the {split} split of {root} but does not exist")
    return images, masks, source


def hold_out(n, seed, where):
    """(train indices, validation indices) of ``n`` pairs: a seeded fifth (at least one) held out for validation."""
    if n < 2:
        raise ValueError(
            f"{where} holds {n} image/mask pair{'s' * (n != 1)}; training needs at least 2, one of them held out "
            "for validation"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, n // 5)
    return order[n_val:].tolist(), order[:n_val].tolist()


def _refuse_shared(train, val):
    # Validation scores only mean something on images the model never trained on.
    (train_images, _, train_source), (val_images, _, val_source) = train, val
    shared = sorted({p.name for p in train_images} & {p.name for p in val_images})
    if shared:
        raise ValueError(
            f"{len(shared)} image(s) are in both {train_source} and {val_source} (e.g. {shared[0]}): validation "
            "would score images the model trains on; list each image in one split only"
        )


class LayoutDataset:
    """Image/mask pairs read from disk when indexed, labels mapped to classes, resized or cropped to ``size``.

    ``ds[i]`` -> (image (3, size, size) float32 in [0, 1], mask (size, size) int64, 255 = ignore). Nothing is
    held in memory between reads, so the DataLoader (which reads ahead on a thread for such sets) keeps memory
    flat however many images there are. ``crop``: random crops (``random=True``) or central ones instead of a
    resize of the whole image. ``size=None``: every pair at the size stored on disk. ``masks`` reads every
    mask: only class weights need it. A "folder" set maps and checks labels with its ``folder``
    (a ``FolderDataset``, by default the one the first image's folder belongs to).
    """

    reads_from_disk = True

    def __init__(self, layout, image_files, mask_files, size, crop=False, random=False, seed=0, name="", folder=None):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if not image_files or len(image_files) != len(mask_files):
            raise ValueError(f"{name or layout}: {len(image_files)} images and {len(mask_files)} masks; expected >= 1")
        if crop and size is None:
            raise ValueError("crop=True needs a size to crop to")
        self.layout, self.image_files, self.mask_files = layout, list(image_files), list(mask_files)
        self.size, self.crop, self.random, self.seed, self.name = size, bool(crop), bool(random), seed, name
        self.epoch = 0
        if layout == "folder":
            self.folder = folder if folder is not None else FolderDataset(Path(self.image_files[0]).parents[1])
            self.class_names, self.palette = self.folder.class_names, self.folder.palette
        else:
            self.folder = None
            self.class_names = {"voc": VOC_CLASSES, "pet": PET_CLASSES, "cityscapes": CITYSCAPES_CLASSES}[layout]
            self.palette = voc_palette()[: self.num_classes]

    @property
    def num_classes(self):
        return len(self.class_names)

    def set_epoch(self, epoch):
        """Random crops of epoch ``epoch`` from now on (the DataLoader calls this as each epoch starts)."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.image_files)

    def classes(self, labels, mask_file):
        """A mask's labels as this layout's classes (255 = ignore), or a ValueError naming the file."""
        if self.folder is not None:
            return self.folder.classes(labels, mask_file)
        table = {"voc": VOC_TABLE, "pet": PET_TABLE, "cityscapes": CITYSCAPES_TABLE}[self.layout]
        mask = table[np.clip(labels, 0, 255)]
        bad = (mask < 0) | (labels < 0) | (labels > 255)
        if bad.any():
            raise ValueError(f"mask {mask_file} has label {labels[bad][0]}, expected {DEFINED[self.layout]}")
        return mask

    def _geometry(self, i, H, W):
        # (the size to resize to, the (top, left, height, width) box to cut) of pair i, stored H x W.
        S = self.size
        if S is None or not self.crop:
            return (None if S is None else (S, S)), None
        scale = S / min(H, W)
        size = None
        if scale > 1:
            H, W = max(S, round(H * scale)), max(S, round(W * scale))
            size = (H, W)
        if self.random:
            rng = np.random.default_rng([self.seed, self.epoch, i % len(self)])
            top, left = int(rng.integers(0, H - S + 1)), int(rng.integers(0, W - S + 1))
        else:
            top, left = (H - S) // 2, (W - S) // 2
        return size, (top, left, S, S)

    def _pair(self, i, resize):
        image_file, mask_file = self.image_files[i], self.mask_files[i]
        palette = None if self.folder is None else self.folder.mask_palette
        with open_image(image_file) as im, open_image(mask_file) as mk:
            (H, W), (MH, MW) = upright_size(im, image_file), upright_size(mk, mask_file)
            if (H, W) != (MH, MW):
                raise ValueError(f"mask {mask_file} is {MH}x{MW} but image {image_file} is {H}x{W} (height x width)")
            size, box = self._geometry(i, H, W) if resize else (None, None)
            image = image_array(fit(decode(im, image_file, draft=size), size, box))
            mask = decode(mk, mask_file, mask=True)
            self.classes(labels_in(mask, mask_file, palette), mask_file)  # every label on disk, not only those kept
            labels = mask_array(fit(mask, size, box, mask=True), mask_file, palette)
        return image, self.classes(labels, mask_file)

    def read(self, i):
        """(image (3, H, W) float32, mask (H, W) int64 classes) of pair ``i`` at the size stored on disk."""
        return self._pair(i, resize=False)

    def __getitem__(self, i):
        """(image (3, size, size) float32, mask (size, size) int64) of pair ``i``, read from disk now."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} images in {self.name}")
        return self._pair(i % len(self), resize=True)

    @property
    def masks(self):
        """(N, size, size) int64: every mask, read now (for class weights; the training loop never needs it)."""
        return np.stack([self[i][1] for i in range(len(self))])

    def refuse_all_void(self):
        """A ValueError when every pixel of every mask is ignored (255): nothing to learn from or to score. Reads
        masks until one holds a class, which for a real data set is the first."""
        palette = None if self.folder is None else self.folder.mask_palette
        for mask_file in self.mask_files:
            if (self.classes(mask_labels(mask_file, palette), mask_file) != IGNORE_INDEX).any():
                return
        raise ValueError(
            f"every pixel of the {len(self)} masks of {self.name} is ignored (label 255 once {self.layout}'s labels "
            f"are mapped to its {self.num_classes} classes): nothing to train on or to score"
        )

    def __repr__(self):
        how = f"{'cropped' if self.crop else 'resized'} to {self.size}x{self.size}" if self.size else "as stored"
        return f"LayoutDataset({self.layout!r}, {self.name!r}, {len(self)} images {how})"


def load_layout(data, size, crop=False, seed=0, mask_values="", num_classes=0):
    """(train, val) ``LayoutDataset``s of ``data`` ("voc:PATH" or a PATH in a known layout), side ``size``
    (None: the size stored on disk). A folder's labels are mapped by ``mask_values`` ("0,255") and checked,
    with ``num_classes`` (0: count them), by reading every mask once now; its split is seeded by ``seed``."""
    found = parse(data)
    if found is None:
        raise ValueError(f"{data} is in none of the layouts {LAYOUTS}; name one as LAYOUT:PATH")
    if size is not None and (int(size) != size or size < 1):
        raise ValueError(f"size must be a positive whole number of pixels or None, got {size!r}")
    layout, root = found
    if layout == "folder":
        folder = FolderDataset(root, num_classes=num_classes or None, mask_values=mask_values)
        train, val = (
            ([folder.image_files[i] for i in keep], [folder.mask_files[i] for i in keep])
            for keep in hold_out(len(folder), seed, root)
        )
        folder.check_labels()
    else:
        folder = None
        train, val = (split_files(layout, root, split) for split in ("train", "val"))
        _refuse_shared(train, val)
        train, val = train[:2], val[:2]
    for path in train[0] + train[1] + val[0] + val[1]:
        with open_image(path):  # the header only: an unreadable or huge picture is named now, not mid-training
            pass
    sets = (
        LayoutDataset(layout, *train, size, crop, random=True, seed=seed, name=f"{layout} {root} train", folder=folder),
        LayoutDataset(layout, *val, size, crop, random=False, seed=seed, name=f"{layout} {root} val", folder=folder),
    )
    if folder is None:  # a folder's check_labels refused masks without foreground already
        for ds in sets:
            ds.refuse_all_void()
    return sets
