"""Plain-loop reference versions of the fast ops, used only as test oracles.

Every function here works on NumPy arrays with explicit Python loops over output
positions, so it is obviously right and obviously slow. Sections are added per op family.
"""

import numpy as np  # noqa: F401

# ---- pooling, unpooling, bilinear interpolation ------------------------------------------------------------------


def _pool_windows(H, W, kernel, stride, padding):
    """Yield (oh, ow, cells): the in-image (h, w) cells of each pooling window, in row-major window order."""
    (KH, KW), (SH, SW), (PH, PW) = kernel, stride, padding
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    for oh in range(OH):
        for ow in range(OW):
            cells = [
                (oh * SH - PH + i, ow * SW - PW + j)
                for i in range(KH)
                for j in range(KW)
                if 0 <= oh * SH - PH + i < H and 0 <= ow * SW - PW + j < W
            ]
            yield oh, ow, cells


def _pool_out(H, W, kernel, stride, padding):
    return (H + 2 * padding[0] - kernel[0]) // stride[0] + 1, (W + 2 * padding[1] - kernel[1]) // stride[1] + 1


def max_pool2d(x, kernel, stride, padding):
    """(y, indices): each window's maximum and the flat index h*W + w of the first maximal cell (NaN wins)."""
    N, C, H, W = x.shape
    OH, OW = _pool_out(H, W, kernel, stride, padding)
    y, idx = np.zeros((N, C, OH, OW)), np.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in _pool_windows(H, W, kernel, stride, padding):
                best, where = -np.inf, cells[0]
                for h, w in cells:
                    if x[n, c, h, w] > best or np.isnan(x[n, c, h, w]):
                        best, where = x[n, c, h, w], (h, w)
                y[n, c, oh, ow], idx[n, c, oh, ow] = best, where[0] * W + where[1]
    return y, idx


def max_pool2d_backward(gy, indices, x_shape):
    """gx: each gy added to the input cell its window's index names."""
    gx = np.zeros(x_shape)
    N, C, OH, OW = gy.shape
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    h, w = divmod(int(indices[n, c, oh, ow]), x_shape[3])
                    gx[n, c, h, w] += gy[n, c, oh, ow]
    return gx


def avg_pool2d(x, kernel, stride, padding):
    """Window sums divided by KH*KW (padding counts as zeros)."""
    N, C, H, W = x.shape
    y = np.zeros((N, C) + _pool_out(H, W, kernel, stride, padding))
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in _pool_windows(H, W, kernel, stride, padding):
                y[n, c, oh, ow] = sum(x[n, c, h, w] for h, w in cells) / (kernel[0] * kernel[1])
    return y


def avg_pool2d_backward(gy, x_shape, kernel, stride, padding):
    gx = np.zeros(x_shape)
    N, C, H, W = x_shape
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in _pool_windows(H, W, kernel, stride, padding):
                for h, w in cells:
                    gx[n, c, h, w] += gy[n, c, oh, ow] / (kernel[0] * kernel[1])
    return gx


def max_unpool2d(x, indices, out_size):
    """Zeros of (N, C, OH, OW) with x[n, c, h, w] written at flat position indices[n, c, h, w]."""
    N, C, H, W = x.shape
    y = np.zeros((N, C) + tuple(out_size))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    oh, ow = divmod(int(indices[n, c, h, w]), out_size[1])
                    y[n, c, oh, ow] = x[n, c, h, w]
    return y


def max_unpool2d_backward(gy, indices):
    """gx[n, c, h, w] = gy at the position indices[n, c, h, w] names."""
    N, C, H, W = indices.shape
    gx = np.zeros(indices.shape)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    oh, ow = divmod(int(indices[n, c, h, w]), gy.shape[3])
                    gx[n, c, h, w] = gy[n, c, oh, ow]
    return gx


def _linear_source(dst, n_in, n_out, factor, align_corners):
    """(i0, i1, t) of PyTorch's linear interpolation for one output coordinate, computed directly."""
    if n_in == n_out:
        src = float(dst)
    elif align_corners:
        src = dst * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        ratio = 1.0 / factor if factor else n_in / n_out
        src = max((dst + 0.5) * ratio - 0.5, 0.0)
    i0 = min(int(np.floor(src)), n_in - 1)
    return i0, min(i0 + 1, n_in - 1), min(max(src - i0, 0.0), 1.0)


def _bilinear_taps(H, W, OH, OW, factors, align_corners):
    """Yield (oh, ow, [(h, w, weight), ...]): the four weighted source cells of each output pixel."""
    for oh in range(OH):
        h0, h1, th = _linear_source(oh, H, OH, factors[0], align_corners)
        for ow in range(OW):
            w0, w1, tw = _linear_source(ow, W, OW, factors[1], align_corners)
            taps = [(h0, w0, (1 - th) * (1 - tw)), (h0, w1, (1 - th) * tw), (h1, w0, th * (1 - tw)), (h1, w1, th * tw)]
            yield oh, ow, taps


def bilinear(x, out_size, factors=(None, None), align_corners=False):
    """Bilinear resize of x (N, C, H, W) to out_size (OH, OW); ``factors`` are the scale factors, if given."""
    N, C, H, W = x.shape
    y = np.zeros((N, C) + tuple(out_size))
    for oh, ow, taps in _bilinear_taps(H, W, *out_size, factors, align_corners):
        for h, w, weight in taps:
            y[:, :, oh, ow] += weight * x[:, :, h, w]
    return y


