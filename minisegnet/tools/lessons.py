"""Run the lessons in full mode and store their outputs; check that no stored output is older than its cell.

    python -m minisegnet.tools.lessons execute              # every lesson, full mode, outputs written back
    python -m minisegnet.tools.lessons execute 06 08_soft   # only the lessons whose file name starts so
    python -m minisegnet.tools.lessons check                # exit 1 if a stored output is stale

Lessons are committed with the outputs of a full run, so every figure shows on GitHub. Each code cell's
metadata holds ``minisegnet.source_hash``: the SHA-256 of its source chained with the hash of the code cell
before it, so editing a cell makes it and every later cell stale (a later cell's output may depend on it).
The notebook's metadata records the machine, the date and the run time. Figures are PNG at the dpi of
``lessons/matplotlibrc``, which matplotlib reads because the kernel runs from inside ``lessons/``.
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
KEY = "minisegnet"
INLINE = "module://matplotlib_inline.backend_inline"
CELL_TIMEOUT = 1200  # seconds; the longest full-mode cell trains several U-Nets


def cell_hashes(nb):
    """{cell index: chained SHA-256 hex} for the code cells of a notebook dict, in order."""
    hashes, previous = {}, ""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        previous = hashlib.sha256((previous + "\n" + source).encode("utf-8")).hexdigest()
        hashes[i] = previous
    return hashes


def refresh_command(path):
    return f"python -m minisegnet.tools.lessons execute {Path(path).stem}"


def stale_cells(path):
    """One line per code cell of the notebook at ``path`` whose stored output is older than its source."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for i, expected in cell_hashes(nb).items():
        cell = nb["cells"][i]
        stored = cell.get("metadata", {}).get(KEY, {}).get("source_hash")
        if stored != expected:
            first = (cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])).strip()
            first = first.splitlines()[0] if first else "(empty)"
            why = "has no outputs from the tool yet" if stored is None else "changed (or a cell above it did)"
            if stored is not None:
                why += " since its outputs were stored"
            problems.append(f"{path.name} cell {i} ({first!r}) {why}: run `{refresh_command(path)}`")
            break  # the first stale cell makes every later one stale too; name it and the command
    return problems


def machine():
    """What ran the notebook: CPU model, cores, OS, Python and NumPy versions."""
    import numpy

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {"os": platform.platform(), "python": platform.python_version(), "numpy": numpy.__version__}
    return {"cpu": cpu, "cores": cores, **versions}


def write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp's file is private (0600)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def execute(path, timeout=CELL_TIMEOUT):
    """Run the notebook at ``path`` in full mode in a fresh kernel from its folder and store its outputs.

    Returns the run time in seconds. On an error nothing is written and the error propagates.
    """
    import nbclient
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("MINISEGNET_QUICK", "MPLBACKEND", "PYTHONPATH")}
    os.environ.pop("MINISEGNET_QUICK", None)  # full mode
    os.environ["MPLBACKEND"] = INLINE  # figures become PNG outputs
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    start = time.perf_counter()
    try:
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    for i, digest in cell_hashes(nb).items():
        meta = nb.cells[i].metadata
        meta.pop("execution", None)  # nbclient's timestamps would make every run a diff
        meta[KEY] = {"source_hash": digest}
    nb.metadata[KEY] = {
        "executed": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "full",
        "seconds": round(seconds, 1),
        "machine": machine(),
    }
    write_atomic(path, nbformat.writes(nb) + "\n")
    return seconds


def select(names):
    """The lesson files whose names start with one of ``names`` (all lessons when empty); paths are kept."""
    lessons = sorted(LESSONS.glob("*.ipynb"))
    if not names:
        return lessons
    chosen = []
    for name in names:
        if name.endswith(".ipynb") and Path(name).is_file():
            chosen.append(Path(name))
            continue
        found = [p for p in lessons if p.name.startswith(Path(name).name)]
        if not found:
            raise SystemExit(f"no lesson matches {name!r}; expected the start of one of {[p.name for p in lessons]}")
        chosen += found
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minisegnet.tools.lessons", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("execute", "check"))
    parser.add_argument("names", nargs="*", help="lesson names or their starts (e.g. 06); default: all lessons")
    args = parser.parse_args(argv)
    paths = select(args.names)
    if args.command == "check":
        problems = [line for p in paths for line in stale_cells(p)]
        print("\n".join(problems) if problems else f"{len(paths)} lessons: every stored output is fresh")
        return 1 if problems else 0
    for path in paths:
        seconds = execute(path)
        size = path.stat().st_size / 1e6
        print(f"{path.name}: {seconds:.0f} s, {size:.2f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
