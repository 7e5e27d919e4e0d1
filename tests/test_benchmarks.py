"""benchmarks/: the timer's statistics and synchronisation, and a quick run of every benchmark so none can rot.

No test asserts a time: only that the numbers are well formed and the files get written.
"""

import doctest
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from minisegnet import backend
from minisegnet.backend import get_array_module, to_device

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402

import timing  # noqa: E402

MODULES = ["bench_kernels", "bench_train_step", "bench_scaling", "bench_dtype"]
ROW_KEYS = {"bench", "case", "op", "impl", "device", "dtype", "median_ms", "iqr_ms", "min_ms", "max_ms", "times_ms"}


@pytest.fixture(autouse=True)
def one_thread():
    # 2 shared cores: one BLAS/torch thread avoids OpenMP spin-waiting against the other test processes.
    with timing.threads(1):
        yield


def test_timer_gives_sane_statistics(device):
    x = to_device(np.arange(1000.0), device)
    res = timing.benchmark(lambda: get_array_module(x).sqrt(x).sum(), device=device, repeat=5, min_time=1e-3)
    assert len(res.times) == 5 and res.number >= 1
    assert all(t > 0 for t in res.times)
    assert res.min <= res.q1 <= res.median <= res.q3 <= res.max and res.iqr >= 0
    row = res.row(bench="x")
    assert row["median_ms"] == pytest.approx(res.median * 1e3) and len(row["times_ms"]) == 5
    assert res.peak_traced is not None and res.peak_traced >= 0
    if device == "gpu":
        assert res.peak_device is not None and res.peak_device >= 0


def test_quantiles_match_numpy():
    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    res = timing.Result("r", "numpy", "cpu", times=xs)
    assert (res.q1, res.median, res.q3) == pytest.approx(tuple(np.percentile(xs, [25, 50, 75])))
    assert timing.Result("one", "numpy", "cpu", times=[2.0]).iqr == 0


def test_every_timed_block_is_synchronised_on_both_sides(monkeypatch):
    events = []
    monkeypatch.setattr(backend, "synchronize", lambda: events.append("sync"))
    res = timing.benchmark(lambda: events.append("fn"), device="gpu", warmup=2, repeat=3, min_time=0, memory=False)
    assert res.number == 1
    # warm-up calls and samples alike: wait for the queue, run, wait for the work to finish, then read the clock
    assert events == ["sync", "fn", "sync"] * (2 + 3)


def test_compare_interleaves_implementations():
    calls = []
    impls = [timing.Impl("case", name, "cpu", lambda n=name: calls.append(n)) for name in ("a", "b")]
    results = timing.compare(impls, warmup=1, repeat=4, min_time=0, memory=False)
    assert [r.impl for r in results] == ["a", "b"] and all(len(r.times) == 4 for r in results)
    assert calls[2:] == ["a", "b"] * 4  # after one warm-up each: a b a b a b a b


def test_memory_sees_a_temporary_numpy_array():
    def allocate():
        np.ones(2**20).sum()  # an 8 MiB temporary

    traced, rss, dev = timing.measure_memory(allocate, sync=lambda: None)
    assert traced >= 8 * 2**20 and dev is None
    assert rss is None or rss >= 0


def test_timing_doctest():
    assert doctest.testmod(timing).failed == 0


WORKER = """
import sys
sys.path.insert(0, {bench!r})
import numpy as np
from timing import Impl, worker_main


def build(scale):
    def make(data, args):
        with open(str(data["log"]), "a") as log:
            log.write(args.worker + " ")
        if args.worker == "broken":
            raise ValueError("this worker cannot start")
        x = data["x"]
        return [Impl("double", args.worker, "cpu", lambda: (x * scale,))]
    return make


sys.exit(worker_main({{"a": build(2.0), "b": build(2.0), "off": build(2.001), "broken": build(0)}}))
"""


