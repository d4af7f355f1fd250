"""Load on Feast's feature server (``feast serve``): plain provider vs ParityProvider.

Builds ONE demo repo (1000 users, 300 videos, 3 days; ``feast apply`` and materialization once)
in a temporary directory, then for each server configuration

* ``local``          Feast's plain local provider, no ``parity:`` block (the baseline)
* ``parity@0.01``    ``feast_parity.ParityProvider``, sample_rate 0.01
* ``parity@1``       ``feast_parity.ParityProvider``, sample_rate 1.0

rewrites ``feature_store.yaml`` (``demo.write_config``; every parity run gets its own SQLite
sample store), starts ``feast -c REPO serve --host 127.0.0.1 --port P --workers 1`` as a
subprocess bound to loopback only, waits for ``GET /health``, sends untimed warm-up requests,
then drives ``POST /get-online-features`` (10 entity rows through the ``ranking_model_v1``
feature service) from ``--concurrency`` client threads with keep-alive connections until
``--requests`` requests are answered or ``--timeout`` seconds pass. Every run sends the same
requests in the same order. The server is then stopped with SIGTERM (SIGKILL after a grace
period) and its sample store is read: sample-log rows written against the entity rows the
plugin's deterministic sampler selects for the requests that were answered.

Configurations run in the order A B C C B A (``--repeats 2``) so that slow drift of the machine
is averaged out of the comparison.

    .venv/bin/python benchmarks/serve_load.py [--requests N] [--concurrency C] [--out FILE]

With ``--out FILE`` only the ``## Load (feast serve)`` section of FILE is rewritten.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from feast_parity import demo
from feast_parity.parity.sampling import Sampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine_info, replace_section  # noqa: E402

SECTION = "## Load (feast serve)"
USERS, VIDEOS, DAYS = 1000, 300, 3
SERVICE = "ranking_model_v1"
SEED = 42  # the parity seed written by demo.write_config
CONFIGS = (
    ("local", "local", None),
    ("parity@0.01", "feast_parity.ParityProvider", 0.01),
    ("parity@1", "feast_parity.ParityProvider", 1.0),
)
CONNECTION_ERRORS = (http.client.HTTPException, ConnectionError, OSError)


@dataclass
class Run:
    name: str
    sample_rate: float | None
    index: int  # 1-based position in the run order
    store_db: Path | None
    latencies_ns: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    answered: int = 0  # HTTP 200, warm-up included
    errors: int = 0
    retries: int = 0
    timed_out: bool = False
    expected_rows: int = 0  # entity rows the sampler selects among answered requests
    log_rows: int = 0
    logged_entity_rows: int = 0  # distinct (request_id, entity_key) in the log
    log_writers: int = 0
    worker_boots: int = 0
    worker_signal_deaths: int = 0  # gunicorn: "Worker (pid:N) was sent SIGTERM!"
    worker_clean_exits: int = 0  # gunicorn: "Worker exiting (pid: N)" (sys.exit, atexit runs)
    stop: str = ""
    startup_s: float = 0.0
    sample_error: str = ""
    failure: str = ""


# -- machine ------------------------------------------------------------------------------------


def server_versions() -> str:
    try:
        import gunicorn
        import uvicorn

        return f"gunicorn {gunicorn.__version__}, uvicorn {uvicorn.__version__}"
    except ImportError:
        return "uvicorn"


# -- repo and server ----------------------------------------------------------------------------


def build_repo(root: Path) -> Path:
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    repo = root / "repo"
    demo.make_demo_repo(repo, users=USERS, videos=VIDEOS, days=DAYS, end=end, provider="local")
    write_server_config(repo, "local", None, None)
    demo.feast_apply(repo)
    demo.materialize(repo, end=end, days=DAYS + 1)
    return repo


def write_server_config(
    repo: Path, provider: str, sample_rate: float | None, store_db: Path | None
) -> None:
    path = demo.write_config(
        repo,
        provider=provider,
        sample_rate=sample_rate or 0.0,
        store_url=f"sqlite:///{store_db}" if store_db else "sqlite:///data/parity.db",
    )
    if sample_rate is None:  # the baseline carries no plugin configuration at all
        config = yaml.safe_load(path.read_text())
        config.pop("parity", None)
        path.write_text(yaml.safe_dump(config, sort_keys=False))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def feast_command() -> list[str]:
    feast_cli = Path(sys.executable).with_name("feast")
    return [str(feast_cli)] if feast_cli.exists() else [sys.executable, "-m", "feast.cli.cli"]


def server_command(repo: Path, port: int, args: argparse.Namespace) -> list[str]:
    command = [*feast_command(), "-c", str(repo), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--no-access-log"]
    if args.max_requests is not None:
        command += ["--max-requests", str(args.max_requests)]
    return command


def start_server(
    repo: Path, port: int, log: Path, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            server_command(repo, port, args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the master and its worker
        )
    deadline = time.monotonic() + args.startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"feast serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    stop_server(process, 5)
    raise RuntimeError(f"feast serve did not answer within {args.startup_timeout} s")


def stop_server(process: subprocess.Popen[bytes], grace: float) -> str:
    """SIGTERM the server (gunicorn stops its worker gracefully); SIGKILL its group if needed."""
    if process.poll() is not None:
        return f"had exited ({process.returncode})"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=grace)
        return f"SIGTERM, exit {code} after {time.monotonic() - started:.1f} s"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group this script created, by its id
        process.wait(timeout=30)
        return f"SIGKILL after {grace:.0f} s without exit"


# -- clients ------------------------------------------------------------------------------------


def make_requests(n: int, entities: int, seed: int) -> list[dict[str, list[int]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        rows = demo.request_rows(rng, entities, USERS, VIDEOS)
        out.append(
            {"user_id": [r["user_id"] for r in rows], "video_id": [r["video_id"] for r in rows]}
        )
    return out


def check_response(body: bytes, entities: int) -> None:
    """One answer must carry every feature of the service for every entity row."""
    data = json.loads(body)
    names = data["metadata"]["feature_names"]
    for expected in ("affinity_score", "click_through_rate", "popularity"):
        if expected not in names:
            raise RuntimeError(f"response lacks {expected}: {names}")
    for result in data["results"]:
        if len(result["values"]) != entities:
            raise RuntimeError(f"response has {len(result['values'])} rows, not {entities}")
    present = sum(s == "PRESENT" for r in data["results"] for s in r["statuses"])
    if present == 0:
        raise RuntimeError("no feature value PRESENT: is the online store materialized?")


def drive(
    port: int,
    bodies: list[bytes],
    concurrency: int,
    timeout: float,
    latencies: list[int] | None,
) -> tuple[list[int], int, int, bool, float]:
    """Send every body once from ``concurrency`` threads; stop at ``timeout`` seconds.

    Returns the indices answered with 200, the error count, the retry count, whether the time
    bound cut the loop short, and the wall time. Latencies (ns, first attempt to last byte,
    reconnect and retry included) are appended to ``latencies`` when given.
    """
    lock = threading.Lock()
    next_index = [0]
    answered: list[int] = []
    counts = {"errors": 0, "retries": 0}
    deadline = time.monotonic() + timeout
    headers = {"Content-Type": "application/json"}

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[int] = []
        took: list[int] = []
        errors = retries = 0
        while time.monotonic() < deadline:
            with lock:
                i = next_index[0]
                if i >= len(bodies):
                    break
                next_index[0] = i + 1
            started = time.perf_counter_ns()
            status = 0
            for attempt in range(2):  # one retry: the server may close an idle keep-alive
                try:
                    conn.request("POST", "/get-online-features", bodies[i], headers)
                    answer = conn.getresponse()
                    answer.read()
                    status = answer.status
                    break
                except CONNECTION_ERRORS:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    if attempt == 0:
                        retries += 1
            elapsed = time.perf_counter_ns() - started
            if status == 200:
                mine.append(i)
                took.append(elapsed)
            else:
                errors += 1
        conn.close()
        with lock:
            answered.extend(mine)
            if latencies is not None:
                latencies.extend(took)
            counts["errors"] += errors
            counts["retries"] += retries

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 60)
    wall = time.perf_counter() - started
    timed_out = next_index[0] < len(bodies) or any(t.is_alive() for t in threads)
    return answered, counts["errors"], counts["retries"], timed_out, wall


# -- sample log ---------------------------------------------------------------------------------


def expected_sampled_rows(rate: float, requests: list[dict[str, list[int]]]) -> int:
    sampler = Sampler(rate, SEED)
    return sum(sum(sampler.decide_rows(r)) for r in requests)


def read_log(run: Run) -> None:
    if run.store_db is None:
        return
    if not run.store_db.exists():
        run.sample_error = "no sample store file"
        return
    with sqlite3.connect(run.store_db) as conn:
        try:
            run.log_rows, run.logged_entity_rows, run.log_writers = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT request_id || '|' || entity_key),"
                " COUNT(DISTINCT writer) FROM parity_samples"
            ).fetchone()
        except sqlite3.Error as exc:
            run.sample_error = str(exc)


# -- one run ------------------------------------------------------------------------------------


def run_config(
    run: Run,
    repo: Path,
    root: Path,
    provider: str,
    warm: list[dict[str, list[int]]],
    timed: list[dict[str, list[int]]],
    args: argparse.Namespace,
) -> None:
    write_server_config(repo, provider, run.sample_rate, run.store_db)
    port = free_port()
    log = root / f"server-{run.index}-{run.name}.log"
    started = time.monotonic()
    process = start_server(repo, port, log, args)
    run.startup_s = time.monotonic() - started
    try:
        first = json.dumps({"feature_service": SERVICE, "entities": warm[0]}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/get-online-features", first, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        body = answer.read()
        conn.close()
        if answer.status != 200:
            raise RuntimeError(f"first request answered {answer.status}: {body[:500]!r}")
        check_response(body, args.entities)
        warm_bodies = [
            json.dumps({"feature_service": SERVICE, "entities": e}).encode() for e in warm[1:]
        ]
        warm_ok, warm_err, warm_retry, _, _ = drive(
            port, warm_bodies, args.concurrency, args.timeout, None
        )
        timed_bodies = [
            json.dumps({"feature_service": SERVICE, "entities": e}).encode() for e in timed
        ]
        ok, err, retry, cut, wall = drive(
            port, timed_bodies, args.concurrency, args.timeout, run.latencies_ns
        )
        run.wall_s, run.timed_out = wall, cut
        run.answered = 1 + len(warm_ok) + len(ok)
        run.errors, run.retries = warm_err + err, warm_retry + retry
        if run.sample_rate:
            answered = [warm[0]] + [warm[1 + i] for i in warm_ok] + [timed[i] for i in ok]
            run.expected_rows = expected_sampled_rows(run.sample_rate, answered)
    finally:
        run.stop = stop_server(process, args.stop_grace)
    text = log.read_text(errors="replace")
    run.worker_boots = text.count("Booting worker")
    run.worker_signal_deaths = len(re.findall(r"Worker \(pid:\d+\) was sent SIG", text))
    run.worker_clean_exits = text.count("Worker exiting (pid:")
    read_log(run)


# -- report -------------------------------------------------------------------------------------


def pct(values: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) / 1e6 if values else 0.0


@dataclass
class Summary:
    name: str
    requests: int
    throughput: float
    p50: float
    p99: float
    expected: int
    written: int
    log_rows: int


def summarize(runs: list[Run]) -> list[Summary]:
    out = []
    for name, _, rate in CONFIGS:
        mine = [r for r in runs if r.name == name]
        lat = [x for r in mine for x in r.latencies_ns]
        wall = sum(r.wall_s for r in mine)
        out.append(
            Summary(
                name=name,
                requests=len(lat),
                throughput=len(lat) / wall if wall else 0.0,
                p50=pct(lat, 50),
                p99=pct(lat, 99),
                expected=sum(r.expected_rows for r in mine) if rate else 0,
                written=sum(r.logged_entity_rows for r in mine),
                log_rows=sum(r.log_rows for r in mine),
            )
        )
    return out


def summary_table(summaries: list[Summary]) -> str:
    base = summaries[0]
    head = (
        "| server | requests | req/s | req/s / local | p50 (ms) | p50 / local | p99 (ms) "
        "| p99 / local | sampled rows expected | written | written / expected |\n"
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    lines = []
    for s in summaries:
        parity = s.name != "local"
        ratio = f"{s.written / s.expected:.3f}" if parity and s.expected else "—"
        lines.append(
            f"| `{s.name}` | {s.requests:,} | {s.throughput:,.0f} "
            f"| {s.throughput / base.throughput:.3f}x | {s.p50:.1f} | {s.p50 / base.p50:.3f}x "
            f"| {s.p99:.1f} | {s.p99 / base.p99:.3f}x "
            f"| {f'{s.expected:,}' if parity else '—'} | {f'{s.written:,}' if parity else '—'} "
            f"| {ratio} |"
        )
    return head + "\n".join(lines) + "\n"


def runs_table(runs: list[Run]) -> str:
    head = (
        "| # | server | answered | errors | retries | req/s | p50 (ms) | p99 (ms) "
        "| expected | written | log rows | writers | worker boots "
        "| worker exits: clean / by signal | stop |\n"
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n"
    )
    lines = []
    for r in runs:
        parity = r.sample_rate is not None
        rate = len(r.latencies_ns) / r.wall_s if r.wall_s else 0.0
        flag = " (time bound hit)" if r.timed_out else ""
        if r.failure:
            flag = f" (run failed: {r.failure})"
        written = f"{r.logged_entity_rows:,}" if parity else "—"
        if r.sample_error:
            written = f"error: {r.sample_error}"
        lines.append(
            f"| {r.index} | `{r.name}` | {r.answered:,}{flag} | {r.errors} | {r.retries} "
            f"| {rate:,.0f} | {pct(r.latencies_ns, 50):.1f} | {pct(r.latencies_ns, 99):.1f} "
            f"| {f'{r.expected_rows:,}' if parity else '—'} | {written} "
            f"| {f'{r.log_rows:,}' if parity else '—'} | {r.log_writers if parity else '—'} "
            f"| {r.worker_boots} | {r.worker_clean_exits} / {r.worker_signal_deaths} | {r.stop} |"
        )
    return head + "\n".join(lines) + "\n"


def section(
    runs: list[Run],
    summaries: list[Summary],
    machine: dict[str, str],
    load: tuple[str, str],
    command: str,
    serve: str,
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    machine_md = "\n".join(f"- {k}: {v}" for k, v in machine.items())
    order = " ".join(r.name for r in runs)
    recycle = (
        "Feast's default `--max-requests 1000` (jitter 50) was left in place, so gunicorn "
        "recycles the worker about every 1,000 requests within a run (*worker boots*)"
        if args.max_requests is None
        else f"`--max-requests {args.max_requests}` was passed"
    )
    return f"""{SECTION}

