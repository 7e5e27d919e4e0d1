"""Optimisers (SGD, Adam, AdamW) and learning-rate schedules (StepLR, CosineLR, WarmupCosineLR).

Each ``step()`` changes ``p.data`` in place with plain array arithmetic, so it builds no graph and runs on
NumPy or CuPy alike. Every NumPy call of an update writes into an array that already exists (the parameter,
its moments, or a work array shared by all parameters and kept between steps), so a step allocates nothing.
The update rules are PyTorch's (dampening 0), step for step, so the same gradients give the same weights.
``state_dict()`` is a flat dict of numbers and arrays (per-parameter buffers keyed by the parameter's index,
e.g. ``"exp_avg.3"``) that ``minisegnet.save`` writes without pickle.
"""

import math

import numpy as np

from .backend import get_array_module, to_device, to_numpy
from .cuda import cuda_kernel


class Optimizer:
    """Holds the parameter list, the hyper-parameters and per-parameter state (buffers keyed by index)."""

    buffers = ()  # names of the per-parameter arrays in ``self.state[name][i]``
    hyper = ("lr",)  # hyper-parameters saved in state_dict

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not lr >= 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = lr
        self.steps = 0
        self.state = {name: {} for name in self.buffers}
        self.param_steps = {}  # how many updates each parameter has had (a parameter without grad is skipped)
        self.work_arrays = {}  # (slot, dtype, device) -> flat array as large as the largest parameter so far

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.param_steps[i] = self.param_steps.get(i, 0) + 1
                self.update(i, p, p.grad)
        self.steps += 1

    def update(self, i, p, g):
        raise NotImplementedError

    def work(self, like, slot=0):
        """An array of ``like``'s shape, dtype and device whose contents are left over, shared by every parameter.

        ``slot`` tells apart two work arrays needed at once. Not saved in ``state_dict``.
        """
        key = (slot, like.dtype.str, str(getattr(like, "device", "cpu")))
        flat = self.work_arrays.get(key)
        if flat is None or flat.size < like.size:
            flat = self.work_arrays[key] = get_array_module(like).empty(like.size, dtype=like.dtype)
        return flat[: like.size].reshape(like.shape)

    def state_dict(self):
        """Flat dict: hyper-parameters, ``steps``, ``step.<i>`` and ``<buffer>.<i>`` NumPy arrays."""
        out = {name: getattr(self, name) for name in self.hyper}
        out["steps"] = self.steps
        for i, n in self.param_steps.items():
            out[f"step.{i}"] = n
        for name, table in self.state.items():
            for i, a in table.items():
                out[f"{name}.{i}"] = to_numpy(a).copy()
        return out

    def load_state_dict(self, state):
        """Restore what ``state_dict()`` returned, onto the device and dtype of each parameter."""
        for name in self.hyper:
            if name in state:
                value = state[name]
                setattr(self, name, tuple(value) if isinstance(value, (list, np.ndarray)) else value)
        self.steps = int(state.get("steps", 0))
        self.param_steps = {}
        self.state = {name: {} for name in self.buffers}
        for key, value in state.items():
            name, _, index = key.rpartition(".")
            if not index.isdigit():
                continue
            i = int(index)
            if i >= len(self.params):
                raise ValueError(f"optimiser state {key!r} refers to parameter {i}, but there are {len(self.params)}")
            p = self.params[i]
            if name == "step":
                self.param_steps[i] = int(value)
            elif name in self.state:
                if tuple(np.shape(value)) != tuple(p.shape):
                    raise ValueError(
                        f"optimiser state {key!r} has shape {np.shape(value)} but parameter {i} has {p.shape}"
                    )
                self.state[name][i] = to_device(np.asarray(value, dtype=p.dtype), p.device)
            else:
                raise ValueError(f"unknown optimiser state {key!r} for {type(self).__name__}")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as PyTorch writes it (dampening 0):

    g = grad + weight_decay * p;  b = g (first step) else momentum * b + g;
    d = g + momentum * b (nesterov) else b;  p -= lr * d.
    """

    buffers = ("momentum_buffer",)
    hyper = ("lr", "momentum", "weight_decay", "nesterov")

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum and weight_decay must be >= 0, got {momentum} and {weight_decay}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov

    def update(self, i, p, g):
        xp = get_array_module(p.data)
        if self.weight_decay:  # g = weight_decay * p + grad
            decayed = xp.multiply(p.data, self.weight_decay, out=self.work(p.data, 1))
            decayed += g
            g = decayed
        if self.momentum:
            buf = self.state["momentum_buffer"].get(i)
            if buf is None:
                buf = g.copy()
                self.state["momentum_buffer"][i] = buf
            else:
                buf *= self.momentum
                buf += g
            if self.nesterov:  # d = momentum * b + g
                ahead = xp.multiply(buf, self.momentum, out=self.work(p.data))
                ahead += g
                g = ahead
            else:
                g = buf
        p.data -= xp.multiply(g, self.lr, out=self.work(p.data))


class Adam(Optimizer):
    """Adam: running means of the gradient (m) and its square (v), bias-corrected by 1 - beta^t.

    g = grad + weight_decay * p (L2 penalty, coupled);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).

    Multiplying the fraction's top and bottom by r = sqrt(1 - b2^t) puts both bias corrections into scalars:
    p -= (lr r / (1 - b1^t)) * m / (sqrt(v) + eps r): five calls over the parameter instead of six.
    """

    buffers = ("exp_avg", "exp_avg_sq")
    hyper = ("lr", "betas", "eps", "weight_decay")
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay

    def update(self, i, p, g):
        xp = get_array_module(p.data)
        b1, b2 = self.betas
        if self.weight_decay and self.decoupled:
            p.data *= 1 - self.lr * self.weight_decay  # AdamW: shrink the weights, outside the adaptive scaling
        elif self.weight_decay:  # g = weight_decay * p + grad
            decayed = xp.multiply(p.data, self.weight_decay, out=self.work(p.data, 1))
            decayed += g
            g = decayed
        if i not in self.state["exp_avg"]:  # first step: zero moments (allocated once, not on every step)
            self.state["exp_avg"][i] = xp.zeros_like(p.data)
            self.state["exp_avg_sq"][i] = xp.zeros_like(p.data)
        m = self.state["exp_avg"][i]
        v = self.state["exp_avg_sq"][i]
        t = self.param_steps[i]
        step_size = self.lr / (1 - b1**t)
        root_bias2 = math.sqrt(1 - b2**t)
        kernel = cuda_kernel(xp, *_ADAM_CUDA)
        if kernel is not None:  # the lines below in one CUDA kernel instead of 12 launches
            kernel(g.astype(p.dtype, copy=False), b1, b2, step_size, root_bias2, self.eps, p.data, m, v)
            return
        u = self.work(p.data)
        m *= b1  # m = b1 m + (1 - b1) g
        m += xp.multiply(g, 1 - b1, out=u)
        v *= b2  # v = b2 v + (1 - b2) g^2
        u = xp.multiply(g, 1 - b2, out=u)
        u *= g
        v += u
        u = xp.sqrt(v, out=u)  # p -= (step_size r) m / (sqrt(v) + eps r), r = root_bias2
        u += self.eps * root_bias2
        u = xp.divide(m, u, out=u)
        u *= step_size * root_bias2
        p.data -= u


_ADAM_CUDA = (  # Adam's update (the docstring's formula) as one kernel for CuPy arrays (cuda.cuda_kernel)
    "T g, float64 b1, float64 b2, float64 step_size, float64 root_bias2, float64 eps",
    "T p, T m, T v",
    """
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    p -= step_size * (m / (sqrt((double)v) / root_bias2 + eps));
    """,
    "minisegnet_adam",
)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): p *= 1 - lr * weight_decay, then the Adam step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class LRScheduler:
    """Sets ``optimizer.lr`` from a count of its own ``step()`` calls (``last_epoch``, PyTorch's name).

    One ``step()`` is one unit of the schedule, whatever the caller makes it: once per epoch, after
    that epoch's optimiser steps, as in PyTorch's examples, or once per batch, after each optimiser
    step, as the training recipe does (``recipe.make_optimizer``: its T_max and warm-up count batches).
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def lr_at(self, epoch):
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self):
        return self.optimizer.lr

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.base_lr = float(state["base_lr"])
        self.last_epoch = int(state["last_epoch"])
        self.optimizer.lr = self.lr_at(self.last_epoch)


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size): a drop by ``gamma`` every ``step_size`` steps of the schedule."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        super().__init__(optimizer)
        self.step_size = step_size
        self.gamma = gamma

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, held at eta_min after T_max.

    The closed form of PyTorch's ``CosineAnnealingLR`` over one half period.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if T_max < 1:
            raise ValueError(f"T_max must be >= 1, got {T_max}")
        super().__init__(optimizer)
        self.T_max = T_max
        self.eta_min = eta_min

    def lr_at(self, epoch):
        t = min(epoch, self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class WarmupCosineLR(CosineLR):
    """A linear warm-up to base_lr over the first ``warmup`` steps, then ``CosineLR``'s decay to eta_min at T_max.

    With t the number of steps taken: lr = base_lr * (t + 1) / warmup while t < warmup, then
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * (t - warmup) / (T_max - warmup))) / 2, held at
    eta_min after T_max. Call ``step()`` after every optimiser step (T_max counts steps, not epochs).
    The warm-up lets Adam's moment estimates settle before the full rate is applied.

        >>> from minisegnet import Tensor
        >>> opt = SGD([Tensor(np.zeros(1), requires_grad=True)], lr=0.1)
        >>> s = WarmupCosineLR(opt, warmup=2, T_max=4)
        >>> [round(s.lr_at(t), 3) for t in range(6)]
        [0.05, 0.1, 0.1, 0.05, 0.0, 0.0]
    """

    def __init__(self, optimizer, warmup, T_max, eta_min=0.0):
        if not 0 <= warmup < T_max:
            raise ValueError(f"warmup must be >= 0 and smaller than T_max={T_max}, got {warmup}")
        super().__init__(optimizer, T_max, eta_min)
        self.warmup = warmup
        self.optimizer.lr = self.lr_at(0)  # the first step already runs at the warm-up rate

    def lr_at(self, epoch):
        if epoch < self.warmup:
            return self.base_lr * (epoch + 1) / self.warmup
        t = min(epoch, self.T_max) - self.warmup
        return (
            self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / (self.T_max - self.warmup))) / 2
        )


CosineAnnealingLR = CosineLR
