"""minisegnet/runs.py through the real command line in a subprocess: a run folder is never overwritten,
--resume continues the saved run (and nothing else), and a run killed at any moment resumes to the
weights of an uninterrupted one."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minisegnet import io, runs

ROOT = Path(__file__).resolve().parents[1]
# 3 epochs of 2 steps on 16x16 images: the smallest run that has a "between two epochs".
TINY = "--size 16 --n-train 16 --n-val 8 --batch-size 8 --base-channels 4 --depth 2 --epochs 3 --no-progress".split()

# Runs the CLI after patching one function to die (SIGKILL) or be interrupted (Ctrl-C) at a chosen moment:
# argv: <moment> <n> <cli arguments...>. Moments: "step" (the n-th loss), "writing" (inside the n-th
# checkpoint write, after the temporary file is written and before it is renamed), "saved" (right after
# the n-th checkpoint write), "ctrl-c" (KeyboardInterrupt right after the n-th write).
DRIVER = """
import os, signal, sys
from minisegnet import cli, io, recipe
moment, n, calls = sys.argv[1], int(sys.argv[2]), []

def stop():
    calls.append(1)
    if len(calls) == n and moment == "ctrl-c":
        raise KeyboardInterrupt
    if len(calls) == n:
        os.kill(os.getpid(), signal.SIGKILL)

def wrap(fn, before):
    def wrapped(*args):
        if before:
            stop()
        out = fn(*args)
        if not before:
            stop()
        return out
    return wrapped

if moment == "writing":
    io._write_npz = wrap(io._write_npz, before=False)
elif moment == "step":
    make_loss = recipe.make_loss
    recipe.make_loss = lambda *a: wrap(make_loss(*a), before=True)
else:
    io.save = wrap(io.save, before=False)
