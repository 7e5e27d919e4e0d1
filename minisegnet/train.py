"""Training, evaluation and checkpoints: what ``minisegnet train`` and ``minisegnet evaluate`` run.

    >>> from minisegnet.train import TrainConfig
    >>> TrainConfig(quick=True).resolved().epochs
    2

A run writes ``runs/<name>/``: ``config.json``, ``checkpoint_last.npz`` and ``checkpoint_best.npz``
(model, optimiser, schedule, history; no pickle, written to a temporary file and renamed),
``metrics.json`` (per-epoch history and the final validation metrics), ``curves.png`` and
``predictions.png``. ``resume=True`` continues from ``checkpoint_last.npz`` and ends with exactly
the weights an uninterrupted run with the same seed reaches (data order, augmentation and
initialisation all come from the seed and the epoch number).
"""

import dataclasses
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from . import data, io, metrics, models, optim
from . import ops as F
from .backend import check_device, get_array_module, to_device, to_numpy
from .data.augment import Compose, flip, rot90
from .data.folder import IGNORE_INDEX
from .data.loader import DataLoader
from .nn import manual_seed
from .tensor import no_grad

# One line of help per TrainConfig field, shown by `minisegnet train --help`.
HELP = {
    "name": "run folder name under --out",
    "data": "shapes | digits | nuclei | a folder with images/ and masks/",
    "model": "unet | segnet | fcn8s | fcn16s | fcn32s",
    "block": "U-Net block: plain | residual | dense",
    "up": "U-Net upsampling: transpose | bilinear | unpool",
    "base_channels": "channels of the first level (doubled at each level below)",
    "depth": "U-Net levels below the first (sides must divide by 2**depth)",
    "loss": "ce | dice | ce+dice",
    "class_weights": "none | balanced (inverse class frequency in the training masks)",
    "border_weights": "multiply cross-entropy by the U-Net paper's border weight map",
    "optimizer": "adam | sgd (momentum 0.9)",
    "lr": "learning rate (cosine schedule down to 0)",
    "weight_decay": "L2 penalty on the weights",
    "epochs": "passes over the training images",
    "batch_size": "images per step",
    "n_train": "training images to generate (shapes, digits)",
    "n_val": "held-out validation images to generate (shapes, digits)",
    "size": "image side in pixels",
    "augment": "random flips and 90-degree turns, the same for image and mask (off by default: shapes stand "
    "upright, and fresh images teach more than turned repeats)",
    "seed": "seeds the data, the initial weights, the data order and the augmentations",
    "device": 'cpu | gpu (needs CuPy: pip install -e ".[gpu]")',
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
    lr: float = 3e-3
    weight_decay: float = 0.0
    epochs: int = 5
    batch_size: int = 8
    n_train: int = 4096
    n_val: int = 64
    size: int = 32
    augment: bool = False
    seed: int = 0
    device: str = "cpu"
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


def load_datasets(cfg):
    """(train, validation) data sets for ``cfg.data``; validation images are never seen in training."""
    if cfg.data == "shapes":
        # A different seed draws different shapes, positions, colours and backgrounds: held-out images.
        return data.shapes(cfg.n_train, cfg.size, seed=cfg.seed), data.shapes(
            cfg.n_val, cfg.size, seed=cfg.seed + 10_000
        )
    if cfg.data == "digits":
        return (
            data.digit_scenes(cfg.n_train, cfg.size, seed=cfg.seed, split="train"),
            data.digit_scenes(cfg.n_val, cfg.size, seed=cfg.seed + 10_000, split="val"),
        )
    if cfg.data == "nuclei":
        return data.nuclei("train", size=cfg.size), data.nuclei("val", size=cfg.size)
    if Path(cfg.data).is_dir():
        return _folder_split(cfg)
    raise ValueError(f"unknown data {cfg.data!r}: expected shapes, digits, nuclei or a folder with images/ and masks/")


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
        return models.UNet(in_channels, num_classes, cfg.base_channels, cfg.depth, cfg.block, cfg.up)
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

    def loss(logits, masks):
        total = 0.0
        if cfg.loss in ("ce", "ce+dice"):
            pixel_weight = None
            if cfg.border_weights:
                pixel_weight = to_device(F.unet_weight_map(to_numpy(masks), class_weights=None), device)
            ce_ignore = -100 if ignore is None else ignore  # -100: torch's "nothing ignored"
            total = F.cross_entropy(logits, masks, weight=weight, ignore_index=ce_ignore, pixel_weight=pixel_weight)
        if cfg.loss in ("dice", "ce+dice"):
            total = total + F.soft_dice_loss(F.softmax(logits, axis=1), masks, ignore_index=ignore)
        return total

    return loss


def make_optimizer(cfg, model):
    if cfg.optimizer == "adam":
        opt = optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}: expected adam or sgd")
    return opt, optim.CosineLR(opt, T_max=cfg.epochs)


