"""Training and evaluation: what ``minisegnet train`` runs (runs.py: run folders and checkpoints).

    >>> from minisegnet.recipe import TrainConfig
    >>> TrainConfig(quick=True).resolved().epochs
    2

A run writes ``runs/<name>/``: ``config.json``, ``checkpoint_last.npz`` and ``checkpoint_best.npz``
(model, optimiser, schedule, history; no pickle, written to a temporary file and renamed),
``metrics.json`` (per-epoch history and the final validation metrics, strict JSON), ``curves.png`` and
``predictions.png``. The folder is held by one training at a time (``train.lock`` while it runs: a second
training of the same run is refused at once); a run that ends before its first checkpoint leaves no
folder behind, and a folder that holds checkpoints is never trained into again. ``resume=True``
continues from ``checkpoint_last.npz`` with the configuration saved there and ends with exactly the
weights an uninterrupted run with the same seed reaches (data order, augmentation and initialisation
all come from the seed and the epoch number).
Training stops with ``Diverged`` when the loss stops being finite or blows up (``LOSS_LIMIT``), or when
the weights or batch-norm statistics do. The loss and the losses' input checks are read every
``FLUSH_EVERY`` steps, not every step (a GPU step then never waits for the host): a blow-up is named at
its own step, a few steps later, and always before an epoch ends, so no checkpoint ever holds it.
"""

import dataclasses
import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import io, metrics, models, recipe, runs
from .backend import check_device, get_array_module, to_device, to_numpy
from .checks import CheckFailed, deferred_checks
from .data.augment import Compose, flip, rot90
from .data.loader import DataLoader
from .tensor import no_grad

# Our losses start near log(C) (< 6 for up to 256 classes; border weights multiply that by at most 11):
# a loss above this means the weights have blown up, whatever it does next.
LOSS_LIMIT = 1e4
# Steps between two reads of the losses and of their input checks (each read waits for the GPU).
FLUSH_EVERY = 10


@no_grad()
def evaluate_model(model, dataset, batch_size=32, device="cpu", ignore_index=None, num_classes=None, class_names=None):
    """Validation metrics (``SegmentationMeter.compute()``) of ``model`` on ``dataset``, in eval mode.

    ``num_classes`` and ``class_names`` are the model's classes (default: the data set's). A data set
    without one labelled pixel is a ValueError naming it: it has nothing to score.
    """
    name = getattr(dataset, "name", "the data set")
    if not len(dataset):
        raise ValueError(f"{name} holds no image: nothing to score")
    C = num_classes or dataset.num_classes
    if class_names is None and C == dataset.num_classes:
        class_names = dataset.class_names
    training = model.training
    model.eval()
    meter = metrics.SegmentationMeter(C, ignore_index, class_names=class_names)
    with deferred_checks():  # the meter's label checks: read once, at the end, not once per batch
        for images, masks in DataLoader(dataset, batch_size=batch_size):
            meter.update(model(to_device(images, device)).data, to_device(masks, device))
    model.train(training)
    result = meter.compute()
    if not np.sum(result["confusion_matrix"]):
        why = f"its {len(dataset)} masks hold only the ignore label {ignore_index}"
        raise ValueError(f"{name} has no labelled pixel to score: {why}")
    return result


class Diverged(RuntimeError):
    """Training blew up (a NaN, Inf or exploding loss, or non-finite weights or running statistics); the last
    good checkpoint is left untouched and stays the best."""


def _diverged(what, step, lr, checkpoint):
    kept = f"{checkpoint} holds the last good epoch" if checkpoint else "no checkpoint was written"
    return Diverged(
        f"training diverged at step {step} (learning rate {lr:.3g}): {what}. Stopped without saving it: "
        f"{kept}. Try a lower --lr"
    )


