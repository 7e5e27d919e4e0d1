"""The data sets people have, in the layouts they ship in, read one image at a time.

    voc          root/JPEGImages/NAME.jpg, root/SegmentationClass/NAME.png (palette PNGs, 255 = ignore),
                 root/ImageSets/Segmentation/{train,val}.txt                       Pascal VOC 2012, 21 classes
    pet          root/images/NAME.jpg, root/annotations/trimaps/NAME.png (1 pet, 2 background, 3 border),
                 root/annotations/{trainval,test}.txt                              Oxford-IIIT Pet, 3 classes
    cityscapes   root/leftImg8bit/{train,val}/CITY/X_leftImg8bit.png,
                 root/gtFine/{train,val}/CITY/X_gtFine_labelIds.png      Cityscapes' 19 training classes, 255 ignore
    folder       root/images/ and root/masks/ (as FolderDataset), a seeded fifth held out for validation

``--data PATH`` finds the layout from the folders it holds; ``--data voc:PATH`` names it. Every image and mask
is resized to ``size`` x ``size`` (bilinear for the image, nearest for the mask) or, with ``crop=True``, resized
only as far as needed for its shorter side to reach ``size`` and then cropped: at random in training (drawn from
(seed, epoch, index), so a resumed run sees the same crops), in the centre for validation.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from .folder import IGNORE_INDEX, FolderDataset, load_image, load_mask
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


def _names(split_file):
    if not split_file.is_file():
        raise FileNotFoundError(f"split file {split_file} does not exist")
    names = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip() and line[0] != "#"]
    if not names:
        raise ValueError(f"split file {split_file} lists no images")
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
    return images, masks


def split_files(layout, root, split):
    """(image paths, mask paths) of ``split`` ("train" or "val") in a data set of ``layout`` at ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    if layout == "voc":
        names = _names(root / "ImageSets" / "Segmentation" / f"{split}.txt")
        images = [root / "JPEGImages" / f"{n}.jpg" for n in names]
        masks = [root / "SegmentationClass" / f"{n}.png" for n in names]
    elif layout == "pet":
        names = _names(root / "annotations" / ("trainval.txt" if split == "train" else "test.txt"))
        images = [root / "images" / f"{n}.jpg" for n in names]
        masks = [root / "annotations" / "trimaps" / f"{n}.png" for n in names]
    elif layout == "cityscapes":
        images, masks = _cityscapes_files(root, split)
    else:
        folder = FolderDataset(root)
        held_out = set(np.random.default_rng(0).permutation(len(folder))[: max(1, len(folder) // 5)].tolist())
        keep = [i for i in range(len(folder)) if (i in held_out) == (split == "val")]
        images, masks = [folder.image_files[i] for i in keep], [folder.mask_files[i] for i in keep]
    for path in images + masks:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in the {split} split of {root} but does not exist")
    return images, masks


def _resize(image, mask, H, W):
    # Image channels as 32-bit float pictures (bilinear), the mask as 32-bit integers (nearest: labels stay labels).
    image = np.stack([np.asarray(Image.fromarray(c).resize((W, H), Image.BILINEAR)) for c in image])
    mask = np.asarray(Image.fromarray(mask.astype(np.int32)).resize((W, H), Image.NEAREST)).astype(np.int64)
    return image, mask


class LayoutDataset:
    """Image/mask pairs read from disk when indexed, labels mapped to classes, resized or cropped to ``size``.

    ``ds[i]`` -> (image (3, size, size) float32 in [0, 1], mask (size, size) int64, 255 = ignore). Nothing is
    held in memory between reads, so the DataLoader (which reads ahead on a thread for such sets) keeps memory
    flat however many images there are. ``crop``: random crops (``random=True``) or central ones instead of a
    resize of the whole image. ``masks`` reads every mask: only class weights need it.
    """

    reads_from_disk = True

    def __init__(self, layout, image_files, mask_files, size, crop=False, random=False, seed=0, name=""):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout, self.image_files, self.mask_files = layout, list(image_files), list(mask_files)
        self.size, self.crop, self.random, self.seed, self.name = int(size), bool(crop), bool(random), seed, name
        self.epoch = 0
        if layout == "folder":
            self.class_names = FolderDataset(Path(self.image_files[0]).parents[1]).class_names
        else:
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

    def read(self, i):
        """(image (3, H, W) float32, mask (H, W) int64 classes) of pair ``i`` at the size stored on disk."""
        image_file, mask_file = self.image_files[i], self.mask_files[i]
        image, labels = load_image(image_file), load_mask(mask_file)
        if image.shape[1:] != labels.shape:
            raise ValueError(
                f"mask {mask_file} is {labels.shape[0]}x{labels.shape[1]} but image {image_file} is "
                f"{image.shape[1]}x{image.shape[2]} (height x width)"
            )
        if self.layout == "folder":
            return image, labels
        table = {"voc": VOC_TABLE, "pet": PET_TABLE, "cityscapes": CITYSCAPES_TABLE}[self.layout]
        mask = table[np.clip(labels, 0, 255)]
        bad = (mask < 0) | (labels < 0) | (labels > 255)
        if bad.any():
            raise ValueError(f"mask {mask_file} has label {labels[bad][0]}, expected {DEFINED[self.layout]}")
        return image, mask

    def __getitem__(self, i):
        """(image (3, size, size) float32, mask (size, size) int64) of pair ``i``, read from disk now."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} images in {self.name}")
        image, mask = self.read(i)
        S = self.size
        if not self.crop:
            return _resize(image, mask, S, S)
        H, W = mask.shape
        scale = S / min(H, W)
        if scale > 1:
            H, W = max(S, round(H * scale)), max(S, round(W * scale))
            image, mask = _resize(image, mask, H, W)
        if self.random:
            rng = np.random.default_rng([self.seed, self.epoch, i % len(self)])
            top, left = int(rng.integers(0, H - S + 1)), int(rng.integers(0, W - S + 1))
        else:
            top, left = (H - S) // 2, (W - S) // 2
        return image[:, top : top + S, left : left + S], mask[top : top + S, left : left + S]

    @property
    def masks(self):
        """(N, size, size) int64: every mask, read now (for class weights; the training loop never needs it)."""
        return np.stack([self[i][1] for i in range(len(self))])

    def __repr__(self):
        how = "cropped" if self.crop else "resized"
        return f"LayoutDataset({self.layout!r}, {self.name!r}, {len(self)} images {how} to {self.size}x{self.size})"


def load_layout(data, size, multiple=1, crop=False, seed=0):
    """(train, val) ``LayoutDataset``s of ``data`` ("voc:PATH" or a PATH in a known layout), side ``size``.

    ``size`` must be a multiple of ``multiple`` (2**depth for a U-Net, 32 for an FCN).
    """
    found = parse(data)
    if found is None:
        raise ValueError(f"{data} is in none of the layouts {LAYOUTS}; name one as LAYOUT:PATH")
    if int(size) != size or size < multiple or size % multiple:
        below, above = int(size) // multiple * multiple, (int(size) // multiple + 1) * multiple
        nearest = f"{below} or {above}" if below else f"{above}"
        raise ValueError(f"size {size} is not a multiple of {multiple}, which the model needs; try {nearest}")
    layout, root = found
    train, val = (split_files(layout, root, split) for split in ("train", "val"))
    return (
        LayoutDataset(layout, *train, size, crop, random=True, seed=seed, name=f"{layout} {root} train"),
        LayoutDataset(layout, *val, size, crop, random=False, seed=seed, name=f"{layout} {root} val"),
    )


def from_config(cfg):
    """``load_layout`` for a TrainConfig: its data, size, crop and seed, and its model's multiple."""
    multiple = 32 if cfg.model.startswith("fcn") else 2**cfg.depth
    return load_layout(cfg.data, cfg.size, multiple, getattr(cfg, "crop", False), cfg.seed)
