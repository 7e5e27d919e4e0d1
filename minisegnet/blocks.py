"""The convolution blocks U-Net is built from: plain, residual and dense, all keeping H and W.

Every block maps (N, in_channels, H, W) -> (N, out_channels, H, W) with 3x3 convolutions padded by 1. With
``norm="batch"`` each convolution is followed by BatchNorm2d and has no bias (the norm's shift replaces it);
with ``norm=None`` the convolutions keep their bias.
"""

from . import ops as F
from .nn import BatchNorm2d, Conv2d, Module, ModuleList, ReLU, Sequential

NORMS = ("batch", None)


def conv_bn_relu(in_channels, out_channels, kernel_size=3, norm="batch"):
    """Sequential(conv, [BatchNorm2d], ReLU) with "same" padding for an odd kernel."""
    conv = Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm is None)
    return Sequential(conv, BatchNorm2d(out_channels), ReLU()) if norm == "batch" else Sequential(conv, ReLU())


class PlainBlock(Module):
    """(conv 3x3 - BN - ReLU) twice: the original U-Net block, with padding so the size is kept."""

    def __init__(self, in_channels, out_channels, norm="batch"):
        super().__init__()
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1, bias=norm is None)
        self.bn1 = BatchNorm2d(out_channels) if norm == "batch" else None
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=norm is None)
        self.bn2 = BatchNorm2d(out_channels) if norm == "batch" else None

    def _branch(self, x):
        x = self.conv1(x)
        x = F.relu(x if self.bn1 is None else self.bn1(x))
        x = self.conv2(x)
        return x if self.bn2 is None else self.bn2(x)

    def forward(self, x):
        return F.relu(self._branch(x))


class ResidualBlock(PlainBlock):
    """The plain block plus a shortcut added before the last ReLU: relu(branch(x) + shortcut(x)).

    The shortcut is the identity when in_channels == out_channels, else a 1x1 convolution (+ BN) that
    projects x to out_channels (ResNet's projection shortcut). ``zero_init=True`` starts the branch's last
    batch norm at gamma = 0 (Goyal et al. 2017; torchvision's ``zero_init_residual``): the block then begins
    as relu(shortcut(x)), and the branch grows in from zero as training needs it.
    """

    def __init__(self, in_channels, out_channels, norm="batch", zero_init=False):
        super().__init__(in_channels, out_channels, norm)
        if zero_init and self.bn2 is not None:
            self.bn2.weight.data[...] = 0
        self.shortcut = None
        if in_channels != out_channels:
            proj = Conv2d(in_channels, out_channels, 1, bias=norm is None)
            self.shortcut = Sequential(proj, BatchNorm2d(out_channels)) if norm == "batch" else Sequential(proj)

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self._branch(x) + skip)


class DenseBlock(Module):
    """A small DenseNet block: ``layers`` conv-BN-ReLU layers, each seeing the concat of all features so far.

    Layer k takes in_channels + k*growth channels and adds ``growth = max(out_channels // 2, 1)`` new ones;
    the input and all new features (in_channels + layers*growth channels) then pass a 1x1 transition
    conv-BN-ReLU down to out_channels.
    """

    def __init__(self, in_channels, out_channels, norm="batch", layers=3):
        super().__init__()
        self.growth = max(out_channels // 2, 1)
        self.layers = ModuleList(
            conv_bn_relu(in_channels + k * self.growth, self.growth, 3, norm) for k in range(layers)
        )
        self.transition = conv_bn_relu(in_channels + layers * self.growth, out_channels, 1, norm)

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(F.concat(features, axis=1)))
        return self.transition(F.concat(features, axis=1))


BLOCKS = {"plain": PlainBlock, "residual": ResidualBlock, "dense": DenseBlock}


def make_block(kind, in_channels, out_channels, norm="batch", zero_init_residual=False):
    """One of BLOCKS by name, with a clear error for an unknown name or norm.

    ``zero_init_residual`` starts a residual block's branch at zero (see ``ResidualBlock``); other blocks ignore it.
    """
    if kind not in BLOCKS:
        raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {kind!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be 'batch' or None, got {norm!r}")
    if kind == "residual":
        return ResidualBlock(in_channels, out_channels, norm, zero_init=zero_init_residual)
    return BLOCKS[kind](in_channels, out_channels, norm)
