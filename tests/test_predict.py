"""minisegnet/predict.py and `minisegnet predict`: figures, where outputs go, sizes, names, Ctrl-C, huge images."""

import dataclasses
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minisegnet import io, predict
from minisegnet.cli import main
from minisegnet.data.shapes import CLASS_NAMES
from minisegnet.recipe import TrainConfig, build_model

ROOT = Path(__file__).resolve().parents[1]
PALETTE = np.array([[0, 0, 0], [128, 0, 0], [0, 255, 0], [0, 0, 128], [128, 128, 0], [128, 0, 128]], np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # An untrained model is enough to test where the outputs go and what they look like; no training needed.
    run = tmp_path_factory.mktemp("runs") / "tiny"
    run.mkdir()
    cfg = TrainConfig(base_channels=4, depth=2, size=32, name="tiny", out=str(run.parent))
    state = {
        "model": build_model(cfg, 3, len(CLASS_NAMES)).state_dict(),
        "config": dataclasses.asdict(cfg),
        "num_classes": len(CLASS_NAMES),
        "class_names": list(CLASS_NAMES),
        "palette": PALETTE,
    }
    io.save(run / "checkpoint_best.npz", state)
    return run / "checkpoint_best.npz"


def write_image(path, H=32, W=32, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def printed_paths(out):
    # The paths on the "source -> a, b, c" lines.
    return [p for line in out.splitlines() if " -> " in line for p in line.split(" -> ")[1].split(", ")]


def test_outputs_go_under_the_run_folder_and_the_printed_paths_are_those_written(
    checkpoint, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "photo.png", 16, 16)
    assert main(["predict", str(checkpoint), "photo.png"]) == 0
    out = capsys.readouterr().out
    folder = checkpoint.parent / "predictions"
    written = sorted(str(p) for p in folder.iterdir())
    assert sorted(printed_paths(out)) == written and len(written) == 3
    assert out.splitlines()[-1] == f"wrote 3 files for 1 image to {folder}/"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]  # nothing in the working folder
    with Image.open(folder / "photo_figure.png") as figure:
        assert figure.width >= 1000 and figure.height >= 400  # legible, not 16x16
    with Image.open(folder / "photo_mask.png") as mask:
        assert mask.size == (16, 16)


def test_the_figure_enlarges_a_small_image_and_names_the_classes_it_shows():
    image = np.zeros((3, 16, 16), np.float32)
    mask = np.zeros((16, 16), np.int64)
    mask[:4] = 2  # a quarter of the pixels
    fig = predict.prediction_figure(image, mask, CLASS_NAMES, PALETTE, "a.png")
    panels = [ax.images[0].get_array() for ax in fig.axes]
    assert [p.shape[:2] for p in panels] == [(384, 384)] * 3  # 24 x 24 screen pixels per image pixel
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["background 75%", "circle 25%"]


def test_the_overlay_outlines_classes_and_keeps_the_images_colours():
    red = np.zeros((3, 8, 8), np.float32)
    red[0] = 1.0
    mask = np.zeros((8, 8), np.int64)
    mask[2:7, 2:7] = 2  # class 2 is green: a blend would turn the red object brown
    got = predict.overlay(red, mask, PALETTE, fill=0.2)
    assert np.array_equal(got[0, 0], [1, 0, 0])  # background untouched
    assert np.allclose(got[2, 2], [0, 1, 0])  # the outline is the class colour
    assert np.allclose(got[4, 4], [0.8, 0.2, 0])  # the inside stays red, lightly tinted
    edges = predict.class_edges(mask)
    assert edges.sum() == 16 and not edges[4, 4] and not edges[0, 0]  # the ring of a 5x5 square


def test_a_far_size_gets_one_note_and_size_resizes_to_the_training_size(checkpoint, tmp_path, monkeypatch, capsys):
    write_image(tmp_path / "big.png", 128, 128)
    write_image(tmp_path / "fits.png", 32, 32)
    argv = ["predict", str(checkpoint), str(tmp_path / "big.png"), str(tmp_path / "fits.png")]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: ") and "128x128, 4 times the training size 32x32" in err
    assert "1 of 2 images" in err and "pass --size 32" in err

    seen = []
    real = predict.segment_image
    monkeypatch.setattr(predict, "segment_image", lambda m, c, x, d: seen.append(x.shape) or real(m, c, x, d))
    assert main([*argv, "--out", str(tmp_path / "resized"), "--size", "32"]) == 0
    assert seen == [(3, 32, 32)] * 2 and capsys.readouterr().err == ""
    with Image.open(tmp_path / "resized" / "big_mask.png") as mask:
        assert mask.size == (128, 128)  # the mask comes back at the image's size


def test_inputs_with_one_name_keep_both_outputs_and_the_count_is_what_was_written(checkpoint, tmp_path, capsys):
    a, b = write_image(tmp_path / "a" / "x.png", seed=1), write_image(tmp_path / "b" / "x.png", seed=2)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(a), str(b), str(tmp_path / "a"), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"{b} -> {out}/x-2_figure.png, {out}/x-2_mask.png, {out}/x-2_overlay.png"
    assert lines[-1] == f"wrote 6 files for 2 images to {out}/"  # a/x.png given twice is one image
    assert len(list(out.iterdir())) == 6


def test_a_repeated_name_is_numbered_past_the_names_of_other_inputs(tmp_path):
    files = [tmp_path / "x.png", tmp_path / "b" / "x.png", tmp_path / "x-2.png", tmp_path / "c" / "x.png"]
    assert predict._unique_names(files) == ["x", "x-3", "x-2", "x-4"]


def test_existing_outputs_are_kept_unless_force(checkpoint, tmp_path, capsys):
    write_image(tmp_path / "p.png")
    argv = ["predict", str(checkpoint), str(tmp_path / "p.png"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    figure = tmp_path / "out" / "p_figure.png"
    figure.write_bytes(b"kept")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {figure} exists (3 of the outputs do): pass --force or --out\n"
    assert figure.read_bytes() == b"kept"
    assert main([*argv, "--force"]) == 0 and figure.read_bytes() != b"kept"


def test_an_output_never_replaces_an_input(checkpoint, tmp_path, capsys):
    a, a_mask = write_image(tmp_path / "a.png"), write_image(tmp_path / "a_mask.png", seed=3)
    before = a_mask.read_bytes()
    assert main(["predict", str(checkpoint), str(a), str(a_mask), "--out", str(tmp_path), "--force"]) == 2
    assert "a_mask.png is an input image" in capsys.readouterr().err
    assert a_mask.read_bytes() == before


def test_ctrl_c_exits_130_with_one_line_and_leaves_whole_files(checkpoint, tmp_path, monkeypatch, capsys):
    for name in ("1.png", "2.png", "3.png"):
        write_image(tmp_path / "in" / name)
    calls = []
    real = predict.segment_image

    def interrupted_at_the_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(predict, "segment_image", interrupted_at_the_second)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert captured.err == f"interrupted: the 3 files of 1 image listed above written to {out}/\n"
    assert sorted(p.name for p in out.iterdir()) == ["1_figure.png", "1_mask.png", "1_overlay.png"]
    for path in out.iterdir():
        with Image.open(path) as im:
            im.verify()


def test_a_file_interrupted_while_written_is_absent_and_one_renamed_is_listed(tmp_path, monkeypatch):
    class Stopped:
        def savefig(self, path, **kwargs):
            path.write_bytes(b"half a PNG")
            raise KeyboardInterrupt

    written = []
    with pytest.raises(KeyboardInterrupt):
        predict._write(tmp_path / "a_figure.png", Stopped(), written)
    assert list(tmp_path.iterdir()) == [] and written == []

    def renamed_then_stopped(tmp, target):
        os.rename(tmp, target)
        raise KeyboardInterrupt

    monkeypatch.setattr(predict.os, "replace", renamed_then_stopped)
    with pytest.raises(KeyboardInterrupt):
        predict._write(tmp_path / "a_mask.png", np.zeros((2, 2, 3), np.uint8), written)
    assert list(tmp_path.iterdir()) == written == [tmp_path / "a_mask.png"]


def png_header(path, W, H):
    # A PNG that only claims its size: signature, IHDR, IEND. Reading its header costs nothing; decoding would fail.
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    "W, H, words",
    [
        (20000, 20000, "is too large to read (Image size (400000000 pixels) exceeds limit"),
        (10000, 10000, "is 10000x10000, 100,000,000 pixels: predict reads up to 89,478,485; cut it first"),
    ],
)
def test_a_huge_image_is_named_and_refused_before_anything_is_decoded(W, H, words, checkpoint, tmp_path, capsys):
    fits = write_image(tmp_path / "fits.png")
    huge = png_header(tmp_path / "huge.png", W, H)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(fits), str(huge), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {huge} ") and words in err
    assert not out.exists()  # refused before the first image was segmented


@pytest.mark.parametrize("argv, words", [(["--size", "0"], "--size 0 is out of range"), ([], "does not exist")])
def test_bad_predict_input_is_one_line(argv, words, checkpoint, tmp_path, capsys):
    assert main(["predict", str(checkpoint), str(tmp_path / "missing.png"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_a_real_ctrl_c_exits_130_with_one_line(checkpoint, tmp_path):
    # SIGINT as a terminal sends it, once the first image is reported; 40 more images are still to come then.
    for i in range(41):
        write_image(tmp_path / "in" / f"{i:02d}.png", seed=i)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "minisegnet", "predict", checkpoint, tmp_path / "in", "--out", tmp_path / "out"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=300)
    assert first.startswith(f"{tmp_path / 'in' / '00.png'} -> ") and proc.returncode == 130, err
    assert err.count("\n") == 1 and err.startswith("interrupted: the ") and "Traceback" not in err
    shown = printed_paths(first + rest)
    assert sorted(shown) == sorted(str(p) for p in (tmp_path / "out").iterdir())  # no temporary file left


def test_predict_masks_leaves_the_model_in_the_mode_it_found():
    from minisegnet.models import UNet
    from minisegnet.predict import predict_masks

    model = UNet(in_channels=3, num_classes=2, base_channels=2, depth=1)
    images = np.zeros((1, 3, 8, 8), dtype=np.float32)
    for mode in (True, False):
        model.train(mode)
        assert predict_masks(model, images).shape == (1, 8, 8) and model.training is mode
