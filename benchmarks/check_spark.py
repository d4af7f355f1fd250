"""`feast-parity check --engine spark` (Spark local[2]) beside the local engine, at N log rows.

Two repos over the same offline Parquet files and the same Parquet sample log: the benchmark
repo of ``check_log.py`` (file offline store, FileSources; the local engine) and a Spark variant
beside it (``feast_repo/features_spark.py``: SparkSources over the same files through symlinks,
``offline_store: type: spark`` with ``spark.master: local[2]``), both ``feast apply``-ed. Per N
in ``--rows`` one sample log is written, then the engines run alternately, each in a fresh
process (``run_check(repo, since, until, engine=..., store_results=False)``), so neither's
background work (Spark's JVM, its Python workers) lands in the other's timing.

In the Spark worker the session is started first, through the engine's own ``spark_session``,
and timed apart: the check then reuses it, so *check s* is the same work for both engines and
*start s* is what a one-shot ``feast-parity check --engine spark`` adds. With ``--out FILE``
only the ``## The check on Spark (local[2])`` section of FILE is rewritten.

    .venv/bin/python benchmarks/check_spark.py [--rows 1000000 10000000] [--out FILE]
    .venv/bin/python benchmarks/check_spark.py --quick          # smoke run, 30,000 rows
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_log  # noqa: E402
from common import (  # noqa: E402
    fmt,
    machine_info,
    machine_lines,
    measured_run,
    peak_rss_mb,
    replace_section,
    run_worker,
)

SECTION = "## The check on Spark (local[2])"
HERE = Path(__file__).resolve().parent
SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "4g",
}
CORES = 2  # local[2]
BATCH_VIEWS = ("user_engagement", "video_stats")
RUNS = ("local", "spark")
COMPARED_FIELDS = ("rows", "compared", "mismatches", "stale_rows", "psi", "ks_statistic")
DAY_ROWS = 5_000 * 10 * 0.01 * 86_400  # requests/s x rows per request x sample rate x s/day
PAPER_CORES = (2, 8, 32)


# -- the repos ----------------------------------------------------------------------------------


def build_spark_repo(repo: check_log.Repo, path: Path) -> Path:
    """The Spark variant of ``repo``: same data files (symlinked) and sample log, applied.

    The definitions resolve their paths from their own directory, so the offline files are
    linked in rather than copied: both engines read the very same bytes.
    """
    from feast_parity import demo

    if path.exists():
        shutil.rmtree(path)
    data = path / "data"
    data.mkdir(parents=True)
    shutil.copy(demo.DEMO_SOURCE / "features_spark.py", path / "features.py")
    for name in ("user_engagement.parquet", "video_stats.parquet"):
        (data / name).symlink_to((repo.path / "data" / name).resolve())
    demo.write_config(
        path,
        sample_rate=1.0,
        store_url=f"sqlite:///{(data / 'parity.db').resolve()}",
        offline_store={"type": "spark", "spark_conf": dict(SPARK_CONF)},
        parity_extra={"sample_log": str(repo.samples.resolve())},
    )
    shutil.copy(repo.path / "bench_repo.json", path / "bench_repo.json")
    demo.feast_apply(path)
    return path


# -- the worker (a fresh process per run) -------------------------------------------------------


def _jvm_peak_mb(session: Any) -> float | None:
    """Peak RSS of the Spark JVM (driver and local executors), the Python driver's child."""
    try:
        pid = session.sparkContext._gateway.proc.pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except Exception:
        pass
    return None


def _time_passes() -> dict[str, float]:
    """Time the engine's comparison passes (``mapInArrow`` + collect) from outside it.

    ``spark_seconds`` minus their time is what runs before them (the log read into Spark's
    cache, its counts, the scans Feast makes of the entity dataframe); the point-in-time join
    itself runs inside the first pass, whose input it is.
    """
    from feast_parity.plugin.spark_check import SparkEngine

    totals = {"pass_seconds": 0.0, "passes": 0}
    original = SparkEngine._pass

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            totals["pass_seconds"] += time.perf_counter() - started
            totals["passes"] += 1

    SparkEngine._pass = timed  # type: ignore[method-assign]
    return totals


