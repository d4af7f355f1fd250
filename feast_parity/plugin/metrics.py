"""Prometheus metrics: the serving hook's counters, and gauges of the latest stored check run.

Serving process
    :func:`install` registers :class:`HookCollector` once into prometheus_client's default
    ``REGISTRY``. At every scrape it sums the counters of the live sample-log writers of the
    process (``feast_parity.store.writer.live_writers()``), plus those of writers already
    garbage collected, so the ``_total`` series never go down within a process.

    Feast 0.67's own metrics server (``feast serve --metrics``, or ``metrics.enabled`` in the
    ``feature_server`` block) does **not** serve that registry: ``feast.metrics`` turns on
    prometheus_client's multiprocess mode when Feast is imported (it sets
    ``PROMETHEUS_MULTIPROC_DIR`` to a temp dir) and serves, from a dedicated child process, a
    fresh ``CollectorRegistry`` holding only a ``MultiProcessCollector`` over the metric files
    of that directory. A custom collector in the worker is invisible there. So when the
    multiprocess mode is on, :func:`install` also starts a daemon thread that copies the same
    counters every few seconds into multiprocess ``Counter``/``Gauge`` objects (``registry=None``
    so the in-process registry does not list them twice); their files are what Feast's metrics
    server reads and sums over workers. Either way the names and labels are the same.

Batch job
    :func:`write_textfile` writes the gauges of the latest stored run (per feature, per view,
    the run itself and the open alerts) in the text exposition format, atomically (temp file in
    the same directory, then rename), for node-exporter's textfile collector.

Names follow the Prometheus conventions: ``_total`` counters, ``_seconds`` and ``_ratio`` units.
docs/monitoring.md lists them all.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feast_parity.parity.findings import SEVERITY_RANK
from feast_parity.parity.metrics import feature_gauges
from feast_parity.store import writer as sample_writer

logger = logging.getLogger("feast_parity")

PREFIX = "feast_parity"
SYNC_SECONDS = float(os.environ.get("FEAST_PARITY_METRICS_SYNC_SECONDS", "5"))

# counter name (without _total) -> (help, WriterStats key)
HOOK_COUNTERS = {
    "samples": ("Entity rows chosen by the sampler on the serving path", "sampled_rows"),
    "samples_written": ("Sampled entity rows whose log rows reached the store", "written_rows"),
    "sample_log_rows_written": (
        "Rows written to the sample log (one per sampled entity row and feature view)",
        "written_log_rows",
    ),
    "hook_errors": (
        "Exceptions caught inside the serving hook or sample preparation",
        "hook_errors",
    ),
    "store_errors": ("Failed batch writes to the parity store", "store_errors"),
}
DROP_REASONS = {"queue_full": "dropped_queue_full", "store_error": "dropped_store_error"}
STATS_KEYS = [key for _, key in HOOK_COUNTERS.values()] + list(DROP_REASONS.values())


# --- serving process: counters of the hook ----------------------------------------------------


class _Totals:
    """Counter totals of this process: live writers plus writers already collected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._retired = dict.fromkeys(STATS_KEYS, 0)
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self._fork_baseline = dict.fromkeys(STATS_KEYS, 0)

    def _retire(self, stats: sample_writer.WriterStats) -> None:
        counts = stats.as_dict()
        with self._lock:
            for key in STATS_KEYS:
                self._retired[key] += counts[key]

    def snapshot(self) -> tuple[dict[str, int], int, int, int]:
        """(counter totals, queue depth, queue capacity, running writers) of this process."""
        writers = sample_writer.live_writers()
        with self._lock:
            for writer in writers:
                if writer not in self._seen:
                    self._seen.add(writer)
                    weakref.finalize(writer, self._retire, writer.stats)
            totals = dict(self._retired)
        depth = capacity = running = 0
        for writer in writers:
            counts = writer.stats.as_dict()
            for key in STATS_KEYS:
                totals[key] += counts[key]
            # gauges only of writers whose thread runs (not closed ones, not copies in a fork)
            thread = getattr(writer, "_thread", None)
            if thread is not None and thread.is_alive():
                running += 1
                depth += writer.queue_depth
                capacity += writer.queue_capacity
        for key in STATS_KEYS:
            totals[key] = max(totals[key] - self._fork_baseline[key], 0)
        return totals, depth, capacity, running

    def after_fork(self) -> None:
        """In a forked child, inherited counts belong to the parent: start from them."""
        self._lock = threading.Lock()
        self._fork_baseline = dict.fromkeys(STATS_KEYS, 0)
        self._fork_baseline, *_ = self.snapshot()


_totals = _Totals()


