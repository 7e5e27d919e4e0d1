"""Every CUDA source of the package compiles with nvcc, on a machine with or without a GPU.

The sources are found by their names: a module-level ``_..._CUDA`` of any minisegnet module is either a
``cupy.ElementwiseKernel`` spec (in_params, out_params, body, name), as ``cuda.cuda_kernel`` takes it, or a
``cupy.RawKernel`` source string, as ``cuda.raw_kernel`` takes it. Each is compiled once per dtype it can run
with (the typedefs ``T``, and ``TAP`` for the pooling tap index), all in one translation unit and one nvcc call
(each variant in its own namespace, its ``extern "C"`` kernel renamed to keep the names apart).

An elementwise body is not a whole kernel: CuPy wraps it in a loop over the output index ``i`` and binds every
parameter. ``elementwise_as_raw`` writes that wrapper by hand: a ``raw`` parameter becomes a pointer, any other
becomes the value (input) or a reference (output) at ``i``, which is how the body sees it in CuPy. What this
cannot catch: mistakes that only running shows (wrong indices, races), and the small differences between nvcc
and NVRTC, the compiler CuPy uses (nvcc includes the CUDA headers by itself; NVRTC does not).
"""

import importlib
import pkgutil
import re
import shutil
import subprocess

import pytest

import minisegnet

NVCC = shutil.which("nvcc") or shutil.which("/usr/local/cuda/bin/nvcc")
C_TYPES = {"T": "T", "int32": "int", "int64": "long long", "float32": "float", "float64": "double"}
VARIANTS = [{"T": "float", "TAP": "unsigned char"}, {"T": "double", "TAP": "unsigned short"}]


def cuda_sources():
    """{"module.NAME": spec or source} for every ``_..._CUDA`` of the package."""
    found = {}
    for info in pkgutil.walk_packages(minisegnet.__path__, "minisegnet."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("_") and name.endswith("_CUDA"):
                found[f"{info.name}.{name}"] = value
    return found


def elementwise_as_raw(in_params, out_params, body, name):
    """The CUDA C kernel CuPy would make of an ElementwiseKernel spec, for n outputs (by hand, see above)."""
    params, binds = [], []
    for role, declarations in (("in", in_params), ("out", out_params)):
        for declaration in declarations.split(","):
            *words, ctype, param = declaration.split()
            ctype = C_TYPES[ctype]
            const = "const " if role == "in" else ""
            if words == ["raw"]:
                params.append(f"{const}{ctype}* {param}")
            else:
                params.append(f"{const}{ctype}* {param}_at")
                binds.append(f"{const}{ctype}{'' if role == 'in' else '&'} {param} = {param}_at[i];")
    loop = "for (ptrdiff_t i = blockIdx.x * (ptrdiff_t)blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)"
    signature = f'extern "C" __global__ void {name}({", ".join(params)}, ptrdiff_t n)'
    return f"{signature} {{\n{loop} {{\n{' '.join(binds)}\n{body}\n}}\n}}\n"


def translation_unit(sources):
    """One .cu text holding every source once per variant of VARIANTS."""
    parts = []
    for where, value in sources.items():
        source = elementwise_as_raw(*value) if isinstance(value, tuple) else value
        (kernel,) = re.findall(r'extern "C" __global__ void (\w+)', source)
        for k, types in enumerate(VARIANTS):
            typedefs = "".join(f"typedef {ctype} {alias};\n" for alias, ctype in types.items())
            renamed = source.replace(kernel, f"{kernel}_{k}")
            parts.append(f"// {where}, {types}\nnamespace variant_{kernel}_{k} {{\n{typedefs}{renamed}}}\n")
    return "\n".join(parts)


def test_the_package_has_the_cuda_sources_it_launches():
    sources = cuda_sources()
    elementwise = [where for where, value in sources.items() if isinstance(value, tuple)]
    raw = [where for where, value in sources.items() if isinstance(value, str)]
    assert {"minisegnet.ops.fast.im2col._IM2COL_CUDA", "minisegnet.optim._ADAM_CUDA"} <= set(elementwise)
    assert len(raw) == 6 and all(where.startswith("minisegnet.ops.fast.cuda_fused.") for where in raw)
    assert all(
        len(value) == 4 and all(isinstance(part, str) for part in value) for value in map(sources.get, elementwise)
    )


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA compiler) is not installed")
def test_every_cuda_source_compiles_with_nvcc(tmp_path):
    unit = tmp_path / "minisegnet_kernels.cu"
    unit.write_text(translation_unit(cuda_sources()))
    # One call for everything (nvcc takes ~1-2 s to start); sm_90 is the H100 / H200 the project borrows.
    command = [NVCC, "-c", "-x", "cu", "-arch=sm_90", str(unit), "-o", str(tmp_path / "kernels.o")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"nvcc failed on {unit}:\n{done.stderr[-6000:]}"
