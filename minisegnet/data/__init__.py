"""Data: synthetic shapes, digit scenes, nuclei, image folders, a DataLoader and augmentations.

Every data set follows one small protocol (see ``dataset.py``): ``len(ds)``, ``ds[i] -> (image
(3, H, W) float32 in [0, 1], mask (H, W) int64)``, ``ds.num_classes``, ``ds.class_names`` and
``ds.palette``. The built-in sets return an ``ArrayDataset`` whose ``.images`` (N, 3, H, W) and
``.masks`` (N, H, W) arrays can also be used directly.

    >>> from minisegnet.data import shapes, DataLoader, Compose, flip, rot90
    >>> train = shapes(512, seed=0)
    >>> images, masks = next(iter(DataLoader(train, batch_size=16, shuffle=True, augment=Compose([flip, rot90]))))
    >>> images.shape, masks.shape
    ((16, 3, 64, 64), (16, 64, 64))
"""

from .augment import Compose, flip, random_crop, rot90
from .dataset import ArrayDataset
from .digits import digit_scenes
from .folder import IGNORE_INDEX, FolderDataset
from .layouts import LayoutDataset, load_layout
from .loader import DataLoader
from .nuclei import nuclei
from .palette import colorize, mask_from_rgb, voc_palette
from .shapes import shapes
