"""The run folder ``out/name``: never overwritten, resumed with its own saved configuration, cleaned of leftovers.

>>> from minisegnet.recipe import TrainConfig
>>> resume_command(TrainConfig(out="runs", model="fcn8s"))
'minisegnet train --out runs --name fcn8s-shapes --resume'
"""

import dataclasses
import json
import shlex
from pathlib import Path

from . import io
from .recipe import TrainConfig

# Fields a resumed run may change: where the run lives and what runs it, never what it computes.
FREE = ("name", "out", "device", "blas_threads")


def resume_command(cfg):
    """The command that continues ``cfg``'s run as printed (resume reads every other setting from the run)."""
    device = "" if cfg.device == "cpu" else f" --device {shlex.quote(cfg.device)}"
    return f"minisegnet train --out {shlex.quote(str(cfg.out))} --name {shlex.quote(cfg.run_dir.name)} --resume{device}"


def refuse_overwrite(cfg):
    """Raise a FileExistsError when ``cfg.run_dir`` holds checkpoints: a new run never replaces an old one.

    One exception: the same run (same config.json) killed between its first two checkpoint writes holds
    only ``checkpoint_best.npz``; starting it again redoes that epoch and writes the same file.
    """
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; expected a folder to hold the run folders")
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
    """The state saved in ``cfg.run_dir/checkpoint_last.npz``, or a FileNotFoundError: nothing to resume."""
    last = cfg.run_dir / "checkpoint_last.npz"
    if not last.is_file():
        raise FileNotFoundError(f"nothing to resume: {last} does not exist; start the run without --resume")
    return io.load(last)


def resumed_config(cfg, saved, explicit=None):
    """The saved configuration (a dict) as a TrainConfig, with the ``FREE`` fields taken from ``cfg``.

    A field of ``cfg`` that differs from the saved value is a ValueError naming its flag; only the fields
    named in ``explicit`` are compared (the flags given on the command line), every field when it is None.
    """
    saved = dict(saved)
    if "threads" in saved:  # checkpoints from before the rename
        saved["blas_threads"] = saved.pop("threads")
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for name in names if explicit is None else explicit:
        if name not in FREE and name in saved and getattr(cfg, name) != saved[name]:
            raise ValueError(
                f"--{name.replace('_', '-')} {getattr(cfg, name)!r} conflicts with {saved[name]!r}, saved in the run "
                f"{cfg.run_dir} that --resume continues; drop the flag, or start a new run with another --name"
            )
    kept = {k: v for k, v in saved.items() if k in names}
    return TrainConfig(**{**kept, **{k: getattr(cfg, k) for k in FREE}})


def clean_leftovers(run_dir):
    """Remove the temporary files a killed ``io.save`` left in ``run_dir`` (``checkpoint_last.npz.*.tmp``)."""
    for path in run_dir.glob("*.npz.*.tmp"):
        path.unlink(missing_ok=True)
