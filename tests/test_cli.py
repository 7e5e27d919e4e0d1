"""minisegnet/cli.py and predict.py end to end in quick mode: train, evaluate, predict, gradcheck, errors."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minisegnet import __version__, io, predict
from minisegnet.cli import explain, main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "16", "--n-train", "16", "--n-val", "8", "--base-channels", "4", "--depth", "2", "--no-progress"]


def run(*argv, **env):
    """``python -m minisegnet argv`` in a subprocess: (exit code, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run(
        [sys.executable, "-m", "minisegnet", *map(str, argv)], capture_output=True, text=True, env=env
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--quick", "--out", str(out), "--name", "cli", "--no-progress"]) == 0
    return out / "cli" / "checkpoint_best.npz"


def test_version_and_help_through_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "minisegnet", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout
    result = subprocess.run([sys.executable, "-m", "minisegnet"], capture_output=True, text=True)
    assert "train" in result.stdout and "gradcheck" in result.stdout


def test_train_prints_a_summary(checkpoint, capsys):
    assert checkpoint.exists()


def test_evaluate_prints_a_table_and_writes_json(checkpoint, tmp_path, capsys):
    target = tmp_path / "eval.json"
    assert main(["evaluate", str(checkpoint), "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert "IoU" in out and "Dice" in out and "circle" in out
    result = json.loads(target.read_text())
    assert len(result["iou"]) == 6


def test_predict_writes_masks_and_overlays_for_any_size(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 50, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / "b.jpg")
    assert main(["predict", str(checkpoint), str(folder), "--out", str(tmp_path / "pred")]) == 0
    mask = Image.open(tmp_path / "pred" / "a_mask.png")
    assert mask.size == (50, 37)
    assert (tmp_path / "pred" / "b_overlay.png").exists()


def test_gradcheck_command_prints_a_table(capsys):
    assert main(["gradcheck", "--only", "relu,softmax"]) == 0
    assert "relu" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--quick", "--model", "resnet"], "resnet"),
        (["predict", "missing.npz", "x.png"], "missing.npz"),
    ],
)
def test_bad_input_gives_one_clear_line(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("minisegnet.backend._gpu_ok", False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, checkpoint):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.npz").write_bytes(b"")
    np.save(folder / "array.npy", np.zeros(3))
    state = io.load(checkpoint)
    state["config"]["depth"] = 3  # a checkpoint whose weights are of another depth
    io.save(folder / "deeper.npz", state)
    (folder / "file").write_text("not a folder")
    return folder


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["train", *TINY, "--batch-size", "0"], 2, "--batch-size 0 is out of range: expected a whole number >= 1"),
        (["train", *TINY, "--batch-size", "-4"], 2, "--batch-size -4 is out of range"),
        (["train", *TINY, "--size", "18"], 2, "divisible by 4, but the images are 18x18: pass --size 20"),
        (["train", *TINY, "--out", "{bad}/file"], 2, "is a file; expected a folder"),
        (
            ["evaluate", "{bad}/empty.npz"],
            2,
            "not a readable minisegnet checkpoint (.npz written by save): not an .npz",
        ),
        (["evaluate", "{bad}/array.npy"], 2, "not a readable minisegnet checkpoint"),
        (["evaluate", "{bad}/deeper.npz"], 2, "does not fit the model its configuration describes"),
        (["predict", "{bad}/missing.npz", "x.png"], 2, "missing.npz"),
    ],
)
def test_every_error_is_one_line_naming_the_value(argv, code, message, bad_files, tmp_path):
    argv = [a.replace("{bad}", str(bad_files)) for a in argv]
    got, out, err = run(*argv, "--out", tmp_path) if argv[0] == "train" and "--out" not in argv else run(*argv)
    assert (got, err.count("\n")) == (code, 1), err
    assert err.startswith("error: ") and message in err and "pickle" not in err


def test_debug_shows_the_traceback(bad_files):
    assert "Traceback" in run("--debug", "evaluate", bad_files / "empty.npz")[2]
    assert "Traceback" in run("evaluate", bad_files / "empty.npz", MINISEGNET_DEBUG="1")[2]


