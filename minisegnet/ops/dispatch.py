"""Swapping ops: ``override`` puts your own function in place of a library op.

    import minisegnet as msn
    with msn.ops.override(conv2d=my_conv2d):   # every layer, model and loss now calls my_conv2d
        logits = model(x)

An op is called through a module attribute looked up at call time (``F.conv2d(...)`` in layers.py,
``cross_entropy(...)`` inside loss.py), so replacing the attribute replaces the op wherever it is
called. ``override`` does that in every module of the package that holds the op, and puts the
originals back on exit.
"""

import inspect
import sys
import types


class override:
    """Replace public ops of ``minisegnet.ops`` by your functions inside a ``with`` block.

    ``override(conv2d=my_conv2d)``: ``my_conv2d`` takes conv2d's arguments (x (N, C, H, W),
    weight (OC, C, KH, KW), bias, stride, padding, dilation) and returns a Tensor; every call
    the library makes to ``conv2d`` (layers, models, the training recipe's loss) goes to it until
    the block ends, also when it ends by an exception. The block receives the originals, so
    ``with override(conv2d=f) as lib: lib.conv2d(...)`` still reaches the library's own conv2d.
    Any public function of ``minisegnet.ops`` can be replaced (conv2d, conv_transpose2d,
    max_pool2d, soft_dice_loss, cross_entropy, ...); an unknown name is an error. (A class: a
    switch, not one of the ops.)
    """

    def __init__(self, **fns):
        ops = sys.modules[__package__]
        self.fns, self.originals, self.entries = fns, {}, []  # entries: one list of swaps per open block
        for name, fn in fns.items():
            current = getattr(ops, name, None)
            if name.startswith("_") or not inspect.isfunction(current):
                raise ValueError(f"override: {name!r} is not a public op of minisegnet.ops (e.g. conv2d, max_pool2d)")
            if not callable(fn):
                raise TypeError(f"override: {name}= must be a function, got {type(fn).__name__}")
            self.originals[name] = current

    def __enter__(self):
        swapped = []  # (module, attribute, original) for every place an op was replaced
        self.entries.append(swapped)
        for module in [m for key, m in list(sys.modules.items()) if key.split(".")[0] == "minisegnet" and m]:
            for attr, value in list(vars(module).items()):
                for name, original in self.originals.items():
                    if value is original:
                        setattr(module, attr, self.fns[name])
                        swapped.append((module, attr, original))
        return types.SimpleNamespace(**self.originals)

    def __exit__(self, *exc_info):
        for module, attr, original in reversed(self.entries.pop()):
            setattr(module, attr, original)
