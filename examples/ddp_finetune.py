"""Past one machine: train a U-Net with minisegnet, export it to PyTorch, fine-tune it with DistributedDataParallel.

    python examples/ddp_finetune.py                      2 processes on this machine, gloo on 127.0.0.1
    python examples/ddp_finetune.py --checkpoint runs/unet-shapes/checkpoint_best.npz --steps 200
    torchrun --nproc-per-node 4 examples/ddp_finetune.py --backend nccl             4 GPUs of one machine
    torchrun --nnodes 2 --node-rank R --master-addr HOST --nproc-per-node 8 examples/ddp_finetune.py --backend nccl

Each process holds a replica of the model and a shard of the data; after every backward DDP averages the
gradients over all processes (an all-reduce), so every replica takes the same step and the weights stay equal.
Started by torchrun, the script reads RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT from the environment;
started by hand, it spawns ``--procs`` processes itself on a free port of 127.0.0.1. Rank 0 converts the result
back (``minisegnet.export.from_torch``) and saves it as a minisegnet checkpoint, OUT/finetuned.npz; every rank
writes its final weights and losses to OUT/rank{R}.npz so that they can be compared.
"""

import argparse
import os
import socket
import sys
from pathlib import Path

import numpy as np

import minisegnet as msn
import minisegnet.ops as F
from minisegnet import data, optim
from minisegnet.export import model_config, to_torch
from minisegnet.models import UNet


def pretrain(out, steps, size, seed, rank=0):
    """A small U-Net trained for ``steps`` Adam steps on shapes by minisegnet itself; returns the checkpoint path."""
    msn.nn.manual_seed(seed)
    train = data.shapes(64, size=size, seed=seed)
    model = UNet(3, train.num_classes, base_channels=4, depth=2)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        batch = slice(8 * step % 64, 8 * step % 64 + 8)
        loss = F.cross_entropy(model(train.images[batch]), train.masks[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = Path(out) / f"pretrained{rank}.npz"
    msn.save(path, {"model": model.state_dict(), "config": model_config(model)})
    return path


def load_unet(checkpoint):
    """A UNet from OUT/pretrained.npz, or from a `minisegnet train` checkpoint (its config names the model)."""
    state = msn.load(checkpoint)
    config = state["config"]
    if "block" in config and "in_channels" not in config:  # a TrainConfig
        config = dict(in_channels=3, num_classes=state["num_classes"], base_channels=config["base_channels"],
                      depth=config["depth"], block=config["block"], up=config["up"])  # fmt: skip
    model = UNet(**config)
    model.load_state_dict(state["model"])
    return model


def worker(rank, world, args):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from minisegnet.export import from_torch

    torch.set_num_threads(1)  # one core per process
    dist.init_process_group(args.backend, rank=rank, world_size=world)  # MASTER_ADDR and MASTER_PORT: from env
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = torch.device(f"cuda:{local}") if args.backend == "nccl" else torch.device("cpu")
    module = to_torch(load_unet(args.checkpoint)).to(device).train()
    model = DistributedDataParallel(module, device_ids=[local] if device.type == "cuda" else None)
    shapes = data.shapes(args.images, size=args.size, seed=args.seed + 1)  # new images: fine-tuning data
    mine = np.arange(rank, args.images, world)  # this process's shard
    images = torch.from_numpy(shapes.images[mine]).to(device)
    masks = torch.from_numpy(shapes.masks[mine]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses = []
    for step in range(args.steps):
        loss = torch.nn.functional.cross_entropy(model(images), masks)
        opt.zero_grad()
        loss.backward()  # DDP all-reduces the gradients here
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # the loss over all shards, for the log
        losses.append(mean.item() / world)
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step}: loss {losses[-1]:.4f}", flush=True)
    # The parameters agree already; batch norm's running statistics saw only this shard (DDP copies rank 0's
    # at the start of every forward): average them over the processes, so each replica holds the same model.
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world
    weights = {name: t.detach().cpu().numpy() for name, t in module.state_dict().items()}
    np.savez(Path(args.out) / f"rank{rank}.npz", losses=np.array(losses), **weights)
    if rank == 0:
        finetuned = from_torch(model)
        msn.save(Path(args.out) / "finetuned.npz", {"model": finetuned.state_dict(), "config": model_config(finetuned)})
    # Tear down together. Once in about 30 runs of the test a rank died in gloo at the end ("terminate called without
    # an active exception", SIGABRT), perhaps destroying its group while rank 0 was still saving.
    dist.barrier()
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="a minisegnet checkpoint (default: pretrain one here)")
    parser.add_argument("--pretrain-steps", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="fine-tuning steps")
    parser.add_argument("--images", type=int, default=32, help="fine-tuning images, split over the processes")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--procs", type=int, default=2, help="processes to spawn when not started by torchrun")
    parser.add_argument("--backend", default="gloo", help="gloo (CPU) or nccl (one GPU per process)")
    parser.add_argument("--out", default="runs/ddp")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    torchrun = "RANK" in os.environ
    rank = int(os.environ.get("RANK", 0))
    if args.checkpoint is None:  # under torchrun every rank pretrains (hosts share no files); DDP then
        args.checkpoint = pretrain(args.out, args.pretrain_steps, args.size, args.seed, rank)  # copies rank 0's
    if torchrun:
        return worker(rank, int(os.environ["WORLD_SIZE"]), args)
    import torch.multiprocessing

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    torch.multiprocessing.spawn(worker, args=(args.procs, args), nprocs=args.procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