class HookCollector(Collector):
    """Custom collector over the live sample-log writers of this process."""

    def collect(self) -> Iterator[Metric]:
        totals, depth, capacity, running = _totals.snapshot()
        for name, (help_text, key) in HOOK_COUNTERS.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", help_text, value=totals[key])
        dropped = CounterMetricFamily(
            f"{PREFIX}_samples_dropped",
            "Sampled entity rows dropped instead of logged, by reason",
            labels=["reason"],
        )
        for reason, key in DROP_REASONS.items():
            dropped.add_metric([reason], totals[key])
        yield dropped
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_depth", "Snapshots waiting in the writer queue", value=depth
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_capacity", "Capacity of the writer queue (snapshots)", value=capacity
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_writers", "Sample-log writer threads running", value=running
        )


def multiprocess_active() -> bool:
    """True when prometheus_client stores values in PROMETHEUS_MULTIPROC_DIR files (Feast does
    this on import), i.e. when Feast's metrics server can only see multiprocess metrics."""
    from prometheus_client import values

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return bool(directory) and values.ValueClass is not values.MutexValue


class _MultiprocessMirror:
    """The hook counters as multiprocess metrics, for Feast's metrics server (see module doc)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        self.counters = {
            key: Counter(f"{PREFIX}_{name}", help_text, registry=None)
            for name, (help_text, key) in HOOK_COUNTERS.items()
        }
        self.dropped = Counter(
            f"{PREFIX}_samples_dropped",
            "Sampled entity rows dropped instead of logged, by reason",
            ["reason"],
            registry=None,
        )
        self.depth = Gauge(
            f"{PREFIX}_queue_depth",
            "Snapshots waiting in the writer queue",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.capacity = Gauge(
            f"{PREFIX}_queue_capacity",
            "Capacity of the writer queue (snapshots)",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.writers = Gauge(
            f"{PREFIX}_writers",
            "Sample-log writer threads running",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.synced = dict.fromkeys(STATS_KEYS, 0)
        self.lock = threading.Lock()

    def sync(self) -> None:
        totals, depth, capacity, running = _totals.snapshot()
        with self.lock:
            for key in STATS_KEYS:
                delta = totals[key] - self.synced[key]
                if delta <= 0:
                    continue
                self.synced[key] = totals[key]
                if key in self.counters:
                    self.counters[key].inc(delta)
                else:
                    reason = next(r for r, k in DROP_REASONS.items() if k == key)
                    self.dropped.labels(reason=reason).inc(delta)
            self.depth.set(depth)
            self.capacity.set(capacity)
            self.writers.set(running)


_state_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, HookCollector] = (
    weakref.WeakKeyDictionary()
)
_mirror: _MultiprocessMirror | None = None
_mirror_pid: int | None = None


def _mirror_loop(stop_pid: int) -> None:
    import time

    while _mirror is not None and os.getpid() == stop_pid:
        try:
            sync_multiprocess()
        except Exception as exc:  # never let metrics kill anything; log once per process
            logger.debug("feast-parity: metrics sync failed: %r", exc)
        time.sleep(SYNC_SECONDS)


def sync_multiprocess() -> bool:
    """Copy the hook counters into the multiprocess metric files now; False when not active."""
    if _mirror is None or _mirror_pid != os.getpid():
        return False
    _mirror.sync()
    return True


def _start_mirror() -> None:
    global _mirror, _mirror_pid
    if not multiprocess_active():
        return
    if _mirror is not None and _mirror_pid == os.getpid():
        return
    _mirror = _MultiprocessMirror()
    _mirror_pid = os.getpid()
    thread = threading.Thread(
        target=_mirror_loop, args=(_mirror_pid,), name="feast-parity-metrics", daemon=True
    )
    thread.start()


def _after_fork_in_child() -> None:
    """A forked child (a gunicorn worker, Feast's metrics server) starts from zero: its copies
    of the parent's writers have no thread, and :func:`install` there starts its own mirror."""
    global _mirror, _mirror_pid, _state_lock
    _state_lock = threading.Lock()
    _totals.after_fork()
    _mirror, _mirror_pid = None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def install(registry: CollectorRegistry = REGISTRY) -> HookCollector:
    """Register the hook collector once into ``registry`` (default: the process-wide one) and,
    under Feast's multiprocess mode, start mirroring into the metric files. Idempotent."""
    with _state_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = HookCollector()
            registry.register(collector)
            _collectors[registry] = collector
        if registry is REGISTRY:
            _start_mirror()
        return collector


# --- batch job: gauges of the latest stored run -------------------------------------------------

SEVERITY_VALUE = (
    SEVERITY_RANK  # the gauge value of a status: 0 ok, 1 insufficient data, 2 warn, 3 fail
)
FEATURE_GAUGES = {m.name: (str(m.gauge), m.help) for m in feature_gauges()}  # the metrics table
LAG_QUANTILES = {"p50": "0.5", "p95": "0.95", "p99": "0.99"}


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no value


def run_metric_families(report: Mapping[str, Any], open_alerts: Sequence[Any] = ()) -> list[Metric]:
    """Gauge families of one stored run (the report dict) and of the open alerts."""
    project = str(report.get("project", ""))
    families: list[Metric] = []

    def gauge(name: str, help_text: str, labels: Sequence[str]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=["project", *labels])
        families.append(family)
        return family

    feature_families = {
        key: gauge(name, help_text, ["feature_view", "feature"])
        for key, (name, help_text) in FEATURE_GAUGES.items()
    }
    status = gauge(
        "feature_status",
        "Status of the feature: 0 ok, 1 insufficient_data, 2 warn, 3 fail",
        ["feature_view", "feature"],
    )
    key: str | tuple[str, str]  # feature-row keys here, (kind, severity) below
    for row in report.get("features") or []:
        feature = str(row["feature"])
        view = str(row.get("feature_view") or feature.split(":", 1)[0])
        labels = [project, view, feature]
        for key, family in feature_families.items():
            value = _number(row.get(key))
            if value is not None:
                family.add_metric(labels, value)
        status.add_metric(labels, SEVERITY_VALUE.get(row.get("status", "ok"), 0))

    served = gauge(
        "served_lag_seconds",
        "Request time minus served event time, quantile over the sampled rows",
        ["feature_view", "quantile"],
    )
    materialization = gauge(
        "materialization_lag_seconds",
        "Check time minus the end of the last materialization interval",
        ["feature_view"],
    )
    source = gauge(
        "source_lag_seconds", "Check time minus the newest event in the source", ["feature_view"]
    )
    slo = gauge("freshness_slo_seconds", "Freshness SLO of the view", ["feature_view"])
    view_status = gauge(
        "feature_view_status",
        "Freshness status of the view: 0 ok, 1 insufficient_data, 2 warn, 3 fail",
        ["feature_view"],
    )
    for view in report.get("feature_views") or []:
        name = str(view["feature_view"])
        for key, quantile in LAG_QUANTILES.items():
            value = _number((view.get("served_lag_seconds") or {}).get(key))
            if value is not None:
                served.add_metric([project, name, quantile], value)
        for family, key in (
            (materialization, "materialization_lag_seconds"),
            (source, "source_lag_seconds"),
            (slo, "slo_seconds"),
        ):
            value = _number(view.get(key))
            if value is not None:
                family.add_metric([project, name], value)
        view_status.add_metric([project, name], SEVERITY_VALUE.get(view.get("status", "ok"), 0))

    end = datetime.fromisoformat(report["window"]["end"]).timestamp()
    gauge("run_window_end_timestamp_seconds", "End of the latest check window", []).add_metric(
        [project], end
    )
    gauge("run_samples", "Sample-log rows in the latest check window", []).add_metric(
        [project], float(report.get("samples") or 0)
    )
    gauge("run_status", "Status of the latest run: 0 ok, 2 warn, 3 fail", []).add_metric(
        [project], SEVERITY_VALUE.get(report.get("status", "ok"), 0)
    )
    findings = gauge("findings", "Findings of the latest run", ["kind", "severity"])
    counts: dict[tuple[str, str], int] = {}
    for finding in report.get("findings") or []:
        key = (str(finding["kind"]), str(finding["severity"]))
        counts[key] = counts.get(key, 0) + 1
    for (kind, severity), count in sorted(counts.items()):
        findings.add_metric([project, kind, severity], count)

    open_count = gauge("alerts_open", "Open alerts by severity", ["severity"])
    by_severity = {"warn": 0, "fail": 0}
    active = gauge("alert_open", "1 for each open alert", ["signal", "target", "severity"])
    for alert in open_alerts:
        by_severity[alert.severity] = by_severity.get(alert.severity, 0) + 1
        active.add_metric([project, alert.signal, alert.target, alert.severity], 1)
    for severity, count in sorted(by_severity.items()):
        open_count.add_metric([project, severity], count)
    return families


class _StaticCollector(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def exposition_registry(families: Sequence[Metric]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StaticCollector(families))
    return registry


def write_textfile(path: str | os.PathLike[str], families: Sequence[Metric]) -> Path:
    """Write ``families`` in the text format; a temp file in the same directory is renamed over
    ``path``, so the textfile collector never reads a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), exposition_registry(families))
    return target
