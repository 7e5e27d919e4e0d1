"""Inference: masks from a model (``predict_masks``), and a trained checkpoint used from the command line,
``minisegnet predict`` (``predict_files``: per image a figure of the image, its classes with a legend and the
class edges on the image, plus a colour mask and an overlay; evaluate.py: ``minisegnet evaluate``).

A U-Net of depth d needs sides divisible by 2^d (an FCN by 32); ``segment_image`` pads an image of
any size by reflection up to the next valid size and crops the prediction back, so every pixel of
the original gets a label. An image of more than ``TILE_LIMIT`` pixels is segmented in overlapping
windows of about ``TILE`` pixels a side, each keeping only its centre, so memory stays that of one window.
"""

import os
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .backend import to_device, to_numpy
from .data import colorize
from .data.folder import IMAGE_SUFFIXES, load_image
from .recipe import side_multiple
from .runs import load_model
from .tensor import no_grad

TILE_LIMIT = 1024 * 1024  # pixels; a larger image is segmented window by window
TILE = 256  # a window's side, rounded up to what the model takes
MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb bound (89 million); a larger image is refused
FAR = 2  # an image whose side is FAR times the training side, or 1/FAR of it, gets a note
DISPLAY = 384  # pixels a side of a figure's panel, at the least, for a small image


@no_grad()
def predict_masks(model, images, device="cpu"):
    """Arg-max class per pixel: images (N, 3, H, W) float32 -> masks (N, H, W) int64 on the host.

    The model runs in eval mode (batch norm on its running statistics) and is left in the mode it was in."""
    training = model.training
    model.eval()
    try:
        logits = model(to_device(np.asarray(images, dtype=np.float32), device))
    finally:
        model.train(training)
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


def class_edges(mask, width=1):
    """Boolean (H, W): the labelled pixels (class > 0) of mask (H, W) within ``width`` pixels of another class."""
    H, W = mask.shape
    padded = np.pad(mask, width, mode="edge")  # the image's border is no edge
    edge = np.zeros((H, W), dtype=bool)
    for dy in range(2 * width + 1):
        for dx in range(2 * width + 1):
            edge |= padded[dy : dy + H, dx : dx + W] != mask
    return edge & (mask > 0)


def overlay(image, mask, palette, fill=0.2, width=1):
    """image (3, H, W) in [0, 1] -> (H, W, 3): each labelled region outlined in its class colour, its inside tinted
    by only ``fill``, background untouched, so the image's own colours stay readable (a red object of a green class
    shows red inside a green outline, not brown)."""
    rgb = image.transpose(1, 2, 0)
    colours = colorize(mask, palette).astype(np.float32) / 255
    tint = np.where(class_edges(mask, width), 1.0, np.where(mask > 0, fill, 0.0))[..., None]
    return ((1 - tint) * rgb + tint * colours).clip(0, 1).astype(np.float32)


