"""What a training run is made of: its config, data, model, loss and optimiser, built from a ``TrainConfig``.

``minisegnet.train`` runs them.

    >>> from minisegnet.recipe import TrainConfig
    >>> TrainConfig(quick=True).resolved().epochs
    2
"""

import dataclasses
import os
from pathlib import Path

import numpy as np

from . import data, models, optim
from . import ops as F
from .backend import to_device, to_numpy
from .data import layouts
from .data.labels import IGNORE_INDEX, MAX_CLASSES
from .nn import manual_seed

WARMUP_STEPS = 200  # the learning rate rises over this many steps first: a fast start without early blow-ups

# One line of help per TrainConfig field, shown by `minisegnet train --help`.
HELP = {
    "name": "run folder name under --out (default: <model>-<data>, e.g. unet-shapes)",
    "data": "shapes | digits | nuclei | a folder with images/ and masks/ | a VOC, Oxford-IIIT Pet or Cityscapes "
    "folder (or name the layout: voc:PATH, pet:PATH, cityscapes:PATH, folder:PATH, read from disk as needed)",
    "model": "unet | segnet | fcn8s | fcn16s | fcn32s",
    "block": "U-Net block: plain | residual | dense",
    "up": "U-Net upsampling: transpose | bilinear | unpool",
    "base_channels": "channels of the first level (doubled at each level below)",
    "depth": "U-Net levels below the first, 1 to 8 (sides must divide by 2**depth)",
    "loss": "ce | dice | ce+dice (soft Dice over the whole batch, one per class, averaged over classes)",
    "class_weights": "none | balanced (inverse class frequency in the training masks)",
    "border_weights": "multiply cross-entropy by the U-Net paper's border weight map",
    "optimizer": "adam | sgd (momentum 0.9)",
    "lr": "peak learning rate (warm-up, then a cosine down to 0 over the run)",
    "weight_decay": "L2 penalty on the weights",
    "epochs": "passes over n_train training images (new ones each epoch with --fresh-data)",
    "batch_size": "images per step",
    "n_train": "training images generated per epoch (shapes, digits)",
    "n_val": "held-out validation images to generate (shapes, digits)",
    "size": "image side in pixels (VOC, Pet, Cityscapes and folder:PATH images are resized to it)",
    "crop": "VOC, Pet, Cityscapes, folder:PATH: random size x size crops (central ones for validation), not resizing",
    "augment": "random flips and 90-degree turns, the same for image and mask (off by default: shapes stand "
    "upright, and fresh images teach more than turned repeats)",
    "fresh_data": "new generated training images every epoch (shapes, digits); --no-fresh-data repeats one set",
    "seed": "seeds the data, the initial weights, the data order and the augmentations",
    "device": 'cpu | gpu (needs CuPy: pip install -e ".[gpu]")',
    "blas_threads": "threads of the BLAS library (NumPy's matrix products) on the CPU, 0 for all cores (1 is "
    "fastest for the default model on 2 cores: the other core draws the next epoch's images); minisegnet's own "
    "convolution threads are minisegnet.set_num_threads",
    "num_classes": "number of classes of a folder's masks, at most 256 (0: count them); a label outside 0..N-1 "
    "(but 255) is an error naming the file",
    "mask_values": "comma-separated mask values that are the classes 0, 1, 2, ... in a folder's masks, e.g. 0,255 "
    "for black-and-white masks (default: the values are the classes)",
    "out": "folder that holds the run folders",
    "quick": "tiny sizes and 2 epochs for the sizes not given explicitly (also set by MINISEGNET_QUICK=1)",
}


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` and in every checkpoint (HELP explains each field)."""

    name: str = ""
    data: str = "shapes"
    model: str = "unet"
    block: str = "plain"
    up: str = "transpose"
    base_channels: int = 8
    depth: int = 3
    loss: str = "ce+dice"
    class_weights: str = "none"
    border_weights: bool = False
    optimizer: str = "adam"
    lr: float = 5e-3
    weight_decay: float = 0.0
    epochs: int = 8
    batch_size: int = 8
    n_train: int = 4096
    n_val: int = 64
    size: int = 32
    crop: bool = False
    augment: bool = False
    fresh_data: bool = True
    seed: int = 0
    device: str = "cpu"
    blas_threads: int = 1
    num_classes: int = 0
    mask_values: str = ""
    out: str = "runs"
    quick: bool = False

    def resolved(self, keep=()):
        """The config with its run name filled in and, in quick mode (``MINISEGNET_QUICK=1`` sets it too), the
        small sizes of ``QUICK`` for the fields that still hold their default and are not named in ``keep``
        (the command line passes the flags given explicitly: they win over quick mode)."""
        cfg = dataclasses.replace(self, name=self.run_dir.name)
        if not (self.quick or os.environ.get("MINISEGNET_QUICK") == "1"):
            return cfg
        defaults = TrainConfig()
        small = {k: v for k, v in QUICK.items() if k not in keep and getattr(self, k) == getattr(defaults, k)}
        return dataclasses.replace(cfg, quick=True, **small)

    @property
    def run_dir(self):
        """``out/name``; an empty name becomes ``<model>-<data>`` (a folder's last part for your own data)."""
        return Path(self.out) / (self.name or f"{self.model}-{Path(self.data).name or 'data'}")

    def check(self):
        """Raise a ValueError naming the first numeric field whose value cannot make a run, and its flag."""
        for field, low in LOWEST.items():
            value, high = getattr(self, field), HIGHEST.get(field, float("inf"))
            whole = isinstance(getattr(TrainConfig, field), int)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < float("inf")
            fits = number and low <= value <= high and (value > 0 or field != "lr")
            if not (fits and (not whole or value == int(value))):
                kind = "a whole number" if whole else "a finite number"
                bound = "> 0" if field == "lr" else f">= {low}" if high == float("inf") else f"from {low} to {high}"
                raise ValueError(f"--{field.replace('_', '-')} {value!r} is out of range: expected {kind} {bound}")
        return self


# Quick mode: tiny sizes and 2 epochs (what the tests and the lessons' quick runs use).
QUICK = {"epochs": 2, "n_train": 32, "n_val": 16, "size": 32, "batch_size": 8, "base_channels": 4, "depth": 2}
# The smallest value of each numeric field that makes a run (lr must also be > 0).
LOWEST = {
    "base_channels": 1,
    "depth": 1,
    "lr": 0,
    "weight_decay": 0,
    "epochs": 1,
    "batch_size": 1,
    "n_train": 1,
    "n_val": 1,
    "size": 1,
    "blas_threads": 0,
    "num_classes": 0,
}
# The largest value of the fields that have one: a U-Net of depth 8 already takes only sides divisible by 256 and
# has 256 x base_channels channels at its bottom level; more classes than MAX_CLASSES are stray or 16-bit labels.
HIGHEST = {"depth": 8, "num_classes": MAX_CLASSES}


SYNTHETIC = ("shapes", "digits")


def load_datasets(cfg):
    """(train, validation) data sets for ``cfg.data``; validation images are never seen in training.

    For the generated data sets the training set is epoch 0's (``epoch_data``).
    """
    if cfg.data in ("shapes", "digits", "nuclei") or layouts.parse(cfg.data) is not None:
        check_size(cfg, cfg.size, cfg.size)  # before any image is made or read
    if cfg.data == "shapes":
        # A different seed draws different shapes, positions, colours and backgrounds: held-out images.
        return epoch_data(cfg, 0), data.shapes(cfg.n_val, cfg.size, seed=cfg.seed + 10_000)
    if cfg.data == "digits":
        return epoch_data(cfg, 0), data.digit_scenes(cfg.n_val, cfg.size, seed=cfg.seed + 10_000, split="val")
    if cfg.data == "nuclei":
        return data.nuclei("train", size=cfg.size), data.nuclei("val", size=cfg.size)
    if layouts.parse(cfg.data) is not None:
        return layouts.load_layout(cfg.data, cfg.size, cfg.crop, cfg.seed, cfg.mask_values, cfg.num_classes)
    if Path(cfg.data).is_dir():
        return _folder_split(cfg)
    raise ValueError(f"unknown data {cfg.data!r}: expected shapes, digits, nuclei or a folder with images/ and masks/")


def epoch_data(cfg, epoch):
    """The ``n_train`` generated training images of ``epoch`` (shapes or digits).

    With ``fresh_data`` every epoch draws new images, seeded by (seed, epoch) so a resumed run sees
    the same ones; without it every epoch repeats the images seeded by ``seed``. Seeds of two
    numbers never give the validation images, which are seeded by one number (seed + 10,000).
    """
    seed = [cfg.seed, epoch] if cfg.fresh_data else cfg.seed
    if cfg.data == "shapes":
        return data.shapes(cfg.n_train, cfg.size, seed=seed)
    return data.digit_scenes(cfg.n_train, cfg.size, seed=seed, split="train")


def _folder_split(cfg):
    # Your own images at the size they have, held in memory: the folder:PATH reader (the same seeded split and
    # label checks, --mask-values and --num-classes) with size=None, every pair read once.
    sets = layouts.load_layout(f"folder:{cfg.data}", None, seed=cfg.seed, mask_values=cfg.mask_values,
                               num_classes=cfg.num_classes)  # fmt: skip
    pairs = [[ds[i] for i in range(len(ds))] for ds in sets]
    sizes = sorted({image.shape[1:] for split in pairs for image, _ in split})
    if len(sizes) > 1:
        raise ValueError(
            f"images in {cfg.data} have different sizes {sizes[:3]}...; resize them to one size first, or read "
            f"them with --data folder:{cfg.data} --size N, which resizes each"
        )
    check_size(cfg, *sizes[0], resized=False)
    return tuple(
        data.ArrayDataset([p[0] for p in split], [p[1] for p in split], ds.class_names, name=f"{cfg.data} {part}")
        for split, ds, part in zip(pairs, sets, ("train", "val"))
    )


def ignore_index_of(cfg):
    """255 for your own folders (VOC's "ignore this pixel" label), None for the built-in data sets."""
    return IGNORE_INDEX if Path(cfg.data).is_dir() or layouts.parse(cfg.data) is not None else None


def build_model(cfg, in_channels, num_classes):
    """The network a config names, initialised from ``cfg.seed``."""
    manual_seed(cfg.seed)
    if cfg.model == "unet":
        # He initialisation, but for the head: with PyTorch's default everywhere one of seeds 0-5 (seed 4) started
        # so slowly that 4,096 steps ended at foreground mIoU 0.81 instead of 0.93-0.96; with He everywhere the
        # worst seed ended at 0.90; with the head left at the default, at 0.92 (measured on the default run).
        unet = models.UNet(in_channels, num_classes, cfg.base_channels, cfg.depth, cfg.block, cfg.up)
        return models.he_init(unet, keep=[unet.head])
    if cfg.model == "segnet":
        return models.UNet(in_channels, num_classes, cfg.base_channels, cfg.depth, cfg.block, "unpool", skips=False)
    if cfg.model in ("fcn8s", "fcn16s", "fcn32s"):
        return models.FCN(in_channels, num_classes, variant=cfg.model[3:], base_channels=cfg.base_channels)
    raise ValueError(f"unknown model {cfg.model!r}: expected unet, segnet, fcn8s, fcn16s or fcn32s")


def side_multiple(cfg):
    """Image sides the configured model takes are multiples of this (``models.side_multiple``)."""
    return models.side_multiple(cfg.model, cfg.depth)


def check_size(cfg, H, W, resized=True):
    """A ValueError naming the nearest sizes when H x W images do not fit the configured model; ``resized``:
    the images are made at ``--size`` (else they are your own, at the size they have)."""
    m = side_multiple(cfg)
    if H % m == 0 and W % m == 0:
        return
    fcn = cfg.model.startswith("fcn")
    what = cfg.model if fcn else f"{cfg.model} with --depth {cfg.depth}"
    near = models.nearest_sides(max(H, W), m)
    if resized:
        fix = f"pass --size {near}" + ("" if fcn else ", or a smaller --depth")
    else:
        fix = "resize them" + ("" if fcn else ", pass a smaller --depth")
        fix += f", or read them with --data folder:{cfg.data} --size {near}, which resizes them"
    raise ValueError(f"{what} takes image sides divisible by {m}, but the images are {H}x{W}: {fix}")


def make_loss(cfg, train_masks, num_classes, device):
    """``loss(logits, masks)`` for the configured mix of cross-entropy and soft Dice."""
    if cfg.loss not in ("ce", "dice", "ce+dice"):
        raise ValueError(f"unknown loss {cfg.loss!r}: expected ce, dice or ce+dice")
    ignore = ignore_index_of(cfg)
    weight = None
    if cfg.class_weights == "balanced":
        labels = train_masks[train_masks != ignore] if ignore is not None else train_masks.reshape(-1)
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        weight = to_device((counts.sum() / (num_classes * np.maximum(counts, 1))).astype(np.float32), device)
    elif cfg.class_weights != "none":
        raise ValueError(f"unknown class_weights {cfg.class_weights!r}: expected none or balanced")

    lambdas = {"ce": (0.0, 1.0), "dice": (1.0, 0.0), "ce+dice": (1.0, 1.0)}[cfg.loss]

    def loss(logits, masks):
        pixel_weight = None
        if cfg.border_weights and cfg.loss != "dice":
            pixel_weight = to_device(F.unet_weight_map(to_numpy(masks), class_weights=None), device)
        # dice_ce_loss holds the one definition of CE+Dice and the batch-Dice default (with its measurement).
        lambda_dice, lambda_ce = lambdas
        return F.dice_ce_loss(
            logits, masks, lambda_dice, lambda_ce, weight=weight, ignore_index=ignore, pixel_weight=pixel_weight
        )

    return loss


def make_optimizer(cfg, model, steps_per_epoch):
    """The optimiser and its learning-rate schedule, stepped after every batch: a linear warm-up over
    the first ``WARMUP_STEPS`` (at most a tenth of the run), then a cosine down to 0 at the last step."""
    if cfg.optimizer == "adam":
        opt = optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}: expected adam or sgd")
    total = cfg.epochs * steps_per_epoch
    return opt, optim.WarmupCosineLR(opt, warmup=min(WARMUP_STEPS, total // 10), T_max=total)
