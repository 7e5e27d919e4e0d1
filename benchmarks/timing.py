"""One timer for NumPy, CuPy and PyTorch: warm-up, device synchronisation, median and spread, peak memory.

Why a GPU needs synchronising
-----------------------------
A CuPy (or PyTorch CUDA) call does not compute anything before it returns: it puts a kernel on the GPU's
queue (a CUDA *stream*) and hands control back to Python within a few microseconds. A naive timer

    t0 = time.perf_counter(); y = conv2d(x, W); t1 = time.perf_counter()   # wrong on a GPU

therefore measures the launch, not the work, and "shows" every op taking the same ~10 µs. The queued work is
then paid for later, by whatever happens to wait for it first (the next ``float(loss)``, a host copy, the next
benchmark's timer). So this module

1. synchronises *before* starting the clock, so no earlier work leaks into the measurement, and
2. synchronises *after* the timed calls, before stopping the clock, so all the work they queued is counted.

``minisegnet.backend.synchronize()`` waits for CuPy's current stream; ``torch.cuda.synchronize()`` does the same
for PyTorch. We time with ``time.perf_counter`` around the synchronised region (wall time, which includes the
Python overhead of launching kernels, because that is what a training loop pays). CUDA events would time the
GPU alone and hide that host overhead; ``cupyx.profiler.benchmark`` reports both, but only for CuPy, and we want
one timer for all three libraries.

Other habits: warm-up calls first (the first call compiles CuPy kernels, grows memory pools and faults in fresh
pages); each sample runs the function ``number`` times so it lasts at least ``min_time`` (short ops are otherwise
dominated by timer and sync overhead); we report the median and the interquartile range of ``repeat`` samples,
never the mean, because a shared machine adds one-sided noise. ``compare`` interleaves the implementations
sample by sample, so a burst of load from another process hits all of them rather than one.

Why libraries are compared in separate processes
------------------------------------------------
Two libraries in one process share the cores with each other's thread pools. After a call returns, OpenBLAS's
and OpenMP's worker threads keep spinning for a while, waiting for the next one, and they take the cores the
other library's threads need: on a 2-core machine a PyTorch call that follows a NumPy one in the same process
runs up to 2x slower, and the reverse is also true. ``compare`` is fine for implementations that share one
thread pool (two NumPy versions of an op); between libraries it times the interference. ``run_interleaved``
therefore starts one process per library and round (``python <bench script> --worker NAME ...``), in an order
that rotates from round to round with a pause between processes, all reading the same inputs and weights from
one ``.npz`` file and given the same thread count through the environment (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``) and each library's own call. Each worker times every case alone,
reports the BLAS kernels it loaded (``blas_pools``), and prints its samples as one JSON line; the parent keeps
every call's time (median and interquartile range) and each round's median (their spread, min to max, shows
how much one process differs from the next).

Peak memory is measured in one extra, untimed call (the tracers slow things down):

* ``peak_traced``: ``tracemalloc`` peak of the Python heap during the call, above what was already allocated.
  NumPy reports its array buffers to tracemalloc, so for NumPy code this is the peak of temporary arrays.
  PyTorch's allocator does not, so the number means nothing for torch (reported as None there).
* ``peak_rss``: growth of the process's resident set, read from ``/proc/self/status`` (``VmHWM`` high-water mark
  after resetting it through ``/proc/self/clear_refs``, minus ``VmRSS`` before). It sees every library, but memory
  that malloc recycles without returning to the OS is invisible, so it can read low. Linux only; None elsewhere.
* ``peak_device``: on the GPU, CuPy's memory pool is emptied of unused blocks first, then its ``total_bytes()``
  after the call (the pool keeps every block it grew to) minus before is the extra device memory the call needed,
  rounded up to the pool's block sizes. For torch: ``torch.cuda.max_memory_allocated()`` after
  ``reset_peak_memory_stats()``, minus the memory allocated before.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import minisegnet
from minisegnet import backend


@dataclass
class Result:
    """Timings of one implementation of one case. Times are seconds per call."""

    name: str
    impl: str
    device: str
    times: list = field(default_factory=list)
    number: int = 1  # calls per sample
    peak_traced: int | None = None  # bytes
    peak_rss: int | None = None  # bytes
    peak_device: int | None = None  # bytes
    round_medians: list = field(default_factory=list)  # separate processes: each round's median

    @property
    def median(self):
        return statistics.median(self.times)

    @property
    def q1(self):
        return _quantile(self.times, 0.25)

    @property
    def q3(self):
        return _quantile(self.times, 0.75)

    @property
    def iqr(self):
        return self.q3 - self.q1

    @property
    def min(self):
        return min(self.times)

    @property
    def max(self):
        return max(self.times)

    def row(self, **extra):
        """A flat dict (milliseconds and MiB) for tables: what every benchmark's ``run`` returns a list of."""
        mib = 2.0**20
        row = {
            "case": self.name,
            "impl": self.impl,
            "device": self.device,
            "median_ms": self.median * 1e3,
            "iqr_ms": self.iqr * 1e3,
            "q1_ms": self.q1 * 1e3,
            "q3_ms": self.q3 * 1e3,
            "min_ms": self.min * 1e3,
            "max_ms": self.max * 1e3,
            "repeat": len(self.times),
            "number": self.number,
            "peak_traced_mib": None if self.peak_traced is None else self.peak_traced / mib,
            "peak_rss_mib": None if self.peak_rss is None else self.peak_rss / mib,
            "peak_device_mib": None if self.peak_device is None else self.peak_device / mib,
            "times_ms": [t * 1e3 for t in self.times],
        }
        if self.round_medians:
            row["rounds"] = len(self.round_medians)
            row["round_medians_ms"] = [t * 1e3 for t in self.round_medians]
        row.update(extra)
        return row

    def as_dict(self):
        return asdict(self)


