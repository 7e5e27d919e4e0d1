"""Segmentation networks: U-Net (with plain, residual or dense blocks and three decoders) and FCN-32s/16s/8s.

Both map images x (N, in_channels, H, W) to per-pixel class scores (logits) (N, num_classes, H, W).
"""

import numpy as np

from . import ops as F
from .blocks import conv_bn_relu, make_block
from .nn import Conv2d, ConvTranspose2d, MaxPool2d, Module, ModuleList, Parameter, Sequential, Upsample, default_rng
from .tensor import as_tensor

UPS = ("transpose", "bilinear", "unpool")


def he_init(model, keep=()):
    """Re-draw every convolution's weights of ``model`` as He et al. (2015) for ReLU networks; returns the model.

    Weights ~ N(0, 2 / fan_out), biases 0, where fan_out = OC*KH*KW is the number of outputs one input value
    reaches, the fan of He's backward derivation. For a Conv2d, weight (OC, C, KH, KW), that is
    ``torch.nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")``, as torchvision's ResNets do. For
    a ConvTranspose2d, weight (C, OC, KH, KW), it is still OC*KH*KW, which torch computes as its *fan_in*
    (``mode="fan_in"``): torch reads fan_out from ``weight.shape[0]``, C here, so ``mode="fan_out"`` would give
    2 / (C*KH*KW) instead, the same only when C == OC (in a U-Net's decoder C = 2*OC). The
    layers keep PyTorch's own default (a uniform draw that is about 3x smaller in variance); the training recipe
    applies this to U-Nets, whose first steps it makes much less dependent on the seed (measured in the README).
    Layers in ``keep`` keep the weights they have: the recipe keeps the class-score head at the default, since no
    ReLU follows it (its logits then start small and the loss near log C). Draws from the generator
    ``manual_seed`` sets.
    """
    rng = default_rng()
    for layer in model.modules():
        if isinstance(layer, (Conv2d, ConvTranspose2d)) and not any(layer is k for k in keep):
            w = layer.weight.data
            OC = w.shape[0] if isinstance(layer, Conv2d) else w.shape[1]
            w[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / (OC * w.shape[2] * w.shape[3]))
            if layer.bias is not None:
                layer.bias.data[...] = 0
    return model


def count_parameters(model):
    """The number of trainable numbers in ``model``."""
    return int(sum(p.size for p in model.parameters()))


def side_multiple(model="unet", depth=4):
    """Image sides a network takes are multiples of this: 2**depth for a U-Net or SegNet (each level halves
    the sides, and the decoder must double them back to the same size), 32 for an FCN (five 2x poolings).
    ``model``: "unet", "segnet", "fcn8s", "fcn16s", "fcn32s"."""
    return 32 if str(model).startswith("fcn") else 2**depth


def nearest_sides(n, multiple):
    """The valid sides nearest to ``n``, as text: the next multiple of ``multiple`` up, then the one below
    (``nearest_sides(20, 8)`` -> "24 or 16"; ``nearest_sides(5, 8)`` -> "8")."""
    below = n // multiple * multiple
    above = below + multiple if below < n else below
    return f"{above} or {below}" if 0 < below < above else f"{above}"


