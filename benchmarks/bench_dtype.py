"""float32 against float64: the same conv2d forward + backward and the same U-Net training step in both precisions.

Half the bytes means half the memory traffic, and twice as many numbers per SIMD instruction on a CPU; consumer
GPUs run float64 up to 32-64x slower than float32. minisegnet trains in float32 and keeps float64 for gradient
checks, where rounding error must stay far below the finite-difference error.

    python benchmarks/bench_dtype.py --quick [--device cpu|gpu|both] [--compare-torch]
"""

import sys

import numpy as np
from bench_kernels import make_inputs, ours_impls, torch_impls
from bench_scaling import conv_case
from bench_train_step import QUICK, step_impls

from timing import compare, import_torch, resolve_devices, settings, torch_on

# A mid-sized step: the full benchmark size in float64 would take minutes per sample on a 2-core CPU.
STEP = {"batch": 4, "size": 64, "base": 16, "depth": 4, "classes": 2}
CONV = (8, 32, 64)  # N, C -> C, H = W
QUICK_CONV = (2, 4, 8)


def run(device="cpu", compare_torch=False, quick=False):
    """Time conv2d and the training step in float32 and float64 on the device(s); a list of row dicts."""
    torch = import_torch() if compare_torch else None
    case = conv_case(*(QUICK_CONV if quick else CONV))
    cfg = QUICK if quick else STEP
    step_shape = f"({cfg['batch']}, 3, {cfg['size']}, {cfg['size']}) base {cfg['base']} depth {cfg['depth']}"
    rows = []
    for dev in resolve_devices(device):
        for dtype in (np.float32, np.float64):
            arrays = make_inputs(case, dtype=dtype)
            impls = [impl for phase, impl in ours_impls(case, arrays, dev) if phase == "fwd+bwd"]
            if torch_on(torch, dev):
                impls += [impl for phase, impl in torch_impls(case, arrays, dev, torch) if phase == "fwd+bwd"]
            extra = {"bench": "dtype", "dtype": np.dtype(dtype).name}
            for res in compare(impls, **settings(quick)):
                rows.append(res.row(op="conv2d 3x3 p1 fwd+bwd", shape=case.shape, **extra))
            impls, _ = step_impls(cfg, dev, torch, dtype=dtype)
            for res in compare(impls, **settings(quick)):
                rows.append(res.row(op="unet step", shape=step_shape, **extra))
    return rows


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "dtype", *sys.argv[1:]]))
