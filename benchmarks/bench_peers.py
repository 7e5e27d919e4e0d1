"""minisegnet against its peers: PyTorch, JAX (jit), mygrad and DeZero, each where it is installed.

    python benchmarks/bench_peers.py               # the full tables (about 15 minutes on 2 cores)
    python benchmarks/bench_peers.py --quick       # tiny shapes, one round: checks that it runs

Two suites, float32, forward + backward: the 8 convolutions of bench_conv.py (3x3 padding 1 and 2x2 stride-2
transposed, gradients for input, weight and bias) and one U-Net training step (8, 3, 64x64, UNet(base 16,
depth 3), cross-entropy + soft Dice on the softmax, Adam 1e-3), every framework from the same inputs and the
same initial weights (one .npz). Before timing, each framework's outputs are checked against PyTorch's: the
convolutions' y, gx, gW, gb (relative error <= 1e-4), the step's loss and two weight gradients after one step
(<= 1e-3). Then timing.run_interleaved: rounds of one process per framework in a rotating order, 2 s apart,
the same thread count everywhere (JAX's XLA has no flag for a thread count above one: its pool has every core).

How each peer writes the U-Net: PyTorch is bench_train_step.py's twin; JAX and mygrad run ``unet`` below,
one definition over each framework's array functions (JAX: lax convolutions and reduce_window pooling, the step
under ``jax.jit`` with ``value_and_grad``; mygrad: conv_nd, max_pool and batchnorm); the transposed 2x2 stride-2
convolution is an einsum where a framework has none. DeZero has no concatenation or batch norm that trains
like these, so it runs the convolution suite only. DeZero 0.0.13 uses ``np.int``, which NumPy 2 removed: its
worker defines the alias before importing it.

Results: benchmarks/results/peers_cpu.md (not in quick mode), with each framework's version, threads and BLAS.
"""

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_conv  # noqa: E402
import bench_train_step  # noqa: E402

from timing import Impl, check_outputs, interleaved_parser, run_interleaved, worker_main  # noqa: E402

STEP = {"batch": 8, "size": 64, "base": 16, "depth": 3, "classes": 2}
PEERS = ("minisegnet", "torch", "jax", "mygrad", "dezero")
MODULES = {"minisegnet": "minisegnet", "torch": "torch", "jax": "jax", "mygrad": "mygrad", "dezero": "dezero"}
STEP_FREE = ("dezero",)  # frameworks that run the convolution suite only
NCHW = ("NCHW", "OIHW", "NCHW")  # JAX's names of the arrays' axes: torch's layouts
ADAM = (1e-3, 0.9, 0.999, 1e-8)  # lr, beta1, beta2, eps: torch's defaults, as in bench_train_step


def installed():
    """The peers whose package can be imported here (found without importing it)."""
    return [p for p in PEERS if importlib.util.find_spec(MODULES[p]) is not None]


def write_data(shapes, step, path, seed=0):
    """The convolution cases (bench_conv's layout) and the step's batch and weights (bench_train_step's) in one file."""
    with tempfile.TemporaryDirectory() as tmp:
        bench_conv.write_data(shapes, Path(tmp) / "conv.npz", seed)
        n_params = bench_train_step.write_data(step, Path(tmp) / "step.npz", seed=seed)
        with np.load(Path(tmp) / "conv.npz") as conv, np.load(Path(tmp) / "step.npz") as st:
            np.savez(path, **conv, **st)
    return n_params


# ---- one U-Net over any framework's array functions -------------------------------------------


def unet(ops, p, x, depth):
    """minisegnet's UNet(block="plain", up="transpose", norm="batch") in training mode, from parameters ``p``."""

    def block(name, x):
        for k in (1, 2):
            x = ops.conv3(x, p[f"{name}.conv{k}.weight"])
            x = ops.relu(ops.bn(x, p[f"{name}.bn{k}.weight"], p[f"{name}.bn{k}.bias"]))
        return x

    features = []
    for i in range(depth):
        x = block(f"encoder.{i}", x)
        features.append(x)
        x = ops.pool(x)
    x = block("bottleneck", x)
    for level in range(depth):
        up = up2(ops.M, x, p[f"ups.{level}.weight"], p[f"ups.{level}.bias"])
        x = block(f"decoder.{level}", ops.M.concatenate([features[-1 - level], up], axis=1))
    W = p["head.weight"]
    return ops.M.einsum("nchw,oc->nohw", x, W.reshape(W.shape[0], W.shape[1])) + p["head.bias"].reshape(1, -1, 1, 1)