Throughput and latency of Feast's own feature server, `feast serve`, with and without the plugin,
under concurrent clients on the same machine. One demo repo ({USERS} users, {VIDEOS} videos,
{DAYS} days; `feast apply` and materialization once) is served three ways, changing only
`feature_store.yaml`: the plain `local` provider with no `parity:` block, and
`feast_parity.ParityProvider` at `sample_rate` 0.01 and 1.0, each run with a fresh SQLite sample
store. The server is `{serve}`: one gunicorn worker (uvicorn) bound to 127.0.0.1 only, access log
off; {recycle}. {args.concurrency} client threads in the benchmark process, each with its own
keep-alive HTTP/1.1 connection, send `POST /get-online-features` with 10 entity rows (one user, 10
videos) through the `{SERVICE}` feature service until {args.requests:,} requests are answered
(bounded by {args.timeout:.0f} s), after {args.warmup} untimed warm-up requests. Every run sends
the same requests in the same order. Runs, in this order: {order}.

{summary_table(summaries)}
Per run:

{runs_table(runs)}
How to read it: *req/s* is answered timed requests over the wall time of the timed phase, *p50*
and *p99* are client-side latencies (from sending the request to the last byte of the answer, a
reconnect after a closed keep-alive connection included), pooled over the runs of a server. A
ratio divides by the plain `local` server in the same benchmark, so 1.000x means no measurable
difference; absolute numbers depend on the machine and are not comparable between runs. The
clients share the machine's {os.cpu_count()} cores with the server (client and server compete
for CPU alike in every configuration), so throughput is that of this closed loop, not the
server's ceiling. *Sampled rows expected* is what the plugin's deterministic sampler
(`xxhash` of the entity key, seed {SEED}) selects among the entity rows of all answered requests,
warm-up included, computed in the benchmark process; *written* is the distinct (request, entity
row) pairs found in `parity_samples` after the server has been stopped with SIGTERM and has
exited, so *written / expected* below 1 means samples dropped (queue full, store error) or lost
at shutdown, and above 1 a request retried after the server had already served it. The server
process cannot be asked for the plugin's own counters from outside, so drops and losses are not
told apart here. Each sampled entity row is logged once per feature view it reads (*log rows*);
*writers* is the number of distinct server processes (`host:pid`) that wrote samples. *Worker
exits* are read from gunicorn's log: *clean* is a worker that returned through `sys.exit`
(gunicorn's "Worker exiting", e.g. recycled after `--max-requests`), which runs `atexit`
handlers, *by signal* one that the master reports as killed by a signal ("was sent SIGTERM!").

{shutdown_note(runs)}
Other jobs may run on this shared 2-core machine while the benchmark runs: load average (`uptime`)
before: {load[0]}; after: {load[1]}. Runs alternate (A B C C B A) so slow drift hits every
configuration alike; a single run's p99 rests on its slowest 1% of requests and is noisy.

Produced by `{command}` (wall time {elapsed:.0f} s) on:

{machine_md}
"""


def close_note() -> str:
    from feast_parity.plugin.provider import ParityProvider

    if "close" in ParityProvider.__dict__:
        return ""
    return " `ParityProvider` (as measured) does not override `close()`."


def code_fingerprint() -> str:
    """Hash of the plugin's sources, to notice edits made while the benchmark runs."""
    import hashlib

    import feast_parity

    digest = hashlib.sha256()
    for path in sorted(Path(feast_parity.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def shutdown_note(runs: list[Run]) -> str:
    """What the sample counts say about the flush at shutdown (empty when nothing is missing)."""
    short = [r for r in runs if r.sample_rate and r.logged_entity_rows < r.expected_rows]
    if not short:
        return "Every sampled row of every parity run was found in the sample log.\n"
    lost = ", ".join(
        f"run {r.index} `{r.name}`: {r.expected_rows - r.logged_entity_rows:,} of "
        f"{r.expected_rows:,}"
        for r in short
    )
    signal_deaths = all(r.worker_signal_deaths for r in short)
    why = (
        " In every one of these runs gunicorn reports the last worker as killed by SIGTERM, not"
        " exiting: Feast's server runs `uvicorn_worker.UvicornWorker`, which leaves SIGTERM at"
        " its default action, and uvicorn, after its graceful shutdown, restores that handler and"
        " raises the captured SIGTERM again (`uvicorn.Server.capture_signals`), so the worker"
        " process dies by the signal and Python's `atexit` handlers never run: a flush has to"
        " happen earlier, in a SIGTERM handler or in the provider's `close()`, which Feast's"
        " app awaits in its lifespan shutdown (`await store.close()`)."
        f"{close_note()} What is lost is what was still queued or batched when the worker"
        " stopped."
        if signal_deaths
        else ""
    )
    head = "**Finding: samples lost at shutdown.** Sampled rows missing from the log"
    return f"{head}: {lost}.{why}\n"


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per run")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests per run")
    parser.add_argument("--repeats", type=int, default=2, help="1: A B C; 2: A B C C B A; ...")
    parser.add_argument("--entities", type=int, default=10, help="entity rows per request")
    parser.add_argument("--timeout", type=float, default=600.0, help="max seconds per phase")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--stop-grace", type=float, default=60.0, help="SIGTERM to SIGKILL, s")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=None,
        help="passed to feast serve (gunicorn worker recycling); default: Feast's (1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the request stream")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--out", type=Path, help="rewrite this section of a Markdown file")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 1 or args.repeats < 1:
        parser.error("--requests, --concurrency, --warmup and --repeats must be positive")

    command = ".venv/bin/python benchmarks/serve_load.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    machine = machine_info({"Server": server_versions()})
    code_before = code_fingerprint()
    load_before = load_average()
    for key, value in machine.items():
        print(f"{key}: {value}")
    print(f"load average before: {load_before}", flush=True)

    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="feast-parity-load-"))
    try:
        print(f"building the demo repo in {root} (apply, materialize)", flush=True)
        repo = build_repo(root)
        requests = make_requests(args.warmup + args.requests, args.entities, args.seed)
        warm, timed = requests[: args.warmup], requests[args.warmup :]
        order = []
        for k in range(args.repeats):
            order.extend(CONFIGS if k % 2 == 0 else CONFIGS[::-1])
        runs: list[Run] = []
        for index, (name, provider, rate) in enumerate(order, start=1):
            db = root / f"samples-{index}-{name}.db" if rate is not None else None
            run = Run(name=name, sample_rate=rate, index=index, store_db=db)
            print(f"run {index}/{len(order)}: {name}", flush=True)
            try:
                run_config(run, repo, root, provider, warm, timed, args)
            except RuntimeError as exc:  # a server that does not start: recorded, not fatal
                run.failure = str(exc).splitlines()[0][:200]
                print(f"  FAILED: {exc}", flush=True)
            runs.append(run)
            rps = len(run.latencies_ns) / run.wall_s if run.wall_s else 0.0
            print(
                f"  {len(run.latencies_ns)} timed in {run.wall_s:.1f} s = {rps:.0f} req/s, "
                f"p50 {pct(run.latencies_ns, 50):.1f} ms, p99 {pct(run.latencies_ns, 99):.1f} ms,"
                f" errors {run.errors}, retries {run.retries}, worker boots {run.worker_boots}; "
                f"stop: {run.stop}",
                flush=True,
            )
            if rate is not None:
                print(
                    f"  samples: expected {run.expected_rows} entity rows, written "
                    f"{run.logged_entity_rows} ({run.log_rows} log rows, {run.log_writers} "
                    f"writer processes) {run.sample_error}",
                    flush=True,
                )
        serve = shlex.join(server_command(Path("REPO"), 0, args)[1:]).replace(
            "--port 0", "--port P"
        )
        serve = "feast " + serve
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    load_after = load_average()
    code_after = code_fingerprint()
    machine["feast_parity sources (sha256 prefix)"] = (
        code_before
        if code_before == code_after
        else f"{code_before} at start, {code_after} at end: EDITED DURING THE RUN"
    )
    print(f"feast_parity sources: {machine['feast_parity sources (sha256 prefix)']}")
    summaries = summarize(runs)
    print()
    print(summary_table(summaries))
    print(runs_table(runs))
    print(f"load average after: {load_after}")
    print(f"wall time {elapsed:.0f} s")
    if args.out:
        body = section(
            runs, summaries, machine, (load_before, load_after), command, serve, args, elapsed
        )
        replace_section(args.out, SECTION, body)
        print(f"wrote the {SECTION[3:]!r} section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
