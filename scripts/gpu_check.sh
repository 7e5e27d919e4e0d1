#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU (run from the repository root):
#
#   bash scripts/gpu_check.sh [tests] [bench] [train] [lesson9] [profile]   (default: tests bench, < 10 minutes)
#
# tests    the CuPy half of the test suite (pytest -m gpu; pytest-xdist is used when installed): among them the
#          fused CUDA kernels of ops/fast/cuda_fused.py against the generic code (test_pool, test_loss, test_norm),
#          which had never run on a GPU when this script was last changed; then the files with CUDA kernels
#          again with the kernels off (MINISEGNET_CUDA_KERNELS=0), the generic code on CuPy
# bench    minisegnet bench --device both --compare-torch --only kernels,train (BENCH=... picks others)
# train    the default recipe on the GPU (minisegnet train --device gpu), for its wall time and mIoU
# lesson9  lessons/09_cpu_vs_gpu.ipynb at full size, its code cells run as one script (no Jupyter needed)
# profile  scripts/profile_step.py on the GPU: where a training step's host time goes, with and without
#          the CUDA kernels
#
# Everything lands in $RESULTS (default benchmarks/results/gpu_check/, to commit with the machine named in
# machine.txt). Each step has its own time limit (T_TESTS, T_GENERIC, T_BENCH, T_TRAIN, T_LESSON, T_PROFILE
# seconds) so that one slow step cannot eat the others' time; the default two steps fit in 10 minutes.
# CuPy: the lent H200 machines have cupy-cuda13x installed and no network; elsewhere the script installs
# $CUPY (default cupy-cuda13x; cupy-cuda12x for a CUDA 12 driver) when cupy does not import. The project is
# installed with --no-deps: its other dependencies must be there already (pip install -e ".[dev,gpu]").
set -u
RESULTS=${RESULTS:-benchmarks/results/gpu_check}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
unset MINISEGNET_QUICK
PY=${PYTHON:-python3}
steps=${*:-tests bench}

$PY -c "import cupy" 2>/dev/null || $PY -m pip install -q "${CUPY:-cupy-cuda13x}" >"$RESULTS/install_cupy.log" 2>&1 ||
    echo "CuPy does not import and pip install ${CUPY:-cupy-cuda13x} failed: see $RESULTS/install_cupy.log"
$PY -m pip install -q --no-deps --no-build-isolation -e . >"$RESULTS/install.log" 2>&1 || echo "pip install failed: see $RESULTS/install.log"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import cupy, numpy, sys; print('python', sys.version.split()[0], 'cupy', cupy.__version__, 'numpy', numpy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())"
    $PY -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo "torch: not installed"
    nproc
} 2>&1 | tee "$RESULTS/machine.txt"

for step in $steps; do
    echo "== $step ($(date -u +%H:%M:%S))"
    start=$SECONDS
    case $step in
    tests)
        xdist=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
        timeout "${T_TESTS:-200}" $PY -m pytest -m gpu -q $xdist -p no:cacheprovider --tb=short --durations=15 \
            >"$RESULTS/tests_gpu.log" 2>&1
        echo "pytest exit $?"
        grep -E "^(FAILED|ERROR)" "$RESULTS/tests_gpu.log" | head -60
        tail -25 "$RESULTS/tests_gpu.log"
        # The generic array code on CuPy too (it runs there only with the CUDA kernels switched off).
        MINISEGNET_CUDA_KERNELS=0 timeout "${T_GENERIC:-120}" $PY -m pytest -m gpu -q $xdist -p no:cacheprovider \
            --tb=short tests/test_conv.py tests/test_optim.py tests/test_fast_workspace.py tests/test_winograd.py tests/test_models.py \
            tests/test_pool.py tests/test_loss.py tests/test_norm.py tests/test_host_reads.py tests/test_metrics.py \
            >"$RESULTS/tests_gpu_generic.log" 2>&1
        echo "pytest with MINISEGNET_CUDA_KERNELS=0 exit $?: $(tail -1 "$RESULTS/tests_gpu_generic.log")"
        ;;
    train)
        timeout "${T_TRAIN:-150}" minisegnet train --device gpu --out "$RESULTS/runs" --no-progress \
            >"$RESULTS/train_gpu.log" 2>&1
        echo "train exit $?"
        tail -15 "$RESULTS/train_gpu.log"
        ;;
    lesson9)
        script=$(realpath "$RESULTS")/lesson9.py
        $PY - lessons/09_cpu_vs_gpu.ipynb >"$script" <<'EOF'
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
print("\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))
EOF
        (cd lessons && timeout "${T_LESSON:-120}" $PY "$script") >"$RESULTS/lesson9_gpu.log" 2>&1
        echo "lesson 9 exit $?"
        cat "$RESULTS/lesson9_gpu.log"
        ;;
    profile)
        timeout "${T_PROFILE:-60}" $PY scripts/profile_step.py --device gpu --steps 100 >"$RESULTS/profile_gpu.log" 2>&1
        echo "profile exit $?"
        MINISEGNET_CUDA_KERNELS=0 timeout "${T_PROFILE:-60}" $PY scripts/profile_step.py --device gpu --steps 100 \
            >"$RESULTS/profile_gpu_generic.log" 2>&1
        echo "without the CUDA kernels (MINISEGNET_CUDA_KERNELS=0): $(head -1 "$RESULTS/profile_gpu_generic.log")"
        head -30 "$RESULTS/profile_gpu.log"
        ;;
    bench)
        timeout "${T_BENCH:-240}" $PY -m minisegnet bench --device both --compare-torch \
            --only "${BENCH:-kernels,train}" --out "$RESULTS/bench" >"$RESULTS/bench.log" 2>&1
        echo "bench exit $?"
        tail -40 "$RESULTS/bench.log"
        ;;
    *) echo "unknown step $step (expected tests, bench, train, lesson9, profile)" ;;
    esac
    echo "-- $step took $((SECONDS - start)) s"
done
