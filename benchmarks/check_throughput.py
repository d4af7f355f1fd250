"""The parity check end to end at N logged rows, against a bound, Feast and Evidently.

One demo-shaped benchmark repo (``check_log.py``: 3 views, 9 features, 100,000 users x 10,000
videos, snapshots every 6 h over 3 days, file offline store) gets, per N in ``--rows``, a fresh
sample log of N log rows (N / 3 ranking request rows, each logged once per view) written as v3
batches by the plugin's own ``BatchBuilder`` and ``ParquetSink``. Then, each in a fresh
process, one after the other (nothing else of the benchmark runs meanwhile):

* **check**: ``ParityCheck(repo, since, until).run(store_results=False)``, the whole check
  (repo load, log read, offline pulls, on-demand recomputation, comparison, report);
* **bound**: ``check_bound.py`` on the same rows: pyarrow dataset read of the window, DuckDB
  ``ASOF JOIN`` with the offline sources, numpy compare of all 9 features;
* **Feast**: one ``store.get_historical_features(entity_df, features=ranking_model_v1)
  .to_arrow()`` of the same request rows (plain ``provider: local``), the entity dataframe
  ready in memory;
* **Evidently**: ``Report([DataDriftPreset()]).run(current, reference)`` and its dict, on the
  same values (current = served, reference = offline, 9 columns, one row per request row),
  both frames ready in memory.

Wall seconds are timed inside each process around the work only; peak RSS is the process's
``VmHWM``. With ``--out FILE`` only the ``## Check`` section of FILE is rewritten.

    .venv/bin/python benchmarks/check_throughput.py [--rows 100000 1000000] [--out FILE]
    .venv/bin/python benchmarks/check_throughput.py --quick          # smoke run, 30,000 rows
    .venv/bin/python benchmarks/check_throughput.py --worker check --repo R --profile FILE
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

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
    verdict,
)

SECTION = "## Check"
HERE = Path(__file__).resolve().parent
GOAL_BOUND = 2.0  # check wall <= 2x the bound
GOAL_FEAST = 1.5  # check wall <= 1.5x one Feast retrieval
GOAL_SCALE = 10.5  # 10M time <= 10.5x the 1M time
GOAL_RSS = 1.2  # 10M peak RSS <= 1.2x the 1M one
GOAL_EVIDENTLY = 10.0  # Evidently >= 10x the check's time at 1M


# -- workers (each a fresh process) -------------------------------------------------------------


def worker_check(repo_path: Path, profile: str | None) -> None:
    from feast_parity.plugin.check import ParityCheck

    repo = check_log.open_repo(repo_path)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    report = ParityCheck(repo.path, repo.since, repo.until).run(store_results=False)
    seconds = time.perf_counter() - started
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        Path(profile).write_text(text.getvalue())
    print(
        json.dumps(
            {
                "seconds": seconds,
                "samples": report["samples"],
                "timings": report["timings"],
                "mismatches": {f["feature"]: f["mismatches"] for f in report["features"]},
                "compared": {f["feature"]: f["compared"] for f in report["features"]},
                "status": report["status"],
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def worker_feast(repo_path: Path, values_dir: Path) -> None:
    import pandas as pd
    from feast import FeatureStore

    repo = check_log.open_repo(repo_path)
    store = FeatureStore(repo_path=str(repo.path), fs_yaml_file=repo.path / check_log.PLAIN_YAML)
    service = store.get_feature_service(check_log.SERVICE)
    entity_df = pd.read_parquet(values_dir / "entities.parquet")
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    table = store.get_historical_features(entity_df=entity_df, features=service).to_arrow()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": table.num_rows,
                "columns": table.num_columns,
                "rss_before_mb": rss_before,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def worker_evidently(values_dir: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(values_dir / "values.parquet")
    names = [c[len("cur__") :] for c in frame.columns if c.startswith("cur__")]
    current = pd.DataFrame({n: frame[f"cur__{n}"] for n in names})
    reference = pd.DataFrame({n: frame[f"ref__{n}"] for n in names})
    del frame
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    categorical = [n for n in names if current[n].dtype == object]
    numerical = [n for n in names if n not in categorical]
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    cur = Dataset.from_pandas(current, data_definition=definition)
    ref = Dataset.from_pandas(reference, data_definition=definition)
    result = Report([DataDriftPreset()]).run(cur, ref).dict()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "version": evidently.__version__,
                "columns": len(names),
                "rows": len(current),
                "result_bytes": len(json.dumps(result, default=str)),
                "rss_before_mb": rss_before,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


# -- the run ------------------------------------------------------------------------------------


def run_variant(name: str, command: list[str], timeout: float) -> dict[str, Any] | None:
    print(f"  {name} ...", file=sys.stderr, flush=True)
    result, error, wall = run_worker(command, timeout)
    if result is None:
        print(f"  {name} FAILED: {error}", file=sys.stderr, flush=True)
        return {"error": error.strip().splitlines()[-1] if error.strip() else "failed"}
    result["process_seconds"] = wall
    print(
        f"  {name}: {result['seconds']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB",
        file=sys.stderr,
        flush=True,
    )
    return result


def median_run(runs: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    good = [r for r in runs if r and "seconds" in r]
    if not good:
        return runs[0] if runs else None
    good.sort(key=lambda r: r["seconds"])
    chosen = dict(good[(len(good) - 1) // 2])
    chosen["all_seconds"] = [r["seconds"] for r in good]
    return chosen


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    py = sys.executable
    me = str(HERE / "check_throughput.py")
    print(f"building the benchmark repo in {work}", file=sys.stderr, flush=True)
    repo = check_log.build_repo(work / "repo", users=args.users, videos=args.videos)
    results: dict[str, Any] = {"rows": []}
    for n in args.rows:
        values_dir = work / f"values_{n}"
        print(f"N = {n:,}: writing the log", file=sys.stderr, flush=True)
        log = check_log.write_log(repo, n, values_dir, batch_size=args.batch_size)
        print(
            f"  {log.rows:,} log rows in {log.files:,} files, {log.bytes / 1e6:.0f} MB "
            f"({log.seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        entry: dict[str, Any] = {"n": log.rows, "log": log.__dict__}
        checks, bounds = [], []
        repeat = args.repeat if n <= args.repeat_max_rows else 1
        for _ in range(repeat):  # check and bound in turn
            bounds.append(
                run_variant("bound", [py, str(HERE / "check_bound.py"), str(repo.path)], 3600)
            )
            checks.append(
                run_variant("check", [py, me, "--worker", "check", "--repo", str(repo.path)], 7200)
            )
        entry["check"], entry["bound"] = median_run(checks), median_run(bounds)
        if not args.skip_feast and n <= args.feast_max_rows:
            entry["feast"] = run_variant(
                "feast",
                [py, me, "--worker", "feast", "--repo", str(repo.path)]
                + ["--values", str(values_dir)],
                3600,
            )
        if not args.skip_evidently and n <= args.evidently_max_rows:
            entry["evidently"] = run_variant(
                "evidently", [py, me, "--worker", "evidently", "--values", str(values_dir)], 3600
            )
        if args.profile_rows and n == args.profile_rows:  # the requested N, as given
            profile = Path(args.profile_out)
            run_variant(
                "check (profiled)",
                [py, me, "--worker", "check", "--repo", str(repo.path), "--profile", str(profile)],
                7200,
            )
            entry["profile"] = str(profile)
        results["rows"].append(entry)
        shutil.rmtree(values_dir, ignore_errors=True)
    return results


# -- the section --------------------------------------------------------------------------------


def _s(entry: dict[str, Any], name: str) -> float | None:
    value = entry.get(name)
    return value.get("seconds") if isinstance(value, dict) else None


def _rss(entry: dict[str, Any], name: str) -> float | None:
    value = entry.get(name)
    return value.get("peak_rss_mb") if isinstance(value, dict) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _x(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}x"


def render(results: dict[str, Any], args: argparse.Namespace, meta: dict[str, Any]) -> str:
    rows = results["rows"]
    lines = [
        SECTION,
        "",
        "How long `feast-parity check` takes over a window of N logged rows, and its peak memory, "
        "against three yardsticks measured in the same run on the same rows: a **bound** (the "
        "least work that answers the question: a columnar read of the window, one DuckDB "
        "`ASOF JOIN` per view with the offline source, a numpy compare of every feature; "
        "`benchmarks/check_bound.py`), **one Feast point-in-time retrieval** "
        "(`get_historical_features` of the same request rows through the feature service), and "
        "**Evidently's `DataDriftPreset`** on the same served and offline values.",
        "",
        "**Design.** The demo repo's shape (`ranking_model_v1`: `user_engagement` 5 features, "
        "`video_stats` 3, the on-demand `ranking_signals` 1), with "
        f"{args.users:,} users and {args.videos:,} videos, snapshots every 6 h over "
        f"{check_log.DAYS} days (Parquet FileSources, file offline store). A log of N rows is "
        "N / 3 ranking request rows (one user, 10 videos) logged once per view, with request "
        f"times spread over a {check_log.WINDOW_HOURS} h window; the rows are fed to the plugin's "
        "own `BatchBuilder` as the writer thread feeds it and written by its own `ParquetSink` "
        f"(`parity.sample_log`), {args.batch_size:,} log rows per writer flush (the default "
        f"`batch_size`: about {args.batch_size // 3:,} rows per view and file, as a busy server "
        "writes them). Every "
        "served row is the offline row current at its request time, except 1% of request rows "
        "with `watch_minutes`, `country` and `popularity` (and so the served `affinity_score`) "
        "changed. Each variant runs in a fresh process, alone (the others have exited); times "
        "are measured inside the process around the work, the repo load included for the check, "
        "ready-made frames for Feast and Evidently; peak RSS is the process's `VmHWM`. The "
        "bound and DuckDB may use both cores; the check is mostly one thread.",
        "",
        "| log rows | files | check s | bound s | check / bound | Feast s | check / Feast | "
        "Evidently s | Evidently / check | check MB | bound MB | Feast MB | Evidently MB | "
        "mismatches check / bound / planted | on-demand mismatches check / bound |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for e in rows:
        check, bound = e.get("check") or {}, e.get("bound") or {}
        batch_refs = [r for r in check_log.PLANTED]
        found = sum((check.get("mismatches") or {}).get(r, 0) for r in batch_refs)
        found_bound = sum((bound.get("mismatches") or {}).get(r, 0) for r in batch_refs)
        planted = sum(e["log"]["planted"].values())
        odfv = "ranking_signals:affinity_score"
        odfv_check = (check.get("mismatches") or {}).get(odfv, 0)
        odfv_bound = (bound.get("mismatches") or {}).get(odfv, 0)
        c = _s(e, "check")
        lines.append(
            f"| {e['n']:,} | {e['log']['files']:,} | {fmt(c, 1)} | {fmt(_s(e, 'bound'), 2)} | "
            f"{_x(_ratio(c, _s(e, 'bound')), 1)} | {fmt(_s(e, 'feast'), 1)} | "
            f"{_x(_ratio(c, _s(e, 'feast')))} | {fmt(_s(e, 'evidently'), 1)} | "
            f"{_x(_ratio(_s(e, 'evidently'), c))} | {fmt(_rss(e, 'check'), 0)} | "
            f"{fmt(_rss(e, 'bound'), 0)} | {fmt(_rss(e, 'feast'), 0)} | "
            f"{fmt(_rss(e, 'evidently'), 0)} | {found:,} / {found_bound:,} / {planted:,} | "
            f"{odfv_check:,} / {odfv_bound:,} |"
        )
    lines += [
        "",
        "Where the check's time goes (the report's own `timings`; *other* is the check's wall "
        "time minus their sum: loading the repo and registry, grouping, the report dict; it is "
        "negative when the timings overlap, as `read_seconds` also counts the offline pull of "
        "the first chunk of each batch view):",
        "",
        "| log rows | read s | offline s | compare s | results s | other s | check s | "
        "log rows/s | bound read / join / compare s |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for e in rows:
        check = e.get("check") or {}
        t = check.get("timings") or {}
        b = (e.get("bound") or {}).get("timings") or {}
        if not t:
            continue
        known = sum(t.get(k, 0.0) for k in t)
        lines.append(
            f"| {e['n']:,} | {t.get('read_seconds', 0):.1f} | {t.get('offline_seconds', 0):.1f} | "
            f"{t.get('compare_seconds', 0):.1f} | {t.get('results_seconds', 0):.1f} | "
            f"{check['seconds'] - known:.1f} | {check['seconds']:.1f} | "
            f"{e['n'] / check['seconds']:,.0f} | "
            f"{b.get('read_seconds', 0):.2f} / {b.get('join_seconds', 0):.2f} / "
            f"{b.get('compare_seconds', 0):.2f} |"
        )

    def pick(target: int) -> dict[str, Any] | None:
        for e in rows:
            if abs(e["n"] - target) <= target * 0.01:
                return e
        return None

    lines += [
        "",
        "Runs (seconds of each run of check and bound, in the order taken):",
        "",
        "| log rows | check runs s | bound runs s |",
        "|--:|---|---|",
    ]
    for e in rows:
        runs = [
            ", ".join(f"{x:.1f}" for x in (e.get(name) or {}).get("all_seconds", [])) or "—"
            for name in ("check", "bound")
        ]
        lines.append(f"| {e['n']:,} | {runs[0]} | {runs[1]} |")
    one, ten = pick(1_000_000), pick(10_000_000)
    lines += ["", "**Goals** (ratios of this run):", ""]
    for e in rows:
        c = _s(e, "check")
        rb, rf = _ratio(c, _s(e, "bound")), _ratio(c, _s(e, "feast"))
        lines.append(
            f"- {e['n']:,} rows: check / bound {_x(rb, 1)} (goal ≤ {GOAL_BOUND:g}x: "
            f"{verdict(rb, GOAL_BOUND)}); check / Feast {_x(rf)} (goal ≤ {GOAL_FEAST:g}x: "
            f"{verdict(rf, GOAL_FEAST)})"
        )
    if one is not None:
        re_ = _ratio(_s(one, "evidently"), _s(one, "check"))
        lines.append(
            f"- Evidently / check at 1M: {_x(re_)} (goal ≥ {GOAL_EVIDENTLY:g}x: "
            f"{verdict(re_, GOAL_EVIDENTLY, at_most=False)})"
        )
    if one is not None and ten is not None:
        rt = _ratio(_s(ten, "check"), _s(one, "check"))
        rm = _ratio(_rss(ten, "check"), _rss(one, "check"))
        lines.append(
            f"- 10M / 1M check time: {_x(rt)} (goal ≤ {GOAL_SCALE:g}x: {verdict(rt, GOAL_SCALE)}); "
            f"peak RSS: {_x(rm)} (goal ≤ {GOAL_RSS:g}x: {verdict(rm, GOAL_RSS)})"
        )
    else:
        lines.append("- 10M / 1M: not measured in this run (`make bench-check-10m` adds 10M rows).")
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        lines.append(
            f"- scaling {a['n']:,} -> {b['n']:,} rows ({b['n'] / a['n']:.0f}x): check time "
            f"{_x(_ratio(_s(b, 'check'), _s(a, 'check')))}, bound time "
            f"{_x(_ratio(_s(b, 'bound'), _s(a, 'bound')))}, check peak RSS "
            f"{_x(_ratio(_rss(b, 'check'), _rss(a, 'check')))}"
        )
    errors = [
        f"{e['n']:,} {name}: {e[name]['error']}"
        for e in rows
        for name in ("check", "bound", "feast", "evidently")
        if isinstance(e.get(name), dict) and "error" in e[name]
    ]
    if errors:
        lines += ["", "Failed or timed-out variants: " + "; ".join(errors) + "."]
    evidently = next(
        (e["evidently"] for e in rows if (e.get("evidently") or {}).get("version")), None
    )
    lines += [
        "",
        "How to read it: *check / bound* is how far the check is from the least work the "
        "question needs (1.0x would be the floor; the check also classifies every row at request "
        "and at served time, recomputes the on-demand view through Feast, keeps drift, fill-value "
        "and cohort statistics and builds a report). *check / Feast* compares the whole check "
        "with one Feast retrieval of the same rows, which answers only the offline half. "
        "*Evidently / check* above 1 means the check is that many times faster than Evidently's "
        "drift report on ready-made values. *mismatches* counts the planted served changes found "
        "in the batch views; *on-demand mismatches* the served `affinity_score` values that differ "
        "from their recomputation from the offline inputs (the check recomputes them with Feast's "
        "own `transform_arrow`, docs/checks.md). Check and bound figures are the median of "
        f"{args.repeat} runs each, taken in turn (one run above {args.repeat_max_rows:,} rows), "
        "with the spread in the runs table above; Feast and Evidently run once. Absolute "
        "seconds depend on the machine and its load.",
        "",
        f"Produced by `{meta['command']}` (wall time {meta['wall']:.0f} s, log generation "
        "included) on:",
        "",
    ]
    extra = {}
    if evidently:
        extra["Evidently"] = (
            f"{evidently['version']} (`Report([DataDriftPreset()]).run(Dataset, Dataset).dict()`)"
        )
    import duckdb

    extra["DuckDB"] = duckdb.__version__
    lines += machine_lines(machine_info(extra), meta["load_before"], meta["load_after"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="smoke run: 30,000 rows")
    parser.add_argument("--users", type=int, default=check_log.USERS)
    parser.add_argument("--videos", type=int, default=check_log.VIDEOS)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of check and bound per N")
    parser.add_argument("--repeat-max-rows", type=int, default=1_000_000, help="larger N run once")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--feast-max-rows", type=int, default=10**9)
    parser.add_argument("--evidently-max-rows", type=int, default=10**9)
    parser.add_argument("--profile-rows", type=int, default=0, help="also profile the check at N")
    parser.add_argument("--profile-out", default="check_profile.txt")
    parser.add_argument("--work", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="rewrite the ## Check section of this file")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", choices=["check", "feast", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--values", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "check":
        worker_check(args.repo, args.profile)
        return 0
    if args.worker == "feast":
        worker_feast(args.repo, args.values)
        return 0
    if args.worker == "evidently":
        worker_evidently(args.values)
        return 0
    if args.quick:
        args.rows = [30_000]
        args.users, args.videos = 10_000, 2_000
    results, meta = measured_run(lambda work: measure(args, work), args.work, "bench-check-")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "meta": meta}, indent=1))
    body = render(results, args, meta)
    print(body)
    if args.out:
        replace_section(args.out, SECTION, body)
        print(f"wrote the {SECTION!r} section of {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
