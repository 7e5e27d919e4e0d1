"""Boundary scores of a segmentation: Hausdorff distance, its 95th percentile (HD95), average surface distance.

For one image and class, the pred and target masks each have a boundary: the mask minus its binary erosion (a pixel
on the image's border counts as boundary). For every boundary pixel of one mask, the Euclidean distance (in
pixels) to the nearest boundary pixel of the other comes from one distance transform (scipy.ndimage), giving
d_pt (pred to target) and d_tp (target to pred). Then

    Hausdorff = max(max d_pt, max d_tp)     HD95 = max(P95(d_pt), P95(d_tp))     ASSD = mean(d_pt and d_tp together)

as MONAI's HausdorffDistanceMetric (percentile) and SurfaceDistanceMetric (symmetric=True). The empty class: NaN when
the class is absent from both pred and target, inf when it is absent from exactly one (MONAI gives the same).
These run on the CPU: arrays on a GPU are copied over.
"""

import numpy as np
from scipy import ndimage

from .backend import to_numpy, unwrap


def _boundary(mask):
    return mask & ~ndimage.binary_erosion(mask)


def surface_distances(pred_mask, target_mask):
    """(d_pt, d_tp): distances from each boundary pixel of pred to target's boundary, and back; boolean masks (H, W)."""
    pred_mask, target_mask = np.asarray(pred_mask, dtype=bool), np.asarray(target_mask, dtype=bool)
    if pred_mask.shape != target_mask.shape:
        raise ValueError(f"surface_distances: pred shape {pred_mask.shape} != target shape {target_mask.shape}")
    bp, bt = _boundary(pred_mask), _boundary(target_mask)
    if not bp.any() or not bt.any():
        inf = np.full(int(bp.sum()), np.inf), np.full(int(bt.sum()), np.inf)
        return inf
    return ndimage.distance_transform_edt(~bt)[bp], ndimage.distance_transform_edt(~bp)[bt]


def _per_class(pred, target, num_classes, score):
    pred, target = to_numpy(unwrap(pred)), to_numpy(unwrap(target))
    if pred.shape != target.shape or pred.ndim < 2 or pred.dtype.kind not in "iu" or target.dtype.kind not in "iu":
        raise ValueError(
            f"boundary scores need integer label arrays (N, H, W) of one shape, got pred {pred.dtype} "
            f"{pred.shape} and target {target.dtype} {target.shape}"
        )
    out = np.full((pred.shape[0], int(num_classes)), np.nan)
    for n in range(pred.shape[0]):
        for c in range(int(num_classes)):
            p, t = pred[n] == c, target[n] == c
            if p.any() or t.any():
                out[n, c] = score(*surface_distances(p, t))
    return out


def hausdorff_distance(pred, target, num_classes, percentile=None):
    """(N, C) Hausdorff distance in pixels per image and class, or its ``percentile`` (95: HD95) of each direction.

    pred and target integer labels (N, H, W). NaN for a class absent from both, inf if absent from one."""
    if percentile is not None and not 0 <= percentile <= 100:
        raise ValueError(f"hausdorff_distance: percentile must lie in [0, 100], got {percentile}")

    def score(d_pt, d_tp):
        if np.isinf(d_pt).any() or np.isinf(d_tp).any() or not d_pt.size or not d_tp.size:
            return np.inf
        if percentile is None:
            return max(d_pt.max(), d_tp.max())
        return max(np.percentile(d_pt, percentile), np.percentile(d_tp, percentile))

    return _per_class(pred, target, num_classes, score)


def average_surface_distance(pred, target, num_classes, symmetric=True):
    """(N, C) average surface distance in pixels: the mean of d_pt and d_tp together (ASSD, ``symmetric``), or of
    d_pt alone (MONAI's symmetric=False). NaN for a class absent from both, inf if absent from one."""

    def score(d_pt, d_tp):
        d = np.concatenate([d_pt, d_tp]) if symmetric else d_pt
        return d.mean() if d.size and np.isfinite(d).all() else np.inf

    return _per_class(pred, target, num_classes, score)