@pytest.fixture
def worker_script(tmp_path):
    """A worker script with frameworks "a" and "b" (the same output), "off" (0.05% away) and "broken"."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(bench=str(BENCH)))
    data, log = tmp_path / "data.npz", tmp_path / "log.txt"
    np.savez(data, x=np.arange(4.0), log=np.array(str(log)))
    return script, data, log


def test_run_interleaved_rotates_separate_processes_and_keeps_every_round(worker_script):
    script, data, log = worker_script
    args = ["--warmup", "1", "--min-calls", "3", "--min-time", "0"]
    results, infos = timing.run_interleaved(script, ["a", "b"], data, rounds=3, pause=0, threads=1, args=args)
    assert log.read_text().split() == ["a", "b", "b", "a", "a", "b"]  # the order rotates from round to round
    for worker in ("a", "b"):
        res = results[worker]["double"]
        assert res.impl == worker and len(res.times) == 9 and len(res.round_medians) == 3
        assert res.row()["rounds"] == 3 and len(res.row()["round_medians_ms"]) == 3
        assert infos[worker]["threads"] == 1 and infos[worker]["environment"]["OPENBLAS_NUM_THREADS"] == "1"
        assert "blas" in infos[worker]


def test_check_outputs_compares_every_worker_with_the_reference(worker_script):
    script, data, _ = worker_script
    errors = timing.check_outputs(script, ["b"], data, "a")
    assert errors == {("b", "double/0"): 0.0}
    with pytest.raises(RuntimeError, match=r"off double/0: relative error 5\.00e-04 > 1e-04") as info:
        timing.check_outputs(script, ["b", "off"], data, "a")
    assert "\n" not in str(info.value)


def test_a_failing_worker_is_one_clear_line(worker_script):
    script, data, _ = worker_script
    with pytest.raises(RuntimeError, match="worker 'broken' of worker.py failed \\(exit 1\\): ValueError: this worker"):
        timing.run_interleaved(script, ["broken"], data, rounds=1, pause=0, threads=1)
    with pytest.raises(ValueError, match="need rounds >= 1"):
        timing.run_interleaved(script, ["a"], data, rounds=0)


def test_bench_conv_quick_checks_and_times_in_separate_processes():
    import bench_conv

    rows = bench_conv.run(quick=True, memory=False, workers=["minisegnet", "textbook"])
    assert len(rows) == len(bench_conv.SHAPES)  # no memory row
    assert all(r["minisegnet_s"] > 0 and len(r["textbook_rounds_s"]) == 1 for r in rows)
    workers = rows[0]["workers"]
    assert workers["minisegnet"]["versions"]["minisegnet"] and "blas" in workers["textbook"]
    text = bench_conv.markdown(rows)
    assert "| conv3x3 | 1 | 3 -> 16 |" in text and "Each worker process ran with" in text


def test_torch_twin_is_the_same_unet():
    torch = pytest.importorskip("torch")
    import bench_train_step as b

    images, _ = b.batch(b.QUICK)
    model, _ = b.build_ours(b.QUICK, "cpu")
    twin, _ = b.build_torch(torch, b.QUICK, model, "cpu")
    ours = model(images).data
    theirs = twin(torch.from_numpy(images)).detach().numpy()
    assert ours.shape == theirs.shape == (2, 2, 32, 32)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


@pytest.mark.parametrize("name", MODULES)
def test_each_benchmark_runs_quick_and_returns_rows(name, device):
    module = importlib.import_module(name)
    torch = timing.import_torch()
    rows = module.run(device, compare_torch=torch is not None, quick=True)
    assert rows and all(ROW_KEYS <= set(r) for r in rows)
    assert all(r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in rows)
    assert {r["device"] for r in rows} == {device}
    ours = "cupy" if device == "gpu" else "numpy"
    assert {r["impl"] for r in rows} == ({ours, "torch"} if timing.torch_on(torch, device) else {ours})
    json.dumps(rows)  # run_all writes them as JSON


def test_run_all_writes_tables_and_plots(tmp_path):
    out = tmp_path / "results"
    assert run_all.main(["--quick", "--device", "cpu", "--out", str(out), "--threads", "1"]) == 0
    for bench in run_all.BENCHES:
        text = (out / f"{bench}_cpu_quick.md").read_text()
        assert "| cpu |" in text and "| gpu | no GPU |" in text or backend.cupy_available()
        assert "median" in text and "numpy" in text
        assert ("separate processes" in text) == (bench == "train")
        rows = json.loads((out / f"{bench}_cpu_quick.json").read_text())["rows"]
        assert rows and all(r["device"] == "cpu" for r in rows)
    for plot in ("kernels", "scaling"):
        assert (out / f"{plot}_cpu_quick.png").read_bytes()[:4] == b"\x89PNG"


def test_run_all_reports_a_missing_gpu_and_bad_names(capsys):
    if not backend.cupy_available():
        assert run_all.main(["--quick", "--device", "gpu", "--only", "train"]) == 2
        assert "gpu" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_all.main(["--only", "kernels,nope"])


def test_profile_step_times_the_ops_inside_a_step_and_gives_the_methods_back():
    import profile_step

    from minisegnet.ops.conv import Conv2d

    forward = Conv2d.forward
    whole, ops = profile_step.profile(quick=True, steps=2)
    assert Conv2d.forward is forward  # the class has its own method back
    assert ops["Conv2d.forward"][1] == ops["Conv2d.backward"][1] > 0  # calls per step, one backward per forward
    assert 0 < sum(ms for ms, _ in ops.values()) <= whole
    assert list(ops.values()) == sorted(ops.values(), key=lambda v: -v[0])
    text = profile_step.table(whole, ops)
    assert "| Conv2d.forward |" in text and "| whole step |" in text


def test_profile_step_refuses_no_steps(capsys):
    import profile_step

    with pytest.raises(SystemExit):
        profile_step.main(["--steps", "0"])
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err


def test_bench_winograd_quick_checks_each_phase_against_the_default_path():
    import bench_winograd

    rows, infos = bench_winograd.run(quick=True)
    assert [r["phase"] for r in rows] == list(bench_winograd.PHASES) * 2
    assert all(r["winograd4_s"] > 0 and r["winograd2_ratio"] > 0 for r in rows)
    assert set(infos) == set(bench_winograd.WORKERS)
    assert "| (1, 3->16, 8x8) | fwd |" in bench_winograd.markdown(rows, infos)