def up2(M, x, W, b):
    """The 2x2 stride-2 transposed convolution: y[n, o, 2i + k, 2j + l] = sum_c x[n, c, i, j] W[c, o, k, l] + b[o]."""
    N, _, H, Wd = x.shape
    y = M.einsum("ncij,cokl->noikjl", x, W).reshape(N, W.shape[1], 2 * H, 2 * Wd)
    return y + b.reshape(1, -1, 1, 1)


def bn_train(M, x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / M.sqrt(var + eps) * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)


def loss_fn(M, z, onehot, smooth=1e-6):
    """Mean cross-entropy + soft Dice (squared, bench_train_step's formula) of logits z (N, K, H, W)."""
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - M.log(M.exp(shifted).sum(axis=1, keepdims=True))
    ce = -(logp * onehot).sum(axis=1).mean()
    prob = M.exp(logp)
    inter = (prob * onehot).sum(axis=(2, 3))
    union = (prob * prob).sum(axis=(2, 3)) + (onehot * onehot).sum(axis=(2, 3))
    return ce + 1 - ((2 * inter + smooth) / (union + smooth)).mean()


def adam(p, g, m, v, t):
    """One Adam update (torch's formula) of NumPy or JAX arrays; returns (p, m, v)."""
    lr, b1, b2, eps = ADAM
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    step = lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)) ** 0.5 + eps)
    return p - step, m, v


