"""minisegnet/train.py: a quick run writes its folder, resumes exactly, and stops on a NaN loss."""

import json

import numpy as np
import pytest

from minisegnet import io, recipe, train
from minisegnet.recipe import TrainConfig
from minisegnet.train import Diverged


def quick(tmp_path, **kw):
    return TrainConfig(out=str(tmp_path), quick=True, **kw)


def test_quick_run_writes_checkpoints_metrics_and_plots(tmp_path):
    summary = train.train(quick(tmp_path, name="run"), progress=False)
    run = tmp_path / "run"
    for name in [
        "config.json",
        "metrics.json",
        "curves.png",
        "predictions.png",
        "checkpoint_last.npz",
        "checkpoint_best.npz",
    ]:
        assert (run / name).stat().st_size > 0, name
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and 0 <= metrics["final"]["miou"] <= 1
    assert summary["parameters"] > 0 and summary["peak_memory_mb"] > 0
    assert not list(run.glob("*.tmp*")), "no temporary files left behind"


def test_resumed_run_ends_with_exactly_the_uninterrupted_weights(tmp_path):
    cfg_full, cfg_cut = quick(tmp_path, name="full"), quick(tmp_path, name="cut")
    train.train(cfg_full, progress=False)

    def interrupt(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train(cfg_cut, progress=False, on_epoch_end=interrupt)
    assert io.load(tmp_path / "cut" / "checkpoint_last.npz")["epoch"] == 0
    train.train(cfg_cut, resume=True, progress=False)
    full = io.load(tmp_path / "full" / "checkpoint_last.npz")
    cut = io.load(tmp_path / "cut" / "checkpoint_last.npz")
    assert full["model"].keys() == cut["model"].keys()
    for name in full["model"]:
        np.testing.assert_array_equal(full["model"][name], cut["model"][name], err_msg=name)
    for name, value in full["optimizer"].items():
        np.testing.assert_array_equal(value, cut["optimizer"][name], err_msg=name)


def test_nan_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    make_loss, calls = recipe.make_loss, []

    def poisoned(*args):
        loss = make_loss(*args)

        def fn(logits, masks):
            calls.append(1)
            return loss(logits, masks) * (np.nan if len(calls) == 6 else 1.0)

        return fn

    monkeypatch.setattr(recipe, "make_loss", poisoned)
    with pytest.raises(Diverged, match="at step 6"):
        train.train(quick(tmp_path, name="nan"), progress=False)
    state = io.load(tmp_path / "nan" / "checkpoint_last.npz")
    assert state["epoch"] == 0
    assert all(np.isfinite(a).all() for a in state["model"].values())


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "resnet", "'resnet'"),
        ("loss", "focal", "'focal'"),
        ("data", "imagenet", "'imagenet'"),
        ("optimizer", "lion", "'lion'"),
        ("blas_threads", -1, "--blas-threads -1 is out of range"),
        ("batch_size", 0, "--batch-size 0 is out of range"),
        ("lr", 0.0, "--lr 0.0 is out of range"),
    ],
)
def test_bad_config_values_are_named(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        train.train(quick(tmp_path, **{field: value}), progress=False)


@pytest.mark.parametrize("model", ["fcn8s", "segnet"])
def test_other_models_and_losses_train(tmp_path, model):
    summary = train.train(
        quick(tmp_path, name=model, model=model, loss="ce", class_weights="balanced", border_weights=True),
        progress=False,
    )
    assert np.isfinite(summary["history"][-1]["train_loss"])


@pytest.mark.parametrize("loss", ["ce", "dice", "ce+dice"])
def test_each_loss_option_is_what_it_says(loss):
    import minisegnet as msn
    import minisegnet.ops as F

    rng = np.random.default_rng(0)
    logits, masks = msn.tensor(rng.standard_normal((2, 3, 4, 4))), rng.integers(0, 3, (2, 4, 4))
    got = recipe.make_loss(TrainConfig(loss=loss), masks, 3, "cpu")(logits, masks).item()
    ce = F.cross_entropy(logits, masks).item()
    dice = F.soft_dice_loss(F.softmax(logits, axis=1), masks, reduce_batch=True).item()  # one Dice per class
    assert got == pytest.approx({"ce": ce, "dice": dice, "ce+dice": ce + dice}[loss], rel=1e-12)


def test_training_on_a_folder_ignores_the_255_label(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("images", "masks"):
        (tmp_path / "data" / name).mkdir(parents=True)
    for i in range(12):  # 10 to train on (one batch of 8), 2 held out
        mask = rng.integers(0, 3, (32, 32)).astype(np.uint8)
        mask[:2] = 255  # a border to ignore, as VOC masks have
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / "data" / "images" / f"{i}.png"
        )
        Image.fromarray(mask).save(tmp_path / "data" / "masks" / f"{i}.png")
    cfg = quick(tmp_path / "runs", name="folder", data=str(tmp_path / "data"), class_weights="balanced")
    summary = train.train(cfg, progress=False)
    assert np.isfinite(summary["history"][-1]["train_loss"]) and 0 <= summary["final"]["miou"] <= 1


def poison(monkeypatch, change):
    """Make recipe.make_loss's loss call ``change(step, logits, loss_fn, masks)`` instead, from step 1."""
    make_loss, calls = recipe.make_loss, []

    def poisoned(*args):
        loss_fn = make_loss(*args)

        def fn(logits, masks):
            calls.append(1)
            return change(len(calls), logits, loss_fn, masks)

        return fn

    monkeypatch.setattr(recipe, "make_loss", poisoned)


def test_an_exploding_loss_stops_training_and_the_last_good_checkpoint_stays_the_best(tmp_path, monkeypatch):
    poison(monkeypatch, lambda step, logits, fn, masks: fn(logits, masks) * (1e9 if step > 5 else 1.0))
    with pytest.raises(Diverged, match=r"at step 6 \(learning rate [0-9.e+-]+\): the loss became 2.*Try a lower --lr"):
        train.train(quick(tmp_path, name="boom"), progress=False)
    best = io.load(tmp_path / "boom" / "checkpoint_best.npz")
    assert best["epoch"] == 0 and io.load(tmp_path / "boom" / "checkpoint_last.npz")["epoch"] == 0


def test_the_loss_functions_own_nan_check_becomes_the_loops_message(tmp_path, monkeypatch):
    def nan_logits(step, logits, fn, masks):
        if step == 2:
            logits.data[...] = np.nan  # as a blown-up model's output is
        return fn(logits, masks)

    poison(monkeypatch, nan_logits)
    with pytest.raises(Diverged, match="at step 2 .*the logits are not finite"):
        train.train(quick(tmp_path, name="nan"), progress=False)
    assert not (tmp_path / "nan").exists(), "no folder before a first good epoch"


def test_non_finite_running_statistics_stop_training(tmp_path, monkeypatch):
    build, models = recipe.build_model, []
    monkeypatch.setattr(recipe, "build_model", lambda *a: models.append(build(*a)) or models[-1])

    def spoil(step, logits, fn, masks):
        if step == 2:
            next(b for name, b in models[0].named_buffers() if name.endswith("running_var"))[0] = np.inf
        return fn(logits, masks)

    poison(monkeypatch, spoil)
    with pytest.raises(Diverged, match="running_var is no longer finite"):
        train.train(quick(tmp_path, name="stats"), progress=False)


def test_a_huge_learning_rate_exits_with_3_through_the_cli(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    argv = [sys.executable, "-m", "minisegnet", "train", "--quick", "--lr", "1e4", "--out", str(tmp_path)]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([*argv, "--no-progress"], capture_output=True, text=True, env=env)
    assert done.returncode == 3 and done.stderr.startswith("error: training diverged at step")
    assert "learning rate" in done.stderr and "--lr" in done.stderr and "Traceback" not in done.stderr


def test_a_data_set_with_no_labelled_pixel_is_named_not_scored(tmp_path):
    from minisegnet.data import ArrayDataset

    model = recipe.build_model(quick(tmp_path).resolved(), 3, 2)
    void = ArrayDataset(np.zeros((3, 3, 16, 16)), np.full((3, 16, 16), 255), ["background", "thing"], name="void")
    with pytest.raises(ValueError, match="^void has no labelled pixel to score: its 3 masks hold only the ignore"):
        train.evaluate_model(model, void, ignore_index=255)
    empty = ArrayDataset(np.zeros((0, 3, 16, 16)), np.zeros((0, 16, 16)), ["background", "thing"], name="nothing")
    with pytest.raises(ValueError, match="^nothing holds no image: nothing to score$"):
        train.evaluate_model(model, empty)


def test_an_all_void_validation_set_stops_the_run_before_a_checkpoint_and_leaves_no_folder(tmp_path, monkeypatch):
    from minisegnet.data import ArrayDataset

    load = recipe.load_datasets

    def void_validation(cfg):
        train_ds, val_ds = load(cfg)
        masks = np.full(np.shape(val_ds.masks), 255)
        return train_ds, ArrayDataset(val_ds.images, masks, val_ds.class_names, name="all-void val")

    monkeypatch.setattr(recipe, "load_datasets", void_validation)
    monkeypatch.setattr(recipe, "ignore_index_of", lambda cfg: 255)  # as for a folder or a layout
    with pytest.raises(ValueError, match="all-void val has no labelled pixel to score"):
        train.train(quick(tmp_path, name="void", epochs=1), progress=False)
    assert not (tmp_path / "void").exists()


def test_train_epoch_refuses_an_empty_batch_naming_its_step(tmp_path):
    cfg = quick(tmp_path).resolved()
    model = recipe.build_model(cfg, 3, 2)
    opt, schedule = recipe.make_optimizer(cfg, model, 1)
    batches = [(np.zeros((0, 3, 16, 16), np.float32), np.zeros((0, 16, 16), np.int64))]
    with pytest.raises(ValueError, match="the batch of step 8 holds no image"):
        train.train_epoch(model, batches, None, opt, schedule, None, step=7)


def test_the_old_names_are_gone():
    from minisegnet import plots

    for module, name in [(train, "NonFiniteLoss"), (train, "TrainConfig"), (train, "build_model")]:
        assert not hasattr(module, name), name
    assert not hasattr(plots, "predict_masks")  # predict_masks lives in minisegnet.predict
