"""Every differentiable op of minisegnet: ``import minisegnet.ops as F``.

Each op is a ``Function`` subclass (forward then backward on raw arrays) with a
lowercase function under it; the lowercase functions are the public API.

The files here are the lessons' versions. Some ops have a faster twin in ``ops/fast/``, registered
there in one table (imported by ``minisegnet/__init__.py``) and run by default; run everything on
the versions here, CUDA kernels off, with

    with minisegnet.ops.reference_kernels():      # or MINISEGNET_REFERENCE=1, read at import
        loss = model(x)

Your own op in place of the library's, everywhere the library calls it (layers, models, the
training recipe's loss), until the block ends; ``lib`` holds the originals:

    with minisegnet.ops.override(conv2d=my_conv2d) as lib:
        logits = model(x)
"""

from ..registry import reference_kernels
from .activation import dropout, dropout2d, log_softmax, relu, sigmoid, softmax, tanh
from .array import broadcast_to, center_crop, concat, getitem, max, mean, pad, reshape, sum, transpose
from .conv import conv2d, conv_out_size, conv_transpose2d, conv_transpose_out_size
from .dice import soft_dice_loss
from .dispatch import override
from .elementwise import add, div, exp, log, matmul, mul, neg, pow, sqrt, sub, sum_to
from .focal import focal_loss
from .loss import binary_cross_entropy_with_logits, cross_entropy, dice_ce_loss
from .norm import batch_norm
from .pool import avg_pool2d, max_pool2d, max_unpool2d
from .upsample import bed_of_nails, upsample
from .weightmap import unet_weight_map