@no_grad()
def evaluate_model(model, dataset, batch_size=32, device="cpu", ignore_index=None):
    """Validation metrics (``SegmentationMeter.compute()``) of ``model`` on ``dataset``, in eval mode."""
    model.eval()
    meter = metrics.SegmentationMeter(dataset.num_classes, ignore_index, class_names=dataset.class_names)
    for images, masks in DataLoader(dataset, batch_size=batch_size):
        meter.update(model(to_device(images, device)).data, to_device(masks, device))
    model.train()
    return meter.compute()


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or Inf loss; the last good checkpoint is left untouched."""


def train(cfg, resume=False, progress=True, on_epoch_end=None):
    """Train as ``cfg`` says and return the final metrics dict (also written to ``metrics.json``).

    ``on_epoch_end(epoch, record)`` is called after each epoch's checkpoint is written (tests use it to
    interrupt a run). Raises ``NonFiniteLoss`` naming the step when the loss stops being finite.
    """
    from tqdm import tqdm

    from .plots import plot_curves, plot_predictions

    cfg = cfg.resolved()
    device = check_device(cfg.device)
    train_ds, val_ds = load_datasets(cfg)
    model = build_model(cfg, 3, train_ds.num_classes).to(device)
    opt, schedule = make_optimizer(cfg, model)
    loss_fn = make_loss(cfg, np.asarray(train_ds.masks), train_ds.num_classes, device)
    augment = Compose([flip, rot90]) if cfg.augment else None
    loader = DataLoader(
        train_ds, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True, augment=augment
    )
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    start_epoch, history, best, elapsed = 0, [], -1.0, 0.0
    last = run_dir / "checkpoint_last.npz"
    if resume and last.exists():
        state = io.load(last)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, history, best, elapsed = state["epoch"] + 1, state["history"], state["best"], state["elapsed"]

    step = start_epoch * len(loader)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        loader.set_epoch(epoch)
        meter = metrics.SegmentationMeter(train_ds.num_classes, ignore_index_of(cfg))
        losses = []
        with tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False) as batches:
            for i, (images, masks) in enumerate(batches):
                images, masks = to_device(images, device), to_device(masks, device)
                logits = model(images)
                loss = loss_fn(logits, masks)
                step += 1
                # One 4-byte device-to-host read per step: a NaN must stop us before it reaches the weights.
                if not bool(get_array_module(loss.data).isfinite(loss.data)):
                    raise NonFiniteLoss(
                        f"loss became {float(loss.data)} at step {step} (epoch {epoch + 1}); stopped "
                        f"without updating the weights, and {last} holds the last good epoch. "
                        f"Try a lower --lr."
                    )
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.data)  # stays on the device; summed once per epoch
                meter.update(logits.data, masks)
                if i % 10 == 9 or i == len(loader) - 1:
                    batches.set_postfix(loss=f"{float(loss.data):.4f}", miou=f"{meter.compute()['miou']:.3f}")
        schedule.step()
        val = evaluate_model(model, val_ds, device=device, ignore_index=ignore_index_of(cfg))
        elapsed += time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean([float(v) for v in losses])),
            "train_miou": meter.compute()["miou"],
            "val_miou": val["miou"],
            "val_fg_miou": val["fg_miou"],
            "val_pixel_acc": val["pixel_acc"],
            "lr": opt.lr,
            "seconds": elapsed,
        }
        history.append(record)
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "schedule": schedule.state_dict(),
            "epoch": epoch,
            "history": history,
            "best": max(best, val["fg_miou"]),
            "elapsed": elapsed,
            "config": dataclasses.asdict(cfg),
            "num_classes": train_ds.num_classes,
            "class_names": list(train_ds.class_names),
            "palette": np.asarray(train_ds.palette),
        }
        io.save(last, state)
        if val["fg_miou"] > best:
            best = val["fg_miou"]
            io.save(run_dir / "checkpoint_best.npz", state)
        if progress:
            print(
                f"epoch {epoch + 1}: loss {record['train_loss']:.4f}  val mIoU {val['miou']:.3f}  "
                f"foreground mIoU {val['fg_miou']:.3f}  ({elapsed:.0f} s)"
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)

    final = evaluate_model(model, val_ds, device=device, ignore_index=ignore_index_of(cfg))
    summary = {
        "config": dataclasses.asdict(cfg),
        "history": history,
        "final": final,
        "train_seconds": elapsed,
        "parameters": models.count_parameters(model),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    plot_curves(history, run_dir / "curves.png")
    plot_predictions(model, val_ds, run_dir / "predictions.png", device=device)
    return summary


def load_model(checkpoint):
    """Rebuild the model saved in a checkpoint; returns (model, config, checkpoint state)."""
    state = io.load(checkpoint)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k in fields})
    model = build_model(cfg, 3, state["num_classes"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, cfg, state
