"""minisegnet/recipe.py: what a run is built from (the config, data, model, loss, optimiser)."""

import numpy as np

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
