#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU and CuPy (run from the repository root):
#
#   bash scripts/gpu_check.sh [tests] [train] [lesson9] [profile] [bench]   (default: all, in that order)
#
# tests    the CuPy half of the test suite (pytest -m gpu; pytest-xdist is used when installed), then the
#          convolution, optimiser, workspace and model tests again with the CUDA kernels off
# train    the default recipe on the GPU (minisegnet train --device gpu), for its wall time and mIoU
# lesson9  lessons/09_cpu_vs_gpu.ipynb at full size, its code cells run as one script (no Jupyter needed)
# profile  scripts/profile_step.py on the GPU: where a training step's host time goes, with and without
#          the CUDA kernels
# bench    minisegnet bench --device both --compare-torch (BENCH=kernels,train,... picks benchmarks)
#
# Everything lands in $RESULTS (default gpu_results/, ignored by git). Each step has its own time limit
# (T_TESTS, T_TRAIN, T_LESSON, T_PROFILE, T_BENCH seconds) so that one slow step cannot eat the others' time.
# The project is installed with --no-deps: its dependencies must be there already (pip install -e ".[dev,gpu]"
# where a network is at hand; the lent GPU machines of this project had them all and no network).
set -u
RESULTS=${RESULTS:-gpu_results}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
unset MINISEGNET_QUICK
PY=${PYTHON:-python3}
steps=${*:-tests train lesson9 profile bench}

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
        timeout "${T_TESTS:-240}" $PY -m pytest -m gpu -q $xdist -p no:cacheprovider --tb=short --durations=15 \
            >"$RESULTS/tests_gpu.log" 2>&1
        echo "pytest exit $?"
        grep -E "^(FAILED|ERROR)" "$RESULTS/tests_gpu.log" | head -60
        tail -25 "$RESULTS/tests_gpu.log"
        # The generic array code on CuPy too (it runs there only with the CUDA kernels switched off).
        MINISEGNET_CUDA_KERNELS=0 timeout "${T_TESTS:-240}" $PY -m pytest -m gpu -q $xdist -p no:cacheprovider \
            --tb=short tests/test_conv.py tests/test_optim.py tests/test_workspace.py tests/test_models.py \
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
        timeout "${T_BENCH:-300}" $PY benchmarks/run_all.py --device both --compare-torch \
            --only "${BENCH:-kernels,train,scaling}" --out "$RESULTS/bench" >"$RESULTS/bench.log" 2>&1
        echo "bench exit $?"
        tail -40 "$RESULTS/bench.log"
        ;;
    *) echo "unknown step $step (expected tests, train, lesson9, profile, bench)" ;;
    esac
    echo "-- $step took $((SECONDS - start)) s"
done
