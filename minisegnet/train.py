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
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import io, metrics, models
from .backend import check_device, get_array_module, to_device
from .data.augment import Compose, flip, rot90
from .data.loader import DataLoader
from .recipe import (  # noqa: F401  (re-exported: train.TrainConfig etc. are the documented names)
    HELP,
    SYNTHETIC,
    TrainConfig,
    build_model,
    epoch_data,
    ignore_index_of,
    load_datasets,
    make_loss,
    make_optimizer,
)
from .tensor import no_grad


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


def train_epoch(model, batches, loss_fn, opt, schedule, meter, step, device="cpu", checkpoint=None):
    """One pass over ``batches`` (a DataLoader, or tqdm around one): forward, loss, backward, then an
    optimiser and a schedule step per batch. ``meter`` collects the training predictions.

    Returns (the losses, still on the device; the step count after the pass). Raises
    ``NonFiniteLoss`` naming the step, before any weight changes, when a loss is NaN or Inf.
    """
    losses = []
    for images, masks in batches:
        images, masks = to_device(images, device), to_device(masks, device)
        logits = model(images)
        loss = loss_fn(logits, masks)
        step += 1
        # One 4-byte device-to-host read per step: a NaN must stop us before it reaches the weights.
        if not bool(get_array_module(loss.data).isfinite(loss.data)):
            kept = f"{checkpoint} holds the last good epoch" if checkpoint else "no checkpoint was written"
            raise NonFiniteLoss(
                f"loss became {float(loss.data)} at step {step}; stopped without updating the weights, "
                f"and {kept}. Try a lower --lr."
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.data)  # stays on the device; summed once per epoch
        meter.update(logits.data, masks)
        if len(losses) % 10 == 0 and hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{float(loss.data):.4f}", miou=f"{meter.compute()['miou']:.3f}")
    return losses, step


def train(cfg, resume=False, progress=True, on_epoch_end=None):
    """Train as ``cfg`` says and return the final metrics dict (also written to ``metrics.json``).

    ``on_epoch_end(epoch, record)`` is called after each epoch's checkpoint is written (tests use it to
    interrupt a run). Raises ``NonFiniteLoss`` naming the step when the loss stops being finite.
    """
    from threadpoolctl import threadpool_limits

    cfg = cfg.resolved()
    if int(cfg.threads) != cfg.threads or cfg.threads < 0:
        raise ValueError(f"threads must be a whole number >= 0 (0: all cores), got {cfg.threads!r}")
    with threadpool_limits(limits=cfg.threads or None):
        return _train(cfg, resume, progress, on_epoch_end)


def _train(cfg, resume, progress, on_epoch_end):
    from tqdm import tqdm

    from .plots import plot_curves, plot_predictions

    device = check_device(cfg.device)
    train_ds, val_ds = load_datasets(cfg)
    steps_per_epoch = len(train_ds) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(train_ds)} training images")
    model = build_model(cfg, 3, train_ds.num_classes).to(device)
    opt, schedule = make_optimizer(cfg, model, steps_per_epoch)
    masks = np.asarray(train_ds.masks) if cfg.class_weights == "balanced" else None  # data read from disk: no masks
    loss_fn = make_loss(cfg, masks, train_ds.num_classes, device)
    augment = Compose([flip, rot90]) if cfg.augment else None
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

    # Fresh training images for epoch e + 1 are drawn on a second thread while epoch e trains
    # (NumPy lets go of the interpreter lock inside its array operations, so the two overlap).
    fresh = cfg.fresh_data and cfg.data in SYNTHETIC
    ignore = ignore_index_of(cfg)  # 255 for your own folders: one answer for the meters and the evaluation
    prefetch = ThreadPoolExecutor(max_workers=1)
    # load_datasets drew epoch 0's images already; a resumed run draws those of its first epoch.
    upcoming = prefetch.submit(epoch_data, cfg, start_epoch) if fresh and start_epoch > 0 else None
    step = start_epoch * steps_per_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            if fresh:
                train_ds = train_ds if upcoming is None else upcoming.result()
                if epoch + 1 < cfg.epochs:
                    upcoming = prefetch.submit(epoch_data, cfg, epoch + 1)
            loader = DataLoader(
                train_ds, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True, augment=augment
            )
            loader.set_epoch(epoch)
            meter = metrics.SegmentationMeter(train_ds.num_classes, ignore)
            with tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False) as batches:
                kept = last if last.exists() else None
                losses, step = train_epoch(model, batches, loss_fn, opt, schedule, meter, step, device, kept)
            val = evaluate_model(model, val_ds, device=device, ignore_index=ignore)
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
    finally:
        prefetch.shutdown(cancel_futures=True)

    final = evaluate_model(model, val_ds, device=device, ignore_index=ignore)
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
