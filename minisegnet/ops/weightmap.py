"""The U-Net border weight map (Ronneberger, Fischer and Brox 2015, equation 2), for ``cross_entropy(pixel_weight=)``.

A preprocessing step on label masks rather than a differentiable op: it runs on the CPU with scipy.ndimage (labelling
and Euclidean distance transforms) and hands back an array on the mask's device.
"""

import numpy as np
from scipy import ndimage

from ..backend import get_array_module, to_numpy


def _class_weight_table(mask, class_weights):
    """w_c for c = 0 .. mask.max() as a float64 array indexed by label."""
    K = int(mask.max()) + 1
    if class_weights is None:
        return np.ones(K)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights must be 'balanced', a dict, an array or None, got {class_weights!r}")
        counts = np.bincount(mask.ravel(), minlength=K).astype(np.float64)
        present = counts > 0
        # sklearn's "balanced": P / (K_present * n_c), so the mean of w_c over the pixels of the image is 1.
        return np.where(present, mask.size / (present.sum() * np.maximum(counts, 1)), 0.0)
    if isinstance(class_weights, dict):
        missing = sorted(set(np.unique(mask).tolist()) - set(class_weights))
        if missing:
            raise ValueError(f"class_weights has no entry for label {missing[0]} (labels present: 0 .. {K - 1})")
        return np.array([float(class_weights.get(c, 0.0)) for c in range(K)])
    table = np.asarray(to_numpy(class_weights), dtype=np.float64).ravel()
    if table.size < K:
        raise ValueError(f"class_weights has {table.size} entries but the mask holds label {K - 1}; need {K}")
    return table


def _weight_map_2d(mask, w0, sigma, class_weights):
    w = _class_weight_table(mask, class_weights)[mask]
    # d1 <= d2: distances to the nearest and second-nearest object, updated one object at a time.
    d1 = np.full(mask.shape, np.inf)
    d2 = np.full(mask.shape, np.inf)
    count = 0
    for c in np.unique(mask[mask > 0]).tolist():
        objects, n = ndimage.label(mask == c)  # 4-connected components of class c
        for k in range(1, n + 1):
            # distance_transform_edt gives each nonzero pixel its distance to the nearest zero: the object here.
            d = ndimage.distance_transform_edt(objects != k)
            d2 = np.minimum(d2, np.maximum(d1, d))
            d1 = np.minimum(d1, d)
            count += 1
    if count >= 2:
        w = w + w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    return w.astype(np.float32)


def unet_weight_map(mask, w0=10.0, sigma=5.0, class_weights="balanced"):
    """Per-pixel loss weights w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)).

    mask (H, W) or (N, H, W) integer labels with 0 = background -> float32 weights of the same shape, on the mask's
    device. Each image is done on its own:

    - objects are the 4-connected components of each foreground class (so touching objects of one class merge into
      one; give instance-labelled masks to keep them apart);
    - d1(x), d2(x) are the Euclidean distances from pixel x to the nearest and the second-nearest object (0 inside an
      object for d1). The border term is large in narrow gaps between two objects, as in the paper. It is applied at
      every pixel, as the paper's formula is written; with fewer than two objects it is 0;
    - w_c(x) balances class frequencies: "balanced" gives class c the weight P / (K * n_c), P pixels in the image,
      n_c of them labelled c, K classes present (inverse frequency, normalised so the mean of w_c over the image is
      1); a dict {label: weight} or an array indexed by label gives them directly; None gives 1 everywhere.
    """
    xp = get_array_module(mask)
    m = to_numpy(mask)
    if m.dtype.kind not in "iu":
        raise TypeError(f"unet_weight_map: mask must hold integer labels, got dtype {m.dtype}")
    if m.ndim not in (2, 3):
        raise ValueError(f"unet_weight_map: mask must be (H, W) or (N, H, W), got shape {m.shape}")
    if m.size and m.min() < 0:
        raise ValueError(f"unet_weight_map: labels must be >= 0 (0 = background), got {m.min()}")
    if not sigma > 0:
        raise ValueError(f"unet_weight_map: sigma must be > 0, got {sigma}")
    if m.ndim == 2:
        return xp.asarray(_weight_map_2d(m, w0, sigma, class_weights))
    return xp.asarray(np.stack([_weight_map_2d(one, w0, sigma, class_weights) for one in m]))
