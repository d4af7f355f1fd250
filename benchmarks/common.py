"""Helpers shared by the benchmark scripts: the machine, the load, workers, statistics, the doc.

The scripts are run as ``python benchmarks/<name>.py`` and import this module by putting their
own directory on ``sys.path`` first. Every script measures its variants in separate processes
(workers started with :func:`start_worker` or :func:`run_worker`), so a variant's background
threads (the sample writer) never run inside another variant's timing.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# -- the machine and its load -------------------------------------------------------------------


def load_average() -> str:
    """The 1, 5 and 15 minute load averages and running/total tasks (/proc/loadavg)."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return f"{fields[0]}, {fields[1]}, {fields[2]} (running/total tasks {fields[3]})"
    except OSError:
        try:
            return ", ".join(f"{x:.2f}" for x in os.getloadavg())
        except OSError:
            return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def machine_info(extra: dict[str, str] | None = None) -> dict[str, str]:
    """CPU, cores (``nproc``), RAM, Python, Feast, pyarrow, OS and date."""
    import feast
    import pyarrow

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    info = {
        "CPU": cpu_model(),
        "Cores (nproc)": f"{usable} ({os.cpu_count()} logical)",
        "RAM": memory_total(),
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "Feast": feast.__version__,
        "pyarrow": pyarrow.__version__,
    }
    info.update(extra or {})
    info["OS"] = f"{platform.system()} {platform.release()}"
    info["Date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def machine_lines(info: dict[str, str], load_before: str, load_after: str) -> list[str]:
    lines = [f"- {k}: {v}" for k, v in info.items()]
    lines.append(
        f"- Load (/proc/loadavg: 1, 5, 15 min) before the run: {load_before}; after it: "
        f"{load_after}. The machine is shared: other jobs may have run during the benchmark."
    )
    return lines


# -- process memory and CPU ---------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM): reset at exec, unlike ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def thread_cpu_seconds(native_id: int) -> float | None:
    """CPU time a thread of this process has run (ns precision from schedstat, else ticks)."""
    base = Path(f"/proc/self/task/{native_id}")
    try:
        return int((base / "schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- workers ------------------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


class Worker:
    """A long-lived worker process speaking JSON lines on stdin/stdout (stderr passes through).

    The parent writes one command, then blocks reading the answer: while a worker runs, the
    parent and every other worker sleep in a pipe read.
    """

    def __init__(self, command: list[str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(),
            cwd=ROOT,
        )

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.name} died (exit {self.proc.wait()})")
            if line.startswith("{"):
                answer = json.loads(line)
                if "error" in answer:
                    raise RuntimeError(f"worker {self.name}: {answer['error']}")
                return answer

    def close(self) -> None:
        try:
            self.ask({"cmd": "quit"})
        except Exception:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve_commands(handler: Any) -> None:
    """The worker side of :class:`Worker`: answer JSON commands until ``quit``."""
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints of Feast or the code go to stderr, not the protocol
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("cmd") == "quit":
            out.write(json.dumps({"ok": True}) + "\n")
            out.flush()
            return
        try:
            answer = handler(message)
        except Exception as exc:  # report, then keep serving: the parent decides
            import traceback

            traceback.print_exc()
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def run_worker(command: list[str], timeout: float) -> tuple[dict[str, Any] | None, str, float]:
    """Run a one-shot worker; (its last JSON line, error text, wall seconds of the process)."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=worker_env(),
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s", time.perf_counter() - started
    wall = time.perf_counter() - started
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line), "", wall
    return None, (proc.stderr or proc.stdout)[-3000:], wall


# -- statistics ---------------------------------------------------------------------------------


def block_bootstrap_ratio(
    variant: list[np.ndarray],
    base: list[np.ndarray],
    q: float = 50,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """95% interval of percentile(variant) / percentile(base), resampling whole rounds.

    ``variant[r]`` and ``base[r]`` are the latencies of round ``r`` (the same requests, timed in
    neighbouring blocks); resampling rounds keeps the pairing and the drift within a round.
    """
    rounds = len(base)
    rng = np.random.default_rng(seed)
    ratios = np.empty(reps)
    for i in range(reps):
        pick = rng.integers(0, rounds, rounds)
        v = np.concatenate([variant[r] for r in pick])
        b = np.concatenate([base[r] for r in pick])
        ratios[i] = np.percentile(v, q) / np.percentile(b, q)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def verdict(value: float | None, goal: float, *, at_most: bool = True) -> str:
    if value is None or not np.isfinite(value):
        return "not measured"
    ok = value <= goal if at_most else value >= goal
    return "**met**" if ok else "**missed**"


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


# -- docs/performance.md ------------------------------------------------------------------------


def replace_section(path: Path, heading: str, body: str) -> None:
    """Rewrite only the ``heading`` section of a Markdown file, appending it if absent.

    ``heading`` is the whole heading line (``"## Check"``); the section runs to the next ``#`` or
    ``##`` heading outside a code fence, or to the end of the file. Everything outside it is kept
    byte for byte; the file is created (``# Performance``) if missing.
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


def command_line() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])


def measured_run(
    measure: Callable[[Path], dict[str, Any]], work: Path | None, prefix: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``measure(work_dir)`` and the run's meta (command, wall seconds, load before and after);
    ``work`` keeps the data, else a temporary directory is removed afterwards."""
    started = time.perf_counter()
    load_before = load_average()
    temp = None if work is not None else tempfile.mkdtemp(prefix=prefix)
    directory = Path(temp) if temp is not None else work
    assert directory is not None
    directory.mkdir(parents=True, exist_ok=True)
    try:
        results = measure(directory)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    meta = {
        "command": command_line(),
        "wall": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": load_average(),
    }
    return results, meta
