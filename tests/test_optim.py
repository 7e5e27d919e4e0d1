"""minisegnet/optim.py: SGD, Adam, AdamW and the schedules follow torch.optim step for step."""

import math
import tracemalloc

import numpy as np
import pytest

from minisegnet import cuda, optim
from minisegnet.backend import to_device, to_numpy
from minisegnet.nn import Parameter

from utils import torch

SHAPES = [(3, 2, 3, 3), (3,), (4, 5)]


def make_params(device, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(to_device(rng.standard_normal(s).astype(dtype), device)) for s in SHAPES]


def grads_for(step, seed=1):
    rng = np.random.default_rng(seed + step)
    return [rng.standard_normal(s) for s in SHAPES]


def run_both(make_ours, make_theirs, device, steps=6):
    """Apply the same gradients to our parameters and torch's; return the largest absolute difference."""
    T = torch()
    ours = make_params(device)
    theirs = [T.tensor(to_numpy(p.data).copy(), requires_grad=True) for p in ours]
    opt, topt = make_ours(ours), make_theirs(T, theirs)
    for step in range(steps):
        for p, t, g in zip(ours, theirs, grads_for(step)):
            p.grad = to_device(g, device)
            t.grad = T.from_numpy(g.copy())
        opt.step()
        topt.step()
    return max(np.abs(to_numpy(p.data) - t.detach().numpy()).max() for p, t in zip(ours, theirs))


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.8, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
]


@pytest.mark.parametrize("kw", SGD_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_sgd_matches_torch(kw, device):
    err = run_both(lambda ps: optim.SGD(ps, **kw), lambda T, ps: T.optim.SGD(ps, **kw), device)
    assert err < 1e-6


ADAM_CASES = [
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, betas=(0.85, 0.995), weight_decay=0.1)),
]


@pytest.mark.parametrize("name,kw", ADAM_CASES, ids=lambda v: str(v))
def test_adam_and_adamw_match_torch(name, kw, device):
    err = run_both(lambda ps: getattr(optim, name)(ps, **kw), lambda T, ps: getattr(T.optim, name)(ps, **kw), device)
    assert err < 1e-6


def test_float32_parameters_stay_float32(device):
    ps = make_params(device, np.float32)
    opt = optim.Adam(ps, lr=1e-2)
    for p, g in zip(ps, grads_for(0)):
        p.grad = to_device(g.astype(np.float32), device)
    opt.step()
    assert all(p.dtype == np.float32 for p in ps)
    assert all(a.dtype == np.float32 for table in opt.state.values() for a in table.values())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_cuda_kernel_equals_the_generic_lines(device, dtype, monkeypatch):
    # On CuPy, Adam.update is one CUDA kernel; MINISEGNET_CUDA_KERNELS=0 runs the array lines instead.
    if device == "cpu":
        pytest.skip("the CUDA kernels run on CuPy only")
    results = []
    for kernels in (True, False):
        monkeypatch.setattr(cuda, "CUDA_KERNELS", kernels)
        ps = make_params(device, dtype)
        opt = optim.AdamW(ps, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2)
        for step in range(4):
            for p, g in zip(ps, grads_for(step)):
                p.grad = to_device(g.astype(dtype), device)
            opt.step()
        results.append([to_numpy(a) for a in [*(p.data for p in ps), *opt.state["exp_avg_sq"].values()]])
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for ours, generic in zip(*results):
        assert ours.dtype == dtype and np.abs(ours - generic).max() <= tol * np.abs(generic).max()


def plain_steps(kind, kw, params, grads):
    """The update rules as their docstrings write them, one fresh array per operation: the reference for step()."""
    lr, wd = kw["lr"], kw.get("weight_decay", 1e-2 if kind == "AdamW" else 0.0)
    b1, b2 = kw.get("betas", (0.9, 0.999))
    eps, mu = kw.get("eps", 1e-8), kw.get("momentum", 0.0)
    ps = [p.copy() for p in params]
    m, v, buf = [0 * p for p in ps], [0 * p for p in ps], [None] * len(ps)
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            if kind == "AdamW":
                ps[i] = ps[i] * (1 - lr * wd)
            elif wd:
                g = g + wd * ps[i]
            if kind == "SGD":
                if mu:
                    buf[i] = g.copy() if buf[i] is None else mu * buf[i] + g
                    g = g + mu * buf[i] if kw.get("nesterov") else buf[i]
                ps[i] = ps[i] - lr * g
                continue
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            ps[i] = ps[i] - lr / (1 - b1**t) * m[i] / (np.sqrt(v[i]) / np.sqrt(1 - b2**t) + eps)
    return ps


PLAIN_CASES = [("SGD", kw) for kw in SGD_CASES] + ADAM_CASES


@pytest.mark.parametrize("name,kw", PLAIN_CASES, ids=lambda v: str(v))
def test_in_place_updates_match_the_written_formulas(name, kw, device):
    # step() writes every operation into the parameter, its state or a reused work array; the same rules with a
    # fresh array per operation, in float64, agree to rounding.
    ps = make_params(device)
    start = [to_numpy(p.data).copy() for p in ps]
    grads = [grads_for(step) for step in range(6)]
    opt = getattr(optim, name)(ps, **kw)
    for step_grads in grads:
        for p, g in zip(ps, step_grads):
            p.grad = to_device(g, device)
        opt.step()
    for p, expected in zip(ps, plain_steps(name, kw, start, grads)):
        assert np.abs(to_numpy(p.data) - expected).max() <= 1e-12 * np.abs(expected).max()