def _check_input(model, x, multiple):
    # One readable error for the two usual mistakes: the wrong number of channels, an unusable size.
    if x.ndim != 4:
        raise ValueError(f"{type(model).__name__} expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[1] != model.in_channels:
        raise ValueError(
            f"{type(model).__name__} expects {model.in_channels} input channels, got {x.shape[1]} "
            f"(input shape {tuple(x.shape)})"
        )
    if getattr(model, "pad_input", False):
        return
    for name, n in (("height", x.shape[2]), ("width", x.shape[3])):
        if n % multiple:
            raise ValueError(
                f"input {name} {n} is not divisible by {multiple} (2**{int(np.log2(multiple))} for "
                f"{model._why_multiple}); nearest valid sizes: {nearest_sides(n, multiple)}"
                + ("; or pass pad_input=True" if hasattr(model, "pad_input") else "")
            )


class UNet(Module):
    """U-Net (Ronneberger et al. 2015) with "same" padding, so the output has the input's H and W.

    Encoder: ``depth`` blocks, each followed by 2x2 max pooling; channels base, 2*base, ..., then a bottleneck
    block with base * 2**depth channels. Decoder, per level from the bottom: upsample and halve the channels,
    concatenate the encoder's feature map at that level (``skips=True``), and apply a block. A final 1x1
    convolution gives ``num_classes`` scores per pixel.

    ``block``: "plain" (conv-BN-ReLU twice), "residual" (plus a shortcut) or "dense" (see ``blocks.py``).
    ``up``: "transpose" (learned 2x2 transposed conv, stride 2), "bilinear" (fixed bilinear 2x, then a 1x1 conv
    to halve the channels) or "unpool" (a 1x1 conv to halve the channels, then max-unpooling with the indices
    the encoder's pooling recorded: SegNet's decoder; with ``skips=False`` the indices are the only skip).
    ``norm``: "batch" or None. H and W must be multiples of 2**depth; ``pad_input=True`` instead zero-pads the
    input up to the next multiples (split between both sides) and crops the output back.
    ``zero_init_residual=True`` (residual blocks only) starts each block's branch at zero, its last batch norm's
    gamma = 0. Off by default, as measured in lesson 6 (three seeds): it did not help, since every U-Net block
    changes its width, so every shortcut is a 1x1 projection and a zeroed block starts with no 3x3 context.
    """

    def __init__(
        self,
        in_channels=3,
        num_classes=2,
        base_channels=16,
        depth=4,
        block="plain",
        up="transpose",
        norm="batch",
        pad_input=False,
        skips=True,
        zero_init_residual=False,
    ):
        super().__init__()
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        if up not in UPS:
            raise ValueError(f"up must be one of {UPS}, got {up!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.block = block
        self.up = up
        self.norm = norm
        self.pad_input = pad_input
        self.skips = skips
        self._why_multiple = f"depth={depth}"
        widths = [base_channels * 2**i for i in range(depth + 1)]
        ins = [in_channels] + widths[: depth - 1]
        blocks = lambda i, o: make_block(block, i, o, norm, zero_init_residual)  # noqa: E731
        self.encoder = ModuleList(blocks(i, o) for i, o in zip(ins, widths))
        self.pool = MaxPool2d(2, return_indices=up == "unpool")
        self.bottleneck = blocks(widths[depth - 1], widths[depth])
        self.ups = ModuleList(self._make_up(widths[i + 1], widths[i]) for i in reversed(range(depth)))
        factor = 2 if skips else 1
        self.decoder = ModuleList(blocks(factor * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = Conv2d(widths[0], num_classes, 1)

    def _make_up(self, in_channels, out_channels):
        if self.up == "transpose":
            return ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        if self.up == "bilinear":
            return Sequential(Upsample(2, "bilinear"), Conv2d(in_channels, out_channels, 1))
        return Conv2d(in_channels, out_channels, 1)  # unpool: halve the channels at the low resolution first

    def forward(self, x):
        x = as_tensor(x)
        _check_input(self, x, side_multiple("unet", self.depth))
        H, W = x.shape[2:]
        if self.pad_input:
            m = side_multiple("unet", self.depth)
            PH, PW = -H % m, -W % m
            x = F.pad(x, ((0, 0), (0, 0), (PH // 2, PH - PH // 2), (PW // 2, PW - PW // 2)))
        features, indices = [], []
        for block in self.encoder:
            x = block(x)
            features.append(x)
            if self.up == "unpool":
                x, idx = self.pool(x)
                indices.append(idx)
            else:
                x = self.pool(x)
        x = self.bottleneck(x)
        for level, (up, block) in enumerate(zip(self.ups, self.decoder)):
            skip = features[-1 - level]
            x = up(x)
            if self.up == "unpool":
                x = F.max_unpool2d(x, indices[-1 - level], 2, output_size=skip.shape[2:])
            x = block(F.concat([skip, x], axis=1) if self.skips else x)
        x = self.head(x)
        if self.pad_input and x.shape[2:] != (H, W):
            x = F.center_crop(x, (H, W))
        return x

    def extra_repr(self):
        return (
            f"in_channels={self.in_channels}, num_classes={self.num_classes}, depth={self.depth}, "
            f"block={self.block!r}, up={self.up!r}, norm={self.norm!r}, skips={self.skips}"
        )


def bilinear_kernel(channels, size=4):
    """Weights (C, C, size, size) that make ConvTranspose2d(stride=size//2) a per-channel bilinear upsampling.

    The FCN paper's initialisation: a tent 1 - |i - center| / factor in each axis, on the diagonal only, so
    channel c is upsampled from channel c alone.
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    tent = 1 - np.abs(np.arange(size) - center) / factor
    w = np.zeros((channels, channels, size, size), dtype=np.float32)
    w[np.arange(channels), np.arange(channels)] = np.outer(tent, tent)
    return w


class FCN(Module):
    """Fully convolutional network (Long, Shelhamer and Darrell 2015), a small VGG-like version.

    Backbone: five stages of conv-BN-ReLU (1, 1, 2, 2, 2 convolutions with base, 2, 4, 8, 8 x base channels),
    each ending in 2x2 max pooling, so pool5 has stride 32. The classifier's "fully connected" layers become
    convolutions: fc6 (3x3) and fc7 (1x1), then ``score_fr`` (1x1) gives coarse class scores.

    * "32s": the coarse scores are upsampled 32x.
    * "16s": the scores are upsampled 2x by ``upscore2`` and added to ``score_pool4`` (1x1 conv on pool4), then 16x.
    * "8s": that sum is upsampled 2x by ``upscore_pool4`` and added to ``score_pool3``, then 8x.

    The 2x steps are learned transposed convolutions (kernel 4, stride 2, padding 1, no bias) initialised to
    bilinear upsampling, and the skip score layers start at zero, both as in the paper, so training starts
    from the coarser net. The final upsampling is fixed bilinear interpolation (no parameters).
    H and W must be multiples of 32.
    """

    def __init__(self, in_channels=3, num_classes=2, variant="8s", base_channels=16):
        super().__init__()
        if variant not in ("32s", "16s", "8s"):
            raise ValueError(f"variant must be '32s', '16s' or '8s', got {variant!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.variant = variant
        self._why_multiple = "FCN's five poolings"
        c = base_channels
        widths = [c, 2 * c, 4 * c, 8 * c, 8 * c]  # channels of each stage
        repeats = [1, 1, 2, 2, 2]  # convolutions in each stage
        previous = in_channels
        for s, (width, n) in enumerate(zip(widths, repeats), start=1):
            layers = []
            for _ in range(n):
                layers += list(conv_bn_relu(previous, width))
                previous = width
            setattr(self, f"stage{s}", Sequential(*layers, MaxPool2d(2)))
        self.fc6 = conv_bn_relu(8 * c, 8 * c, 3)
        self.fc7 = conv_bn_relu(8 * c, 8 * c, 1)
        self.score_fr = Conv2d(8 * c, num_classes, 1)
        if variant in ("16s", "8s"):
            self.score_pool4 = self._zero_score(8 * c)
            self.upscore2 = self._bilinear_up()
        if variant == "8s":
            self.score_pool3 = self._zero_score(4 * c)
            self.upscore_pool4 = self._bilinear_up()

    def _zero_score(self, in_channels):
        conv = Conv2d(in_channels, self.num_classes, 1)
        conv.weight = Parameter(np.zeros_like(conv.weight.data))
        conv.bias = Parameter(np.zeros_like(conv.bias.data))
        return conv

    def _bilinear_up(self):
        up = ConvTranspose2d(self.num_classes, self.num_classes, 4, stride=2, padding=1, bias=False)
        up.weight = Parameter(bilinear_kernel(self.num_classes))
        return up

    def forward(self, x):
        x = as_tensor(x)
        _check_input(self, x, side_multiple("fcn"))
        pool3 = self.stage3(self.stage2(self.stage1(x)))
        pool4 = self.stage4(pool3)
        score = self.score_fr(self.fc7(self.fc6(self.stage5(pool4))))
        factor = 32
        if self.variant in ("16s", "8s"):
            score = self.upscore2(score) + self.score_pool4(pool4)
            factor = 16
        if self.variant == "8s":
            score = self.upscore_pool4(score) + self.score_pool3(pool3)
            factor = 8
        return F.upsample(score, scale_factor=factor, mode="bilinear")

    def extra_repr(self):
        return f"in_channels={self.in_channels}, num_classes={self.num_classes}, variant={self.variant!r}"
