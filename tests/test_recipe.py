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


# Your own folder, held in memory (PATH) or read from disk as needed (folder:PATH): one reader, one set of checks.
BOTH = [pytest.param(lambda root: str(root), id="memory"), pytest.param(lambda root: f"folder:{root}", id="disk")]


@pytest.mark.parametrize("form", BOTH)
def test_black_and_white_masks_are_refused_and_mapped_with_mask_values(form, tmp_path):
    folder = form(mask_folder(tmp_path / "bw", binary_masks()))
    message = r"bw hold no foreground label \(values: 0, 255\); black-and-white masks\? --mask-values 0,255 makes"
    with pytest.raises(ValueError, match=message):
        recipe.load_datasets(TrainConfig(data=folder, size=16))
    train, val = recipe.load_datasets(TrainConfig(data=folder, size=16, mask_values="0,255"))
    assert train.num_classes == 2 and set(np.unique(train.masks)) == set(np.unique(val.masks)) == {0, 1}


@pytest.mark.parametrize("form", BOTH)
def test_num_classes_is_honoured_and_a_label_beyond_it_names_the_file(form, tmp_path):
    masks = binary_masks(top=1)
    masks[3] = masks[3] * 3
    folder = form(mask_folder(tmp_path / "f", masks))
    with pytest.raises(ValueError, match=r"mask .*3\.png has label 3, outside 0\.\.1 for 2 classes"):
        recipe.load_datasets(TrainConfig(data=folder, size=16, num_classes=2))
    train, _ = recipe.load_datasets(TrainConfig(data=folder, size=16, num_classes=5))
    assert train.num_classes == 5 and len(train.class_names) == 5


@pytest.mark.parametrize("form", BOTH)
def test_a_16_bit_label_is_refused_before_any_model_is_built(form, tmp_path, monkeypatch, capsys):
    from minisegnet.cli import main

    masks = [m.astype(np.uint16) for m in binary_masks(top=1)]
    masks[5][0, 0] = 65535
    folder = form(mask_folder(tmp_path / "f", masks))

    def no_model(*args):
        raise AssertionError("a model was built")

    monkeypatch.setattr(recipe, "build_model", no_model)
    monkeypatch.setattr("minisegnet.train.build_model", no_model, raising=False)
    assert main(["train", "--data", folder, "--size", "16", "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "hold label 65535: more than 256 classes" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("form", BOTH)
def test_one_image_is_too_few_and_the_message_says_how_many_and_where(form, tmp_path):
    root = mask_folder(tmp_path / "one", binary_masks(n=1, top=1))
    with pytest.raises(ValueError, match=rf"{root} holds 1 image/mask pair; training needs at least 2, one of them "):
        recipe.load_datasets(TrainConfig(data=form(root), size=16))
    train, val = recipe.load_datasets(TrainConfig(data=form(mask_folder(tmp_path / "two", binary_masks(2, 1)))))
    assert (len(train), len(val)) == (1, 1)


@pytest.mark.parametrize("form", BOTH)
def test_both_paths_hold_out_the_same_images_and_read_the_same_labels(form, tmp_path):
    rng = np.random.default_rng(1)
    masks = [rng.integers(0, 3, (16, 16)).astype(np.uint8) for _ in range(10)]
    root = mask_folder(tmp_path / "f", masks)
    memory = recipe.load_datasets(TrainConfig(data=str(root), seed=3))
    disk = recipe.load_datasets(TrainConfig(data=f"folder:{root}", seed=3, size=16))
    for a, b in zip(memory, disk):
        assert len(a) == len(b) and a.num_classes == b.num_classes == 3
        np.testing.assert_array_equal(a.masks, b.masks)


def test_own_images_of_a_size_the_model_cannot_take_say_what_would_do(tmp_path):
    folder = str(mask_folder(tmp_path / "f", [np.pad(m, ((0, 2), (0, 2))) for m in binary_masks(top=1)]))
    message = (
        r"unet with --depth 3 takes image sides divisible by 8, but the images are 18x18: resize them, pass a "
        rf"smaller --depth, or read them with --data folder:{folder} --size 24 or 16, which resizes them"
    )
    with pytest.raises(ValueError, match=message):
        recipe.load_datasets(TrainConfig(data=folder))


def test_a_model_size_is_checked_before_any_image_is_made():
    with pytest.raises(ValueError, match=r"fcn8s takes image sides divisible by 32, but the images are 40x40: pass "
                       r"--size 64 or 32$"):  # fmt: skip
        recipe.load_datasets(TrainConfig(model="fcn8s", size=40, n_train=10**9))
    recipe.check_size(TrainConfig(depth=3), 24, 40)  # both sides divisible by 8: nothing to say


def test_depth_is_held_to_a_range_that_cannot_suggest_an_absurd_size():
    with pytest.raises(ValueError, match="--depth 40 is out of range: expected a whole number from 1 to 8"):
        TrainConfig(depth=40).check()
    assert TrainConfig(depth=8).check().depth == 8
    with pytest.raises(ValueError, match="--num-classes 65536 is out of range: expected a whole number from 0 to 256"):
        TrainConfig(num_classes=65536).check()


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
