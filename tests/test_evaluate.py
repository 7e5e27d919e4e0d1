"""minisegnet/evaluate.py: a checkpoint is scored with its own classes; data it cannot predict is refused."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from minisegnet import io
from minisegnet.evaluate import evaluate_checkpoint
from minisegnet.recipe import TrainConfig, build_model


def folder(root, top_label, n=5, size=16):
    """``n`` image/mask pairs whose masks hold the labels 0..top_label."""
    rng = np.random.default_rng(0)
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    for i in range(n):
        mask = rng.integers(0, top_label + 1, (size, size)).astype(np.uint8)
        mask[0, : top_label + 1] = np.arange(top_label + 1)  # every label in every mask
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def checkpoint(path, data, num_classes=4):
    """An untrained ``num_classes`` U-Net saved as `minisegnet train` saves one, for ``data``."""
    cfg = TrainConfig(data=str(data), size=16, depth=2, base_channels=4)
    state = {
        "model": build_model(cfg, 3, num_classes).state_dict(),
        "config": dataclasses.asdict(cfg),
        "num_classes": num_classes,
        "class_names": ["background"] + [f"class {c}" for c in range(1, num_classes)],
        "palette": np.arange(3 * num_classes, dtype=np.uint8).reshape(num_classes, 3),
    }
    io.save(path, state)
    return path


def test_a_test_set_without_some_of_the_checkpoints_classes_is_scored_with_all_of_them(tmp_path, capsys):
    path = checkpoint(tmp_path / "four.npz", folder(tmp_path / "train", 3))
    result = evaluate_checkpoint(path, data=str(folder(tmp_path / "test", 2)))  # no class 3 in the test set
    assert len(result["iou"]) == 4 and result["class_names"][3] == "class 3"
    out = capsys.readouterr().out
    assert "class 3" in out and f"wrote {tmp_path / 'four.eval.json'}" in out
    assert json.loads((tmp_path / "four.eval.json").read_text())["data"] == str(tmp_path / "test")


def test_data_with_more_classes_than_the_checkpoint_names_both_sides(tmp_path):
    path = checkpoint(tmp_path / "two.npz", folder(tmp_path / "train", 1), num_classes=2)
    data = folder(tmp_path / "test", 3)
    with pytest.raises(ValueError) as info:
        evaluate_checkpoint(path, data=str(data))
    expected = f"the data {data} has 4 classes (labels 0..3) but the checkpoint {path} predicts 2 (0..1)"
    assert str(info.value).startswith(expected)
    assert not (tmp_path / "two.eval.json").exists()


def test_the_json_report_never_replaces_the_checkpoint(tmp_path):
    path = checkpoint(tmp_path / "four.npz", folder(tmp_path / "train", 3))
    before = path.read_bytes()
    with pytest.raises(ValueError, match=f"^--json {path} is the checkpoint being evaluated"):
        evaluate_checkpoint(path, json_path=path)
    assert path.read_bytes() == before
