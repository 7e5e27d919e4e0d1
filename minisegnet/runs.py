"""Run folders and their checkpoints.

A run folder ``out/name`` is held by one training at a time (``claim``), never overwritten, resumed with its
own saved configuration and cleaned of leftovers. ``config_from_dict`` turns a saved configuration back into
a ``TrainConfig``; ``load_model`` rebuilds a checkpoint's model after checking what it holds.

>>> from minisegnet.recipe import TrainConfig
>>> resume_command(TrainConfig(out="runs", model="fcn8s"))
'minisegnet train --out runs --name fcn8s-shapes --resume'
"""

import dataclasses
import json
import os
import shlex
from pathlib import Path

import numpy as np

from . import io
from .data.palette import check_palette
from .recipe import MAX_CLASSES, TrainConfig, build_model

# Fields a resumed run may change: where the run lives and what runs it, never what it computes.
FREE = ("name", "out", "device", "blas_threads")
LOCK = "train.lock"  # in the run folder while a training holds it
# A saved configuration beyond these is damaged, not a model: the widest layer has base_channels * 2**depth
# channels (8 * base_channels in an FCN), and one 3x3 convolution of 4,096 channels already holds 600 MB.
MAX_DEPTH = 10
MAX_WIDTH = 4096


def resume_command(cfg):
    """The command that continues ``cfg``'s run as printed (resume reads every other setting from the run)."""
    device = "" if cfg.device == "cpu" else f" --device {shlex.quote(cfg.device)}"
    return f"minisegnet train --out {shlex.quote(str(cfg.out))} --name {shlex.quote(cfg.run_dir.name)} --resume{device}"


def check_name(name):
    """A ValueError unless ``name`` (``--name``) is empty or one plain folder name, so the run stays in ``--out``."""
    if name in (".", "..") or any(s in name for s in (os.sep, os.altsep or os.sep, "/")):
        raise ValueError(f"--name {name!r} must be one folder name inside --out: no path separator, not . or ..")


class claim:
    """Hold the run folder ``run_dir`` for one training inside the ``with`` block, or refuse it at once.

    The folder (and any missing folder above it) is made, and ``train.lock`` in it is locked with ``flock``:
    a second training of the same run, in this process or another, gets a FileExistsError naming the
    process that holds it. The kernel lets go of the lock when its holder exits, also when it is killed,
    so a killed run never blocks the next. On exit the lock file goes; when no checkpoint was written, so do
    ``config.json``, leftover temporary files and the folders the claim made. (A class: each ``with`` takes
    the lock anew, so one object can be reused; nesting it is a second claim of a held run, refused.)
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.held = []  # (lock file descriptor, folders made) for each open block, innermost last

    def __enter__(self):
        import fcntl  # POSIX; train.py's peak-memory reading needs POSIX too

        lock, made = self.run_dir / LOCK, []
        for _ in range(10):  # the holder before us may remove the lock file, or the folder, while we open it
            made += _make_folders(self.run_dir)
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise FileExistsError(
                    f"{self.run_dir} is in use by another `minisegnet train` (process {holder}); wait for it to "
                    f"end, or start a new run with another --name"
                ) from None
            if _same_file(fd, lock):
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self.held.append((fd, made))
                return self
            os.close(fd)  # we locked a lock file its holder had just removed: take the one there now
        raise FileExistsError(f"{self.run_dir} kept changing while this run tried to hold it; try again")

    def __exit__(self, *exc_info):
        fd, made = self.held.pop()
        try:
            if not any(self.run_dir.glob("checkpoint_*.npz")):  # nothing worth keeping: leave no trace
                (self.run_dir / "config.json").unlink(missing_ok=True)
                clean_leftovers(self.run_dir)
            (self.run_dir / LOCK).unlink(missing_ok=True)
            for folder in reversed(made):
                try:
                    folder.rmdir()
                except OSError:  # not empty: the run, or something else, lives there
                    break
        finally:
            os.close(fd)


def _make_folders(path):
    # Make `path` and its missing parents; return the folders made, outermost first.
    missing, p = [], path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        what = "a folder for the run" if p == path else "a folder to hold the run folders"
        raise NotADirectoryError(f"{p} is a file; expected {what}")
    made = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
            made.append(folder)
        except FileExistsError:  # another run made it first
            pass
    return made


def _same_file(fd, path):
    try:
        a, b = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def refuse_overwrite(cfg):
    """Raise a FileExistsError when ``cfg.run_dir`` holds checkpoints: a new run never replaces an old one.

    One exception: the same run (same config.json) killed between its first two checkpoint writes holds
    only ``checkpoint_best.npz``; starting it again redoes that epoch and writes the same file.
    """
    found = sorted(p.name for p in cfg.run_dir.glob("checkpoint_*.npz")) if cfg.run_dir.is_dir() else []
    if found == ["checkpoint_best.npz"] and _same_config(cfg):
        return
    if found:
        raise FileExistsError(
            f"{cfg.run_dir} already holds {' and '.join(found)}; continue that run with `{resume_command(cfg)}` "
            f"or start a new one with another --name"
        )


def _same_config(cfg):
    path = cfg.run_dir / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or cut short by the kill
        return False
    ours = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return all(saved.get(k) == v for k, v in ours.items() if k not in FREE)


def last_state(cfg):
    """The state saved in ``cfg.run_dir/checkpoint_last.npz``; a FileNotFoundError when there is nothing to
    resume, a ValueError when the folder's config.json describes another run than the checkpoint."""
    last = cfg.run_dir / "checkpoint_last.npz"
    if not last.is_file():
        raise FileNotFoundError(f"nothing to resume: {last} does not exist; start the run without --resume")
    state = io.load(last)
    try:
        written = json.loads((cfg.run_dir / "config.json").read_text())
    except (OSError, ValueError):  # config.json is a copy for people to read; the checkpoint's own is used
        return state
    saved = state.get("config") if isinstance(state.get("config"), dict) else {}
    for name, value in saved.items():
        if name not in FREE and name in written and written[name] != value:
            raise ValueError(
                f"{cfg.run_dir / 'config.json'} says {name}={written[name]!r} but {last} was trained with "
                f"{value!r}: two runs wrote this folder; start a new run with another --name"
            )
    return state


