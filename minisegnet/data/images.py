"""Reading picture files: the one way every reader of minisegnet (folders, layouts, predict) opens an image or mask.

    load_image(path)                     -> (3, H, W) float32 in [0, 1]
    load_mask(path)                      -> (H, W) int64 labels
    load_image(path, size=(32, 32))      -> (3, 32, 32): resized while still 8-bit

Every picture is

- checked against ``max_pixels()`` from its header, before a pixel is decoded: a 20000x20000 PNG is one
  error naming the file, its size and the limit, not gigabytes of memory;
- turned upright as its EXIF orientation says (a phone's JPEG marked "rotate 90" reads as every viewer shows it;
  its mask, drawn on the upright picture, then fits it);
- resized, when ``size`` is given, before it becomes floats: a JPEG is decoded straight at 1/2, 1/4 or 1/8 scale
  where that is still at least ``size`` (Pillow's ``draft``), so an 8000x8000 photo read at 32x32 costs the
  memory of its 8-bit pixels at most, never a float copy of them.

Every problem is one ValueError naming the file.
"""

import re
import threading
import warnings
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .palette import mask_from_rgb

ORIENTATION = 0x0112  # the EXIF tag of how to turn or flip the stored pixels for display
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")  # grayscale of more than 8 bits
INDEX_MODES = ("1", "L", "P", *SIXTEEN_BIT)  # masks whose pixel value (or palette index) is the label
# Silencing Pillow's own size warning while a file is opened (the size check below is the error) changes the
# process's warning filters: one thread at a time, so the DataLoader's reading thread and the main thread cannot
# restore each other's filters in the wrong order.
_OPENING = threading.Lock()


def max_pixels():
    """The most pixels a picture may have: ``PIL.Image.MAX_IMAGE_PIXELS``, Pillow's guard against
    decompression bombs (89,478,485 unless changed; set it higher, or to None, to read larger pictures)."""
    return Image.MAX_IMAGE_PIXELS


def _too_large(path, found, limit):
    return (
        f"{path} has {found} pixels, more than the {limit:,} minisegnet reads (PIL.Image.MAX_IMAGE_PIXELS, Pillow's "
        "guard against decompression bombs): downscale it or cut it into tiles first"
    )


