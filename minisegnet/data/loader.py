"""DataLoader: batches of (images, masks) NumPy arrays from any data set, reproducibly shuffled."""

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class DataLoader:
    """Iterate over ``dataset`` in batches of NumPy arrays.

    Each batch is ``(images (B, 3, H, W) float32, masks (B, H, W) int64)``; multi-label masks
    come as (B, C, H, W) in their stored dtype. ``len(loader)`` is the number of batches:
    ceil(N / batch_size), or floor(N / batch_size) with ``drop_last=True``.

    Randomness (the shuffled order and the augmentations) comes from
    ``np.random.default_rng([seed, epoch])``, so epoch e gives the same batches in every run (and
    seed 0's epoch 1 is not seed 1's epoch 0): a resumed run calls ``loader.set_epoch(e)`` and
    continues exactly. A data set with a ``set_epoch`` method (random crops) is told the epoch too.
    ``loader.epoch`` counts up by one each time iteration starts, so ``for epoch in range(E): for
    batch in loader: ...`` sees epochs 0, 1, ..., E-1.

    ``augment``: a callable ``(image, mask, rng) -> (image, mask)`` applied to each example
    (see ``minisegnet.data.augment``).

    ``prefetch``: batches a worker thread reads ahead while the current one is used (PIL and NumPy let
    go of the interpreter lock while they decode and copy). None: 2 for a data set that reads from disk
    (``dataset.reads_from_disk``), 0 for arrays in memory. The batches are the same either way.
    """

    def __init__(self, dataset, batch_size=8, shuffle=False, seed=0, drop_last=False, augment=None, prefetch=None):
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be a callable (image, mask, rng) -> (image, mask), got {augment!r}")
        if len(dataset) == 0:
            raise ValueError("the data set is empty: nothing to load")
        if drop_last and len(dataset) < batch_size:
            raise ValueError(f"drop_last=True with {len(dataset)} examples and batch_size={batch_size} gives no batch")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self.epoch = 0
        if prefetch is None:
            prefetch = 2 if getattr(dataset, "reads_from_disk", False) else 0
        if int(prefetch) != prefetch or prefetch < 0:
            raise ValueError(f"prefetch must be a whole number of batches >= 0, got {prefetch!r}")
        self.prefetch = int(prefetch)

    def set_epoch(self, epoch):
        """Make the next iteration use the order and augmentations of epoch ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self):
        N, B = len(self.dataset), self.batch_size
        return N // B if self.drop_last else math.ceil(N / B)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        N = len(self.dataset)
        order = rng.permutation(N) if self.shuffle else np.arange(N)
        if self.prefetch:
            return self._read_ahead(order, rng)
        return (self._batch(order, b, rng) for b in range(len(self)))

    def _batch(self, order, b, rng):
        images, masks = [], []
        for i in order[b * self.batch_size : (b + 1) * self.batch_size]:
            image, mask = self.dataset[int(i)]
            if self.augment is not None:
                image, mask = self.augment(image, mask, rng)
            images.append(image)
            masks.append(mask)
        return _stack(images, np.float32), _stack(masks, np.int64 if masks[0].ndim == 2 else None)

    def _read_ahead(self, order, rng):
        # One worker runs the batches in order, so the augmentations draw from rng in the same order as without it.
        worker = ThreadPoolExecutor(max_workers=1)
        ahead = deque()
        try:
            for b in range(len(self)):
                while len(ahead) <= self.prefetch and b + len(ahead) < len(self):
                    ahead.append(worker.submit(self._batch, order, b + len(ahead), rng))
                yield ahead.popleft().result()
        finally:
            worker.shutdown(cancel_futures=True)


def _stack(arrays, dtype):
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"examples in one batch have different shapes {sorted(shapes)}; crop them to one size "
            "(augment=random_crop(size)) or use batch_size=1"
        )
    out = np.stack(arrays)
    return out if dtype is None else out.astype(dtype, copy=False)