def worker(engine: str, repo_path: Path) -> None:
    from feast_parity.plugin.check import run_check

    repo = check_log.open_repo(repo_path)
    start_seconds = None
    session = None
    if engine == "spark":
        os.environ["PYSPARK_PYTHON"] = sys.executable
        config = yaml.safe_load((repo.path / "feature_store.yaml").read_text())
        started = time.perf_counter()
        from feast_parity.plugin.spark_check import spark_session

        session = spark_session(
            dict(config.get("parity", {}).get("spark_conf") or {}),
            dict(config["offline_store"].get("spark_conf") or {}),
        )
        start_seconds = time.perf_counter() - started
    passes = _time_passes() if engine == "spark" else {}
    started = time.perf_counter()
    report = run_check(repo.path, repo.since, repo.until, engine=engine, store_results=False)
    seconds = time.perf_counter() - started
    features = {f["feature"]: {k: f.get(k) for k in COMPARED_FIELDS} for f in report["features"]}
    print(
        json.dumps(
            {
                "engine": engine,
                "seconds": seconds,
                "start_seconds": start_seconds,
                "samples": report["samples"],
                "timings": report["timings"],
                "features": features,
                "notes": report.get("notes"),
                "status": report["status"],
                "peak_rss_mb": peak_rss_mb(),
                "jvm_peak_rss_mb": _jvm_peak_mb(session) if session is not None else None,
                "passes": passes,
            },
            default=str,
        )
    )


# -- the run ------------------------------------------------------------------------------------


