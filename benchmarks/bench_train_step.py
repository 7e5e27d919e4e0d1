"""One full U-Net training step: forward, cross-entropy + soft Dice, backward, Adam step.

Batch 16 of 3x128x128 images, 2 classes, UNet(base_channels=16, depth=4) (plain blocks, BatchNorm, transposed-conv
decoder), float32. The PyTorch twin below has the same layers under the same names, loads minisegnet's initial
weights, and takes the same step, so both libraries do the same arithmetic.

The step never turns a device value into a Python number (no ``float(loss)``): a training loop only does that when
it logs, and doing it every step would make the GPU wait for the host.

    python benchmarks/bench_train_step.py --quick [--device cpu|gpu|both] [--compare-torch]
"""

import sys

import numpy as np

from minisegnet import Tensor, nn, optim
from minisegnet import ops as F
from minisegnet.backend import to_device
from minisegnet.models import UNet, count_parameters

from timing import Impl, compare, import_torch, resolve_devices, settings, to_torch, torch_impl, torch_on

FULL = {"batch": 16, "size": 128, "base": 16, "depth": 4, "classes": 2}
QUICK = {"batch": 2, "size": 32, "base": 4, "depth": 2, "classes": 2}


def torch_unet(torch, in_channels=3, num_classes=2, base_channels=16, depth=4):
    """minisegnet's UNet(block="plain", up="transpose", norm="batch") written with torch.nn, same parameter names."""
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv1, self.bn1 = tnn.Conv2d(cin, cout, 3, padding=1, bias=False), tnn.BatchNorm2d(cout)
            self.conv2, self.bn2 = tnn.Conv2d(cout, cout, 3, padding=1, bias=False), tnn.BatchNorm2d(cout)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(x)))

    class TorchUNet(tnn.Module):
        def __init__(self):
            super().__init__()
            widths = [base_channels * 2**i for i in range(depth + 1)]
            ins = [in_channels] + widths[: depth - 1]
            self.encoder = tnn.ModuleList(Block(i, o) for i, o in zip(ins, widths))
            self.pool = tnn.MaxPool2d(2)
            self.bottleneck = Block(widths[depth - 1], widths[depth])
            self.ups = tnn.ModuleList(
                tnn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2) for i in reversed(range(depth))
            )
            self.decoder = tnn.ModuleList(Block(2 * widths[i], widths[i]) for i in reversed(range(depth)))
            self.head = tnn.Conv2d(widths[0], num_classes, 1)

        def forward(self, x):
            features = []
            for block in self.encoder:
                x = block(x)
                features.append(x)
                x = self.pool(x)
            x = self.bottleneck(x)
            for level, (up, block) in enumerate(zip(self.ups, self.decoder)):
                x = block(torch.cat([features[-1 - level], up(x)], dim=1))
            return self.head(x)

    return TorchUNet()


def batch(cfg, dtype=np.float32, seed=0):
    """Host arrays: images (N, 3, S, S) in [0, 1) and integer masks (N, S, S)."""
    rng = np.random.default_rng(seed)
    N, S = cfg["batch"], cfg["size"]
    return rng.random((N, 3, S, S)).astype(dtype), rng.integers(0, cfg["classes"], size=(N, S, S))


def build_ours(cfg, device, dtype=np.float32, seed=0):
    """(model, optimiser) on ``device``, initialised from ``seed``."""
    nn.manual_seed(seed)
    model = UNet(3, cfg["classes"], base_channels=cfg["base"], depth=cfg["depth"]).to(device, dtype)
    return model, optim.Adam(model.parameters(), lr=1e-3)


def build_torch(torch, cfg, model, device):
    """The torch twin holding ``model``'s weights, on ``device``, with the same Adam."""
    twin = torch_unet(torch, 3, cfg["classes"], cfg["base"], cfg["depth"])
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(state)
    twin = twin.to(dtype=state["head.weight"].dtype, device="cuda" if device == "gpu" else "cpu")
    return twin, torch.optim.Adam(twin.parameters(), lr=1e-3)


def our_step(model, opt, x, t):
    """forward, CE + soft Dice on the softmax, backward, Adam; returns the loss Tensor (still on the device)."""
    logits = model(x)
    loss = F.cross_entropy(logits, t) + F.soft_dice_loss(F.softmax(logits, axis=1), t)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def torch_step(torch, model, opt, x, t):
    """The same step in PyTorch (soft Dice written with torch ops, the formula of minisegnet's default)."""
    from bench_kernels import _soft_dice_torch

    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, t) + _soft_dice_torch(torch, torch.softmax(logits, 1), t)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def step_impls(cfg, device, torch=None, dtype=np.float32, name="unet step"):
    """Ready-to-time Impls of one training step on ``device``: ours, and torch's twin when ``torch`` is given."""
    images, masks = batch(cfg, dtype)
    model, opt = build_ours(cfg, device, dtype)
    x, t = Tensor(to_device(images, device)), Tensor(to_device(masks, device))
    impls = [Impl(name, "cupy" if device == "gpu" else "numpy", device, lambda: our_step(model, opt, x, t))]
    if torch_on(torch, device):
        twin, topt = build_torch(torch, cfg, model, device)
        tx, tt = to_torch(images, device, torch), to_torch(masks, device, torch)
        impls.append(torch_impl(name, device, lambda: torch_step(torch, twin, topt, tx, tt), torch))
    return impls, count_parameters(model)


def run(device="cpu", compare_torch=False, quick=False):
    """Time the training step on the device(s); a list of row dicts."""
    torch = import_torch() if compare_torch else None
    cfg = QUICK if quick else FULL
    shape = f"({cfg['batch']}, 3, {cfg['size']}, {cfg['size']}) base {cfg['base']} depth {cfg['depth']}"
    rows = []
    for dev in resolve_devices(device):
        impls, n_params = step_impls(cfg, dev, torch)
        # One full-size NumPy step takes seconds on a CPU: warm up once and keep three samples.
        cfg_timer = settings(quick) if quick else {**settings(quick), "warmup": 1, "repeat": 3}
        for res in compare(impls, **cfg_timer):
            rows.append(res.row(bench="train", op="unet step", shape=shape, params=n_params, dtype="float32"))
    return rows


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "train", *sys.argv[1:]]))