def config_from_dict(saved, source):
    """The ``TrainConfig`` that a saved configuration (config.json, a checkpoint's "config") describes.

    Keys this version does not know are left out and missing fields take their defaults; a value that
    cannot make a model (a negative depth, a depth of 40) is a ValueError naming ``source``.
    """
    if not isinstance(saved, dict):
        raise ValueError(f"{source} holds no configuration (a dict); expected one written by `minisegnet train`")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in names})
    try:
        cfg.check()
        if cfg.depth > MAX_DEPTH:
            raise ValueError(f"--depth {cfg.depth} is out of range: expected a whole number <= {MAX_DEPTH}")
        widest = cfg.base_channels * (8 if str(cfg.model).startswith("fcn") else 2**cfg.depth)
        if widest > MAX_WIDTH:
            raise ValueError(
                f"--base-channels {cfg.base_channels} and --depth {cfg.depth} make layers of {widest} channels; "
                f"expected at most {MAX_WIDTH}"
            )
    except ValueError as e:
        raise ValueError(f"{source} holds a configuration no model can be built from: {e}") from None
    return cfg


def resumed_config(cfg, saved, explicit=None):
    """The saved configuration (a dict) as a TrainConfig, with the ``FREE`` fields taken from ``cfg``.

    A field of ``cfg`` that differs from the saved value is a ValueError naming its flag; only the fields
    named in ``explicit`` are compared (the flags given on the command line), every field when it is None.
    """
    base = config_from_dict(saved, cfg.run_dir / "checkpoint_last.npz")
    for name in [f.name for f in dataclasses.fields(TrainConfig)] if explicit is None else explicit:
        if name not in FREE and getattr(cfg, name) != getattr(base, name):
            raise ValueError(
                f"--{name.replace('_', '-')} {getattr(cfg, name)!r} conflicts with {getattr(base, name)!r}, saved in "
                f"the run {cfg.run_dir} that --resume continues; drop the flag, or start a new run with another --name"
            )
    return dataclasses.replace(base, **{k: getattr(cfg, k) for k in FREE})


def clean_leftovers(run_dir):
    """Remove the temporary files a killed ``io.save`` left in ``run_dir`` (``checkpoint_last.npz.*.tmp``)."""
    for path in run_dir.glob("*.npz.*.tmp"):
        path.unlink(missing_ok=True)


def non_finite(weights):
    """The name of the first floating-point array of ``weights`` (a state_dict) holding NaN or Inf, or None."""
    return next((k for k, v in weights.items() if v.dtype.kind == "f" and not np.isfinite(v).all()), None)


def restore(target, saved, where):
    """``target.load_state_dict(saved)`` (a model, optimiser or schedule); a misfit is a ValueError naming ``where``."""
    try:
        target.load_state_dict(saved)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{where} does not fit the model its configuration describes: {e}") from None


def load_model(checkpoint):
    """Rebuild the model saved in a checkpoint, in eval mode; returns (model, config, checkpoint state).

    Refused with a ValueError naming ``checkpoint``: a file that is not a ``minisegnet train`` checkpoint,
    a configuration out of range (``config_from_dict``), a class count outside 1..MAX_CLASSES, weights
    that are not finite (a run that diverged), a palette or class names short of the class count, and
    weights of another model than the configuration describes.
    """
    state = io.load(checkpoint)
    if not (isinstance(state.get("config"), dict) and isinstance(state.get("model"), dict) and "num_classes" in state):
        raise ValueError(f"{checkpoint} lacks a model, config or class count: not a `minisegnet train` checkpoint")
    cfg = config_from_dict(state["config"], checkpoint)
    C = state["num_classes"]
    if isinstance(C, bool) or not isinstance(C, int) or not 1 <= C <= MAX_CLASSES:
        raise ValueError(f"{checkpoint} holds the class count {C!r}; expected a whole number in 1..{MAX_CLASSES}")
    bad = non_finite({k: np.asarray(v) for k, v in state["model"].items()})
    if bad is not None:
        raise ValueError(f"{checkpoint} holds NaN or Inf in {bad} (a run that diverged?); use another checkpoint")
    _check_labels(state, C, checkpoint)
    model = build_model(cfg, 3, C)
    restore(model, state["model"], checkpoint)
    return model.eval(), cfg, state


def _check_labels(state, C, checkpoint):
    # What predict draws with: a colour and a name for each of the C classes.
    if "palette" in state:
        try:
            rows = len(check_palette(state["palette"]))
        except ValueError as e:
            raise ValueError(f"{checkpoint} holds a damaged palette: {e}") from None
        if rows < C:
            raise ValueError(f"{checkpoint} holds a palette of {rows} colours for its {C} classes")
    names = state.get("class_names", [""] * C)
    if not isinstance(names, list) or len(names) != C:
        raise ValueError(f"{checkpoint} holds the class names {names!r:.80} for its {C} classes")
