"""The fused CUDA kernels of ops/fast/cuda_fused.py run on the host, for machines without a GPU (a test helper).

``use_host_kernels(monkeypatch)`` makes ``cuda.raw_kernel`` (as fast/cuda_fused.py sees it) return a ``HostKernel``
for NumPy arrays: the kernel's CUDA C source compiled as C++ by g++, each block's threads run as real threads
(``std::thread``) that meet at ``__syncthreads()`` (a ``std::barrier``) and share the ``__shared__`` arrays, the
blocks one after another. The launch checks every argument against the kernel's signature (an array's dtype
against its pointer type, a scalar's NumPy type against its C type), which is what CuPy's RawKernel leaves to
the caller. So the index arithmetic, the PyTorch tie and NaN rules, the block reductions and the wrappers'
arguments run here, on the test's own NumPy data. What it does not show: CUDA's memory model and warps,
NVRTC's compile (CuPy's compiler), speed. Those need a GPU.
"""

import atexit
import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from minisegnet import cuda
from minisegnet.ops.fast import cuda_fused
from minisegnet.registry import fast_paths

GXX = shutil.which("g++")
C_TYPES = {
    "float": np.float32,
    "double": np.float64,
    "int": np.int32,
    "long long": np.int64,
    "unsigned char": np.uint8,
    "unsigned short": np.uint16,
}
HARNESS = """
#include <algorithm>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
using std::exp; using std::isnan; using std::log; using std::max; using std::min; using std::sqrt;
struct Index { unsigned int x; };
static Index blockIdx, blockDim, gridDim;
static thread_local Index threadIdx;
static std::barrier<>* block_barrier;
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads() block_barrier->arrive_and_wait()
"""
LAUNCH = """
extern "C" void launch(unsigned grid_size_, unsigned block_size_, {params}) {{
    blockDim.x = block_size_;
    gridDim.x = grid_size_;
    for (unsigned block_ = 0; block_ < grid_size_; block_++) {{
        blockIdx.x = block_;
        std::barrier<> sync_(block_size_);
        block_barrier = &sync_;
        std::vector<std::thread> threads_;
        for (unsigned thread_ = 0; thread_ < block_size_; thread_++)
            threads_.emplace_back([=] {{ threadIdx.x = thread_; {name}({names}); }});
        for (auto& running_ : threads_) running_.join();
    }}
}}
"""  # the launcher's own names end in _ to stay clear of the kernel's parameters
_built = {}
_folder = None


def _signature(source):
    """(kernel name, [(C type, is pointer, parameter name)]) from the source's typedefs and kernel line."""
    typedefs = dict((alias, ctype) for ctype, alias in re.findall(r"typedef ([\w ]+) (\w+);", source))
    name, params = re.search(r'extern "C" __global__ void (\w+)\(([^)]*)\)', source).groups()
    parsed = []
    for param in params.split(","):
        match = re.fullmatch(r"\s*(?:const )?([\w ]+?)\s*(\*?)\s*(\w+)\s*", param)
        ctype, pointer, pname = match.groups()
        parsed.append((typedefs.get(ctype, ctype), pointer == "*", pname))
    return name, params, parsed


class HostKernel:
    """A stand-in for ``cupy.RawKernel(source, name)``: ``kernel(grid, block, args)`` runs it on the host."""

    def __init__(self, source, name):
        global _folder
        self.name, params, self.params = _signature(source)
        assert self.name == name, f"the source defines {self.name}, not {name}"
        key = hashlib.sha1(source.encode()).hexdigest()[:16]
        if key not in _built:
            if _folder is None:
                _folder = Path(tempfile.mkdtemp(prefix="minisegnet_host_cuda_"))
                atexit.register(shutil.rmtree, _folder, ignore_errors=True)
            names = ", ".join(pname for _, _, pname in self.params)
            code = HARNESS + source + LAUNCH.format(params=params, name=name, names=names)
            (_folder / f"{key}.cpp").write_text(code)
            command = [GXX, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", f"{key}.cpp", "-o", f"{key}.so"]
            done = subprocess.run(command, cwd=_folder, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"g++ failed on {name}:\n{done.stderr[-4000:]}"
            _built[key] = ctypes.CDLL(str(_folder / f"{key}.so"))
        self.library = _built[key]

    def __call__(self, grid, block, args):
        assert len(args) == len(self.params), f"{self.name}: {len(args)} arguments for {len(self.params)} parameters"
        values = [ctypes.c_uint(grid[0]), ctypes.c_uint(block[0])]
        for arg, (ctype, pointer, pname) in zip(args, self.params):
            expected = np.dtype(C_TYPES[ctype])
            where = f"{self.name}: {pname} ({ctype}{' *' if pointer else ''})"
            if pointer:
                assert isinstance(arg, np.ndarray) and arg.dtype == expected, f"{where} got {type(arg)} {arg.dtype}"
                assert arg.flags.c_contiguous, f"{where}: not a contiguous array"
                values.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                assert isinstance(arg, np.generic) and arg.dtype == expected, f"{where} got {arg!r}"
                values.append(np.ctypeslib.as_ctypes_type(expected)(arg.item()))
        self.library.launch(*values)


def use_host_kernels(monkeypatch):
    """Run cuda_fused.py's kernels on the host for NumPy arrays, under the same switches as on CuPy.

    Returns the list of the kernels' names as they are fetched, so a test can tell that they ran: where a
    wrapper gave up (a dtype, a missing case), the op would compare its generic code with itself."""
    if GXX is None:
        pytest.skip("g++ is not installed: the CUDA kernels cannot run on the host")
    fetched = []

    def host_raw_kernel(xp, source, name):
        if not host_runs_on(xp):
            return None
        fetched.append(name)
        return HostKernel(source, name)

    def host_runs_on(xp):
        return cuda.CUDA_KERNELS and fast_paths()

    monkeypatch.setattr(cuda_fused, "raw_kernel", host_raw_kernel)
    monkeypatch.setattr(cuda_fused, "runs_on", host_runs_on)
    return fetched


def ran(fetched, *names):
    """True when exactly the kernels ``names`` were fetched since the last call (always True on CuPy: None)."""
    if fetched is None:
        return True
    seen = fetched[:]
    fetched.clear()
    return seen == list(names)