@pytest.mark.parametrize("name,kw", PLAIN_CASES, ids=lambda v: str(v))
def test_a_step_allocates_no_array_as_large_as_a_parameter(name, kw):
    # After the first step (which makes the moments and the work arrays), a step writes only into existing arrays.
    ps = [Parameter(np.random.default_rng(i).standard_normal(size)) for i, size in enumerate((50_000, 20_000, 7))]
    opt = getattr(optim, name)(ps, **kw)
    for step in range(3):
        for p in ps:
            p.grad = np.cos(p.data + step)
        tracemalloc.start()
        opt.step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if step:
            assert peak < 20_000 * 8 // 4, f"step {step}: {peak} bytes allocated"


def test_parameters_without_grad_are_skipped_and_zero_grad_clears():
    ps = make_params("cpu")
    before = ps[1].data.copy()
    ps[0].grad = np.ones(SHAPES[0])
    opt = optim.Adam(ps, lr=0.1)
    opt.step()
    assert np.array_equal(ps[1].data, before) and not np.allclose(ps[0].data, make_params("cpu")[0].data)
    assert set(opt.state["exp_avg"]) == {0}
    opt.zero_grad()
    assert all(p.grad is None for p in ps)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_state_dict_round_trip_continues_identically(name):
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.05)
    a, b = make_params("cpu"), make_params("cpu")
    opt_a = getattr(optim, name)(a, **kw)
    for step in range(3):
        for p, g in zip(a, grads_for(step)):
            p.grad = g
        opt_a.step()
    state = opt_a.state_dict()
    assert state["steps"] == 3 and all(isinstance(v, (int, float, bool, tuple, np.ndarray)) for v in state.values())
    for p, q in zip(b, a):
        p.data = q.data.copy()
    opt_b = getattr(optim, name)(b, lr=1.0)
    opt_b.load_state_dict(state)
    assert opt_b.lr == 0.05
    for step in range(3, 5):
        for p, q, g in zip(a, b, grads_for(step)):
            p.grad, q.grad = g, g.copy()
        opt_a.step()
        opt_b.step()
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a, b))


def test_load_state_dict_rejects_a_mismatched_state():
    opt = optim.SGD(make_params("cpu"), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum_buffer.0"):
        opt.load_state_dict({"lr": 0.1, "momentum_buffer.0": np.zeros(7)})
    with pytest.raises(ValueError, match="parameter 9"):
        opt.load_state_dict({"lr": 0.1, "momentum_buffer.9": np.zeros(3)})


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="-1"):
        optim.SGD(make_params("cpu"), lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(make_params("cpu"), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(make_params("cpu"), betas=(1.0, 0.9))


def test_step_and_cosine_schedules_match_torch():
    T = torch()
    for ours, theirs in [
        (lambda o: optim.StepLR(o, step_size=3, gamma=0.5), lambda o: T.optim.lr_scheduler.StepLR(o, 3, 0.5)),
        (
            lambda o: optim.CosineLR(o, T_max=10, eta_min=1e-3),
            lambda o: T.optim.lr_scheduler.CosineAnnealingLR(o, 10, 1e-3),
        ),
    ]:
        opt = optim.SGD(make_params("cpu"), lr=0.1)
        topt = T.optim.SGD([T.zeros(1, requires_grad=True)], lr=0.1)
        sched, tsched = ours(opt), theirs(topt)
        for _ in range(10):
            topt.step()
            sched.step()
            tsched.step()
            assert math.isclose(opt.lr, tsched.get_last_lr()[0], rel_tol=1e-9, abs_tol=1e-12)


def test_warmup_cosine_matches_torch_linear_then_cosine():
    # torch's LinearLR warm-up (factor (t + 1) / warmup) followed by CosineAnnealingLR over the rest.
    T = torch()
    opt = optim.SGD(make_params("cpu"), lr=0.1)
    topt = T.optim.SGD([T.zeros(1, requires_grad=True)], lr=0.1)
    sched = optim.WarmupCosineLR(opt, warmup=3, T_max=10, eta_min=1e-3)
    sl = T.optim.lr_scheduler
    tsched = sl.SequentialLR(
        topt, [sl.LinearLR(topt, 1 / 3, 1.0, total_iters=2), sl.CosineAnnealingLR(topt, 7, 1e-3)], milestones=[3]
    )
    for _ in range(10):
        assert math.isclose(opt.lr, tsched.get_last_lr()[0], rel_tol=1e-9, abs_tol=1e-12)
        topt.step()
        sched.step()
        tsched.step()
    with pytest.raises(ValueError, match="warmup"):
        optim.WarmupCosineLR(opt, warmup=10, T_max=10)


def test_scheduler_state_round_trip():
    opt = optim.SGD(make_params("cpu"), lr=0.1)
    sched = optim.CosineLR(opt, T_max=8)
    for _ in range(3):
        sched.step()
    opt2 = optim.SGD(make_params("cpu"), lr=0.1)
    sched2 = optim.CosineLR(opt2, T_max=8)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.last_epoch == 3 and opt2.lr == opt.lr
    sched.step()
    sched2.step()
    assert opt2.lr == opt.lr
