"""Graduating from minisegnet: the same networks in PyTorch, and ONNX files that run without Python.

minisegnet's ``state_dict`` uses PyTorch's names and layouts, so every U-Net and FCN has a twin written with
``torch.nn`` whose modules carry the same names: the weights and batch-norm statistics load into it unchanged and
it computes the same outputs, in training and in eval mode.

    to_torch(model)             UNet / FCN -> torch.nn.Module (same names, weights, statistics and mode)
    from_torch(module)          a module to_torch made (and perhaps trained on) -> UNet / FCN
    to_onnx(model, path, ...)   one self-contained .onnx file, any batch size and image size the model takes;
                                checked with onnxruntime where it is installed
    save_torch(model, path)     a .pt file: the twin's state_dict and config (``load_torch(path)`` rebuilds it)

Both write a temporary file beside ``path`` and rename it (``io.write_atomically``): ``path`` holds the old
file or the whole new one, never half of one. ``check_target`` is what ``minisegnet export`` checks first.

torch, onnx, onnxscript and onnxruntime are optional (``pip install -e ".[export]"``); torch is imported inside
these functions only, so ``import minisegnet`` never needs it.
"""

import errno
import functools
import os
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .io import write_atomically
from .models import FCN, UNet

INSTALL = 'pip install -e ".[export]"'


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(f"minisegnet.export needs PyTorch; install it with {INSTALL}") from None
    return torch