def test_minisegnet_device_is_the_default_device(tmp_path):
    code, _, err = run("train", *TINY, "--out", tmp_path, MINISEGNET_DEVICE="nonsense")
    assert code == 2 and "'nonsense'" in err
    code, _, err = run("evaluate", "x.npz", "--device", "cpu", MINISEGNET_DEVICE="nonsense")
    assert "'nonsense'" not in err  # an explicit --device wins


@pytest.mark.parametrize(
    "error, code, words",
    [
        (MemoryError(), 1, "out of memory: try a smaller --batch-size"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/a/metrics.json"), 1, "disk is full"),
        (PermissionError(errno.EACCES, "Permission denied", "/runs"), 1, "Permission denied: /runs; no permission"),
        (ZeroDivisionError("division by zero"), 2, "division by zero"),
        (KeyError("enc.0.weight"), 2, "missing entry 'enc.0.weight'"),
        (RuntimeError("CUDA out of memory"), 1, "CUDA out of memory (RuntimeError; rerun with --debug"),
    ],
)
def test_explain_gives_an_exit_code_and_a_line_for_any_exception(error, code, words):
    got, line = explain(error)
    assert got == code and words in line and "\n" not in line


COMMANDS = {
    "evaluate": ["evaluate", "c.npz"],
    "predict": ["predict", "c.npz", "x.png"],
    "export": ["export", "c.npz", "--to", "onnx"],
    "gradcheck": ["gradcheck"],
    "bench": ["bench", "--quick"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_ctrl_c_is_one_line_and_exit_130_in_every_command(command, monkeypatch, capsys):
    from minisegnet import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    assert cli.main(COMMANDS[command]) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"


def test_the_old_threads_flag_is_an_unknown_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--threads", "2"])
    assert info.value.code == 2 and "unrecognized arguments: --threads 2" in capsys.readouterr().err


def test_black_and_white_masks_are_an_error_until_mask_values_maps_them(tmp_path):
    from PIL import Image

    for name in ("images", "masks"):
        (tmp_path / "bw" / name).mkdir(parents=True)
    for i in range(10):
        mask = np.zeros((16, 16), np.uint8)
        mask[3 + i % 4 : 10, 4:12] = 255
        Image.fromarray(np.stack([mask] * 3, axis=-1)).save(tmp_path / "bw" / "images" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "bw" / "masks" / f"{i}.png")
    argv = ["train", "--data", tmp_path / "bw", "--out", tmp_path / "runs", "--epochs", "1", *TINY]
    code, _, err = run(*argv)
    assert code == 2 and "no foreground label" in err and "--mask-values 0,255" in err
    assert not (tmp_path / "runs").exists()
    code, out, err = run(*argv, "--mask-values", "0,255")
    assert code == 0, err
    assert json.loads((tmp_path / "runs" / "unet-bw" / "metrics.json").read_text())["config"]["mask_values"] == "0,255"


def test_a_large_image_is_segmented_in_windows(checkpoint, monkeypatch):
    from minisegnet.runs import load_model

    model, cfg, _ = load_model(checkpoint)
    image = np.random.default_rng(0).random((3, 45, 70)).astype(np.float32)
    whole = predict.segment_image(model, cfg, image)
    sides = []
    monkeypatch.setattr(predict, "TILE_LIMIT", 1000)
    monkeypatch.setattr(predict, "TILE", 32)
    real = predict.predict_masks
    monkeypatch.setattr(predict, "predict_masks", lambda m, x, d: sides.append(x.shape[2:]) or real(m, x, d))
    tiled = predict.segment_image(model, cfg, image)
    assert tiled.shape == (45, 70) and set(sides) == {(32, 32)} and len(sides) == 2 * 3
    assert (tiled == whole).mean() > 0.8  # the windows see 4 pixels of context, the whole image more


def test_a_missing_gpu_is_an_environment_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("minisegnet.backend._gpu_ok", False)
    monkeypatch.setenv("MINISEGNET_DEVICE", "gpu")
    assert main(["train", "--quick", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: device='gpu' was requested") and "[gpu]" in err and err.count("\n") == 1
