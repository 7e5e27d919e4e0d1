"""examples/ddp_finetune.py: two CPU processes fine-tune an exported U-Net with DDP; replicas agree, the loss falls."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ddp_finetune_on_two_cpu_processes_keeps_replicas_equal_and_lowers_the_loss(tmp_path):
    torch()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("RANK", None)  # spawn its own two processes, not a torchrun rank
    script = str(ROOT / "examples" / "ddp_finetune.py")
    argv = [sys.executable, script, "--out", str(tmp_path), "--steps", "12", "--procs", "2", "--backend", "gloo"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    for name in ranks[0].files:
        assert np.array_equal(ranks[0][name], ranks[1][name]), name  # all-reduced: bit for bit the same
    losses = ranks[0]["losses"]
    assert len(losses) == 12 and losses[-1] < 0.95 * losses[0]
    from minisegnet import load
    from minisegnet.models import UNet

    state = load(tmp_path / "finetuned.npz")
    model = UNet(**state["config"])
    model.load_state_dict(state["model"])
    assert np.array_equal(model.state_dict()["head.weight"], ranks[0]["head.weight"])
