"""Fused CUDA kernels for max pooling, cross-entropy and batch norm: each a whole forward or backward in one launch.

On CuPy every array operation is a kernel launch of ~10 us of host time, and at U-Net sizes the launch costs more
than the work: max pooling's running argmax takes six launches per window tap, cross-entropy's forward about
fifteen, batch norm's a dozen. Here each forward and backward is one ``cupy.RawKernel`` (plain CUDA C, below),
fetched through ``cuda.raw_kernel``. Every function returns None where no kernel runs (NumPy arrays,
``MINISEGNET_CUDA_KERNELS=0``, ``reference_kernels()``, a dtype other than float32 / float64), and the fast op
(fast/pool.py, fast/loss.py, fast/norm.py) then runs its array code. The tests compare the kernels with the
generic code (tests/test_cuda_fused.py, test_pool.py, test_loss.py, test_norm.py).

STATUS: these kernels have been compiled by nvcc 13.0 (tests/test_cuda_sources.py, on a machine without a GPU)
but have NOT yet been run on a GPU. Without one, their comparisons with the generic code run the same CUDA C
compiled as C++ on the host (tests/cuda_host.py: each block's threads as real threads meeting at a barrier),
which checks their arithmetic, PyTorch's tie and NaN rules, the block sums and the arguments passed here, but
not CUDA's compiler at run time (NVRTC), its memory model, or any speed. ``bash scripts/gpu_check.sh`` runs the
comparisons on CuPy and the benchmarks on the next machine that has a GPU.

Each source is written for a type ``T`` (and, for pooling, ``TAP``, the tap index type); ``_kernel`` puts the
typedefs in front, so a kernel compiles once per dtype. Sizes index with ``long long`` so no product overflows.
"""

import numpy as np

from ...backend import get_array_module
from ...cuda import kernels_on, raw_kernel

_C_TYPES = {"float32": "float", "float64": "double", "uint8": "unsigned char", "uint16": "unsigned short"}
THREADS = 256  # threads per block; the batch norm kernels' shared arrays hold exactly this many


def runs_on(xp):
    """True when these kernels run for arrays of module ``xp`` (CuPy, kernels on, fast paths on)."""
    return kernels_on(xp)


def _kernel(xp, source, name, **types):
    """The RawKernel ``name`` for these typedefs (T=x.dtype, ...), or None: see the module docstring."""
    if any(np.dtype(t).name not in _C_TYPES for t in types.values()):
        return None
    typedefs = "".join(f"typedef {_C_TYPES[np.dtype(t).name]} {alias};\n" for alias, t in types.items())
    return raw_kernel(xp, typedefs + source, name)


def _launch(kernel, threads, blocks, args):
    if threads and blocks:  # a grid of 0 blocks is a launch error
        kernel((blocks,), (threads,), args)


