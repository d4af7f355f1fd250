"""Serving overhead of ParityProvider against Feast's plain ``local`` provider.

Builds ONE demo repo (feast apply + materialize once) in a temporary directory, then opens four
``FeatureStore`` objects on the same registry and online store files that differ only in their
provider configuration:

* ``local``          Feast's plain local provider (the baseline)
* ``parity@0``       ParityProvider, sample_rate 0
* ``parity@0.01``    ParityProvider, sample_rate 0.01
* ``parity@1``       ParityProvider, sample_rate 1.0

Each is warmed up, then ``get_online_features`` is timed (``time.perf_counter_ns`` around the
call only) for 10-entity requests through the ``ranking_model_v1`` feature service:

1. interleaved (the headline): for every request each variant is called once, in a freshly
   shuffled order, with the same entity rows;
2. blocked (a check): rounds of ``--block`` requests per variant, variants in shuffled order,
   writers drained between blocks, so a variant's background writer overlaps only its own
   requests, as in a process that serves with that configuration alone.

The sample writer threads run as in production (never paused); they are flushed only outside
the timed regions. A diagnostic then times the provider's request-thread hook alone and reports
the writer thread's CPU time per request.

    .venv/bin/python benchmarks/serve_overhead.py [--requests N] [--out docs/performance.md]

With ``--out FILE`` only the ``## Serving overhead`` section of FILE is rewritten.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from feast_parity import demo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine_info, replace_section  # noqa: E402

SECTION = "## Serving overhead"
USERS, VIDEOS, DAYS = 1000, 300, 3
SERVICE = "ranking_model_v1"
GOALS = {"parity@0.01": 1.05, "parity@1": 1.25}  # max ratio to the plain local p50
COUNTERS = ("sampled_rows", "written_rows", "dropped_rows", "hook_errors")
VARIANTS = (
    ("local", "local", None),
    ("parity@0", "feast_parity.ParityProvider", 0.0),
    ("parity@0.01", "feast_parity.ParityProvider", 0.01),
    ("parity@1", "feast_parity.ParityProvider", 1.0),
)


@dataclass
class Variant:
    name: str
    provider: str
    sample_rate: float | None  # None: no parity block at all (the plain local provider)
    repo: Path
    store: Any
    service: Any
    interleaved_ns: list[int] = field(default_factory=list)
    blocked_ns: list[int] = field(default_factory=list)
    hook_ns: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # over the interleaved loop
    writer_cpu_s: float | None = None  # writer thread CPU seconds over the interleaved loop
    flushed: bool = True


# -- setup --------------------------------------------------------------------------------------


def write_variant_config(
    repo: Path,
    provider: str,
    sample_rate: float | None,
    *,
    registry: Path | None = None,
    online: Path | None = None,
    parity_db: Path | None = None,
) -> None:
    """feature_store.yaml via demo.write_config, then the shared absolute paths patched in."""
    path = demo.write_config(
        repo,
        provider=provider,
        sample_rate=sample_rate or 0.0,
        store_url=f"sqlite:///{parity_db}" if parity_db else "sqlite:///data/parity.db",
        online_store={"type": "sqlite", "path": str(online)} if online else None,
    )
    config = yaml.safe_load(path.read_text())
    if registry is not None:
        config["registry"] = str(registry)  # write_config has no registry parameter
    if sample_rate is None:
        config.pop("parity", None)  # the baseline carries no plugin configuration at all
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def build_base_repo(root: Path) -> tuple[Path, Path]:
    """Demo repo, applied and materialized once; returns (registry path, online store path)."""
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    base = root / "base"
    demo.make_demo_repo(base, users=USERS, videos=VIDEOS, days=DAYS, end=end)
    write_variant_config(base, "local", None)
    demo.feast_apply(base)
    demo.materialize(base, end=end, days=DAYS + 1)
    data = (base / "data").resolve()
    return data / "registry.db", data / "online_store.db"


def open_variants(root: Path, registry: Path, online: Path) -> list[Variant]:
    from feast import FeatureStore

    variants: list[Variant] = []
    for name, provider, rate in VARIANTS:
        repo = root / name.replace("@", "_at_")
        repo.mkdir(parents=True)
        parity_db = (repo / "parity.db").resolve() if rate is not None else None
        write_variant_config(
            repo, provider, rate, registry=registry, online=online, parity_db=parity_db
        )
        store = FeatureStore(repo_path=str(repo))
        if variants:
            # One registry object for all four stores, as one FeatureStore per process would
            # have. Feast 0.67 keeps its feature-resolution cache in a module global that is
            # cleared whenever the calling store's registry has a different load timestamp
            # (feast.utils._get_cached_request_context), so four registry objects served in
            # alternation would rebuild it on every call (~8 ms) and bury what we measure.
            store._registry = variants[0].store.registry
        service = store.get_feature_service(SERVICE)
        variants.append(Variant(name, provider, rate, repo, store, service))
    return variants


def counters(variant: Variant) -> dict[str, int]:
    provider = variant.store._get_provider()
    if not hasattr(provider, "parity_stats"):
        return {}
    return {k: int(v) for k, v in provider.parity_stats().items()}


def flush_all(variants: list[Variant]) -> None:
    for v in variants:
        provider = v.store._get_provider()
        if hasattr(provider, "flush_samples") and not provider.flush_samples(60.0):
            v.flushed = False


def writer_cpu_seconds(variant: Variant) -> float | None:
    """CPU time (user + system) of the variant's sample writer thread so far; Linux only."""
    if variant.sample_rate is None:
        return None
    writer = getattr(variant.store._get_provider(), "_writer", None)
    thread = getattr(writer, "_thread", None)
    if thread is None or thread.native_id is None:
        return 0.0  # no writer started (yet)
    try:
        stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the measurements ---------------------------------------------------------------------------


