"""minisegnet/cli.py and predict.py end to end in quick mode: train, evaluate, predict, gradcheck, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from minisegnet import __version__
from minisegnet.cli import main


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
