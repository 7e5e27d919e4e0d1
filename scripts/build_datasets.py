"""Rebuild the two real data sets shipped in minisegnet/data/ (see DATA_LICENSES).

    python scripts/build_datasets.py            # both
    python scripts/build_datasets.py digits     # needs scikit-learn
    python scripts/build_datasets.py nuclei [--stardist PATH]

digits.npz: scikit-learn's bundled 8x8 handwritten digits (sklearn.datasets.load_digits), kept as
uint8 glyphs (1797, 8, 8) with values 0..16 and their labels. minisegnet composes scenes from them
at run time, so scikit-learn is only needed here.

nuclei.npz: the 2018 Data Science Bowl fluorescence image and its nucleus mask that the stardist
package ships (``stardist.data.test_image_nuclei_2d(return_mask=True)`` reads the same two files,
stardist/data/images/img2d.tif and mask2d.tif). Two routes, neither needs stardist's heavy
dependencies (TensorFlow, csbdeep, tifffile):

1. the wheel, read as the zip file it is:
       pip download --no-deps stardist==0.9.2 -d /tmp/sd
       python scripts/build_datasets.py nuclei --stardist /tmp/sd
   (--stardist takes the .whl file or the folder holding it);
2. an installed stardist (``pip install stardist``): without --stardist the script finds the
   package's folder with importlib (without importing it) and reads the files from there.

Pillow reads the uncompressed 16-bit TIFFs; the script checks the values fit in uint8 and
renumbers the nuclei 1..K before saving.
"""

import argparse
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "minisegnet" / "data"
STARDIST_FILES = ("stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif")


def build_digits(out=OUT):
    # Imported only here: scikit-learn is needed to rebuild the file, never at run time.
    import sklearn
    from sklearn.datasets import load_digits

    digits = load_digits()
    glyphs = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    assert np.array_equal(glyphs, digits.images), "load_digits returned non-integer pixels"
    path = out / "digits.npz"
    np.savez_compressed(
        path,
        glyphs=glyphs,
        labels=digits.target.astype(np.uint8),
        source=np.array(f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__}); UCI optdigits"),
    )
    print(f"wrote {path} ({path.stat().st_size} bytes): glyphs {glyphs.shape}, labels 0..9")


def _read_stardist_files(stardist):
    """The bytes of img2d.tif and mask2d.tif, and a line saying where they came from."""
    if stardist is not None:
        path = Path(stardist)
        if path.is_dir():
            wheels = sorted(path.glob("stardist-*.whl"))
            if not wheels:
                sys.exit(f"no stardist-*.whl in {path}; run: pip download --no-deps stardist==0.9.2 -d {path}")
            path = wheels[-1]
        with zipfile.ZipFile(path) as wheel:
            return [wheel.read(name) for name in STARDIST_FILES], f"stardist wheel {path.name}"
    spec = importlib.util.find_spec("stardist")
    if spec is None or spec.origin is None:
        sys.exit(
            "stardist is not installed. Either `pip download --no-deps stardist==0.9.2 -d /tmp/sd` and pass "
            "--stardist /tmp/sd, or `pip install stardist`."
        )
    root = Path(spec.origin).parent.parent  # site-packages (the folder holding stardist/)
    return [(root / name).read_bytes() for name in STARDIST_FILES], f"installed stardist at {root / 'stardist'}"


def build_nuclei(stardist=None, out=OUT):
    (image_bytes, mask_bytes), where = _read_stardist_files(stardist)
    image = np.array(Image.open(io.BytesIO(image_bytes)))
    instances = np.array(Image.open(io.BytesIO(mask_bytes)))
    if image.shape != instances.shape or image.ndim != 2:
        sys.exit(f"unexpected shapes: image {image.shape}, mask {instances.shape}")
    if image.min() < 0 or image.max() > 255:
        sys.exit(f"image values {image.min()}..{image.max()} do not fit in uint8; rescale before saving")
    # Renumber the nuclei 1..K (0 stays background) so the labels fit in uint8.
    ids, relabelled = np.unique(instances, return_inverse=True)
    assert ids[0] == 0 and len(ids) <= 256, "expected background 0 and at most 255 nuclei"
    path = out / "nuclei.npz"
    np.savez_compressed(
        path,
        image=image.astype(np.uint8),
        instances=relabelled.reshape(instances.shape).astype(np.uint8),
        source=np.array(f"{where}: {', '.join(STARDIST_FILES)}; 2018 Data Science Bowl (BBBC038v1)"),
    )
    print(f"wrote {path} ({path.stat().st_size} bytes): image {image.shape}, {len(ids) - 1} nuclei")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", choices=("all", "digits", "nuclei"), default="all")
    parser.add_argument("--stardist", help="a stardist .whl file, or a folder holding one (from pip download)")
    args = parser.parse_args(argv)
    if args.which in ("all", "digits"):
        build_digits()
    if args.which in ("all", "nuclei"):
        build_nuclei(args.stardist)


if __name__ == "__main__":
    main()
