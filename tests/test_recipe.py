"""minisegnet/recipe.py: what a run is built from (the config, data, model, loss, optimiser)."""

import numpy as np
import pytest

from minisegnet import optim, recipe
from minisegnet.models import UNet
from minisegnet.recipe import TrainConfig


def test_fresh_data_draws_new_images_each_epoch_and_the_same_ones_in_every_run():
    cfg = TrainConfig(n_train=4, n_val=4, size=32)
    e0, e1 = recipe.epoch_data(cfg, 0), recipe.epoch_data(cfg, 1)
    assert not np.array_equal(e0.images, e1.images)
    np.testing.assert_array_equal(e1.images, recipe.epoch_data(cfg, 1).images)  # a resumed run sees the same
    val = recipe.load_datasets(cfg)[1]
    seen = np.concatenate([e0.images, e1.images])
    assert not any(np.array_equal(v, t) for v in val.images for t in seen)
    repeat = TrainConfig(n_train=4, size=32, fresh_data=False)
    np.testing.assert_array_equal(recipe.epoch_data(repeat, 0).images, recipe.epoch_data(repeat, 3).images)


def test_the_schedule_warms_up_then_decays_to_zero_at_the_last_step():
    cfg = TrainConfig(epochs=3, lr=0.01)
    opt, schedule = recipe.make_optimizer(cfg, UNet(3, 2, 4, 1), steps_per_epoch=100)
    assert isinstance(schedule, optim.WarmupCosineLR) and schedule.warmup == 30  # a tenth of a short run
    rates = []
    for _ in range(300):
        rates.append(opt.lr)
        schedule.step()
    assert rates[0] == 0.01 / 30 and max(rates) == rates[29] == 0.01 and opt.lr == 0.0


def mask_folder(root, masks):
    """root/images and root/masks from a list of (H, W) uint8 (or uint16) masks, with random images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    for i, mask in enumerate(masks):
        Image.fromarray(rng.integers(0, 255, mask.shape + (3,), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def binary_masks(n=10, top=255):
    masks = np.zeros((n, 16, 16), np.uint8)
    masks[:, 4:10, 4:10] = top
    return list(masks)


def test_black_and_white_masks_are_refused_and_mapped_with_mask_values(tmp_path):
    folder = str(mask_folder(tmp_path / "bw", binary_masks()))
    with pytest.raises(ValueError, match="no foreground label .*--mask-values 0,255"):
        recipe.load_datasets(TrainConfig(data=folder))
    train, val = recipe.load_datasets(TrainConfig(data=folder, mask_values="0,255"))
    assert train.num_classes == 2 and set(np.unique(train.masks)) == {0, 1}


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"batch_size": -4}, {"lr": float("nan")}, {"depth": 1.5}])
def test_check_names_the_flag_of_a_bad_number(bad):
    (field, value), *_ = bad.items()
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')} {value!r} is out of range"):
        TrainConfig(**bad).check()


def test_quick_mode_leaves_explicit_fields_alone():
    cfg = TrainConfig(quick=True, epochs=5, size=16).resolved()
    assert (cfg.epochs, cfg.size, cfg.n_train, cfg.name) == (5, 16, 32, "unet-shapes")
    kept = TrainConfig(quick=True, epochs=8).resolved(keep=["epochs"])
    assert kept.epochs == 8 and kept.resolved(keep=["epochs"]) == kept  # resolving twice changes nothing


@pytest.mark.parametrize("loss", ["ce", "dice", "ce+dice"])
@pytest.mark.parametrize("ignore,border,balanced", [(None, False, False), (255, True, True)])
def test_make_loss_gives_the_same_loss_and_gradient_as_before_dice_ce_loss(loss, ignore, border, balanced, tmp_path):
    # The pre-#16 make_loss written out: cross_entropy (+) batch soft Dice, bit for bit the same.
    import minisegnet as msn
    import minisegnet.ops as F
    from minisegnet.recipe import make_loss

    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, (2, 6, 6))
    if ignore is not None:
        masks[0, :2] = ignore
    data = {"data": str(tmp_path)} if ignore is not None else {}  # a folder data set ignores 255
    cfg = TrainConfig(loss=loss, border_weights=border, class_weights="balanced" if balanced else "none", **data)
    fn = make_loss(cfg, masks, 3, "cpu")
    x = msn.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    got = fn(x, masks)
    got.backward()
    g_new = x.grad.copy()
    x.zero_grad()
    weight = None
    if balanced:
        counts = np.bincount(masks[masks != ignore], minlength=3).astype(np.float64)
        weight = (counts.sum() / (3 * np.maximum(counts, 1))).astype(np.float32)
    total = 0.0
    if loss != "dice":
        pw = F.unet_weight_map(masks, class_weights=None) if border else None
        ce_ignore = -100 if ignore is None else ignore
        total = F.cross_entropy(x, masks, weight=weight, ignore_index=ce_ignore, pixel_weight=pw)
    if loss != "ce":
        total = total + F.soft_dice_loss(F.softmax(x, axis=1), masks, reduce_batch=True, ignore_index=ignore)
    total.backward()
    assert got.item() == total.item()
    assert np.array_equal(g_new, x.grad)