def run_variant(engine: str, repo: Path, timeout: float) -> dict[str, Any]:
    print(f"  {engine} ...", file=sys.stderr, flush=True)
    me = str(HERE / "check_spark.py")
    result, error, wall = run_worker(
        [sys.executable, me, "--worker", engine, "--repo", str(repo)], timeout
    )
    if result is None:
        last = error.strip().splitlines()[-1] if error.strip() else "failed"
        print(f"  {engine} FAILED: {error[-2000:]}", file=sys.stderr, flush=True)
        return {"engine": engine, "error": last}
    result["process_seconds"] = wall
    start = result.get("start_seconds")
    print(
        f"  {engine}: check {result['seconds']:.1f} s"
        + (f", start {start:.1f} s" if start is not None else "")
        + f", process {wall:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB",
        file=sys.stderr,
        flush=True,
    )
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = sorted((r for r in runs if "seconds" in r), key=lambda r: r["seconds"])
    if not good:
        return runs[0] if runs else {"error": "not run"}
    chosen = dict(good[(len(good) - 1) // 2])
    chosen["all_seconds"] = [r["seconds"] for r in runs if "seconds" in r]
    chosen["all_start"] = [r["start_seconds"] for r in runs if r.get("start_seconds") is not None]
    return chosen


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    steps: dict[str, float] = {}
    started = time.perf_counter()
    print(f"building the benchmark repos in {work}", file=sys.stderr, flush=True)
    repo = check_log.build_repo(work / "repo", users=args.users, videos=args.videos)
    steps["file repo build + apply"] = time.perf_counter() - started
    started = time.perf_counter()
    spark_repo = build_spark_repo(repo, work / "repo_spark")
    steps["Spark repo apply"] = time.perf_counter() - started
    results: dict[str, Any] = {"rows": [], "steps": steps}
    for n in args.rows:
        print(f"N = {n:,}: writing the log", file=sys.stderr, flush=True)
        log = check_log.write_log(repo, n, work / f"values_{n}", batch_size=args.batch_size)
        shutil.rmtree(work / f"values_{n}", ignore_errors=True)
        steps[f"log {log.rows:,} rows"] = log.seconds
        print(
            f"  {log.rows:,} log rows in {log.files:,} files, {log.bytes / 1e6:.0f} MB "
            f"({log.seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        started = time.perf_counter()
        runs: dict[str, list[dict[str, Any]]] = {"local": [], "spark": []}
        repeat = args.repeat if n <= args.repeat_max_rows else args.repeat_large
        for i in range(repeat):  # alternately, the first engine swapped each round
            order = ("local", "spark") if i % 2 == 0 else ("spark", "local")
            for engine in order:
                path = repo.path if engine == "local" else spark_repo
                runs[engine].append(run_variant(engine, path, args.timeout))
        steps[f"runs {log.rows:,} rows"] = time.perf_counter() - started
        entry = {
            "n": log.rows,
            "log": log.__dict__,
            "local": median_run(runs["local"]),
            "spark": median_run(runs["spark"]),
        }
        results["rows"].append(entry)
        if args.json:  # after each N, so a later N's failure keeps the earlier ones
            args.json.write_text(json.dumps({"results": results}, indent=1, default=str))
    return results


# -- the section --------------------------------------------------------------------------------


def _get(run: dict[str, Any], key: str) -> float | None:
    value = run.get(key)
    return value if isinstance(value, (int, float)) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _x(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}x"


def _plus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def agreement(entry: dict[str, Any]) -> tuple[str, list[str]]:
    """Whether both engines found the same per-feature results on the batch views."""
    local = entry["local"].get("features") or {}
    spark = entry["spark"].get("features") or {}
    refs = sorted(r for r in local if r.split(":", 1)[0] in BATCH_VIEWS)
    diffs = []
    for ref in refs:
        a, b = local.get(ref) or {}, spark.get(ref)
        if b is None:
            diffs.append(f"`{ref}` missing on Spark")
            continue
        for key in COMPARED_FIELDS:
            if a.get(key) != b.get(key):
                diffs.append(f"`{ref}` {key}: local {a.get(key)} / Spark {b.get(key)}")
    if not refs or not spark:
        return "not compared (a run failed)", diffs
    if diffs:
        return f"**differ** on {len(diffs)} values", diffs
    return f"identical ({len(refs)} features x {', '.join(COMPARED_FIELDS)})", diffs


def render(results: dict[str, Any], args: argparse.Namespace, meta: dict[str, Any]) -> str:
    rows = results["rows"]
    lines = [
        SECTION,
        "",
        "`feast-parity check --engine spark` on one machine (`spark.master: local[2]`, "
        "`spark.driver.memory: 4g`) beside the local engine, on the same window of the same "
        "sample log, over the same offline Parquet files.",
        "",
        "**Design.** The benchmark repo of `## Check` (`check_log.py`: 100,000 users x 10,000 "
        "videos, 3 days of 6-hourly snapshots, a 12 h window, 1% of request rows served "
        f"changed), with {args.users:,} users and {args.videos:,} videos here, and a Spark "
        "variant beside it: `feast_repo/features_spark.py` (SparkSources over the same files, "
        "symlinked), `offline_store: type: spark`, the same `parity.sample_log` directory; both "
        "`feast apply`-ed. Per N one log is written (the plugin's `BatchBuilder` and "
        f"`ParquetSink`, {args.batch_size:,} log rows per flush), then the two engines run "
        "alternately (the first one swapped each round), each in a fresh process, "
        "`run_check(repo, since, until, engine=..., store_results=False)`; the median run is "
        f"shown ({args.repeat} runs per engine up to {args.repeat_max_rows:,} rows, "
        f"{args.repeat_large} above). In the Spark process the session is started first "
        "through the engine's own `spark_session` and timed apart (*start s*: the import of "
        "pyspark, the JVM and the session); the check then reuses it. *check s* is the "
        "`run_check` call (repo and registry load, planning, the Spark jobs, the report); "
        "*process s* is the whole worker process, Python imports included. *driver MB* is the "
        "Python driver's peak RSS (`VmHWM`), *JVM MB* the Spark JVM's (driver and the local "
        "executors); Spark's Python workers (the `mapInArrow` comparison) are not counted.",
        "",
        "**Not the same work.** The Spark engine compares the two batch views (`user_engagement`, "
        "`video_stats`: 2/3 of the log rows) and skips the on-demand `ranking_signals` with a "
        "note; the local engine also recomputes `ranking_signals` through Feast for its third "
        "of the rows. So the local wall time below is an upper bound on what it spends on the "
        "batch views alone.",
        "",
        "| log rows | engine | check s | start s | check + start s | process s | "
        "log rows/s (check) | Spark jobs s | spark / local (check) | "
        "spark / local (+ start) | driver MB | JVM MB | runs s |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for e in rows:
        loc, spk = e["local"], e["spark"]
        for name, run in (("local", loc), ("spark", spk)):
            s = _get(run, "seconds")
            start = _get(run, "start_seconds")
            total = s if name == "local" else _plus(s, start)
            timings = run.get("timings") or {}
            if "error" in run:
                lines.append(f"| {e['n']:,} | {name} | failed: {run['error'][:120]} |")
                continue
            ratio = ratio_start = "—"
            if name == "spark":
                ratio = _x(_ratio(s, _get(loc, "seconds")))
                ratio_start = _x(_ratio(total, _get(loc, "seconds")))
            jobs = timings.get("spark_seconds")
            lines.append(
                f"| {e['n']:,} | {name} | {fmt(s)} | {fmt(start)} | {fmt(total)} | "
                f"{fmt(_get(run, 'process_seconds'))} | "
                f"{fmt(_ratio(e['n'], s), 0)} | {fmt(jobs)} | {ratio} | {ratio_start} | "
                f"{fmt(_get(run, 'peak_rss_mb'), 0)} | {fmt(_get(run, 'jvm_peak_rss_mb'), 0)} | "
                f"{', '.join(f'{x:.1f}' for x in run.get('all_seconds', []))} |"
            )
    lines += [
        "",
        "Where the Spark engine's time goes (median run): *join s* is what runs before the "
        "passes (`spark_seconds` minus the passes: the log read into Spark's cache, its counts "
        "per file, the scans Feast makes of the entity dataframe), *passes s* the `mapInArrow` "
        "comparison passes with their `collect`, the first of which also runs Feast's "
        "point-in-time join, its input (a view of 50,000 rows or more takes two: the edge pass "
        "that fixes the PSI bins, then the comparison over the cached answers), *driver s* the "
        "rest of `run_check` (repo load, planning, merging the states, the report):",
        "",
        "| log rows | join s | passes s (count) | driver s | Spark jobs s | "
        "log rows/s per core (jobs) |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for e in rows:
        spk = e["spark"]
        jobs = (spk.get("timings") or {}).get("spark_seconds")
        passes = spk.get("passes") or {}
        if jobs is None or "pass_seconds" not in passes:
            continue
        lines.append(
            f"| {e['n']:,} | {jobs - passes['pass_seconds']:.1f} | "
            f"{passes['pass_seconds']:.1f} ({passes['passes']}) | "
            f"{spk['seconds'] - jobs:.1f} | {jobs:.1f} | {e['n'] / jobs / CORES:,.0f} |"
        )
    lines.append("")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        size = b["n"] / a["n"]
        parts = []
        for name in ("local", "spark"):
            parts.append(
                f"{name} check {_x(_ratio(_get(b[name], 'seconds'), _get(a[name], 'seconds')))}"
            )
        jobs = _ratio(
            (b["spark"].get("timings") or {}).get("spark_seconds"),
            (a["spark"].get("timings") or {}).get("spark_seconds"),
        )
        parts.append(f"Spark jobs alone {_x(jobs)}")
        rss = [_ratio(_get(b[k], "peak_rss_mb"), _get(a[k], "peak_rss_mb")) for k in RUNS]
        parts.append(f"driver peak RSS local {_x(rss[0])}, spark {_x(rss[1])}")
        lines += [
            f"**Scaling** {a['n']:,} -> {b['n']:,} log rows ({size:.0f}x): "
            + "; ".join(parts)
            + ".",
            "",
        ]
    lines += [
        "**Do the engines agree?** Per feature of the batch views, the reports' "
        f"{', '.join(f'`{k}`' for k in COMPARED_FIELDS)}, compared exactly:",
        "",
    ]
    for e in rows:
        verdict, diffs = agreement(e)
        planted = sum(
            (e["spark"].get("features") or {}).get(r, {}).get("mismatches") or 0
            for r in check_log.PLANTED
        )
        line = f"- {e['n']:,} log rows: {verdict}"
        samples = [e[k].get("samples") for k in RUNS]
        if all(isinstance(x, int) for x in samples):
            line += (
                f"; planted mismatches found by Spark {planted:,} of "
                f"{sum(e['log']['planted'].values()):,}; samples compared: local "
                f"{samples[0]:,} (all 3 views), Spark {samples[1]:,} (the 2 batch views)"
            )
        lines.append(line)
        lines += [f"  - {d}" for d in diffs[:10]]
    notes = next((e["spark"].get("notes") for e in rows if e["spark"].get("notes")), None)
    if notes:
        lines += ["", f"The Spark report's notes: {'; '.join(str(n) for n in notes)}."]
    lines += ["", *on_paper(rows), ""]
    if args.note:
        for note in args.note:
            lines += [note, ""]
    lines += [
        f"Produced by `{meta['command']}` (wall time {meta['wall']:.0f} s, log generation and "
        "repo builds included) on:",
        "",
    ]
    import pyspark

    extra = {"PySpark": f"{pyspark.__version__} (`local[{CORES}]`)", "Java": java_version()}
    lines += machine_lines(machine_info(extra), meta["load_before"], meta["load_after"])
    return "\n".join(lines) + "\n"


def on_paper(rows: list[dict[str, Any]]) -> list[str]:
    """An extrapolation of the largest run's Spark job rate to a day of a busy server's log."""
    spark = [e for e in rows if (e["spark"].get("timings") or {}).get("spark_seconds")]
    if not spark:
        return ["**On paper:** not estimated (no Spark run finished)."]
    e = spark[-1]
    jobs = e["spark"]["timings"]["spark_seconds"]
    start = e["spark"].get("start_seconds") or 0.0
    rest = e["spark"]["seconds"] - jobs
    per_core = e["n"] / jobs / CORES
    estimates = []
    for cores in PAPER_CORES:
        wall = DAY_ROWS / (per_core * cores)
        estimates.append(
            f"{cores} cores: {wall / 60:,.1f} min of Spark jobs (+ {start:.0f} s start, "
            f"+ {rest:.0f} s driver work)"
        )
    return [
        "**On paper (an extrapolation, not a measurement).** At "
        f"{e['n']:,} log rows the Spark jobs ran {jobs:.1f} s on {CORES} cores: "
        f"{per_core:,.0f} log rows/s per executor core (all log rows of the window, of which "
        "the on-demand third is skipped, over the time of the Spark jobs, the report's "
        "`spark_seconds`). A busy server at 5,000 requests/s x 10 rows per request x 1% "
        f"sampled logs {DAY_ROWS / 1e6:.1f}M rows a day; checking one day would take about "
        + "; ".join(estimates)
        + ". Assumptions: the rate is linear in executor cores (each core its own partitions), "
        "the day's log is counted as rows of the same 3-view mix as here (if the 43.2M are "
        "request rows logged once per view, multiply by 3), the offline sources grow no faster "
        "than here, and the point-in-time join's shuffle, measured here only within one "
        "machine on 2 cores, costs the same per row across a network of executors; none of "
        "this was measured beyond 2 cores.",
    ]


def java_version() -> str:
    import subprocess

    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        return (out.stderr or out.stdout).strip().splitlines()[0]
    except Exception:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--quick", action="store_true", help="smoke run: 30,000 rows")
    parser.add_argument("--users", type=int, default=check_log.USERS)
    parser.add_argument("--videos", type=int, default=check_log.VIDEOS)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine and N")
    parser.add_argument("--repeat-max-rows", type=int, default=1_000_000, help="larger N: fewer")
    parser.add_argument("--repeat-large", type=int, default=1, help="runs per engine above it")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker")
    parser.add_argument("--work", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument("--out", type=Path, help=f"rewrite the {SECTION!r} section of this file")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--note", action="append", help="a paragraph to add to the section")
    parser.add_argument("--render", type=Path, help="only render the section from a --json file")
    parser.add_argument("--worker", choices=["local", "spark"], help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.repo)
        return 0
    if args.render:  # re-render a finished run (its command and machine lines are today's)
        saved = json.loads(args.render.read_text())
        body = render(saved["results"], args, saved["meta"])
        print(body)
        if args.out:
            replace_section(args.out, SECTION, body)
        return 0
    if args.quick:
        args.rows = [30_000]
        args.users, args.videos = 10_000, 2_000
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers inherit it
    results, meta = measured_run(lambda work: measure(args, work), args.work, "bench-spark-")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "meta": meta}, indent=1, default=str))
    body = render(results, args, meta)
    print(body)
    print("steps (s): " + json.dumps(results["steps"]), file=sys.stderr)
    if args.out:
        replace_section(args.out, SECTION, body)
        print(f"wrote the {SECTION!r} section of {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