def prediction_figure(image, mask, class_names, palette, title=""):
    """A matplotlib Figure: the image | its classes with a legend (name and share of pixels) | the class edges on
    the image. A small image is enlarged nearest-neighbour to about ``DISPLAY`` pixels a side, so each pixel shows
    as a square; a large one is drawn from every k-th pixel."""
    from matplotlib.figure import Figure

    from .plots import legend_handles

    shares = np.bincount(mask.ravel(), minlength=len(class_names)) / mask.size
    step = max(1, -(-max(mask.shape) // (2 * DISPLAY)))
    image, mask = image[:, ::step, ::step], mask[::step, ::step]
    k = max(1, DISPLAY // max(mask.shape))
    image, mask = image.repeat(k, axis=1).repeat(k, axis=2), mask.repeat(k, axis=0).repeat(k, axis=1)
    h, w = mask.shape
    pw, ph = 4 * w / max(h, w), 4 * h / max(h, w)  # inches of one panel, its longer side 4
    present = [c for c in range(len(class_names)) if shares[c] > 0]
    rows = -(-len(present) // 4)
    fig = Figure(figsize=(3 * pw + 0.8, ph + 0.9 + 0.3 * rows))
    axes = fig.subplots(1, 3)
    panels = (image.transpose(1, 2, 0), colorize(mask, palette), overlay(image, mask, palette, width=max(1, k // 4)))
    for ax, picture, name in zip(axes, panels, ("image", "predicted classes", "class edges on the image")):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(name, fontsize="medium")
        ax.set_axis_off()
    labels = [f"{class_names[c]} {shares[c]:.0%}" for c in present]
    fig.legend(handles=legend_handles(labels, palette[present]), loc="lower center", ncol=min(4, len(labels)))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.3 * rows / fig.get_figheight() + 0.02, 1, 1))
    return fig


def default_out(checkpoint):
    """``predictions/`` beside the checkpoint: in its run folder for a checkpoint of ``minisegnet train``."""
    return Path(checkpoint).parent / "predictions"


def _image_files(inputs):
    # Every image file named or found in a named folder, each once, in the order given.
    files = {}
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            found = [item]
        else:
            raise FileNotFoundError(f"input {item} does not exist")
        files.update((p.resolve(), p) for p in found if p.resolve() not in files)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}")
    return list(files.values())


def _unique_names(files):
    # File stems, a repeated one numbered: a/x.png -> x, b/x.png -> x-2 (never the stem of another input).
    taken, used, names = {p.stem for p in files}, set(), []
    for p in files:
        name, k = p.stem, 1
        while name in used or (k > 1 and name in taken):
            k += 1
            name = f"{p.stem}-{k}"
        used.add(name)
        names.append(name)
    return names


def image_size(path):
    """(H, W) of an image file, read from its header without decoding the pixels; a ValueError naming a file of
    more than ``MAX_PIXELS`` pixels (a decompression bomb, or an image to cut into parts first)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the file's name
            with Image.open(path) as im:
                W, H = im.size
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path} is too large to read ({err}); predict reads up to {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    if H * W > MAX_PIXELS:
        raise ValueError(f"{path} is {H}x{W}, {H * W:,} pixels: predict reads up to {MAX_PIXELS:,}; cut it first")
    return H, W


def _resize(image, H, W):
    # Bilinear, channel by channel, as the folder layouts resize training images.
    return np.stack([np.asarray(Image.fromarray(c).resize((W, H), Image.BILINEAR)) for c in image])


def _size_note(files, sizes, train_size):
    # One line about the images whose side is FAR times the training side or more (or less), None if none is.
    scales = [np.sqrt(H * W) / train_size for H, W in sizes]
    far = [i for i, r in enumerate(scales) if r >= FAR or r <= 1 / FAR]
    if not far:
        return None
    (H, W), s = sizes[far[0]], train_size
    return (
        f"note: {files[far[0]]} is {H}x{W}, {scales[far[0]]:.2g} times the training size {s}x{s} ({len(far)} of "
        f"{len(files)} images differ by {FAR:g} times or more); the model knows objects at the scale it was "
        f"trained on: pass --size {s} to resize the images to it (the masks come back at each image's size)"
    )


def _write(target, picture, written):
    # A PNG of an (H, W, 3) uint8 array or a Figure, saved under a temporary name beside target and renamed, so the
    # file is whole or absent. ``written`` gets target exactly when the rename happened, even if Ctrl-C comes
    # between the two: the temporary file is gone once (and only once) the rename is done.
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        if isinstance(picture, np.ndarray):
            Image.fromarray(picture).save(tmp, format="PNG")
        else:
            picture.savefig(tmp, format="png", dpi=100)
        written.append(target)
        os.replace(tmp, target)
    except BaseException:
        if tmp.exists():  # not renamed: target was not written
            tmp.unlink()
            if target in written:
                written.remove(target)
        raise


def predict_files(checkpoint, inputs, out=None, device="cpu", size=None, force=False, report=None):
    """Segment every image in ``inputs`` (files or folders) with a checkpoint; write three PNGs per image to ``out``
    (default: ``default_out(checkpoint)``) and return their paths:

    * ``<name>_figure.png``: ``prediction_figure`` (image | classes with a legend | class edges on the image);
    * ``<name>_mask.png`` (classes in the palette's colours) and ``<name>_overlay.png``, at the image's size.

    ``<name>`` is the file's stem, numbered when a stem comes twice (``a/x.png`` -> x, ``b/x.png`` -> x-2).
    Files that exist are refused unless ``force``. ``size`` resizes each image to size x size for the model and
    the mask back; without it, images far from the training size get a one-line note on stderr. Images are checked
    by their headers (``image_size``) before any is decoded. ``report(source, paths)`` follows each image (also one
    cut short by Ctrl-C, with the files it got).
    """
    if size is not None and (not isinstance(size, (int, np.integer)) or size < 1):
        raise ValueError(f"--size {size!r} is out of range: expected a whole number >= 1")
    model, cfg, state = load_model(checkpoint)
    model.to(device)
    palette = np.asarray(state["palette"], dtype=np.uint8)
    names = list(state.get("class_names") or [])
    if len(names) != state["num_classes"]:
        names = ["background"] + [f"class {c}" for c in range(1, state["num_classes"])]
    files = _image_files(inputs)
    sizes = [image_size(p) for p in files]
    out = Path(default_out(checkpoint) if out is None else out)
    targets = [[out / f"{n}_{kind}.png" for kind in ("figure", "mask", "overlay")] for n in _unique_names(files)]
    inputs_hit = [t for t in sum(targets, []) if t.resolve() in {p.resolve() for p in files}]
    if inputs_hit:
        raise ValueError(f"{inputs_hit[0]} is an input image: pass another --out")
    existing = [t for t in sum(targets, []) if t.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists ({len(existing)} of the outputs do): pass --force or --out")
    note = None if size else _size_note(files, sizes, cfg.size)
    if note:
        print(note, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, (H, W), paths in zip(files, sizes, targets):
        image = load_image(path)
        if size:
            mask = segment_image(model, cfg, _resize(image, size, size), device)
            mask = np.asarray(Image.fromarray(mask.astype(np.int32)).resize((W, H), Image.NEAREST)).astype(np.int64)
        else:
            mask = segment_image(model, cfg, image, device)
        title = f"{path.name} ({H}x{W}" + (f", segmented at {size}x{size})" if size else ")")
        pictures = (
            prediction_figure(image, mask, names, palette, title),
            colorize(mask, palette),
            (overlay(image, mask, palette) * 255).round().astype(np.uint8),
        )
        done = []
        try:
            for target, picture in zip(paths, pictures):
                _write(target, picture, done)
        finally:  # after Ctrl-C too: what was written is reported
            written += done
            if report is not None and done:
                report(path, done)
    return written
