"""One full U-Net training step: forward, cross-entropy + soft Dice, backward, Adam step.

Batch 16 of 3x128x128 images, 2 classes, UNet(base_channels=16, depth=4) (plain blocks, BatchNorm, transposed-conv
decoder), float32. The PyTorch twin below has the same layers under the same names, loads minisegnet's initial
weights, and takes the same step, so both libraries do the same arithmetic.

The two libraries run in separate processes (timing.run_interleaved): the batch and the initial weights go into
one .npz file that each worker loads; 5 rounds start one process per library in a rotating order with 2 s
between them, each with the same thread count; before timing, the twin's loss and two gradients after one step
are checked against minisegnet's. In one process the libraries' idle thread pools would slow each other.

The step never turns a device value into a Python number (no ``float(loss)``): a training loop only does that when
it logs, and doing it every step would make the GPU wait for the host.

    python benchmarks/bench_train_step.py --quick [--device cpu|gpu|both] [--compare-torch] [--threads N]
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the worker processes import this checkout

from minisegnet import Tensor, nn, optim  # noqa: E402
from minisegnet import ops as F  # noqa: E402
from minisegnet.backend import to_device  # noqa: E402
from minisegnet.models import UNet, count_parameters  # noqa: E402

from timing import (  # noqa: E402
    Impl,
    check_outputs,
    import_torch,
    resolve_devices,
    run_interleaved,
    to_torch,
    torch_impl,
    torch_on,
    worker_main,
)

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


# ---- separate processes: the data and weights in one file, one worker per framework ----------------

CHECKED_GRADS = ("encoder.0.conv1.weight", "head.weight")  # besides the loss, compared before timing


def write_data(cfg, path, dtype=np.float32, seed=0):
    """One .npz with the batch ("x", "t"), the config and minisegnet's initial weights ("p.<name>")."""
    images, masks = batch(cfg, dtype, seed)
    model, _ = build_ours(cfg, "cpu", dtype, seed)
    state = {f"p.{k}": np.asarray(v) for k, v in model.state_dict().items()}
    np.savez(path, x=images, t=masks, cfg=np.array(json.dumps(cfg)), **state)
    return count_parameters(model)


def loaded(data):
    """(cfg, images, masks, state dict) from the arrays of ``write_data``."""
    state = {k[2:]: v for k, v in data.items() if k.startswith("p.")}
    return json.loads(str(data["cfg"])), data["x"], data["t"], state


def build_minisegnet(data, args):
    """minisegnet's step on ``args.device``, from the file's weights; returns (loss, the checked gradients)."""
    from minisegnet import set_num_threads

    set_num_threads(0)  # the library's default: BLAS with the process's threads
    cfg, images, masks, state = loaded(data)
    model, opt = build_ours(cfg, args.device, images.dtype)
    model.load_state_dict(state)
    params = dict(model.named_parameters())
    x, t = Tensor(to_device(images, args.device)), Tensor(to_device(masks, args.device))

    def step():
        loss = our_step(model, opt, x, t)
        return (loss, *(params[k].grad for k in CHECKED_GRADS))

    impl = "cupy" if args.device == "gpu" else "numpy"
    return [Impl("unet step", impl, args.device, step)]


def build_torch_worker(data, args):
    """PyTorch's twin on ``args.device`` (CUDA for "gpu"), from the same weights; the same outputs."""
    torch = import_torch()
    torch.set_num_threads(args.threads)
    cfg, images, masks, state = loaded(data)
    twin = torch_unet(torch, 3, cfg["classes"], cfg["base"], cfg["depth"])
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    twin = twin.to(dtype=torch.from_numpy(images).dtype, device="cuda" if args.device == "gpu" else "cpu")
    opt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    params = dict(twin.named_parameters())
    x, t = to_torch(images, args.device, torch), to_torch(masks, args.device, torch)

    def step():
        loss = torch_step(torch, twin, opt, x, t)
        return (loss, *(params[k].grad for k in CHECKED_GRADS))

    return [torch_impl("unet step", args.device, step, torch)]


BUILDERS = {"minisegnet": build_minisegnet, "torch": build_torch_worker}


def run(device="cpu", compare_torch=False, quick=False, threads=None, rounds=None, pause=None):
    """Time the training step on the device(s) in separate processes (timing.run_interleaved); a list of row dicts.

    Before timing (not in quick mode), the torch twin's loss and two gradients after one step from the same
    weights are checked against minisegnet's. ``threads`` defaults to 1 in quick mode, to every core otherwise.
    """
    torch = import_torch() if compare_torch else None
    cfg = QUICK if quick else FULL
    threads = threads or (1 if quick else os.cpu_count() or 1)
    rounds, pause = rounds or (1 if quick else 5), (0.0 if quick else 2.0) if pause is None else pause
    timer = ["--warmup", "1", "--min-calls", "3", "--min-time", "0"] if quick else ["--warmup", "2", "--min-time", "5"]
    shape = f"({cfg['batch']}, 3, {cfg['size']}, {cfg['size']}) base {cfg['base']} depth {cfg['depth']}"
    rows = []
    for dev in resolve_devices(device):
        workers = ["minisegnet"] + (["torch"] if torch_on(torch, dev) else [])
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "step.npz"
            n_params = write_data(cfg, data)
            args = ["--device", dev, *timer]
            if len(workers) > 1 and not quick:
                # float32 gradients of the first layer after a whole backward pass: about 3e-3 apart (bench_peers.py)
                check_outputs(__file__, ["minisegnet"], data, "torch", threads=threads, args=args, rtol=1e-2)
            results, infos = run_interleaved(
                __file__, workers, data, rounds=rounds, pause=pause, threads=threads, args=args, memory=True
            )
        for worker in workers:
            res = results[worker]["unet step"]
            extra = {"shape": shape, "params": n_params, "dtype": "float32", "threads": threads, "pause_s": pause}
            rows.append(res.row(bench="train", op="unet step", worker=infos[worker], **extra))
    return rows


if __name__ == "__main__":
    if "--worker" in sys.argv:
        sys.exit(worker_main(BUILDERS))
    from run_all import main

    sys.exit(main(["--only", "train", *sys.argv[1:]]))
