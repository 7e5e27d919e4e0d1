"""Inference: masks from a model (``predict_masks``), and a trained checkpoint used from the command line,
``minisegnet predict`` (mask and overlay PNGs; evaluate.py: ``minisegnet evaluate``).

A U-Net of depth d needs sides divisible by 2^d (an FCN by 32); ``segment_image`` pads an image of
any size by reflection up to the next valid size and crops the prediction back, so every pixel of
the original gets a label. An image of more than ``TILE_LIMIT`` pixels is segmented in overlapping
windows of about ``TILE`` pixels a side, each keeping only its centre, so memory stays that of one window.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from .backend import to_device, to_numpy
from .data import colorize
from .data.folder import IMAGE_SUFFIXES, load_image
from .recipe import side_multiple
from .runs import load_model
from .tensor import no_grad

TILE_LIMIT = 1024 * 1024  # pixels; a larger image is segmented window by window
TILE = 256  # a window's side, rounded up to what the model takes


@no_grad()
def predict_masks(model, images, device="cpu"):
    """Arg-max class per pixel: images (N, 3, H, W) float32 -> masks (N, H, W) int64 on the host."""
    model.eval()
    logits = model(to_device(np.asarray(images, dtype=np.float32), device))
    return to_numpy(logits.data.argmax(axis=1)).astype(np.int64)


def _pad(image, rows, cols):
    # rows, cols: (before, after) pads. Reflection needs each pad to be smaller than the side.
    H, W = image.shape[1:]
    mode = "reflect" if max(rows) < H and max(cols) < W else "edge"
    return np.pad(image, ((0, 0), rows, cols), mode=mode)


def segment_image(model, cfg, image, device="cpu"):
    """image (3, H, W) float32 in [0, 1] -> mask (H, W) int64, padding to a size the model accepts."""
    m = side_multiple(cfg)
    H, W = image.shape[1:]
    if H * W > TILE_LIMIT:
        return _segment_tiles(model, image, m, device)
    padded = _pad(image, (0, -H % m), (0, -W % m))
    return predict_masks(model, padded[None], device)[0, :H, :W]


def _segment_tiles(model, image, m, device):
    # Windows of side `window` step by `core`; each labels only its centre core x core, so every pixel is
    # labelled from a window that sees `margin` pixels of context around it on every side.
    margin = -(-max(TILE // 8, m) // m) * m
    window = -(-max(TILE, 4 * margin) // m) * m
    core = window - 2 * margin
    H, W = image.shape[1:]
    rows, cols = -(-H // core), -(-W // core)
    padded = _pad(image, (margin, rows * core - H + margin), (margin, cols * core - W + margin))
    mask = np.empty((rows * core, cols * core), dtype=np.int64)
    for y in range(0, rows * core, core):
        for x in range(0, cols * core, core):
            labels = predict_masks(model, padded[None, :, y : y + window, x : x + window], device)[0]
            mask[y : y + core, x : x + core] = labels[margin : margin + core, margin : margin + core]
    return mask[:H, :W]


def overlay(image, mask, palette, alpha=0.45):
    """The image (3, H, W) with each labelled pixel tinted by its class colour (background left clear)."""
    rgb = image.transpose(1, 2, 0)
    colours = colorize(mask, palette).astype(np.float32) / 255
    tint = (mask > 0)[..., None] * alpha
    return ((1 - tint) * rgb + tint * colours).clip(0, 1)


def _image_files(inputs):
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}")
    return files


def predict_files(checkpoint, inputs, out="predictions", device="cpu"):
    """Write ``<stem>_mask.png`` (colour-coded classes) and ``<stem>_overlay.png`` for every input image."""
    model, cfg, state = load_model(checkpoint)
    model.to(device)
    palette = np.asarray(state["palette"], dtype=np.uint8)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in _image_files(inputs):
        image = load_image(path)
        mask = segment_image(model, cfg, image, device)
        for suffix, picture in (("mask", colorize(mask, palette)), ("overlay", overlay(image, mask, palette))):
            target = out / f"{path.stem}_{suffix}.png"
            Image.fromarray(np.asarray(picture * 255 if picture.dtype != np.uint8 else picture, np.uint8)).save(target)
            written.append(target)
    return written