def bilinear_backward(gy, x_shape, factors=(None, None), align_corners=False):
    gx = np.zeros(x_shape)
    for oh, ow, taps in _bilinear_taps(*x_shape[2:], *gy.shape[2:], factors, align_corners):
        for h, w, weight in taps:
            gx[:, :, h, w] += weight * gy[:, :, oh, ow]
    return gx


# ---- convolution (ops/conv.py) ----------------------------------------------------------------


def conv2d(x, W, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """y[n, o, p, q] = b[o] + sum over c, i, j of W[o, c, i, j] * xpad[n, c, p*SH + i*DH, q*SW + j*DW]."""
    (N, C, H, Wd), (OC, _, KH, KW) = x.shape, W.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    xpad = np.zeros((N, C, H + 2 * PH, Wd + 2 * PW), dtype=x.dtype)
    xpad[:, :, PH : PH + H, PW : PW + Wd] = x
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (Wd + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, OC, OH, OW), dtype=x.dtype)
    for n in range(N):
        for o in range(OC):
            for p in range(OH):
                for q in range(OW):
                    total = 0.0 if b is None else b[o]
                    for c in range(C):
                        for i in range(KH):
                            for j in range(KW):
                                total += W[o, c, i, j] * xpad[n, c, p * SH + i * DH, q * SW + j * DW]
                    y[n, o, p, q] = total
    return y


def conv_transpose2d(x, W, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1)):
    """Scatter form: each x[n, c, h, w] adds x * W[c, o, i, j] at (h*SH - PH + i*DH, w*SW - PW + j*DW)."""
    (N, C, H, Wd), (_, OC, KH, KW) = x.shape, W.shape
    (SH, SW), (PH, PW), (OPH, OPW), (DH, DW) = stride, padding, output_padding, dilation
    OH = (H - 1) * SH - 2 * PH + DH * (KH - 1) + OPH + 1
    OW = (Wd - 1) * SW - 2 * PW + DW * (KW - 1) + OPW + 1
    y = np.zeros((N, OC, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(Wd):
                    for o in range(OC):
                        for i in range(KH):
                            for j in range(KW):
                                p, q = h * SH - PH + i * DH, w * SW - PW + j * DW
                                if 0 <= p < OH and 0 <= q < OW:
                                    y[n, o, p, q] += x[n, c, h, w] * W[c, o, i, j]
    if b is not None:
        y += b.reshape(1, OC, 1, 1)
    return y


# ---- metrics and the U-Net weight map (tests/test_metrics.py, tests/test_weightmap.py) ----------------------------
def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """cm[i, j] counts the pixels of target i predicted as j, one pixel at a time."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for p, t in zip(np.ravel(pred), np.ravel(target)):
        if ignore_index is not None and t == ignore_index:
            continue
        cm[t, p] += 1
    return cm


def per_class_iou_dice(pred, target, num_classes, ignore_index=None):
    """IoU and Dice of each class from pixel sets, NaN for a class absent from pred and target."""
    iou, dice = [], []
    pairs = [(p, t) for p, t in zip(np.ravel(pred), np.ravel(target)) if ignore_index is None or t != ignore_index]
    for c in range(num_classes):
        inter = sum(1 for p, t in pairs if p == c and t == c)
        in_pred = sum(1 for p, t in pairs if p == c)
        in_target = sum(1 for p, t in pairs if t == c)
        union = in_pred + in_target - inter
        iou.append(inter / union if union else float("nan"))
        dice.append(2 * inter / (in_pred + in_target) if union else float("nan"))
    return iou, dice


def objects_4connected(mask):
    """A list of pixel lists, one per 4-connected component of each foreground label, by flood fill."""
    H, W = mask.shape
    seen = np.zeros((H, W), dtype=bool)
    objects = []
    for i in range(H):
        for j in range(W):
            if mask[i, j] == 0 or seen[i, j]:
                continue
            stack, pixels = [(i, j)], []
            seen[i, j] = True
            while stack:
                a, b = stack.pop()
                pixels.append((a, b))
                for u, v in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
                    if 0 <= u < H and 0 <= v < W and not seen[u, v] and mask[u, v] == mask[i, j]:
                        seen[u, v] = True
                        stack.append((u, v))
            objects.append(pixels)
    return objects


def unet_border_term(mask, w0, sigma):
    """w0 exp(-(d1 + d2)^2 / (2 sigma^2)) with d1, d2 measured to every pixel of every object by brute force."""
    objects = objects_4connected(mask)
    H, W = mask.shape
    term = np.zeros((H, W))
    if len(objects) < 2:
        return term
    for i in range(H):
        for j in range(W):
            d = sorted(min(np.hypot(i - a, j - b) for a, b in obj) for obj in objects)
            term[i, j] = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))
    return term


def conv2d_weight_grad(x, gy, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """gW[o, c, i, j] = sum over n, p, q of gy[n, o, p, q] * xpad[n, c, p*SH + i*DH, q*SW + j*DW]."""
    (N, C, H, Wd), (_, OC, OH, OW), (KH, KW) = x.shape, gy.shape, kernel
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    xpad = np.zeros((N, C, H + 2 * PH, Wd + 2 * PW), dtype=x.dtype)
    xpad[:, :, PH : PH + H, PW : PW + Wd] = x
    gW = np.zeros((OC, C, KH, KW), dtype=x.dtype)
    for o in range(OC):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    for p in range(OH):
                        for q in range(OW):
                            gW[o, c, i, j] += gy[:, o, p, q] @ xpad[:, c, p * SH + i * DH, q * SW + j * DW]
    return gW
