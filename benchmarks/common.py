"""Helpers shared by the benchmark scripts: the machine description and the section rewrite.

The scripts are run as ``python benchmarks/<name>.py`` and import this module by putting their
own directory on ``sys.path`` first.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other jobs on the machine skew every number)."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # not available on this platform
        return "n/a"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    cpu = platform.processor() or platform.machine() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 0


def machine_info(extra: dict[str, str] | None = None) -> dict[str, str]:
    """CPU, cores, Python, Feast, OS and date, in that order; ``extra`` goes in after Feast."""
    import feast

    info = {
        "CPU": cpu_model(),
        "Cores": f"{os.cpu_count()} logical ({usable_cores()} usable by this process)",
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "Feast": feast.__version__,
    }
    info.update(extra or {})
    info["OS"] = f"{platform.system()} {platform.release()}"
    info["Date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def replace_section(path: Path, heading: str, body: str) -> None:
    """Rewrite only the ``heading`` section of a Markdown file, appending it if absent.

    ``heading`` is the whole heading line (``"## Check throughput"``); the section runs to the
    next ``#`` or ``##`` heading outside a code fence, or to the end of the file. Everything
    outside it is kept byte for byte; the file is created (``# Performance``) if missing.
    """
    text = path.read_text() if path.exists() else "# Performance\n"
    lines = text.splitlines(keepends=True)
    start = end = None
    in_fence = False
    for i, line in enumerate(lines):
        if re.match(r"\s*(```|~~~)", line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if start is None and line.rstrip() == heading:
            start = i
        elif start is not None and re.match(r"#{1,2} ", line):
            end = i
            break
    body = body.rstrip("\n") + "\n"
    if start is None:
        new = text.rstrip("\n") + "\n\n" + body
    else:
        rest = "".join(lines[len(lines) if end is None else end :])
        new = "".join(lines[:start]) + body + ("\n" + rest if rest else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