def train_epoch(model, batches, loss_fn, opt, schedule, meter, step, device="cpu", checkpoint=None):
    """One pass over ``batches`` (a DataLoader, or tqdm around one): forward, loss, backward, then an
    optimiser and a schedule step per batch. ``meter`` collects the training predictions.

    Returns (the losses as Python floats; the step count after the pass). A step never waits for the
    device: the losses' input checks (finite logits, labels in range, ...) and the loss itself stay on
    the device until a flush, every ``FLUSH_EVERY`` steps (when the progress bar shows the loss), at the
    end of the pass and when a step raises. A flush reads them all at once (two host reads) and raises
    for the first step that went wrong, naming it: ``Diverged`` (with that step's learning rate) when its
    loss is NaN, Inf or above ``LOSS_LIMIT`` or its logits are not finite, ``CheckFailed`` (a ValueError)
    for another refused input, such as a label out of range.

    What deferral guarantees: up to ``FLUSH_EVERY - 1`` steps may run after the bad one (on NaN weights),
    but the pass raises before it returns, so no checkpoint is ever written from them: the one on disk
    stays the last good epoch, and the message names the first bad step, as it did when every step
    read its loss.
    """
    losses, pending = [], []  # pending: (step, learning rate, loss, logits finite) on the device, not yet read
    with deferred_checks() as checks:
        for images, masks in batches:
            if not len(images):
                raise ValueError(f"the batch of step {step + 1} holds no image; every batch needs at least one")
            images, masks = to_device(images, device), to_device(masks, device)
            step += 1
            checks.step = step
            lr = opt.lr
            try:
                logits = model(images)
                loss = loss_fn(logits, masks)
                pending.append((step, lr, loss.data, get_array_module(logits.data).isfinite(logits.data).all()))
                opt.zero_grad()
                loss.backward()
                opt.step()
                schedule.step()
                meter.update(logits.data, masks)
            except Exception:
                _flush(checks, pending, losses, checkpoint)  # an earlier bad step or input explains the error
                raise
            if len(pending) == FLUSH_EVERY:
                _flush(checks, pending, losses, checkpoint)
                if hasattr(batches, "set_postfix"):
                    batches.set_postfix(loss=f"{losses[-1]:.4f}", miou=f"{meter.compute()['miou']:.3f}")
        _flush(checks, pending, losses, checkpoint)
    return losses, step


def _flush(checks, pending, losses, checkpoint):
    # Two host reads: the pending checks' flags, then each pending step's loss and logits-finite flag.
    try:
        checks.flush()
        failed = None
    except CheckFailed as e:
        failed = e
    rows = pending[:]
    pending.clear()
    if rows:
        xp = get_array_module(rows[0][2])
        read = to_numpy(xp.stack([xp.stack([loss.astype(xp.float64), finite]) for _, _, loss, finite in rows]))
        for (step, lr, _, _), (value, finite) in zip(rows, read.tolist()):
            if failed is not None and failed.step == step:  # the losses refused this step's inputs
                if not finite:
                    raise _diverged(f"the logits are not finite ({failed.reason})", step, lr, checkpoint) from None
                raise failed
            if not value < LOSS_LIMIT:  # NaN and Inf fail the comparison too
                raise _diverged(f"the loss became {value:.3g} (limit {LOSS_LIMIT:g})", step, lr, checkpoint)
            losses.append(value)
    if failed is not None:
        raise failed


def _check_finite_state(state, step, lr, checkpoint):
    # The host copies the checkpoint writes anyway: weights and batch-norm statistics, read once per epoch.
    name = runs.non_finite(state["model"])
    if name is not None:
        raise _diverged(f"{name} is no longer finite", step, lr, checkpoint)