@contextmanager
def open_image(path):
    """The picture at ``path`` with only its header read (closed when the block ends), or a ValueError naming the
    file: unreadable, or of more than ``max_pixels()`` pixels."""
    limit = max_pixels()
    try:
        with _OPENING, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as err:  # more than twice the limit: Pillow refuses before we see the size
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        found = f"{int(pixels[1]):,}" if pixels else f"more than {2 * limit:,}"
        raise ValueError(_too_large(path, found, limit)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    with im:
        W, H = im.size
        if limit is not None and W * H > limit:
            raise ValueError(_too_large(path, f"{W}x{H} = {W * H:,}", limit))
        yield im


def _orientation(im, path):
    # The EXIF orientation, 1 (as stored) to 8; 5..8 turn the picture by 90 degrees, swapping width and height.
    try:
        return im.getexif().get(ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err


def upright_size(im, path):
    """(H, W) of an opened picture once turned upright as its EXIF orientation says."""
    W, H = im.size
    return (W, H) if _orientation(im, path) in (5, 6, 7, 8) else (H, W)


def decode(im, path, mask=False, draft=None):
    """An opened picture decoded, upright, in a mode NumPy reads: "RGB" or "F" (0..1, from 16-bit) for an image,
    an index mode or "RGB" for a mask. ``draft`` (H, W): a JPEG may be decoded at a reduced scale still that big."""
    orientation = _orientation(im, path)
    try:
        if draft is not None and not mask and im.format == "JPEG":
            H, W = draft[::-1] if orientation in (5, 6, 7, 8) else draft
            im.draft(None, (W, H))  # decode at the smallest of 1/1..1/8 scale still at least W x H
        if orientation == 1:
            im.load()  # decodes the picture in place (exif_transpose would decode a copy)
        else:
            im = ImageOps.exif_transpose(im)  # decodes the picture, turned upright
    except (OSError, SyntaxError, ValueError) as err:  # a truncated or corrupt file fails only now
        raise ValueError(f"cannot read {path}: {err}") from err
    if mask:
        return im.convert("RGB") if im.mode == "RGBA" else im
    if im.mode == "F":
        raise ValueError(f"{path} holds floating-point pixels (mode 'F'); save it as 8- or 16-bit")
    if im.mode in SIXTEEN_BIT:
        return Image.fromarray(np.asarray(im, dtype=np.float32) / 65535.0)  # mode "F": 0..1 before resizing
    return im if im.mode == "RGB" else im.convert("RGB")


def fit(im, size=None, box=None, mask=False):
    """A decoded picture resized to ``size`` (H, W) when given (bilinear, or nearest for a ``mask``: labels stay
    labels), then cut to ``box`` (top, left, height, width) when given."""
    if size is not None and im.size != size[::-1]:
        im = im.resize(size[::-1], Image.NEAREST if mask else Image.BILINEAR)
    if box is not None:
        top, left, H, W = box
        im = im.crop((left, top, left + W, top + H))
    return im


def image_array(im):
    """A decoded picture -> (3, H, W) float32 in [0, 1]: grayscale copied to 3 channels, alpha dropped."""
    if im.mode == "F":
        return np.repeat(np.clip(np.asarray(im, dtype=np.float32), 0, 1)[None], 3, axis=0)
    return np.ascontiguousarray((np.asarray(im, dtype=np.float32) / 255.0).transpose(2, 0, 1))


def mask_array(im, path, palette=None):
    """A decoded mask -> (H, W) int64 labels: the pixel value (or palette index) of an index mask, the row of
    ``palette`` (VOC by default) of each colour of an RGB mask."""
    if im.mode in INDEX_MODES:
        return np.asarray(im).astype(np.int64)
    if im.mode == "RGB":
        try:
            return mask_from_rgb(np.asarray(im), palette)
        except ValueError as err:
            raise ValueError(f"mask {path}: {err}") from err
    raise ValueError(f"mask {path} has PIL mode {im.mode!r}; use an index PNG ('L' or 'P') or an RGB palette PNG")


def labels_in(im, path, palette=None):
    """The distinct labels (sorted int64) of a decoded mask, counted by Pillow for 8-bit and RGB masks, so a huge
    mask is checked whole without an int64 copy of it."""
    if im.mode in ("1", "L", "P", "RGB"):
        found = im.getcolors(256 if im.mode != "RGB" else 65536)  # (count, value) pairs; None: more values
        if found is not None:
            values = [value for _, value in found]
            if im.mode == "1":
                return np.unique(np.asarray(values) > 0).astype(np.int64)  # a 1-bit mask reads as 0 and 1
            if im.mode != "RGB":
                return np.unique(np.asarray(values, dtype=np.int64))
            try:
                return np.unique(mask_from_rgb(np.asarray(values, dtype=np.uint8)[None], palette))
            except ValueError:
                pass  # an unknown colour: the whole mask is read below, for the error to name its first pixel
    return np.unique(mask_array(im, path, palette))


def load_image(path, size=None):
    """Image file -> (3, H, W) float32 in [0, 1], or (3, *size) resized; grayscale to 3 channels, alpha dropped."""
    with open_image(path) as im:
        return image_array(fit(decode(im, path, draft=size), size))


def load_mask(path, palette=None):
    """Mask file -> (H, W) int64 labels.

    - '1', 'L', 'I', 'I;16' (black-and-white or grayscale): the pixel value is the label;
    - 'P' (palette PNG): the palette index is the label (the PNG's own colours are ignored);
    - 'RGB'/'RGBA': each colour is looked up in ``palette`` (VOC by default, alpha dropped).
    255 is left as it is: by convention it marks pixels to ignore (VOC object borders).
    """
    with open_image(path) as im:
        return mask_array(decode(im, path, mask=True), path, palette)


def mask_labels(path, palette=None):
    """The distinct labels (sorted int64) of a mask file, read whole (see ``labels_in``)."""
    with open_image(path) as im:
        return labels_in(decode(im, path, mask=True), path, palette)