def _quantile(xs, q):
    """Linear-interpolation quantile (numpy's default), written out so one sample works too."""
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# ---- host and device memory -------------------------------------------------------------------


def _proc_status_kib(key):
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
        return int(match.group(1)) if match else None
    except OSError:
        return None


def _reset_rss_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class CupyMemory:
    """Extra device memory of one call, from CuPy's default memory pool (see the module docstring)."""

    def reset(self):
        pool = backend.cp.get_default_memory_pool()
        pool.free_all_blocks()
        self.before = pool.total_bytes()

    def peak(self):
        return backend.cp.get_default_memory_pool().total_bytes() - self.before


class TorchCudaMemory:
    """Extra device memory of one call, from PyTorch's caching allocator statistics."""

    def __init__(self, torch):
        self.torch = torch

    def reset(self):
        self.torch.cuda.synchronize()
        self.torch.cuda.reset_peak_memory_stats()
        self.before = self.torch.cuda.memory_allocated()

    def peak(self):
        return self.torch.cuda.max_memory_allocated() - self.before


def measure_memory(fn, *, sync, device_memory=None, traced=True):
    """Run ``fn`` once and return (peak_traced, peak_rss, peak_device) in bytes (None where unknown)."""
    gc.collect(1)  # young garbage only: a full collection takes ~0.1 s once torch is imported
    sync()
    if device_memory is not None:
        device_memory.reset()
    rss_before = _proc_status_kib("VmRSS")
    rss_ok = _reset_rss_peak() and rss_before is not None
    if traced:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        sync()
        peak_traced = tracemalloc.get_traced_memory()[1] - base if traced else None
    finally:
        if traced:
            tracemalloc.stop()
    peak_rss = max(0, _proc_status_kib("VmHWM") - rss_before) * 1024 if rss_ok else None
    peak_device = device_memory.peak() if device_memory is not None else None
    return peak_traced, peak_rss, peak_device


# ---- the timer ---------------------------------------------------------------------------------


def _no_sync():
    pass


@dataclass
class Impl:
    """One implementation to time: ``fn()`` does the work; the rest says how to wait for it and weigh it.

    ``sync`` defaults to ``minisegnet.backend.synchronize`` on device "gpu" (a no-op on "cpu");
    ``device_memory`` defaults to CuPy's pool on "gpu". ``traced`` says whether tracemalloc sees the library's
    arrays (True for NumPy, False for torch).
    """

    name: str
    impl: str
    device: str
    fn: object
    sync: object = None
    device_memory: object = None
    traced: bool = True

    def __post_init__(self):
        if self.device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {self.device!r}")
        if self.sync is None:
            self.sync = backend.synchronize if self.device == "gpu" else _no_sync
        if self.device_memory is None and self.device == "gpu" and self.impl != "torch":
            self.device_memory = CupyMemory()


def _time_calls(impl, number):
    """Seconds per call of ``number`` back-to-back calls, synchronised on both sides."""
    fn, sync = impl.fn, impl.sync
    sync()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    sync()
    return (time.perf_counter() - t0) / number