def step_arrays(data):
    """(cfg, images, one-hot masks float32, the trainable parameters by name) from the file."""
    cfg, images, masks, state = bench_train_step.loaded(data)
    onehot = (masks[:, None] == np.arange(cfg["classes"]).reshape(1, -1, 1, 1)).astype(images.dtype)
    params = {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    return cfg, images, onehot, params


# ---- the workers -------------------------------------------------------------------------------


def build_minisegnet(data, args):
    return bench_conv.build_minisegnet(data, args) + bench_train_step.build_minisegnet(data, args)


def build_torch(data, args):
    return bench_conv.build_torch(data, args) + bench_train_step.build_torch_worker(data, args)


def build_jax(data, args):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv3(x, W):
        return lax.conv_general_dilated(x, W, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NCHW)

    def fwd_bwd(x, W, b, gy, op):
        def f(x, W, b):
            return up2(jnp, x, W, b) if op == "convT2x2" else conv3(x, W) + b.reshape(1, -1, 1, 1)

        y, vjp = jax.vjp(f, x, W, b)
        return (y, *vjp(gy))

    out = []
    for name, op, *_, x, W, b, gy in bench_conv.cases(data):
        f = jax.jit(fwd_bwd, static_argnums=4)
        arrays = [jnp.asarray(a) for a in (x, W, b, gy)]
        out.append(Impl(name, "jax", "cpu", lambda f=f, a=arrays, op=op: jax.block_until_ready(f(*a, op))))

    ops = SimpleNamespace(
        M=jnp,
        relu=jax.nn.relu,
        pool=lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"),
        bn=lambda x, g, b: bn_train(jnp, x, g, b),
        conv3=conv3,
    )

    cfg, images, onehot, params = step_arrays(data)
    checked = bench_train_step.CHECKED_GRADS

    @jax.jit
    def train_step(state, x, onehot):
        p, m, v, t = state
        loss, g = jax.value_and_grad(lambda p: loss_fn(jnp, unet(ops, p, x, cfg["depth"]), onehot))(p)
        new = {k: adam(p[k], g[k], m[k], v[k], t + 1) for k in p}
        p, m, v = ({k: n[i] for k, n in new.items()} for i in range(3))
        return (p, m, v, t + 1), (loss, *(g[k] for k in checked))

    p = {k: jnp.asarray(a) for k, a in params.items()}
    zeros = {k: jnp.zeros_like(a) for k, a in p.items()}
    holder = {"state": (p, zeros, dict(zeros), jnp.float32(0)), "x": jnp.asarray(images), "g": jnp.asarray(onehot)}

    def step():
        holder["state"], outputs = train_step(holder["state"], holder["x"], holder["g"])
        return jax.block_until_ready(outputs)

    return out + [Impl("unet step", "jax", "cpu", step)]


def build_mygrad(data, args):
    import mygrad as mg
    from mygrad.nnet import batchnorm, conv_nd, max_pool, relu

    def conv(x, W, b, op):
        return up2(mg, x, W, b) if op == "convT2x2" else conv_nd(x, W, stride=1, padding=1) + b.reshape(1, -1, 1, 1)

    out = []
    for name, op, *_, x, W, b, gy in bench_conv.cases(data):

        def fwd_bwd(x=x, W=W, b=b, gy=gy, op=op):
            tx, tW, tb = mg.Tensor(x), mg.Tensor(W), mg.Tensor(b)
            y = conv(tx, tW, tb, op)
            y.backward(gy)
            return y.data, tx.grad, tW.grad, tb.grad

        out.append(Impl(name, "mygrad", "cpu", fwd_bwd))

    ops = SimpleNamespace(
        M=mg,
        relu=relu,
        pool=lambda x: max_pool(x, (2, 2), 2),
        bn=lambda x, g, b: batchnorm(x, gamma=g, beta=b, eps=1e-5),
        conv3=lambda x, W: conv_nd(x, W, stride=1, padding=1),
    )

    cfg, images, onehot, params = step_arrays(data)
    state = {"p": params, "m": {k: np.zeros_like(a) for k, a in params.items()}, "t": 0}
    state["v"] = {k: np.zeros_like(a) for k, a in params.items()}

    def step():
        p = {k: mg.Tensor(a) for k, a in state["p"].items()}
        loss = loss_fn(mg, unet(ops, p, images, cfg["depth"]), onehot)
        loss.backward()
        state["t"] += 1
        for k in p:
            state["p"][k], state["m"][k], state["v"][k] = adam(
                state["p"][k], p[k].grad, state["m"][k], state["v"][k], state["t"]
            )
        return (loss.data, *(p[k].grad for k in bench_train_step.CHECKED_GRADS))

    return out + [Impl("unet step", "mygrad", "cpu", step)]


def build_dezero(data, args):
    vars(np).setdefault("int", int)  # DeZero 0.0.13 reads np.int at import; NumPy 2 removed it
    import dezero
    import dezero.functions_conv as FC

    out = []
    for name, op, *_, x, W, b, gy in bench_conv.cases(data):

        def fwd_bwd(x=x, W=W, b=b, gy=gy, op=op):
            tx, tW, tb = dezero.Variable(x), dezero.Variable(W), dezero.Variable(b)
            y = FC.deconv2d(tx, tW, tb, stride=2, pad=0) if op == "convT2x2" else FC.conv2d(tx, tW, tb, stride=1, pad=1)
            y.grad = dezero.Variable(gy)  # backward() starts from a gradient already set (else from ones)
            y.backward()
            return y.data, tx.grad.data, tW.grad.data, tb.grad.data

        out.append(Impl(name, "dezero", "cpu", fwd_bwd))
    return out


BUILDERS = {"minisegnet": build_minisegnet, "torch": build_torch, "jax": build_jax, "mygrad": build_mygrad}
BUILDERS["dezero"] = build_dezero


def tolerance(worker, key):
    """The check's relative tolerance for one output: 1e-4 for a convolution, 1e-2 for the step, None: not run.

    The step's outputs are the loss and two weight gradients, the first layer's after the whole backward pass in
    float32: frameworks that sum in different orders meet each other's to about 3e-3 (minisegnet, JAX and mygrad
    against torch alike), where a wrong layer would be off by far more than 1e-2."""
    if key.startswith("unet step"):
        return None if worker in STEP_FREE else 1e-2
    return 1e-4


# ---- the tables --------------------------------------------------------------------------------


def run(quick=False, rounds=None, pause=None, threads=2, peers=None):
    """(rows, infos, errors): one row per case with each peer's Result; the workers' info; the checked errors."""
    peers = [p for p in (peers or installed()) if p in BUILDERS]
    if "torch" not in peers:
        raise RuntimeError("bench_peers: PyTorch is the reference every peer is checked against: install torch")
    shapes = [
        (op, 1, min(C, 16), min(OC, 16), min(H, 8)) if quick else (op, N, C, OC, H)
        for op, N, C, OC, H in bench_conv.SHAPES
    ]
    step = bench_train_step.QUICK if quick else STEP
    args = ["--warmup", "1", "--min-calls", "2", "--min-time", "0"] if quick else ["--min-time", "2"]
    rounds, pause = rounds or (1 if quick else 5), (0.0 if quick else 2.0) if pause is None else pause
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "peers.npz"
        write_data(shapes, step, data)
        others = [p for p in peers if p != "torch"]
        errors = check_outputs(__file__, others, data, "torch", threads=threads, args=args, rtol=tolerance)
        results, infos = run_interleaved(__file__, peers, data, rounds=rounds, pause=pause, threads=threads, args=args)
    names = [bench_conv.label(i, *s) for i, s in enumerate(shapes)] + ["unet step"]
    rows = [{"case": name, **{p: results[p][name] for p in peers if name in results[p]}} for name in names]
    return rows, infos, errors


def markdown(rows, infos, errors, step):
    peers = list(infos)
    head = (
        "| case | "
        + " | ".join(f"{p} ms (IQR)" for p in peers)
        + " | "
        + " | ".join(f"{p} / torch" for p in peers if p != "torch")
        + " |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [f"{r[p].median * 1e3:.2f} ({r[p].iqr * 1e3:.2f})" if p in r else "" for p in peers]
        ratios = [f"{r[p].median / r['torch'].median:.2f}" if p in r else "" for p in peers if p != "torch"]
        lines.append(f"| {r['case']} | " + " | ".join(cells + ratios) + " |")
    lines += ["", f"The step: {json.dumps(step)}. Ratios above 1: slower than torch.", ""]
    for p in peers:
        if p == "torch":
            continue
        conv = [r[p].median / r["torch"].median for r in rows if p in r and r["case"] != "unet step"]
        step_row = next((r for r in rows if r["case"] == "unet step" and p in r), None)
        line = f"- {p} / torch: convolutions, geometric mean {bench_conv.geomean(conv):.2f}"
        line += f" ({min(conv):.2f}-{max(conv):.2f})"
        if step_row:
            ours, torch = step_row[p], step_row["torch"].median
            lo, hi = min(ours.round_medians) / torch, max(ours.round_medians) / torch
            line += f"; U-Net step {ours.median / torch:.2f} (one round's median: {lo:.2f}-{hi:.2f})"
        worst = max((e, k) for (w, k), e in errors.items() if w == p)
        lines.append(line + f"; largest relative error against torch {worst[0]:.1e} ({worst[1]})")
    lines += ["", "Each worker process ran with:", ""] + [f"- {p}: {json.dumps(i)}" for p, i in infos.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--worker" in argv:
        return worker_main(BUILDERS, argv)
    parser = interleaved_parser(__doc__.split("\n")[0], "tiny shapes, one round: checks that it runs", "framework")
    parser.add_argument(
        "--peers", default=None, help=f"comma-separated subset of {','.join(PEERS)} (default: installed)"
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "peers_cpu.md"))
    args = parser.parse_args(argv)
    peers = args.peers.split(",") if args.peers else None
    if peers and not set(peers) <= set(PEERS):
        parser.error(f"--peers takes names from {','.join(PEERS)}, got {args.peers}")
    rows, infos, errors = run(args.quick, args.rounds, args.pause, args.threads, peers)
    step = bench_train_step.QUICK if args.quick else STEP
    machine = "\n".join(f"- {k}: {v}" for k, v in bench_conv.versions().items())
    command = f"python benchmarks/bench_peers.py {' '.join(argv)}".strip()
    text = f"# minisegnet against its peers\n\n{machine}\n- command: `{command}`\n\n"
    text += markdown(rows, infos, errors, step) + "\n"
    print(text)
    if not args.quick:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
