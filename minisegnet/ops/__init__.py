"""Every differentiable op of minisegnet: ``import minisegnet.ops as F``.

Each op is a ``Function`` subclass (forward then backward on raw arrays) with a
lowercase function under it; the lowercase functions are the public API.
"""

from .activation import dropout, dropout2d, log_softmax, relu, sigmoid, softmax, tanh
from .array import broadcast_to, center_crop, concat, getitem, max, mean, pad, reshape, sum, transpose
from .conv import conv2d, conv_out_size, conv_transpose2d, conv_transpose_out_size
from .dice import soft_dice_loss
from .elementwise import add, div, exp, log, matmul, mul, neg, pow, sqrt, sub, sum_to
from .focal import focal_loss
from .loss import binary_cross_entropy_with_logits, cross_entropy, dice_ce_loss
from .norm import batch_norm
from .pool import avg_pool2d, max_pool2d, max_unpool2d
from .upsample import bed_of_nails, upsample
from .weightmap import unet_weight_map
