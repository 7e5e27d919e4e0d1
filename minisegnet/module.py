"""Module, Parameter and containers: the bookkeeping that turns ops into layers.

A ``Module`` owns ``Parameter``s (trained), buffers (raw arrays that are saved but not trained, such as
BatchNorm's running statistics) and child modules. Assigning one of these as an attribute registers it, so
``parameters()``, ``state_dict()``, ``train()`` and ``to()`` can walk the tree. Names are PyTorch's dotted names
(``decoder.0.conv1.weight``) and the arrays have PyTorch's layouts, so a ``state_dict`` loads into the same
architecture written with ``torch.nn`` and gives the same outputs.

Initial weights come from one NumPy generator: ``manual_seed(0)`` before building a model makes it
reproducible, and every layer also takes an ``rng=`` argument. The layers that build on this live in
``layers.py``; ``minisegnet.nn`` is the public namespace that holds both (``minisegnet.nn.Conv2d``).
"""

from collections import OrderedDict

import numpy as np

from .backend import check_device, device_of, to_device, to_numpy
from .tensor import Tensor

_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed the generator that default-initialised layers draw from (like ``torch.manual_seed``)."""
    global _rng
    _rng = np.random.default_rng(seed)


def default_rng():
    """The module-level generator used when a layer gets no ``rng``."""
    return _rng


class Parameter(Tensor):
    """A Tensor that a Module trains: ``requires_grad`` is True and ``parameters()`` yields it."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model: subclasses set attributes in ``__init__`` and write ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration: attributes of the right kind land in the right dictionary -------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call super().__init__() in {type(self).__name__}.__init__ before setting {name!r}")
        if isinstance(value, (Parameter, Module)):
            for table in (self._parameters, self._buffers, self._modules, self.__dict__):
                table.pop(name, None)
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        elif name in self._parameters or name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to {name!r}, which holds a Parameter/Module")
            (self._parameters if name in self._parameters else self._modules)[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails, i.e. for registered parameters, buffers and modules.
        for table in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Keep a raw array (not trained) that moves with ``to()`` and is saved in ``state_dict()``."""
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def add_module(self, name, module):
        self._modules[str(name)] = module

    # ---- walking the tree --------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every descendant, parents first."""
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(prefix + "." + name if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def named_parameters(self):
        """(dotted name, Parameter) pairs in PyTorch's order; a shared Parameter appears once."""
        seen = set()
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (prefix + "." if prefix else "") + name, p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        for prefix, m in self.named_modules():
            for name, b in m._buffers.items():
                if b is not None:
                    yield (prefix + "." if prefix else "") + name, b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    # ---- training state, devices, gradients ----------------------------------------------------
    def train(self, mode=True):
        """Set the training flag on this module and all descendants (BatchNorm, Dropout read it)."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device=None, dtype=None):
        """Move parameters and buffers in place to ``device`` ("cpu"/"gpu") and/or cast floats to ``dtype``.

        ``model.to("gpu")``, ``model.to(dtype=np.float64)`` or ``model.to(np.float64)``. Returns self.
        """
        if device is not None and not isinstance(device, str):  # model.to(np.float64): a dtype in first place
            dtype = device
            device = None
        if device is not None:
            check_device(device)

        def convert(a):
            a = to_device(a, device) if device is not None else a
            return a.astype(dtype) if dtype is not None and a.dtype.kind == "f" else a

        for p in self.parameters():
            p.data = convert(p.data)
            p.grad = None if p.grad is None else convert(p.grad)
        for m in self.modules():
            for name, b in m._buffers.items():
                if b is not None:
                    m._buffers[name] = convert(b)
        return self

    # ---- saving and loading ------------------------------------------------------------------
    def state_dict(self):
        """OrderedDict of dotted name -> NumPy array (host copies): each module's parameters, then its buffers."""
        out = OrderedDict()
        for prefix, m in self.named_modules():
            head = prefix + "." if prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[head + name] = to_numpy(p.data).copy()
            for name, b in m._buffers.items():
                if b is not None:
                    out[head + name] = to_numpy(b).copy()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` (name -> array-like) into the parameters and buffers, in place.

        Shapes must match. With ``strict`` (the default), missing and unexpected names are an error; otherwise
        they are skipped and returned as ``(missing, unexpected)``.
        """
        targets = OrderedDict()
        for prefix, m in self.named_modules():
            head = prefix + "." if prefix else ""
            for table in (m._parameters, m._buffers):
                targets.update((head + name, (table, name)) for name, v in table.items() if v is not None)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict into {type(self).__name__}: missing keys {missing}, unexpected keys {unexpected}"
            )
        wrong = []
        for key, (table, name) in targets.items():
            if key in state_dict:
                old = table[name]
                new = to_numpy(state_dict[key])
                if tuple(new.shape) != tuple(old.shape):
                    wrong.append(f"{key}: checkpoint {tuple(new.shape)} vs model {tuple(old.shape)}")
        if wrong:
            raise ValueError(f"load_state_dict into {type(self).__name__}: shape mismatch for " + "; ".join(wrong))
        # Copy in place, so whatever holds these arrays (an optimiser, a BatchNorm call) sees the new values.
        for key, (table, name) in targets.items():
            if key in state_dict:
                raw = table[name].data if isinstance(table[name], Tensor) else table[name]
                raw[...] = to_device(to_numpy(state_dict[key]).astype(raw.dtype), device_of(raw))
        return missing, unexpected

    # ---- printing ----------------------------------------------------------------------------
    def extra_repr(self):
        """The text inside ``Name(...)`` for a leaf layer; containers print their children instead."""
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not self._modules:
            return f"{type(self).__name__}({lines[0]})"
        return type(self).__name__ + "(\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after the other; children are named "0", "1", ... as in PyTorch."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __getitem__(self, i):
        mods = list(self._modules.values())
        return Sequential(*mods[i]) if isinstance(i, slice) else mods[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters are registered (named "0", "1", ...); it has no forward."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        mods = list(self._modules.values())
        return ModuleList(mods[i]) if isinstance(i, slice) else mods[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
