"""What a training run is made of: its config, data, model, loss and optimiser, built from a ``TrainConfig``.

``minisegnet.train`` runs them; every name here is also importable from there.

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
from .data.folder import IGNORE_INDEX
from .nn import manual_seed

WARMUP_STEPS = 200  # the learning rate rises over this many steps first: a fast start without early blow-ups

# One line of help per TrainConfig field, shown by `minisegnet train --help`.
HELP = {
    "name": "run folder name under --out",
    "data": "shapes | digits | nuclei | a folder with images/ and masks/",
    "model": "unet | segnet | fcn8s | fcn16s | fcn32s",
    "block": "U-Net block: plain | residual | dense",
    "up": "U-Net upsampling: transpose | bilinear | unpool",
    "base_channels": "channels of the first level (doubled at each level below)",
    "depth": "U-Net levels below the first (sides must divide by 2**depth)",
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
    "size": "image side in pixels",
    "augment": "random flips and 90-degree turns, the same for image and mask (off by default: shapes stand "
    "upright, and fresh images teach more than turned repeats)",
    "fresh_data": "new generated training images every epoch (shapes, digits); --no-fresh-data repeats one set",
    "seed": "seeds the data, the initial weights, the data order and the augmentations",
    "device": 'cpu | gpu (needs CuPy: pip install -e ".[gpu]")',
    "threads": "BLAS threads on the CPU, 0 for all cores (1 is fastest for the default model on 2 cores: the "
    "other core draws the next epoch's images)",
    "out": "folder that holds the run folders",
    "quick": "tiny sizes and 2 epochs (also set by MINISEGNET_QUICK=1)",
}


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` and in every checkpoint (HELP explains each field)."""

    name: str = "unet-shapes"
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
    augment: bool = False
    fresh_data: bool = True
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    out: str = "runs"
    quick: bool = False

    def resolved(self):
        """The config with quick mode's small sizes applied (``MINISEGNET_QUICK=1`` sets it too)."""
        if not (self.quick or os.environ.get("MINISEGNET_QUICK") == "1"):
            return self
        return dataclasses.replace(
            self, quick=True, epochs=2, n_train=32, n_val=16, size=32, batch_size=8, base_channels=4, depth=2
        )

    @property
    def run_dir(self):
        return Path(self.out) / self.name


SYNTHETIC = ("shapes", "digits")


def load_datasets(cfg):
    """(train, validation) data sets for ``cfg.data``; validation images are never seen in training.

    For the generated data sets the training set is epoch 0's (``epoch_data``).
    """
    if cfg.data == "shapes":
        # A different seed draws different shapes, positions, colours and backgrounds: held-out images.
        return epoch_data(cfg, 0), data.shapes(cfg.n_val, cfg.size, seed=cfg.seed + 10_000)
    if cfg.data == "digits":
        return epoch_data(cfg, 0), data.digit_scenes(cfg.n_val, cfg.size, seed=cfg.seed + 10_000, split="val")
    if cfg.data == "nuclei":
        return data.nuclei("train", size=cfg.size), data.nuclei("val", size=cfg.size)
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
    # Your own images: read every pair once, hold out a seeded 20% for validation.
    folder = data.FolderDataset(cfg.data)
    pairs = [folder[i] for i in range(len(folder))]
    sizes = sorted({image.shape[1:] for image, _ in pairs})
    if len(sizes) > 1:
        raise ValueError(f"images in {cfg.data} have different sizes {sizes[:3]}...; resize them to one size first")
    images, masks = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    order = np.random.default_rng(cfg.seed).permutation(len(pairs))
    n_val = max(1, len(pairs) // 5)
    names = folder.class_names
    return (
        data.ArrayDataset(images[order[n_val:]], masks[order[n_val:]], names, name=f"{cfg.data} train"),
        data.ArrayDataset(images[order[:n_val]], masks[order[:n_val]], names, name=f"{cfg.data} val"),
    )


def ignore_index_of(cfg):
    """255 for your own folders (VOC's "ignore this pixel" label), None for the built-in data sets."""
    return IGNORE_INDEX if Path(cfg.data).is_dir() else None


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
