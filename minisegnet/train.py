"""Training, evaluation and checkpoints: what ``minisegnet train`` and ``minisegnet evaluate`` run.

    >>> from minisegnet.recipe import TrainConfig
    >>> TrainConfig(quick=True).resolved().epochs
    2

A run writes ``runs/<name>/``: ``config.json``, ``checkpoint_last.npz`` and ``checkpoint_best.npz``
(model, optimiser, schedule, history; no pickle, written to a temporary file and renamed),
``metrics.json`` (per-epoch history and the final validation metrics, strict JSON), ``curves.png`` and
``predictions.png``. Nothing is written before the first epoch's checkpoint, and a folder that holds
checkpoints is never trained into again. ``resume=True`` continues from ``checkpoint_last.npz`` with the
configuration saved there and ends with exactly the weights an uninterrupted run with the same seed
reaches (data order, augmentation and initialisation all come from the seed and the epoch number).
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
from .recipe import TrainConfig, build_model  # lessons 08 and 09 still import these two from here
from .tensor import no_grad

# Our losses start near log(C) (< 6 for up to 256 classes; border weights multiply that by at most 11):
# a loss above this means the weights have blown up, whatever it does next.
LOSS_LIMIT = 1e4
# Steps between two reads of the losses and of their input checks (each read waits for the GPU).
FLUSH_EVERY = 10


@no_grad()
def evaluate_model(model, dataset, batch_size=32, device="cpu", ignore_index=None):
    """Validation metrics (``SegmentationMeter.compute()``) of ``model`` on ``dataset``, in eval mode."""
    model.eval()
    meter = metrics.SegmentationMeter(dataset.num_classes, ignore_index, class_names=dataset.class_names)
    with deferred_checks():  # the meter's label checks: read once, at the end, not once per batch
        for images, masks in DataLoader(dataset, batch_size=batch_size):
            meter.update(model(to_device(images, device)).data, to_device(masks, device))
    model.train()
    return meter.compute()


class Diverged(RuntimeError):
    """Training blew up (a NaN, Inf or exploding loss, or non-finite weights or running statistics); the last
    good checkpoint is left untouched and stays the best."""


NonFiniteLoss = Diverged  # the earlier name


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
    for name, value in state["model"].items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise _diverged(f"{name} is no longer finite", step, lr, checkpoint)


def train(cfg, resume=False, progress=True, on_epoch_end=None, explicit=None):
    """Train as ``cfg`` says and return the final metrics dict (also written to ``metrics.json``).

    ``resume``: continue ``cfg.run_dir`` with its saved configuration; a setting of ``cfg`` that differs is a
    ValueError (only the fields named in ``explicit``, when given: the command line's flags, which also
    win over quick mode). Without ``resume`` a run folder that holds checkpoints is a FileExistsError.
    ``on_epoch_end(epoch, record)`` is called after each epoch's checkpoints are written (tests use it to
    interrupt a run). Raises ``Diverged`` naming the step when training blows up.
    """
    from threadpoolctl import threadpool_limits

    cfg = cfg.resolved(keep=explicit or ())
    state = None
    if resume:
        state = runs.last_state(cfg)
        cfg = runs.resumed_config(cfg, state["config"], explicit)
    else:
        runs.refuse_overwrite(cfg)
    cfg.check()
    with threadpool_limits(limits=cfg.blas_threads or None):
        return _train(cfg, state, progress, on_epoch_end)


def _restore(target, saved, where):
    # A model, optimiser or schedule from a checkpoint; one of another model or depth is a one-line error.
    try:
        target.load_state_dict(saved)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{where} does not fit the model its configuration describes: {e}") from None


def _train(cfg, state, progress, on_epoch_end):
    from tqdm import tqdm

    from .plots import plot_curves, plot_predictions

    device = check_device(cfg.device)
    train_ds, val_ds = recipe.load_datasets(cfg)
    steps_per_epoch = len(train_ds) // cfg.batch_size
    if steps_per_epoch == 0:
        n = len(train_ds)
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the {n} training images; pass at most {n}")
    model = build_model(cfg, 3, train_ds.num_classes).to(device)
    opt, schedule = recipe.make_optimizer(cfg, model, steps_per_epoch)
    masks = np.asarray(train_ds.masks) if cfg.class_weights == "balanced" else None  # data read from disk: no masks
    loss_fn = recipe.make_loss(cfg, masks, train_ds.num_classes, device)
    augment = Compose([flip, rot90]) if cfg.augment else None
    run_dir = cfg.run_dir
    last, best_path = run_dir / "checkpoint_last.npz", run_dir / "checkpoint_best.npz"

    start_epoch, history, best, elapsed = 0, [], -1.0, 0.0
    if state is not None:
        for target, key in ((model, "model"), (opt, "optimizer"), (schedule, "schedule")):
            _restore(target, state[key], last)
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
            if epoch == start_epoch:  # the folder and config.json appear only once a first epoch has succeeded
                run_dir.mkdir(parents=True, exist_ok=True)
                runs.clean_leftovers(run_dir)
                (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
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
    (run_dir / "metrics.json").write_text(io.to_json(summary))
    plot_curves(history, run_dir / "curves.png")
    plot_predictions(model, val_ds, run_dir / "predictions.png", device=device)
    return summary


def load_model(checkpoint):
    """Rebuild the model saved in a checkpoint; returns (model, config, checkpoint state)."""
    state = io.load(checkpoint)
    if not isinstance(state.get("config"), dict) or "num_classes" not in state or "model" not in state:
        raise ValueError(f"{checkpoint} lacks a model, config or class count: not a `minisegnet train` checkpoint")
    saved = dict(state["config"])
    saved.setdefault("blas_threads", saved.pop("threads", 1))  # checkpoints from before the rename
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    model = build_model(cfg, 3, state["num_classes"])
    _restore(model, state["model"], checkpoint)
    model.eval()
    return model, cfg, state
