"""DataLoader: batches of (images, masks) NumPy arrays from any data set, reproducibly shuffled."""

import math

import numpy as np


class DataLoader:
    """Iterate over ``dataset`` in batches of NumPy arrays.

    Each batch is ``(images (B, 3, H, W) float32, masks (B, H, W) int64)``; multi-label masks
    come as (B, C, H, W) in their stored dtype. ``len(loader)`` is the number of batches:
    ceil(N / batch_size), or floor(N / batch_size) with ``drop_last=True``.

    Randomness (the shuffled order and the augmentations) comes from
    ``np.random.default_rng(seed + epoch)``, so epoch e gives the same batches in every run: a
    resumed run calls ``loader.set_epoch(e)`` and continues exactly. ``loader.epoch`` counts up
    by one each time iteration starts, so ``for epoch in range(E): for batch in loader: ...``
    sees epochs 0, 1, ..., E-1.

    ``augment``: a callable ``(image, mask, rng) -> (image, mask)`` applied to each example
    (see ``minisegnet.data.augment``).
    """

    def __init__(self, dataset, batch_size=8, shuffle=False, seed=0, drop_last=False, augment=None):
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

    def set_epoch(self, epoch):
        """Make the next iteration use the order and augmentations of epoch ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self):
        N, B = len(self.dataset), self.batch_size
        return N // B if self.drop_last else math.ceil(N / B)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        N = len(self.dataset)
        order = rng.permutation(N) if self.shuffle else np.arange(N)
        return self._batches(order, rng)

    def _batches(self, order, rng):
        for b in range(len(self)):
            images, masks = [], []
            for i in order[b * self.batch_size : (b + 1) * self.batch_size]:
                image, mask = self.dataset[int(i)]
                if self.augment is not None:
                    image, mask = self.augment(image, mask, rng)
                images.append(image)
                masks.append(mask)
            yield _stack(images, np.float32), _stack(masks, np.int64 if masks[0].ndim == 2 else None)


def _stack(arrays, dtype):
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"examples in one batch have different shapes {sorted(shapes)}; crop them to one size "
            "(augment=random_crop(size)) or use batch_size=1"
        )
    out = np.stack(arrays)
    return out if dtype is None else out.astype(dtype, copy=False)
