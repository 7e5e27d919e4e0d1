"""The arrays shipped inside the package (``digits.npz``, ``nuclei.npz``; see DATA_LICENSES and
scripts/build_datasets.py), each read once, without pickle."""

from functools import cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


@cache
def load_shipped(name):
    """``name``.npz of this folder -> {array name: array}; a missing file says how to rebuild it."""
    path = HERE / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python scripts/build_datasets.py {name}`")
    with np.load(path, allow_pickle=False) as f:
        return {key: f[key] for key in f.files}
