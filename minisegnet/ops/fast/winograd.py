"""Winograd convolution: 3x3, stride 1, dilation 1 convolutions with fewer multiplications than im2col.

Why fewer multiplications
-------------------------
Take one dimension first. Two outputs of a 3-tap correlation, y_i = d_i g_0 + d_(i+1) g_1 + d_(i+2) g_2
for i = 0, 1, cost 6 multiplications done directly. Read the taps as the coefficients of a polynomial
g(t) = g_0 + g_1 t + g_2 t^2 and any 2 consecutive inputs h as h(t) = h_0 + h_1 t: their product is a
polynomial of degree 3, fixed by its 4 values at t = 0, 1, -1 and its leading coefficient ("the value at
infinity"). Each of those 4 values is ONE multiplication, g(p) * h(p). A correlation is the transpose of a
polynomial product (a convolution), so transposing that evaluate-multiply-interpolate algorithm gives

    y = A^T [ (G g) * (B^T d) ]                     F(m, r): m outputs of an r-tap filter, a = m + r - 1 inputs

with a = 4 elementwise products for m = 2 outputs instead of m r = 6. In two dimensions the same identity is
applied along rows and columns of an a x a input tile d:

    Y (m, m) = A^T [ (G g G^T) * (B^T d B) ] A      a^2 products for m^2 outputs instead of 9 m^2

F(2x2, 3x3) uses a = 4: 16 products for 4 outputs, 2.25x fewer than 36. F(4x4, 3x3) uses a = 6 (points 0, 1,
-1, 2, -2 and infinity): 36 products for 16 outputs, 4x fewer than 144. A convolution layer sums over C input
channels, so for each of the a^2 positions (u, v) of the tile the products summed over channels are one matrix
product, (OC, C) @ (C, N * tiles): a^2 batched matrix products replace im2col's single (OC, 9 C) @ (9 C, N OH OW)
one, with a^2 / (9 m^2) of its multiplications. The transforms G g G^T (once per weight), B^T d B (once per
input tile and channel) and A^T M A (once per output tile and channel) are additions and small-constant
multiplications whose cost grows with C and OC separately, not with their product.

The transform matrices
----------------------
``matrices(m, r)`` derives them from the points, exactly, in fractions. With V the a x a matrix whose row for a
finite point p is (1, p, p^2, ..., p^(a-1)) and whose last row, for infinity, is (0, ..., 0, 1), and V_k its
first k columns with the infinity row moved to column k - 1 (the leading coefficient of a degree k - 1
polynomial):

    G = V_r (a, r)      evaluates the filter polynomial at each point
    B^T = V^-T (a, a)   the transpose of interpolation
    A^T = V_m^T (m, a)  the transpose of evaluating the m-coefficient data polynomial

Each row u of B^T is then scaled to coprime integers and row u of G divided by the same factor (the product
is unchanged), so the data transform, which runs on every tile, multiplies by small integers; the fractions
(1/2 for F(2, 3); 1/4, 1/6, 1/12, 1/24 for F(4, 3)) stay on the weights. For F(2, 3) this gives B^T rows
(1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, -1, 0, 1), G rows (1, 0, 0), (1/2, 1/2, 1/2), (1/2, -1/2, 1/2),
(0, 0, 1), A^T rows (1, 1, 1, 0), (0, 1, -1, 1), Lavin and Gray's matrices up to the sign of the infinity row.

Gradients
---------
The input gradient of a stride-1 convolution is a full correlation of gy with the kernel flipped in space and
its channel axes swapped: gx = conv2d(gy, flip(W).transpose(1, 0), padding = 2 - padding), itself a 3x3 stride-1
Winograd convolution. The weight gradient gW[oc, c, k, l] = sum over n and output pixels of gy * shifted x is,
tile by tile, an F(3, m) correlation of the same a x a input tiles with the m x m tile of gy (3 outputs, an
m-tap filter, a = m + 2 inputs: the same points). Summed over tiles it is again a^2 matrix products,
(OC, N * tiles) @ (N * tiles, C), then one output transform of the (a, a, OC, C) result.

What it costs
-------------
- Transforms: three extra passes over arrays (a/m)^2 times the input's and the output's size; they only pay
  where the channels are many enough that the a^2 products dominate (the benchmarks measure where).
- Memory: the transformed input (a^2, C, N * tiles) is (a/m)^2 the input's size (2.25x for m = 4, 4x for m = 2),
  the products (a^2, OC, N * tiles) likewise for the output; a ragged edge is padded to whole tiles.
- float32 accuracy: the transforms multiply by constants up to 5 (B^T) and 8 (A^T) and by fractions down to
  1/24 (G) for m = 4, so the rounding error of the products is amplified: tests/test_winograd.py measures the
  error against a float64 result and bounds it. m = 2 stays close to im2col's error; float64 is exact to
  1e-10 either way.

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), introduced this to CNNs.
"""