def train(cfg, resume=False, progress=True, on_epoch_end=None, explicit=None):
    """Train as ``cfg`` says and return the final metrics dict (also written to ``metrics.json``).

    ``resume``: continue ``cfg.run_dir`` with its saved configuration; a setting of ``cfg`` that differs is a
    ValueError (only the fields named in ``explicit``, when given: the command line's flags, which also
    win over quick mode). Without ``resume`` a run folder that holds checkpoints is a FileExistsError.
    The run folder is held (``runs.claim``) from before the data is read until the end: a second training
    of the same run meanwhile is a FileExistsError at once. ``on_epoch_end(epoch, record)`` is called after
    each epoch's checkpoints are written (tests use it to interrupt a run). Raises ``Diverged`` naming the
    step when training blows up.
    """
    from threadpoolctl import threadpool_limits

    runs.check_name(cfg.name)
    cfg = cfg.resolved(keep=explicit or ())
    if not resume:
        cfg.check()  # bad values are refused before the run folder is made
    with runs.claim(cfg.run_dir):
        state = None
        if resume:
            state = runs.last_state(cfg)
            cfg = runs.resumed_config(cfg, state["config"], explicit).check()
        else:
            runs.refuse_overwrite(cfg)
        with threadpool_limits(limits=cfg.blas_threads or None):
            return _train(cfg, state, progress, on_epoch_end)


def _train(cfg, state, progress, on_epoch_end):
    from tqdm import tqdm

    from .plots import plot_curves, plot_predictions
    from .predict import predict_masks

    device = check_device(cfg.device)
    train_ds, val_ds = recipe.load_datasets(cfg)
    steps_per_epoch = len(train_ds) // cfg.batch_size
    if steps_per_epoch == 0:
        n = len(train_ds)
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the {n} training images; pass at most {n}")
    model = recipe.build_model(cfg, 3, train_ds.num_classes).to(device)
    opt, schedule = recipe.make_optimizer(cfg, model, steps_per_epoch)
    masks = np.asarray(train_ds.masks) if cfg.class_weights == "balanced" else None  # data read from disk: no masks
    loss_fn = recipe.make_loss(cfg, masks, train_ds.num_classes, device)
    augment = Compose([flip, rot90]) if cfg.augment else None
    run_dir = cfg.run_dir
    last, best_path = run_dir / "checkpoint_last.npz", run_dir / "checkpoint_best.npz"

    start_epoch, history, best, elapsed = 0, [], -1.0, 0.0
    if state is not None:
        for target, key in ((model, "model"), (opt, "optimizer"), (schedule, "schedule")):
            runs.restore(target, state[key], last)
        start_epoch, history, best, elapsed = state["epoch"] + 1, state["history"], state["best"], state["elapsed"]
        runs.clean_leftovers(run_dir)

    # Fresh training images for epoch e + 1 are drawn on a second thread while epoch e trains
    # (NumPy lets go of the interpreter lock inside its array operations, so the two overlap).
    fresh = cfg.fresh_data and cfg.data in recipe.SYNTHETIC
    ignore = recipe.ignore_index_of(cfg)  # 255 for your own folders: one answer for the meters and the evaluation
    prefetch = ThreadPoolExecutor(max_workers=1)
    # load_datasets drew epoch 0's images already; a resumed run draws those of its first epoch.
    upcoming = prefetch.submit(recipe.epoch_data, cfg, start_epoch) if fresh and start_epoch > 0 else None
    step = start_epoch * steps_per_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            if fresh:
                train_ds = train_ds if upcoming is None else upcoming.result()
                if epoch + 1 < cfg.epochs:
                    upcoming = prefetch.submit(recipe.epoch_data, cfg, epoch + 1)
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
                "train_loss": float(np.mean(losses)),
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
            _check_finite_state(state, step, opt.lr, kept)
            if epoch == start_epoch:  # config.json appears once a first epoch has succeeded
                runs.clean_leftovers(run_dir)
                io.write_text(run_dir / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
            # Best first, then last: a kill between the two resumes from the earlier last and redoes this epoch.
            if val["fg_miou"] > best:
                best = val["fg_miou"]
                io.save(best_path, state)
            io.save(last, state)
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
    io.write_text(run_dir / "metrics.json", io.to_json(summary))
    plot_curves(history, run_dir / "curves.png")
    images = np.stack([val_ds[i][0] for i in range(min(6, len(val_ds)))])
    plot_predictions(val_ds, predict_masks(model, images, device), run_dir / "predictions.png")
    return summary
