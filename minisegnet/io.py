"""Checkpoints without pickle: ``save(path, obj)`` and ``load(path)`` on a ``.npz`` file.

``obj`` is a nested dict whose leaves are arrays (NumPy, CuPy or Tensors) or plain values (numbers, strings,
booleans, None, lists of those), for example
``{"model": model.state_dict(), "optim": opt.state_dict(), "config": {...}, "epoch": 3}``.
Nested keys are flattened with "/" (``model/enc.0.conv1.weight``); each array is one entry of the ``.npz``
and all the plain values go, as JSON, into one more entry named ``__meta__``. Loading uses
``np.load(allow_pickle=False)``, so a checkpoint can hold no code, only numbers.

The file is written to a temporary file in the same directory and renamed over ``path`` with ``os.replace``
(atomic on POSIX and Windows; ``write_atomically``), so a crash mid-write leaves the previous checkpoint intact;
the file gets the permissions the user's umask gives any new file (``mkstemp`` alone would make it private).

``to_json(obj)`` writes metrics as strict JSON: NaN and Inf become ``null``.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from .backend import is_gpu_array, to_numpy
from .tensor import Tensor

SEP = "/"
META = "__meta__"
FORMAT = "minisegnet-checkpoint-1"


def _is_array(v):
    return isinstance(v, (np.ndarray, Tensor)) or is_gpu_array(v)


def _plain(v, key):
    # A JSON-ready copy of a non-array value; NumPy scalars become Python numbers.
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x, key) for x in v]
    if isinstance(v, dict):  # a dict inside a list (e.g. a history of epoch records) is stored as JSON
        return {str(k): _plain(x, f"{key}.{k}") for k, x in v.items()}
    raise TypeError(f"save: value at {key!r} has type {type(v).__name__}; expected an array, number, string or list")


def _flatten(obj, prefix, arrays, values, empty):
    for k, v in obj.items():
        if not isinstance(k, str) or SEP in k or k == META or not k:
            raise ValueError(
                f"save: key {k!r} under {prefix or 'the top level'!r} must be a non-empty str without {SEP!r}"
            )
        key = prefix + k
        if isinstance(v, dict):
            if not v:
                empty.append(key)
            _flatten(v, key + SEP, arrays, values, empty)
        elif _is_array(v):
            a = to_numpy(v.data if isinstance(v, Tensor) else v)
            if a.dtype.hasobject:
                raise TypeError(f"save: array at {key!r} has dtype object, which needs pickle")
            arrays[key] = a
        else:
            values[key] = _plain(v, key)


def save(path, obj):
    """Write the nested dict ``obj`` to ``path`` (an ``.npz`` file) atomically, without pickle."""
    if not isinstance(obj, dict):
        raise TypeError(f"save expects a dict, got {type(obj).__name__}")
    arrays, values, empty = {}, {}, []
    _flatten(obj, "", arrays, values, empty)
    meta = {"format": FORMAT, "order": list(_order(obj)), "values": values, "empty": empty}
    arrays[META] = np.array(json.dumps(meta))  # a 0-d unicode array loads without pickle

    def write(tmp):
        with open(tmp, "wb") as f:
            _write_npz(f, arrays)

    return write_atomically(path, write)


def write_atomically(path, write):
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it over ``path``; returns ``path``.

    ``os.replace`` is atomic, so ``path`` holds either what stood there before or the whole new file, also
    after a crash or Ctrl-C mid-write, and the temporary file is removed when ``write`` fails. A missing or
    unwritable folder is an OSError naming the folder (not the temporary file). ``torch.save``, the ONNX
    exporter and ``save`` all write through here.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as e:
        raise type(e)(e.errno, e.strerror, folder) from None
    try:
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; a written file follows the umask
        write(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename, so a power cut cannot leave an empty file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (``write_atomically``); returns ``path``."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write_atomically(path, write)


def _umask():
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def to_json(obj):
    """``obj`` as indented strict JSON text: NaN and Inf (which ``json.dumps`` writes as bare NaN) become null."""

    def finite(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(obj), indent=2, allow_nan=False)


def _write_npz(f, arrays):
    np.savez(f, **arrays)


def _order(obj, prefix=""):
    # Every leaf and dict key in insertion order, so load() rebuilds dicts in the order they were saved.
    for k, v in obj.items():
        yield prefix + k
        if isinstance(v, dict):
            yield from _order(v, prefix + k + SEP)


def load(path):
    """Read a checkpoint written by ``save``: the same nested dict, arrays as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):  # a plain .npy array
            raise ValueError("one array, not an .npz archive")
        with z:
            flat = {k: z[k] for k in z.files}
        meta = json.loads(str(flat.pop(META)))
        if meta.get("format") != FORMAT:
            raise ValueError(f"unknown format {meta.get('format')!r}")
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        why = "not an .npz archive" if "pickle" in str(e) or isinstance(e, EOFError) else e  # not NumPy's advice
        raise ValueError(f"{path!r} is not a readable minisegnet checkpoint (.npz written by save): {why}") from None

    out = {}
    leaves = {**flat, **meta["values"]}
    empty = set(meta["empty"])
    for key in meta["order"]:
        if key in leaves or key in empty:
            *parents, name = key.split(SEP)
            node = out
            for p in parents:
                node = node.setdefault(p, {})
            node[name] = leaves[key] if key in leaves else {}
    return out