from fractions import Fraction
from math import gcd, lcm

import numpy as np

from ...backend import get_array_module
from ..sizes import pair

# The finite interpolation points for a tile of a inputs (infinity is always the last point).
POINTS = {4: (0, 1, -1), 6: (0, 1, -1, 2, -2)}
TILES = (2, 4)  # output tile sides m: F(2x2, 3x3) and F(4x4, 3x3)
_cache = {}


def _vandermonde(points, k, a):
    # rows p -> (1, p, ..., p^(k-1)); the point at infinity reads the leading coefficient: (0, ..., 0, 1)
    rows = [[Fraction(p) ** j for j in range(k)] for p in points]
    return rows + [[Fraction(0)] * (k - 1) + [Fraction(1)]][: a - len(points)]


def _inverse(M):
    # Gauss-Jordan elimination in exact fractions (the matrices are at most 6 x 6)
    n = len(M)
    aug = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(M)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        aug[col] = [v / aug[col][col] for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                aug[r] = [v - aug[r][col] * w for v, w in zip(aug[r], aug[col])]
    return [row[n:] for row in aug]


def matrices(m, r):
    """(AT (m, a), G (a, r), BT (a, a)) of F(m, r), a = m + r - 1, as float64 arrays: Y = AT [(G g) * (BT d)].

    Derived from the points in ``POINTS[a]`` and infinity (see the module docstring); each row of BT is
    scaled to coprime integers and the matching row of G divided by the same factor.
    """
    a = m + r - 1
    if a not in POINTS:
        raise ValueError(f"winograd: no interpolation points for F({m}, {r}), whose tiles have {a} inputs")
    points = POINTS[a]
    V_inv = _inverse(_vandermonde(points, a, a))
    BT = [list(col) for col in zip(*V_inv)]  # B^T = V^-T
    G = _vandermonde(points, r, a)
    for u, row in enumerate(BT):
        common = lcm(*(v.denominator for v in row))
        scale = Fraction(common, gcd(*(int(v * common) for v in row)))
        BT[u] = [v * scale for v in row]
        G[u] = [v / scale for v in G[u]]
    AT = [list(col) for col in zip(*_vandermonde(points, m, a))]
    return tuple(np.array(M, dtype=np.float64) for M in (AT, G, BT))


def _transforms(xp, dtype, m, r):
    # matrices(m, r) as arrays of xp and dtype, made once per combination
    key = (xp.__name__, np.dtype(dtype).str, m, r)
    if key not in _cache:
        _cache[key] = tuple(xp.asarray(M, dtype=dtype) for M in matrices(m, r))
    return _cache[key]


def _both_sides(T, z):
    """T z T^T over z's first two axes: z (k, l, ...) -> (u, v, ...), sum_kl T[u, k] T[v, l] z[k, l, ...].

    Two matrix products: the rows, T @ z as a (k, l * rest) matrix; then the columns, T @ each (l, rest) slice.
    """
    k, l = z.shape[:2]
    n = T.shape[0]
    rows = (T @ z.reshape(k, -1)).reshape(n, l, -1)  # (u, l, rest)
    return (T @ rows).reshape(n, n, *z.shape[2:])  # (u, v, rest)


def _tiles(x, m, padding):
    """d (a, a, C, N, TH, TW), (OH, OW): the overlapping a x a input tiles, a = m + 2, one per m x m output tile.

    x (N, C, H, W) is zero-padded by ``padding`` on the top and left and up to whole tiles on the bottom and
    right; tile (th, tw) starts at padded pixel (m th, m tw). d[i, j] is the (C, N, TH, TW) array of each tile's
    pixel (i, j): a^2 strided copies, the im2col loop with the tile's stride.
    """
    xp = get_array_module(x)
    N, C, H, Wd = x.shape
    PH, PW = pair(padding, "padding", "winograd")
    OH, OW = H + 2 * PH - 2, Wd + 2 * PW - 2
    if OH < 1 or OW < 1:
        raise ValueError(f"winograd: input {H}x{Wd} with padding {(PH, PW)} is smaller than the 3x3 kernel")
    a, TH, TW = m + 2, -(-OH // m), -(-OW // m)
    xpad = xp.zeros((C, N, TH * m + 2, TW * m + 2), dtype=x.dtype)
    xpad[:, :, PH : PH + H, PW : PW + Wd] = x.transpose(1, 0, 2, 3)
    d = xp.empty((a, a, C, N, TH, TW), dtype=x.dtype)
    for i in range(a):
        for j in range(a):
            d[i, j] = xpad[:, :, i : i + m * TH : m, j : j + m * TW : m]
    return d, (OH, OW)


def _check(W, m):
    if W.shape[2:] != (3, 3):
        raise ValueError(f"winograd: needs a 3x3 kernel, got {W.shape[2]}x{W.shape[3]}")
    if m not in TILES:
        raise ValueError(f"winograd: the output tile side must be one of {TILES}, got {m!r}")


def conv2d_forward(x, W, b=None, padding=1, m=4):
    """y (N, OC, OH, OW) = conv2d(x, W, b, stride=1, padding=padding) by F(m x m, 3x3), OH = H + 2 PH - 2.

    x (N, C, H, W), W (OC, C, 3, 3), b (OC,) or None; ``padding`` an int or an (h, w) pair; m = 2 or 4.
    Any H, W: the last row and column of tiles are cut to the output size.
    """
    _check(W, m)
    xp = get_array_module(x)
    AT, G, BT = _transforms(xp, x.dtype, m, 3)
    N, OC, C = x.shape[0], W.shape[0], W.shape[1]
    d, (OH, OW) = _tiles(x, m, padding)
    a, TH, TW = m + 2, d.shape[4], d.shape[5]
    V = _both_sides(BT, d).reshape(a * a, C, -1)  # (a^2, C, N TH TW)
    U = _both_sides(G, W.transpose(2, 3, 0, 1)).reshape(a * a, OC, C)  # (a^2, OC, C)
    M = (U @ V).reshape(a, a, OC, N, TH, TW)  # the a^2 products, summed over channels
    Y = _both_sides(AT, M)  # (m, m, OC, N, TH, TW): Y[p, q] is output pixel (m th + p, m tw + q)
    y = Y.transpose(3, 2, 4, 0, 5, 1).reshape(N, OC, TH * m, TW * m)[:, :, :OH, :OW]
    if b is not None:
        y = y + b.reshape(1, OC, 1, 1)
    return xp.ascontiguousarray(y)


def conv2d_input_grad(gy, W, x_shape, padding=1, m=4):
    """gx (N, C, H, W) of y = conv2d(x, W, stride=1, padding=padding), for gy (N, OC, OH, OW), W (OC, C, 3, 3).

    A full correlation of gy with the kernel flipped in space and transposed in its channel axes: the forward
    above with padding 2 - padding; a padding above 2 crops the full correlation instead.
    """
    _check(W, m)
    PH, PW = pair(padding, "padding", "winograd")
    H, Wd = x_shape[2:]
    flipped = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, OC, 3, 3)
    if PH <= 2 and PW <= 2:
        return conv2d_forward(gy, flipped, None, (2 - PH, 2 - PW), m)
    gx = conv2d_forward(gy, flipped, None, (max(2 - PH, 0), max(2 - PW, 0)), m)
    top, left = max(PH - 2, 0), max(PW - 2, 0)
    return get_array_module(gy).ascontiguousarray(gx[:, :, top : top + H, left : left + Wd])


def conv2d_weight_grad(x, gy, padding=1, m=4):
    """gW (OC, C, 3, 3) of y = conv2d(x, W, stride=1, padding=padding), for x (N, C, H, W), gy (N, OC, OH, OW).

    Each a x a input tile correlated with its m x m tile of gy by F(3, m) (3 outputs, an m-tap filter, the
    same a = m + 2 points), summed over the N TH TW tiles as a^2 products (OC, tiles) @ (tiles, C).
    """
    if m not in TILES:
        raise ValueError(f"winograd: the output tile side must be one of {TILES}, got {m!r}")
    xp = get_array_module(x)
    AT, G, BT = _transforms(xp, x.dtype, 3, m)  # AT (3, a), G (a, m), BT (a, a)
    N, OC, OH, OW = gy.shape
    d, size = _tiles(x, m, padding)
    if size != (OH, OW):
        raise ValueError(f"winograd: gy has {OH}x{OW} pixels, the convolution of x gives {size[0]}x{size[1]}")
    a, C, TH, TW = m + 2, x.shape[1], d.shape[4], d.shape[5]
    gpad = xp.zeros((OC, N, TH * m, TW * m), dtype=gy.dtype)
    gpad[:, :, :OH, :OW] = gy.transpose(1, 0, 2, 3)
    g = gpad.reshape(OC, N, TH, m, TW, m).transpose(3, 5, 0, 1, 2, 4)  # (m, m, OC, N, TH, TW): the tiles of gy
    V = _both_sides(BT, d).reshape(a * a, C, -1)  # (a^2, C, N TH TW)
    U = _both_sides(G, g).reshape(a * a, OC, -1)  # (a^2, OC, N TH TW)
    M = (U @ V.transpose(0, 2, 1)).reshape(a, a, OC, C)  # summed over tiles
    return xp.ascontiguousarray(_both_sides(AT, M).transpose(2, 3, 0, 1))  # (3, 3, OC, C) -> (OC, C, 3, 3)
