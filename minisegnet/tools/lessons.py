"""Run the lessons in full mode and store their outputs; check that no stored output is older than its cell.

    python -m minisegnet.tools.lessons execute              # every lesson, full mode, outputs written back
    python -m minisegnet.tools.lessons execute 06 08_soft   # only the lessons whose file name starts so
    python -m minisegnet.tools.lessons check                # exit 1 if a stored output is stale or a
                                                            # number in the prose is in no stored output

Lessons are committed with the outputs of a full run, so every figure shows on GitHub. Each code cell's
metadata holds ``minisegnet.source_hash``: the SHA-256 of its source chained with the hash of the code cell
before it, so editing a cell makes it and every later cell stale (a later cell's output may depend on it).
The notebook's metadata records the machine, the date and the run time. Figures are PNG at the dpi of
``lessons/matplotlibrc``, which matplotlib reads because the kernel runs from inside ``lessons/``.

A lesson's prose must be true of its own outputs. Every measurement it quotes, a number with a decimal point or a
percentage outside ``$math$`` and ```code``` (0.378, 6.84e-03, 14.3%), must appear in a stored output, written there
to at least as many digits; integers and powers such as 1e-6 are read as settings. A sentence that says "quoted
from" and names its source (a link to a file must resolve) quotes figures from elsewhere and is not checked.
"""

import argparse
import hashlib
import json
import os
import platform
import re
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


# A measurement in prose: a number with a decimal point (and maybe an exponent), or a percentage.
MEASUREMENT = re.compile(r"(?<![\w.])(\d+\.\d+(?:e[-+]?\d+)?%?|\d+%)(?![\w%]|\.\d)")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[-+]?\d+)?%?")  # any number an output prints
# Math, code and link targets are not prose: "$0.5$", "`lr=5e-3`", "[gpu.md](../benchmarks/results/gpu.md)".
NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|```.*?```|`[^`\n]*`|(?<=\])\([^)\s]*\)", re.S)
SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z*\[(])|\n\s*\n|\n(?=\s*[*-] )")
QUOTED = "quoted from"
QUOTED_LINK = re.compile(r"quoted from \[[^\]]*\]\(([^)\s]+)\)", re.I)


def _text(value):
    return value if isinstance(value, str) else "".join(value)


def _value(token):
    """(value, half a unit of its last written digit, is a percentage) of a number token such as "6.84e-03"."""
    body = token.rstrip("%")
    mantissa, _, exponent = body.partition("e")
    scale = 10.0 ** int(exponent or 0)
    return float(mantissa) * scale, 0.5 * 10.0 ** -len(mantissa.partition(".")[2]) * scale, token.endswith("%")


def _printed(nb):
    """The numbers of every stored text output of a notebook dict, as ``_value`` tuples."""
    numbers = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            numbers += [_value(token) for text in texts for token in NUMBER.findall(_text(text))]
    return numbers


def unbacked_numbers(path):
    """One line per measurement the prose of the notebook at ``path`` quotes and no stored output shows."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    printed = _printed(nb)
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        source = _text(cell["source"])
        for target in QUOTED_LINK.findall(source):
            if "://" not in target and not (path.parent / target.split("#")[0]).exists():
                problems.append(f"{path.name} cell {i}: the quoted source {target} does not exist")
        for sentence in SENTENCES.split(NOT_PROSE.sub(" ", source)):
            if QUOTED in sentence.lower():
                continue
            for token in MEASUREMENT.findall(sentence):
                p, half, percent = _value(token)
                if not any(q == percent and abs(o - p) <= half * (1 + 1e-9) for o, _, q in printed):
                    said = " ".join(sentence.split())
                    said = said if len(said) <= 90 else said[:87] + "..."
                    problems.append(
                        f"{path.name} cell {i}: {token} is in no stored output ({said!r}); print it, write a "
                        f"setting as $math$ or `code`, or say where it is {QUOTED}"
                    )
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
        problems = [line for p in paths for line in stale_cells(p) + unbacked_numbers(p)]
        done = f"{len(paths)} lessons: every stored output is fresh and every quoted measurement is in one"
        print("\n".join(problems) if problems else done)
        return 1 if problems else 0
    for path in paths:
        seconds = execute(path)
        size = path.stat().st_size / 1e6
        print(f"{path.name}: {seconds:.0f} s, {size:.2f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
