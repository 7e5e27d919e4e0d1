"""``summary(model, input_shape)``: each layer's output shape, parameters, multiply-adds and activation memory for
one input, the table torchinfo and Keras print.

The model runs once on zeros of ``input_shape``, in eval mode (BatchNorm's running statistics stay as they are) and
under ``no_grad``. While it runs, ``Module.__call__`` is wrapped, so every call of a module of the model adds a row,
in the order the calls happen, indented by depth; the wrapper is removed when the run ends, even by an error. Work
done by plain ops inside a ``forward`` (``F.relu``, ``F.concat``) belongs to no module and gets no row of its own.

Columns:

* params: the numbers in the module's parameters, its children's included (buffers such as BatchNorm's running
  statistics are not parameters);
* mult-adds: multiply-add pairs the call performs. Conv2d: N*OC*OH*OW * C*KH*KW, every output value a sum of C*KH*KW
  products (positions in the padding count, the bias's additions do not). ConvTranspose2d: N*C*H*W * OC*KH*KW, every
  input value scattered through the whole kernel (products that land in the cropped padding count). BatchNorm2d in
  eval mode: one per output value, y = scale * x + shift. Every other layer 0: pooling, ReLU, upsampling and
  unpooling compare or copy. A container's count is its layers' sum;
* activations: the bytes of the call's output. The total adds up the layers without children, about what a forward
  pass with gradients keeps for backward.

    >>> import minisegnet as msn
    >>> net = msn.models.UNet(3, 2, base_channels=4, depth=1)
    >>> print(msn.summary(net, (1, 3, 16, 16)))
    layer (type)                      output shape    params  mult-adds  activations
    UNet                              (1, 2, 16, 16)   1,754    245,760      2.0 KiB
      encoder.0 (PlainBlock)          (1, 4, 16, 16)     268     66,560      4.0 KiB
        encoder.0.conv1 (Conv2d)      (1, 4, 16, 16)     108     27,648      4.0 KiB
        encoder.0.bn1 (BatchNorm2d)   (1, 4, 16, 16)       8      1,024      4.0 KiB
        encoder.0.conv2 (Conv2d)      (1, 4, 16, 16)     144     36,864      4.0 KiB
        encoder.0.bn2 (BatchNorm2d)   (1, 4, 16, 16)       8      1,024      4.0 KiB
      pool (MaxPool2d)                (1, 4, 8, 8)         0          0      1.0 KiB
      bottleneck (PlainBlock)         (1, 8, 8, 8)       896     56,320      2.0 KiB
        bottleneck.conv1 (Conv2d)     (1, 8, 8, 8)       288     18,432      2.0 KiB
        bottleneck.bn1 (BatchNorm2d)  (1, 8, 8, 8)        16        512      2.0 KiB
        bottleneck.conv2 (Conv2d)     (1, 8, 8, 8)       576     36,864      2.0 KiB
        bottleneck.bn2 (BatchNorm2d)  (1, 8, 8, 8)        16        512      2.0 KiB
      ups.0 (ConvTranspose2d)         (1, 4, 16, 16)     132      8,192      4.0 KiB
      decoder.0 (PlainBlock)          (1, 4, 16, 16)     448    112,640      4.0 KiB
        decoder.0.conv1 (Conv2d)      (1, 4, 16, 16)     288     73,728      4.0 KiB
        decoder.0.bn1 (BatchNorm2d)   (1, 4, 16, 16)       8      1,024      4.0 KiB
        decoder.0.conv2 (Conv2d)      (1, 4, 16, 16)     144     36,864      4.0 KiB
        decoder.0.bn2 (BatchNorm2d)   (1, 4, 16, 16)       8      1,024      4.0 KiB
      head (Conv2d)                   (1, 2, 16, 16)      10      2,048      2.0 KiB
    <BLANKLINE>
    parameters: 1,754 (1,754 trainable), 6.9 KiB
    multiply-adds: 245,760 (245.76 k) for an input of shape (1, 3, 16, 16)
    activation memory: 47.0 KiB (the outputs of the 15 calls of layers without children); input 3.0 KiB
"""

import contextlib
import dataclasses

import numpy as np

from .backend import device_of, to_device
from .layers import BatchNorm2d, Conv2d, ConvTranspose2d
from .module import Module
from .tensor import Tensor, no_grad


@dataclasses.dataclass
class Row:
    """One call of one module: its dotted name, type, depth in the tree and what the call produced and cost."""

    name: str
    kind: str
    depth: int
    shape: tuple = ()
    params: int = 0
    mult_adds: int = 0
    activation_bytes: int = 0
    leaf: bool = True


def count_mult_adds(module, inputs, output):
    """Multiply-adds of one call of a leaf layer (see the module docstring for what counts)."""
    if isinstance(module, Conv2d):
        N, OC, OH, OW = output.shape
        _, C, KH, KW = module.weight.shape
        return N * OC * OH * OW * C * KH * KW
    if isinstance(module, ConvTranspose2d):
        N, C, H, W = inputs[0].shape
        _, OC, KH, KW = module.weight.shape
        return N * C * H * W * OC * KH * KW
    if isinstance(module, BatchNorm2d) and not module.training:
        return int(np.prod(output.shape))
    return 0


