"""minisegnet.nn: the layers and the Module bookkeeping under one name, as ``torch.nn``.

    >>> from minisegnet import nn
    >>> conv = nn.Conv2d(3, 8, 3, padding=1)
    >>> [name for name, _ in conv.named_parameters()]
    ['weight', 'bias']

The code lives in two modules, layered one way: ``module.py`` holds ``Module``, ``Parameter``,
the containers and the weight generator (``manual_seed``); ``layers.py`` builds every layer on
them, each wrapping one op from ``minisegnet.ops``. This module only re-exports both.
"""

from .layers import (
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dropout2d,
    Identity,
    MaxPool2d,
    MaxUnpool2d,
    ReLU,
    Upsample,
)
from .module import Module, ModuleList, Parameter, Sequential, default_rng, manual_seed

__all__ = [
    "BatchNorm2d",
    "Conv2d",
    "ConvTranspose2d",
    "Dropout2d",
    "Identity",
    "MaxPool2d",
    "MaxUnpool2d",
    "Module",
    "ModuleList",
    "Parameter",
    "ReLU",
    "Sequential",
    "Upsample",
    "default_rng",
    "manual_seed",
]