sys.exit(cli.main(sys.argv[3:]))
"""


def cli(*argv, moment=None, n=0):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    head = ["-c", DRIVER, moment, str(n)] if moment else ["-m", "minisegnet"]
    return subprocess.run([sys.executable, *head, *map(str, argv)], capture_output=True, text=True, env=env)


def train(out, *flags, name="run", moment=None, n=0):
    return cli("train", "--out", out, "--name", name, *TINY, *flags, moment=moment, n=n)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    done = train(out)
    assert done.returncode == 0, done.stderr
    return out / "run"


def assert_same_run(run, reference):
    for name in ("checkpoint_last.npz", "checkpoint_best.npz"):
        got, want = io.load(run / name), io.load(reference / name)
        assert got["epoch"] == want["epoch"], name
        for key, value in want["model"].items():
            np.testing.assert_array_equal(got["model"][key], value, err_msg=f"{name} {key}")
    assert not list(run.glob("*.tmp")), "leftover temporary files are cleaned"


def test_a_second_run_into_a_folder_with_checkpoints_is_refused_naming_resume_and_name(reference):
    before = (reference / "checkpoint_best.npz").read_bytes()
    again = train(reference.parent, "--lr", "0.05")
    assert again.returncode == 2
    assert "--resume" in again.stderr and "--name" in again.stderr and again.stderr.count("\n") == 1
    assert (reference / "checkpoint_best.npz").read_bytes() == before


def test_the_default_name_says_the_model_and_the_data(tmp_path):
    done = cli(
        "train", "--out", tmp_path, *TINY, "--epochs", "1", "--size", "32", "--model", "segnet", "--data", "digits"
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "segnet-digits" / "checkpoint_last.npz").exists() and "segnet-digits" in done.stdout


def test_resume_of_nothing_is_an_error_and_writes_nothing(tmp_path):
    done = train(tmp_path, "--resume", name="missing")
    assert done.returncode == 2 and "nothing to resume" in done.stderr
    assert not (tmp_path / "missing").exists()


def test_an_error_before_the_first_epoch_leaves_no_folder(tmp_path):
    done = train(tmp_path, "--batch-size", "64", name="big")
    assert done.returncode == 2 and "--batch-size 64" in done.stderr
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize(
    "moment, n",
    [
        ("step", 3),  # in the middle of epoch 2
        ("writing", 1),  # inside the first checkpoint write (best of epoch 1)
        ("saved", 1),  # between writing epoch 1's best and its last checkpoint
        ("saved", 2),  # between epochs 1 and 2, both checkpoints written
        ("writing", 4),  # inside epoch 2's last checkpoint write
    ],
)
def test_killed_at_any_moment_resume_ends_with_the_uninterrupted_weights(tmp_path, reference, moment, n):
    killed = train(tmp_path, moment=moment, n=n)
    assert killed.returncode == -9, killed.stderr
    run = tmp_path / "run"
    if not (run / "checkpoint_last.npz").exists():
        assert train(tmp_path, "--resume").returncode == 2  # nothing to resume yet: start again
        done = train(tmp_path)
    else:
        done = cli("train", "--out", tmp_path, "--name", "run", "--resume", "--no-progress")  # no other flag
    assert done.returncode == 0, done.stderr
    assert_same_run(run, reference)


def test_the_ctrl_c_hint_works_as_printed(tmp_path, reference):
    stopped = train(tmp_path, "--lr", "0.005", moment="ctrl-c", n=2)
    assert stopped.returncode == 130
    command = stopped.stderr.split("continue with: ")[1].strip()
    args = shlex.split(command)
    assert args[:2] == ["minisegnet", "train"]
    done = cli(*args[1:], "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_same_run(tmp_path / "run", reference)


def test_resume_keeps_the_saved_configuration_and_refuses_a_conflicting_flag(tmp_path):
    first = train(tmp_path, "--lr", "0.002", "--epochs", "2", moment="ctrl-c", n=2)
    assert first.returncode == 130
    config = (tmp_path / "run" / "config.json").read_text()
    refused = cli("train", "--out", tmp_path, "--name", "run", "--resume", "--lr", "0.01", "--no-progress")
    assert refused.returncode == 2 and "--lr 0.01" in refused.stderr and "0.002" in refused.stderr
    assert (tmp_path / "run" / "config.json").read_text() == config, "nothing written before validating"
    done = cli("train", "--out", tmp_path, "--name", "run", "--resume", "--lr", "0.002", "--no-progress")
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["lr"] == 0.002 and saved["epochs"] == 2 and saved["size"] == 16


def test_explicit_flags_win_over_quick_mode(tmp_path):
    argv = ["--quick", "--epochs", "1", "--size", "16", "--blas-threads", "2", "--no-progress"]
    done = cli("train", "--out", tmp_path, "--name", "q", *argv)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "q" / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["size"] == 16 and saved["n_train"] == 32  # the rest from --quick
    assert saved["blas_threads"] == 2 and "threads" not in saved
    assert not (tmp_path / "q" / "train.lock").exists(), "the lock goes with the run"


def test_checkpoints_follow_the_umask_and_metrics_are_strict_json(reference):
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("checkpoint_last.npz", "checkpoint_best.npz", "config.json"):
        assert (reference / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    text = (reference / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))


def test_a_second_training_of_a_held_run_is_refused_at_once(tmp_path):
    run = tmp_path / "run"
    with runs.claim(run):  # as a training in this process holds it
        for flags in ([], ["--resume"]):
            again = train(tmp_path, *flags)
            assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
            assert f"{run} is in use by another `minisegnet train` (process {os.getpid()})" in again.stderr
        assert sorted(p.name for p in run.iterdir()) == ["train.lock"], "the refused runs wrote nothing"
        with pytest.raises(FileExistsError, match="is in use"):  # a second claim in this process too
            with runs.claim(run):
                pass
    assert not run.exists(), "a claim that ends without a checkpoint leaves no folder"


def test_two_trainings_of_one_name_started_together_leave_one_consistent_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "minisegnet", "train", "--out", str(tmp_path), "--name", "run", *TINY]
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True, "env": env}
    both = [subprocess.Popen([*argv, "--lr", lr], **pipes) for lr in ("0.01", "0.02")]
    errs = [p.communicate()[1] for p in both]
    codes = [p.returncode for p in both]
    assert sorted(codes) == [0, 2], errs
    loser = errs[codes.index(2)]
    assert loser.count("\n") == 1 and ("is in use" in loser or "already holds" in loser), loser
    lr = json.loads((tmp_path / "run" / "config.json").read_text())["lr"]
    assert lr == [0.01, 0.02][codes.index(0)]
    for name in ("checkpoint_last.npz", "checkpoint_best.npz"):
        assert io.load(tmp_path / "run" / name)["config"]["lr"] == lr, "config.json describes the checkpoints"


def test_one_claim_object_can_be_reused_and_nesting_it_is_refused(tmp_path):
    held = runs.claim(tmp_path / "out" / "run")
    for _ in range(2):
        with held:
            with pytest.raises(FileExistsError, match="is in use"):
                with held:
                    pass
            assert (tmp_path / "out" / "run" / "train.lock").exists(), "the outer block still holds the run"
        assert not (tmp_path / "out").exists(), "the folders the claim made go with it"
    with held:
        (tmp_path / "out" / "run" / "checkpoint_last.npz").write_bytes(b"kept")
    assert sorted(p.name for p in (tmp_path / "out" / "run").iterdir()) == ["checkpoint_last.npz"]


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/tmp/elsewhere"])
def test_a_name_that_is_not_one_folder_inside_out_is_refused(tmp_path, name, capsys):
    from minisegnet.cli import main

    assert main(["train", "--out", str(tmp_path / "runs"), "--name", name, *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--name {name!r} must be one folder name inside --out" in err
    assert not list(tmp_path.iterdir())


def test_resume_refuses_a_folder_whose_config_json_describes_another_run(tmp_path, reference):
    shutil.copytree(reference, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "lr": 0.05}))
    done = cli("train", "--out", tmp_path, "--name", "run", "--resume", "--no-progress")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "says lr=0.05 but" in done.stderr and "two runs wrote this folder" in done.stderr


def spoil(state, how):
    if how == "nan":
        next(v for v in state["model"].values() if v.dtype.kind == "f").flat[0] = np.nan
    elif how in ("depth", "base_channels"):
        state["config"][how] = {"depth": 40, "base_channels": 4096}[how]
    elif how == "palette":
        state["palette"] = state["palette"][:2]
    elif how == "class_names":
        state["class_names"] = state["class_names"][:1]
    elif how == "num_classes":
        state["num_classes"] = 70_000
    return state


SPOILED = [
    ("nan", "holds NaN or Inf in "),
    ("depth", "holds a configuration no model can be built from: --depth 40 is out of range: expected a whole "),
    ("base_channels", "--base-channels 4096 and --depth 2 make layers of 16384 channels; expected at most 4096"),
    ("palette", "holds a palette of 2 colours for its "),
    ("class_names", "holds the class names ['background'] for its "),
    ("num_classes", "holds the class count 70000; expected a whole number in 1..256"),
]


@pytest.mark.parametrize("how, words", SPOILED, ids=[case[0] for case in SPOILED])
def test_load_model_refuses_a_damaged_checkpoint_naming_it(tmp_path, reference, how, words):
    path = io.save(tmp_path / f"{how}.npz", spoil(io.load(reference / "checkpoint_best.npz"), how))
    with pytest.raises(ValueError) as info:
        runs.load_model(path)
    assert str(info.value).startswith(str(path)) and words in str(info.value)


@pytest.mark.parametrize("command", [["evaluate"], ["predict", "x.png"], ["export", "--to", "torch"]])
def test_every_command_refuses_a_checkpoint_with_nan_weights_in_one_line(tmp_path, reference, command, capsys):
    from minisegnet.cli import main

    path = io.save(tmp_path / "nan.npz", spoil(io.load(reference / "checkpoint_best.npz"), "nan"))
    assert main([command[0], str(path), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {path} holds NaN or Inf in" in err
    assert os.listdir(tmp_path) == ["nan.npz"]