def _tensors(output):
    # A layer returns a Tensor, or a tuple of them (MaxPool2d with return_indices: values and indices).
    items = output if isinstance(output, (tuple, list)) else (output,)
    return [t for t in items if isinstance(t, Tensor) or hasattr(t, "nbytes")]


@contextlib.contextmanager
def recording(model, rows):
    """Within the block, each call of a module of ``model`` appends its ``Row`` to ``rows``."""
    names = {id(m): name for name, m in model.named_modules()}
    call = Module.__call__
    depth = [0]

    def recorded(self, *args, **kwargs):
        name = names.get(id(self))
        if name is None:  # a module outside the model (made inside a forward, say)
            return call(self, *args, **kwargs)
        row = Row(name or type(self).__name__, type(self).__name__, depth[0])
        row.leaf = next(self.children(), None) is None
        row.params = int(sum(p.data.size for p in self.parameters()))
        rows.append(row)
        first = len(rows)
        depth[0] += 1
        try:
            output = call(self, *args, **kwargs)
        finally:
            depth[0] -= 1
        produced = _tensors(output)
        shapes = [tuple(t.shape) for t in produced]
        row.shape = shapes[0] if len(shapes) == 1 else tuple(shapes)
        row.activation_bytes = int(sum(t.data.nbytes if isinstance(t, Tensor) else t.nbytes for t in produced))
        if row.leaf:
            row.mult_adds = count_mult_adds(self, args, output)
        else:
            row.mult_adds = sum(r.mult_adds for r in rows[first:] if r.depth == row.depth + 1)
        return output

    Module.__call__ = recorded
    try:
        yield rows
    finally:
        Module.__call__ = call


@dataclasses.dataclass
class Summary:
    """The rows of one forward pass and the totals; ``str()`` (and the notebook's display) is the table."""

    rows: list
    input_shape: tuple
    params: int
    trainable_params: int
    param_bytes: int
    mult_adds: int
    activation_bytes: int
    input_bytes: int

    def __str__(self):
        return format_table(self)

    __repr__ = __str__


def summary(model, input_shape):
    """Run ``model`` once on zeros of ``input_shape`` ((N, C, H, W), or (C, H, W) for one image) and return a
    ``Summary`` of every layer's output shape, parameters, multiply-adds and activation memory; print it for the
    table. The model's training flags and weights are left as they were."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in shape):
        raise ValueError(f"input_shape must be (N, C, H, W) or (C, H, W) of positive ints, got {input_shape!r}")
    params = list(model.parameters())
    dtype = params[0].data.dtype if params else np.float32
    x = np.zeros(shape, dtype=dtype)
    x = to_device(x, device_of(params[0].data)) if params else x
    flags = [(m, m.training) for m in model.modules()]
    rows = []
    try:
        model.eval()
        with no_grad(), recording(model, rows):
            model(Tensor(x))
    finally:
        for m, training in flags:
            m.training = training
    leaves = [r for r in rows if r.leaf]
    return Summary(
        rows=rows,
        input_shape=tuple(int(n) for n in shape),
        params=sum(p.data.size for p in params),
        trainable_params=sum(p.data.size for p in params if p.requires_grad),
        param_bytes=sum(p.data.nbytes for p in params),
        mult_adds=sum(r.mult_adds for r in leaves),
        activation_bytes=sum(r.activation_bytes for r in leaves),
        input_bytes=x.nbytes,
    )


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _count(n):
    # 1,234,567 -> "1.23 M": the totals line; the rows keep every digit.
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def format_table(s):
    """The rows as aligned columns, then the totals."""
    head = ("layer (type)", "output shape", "params", "mult-adds", "activations")
    cells = [head]
    for r in s.rows:
        label = r.name if r.depth == 0 else f"{r.name} ({r.kind})"
        shape = str(r.shape).replace("), (", "); (")
        cells.append(("  " * r.depth + label, shape, f"{r.params:,}", f"{r.mult_adds:,}", _bytes(r.activation_bytes)))
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = []
    for c in cells:
        lines.append(
            f"{c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}  " + "  ".join(f"{c[i]:>{widths[i]}}" for i in (2, 3, 4))
        )
    leaves = sum(r.leaf for r in s.rows)
    lines += [
        "",
        f"parameters: {s.params:,} ({s.trainable_params:,} trainable), {_bytes(s.param_bytes)}",
        f"multiply-adds: {s.mult_adds:,} ({_count(s.mult_adds)}) for an input of shape {s.input_shape}",
        f"activation memory: {_bytes(s.activation_bytes)} (the outputs of the {leaves} calls of layers without "
        f"children); input {_bytes(s.input_bytes)}",
    ]
    return "\n".join(line.rstrip() for line in lines)