@functools.cache
def torch_classes():
    """(TorchUNet, TorchFCN): blocks.py and models.py written with torch.nn, with the same attribute names.

    Built once, on first use, so that torch is imported only when an export is asked for.
    """
    torch = _torch()
    tn, tF = torch.nn, torch.nn.functional

    def conv_bn_relu(in_channels, out_channels, kernel_size, norm):
        conv = tn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm is None)
        if norm == "batch":
            return tn.Sequential(conv, tn.BatchNorm2d(out_channels), tn.ReLU())
        return tn.Sequential(conv, tn.ReLU())

    class PlainBlock(tn.Module):
        def __init__(self, in_channels, out_channels, norm, residual=False):
            super().__init__()
            self.conv1 = tn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm is None)
            self.bn1 = tn.BatchNorm2d(out_channels) if norm == "batch" else None
            self.conv2 = tn.Conv2d(out_channels, out_channels, 3, padding=1, bias=norm is None)
            self.bn2 = tn.BatchNorm2d(out_channels) if norm == "batch" else None
            self.residual = residual
            self.shortcut = None
            if residual and in_channels != out_channels:
                proj = tn.Conv2d(in_channels, out_channels, 1, bias=norm is None)
                self.shortcut = tn.Sequential(proj, tn.BatchNorm2d(out_channels)) if norm else tn.Sequential(proj)

        def forward(self, x):
            y = self.conv1(x)
            y = tF.relu(y if self.bn1 is None else self.bn1(y))
            y = self.conv2(y)
            y = y if self.bn2 is None else self.bn2(y)
            if self.residual:
                y = y + (x if self.shortcut is None else self.shortcut(x))
            return tF.relu(y)

    class DenseBlock(tn.Module):
        def __init__(self, in_channels, out_channels, norm, layers=3):
            super().__init__()
            growth = max(out_channels // 2, 1)
            self.layers = tn.ModuleList(conv_bn_relu(in_channels + k * growth, growth, 3, norm) for k in range(layers))
            self.transition = conv_bn_relu(in_channels + layers * growth, out_channels, 1, norm)

        def forward(self, x):
            features = [x]
            for layer in self.layers:
                features.append(layer(torch.cat(features, 1)))
            return self.transition(torch.cat(features, 1))

    def make_block(kind, in_channels, out_channels, norm):
        if kind == "dense":
            return DenseBlock(in_channels, out_channels, norm)
        return PlainBlock(in_channels, out_channels, norm, residual=kind == "residual")

    class TorchUNet(tn.Module):
        """models.UNet in torch.nn; ``config`` holds the arguments ``from_torch`` rebuilds it with."""

        def __init__(self, in_channels, num_classes, base_channels, depth, block, up, norm, pad_input, skips):
            super().__init__()
            self.config = dict(in_channels=in_channels, num_classes=num_classes, base_channels=base_channels)
            self.config.update(depth=depth, block=block, up=up, norm=norm, pad_input=pad_input, skips=skips)
            widths = [base_channels * 2**i for i in range(depth + 1)]
            ins = [in_channels] + widths[: depth - 1]
            self.encoder = tn.ModuleList(make_block(block, i, o, norm) for i, o in zip(ins, widths))
            self.pool = tn.MaxPool2d(2, return_indices=up == "unpool")
            self.bottleneck = make_block(block, widths[depth - 1], widths[depth], norm)
            self.ups = tn.ModuleList(self._make_up(up, widths[i + 1], widths[i]) for i in reversed(range(depth)))
            factor = 2 if skips else 1
            self.decoder = tn.ModuleList(
                make_block(block, factor * widths[i], widths[i], norm) for i in reversed(range(depth))
            )
            self.head = tn.Conv2d(widths[0], num_classes, 1)

        @staticmethod
        def _make_up(up, in_channels, out_channels):
            if up == "transpose":
                return tn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
            if up == "bilinear":
                return tn.Sequential(
                    tn.Upsample(scale_factor=2, mode="bilinear"), tn.Conv2d(in_channels, out_channels, 1)
                )
            return tn.Conv2d(in_channels, out_channels, 1)

        def forward(self, x):
            up, m = self.config["up"], 2 ** self.config["depth"]
            H, W = x.shape[2:]
            PH, PW = -H % m, -W % m
            if self.config["pad_input"]:
                x = tF.pad(x, (PW // 2, PW - PW // 2, PH // 2, PH - PH // 2))
            features, indices = [], []
            for block in self.encoder:
                x = block(x)
                features.append(x)
                if up == "unpool":
                    x, idx = self.pool(x)
                    indices.append(idx)
                else:
                    x = self.pool(x)
            x = self.bottleneck(x)
            for level, (upsample, block) in enumerate(zip(self.ups, self.decoder)):
                skip = features[-1 - level]
                x = upsample(x)
                if up == "unpool":
                    x = tF.max_unpool2d(x, indices[-1 - level], 2, output_size=skip.shape[2:])
                x = block(torch.cat([skip, x], 1) if self.config["skips"] else x)
            x = self.head(x)
            if self.config["pad_input"]:
                x = x[..., PH // 2 : PH // 2 + H, PW // 2 : PW // 2 + W]
            return x

    class TorchFCN(tn.Module):
        """models.FCN in torch.nn; ``config`` holds the arguments ``from_torch`` rebuilds it with."""

        def __init__(self, in_channels, num_classes, variant, base_channels):
            super().__init__()
            self.config = dict(in_channels=in_channels, num_classes=num_classes, variant=variant)
            self.config["base_channels"] = base_channels
            c = base_channels
            previous = in_channels
            for s, (width, n) in enumerate(zip([c, 2 * c, 4 * c, 8 * c, 8 * c], [1, 1, 2, 2, 2]), start=1):
                layers = []
                for _ in range(n):
                    layers += list(conv_bn_relu(previous, width, 3, "batch"))
                    previous = width
                setattr(self, f"stage{s}", tn.Sequential(*layers, tn.MaxPool2d(2)))
            self.fc6 = conv_bn_relu(8 * c, 8 * c, 3, "batch")
            self.fc7 = conv_bn_relu(8 * c, 8 * c, 1, "batch")
            self.score_fr = tn.Conv2d(8 * c, num_classes, 1)
            if variant in ("16s", "8s"):
                self.score_pool4 = tn.Conv2d(8 * c, num_classes, 1)
                self.upscore2 = tn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
            if variant == "8s":
                self.score_pool3 = tn.Conv2d(4 * c, num_classes, 1)
                self.upscore_pool4 = tn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)

        def forward(self, x):
            pool3 = self.stage3(self.stage2(self.stage1(x)))
            pool4 = self.stage4(pool3)
            score = self.score_fr(self.fc7(self.fc6(self.stage5(pool4))))
            factor = 32
            if self.config["variant"] in ("16s", "8s"):
                score = self.upscore2(score) + self.score_pool4(pool4)
                factor = 16
            if self.config["variant"] == "8s":
                score = self.upscore_pool4(score) + self.score_pool3(pool3)
                factor = 8
            return tF.interpolate(score, scale_factor=factor, mode="bilinear", align_corners=False)

    return TorchUNet, TorchFCN


def model_config(model):
    """The constructor arguments that rebuild ``model`` (a UNet or an FCN) as a dict."""
    if isinstance(model, UNet):
        names = ("in_channels", "num_classes", "depth", "block", "up", "norm", "pad_input", "skips")
        config = {name: getattr(model, name) for name in names}
        config["base_channels"] = model.head.weight.shape[1]
        return config
    if isinstance(model, FCN):
        config = {name: getattr(model, name) for name in ("in_channels", "num_classes", "variant")}
        config["base_channels"] = model.stage1[0].weight.shape[0]
        return config
    raise TypeError(f"export works on minisegnet UNet and FCN models, got {type(model).__name__}")


def to_torch(model):
    """``model`` (UNet or FCN, on any device) -> the torch.nn twin on the CPU, with its weights, statistics and mode.

    The twin's ``state_dict`` has the same names in the same order; its outputs equal the model's.
    """
    torch = _torch()
    TorchUNet, TorchFCN = torch_classes()
    config = model_config(model)
    module = (TorchUNet if isinstance(model, UNet) else TorchFCN)(**config)
    state = {name: torch.from_numpy(np.array(to_numpy(a))) for name, a in model.state_dict().items()}
    module.load_state_dict(state, strict=True)
    module.train(model.training)
    return module


def from_torch(module):
    """A module ``to_torch`` made (trained since, or wrapped in DDP) -> the minisegnet model, on the CPU."""
    module = getattr(module, "module", module)  # DistributedDataParallel and DataParallel wrap the model
    TorchUNet, TorchFCN = torch_classes()
    if not isinstance(module, (TorchUNet, TorchFCN)):
        raise TypeError(f"from_torch needs a module made by minisegnet.export.to_torch, got {type(module).__name__}")
    model = (UNet if isinstance(module, TorchUNet) else FCN)(**module.config)
    model.load_state_dict({name: t.detach().cpu().numpy() for name, t in module.state_dict().items()})
    model.train(module.training)
    return model


def save_torch(model, path):
    """Write ``model``'s torch twin to ``path`` with ``torch.save``: {"kind", "config", "state_dict"}; returns path."""
    torch = _torch()
    module = to_torch(model)
    kind = "UNet" if isinstance(model, UNet) else "FCN"
    saved = {"kind": kind, "config": module.config, "state_dict": module.state_dict()}
    return write_atomically(path, lambda tmp: torch.save(saved, tmp))


def load_torch(path):
    """The torch twin a ``save_torch`` file holds (tensors and plain values only: loaded with weights_only)."""
    torch = _torch()
    saved = torch.load(str(path), weights_only=True)
    TorchUNet, TorchFCN = torch_classes()
    module = (TorchUNet if saved["kind"] == "UNet" else TorchFCN)(**saved["config"])
    module.load_state_dict(saved["state_dict"])
    return module.eval()


def to_onnx(model, path, input_shape=None, opset=18, check=True):
    """Write ``model`` in eval mode as one ONNX file at ``path`` (the weights inside it); returns the path.

    ``input_shape`` (N, C, H, W) is the example input traced (default (1, in_channels, 2**depth, 2**depth)
    for a U-Net, 32 x 32 for an FCN); batch size, height and width stay free in the file, so it takes any
    size the model takes (a U-Net's sides divisible by 2**depth, an FCN's by 32). With ``check`` and
    onnxruntime installed, the file is run on a random input and compared with the model (max abs
    difference <= 1e-4) before it is put at ``path``.
    """
    torch = _torch()
    module = to_torch(model).eval()
    if input_shape is None:
        side = 2**model.depth if isinstance(model, UNet) else 32
        input_shape = (1, model.in_channels, side, side)
    x = torch.from_numpy(np.random.default_rng(0).random(input_shape, dtype=np.float32))
    free = torch.export.Dim.DYNAMIC  # the exporter works out which sizes the network takes

    def write(tmp):
        torch.onnx.export(
            module,
            (x,),
            tmp,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: free, 2: free, 3: free}},
            opset_version=opset,
            dynamo=True,
            external_data=False,  # the weights inside the .onnx file, not in a .onnx.data beside it
            verbose=False,
        )
        if check:
            check_onnx(tmp, module, x.numpy())

    return write_atomically(path, write)


def check_onnx(path, module, x):
    """Run the ONNX file at ``path`` on x with onnxruntime (when installed) and compare with ``module(x)``."""
    try:
        import onnxruntime
    except ImportError:
        return None
    torch = _torch()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x})[0]
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    error = float(np.abs(got - expected).max())
    if error > 1e-4:
        raise RuntimeError(f"the ONNX file {path} differs from the model by {error:.2e} (expected <= 1e-4)")
    return error


def check_target(path, source=None, force=False):
    """Make ``path`` ready to be written by an export, or raise one clear error naming it.

    Refused: a folder; ``source`` itself (the checkpoint exported), even with ``force``; an existing
    file unless ``force``. A missing folder above ``path`` is made; one that cannot be written is a
    PermissionError naming it. Returns ``path`` as a Path.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"-o {path} is a folder; name a file in it")
    if source is not None and path.exists() and os.path.samefile(path, source):
        raise ValueError(f"-o {path} is the checkpoint being exported; name another file")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to replace it, or name another file with -o")
    folder = path.parent
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise NotADirectoryError(f"-o {path}: {above} is a file, not a folder")
            break
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))
    return path
