"""The fast floor: faster twins of some taught ops, and the one place that says which runs.

Each module here holds a subclass of a taught Function (ops/conv.py's ``Conv2d``, ...) that computes
the same arrays faster: chunks of the batch in reused scratch buffers, threads, whole-row columns,
and on CuPy hand-written CUDA kernels. The table below registers them (registry.py); creating a
taught Function then creates its twin, unless ``minisegnet.reference_kernels()`` is on. The taught
files never import anything from here, and every pair is compared by a test.

    ops/conv.py        Conv2d, ConvTranspose2d   fast/conv.py (+ fast/im2col.py, fast/workspace.py, fast/winograd.py)
    ops/norm.py        BatchNorm                 fast/norm.py (+ a CUDA kernel each way, fast/cuda_fused.py)
    ops/pool.py        MaxPool2d                 fast/pool.py (+ CUDA kernels)
    ops/activation.py  ReLU                      fast/activation.py
    ops/activation.py  Softmax, LogSoftmax       fast/activation.py
    ops/loss.py        CrossEntropy              fast/loss.py (CUDA kernels; on NumPy the taught op runs)
    (batch norm, max pooling and ReLU walk their arrays in the cache-sized blocks of fast/blocks.py)
"""

from ... import ops
from ...registry import register
from . import activation, conv, loss, norm, pool

register(ops.conv.Conv2d, conv.Conv2d)
register(ops.conv.ConvTranspose2d, conv.ConvTranspose2d)
register(ops.norm.BatchNorm, norm.BatchNorm)
register(ops.pool.MaxPool2d, pool.MaxPool2d)
register(ops.activation.ReLU, activation.ReLU)
register(ops.activation.Softmax, activation.Softmax)
register(ops.activation.LogSoftmax, activation.LogSoftmax)
register(ops.loss.CrossEntropy, loss.CrossEntropy)