def warm_up(variants: list[Variant], requests: int, entities: int, seed: int) -> None:
    """Untimed requests; also checks that every variant serves identical values."""
    rng = np.random.default_rng(seed)
    for i in range(requests):
        rows = demo.request_rows(rng, entities, USERS, VIDEOS)
        answers = set()
        for v in variants:
            response = v.store.get_online_features(
                features=v.service, entity_rows=[dict(r) for r in rows]
            )
            if i < 20:
                answers.add(repr(response.to_dict()))
        if len(answers) > 1:
            raise RuntimeError("variants disagree on served values: not the same online store?")


def _timed_call(v: Variant, rows: list[dict[str, int]]) -> int:
    entity_rows = [dict(r) for r in rows]  # each call gets its own copy, made before timing
    store, service, clock = v.store, v.service, time.perf_counter_ns
    start = clock()
    store.get_online_features(features=service, entity_rows=entity_rows)
    return clock() - start


def measure_interleaved(variants: list[Variant], requests: int, entities: int, seed: int) -> None:
    rows_rng, order_rng = np.random.default_rng(seed), random.Random(seed)
    order = list(variants)
    step = max(1, requests // 5)
    for i in range(requests):
        rows = demo.request_rows(rows_rng, entities, USERS, VIDEOS)
        order_rng.shuffle(order)
        for v in order:
            v.interleaved_ns.append(_timed_call(v, rows))
        if (i + 1) % step == 0:
            print(f"  interleaved {i + 1}/{requests}", file=sys.stderr, flush=True)


def measure_blocked(
    variants: list[Variant], requests: int, entities: int, seed: int, block: int
) -> None:
    rows_rng, order_rng = np.random.default_rng(seed), random.Random(seed)
    order = list(variants)
    done = 0
    while done < requests:
        batch = [
            demo.request_rows(rows_rng, entities, USERS, VIDEOS)
            for _ in range(min(block, requests - done))
        ]
        order_rng.shuffle(order)
        for v in order:
            flush_all(variants)  # drained writers: nobody else's background work remains
            for rows in batch:
                v.blocked_ns.append(_timed_call(v, rows))
        done += len(batch)
        if done % (block * max(1, requests // (5 * block))) == 0 or done == requests:
            print(f"  blocked {done}/{requests}", file=sys.stderr, flush=True)
    flush_all(variants)


def measure_hook(variants: list[Variant], requests: int, entities: int, seed: int) -> None:
    """Diagnostic: ParityProvider's request-thread hook (``_observe``) timed alone.

    Per request the plain ``local`` variant serves the rows (untimed), then each parity
    variant's hook (sampling decision, snapshot, enqueue) is timed on that response. The
    writers run, but are drained (untimed) before each request, so this is the hook's own
    cost without GIL waits behind a busy writer (the blocked run shows those).
    """
    base = variants[0]
    parity = [v for v in variants if v.sample_rate is not None]
    hooks = {v.name: getattr(v.store._get_provider(), "_observe", None) for v in parity}
    if not all(hooks.values()):
        print("  the provider has no _observe hook any more: diagnostic skipped", file=sys.stderr)
        return
    rng, clock = np.random.default_rng(seed), time.perf_counter_ns
    for _ in range(requests):
        flush_all(variants)
        time.sleep(0.002)  # the flush woke the writer threads: let them go back to sleep
        rows = demo.request_rows(rng, entities, USERS, VIDEOS)
        response = base.store.get_online_features(
            features=base.service, entity_rows=[dict(r) for r in rows]
        )
        for v in parity:
            observe, entity_rows = hooks[v.name], [dict(r) for r in rows]
            registry, project = v.store.registry, v.store.project
            start = clock()
            observe(v.service, entity_rows, response, time.time(), registry, project, False)
            v.hook_ns.append(clock() - start)
    flush_all(variants)


# -- statistics ---------------------------------------------------------------------------------


def summarize(variants: list[Variant], attr: str, seed: int) -> list[dict[str, Any]]:
    """p50/p99/mean per variant, ratios to ``local`` and a paired-bootstrap CI of the p50 ratio."""
    base = np.asarray(getattr(variants[0], attr), dtype=np.float64) / 1e3
    base_p50, base_p99 = np.percentile(base, [50, 99])
    n = len(base)
    boot = np.random.default_rng(seed).integers(0, n, size=(1000, n))  # same requests: paired
    base_boot = np.median(base[boot], axis=1)
    out = []
    for v in variants:
        t = np.asarray(getattr(v, attr), dtype=np.float64) / 1e3
        p50, p99 = np.percentile(t, [50, 99])
        lo, hi = np.percentile(np.median(t[boot], axis=1) / base_boot, [2.5, 97.5])
        out.append(
            {
                "name": v.name,
                "p50": p50,
                "p99": p99,
                "mean": float(t.mean()),
                "r50": p50 / base_p50,
                "r99": p99 / base_p99,
                "r50_ci": (lo, hi),
                "goal": GOALS.get(v.name),
            }
        )
    return out


def verdict(r: dict[str, Any]) -> str:
    if r["goal"] is None:
        return "baseline" if r["name"] == "local" else "—"
    return f"≤ {r['goal']:.2f}x: " + ("met" if r["r50"] <= r["goal"] else "**missed**")


# -- reporting ----------------------------------------------------------------------------------


def latency_table(results: list[dict[str, Any]], variants: list[Variant] | None) -> str:
    """Markdown table; with ``variants`` also the sampled/written/dropped counters."""
    head = (
        "| variant | p50 (µs) | p99 (µs) | mean (µs) | p50 / local | 95% CI | p99 / local | goal |"
    )
    rule = "|---|--:|--:|--:|--:|--:|--:|---|"
    if variants is not None:
        head += " sampled | written | dropped |"
        rule += "--:|--:|--:|"
    lines = [head, rule]
    for i, r in enumerate(results):
        lo, hi = r["r50_ci"]
        line = (
            f"| `{r['name']}` | {r['p50']:,.0f} | {r['p99']:,.0f} | {r['mean']:,.0f} "
            f"| {r['r50']:.3f}x | {lo:.3f}–{hi:.3f} | {r['r99']:.3f}x | {verdict(r)} |"
        )
        if variants is not None:
            c = variants[i].counters
            if not c:
                line += " — | — | — |"
            else:
                line += f" {c['sampled_rows']:,} | {c['written_rows']:,} | {c['dropped_rows']:,} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def hook_table(variants: list[Variant], base_p50_us: float) -> str:
    parity = [v for v in variants if v.sample_rate is not None]
    lines = [
        "| variant | hook p50 (µs) | hook p99 (µs) | hook mean (µs) | hook p50 / local p50 "
        "| writer CPU per request (µs) | writer CPU / local p50 |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for v in parity:
        timed = len(v.interleaved_ns)
        cpu = None if v.writer_cpu_s is None else v.writer_cpu_s * 1e6 / timed
        if v.hook_ns:
            h = np.asarray(v.hook_ns, dtype=np.float64) / 1e3
            p50, p99, mean = np.percentile(h, 50), np.percentile(h, 99), h.mean()
            hook = f"{p50:,.1f} | {p99:,.1f} | {mean:,.1f} | {100 * p50 / base_p50_us:.1f}%"
        else:
            hook = "n/a | n/a | n/a | n/a"
        cpu_cells = "n/a | n/a" if cpu is None else f"{cpu:,.0f} | {100 * cpu / base_p50_us:.0f}%"
        lines.append(f"| `{v.name}` | {hook} | {cpu_cells} |")
    return "\n".join(lines) + "\n"


def floor_paragraph(variants: list[Variant], blocked: list[dict[str, Any]]) -> str:
    """What the numbers say about the GIL floor at rate 1.0 and the residue at 0.01."""
    by_name = {v.name: v for v in variants}
    res = {r["name"]: r for r in blocked}
    base = res["local"]["p50"]

    def cpu_per_request(name: str) -> float | None:
        v = by_name.get(name)
        if v is None or v.writer_cpu_s is None or not v.interleaved_ns:
            return None
        return v.writer_cpu_s * 1e6 / len(v.interleaved_ns)

    def hook_p50(name: str) -> float | None:
        v = by_name.get(name)
        return float(np.percentile(v.hook_ns, 50)) / 1e3 if v and v.hook_ns else None

    w1, w01 = cpu_per_request("parity@1"), cpu_per_request("parity@0.01")
    h1, h01 = hook_p50("parity@1"), hook_p50("parity@0.01")
    if None in (w1, w01, h1, h01) or "parity@1" not in res or "parity@0.01" not in res:
        return ""
    d1 = res["parity@1"]["p50"] - base
    d01 = res["parity@0.01"]["p50"] - base
    budget = GOALS["parity@1"] * base - base
    return f"""
**The floor at `sample_rate` 1.0, and the residue at 0.01.** At rate 1.0 every 10-row
request becomes 30 log rows (one per row and feature view): 90 served values to read from the
protobuf response, encode as JSON and hash, and 30 rows to insert. The writer thread needs
{w1:,.0f} µs of CPU for that per request, {100 * w1 / base:.0f}% of the plain request, and the
hook {h1:,.0f} µs (p50) more on the request thread. CPython runs one thread at a time (the GIL);
the writer's work is Python code except for SQLite's own insert step, so in a process serving
at full load its CPU time is largely taken from the serving thread: the blocked p50 is
{d1:,.0f} µs above plain Feast, {100 * d1 / (w1 + h1):.0f}% of hook plus writer CPU. Meeting
{GOALS["parity@1"]:.2f}x would leave {budget:,.0f} µs per request for both, about
{(w1 + h1) / budget:.1f}x less than now. Reading one protobuf value costs about 0.5 µs in
Python and encoding plus hashing it about 1 µs, so within the serving process that is the
floor, not a missing optimization; the way past it is a writer in another process (the
serving thread would only serialize the response and hand it over), which is not built. At
rate 0.01 the blocked p50 is {d01:,.0f} µs above plain Feast: the hook's sampling decision
for every row ({h01:,.0f} µs p50, most of it hashing 10 entity keys) plus {w01:,.0f} µs of
writer CPU per request on average (about one request in ten has a sampled row).
"""


def section(
    variants: list[Variant],
    interleaved: list[dict[str, Any]],
    blocked: list[dict[str, Any]],
    machine: dict[str, str],
    command: str,
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    notes = []
    for v in variants:
        if v.counters.get("hook_errors"):
            notes.append(f"`{v.name}` counted {v.counters['hook_errors']} hook errors.")
        if v.counters.get("dropped_rows"):
            notes.append(f"`{v.name}` dropped {v.counters['dropped_rows']} sampled rows.")
        if not v.flushed:
            notes.append(f"`{v.name}`: a flush of the sample writer timed out (60 s).")
    notes_md = "".join(f"\n> {n}\n" for n in notes)
    machine_md = "\n".join(f"- {k}: {v}" for k, v in machine.items())
    hook_n = max(len(v.hook_ns) for v in variants)
    base_p50 = blocked[0]["p50"]
    return f"""{SECTION}

What `ParityProvider` adds to the latency of `FeatureStore.get_online_features`, against
Feast's plain `local` provider. One demo repo ({USERS} users, {VIDEOS} videos, {DAYS} days of
data; `feast apply` and materialization done once) is opened by four `FeatureStore` objects
that read the same registry and SQLite online store and differ only in the provider
configuration: `local`, and `feast_parity.ParityProvider` at `sample_rate` 0, 0.01 and 1.0,
each with its own SQLite sample store. Each request asks for {args.entities} (user, video) rows
through the `{SERVICE}` feature service; only the call is timed (`time.perf_counter_ns`, no
`.to_dict()`). The four stores share one registry object, as one `FeatureStore` per process
would: Feast {machine["Feast"]} keeps its feature-resolution cache in a module global that is
cleared whenever a store with a differently-timestamped registry object calls it, so four
registry objects served in alternation rebuild it on every call, which costs several times
the call itself and would bury what is measured here. The sample writer threads run as in
production (never paused); samples are flushed only outside the timed regions.

**Interleaved** ({args.requests:,} requests per variant after {args.warmup} warm-up requests;
for each request every variant is called once, in a freshly shuffled order, with the same
entity rows). Counters are entity rows of these requests, read after a flush.

{latency_table(interleaved, variants)}
**Blocked** (another {args.requests:,} requests per variant, in rounds of {args.block}: per
round every variant serves the same {args.block} requests back to back, variants in shuffled
order, all writers drained before each block). In the interleaved run a variant's background
writer does its work while the *other* variants are timed (every variant is called between two
calls of any one), and in CPython that work holds the GIL the request threads need: the cost
of `parity@1`'s writer is spread over all four variants, the baseline included. In the blocked
run each writer overlaps only its own variant's requests, as in a process that serves with one
configuration at full load.

{latency_table(blocked, None)}
**Where the time goes.** *Hook*: the work `ParityProvider` does on the request thread (a
sampling decision per entity row; for a request with a sampled row, a copy of the response, a
request id and a queue append), timed alone on {hook_n:,} further requests with the writers
drained (and given 2 ms to go back to sleep) before each one, so it excludes waits for the
GIL; its p99 includes garbage collections that the hook's allocations trigger. *Writer CPU*:
CPU time of the sample writer thread per interleaved request (decoding, hashing, JSON,
inserting into the sample store), from
`/proc/self/task/<tid>/stat`. Both are also shown as a share of the blocked `local` p50. The
writer is off the request path, but it needs the GIL: when its CPU time is large against the
call itself, a busy serving process pays for it in latency (blocked run).

{hook_table(variants, base_p50)}{notes_md}{floor_paragraph(variants, blocked)}
How to read it: a ratio is a variant's p50 (or p99) divided by the plain `local` provider's p50
(or p99) in the same run and design, so 1.000x means no measurable overhead. Variants are
measured in alternation, so slow drift of the machine (CPU frequency, neighbours, caches) hits
all of them alike and cancels in the ratio; absolute microseconds depend on the machine and
are not comparable between runs. "95% CI" is a paired bootstrap interval of the p50 ratio: a
goal is clearly met or missed only when the whole interval lies on one side of it. p99 ratios
rest on the slowest 1% of requests and are much noisier, and on a small shared machine the
spread between runs can exceed the interval of one run. The blocked ratios are the ones to
hold against the goals (at most 1.05x the plain p50 at sample rate 0.01, at most 1.25x at 1.0):
the interleaved ones charge part of a busy writer's cost to the other variants, which
understates `parity@1` and inflates the baseline. Blocked is also a best case
for rate 1.0 at full load: draining between blocks hides that a writer needing more CPU per
request than the request itself would fall behind, fill its queue and drop samples.

Produced by `{command}` (wall time {elapsed:.0f} s) on:

{machine_md}
"""


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per variant")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per variant")
    parser.add_argument("--block", type=int, default=50, help="requests per blocked round")
    parser.add_argument("--hook-requests", type=int, default=500, help="hook diagnostic size")
    parser.add_argument("--entities", type=int, default=10, help="entity rows per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="Markdown file whose section to rewrite")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repos")
    args = parser.parse_args(argv)
    if args.requests < 100:
        parser.error("--requests must be at least 100 for a meaningful p99")

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("feast").setLevel(logging.ERROR)

    machine = machine_info()
    load_before = load_average()
    for key, value in machine.items():
        print(f"{key + ':':8} {value}")
    print(f"load average before: {load_before}")
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="feast-parity-bench-"))
    try:
        print(f"building the demo repo in {root} ...", flush=True)
        variants = open_variants(root, *build_base_repo(root))
        print(f"warming up ({args.warmup} requests per variant) ...", flush=True)
        warm_up(variants, args.warmup, args.entities, args.seed + 1000)
        flush_all(variants)
        before = {v.name: (counters(v), writer_cpu_seconds(v)) for v in variants}
        print(f"timing {args.requests} requests x {len(variants)} variants ...", flush=True)
        gc.collect()
        measure_interleaved(variants, args.requests, args.entities, args.seed)
        flush_all(variants)  # outside the timed region
        for v in variants:
            c0, cpu0 = before[v.name]
            v.counters = {k: counters(v).get(k, 0) - c0.get(k, 0) for k in COUNTERS} if c0 else {}
            cpu = writer_cpu_seconds(v)
            v.writer_cpu_s = None if cpu is None or cpu0 is None else cpu - cpu0
        gc.collect()
        measure_blocked(variants, args.requests, args.entities, args.seed + 1, args.block)
        if args.hook_requests:
            print(f"timing the hook alone ({args.hook_requests} requests) ...", flush=True)
            measure_hook(variants, args.hook_requests, args.entities, args.seed + 2000)
        elapsed = time.perf_counter() - started
        machine["Load average (1, 5, 15 min)"] = (
            f"{load_before} before the run, {load_average()} after it (`os.getloadavg()`). "
            f"The machine has {os.cpu_count()} cores and is shared: other jobs may have been "
            "running. The benchmark itself keeps one to two threads busy, so the 1-minute "
            "figure after the run includes it; a value well above 2 means neighbours competed "
            "for the cores"
        )
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    interleaved = summarize(variants, "interleaved_ns", args.seed)
    blocked = summarize(variants, "blocked_ns", args.seed)
    print("\ninterleaved:\n" + latency_table(interleaved, variants))
    print("blocked:\n" + latency_table(blocked, None))
    print(hook_table(variants, blocked[0]["p50"]))
    for design, results in (("interleaved", interleaved), ("blocked", blocked)):
        for r in results:
            if r["goal"] is not None:
                ok = "met" if r["r50"] <= r["goal"] else "MISSED"
                print(f"goal {r['name']} ({design}): p50 {r['r50']:.3f}x <= {r['goal']:.2f}x {ok}")
    print(f"wall time {elapsed:.0f} s")
    if args.out:
        script = Path(sys.argv[0]).resolve()
        try:
            script_arg = str(script.relative_to(Path.cwd()))
        except ValueError:
            script_arg = str(script)
        options = [
            f"--{action.dest.replace('_', '-')}={getattr(args, action.dest)}"
            for action in parser._actions
            if action.dest not in ("help", "requests", "out", "keep")
            and getattr(args, action.dest) != action.default
        ]
        command = shlex.join(
            [".venv/bin/python", script_arg, "--requests", str(args.requests), *options]
            + ["--out", str(args.out)]
        )
        body = section(variants, interleaved, blocked, machine, command, args, elapsed)
        replace_section(args.out, SECTION, body)
        print(f"wrote the {SECTION[3:]!r} section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