def _each(kernel, n, args):
    """Launch ``kernel`` with one thread per item, n items."""
    _launch(kernel, THREADS, (n + THREADS - 1) // THREADS, args)


# ---- max pooling ------------------------------------------------------------------------------------------

_MAX_POOL_FORWARD_CUDA = r"""
// One thread per output (n, c, oh, ow) of x (N, C, H, W): y = the window's maximum, tap = i*KW + j of its cell.
// PyTorch's rules, as pool.py's _max_running: start at the window's first cell inside the image, and let
// only a strictly larger value or a NaN replace the current one (ties keep the first, the last NaN wins).
extern "C" __global__ void minisegnet_max_pool_forward(
    const T* x, long long outputs, int H, int Wd, int KH, int KW, int SH, int SW, int PH, int PW,
    int OH, int OW, T* y, TAP* tap) {
    const long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (o >= outputs) return;
    const int ow = o % OW, oh = (o / OW) % OH;
    const T* plane = x + (o / ((long long)OH * OW)) * H * Wd;  // the (n, c) plane of this output
    const int top = oh * SH - PH, left = ow * SW - PW;  // the window's corner, maybe in the padding
    const int i0 = max(0, -top), j0 = max(0, -left), i1 = min(KH, H - top), j1 = min(KW, Wd - left);
    T best = plane[(top + i0) * Wd + left + j0];
    int won = i0 * KW + j0;
    for (int i = i0; i < i1; i++) {
        for (int j = j0; j < j1; j++) {
            const T v = plane[(top + i) * Wd + left + j];
            if (v > best || isnan(v)) {
                best = v;
                won = i * KW + j;
            }
        }
    }
    y[o] = best;
    tap[o] = (TAP)won;
}
"""

_MAX_POOL_BACKWARD_CUDA = r"""
// One thread per input pixel (n, c, h, w): gx = the sum of gy over the windows whose winner it is. A gather,
// not a scatter with atomics: the pixel visits the windows that contain it, rows oh with
// 0 <= h + PH - oh*SH < KH (columns alike), and adds gy where the window's tap points back at it.
extern "C" __global__ void minisegnet_max_pool_backward(
    const T* gy, const TAP* tap, long long pixels, int H, int Wd, int KH, int KW, int SH, int SW, int PH, int PW,
    int OH, int OW, T* gx) {
    const long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (p >= pixels) return;
    const int w = p % Wd, h = (p / Wd) % H;
    const long long plane = (p / ((long long)H * Wd)) * OH * OW;
    const int below = h + PH - KH + 1, right = w + PW - KW + 1;  // the first window reaching h is ceil(below / SH)
    const int oh0 = below > 0 ? (below + SH - 1) / SH : 0, oh1 = min(OH - 1, (h + PH) / SH);
    const int ow0 = right > 0 ? (right + SW - 1) / SW : 0, ow1 = min(OW - 1, (w + PW) / SW);
    T sum = 0;
    for (int oh = oh0; oh <= oh1; oh++) {
        for (int ow = ow0; ow <= ow1; ow++) {
            const long long o = plane + (long long)oh * OW + ow;
            if ((int)tap[o] == (h + PH - oh * SH) * KW + (w + PW - ow * SW)) sum += gy[o];
        }
    }
    gx[p] = sum;
}
"""


def max_pool_forward(x, kernel, stride, padding, out_size):
    """MaxPool2d's (y, tap) in one launch: x (N, C, H, W) -> y (N, C, OH, OW) and tap (N, C, OH, OW), the
    winning tap i*KW + j in the smallest unsigned dtype; or None where no kernel runs (module docstring)."""
    xp = get_array_module(x)
    (KH, KW), (SH, SW), (PH, PW), (OH, OW) = kernel, stride, padding, out_size
    tap_dtype = np.min_scalar_type(KH * KW - 1)
    fused = _kernel(xp, _MAX_POOL_FORWARD_CUDA, "minisegnet_max_pool_forward", T=x.dtype, TAP=tap_dtype)
    if fused is None:
        return None
    N, C, H, Wd = x.shape
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    tap = xp.empty((N, C, OH, OW), dtype=tap_dtype)
    sizes = (np.int32(s) for s in (H, Wd, KH, KW, SH, SW, PH, PW, OH, OW))
    _each(fused, y.size, (xp.ascontiguousarray(x), np.int64(y.size), *sizes, y, tap))
    return y, tap


def max_pool_backward(gy, tap, x_shape, kernel, stride, padding, out_size):
    """MaxPool2d's gx (N, C, H, W) from gy and tap (N, C, OH, OW) in one launch, or None (module docstring)."""
    xp = get_array_module(gy)
    fused = _kernel(xp, _MAX_POOL_BACKWARD_CUDA, "minisegnet_max_pool_backward", T=gy.dtype, TAP=tap.dtype)
    if fused is None:
        return None
    (KH, KW), (SH, SW), (PH, PW), (OH, OW) = kernel, stride, padding, out_size
    N, C, H, Wd = x_shape
    gx = xp.empty(x_shape, dtype=gy.dtype)
    sizes = (np.int32(s) for s in (H, Wd, KH, KW, SH, SW, PH, PW, OH, OW))
    _each(fused, gx.size, (xp.ascontiguousarray(gy), xp.ascontiguousarray(tap), np.int64(gx.size), *sizes, gx))
    return gx


# ---- cross-entropy with integer labels --------------------------------------------------------------------

_CROSS_ENTROPY_FORWARD_CUDA = r"""
// One thread per pixel i = (n, l) of logits x (N, C, L), its C scores L apart: the log-softmax by log-sum-exp
// (log p_c = (x_c - m) - log sum_k exp(x_k - m), m the max, as activation.py), then p (kept for backward),
// the pixel's weight w = weight[t] (1 without class weights; 0 where t == ignore) and loss -w log p_t.
extern "C" __global__ void minisegnet_cross_entropy_forward(
    const T* x, const long long* t, const T* weight, int has_weight, long long ignore, int has_ignore,
    long long pixels, int C, long long L, T* p, T* w, T* loss) {
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= pixels) return;
    const long long first = (i / L) * C * L + i % L;  // x[n, 0, l]
    T m = x[first];
    for (int c = 1; c < C; c++) m = x[first + c * L] > m ? x[first + c * L] : m;
    T s = 0;
    for (int c = 0; c < C; c++) s += exp(x[first + c * L] - m);
    const T log_s = log(s);
    for (int c = 0; c < C; c++) p[first + c * L] = exp((x[first + c * L] - m) - log_s);
    const long long label = t[i];
    // A label outside [0, C) counts for nothing rather than reading outside x and weight: loss.py's check names
    // it, at once or, inside deferred_checks(), at the next flush.
    const bool counted = label >= 0 && label < C && !(has_ignore && label == ignore);
    const T wi = counted ? (has_weight ? weight[label] : (T)1) : (T)0;
    w[i] = wi;
    loss[i] = counted ? -wi * ((x[first + label * L] - m) - log_s) : (T)0;
}
"""

_CROSS_ENTROPY_BACKWARD_CUDA = r"""
// One thread per logit (n, c, l): gx = (p - [c == t]) * (w * g), with g = gy (one per pixel for reduction
// "none", else one number) times 1 / D for "mean" (scale, computed on the device by loss.mean_scale).
extern "C" __global__ void minisegnet_cross_entropy_backward(
    const T* p, const long long* t, const T* w, const T* gy, int per_pixel, const T* scale, int use_scale,
    long long logits, int C, long long L, T* gx) {
    const long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (e >= logits) return;
    const int c = (e / L) % C;
    const long long i = (e / (C * L)) * L + e % L;  // the pixel (n, l)
    T g = per_pixel ? gy[i] : gy[0];
    if (use_scale) g *= scale[0];
    gx[e] = (p[e] - (T)(t[i] == c)) * (w[i] * g);
}
"""


def cross_entropy_forward(x, t, weight, ignore_index):
    """Per-pixel softmax cross-entropy with integer labels in one launch: x (N, C, ...) logits, t (N, ...) labels,
    weight (C,) or None -> (p (N, C, ...), w (N, ...) each pixel's weight, loss (N, ...)); or None (module
    docstring). No pixel weights, label smoothing or soft targets: the callers run their generic code for those."""
    xp = get_array_module(x)
    fused = _kernel(xp, _CROSS_ENTROPY_FORWARD_CUDA, "minisegnet_cross_entropy_forward", T=x.dtype)
    if fused is None:
        return None
    N, C = x.shape[:2]
    L = x.size // max(N * C, 1)
    p, w, loss = xp.empty(x.shape, x.dtype), xp.empty(t.shape, x.dtype), xp.empty(t.shape, x.dtype)
    labels = xp.ascontiguousarray(t, dtype=np.int64)
    weights = x if weight is None else xp.ascontiguousarray(weight, dtype=x.dtype)  # x: a pointer never read
    ignore = (np.int64(0), np.int32(0)) if ignore_index is None else (np.int64(ignore_index), np.int32(1))
    args = (xp.ascontiguousarray(x), labels, weights, np.int32(weight is not None), *ignore)
    _each(fused, t.size, (*args, np.int64(t.size), np.int32(C), np.int64(L), p, w, loss))
    return p, w, loss


def cross_entropy_backward(p, t, w, gy, scale, reduction):
    """gx (N, C, ...) = (p - one_hot(t)) * w * gy, times ``scale`` for reduction "mean", in one launch; or None.

    p (N, C, ...) and w (N, ...) as ``cross_entropy_forward`` gives them, t (N, ...) the labels, gy a 0-d
    array ("mean", "sum") or one per pixel (N, ...) ("none"), scale a 0-d array (1 / D)."""
    xp = get_array_module(p)
    fused = _kernel(xp, _CROSS_ENTROPY_BACKWARD_CUDA, "minisegnet_cross_entropy_backward", T=p.dtype)
    if fused is None:
        return None
    N, C = p.shape[:2]
    gx = xp.empty(p.shape, dtype=p.dtype)
    labels, g = xp.ascontiguousarray(t, dtype=np.int64), xp.ascontiguousarray(gy, dtype=p.dtype)
    args = (p, labels, w, g, np.int32(gy.ndim > 0), xp.asarray(scale, dtype=p.dtype), np.int32(reduction == "mean"))
    _each(fused, p.size, (*args, np.int64(p.size), np.int32(C), np.int64(p.size // max(N * C, 1)), gx))
    return gx


# ---- batch norm, training mode ----------------------------------------------------------------------------

_BLOCK_SUM = r"""
// The sum of every thread's v over the block (256 threads), returned to all of them: a tree in shared memory.
__device__ double block_sum(double v, double* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    const double total = shared[0];
    __syncthreads();  // everyone has read it before the next call writes shared again
    return total;
}
"""

_BATCH_NORM_FORWARD_CUDA = (
    _BLOCK_SUM
    + r"""
// One block per channel c of x (N, C, L), over its M = N*L values x[(n*C + c)*L + l], sums in double:
// the mean, then the biased variance (a second pass, as norm.py), then xhat = (x - mean) * inv_std and
// y = xhat * weight + bias. Thread 0 updates the running statistics (the variance unbiased, M / (M - 1)).
extern "C" __global__ void minisegnet_batch_norm_forward(
    const T* x, const T* weight, const T* bias, int has_weight, int has_bias, long long M, int C, long long L,
    double eps, double momentum, int has_running, T* running_mean, T* running_var, T* xhat, T* y, T* inv_std) {
    __shared__ double shared[256];
    const int c = blockIdx.x;
    double s = 0;
    for (long long k = threadIdx.x; k < M; k += blockDim.x) s += x[((k / L) * C + c) * L + k % L];
    const double mean = block_sum(s, shared) / M;
    const T mu = (T)mean;
    s = 0;
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const T d = x[((k / L) * C + c) * L + k % L] - mu;
        s += (double)d * d;
    }
    const double var = block_sum(s, shared) / M;
    const T scale = (T)(1.0 / sqrt(var + eps));
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const long long e = ((k / L) * C + c) * L + k % L;
        const T xh = (x[e] - mu) * scale;
        xhat[e] = xh;
        y[e] = (has_weight ? xh * weight[c] : xh) + (has_bias ? bias[c] : (T)0);
    }
    if (threadIdx.x == 0) {
        inv_std[c] = scale;
        if (has_running) {
            running_mean[c] = (T)((1 - momentum) * running_mean[c] + momentum * mean);
            running_var[c] = (T)((1 - momentum) * running_var[c] + momentum * var * M / (M - 1));
        }
    }
}
"""
)

_BATCH_NORM_BACKWARD_CUDA = (
    _BLOCK_SUM
    + r"""
// One block per channel c: gb = sum gy and gW = sum gy * xhat over its M values (sums in double), then
// gx = (gy - gb/M - xhat * gW/M) * inv_std * weight, norm.py's training formula.
extern "C" __global__ void minisegnet_batch_norm_backward(
    const T* gy, const T* xhat, const T* inv_std, const T* weight, int has_weight, long long M, int C, long long L,
    T* gx, T* gW, T* gb) {
    __shared__ double shared[256];
    const int c = blockIdx.x;
    double sum_gy = 0, sum_gy_xhat = 0;
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const long long e = ((k / L) * C + c) * L + k % L;
        sum_gy += gy[e];
        sum_gy_xhat += (double)gy[e] * xhat[e];
    }
    sum_gy = block_sum(sum_gy, shared);
    sum_gy_xhat = block_sum(sum_gy_xhat, shared);
    if (threadIdx.x == 0) {
        gb[c] = (T)sum_gy;
        gW[c] = (T)sum_gy_xhat;
    }
    const T scale = has_weight ? inv_std[c] * weight[c] : inv_std[c];
    const T mean_gy = (T)(sum_gy / M), mean_gy_xhat = (T)(sum_gy_xhat / M);
    for (long long k = threadIdx.x; k < M; k += blockDim.x) {
        const long long e = ((k / L) * C + c) * L + k % L;
        gx[e] = (xhat[e] * -mean_gy_xhat + gy[e] - mean_gy) * scale;
    }
}
"""
)


def batch_norm_forward(x, weight, bias, running_mean, running_var, momentum, eps):
    """BatchNorm's training forward in one launch: x (N, C, H, W) or (N, C), weight, bias, running stats (C,) or
    None -> (y, xhat, inv_std (C,)), updating the running statistics in place as ops/norm.py does; or None where a
    dtype differs from x's and where no kernel runs (module docstring)."""
    xp = get_array_module(x)
    if any(a is not None and a.dtype != x.dtype for a in (weight, bias, running_mean, running_var)):
        return None
    fused = _kernel(xp, _BATCH_NORM_FORWARD_CUDA, "minisegnet_batch_norm_forward", T=x.dtype)
    if fused is None:
        return None
    N, C = x.shape[:2]
    M = x.size // C
    xhat, y, inv_std = xp.empty(x.shape, x.dtype), xp.empty(x.shape, x.dtype), xp.empty(C, x.dtype)
    weights, biases = (x if a is None else xp.ascontiguousarray(a) for a in (weight, bias))  # x: never read
    running = running_mean is not None
    means, variances = (running_mean, running_var) if running else (x, x)
    flags = (np.int32(weight is not None), np.int32(bias is not None), np.int64(M), np.int32(C))
    args = (xp.ascontiguousarray(x), weights, biases, *flags, np.int64(M // N), np.float64(eps))
    _launch(fused, THREADS, C, (*args, np.float64(momentum), np.int32(running), means, variances, xhat, y, inv_std))
    return y, xhat, inv_std


def batch_norm_backward(gy, xhat, inv_std, weight):
    """BatchNorm's training backward in one launch: gy (N, C, ...), xhat as the forward gave it, inv_std and weight
    (C,) (weight may be None) -> (gx, gW, gb); or None where the dtypes differ and where no kernel runs."""
    xp = get_array_module(gy)
    if len({a.dtype for a in (gy, xhat, inv_std, weight) if a is not None}) > 1:
        return None
    fused = _kernel(xp, _BATCH_NORM_BACKWARD_CUDA, "minisegnet_batch_norm_backward", T=xhat.dtype)
    if fused is None:
        return None
    N, C = gy.shape[:2]
    M = gy.size // C
    gx, gW, gb = xp.empty(gy.shape, xhat.dtype), xp.empty(C, xhat.dtype), xp.empty(C, xhat.dtype)
    weights = xhat if weight is None else xp.ascontiguousarray(weight)  # xhat: a pointer never read
    g, s = xp.ascontiguousarray(gy), xp.ascontiguousarray(inv_std)
    args = (g, xhat, s, weights, np.int32(weight is not None), np.int64(M), np.int32(C))
    _launch(fused, THREADS, C, (*args, np.int64(M // N), gx, gW, gb))
    return gx, gW, gb