def compare(impls, *, warmup=2, repeat=7, min_time=0.05, max_number=1000, memory=True, budget=None):
    """Time several implementations, interleaved sample by sample; one ``Result`` per implementation.

    Each implementation gets ``warmup`` untimed calls, then ``number`` is chosen so one sample lasts at least
    ``min_time`` seconds (from the slowest warm-up call: pessimistic on purpose, to keep samples independent of
    calibration luck), then ``repeat`` samples are taken, A B C A B C ... . ``budget`` (seconds per
    implementation) lowers ``repeat`` for slow cases, never below 3 samples.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    numbers, slowest = [], []
    for impl in impls:
        slow = max(_time_calls(impl, 1) for _ in range(max(warmup, 1)))
        slowest.append(slow)
        numbers.append(max(1, min(max_number, math.ceil(min_time / slow))) if slow > 0 else max_number)
    if budget is not None:
        longest = max(n * t for n, t in zip(numbers, slowest))
        repeat = min(repeat, max(3, int(budget / longest))) if longest > 0 else repeat
    results = [Result(i.name, i.impl, i.device, number=n) for i, n in zip(impls, numbers)]
    for _ in range(repeat):
        for impl, res in zip(impls, results):
            res.times.append(_time_calls(impl, res.number))
    if memory:
        for impl, res in zip(impls, results):
            traced, rss, dev = measure_memory(
                impl.fn, sync=impl.sync, device_memory=impl.device_memory, traced=impl.traced
            )
            res.peak_traced, res.peak_rss, res.peak_device = traced, rss, dev
    return results


def benchmark(fn, *, device="cpu", warmup=2, repeat=7, min_time=0.05, name="fn", impl=None, sync=None, memory=True):
    """Time ``fn()`` on ``device`` ("cpu" or "gpu"): warm-up, synchronised samples, median, IQR, peak memory.

    >>> r = benchmark(lambda: sum(range(100)), repeat=3, min_time=0.001, memory=False)
    >>> len(r.times), r.min <= r.median <= r.max
    (3, True)
    """
    impl = impl or ("cupy" if device == "gpu" else "numpy")
    return compare(
        [Impl(name, impl, device, fn, sync=sync)], warmup=warmup, repeat=repeat, min_time=min_time, memory=memory
    )[0]


# ---- threads and torch -------------------------------------------------------------------------


def set_threads(n=None):
    """Give NumPy's BLAS and PyTorch the same number of threads (default: every core); return that number.

    The limit stays for the rest of the process; use ``threads(n)`` for a limit that is undone afterwards.
    """
    n = n or os.cpu_count() or 1
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)  # not used as a context manager: the limit stays for the process
    except ImportError:
        pass
    torch = import_torch()
    if torch is not None:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def threads(n):
    """Run a block with ``n`` threads for minisegnet's convolutions, BLAS and torch; then restore the counts.

    minisegnet's own threads (``set_num_threads``) hold BLAS to one thread each inside them.
    """
    from minisegnet import get_num_threads, set_num_threads

    torch = import_torch()
    before = torch.get_num_threads() if torch is not None else None
    ours = get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    with threadpool_limits(limits=n) if threadpool_limits else contextlib.nullcontext():
        if torch is not None:
            torch.set_num_threads(n)
        set_num_threads(n)
        try:
            yield n
        finally:
            set_num_threads(ours)
            if torch is not None:
                torch.set_num_threads(before)


def blas_pools():
    """threadpoolctl's thread pools, each OpenBLAS with its kernels: "openblas 0.3.31 SkylakeX (2 threads); ...".

    The kernels are part of the machine: ``OPENBLAS_CORETYPE`` set in the environment forces a set (some machines
    force Haswell's, for an old OpenBLAS that miscomputes on their CPU), and on an AVX-512 CPU Haswell's kernels
    run the convolutions' products up to 1.8x slower than the SkylakeX ones OpenBLAS picks by itself.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    pools = []
    for p in threadpool_info():
        kernels = f" {p['architecture']}" if p.get("architecture") else ""
        pools.append(f"{p['internal_api']} {p.get('version')}{kernels} ({p['num_threads']} threads)")
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return "; ".join(pools or ["none found"]) + (f"; OPENBLAS_CORETYPE={forced} set" if forced else "")


def import_torch():
    """PyTorch when installed (benchmarks compare against it), else None. The package itself never imports it."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_impl(name, device, fn, torch):
    """An ``Impl`` for a torch function on "cpu" or "gpu" (CUDA), with torch's own synchronisation."""
    if device == "gpu":
        memory = TorchCudaMemory(torch)
        return Impl(name, "torch", "gpu", fn, sync=torch.cuda.synchronize, device_memory=memory, traced=False)
    return Impl(name, "torch", "cpu", fn, traced=False)


def torch_on(torch, device):
    """True when ``torch`` (or None) can run on ``device``: always on "cpu", with CUDA on "gpu"."""
    return torch is not None and (device == "cpu" or torch.cuda.is_available())


def to_torch(a, device, torch, requires_grad=False):
    """A torch tensor holding the host array ``a`` on "cpu" or "gpu" (CUDA)."""
    t = torch.from_numpy(np.ascontiguousarray(a)).to("cuda" if device == "gpu" else "cpu")
    return t.requires_grad_(requires_grad)


# ---- what every benchmark shares ---------------------------------------------------------------


def resolve_devices(device):
    """["cpu"], ["gpu"] or both for --device cpu|gpu|both; "both" quietly drops a GPU that is not there."""
    if device == "both":
        return ["cpu", "gpu"] if backend.cupy_available() else ["cpu"]
    return [backend.check_device(device)]


def settings(quick):
    """Timer settings: a token run in quick mode (tests, smoke checks), enough samples for a median otherwise.

    Full runs give each implementation of a case about 30 s of samples (at least 3, at most 7).
    """
    if quick:
        return {"warmup": 1, "repeat": 3, "min_time": 0.0, "memory": True}
    return {"warmup": 2, "repeat": 7, "min_time": 0.2, "memory": True, "budget": 30.0}


# ---- separate processes: one per library and round ---------------------------------------------

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
NAMED_VARIABLES = (*THREAD_VARIABLES, "OPENBLAS_CORETYPE", "XLA_FLAGS", "GLIBC_TUNABLES")
FRAMEWORKS = ("minisegnet", "numpy", "torch", "jax", "jaxlib", "dezero", "mygrad", "chainer", "cupy")


def thread_env(threads):
    """The environment of a worker process: this one's, with every thread-count variable set to ``threads``.

    With one thread, JAX's XLA is told so as well (it has no flag for other counts: its pool has every core).
    """
    env = dict(os.environ, **{k: str(threads) for k in THREAD_VARIABLES})
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    return env


def time_block(impl, *, warmup=3, min_calls=5, min_time=1.0):
    """Seconds of each call of ``impl.fn`` after ``warmup`` untimed ones: at least ``min_calls``, >= ``min_time`` s."""
    for _ in range(warmup):
        impl.fn()
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_time:
        times.append(_time_calls(impl, 1))
    return times


def host(a):
    """A NumPy copy of an output of any framework: torch tensors, JAX and CuPy arrays, Variables with ``.data``."""
    inner = getattr(a, "data", None)
    if not isinstance(a, np.ndarray) and (isinstance(inner, np.ndarray) or backend.is_gpu_array(inner)):
        a = inner  # minisegnet and mygrad Tensors, DeZero and Chainer Variables
    elif hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return backend.to_numpy(a) if backend.is_gpu_array(a) else np.asarray(a)


def worker_info(threads):
    """What a worker ran with: library versions, BLAS pools and kernels, thread counts, the variables that set them."""
    versions = {k: getattr(sys.modules[k], "__version__", "?") for k in FRAMEWORKS if k in sys.modules}
    info = {"versions": versions, "blas": blas_pools(), "threads": threads}
    info["environment"] = {k: os.environ[k] for k in NAMED_VARIABLES if k in os.environ}
    if "torch" in sys.modules:
        info["torch threads"] = sys.modules["torch"].get_num_threads()
    if "minisegnet" in sys.modules:
        info["minisegnet threads"] = minisegnet.get_num_threads()
    return info


def interleaved_parser(description, quick_help, workers="library"):
    """The command line every separate-process benchmark shares: --quick, --rounds, --pause and --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--rounds", type=int, default=None, help=f"processes per {workers} (default 5)")
    parser.add_argument("--pause", type=float, default=None, help="seconds between processes (default 2)")
    parser.add_argument("--threads", type=int, default=2, help=f"threads of every {workers} (default 2)")
    return parser


def worker_main(builders, argv=None):
    """The worker side of ``run_interleaved``: build one framework's cases, time each, print one JSON line.

    ``builders`` = {name: function(data, args) -> [Impl]}; ``data`` is the ``.npz`` every worker reads. Each Impl's
    ``fn`` returns its outputs (or None); ``--check PATH`` runs each once and saves them instead of timing.
    """
    p = argparse.ArgumentParser(description="one benchmark worker (started by run_interleaved)")
    p.add_argument("--worker", required=True, choices=sorted(builders))
    p.add_argument("--data", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--min-calls", type=int, default=5)
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--memory", action="store_true", help="also measure each case's peak memory")
    p.add_argument("--check", help="save each case's outputs of one call to this .npz instead of timing")
    args, _ = p.parse_known_args(argv)
    with np.load(args.data) as data:
        impls = builders[args.worker](dict(data), args)
    if args.check:
        outputs = {f"{i.name}/{k}": host(a) for i in impls for k, a in enumerate(i.fn() or ())}
        np.savez(args.check, **outputs)
        print(json.dumps({"info": worker_info(args.threads), "cases": {}}))
        return 0
    cases = {}
    for impl in impls:
        times = time_block(impl, warmup=args.warmup, min_calls=args.min_calls, min_time=args.min_time)
        cases[impl.name] = {"times": times, "impl": impl.impl, "device": impl.device}
        if args.memory:
            memory = measure_memory(impl.fn, sync=impl.sync, device_memory=impl.device_memory, traced=impl.traced)
            cases[impl.name]["memory"] = memory
    print(json.dumps({"info": worker_info(args.threads), "cases": cases}))
    return 0


def spawn(script, worker, data, threads, args=(), timeout=None):
    """Run ``python script --worker worker --data data --threads threads *args``; its JSON line as a dict."""
    cmd = [sys.executable, str(script), "--worker", worker, "--data", str(data), "--threads", str(threads), *args]
    proc = subprocess.run(cmd, env=thread_env(threads), capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"benchmark worker {worker!r} of {Path(script).name} failed (exit {proc.returncode}): {why}")
    return json.loads(lines[-1])


def run_interleaved(script, workers, data, *, rounds=5, pause=2.0, threads=2, args=(), memory=False):
    """Time every worker's cases in separate processes, interleaved: ({worker: {case: Result}}, {worker: info}).

    Round r starts the workers one after the other in the order rotated by r, sleeping ``pause`` seconds before
    each process; ``memory`` measures peak memory in the first round. A Result holds every call of every round
    (its median and IQR) and each round's median (``round_medians``).
    """
    if rounds < 1 or pause < 0 or threads < 1:
        raise ValueError(f"need rounds >= 1, pause >= 0, threads >= 1, got {rounds}, {pause}, {threads}")
    results, infos = {w: {} for w in workers}, {}
    for r in range(rounds):
        for k, worker in enumerate(workers[r % len(workers) :] + workers[: r % len(workers)]):
            if r or k:
                time.sleep(pause)
            extra = [*args, "--memory"] if memory and r == 0 else list(args)
            out = spawn(script, worker, data, threads, extra)
            infos.setdefault(worker, out["info"])
            for case, rec in out["cases"].items():
                res = results[worker].setdefault(case, Result(case, rec["impl"], rec["device"]))
                res.times += rec["times"]
                res.round_medians.append(statistics.median(rec["times"]))
                if "memory" in rec:
                    res.peak_traced, res.peak_rss, res.peak_device = rec["memory"]
    return results, infos


def check_outputs(script, workers, data, reference, *, threads=1, args=(), rtol=1e-4):
    """{(worker, output key): normwise relative error against ``reference``'s output}; raises above ``rtol``.

    Each worker runs once with ``--check`` (one call per case from the same inputs and weights) and saves its
    outputs; an output the reference has and a worker lacks is an error too. ``rtol`` is a number or a function
    (worker, key) -> tolerance, or None for an output that worker does not compute.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        saved = {}
        for worker in dict.fromkeys([reference, *workers]):
            path = Path(tmp) / f"{worker}.npz"
            spawn(script, worker, data, threads, [*args, "--check", str(path)])
            with np.load(path) as f:
                saved[worker] = dict(f)
    errors, bad = {}, []
    for worker in workers:
        for key, ref in saved[reference].items():
            tol = rtol(worker, key) if callable(rtol) else rtol
            if tol is None:
                continue
            got = saved[worker].get(key)
            if got is None or got.shape != ref.shape:
                bad.append(f"{worker} {key}: shape {None if got is None else got.shape}, expected {ref.shape}")
                continue
            scale = np.abs(ref).max() or 1.0
            errors[worker, key] = float(np.abs(got.astype(np.float64) - ref).max() / scale)
            if errors[worker, key] > tol:
                bad.append(f"{worker} {key}: relative error {errors[worker, key]:.2e} > {tol:.0e}")
    if bad:
        more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise RuntimeError(f"outputs differ from {reference}'s: " + "; ".join(bad[:3]) + more)
    return errors
