"""The parity check on Spark (``feast-parity check --engine spark``, ``parity.engine: spark``).

What runs where (docs/spark.md):

* **executors**: read the window's Parquet sample log (``parity.sample_log``), ask the repo's
  own Feast Spark offline store for the point-in-time rows at the request and at the served
  event time (the entity dataframe is a Spark DataFrame, the answers come back through
  ``to_spark_df()``), and compare each partition with the local engine's per-chunk code
  (:mod:`feast_parity.plugin.spark_partition`), emitting one serialized state per partition;
* **driver**: plans, merges the partition states (counters add, fixed-edge histograms and
  reservoirs merge) and builds and stores the same report as the local engine.

PSI bins are fixed by the first 50,000 offline values of a feature in log order, as the local
engine fixes them: a view with more sampled rows than that takes one more pass (the edge pass)
over the cached answers, which keeps each partition's first values; the driver keeps the first
of them all. So both engines bin alike and their PSI agree exactly.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import replace
from typing import Any

from feast_parity.parity.chunk import ComparisonSettings
from feast_parity.parity.edges import EDGE_ROWS
from feast_parity.parity.samplelog.format import KEY_PREFIX
from feast_parity.plugin.check_state import CheckContext
from feast_parity.plugin.errors import CheckError
from feast_parity.plugin.offline import quiet_query_errors
from feast_parity.plugin.registry import ViewInfo
from feast_parity.plugin.spark_partition import (
    FILE,
    REQUEST_TIME,
    ROW,
    SAMPLE,
    SERVED_TIME,
    SIDE,
    STATE_SCHEMA,
    PartitionPlan,
    PartitionState,
    compare_partition,
    merged_state,
    request_column,
    served_column,
)
from feast_parity.store.engine import describe_error
from feast_parity.store.samples import parquet_first_id

PARTITION_ROWS = 500_000  # sampled rows per partition, at least one partition per core
_SPARK_SCHEMES = {"local": "file://", "s3": "s3a://", "gcs": "gs://"}


def spark_session(spark_conf: dict[str, str], offline_conf: dict[str, str] | None) -> Any:
    """The Spark session of the check (Feast's Spark store reuses the active one), or
    CheckError naming what to install."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise CheckError(
            "--engine spark needs pyspark: pip install 'feast-parity[spark]'"
        ) from None
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))) and not (
        shutil.which("java")
    ):
        raise CheckError(
            "--engine spark needs a Java 17 runtime: install one (Debian: apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    quiet_query_errors()
    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set("spark.sql.session.timeZone", "UTC")
        return active
    settings = {**(offline_conf or {}), **spark_conf}
    if "spark.master" not in settings and "PYSPARK_GATEWAY_PORT" not in os.environ:
        settings["spark.master"] = "local[*]"  # not under spark-submit: this machine
    settings.setdefault("spark.ui.enabled", "false")
    settings.setdefault("spark.ui.showConsoleProgress", "false")
    if str(settings.get("spark.master", "")).startswith("local"):
        # Spark's 200 shuffle partitions are for clusters; on one machine they are overhead
        settings.setdefault("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 2)))
    settings["spark.sql.session.timeZone"] = "UTC"  # event times are UTC microseconds
    builder = SparkSession.builder.appName("feast-parity check")
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        raise CheckError(f"cannot start Spark: {_short(exc)}") from None
    session.sparkContext.setLogLevel("FATAL")  # failures reach the user as one line
    return session


class SparkEngine:
    """The comparison on Spark: the sample log, the point-in-time join and the comparison of
    each partition run on executors; the driver merges the partition states into the
    context, so the report and the stored run are the local engine's."""

    name = "spark"

    def __init__(self, context: CheckContext) -> None:
        self.context = context
        offline = context.store.config.offline_store
        if getattr(offline, "type", "") != "spark":
            raise CheckError(
                f"--engine spark needs the Spark offline store (offline_store: type: spark); "
                f"this repo's is {getattr(offline, 'type', '?')!r}: use --engine local"
            )
        if context.sample_log.parquet is None:
            raise CheckError(
                "--engine spark reads the Parquet sample log: set parity.sample_log "
                "(a directory or an s3://, gs:// URI)"
            )
        self.spark = spark_session(
            dict(context.config.spark_conf), dict(getattr(offline, "spark_conf", None) or {})
        )
        context.timings["spark_seconds"] = 0.0

    def compare(self, context: CheckContext) -> None:
        ctx = self.context = context
        files = ctx.sample_log.parquet_files(ctx.since, ctx.until)
        if ctx.labeler is not None:
            ctx.note_once(
                "cohort slices are computed by --engine local only; this Spark run has none"
            )
        done = 0
        total = sum(ctx.sample_log.views(ctx.since, ctx.until).values()) if ctx.progress else 0
        for view_name in sorted(files):
            if not ctx.reads(view_name):
                continue
            info = ctx.catalog.get(view_name)
            if info is not None and info.on_demand:
                ctx.note_once(
                    f"on-demand view {view_name} is recomputed by --engine local only; its "
                    "samples were not compared on Spark"
                )
                continue
            started = time.perf_counter()
            try:
                rows = self._check_view(view_name, info, files[view_name])
            except CheckError:
                raise
            except Exception as exc:  # a Spark failure: nothing is stored for this window
                raise CheckError(
                    f"the Spark job failed on feature view {view_name}: {_short(exc)}"
                ) from None
            ctx.timings["spark_seconds"] += time.perf_counter() - started
            done += rows
            if ctx.progress:  # per view: Spark shows no row counts while a job runs
                ctx.progress(done, max(done, total))
        if ctx.progress:
            ctx.progress(max(done, total), max(done, total))

    # -- one view --

    def _check_view(self, view_name: str, info: ViewInfo | None, paths: list[str]) -> int:
        log = self._log_rows(paths)
        if log is None:  # no file of the view reads: all counted as damaged
            self._count_damaged(set(), paths)
            return 0
        log = log.persist()  # read once: counted, asked of Feast (which scans it thrice), joined
        try:
            return self._check_rows(view_name, info, paths, log)
        finally:
            log.unpersist()

    def _check_rows(self, view_name: str, info: ViewInfo | None, paths: list[str], log: Any) -> int:

        per_file = dict(log.groupBy(FILE).count().collect())
        self._count_damaged(set(per_file), paths)
        rows = int(sum(per_file.values()))
        if info is None:
            self.context.deleted_views[view_name] = rows
            return rows
        if rows == 0:
            return 0
        self._readable_source(info)
        source = info.view.batch_source
        skip = {*info.join_keys, source.timestamp_field, source.created_timestamp_column}
        features = sorted(f for f in info.declared if f not in skip)
        parts = max(self.spark.sparkContext.defaultParallelism, rows // PARTITION_ROWS + 1)
        answers = self._answers(info, log, features, parts)
        two_passes = rows >= EDGE_ROWS  # then the first EDGE_ROWS values fix a feature's bins
        if two_passes:
            answers = answers.persist()  # the join and its shuffle run once for both passes
        try:
            edges = {}
            if two_passes:
                edge_pass = self._pass(answers, info, features, paths, self._settings({}))
                for ref, merged in (edge_pass.features if edge_pass else {}).items():
                    carrier = self.context.settings.new(
                        ref, merged.declared
                    )  # empty, with the bins
                    carrier.adopt_edges(merged)
                    edges[ref] = carrier
            state = self._pass(answers, info, features, paths, self._settings(edges))
        finally:
            if two_passes:
                answers.unpersist()
        if state is not None:
            self._adopt(info, state)
        return rows

    def _settings(self, edges: dict[str, Any]) -> ComparisonSettings:
        """Partition settings: with the edge pass's bins, or (none yet) buffering the first
        values for the driver to fix them."""
        return replace(self.context.settings, defer_edges=not edges, edges=edges)

    def _pass(
        self,
        answers: Any,
        info: ViewInfo,
        features: list[str],
        paths: list[str],
        settings: ComparisonSettings,
    ) -> PartitionState | None:
        filesystem = self.context.sample_log.parquet[0]  # type: ignore[index]
        plan = PartitionPlan(
            view=info.name,
            declared=dict(info.declared),
            ttl_seconds=info.ttl_seconds,
            features=features,
            settings=settings,
            filesystem=filesystem,
            files=dict(enumerate(paths)),
            redaction=dict(self.context.reader.redaction),
            window_us=(self.context.window.start_us, self.context.window.end_us),
            chunk_rows=self.context.chunk_rows,
        )
        states = answers.mapInArrow(compare_partition(plan), STATE_SCHEMA).collect()
        return merged_state([bytes(row[0]) for row in states])

    def _adopt(self, info: ViewInfo, state: PartitionState) -> None:
        """The merged state of a view into the check's, as the local loop leaves it."""
        self.context.samples += state.samples
        self.context.skipped.merge(state.skipped)
        self.context.views[info.name] = state.view
        self.context.features.update(state.features)
        gone = state.served - set(info.declared)
        if gone:
            self.context.missing_registry.setdefault(info.name, set()).update(gone)
        if state.missing:
            self.context.missing_offline.setdefault(info.name, set()).update(state.missing)
            self.context.note_once(
                f"the offline store returned no column for {', '.join(sorted(state.missing))} "
                f"of {info.name}: schema divergence"
            )

    def _readable_source(self, info: ViewInfo) -> None:
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        source = info.view.batch_source
        if not isinstance(source, SparkSource):
            raise CheckError(
                f"feature view {info.name}: its source is a {type(source).__name__}, which the "
                "Spark offline store cannot read; give it a SparkSource or use --engine local"
            )

    def _log_rows(self, paths: list[str]) -> Any:
        """The window's sampled rows of one view: keys, times, file number, row, sample id."""
        from pyspark.sql import functions as F

        filesystem = self.context.sample_log.parquet[0]  # type: ignore[index]
        scheme = _SPARK_SCHEMES.get(filesystem.type_name, f"{filesystem.type_name}://")
        # a damaged or vanished file is left out here and counted by _count_damaged, as the
        # local reader skips and counts it
        schema = _log_schema(filesystem, paths)
        if schema is None:
            return None
        frame = (
            self.spark.read.schema(schema)
            .option("ignoreCorruptFiles", "true")
            .parquet(*[scheme + p for p in paths])
        )
        numbers = self.spark.createDataFrame(
            [(_relative(p), n, parquet_first_id(n)) for n, p in enumerate(paths)],
            "__parity_rel string, " + FILE + " long, __parity_first long",
        )
        keys = [c for c in frame.columns if c.startswith(KEY_PREFIX)]
        start, end = self.context.window.start_us, self.context.window.end_us
        request_us = F.unix_micros(F.col("request_time"))
        rows = (
            frame.select(
                *[F.col(f"`{k}`") for k in keys],
                request_us.alias("__parity_request_us"),
                F.unix_micros(F.col("event_time")).alias("__parity_event_us"),
                # the file's last three path parts, URI-decoded as the listing spells them
                F.url_decode(
                    F.regexp_extract(F.col("_metadata.file_path"), r"([^/]+/[^/]+/[^/]+)$", 1)
                ).alias("__parity_rel"),
                F.col("_metadata.row_index").alias(ROW),
            )
            .where((request_us >= start) & (request_us < end))
            .join(F.broadcast(numbers), "__parity_rel")
        )
        return rows.withColumn(SAMPLE, F.col("__parity_first") + F.col(ROW))

    def _count_damaged(self, seen: set[int], paths: list[str]) -> None:
        """Skip and count the rows of files Spark could not read, as the local reader does:
        a listed file without a row in the window is read here, and if it does not read, its
        rows (from its footer, else one) are skipped with the file named."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from feast_parity.parity.samplelog import LogFormatError, NewerLogError, batch_version
        from feast_parity.store.samples import parquet_rows

        filesystem = self.context.sample_log.parquet[0]  # type: ignore[index]
        for number, path in enumerate(paths):
            if number in seen:
                continue
            try:
                batch_version(pq.read_table(path, filesystem=filesystem).schema)
            except NewerLogError as exc:
                raise CheckError(str(exc)) from None
            except (LogFormatError, OSError, pa.ArrowException):
                name = path.rsplit("/", 1)[-1]
                rows = max(parquet_rows(filesystem, path), 1)  # counted at once, not per row
                self.context.skipped.add(
                    f"damaged Parquet file {name}", parquet_first_id(number), rows
                )

    def _answers(self, info: ViewInfo, log: Any, features: list[str], parts: int) -> Any:
        """Per sampled row: its file, row and sample id, and the Feast answers at the request
        time and at the served event time (``req:``/``srv:`` columns, event times in us), in
        ``parts`` partitions by file, sorted by sample id.

        One entity dataframe holds both times of every row (a side column tells them apart;
        Feast keeps extra entity columns), and its answers are folded back into one row per
        sample by a grouping on the file's partitioning: Feast's query runs once, with no
        join back to the log."""
        from pyspark.sql import functions as F

        from feast_parity.plugin.offline import TIME_COLUMN, _derived_view

        view = info.view
        entity_types = {c.name: _spark_type(str(c.dtype)) for c in view.entity_columns}
        keys = [
            # try_cast: a key spelled "abc" for an Int64 entity matches nothing (as locally),
            # never fails the run (Spark 4 casts in ANSI mode)
            F.col(f"`{KEY_PREFIX}{k}`").try_cast(entity_types.get(k, "string")).alias(k)
            for k in info.join_keys
        ]
        carried = [F.col(FILE), F.col(ROW), F.col(SAMPLE)]
        at_request = log.select(
            *keys,
            *carried,
            F.timestamp_micros(F.col("__parity_request_us")).alias(TIME_COLUMN),
            F.lit(0).alias(SIDE),
        )
        # at the served event time: the end of its second (online stores may drop sub-seconds)
        served_us = F.floor(F.col("__parity_event_us") / 1_000_000) * 1_000_000 + 999_999
        at_served = log.where(F.col("__parity_event_us").isNotNull()).select(
            *keys,
            *carried,
            F.timestamp_micros(served_us.cast("long")).alias(TIME_COLUMN),
            F.lit(1).alias(SIDE),
        )
        derived, timestamp_field = _derived_view(view)
        refs = [f"{view.name}:{f}" for f in features] + [f"{view.name}:{timestamp_field}"]
        result, names = self._retrieve(derived, refs, at_request.unionByName(at_served))

        def side(number: int, name: str, value: Any) -> Any:
            return F.first(F.when(F.col(SIDE) == number, value), ignorenulls=True).alias(name)

        stamp = F.unix_micros(F.col(f"`{names[timestamp_field]}`"))
        folded = [side(0, REQUEST_TIME, stamp), side(1, SERVED_TIME, stamp)]
        for feature in features:
            if feature in names:
                value = F.col(f"`{names[feature]}`")
                folded += [side(0, request_column(feature), value)]
                folded += [side(1, served_column(feature), value)]
        return (
            result.repartition(parts, F.col(FILE))
            .groupBy(FILE, ROW, SAMPLE)
            .agg(*folded)
            .sortWithinPartitions(FILE, SAMPLE)
        )

    def _retrieve(self, derived: Any, refs: list[str], entity_df: Any) -> tuple[Any, dict]:
        """The Spark store's answers, and the column of each feature (bare or prefixed)."""
        try:
            result, full = self.context.reader.retrieve_as(
                derived, refs, entity_df, lambda job: job.to_spark_df()
            )
        except Exception as exc:
            raise CheckError(
                f"feature view {derived.name}: the Spark offline store could not read its "
                f"source: {_short(exc)}"
            ) from None
        prefix = f"{derived.name}__" if full else ""
        features = [ref.split(":", 1)[1] for ref in refs]
        return result, {f: prefix + f for f in features if prefix + f in result.columns}


def _log_schema(filesystem: Any, paths: list[str]) -> Any:
    """The Spark schema of the columns the join needs (join keys, request and event time), as
    the first file whose footer reads has them; None when no file reads. Given, not inferred,
    so that Spark never has to infer it from a damaged file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import from_arrow_schema

    for path in paths:
        try:
            schema = pq.read_schema(path, filesystem=filesystem)
        except (OSError, pa.ArrowException):
            continue
        wanted = [
            f
            for f in schema
            if f.name.startswith(KEY_PREFIX) or f.name in ("request_time", "event_time")
        ]
        return from_arrow_schema(pa.schema(wanted))
    return None


def _spark_type(declared: str) -> str:
    return {"Int64": "long", "Int32": "int", "String": "string"}.get(declared, "string")


def _relative(path: str) -> str:
    return "/".join(path.rstrip("/").split("/")[-3:])


def _short(exc: BaseException | None) -> str:
    """One line about a Spark failure: for an error in a Python worker, the worker's own last
    line (``ModuleNotFoundError: ...``), not Spark's "see the stack trace below"."""
    if exc is None:
        return "unknown error"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "Traceback (most recent call last):" in lines:
        worker = [line for line in lines if not line.startswith(("at ", "File ", "^"))]
        for line in reversed(worker):
            if ": " in line and line.split(":", 1)[0].replace(".", "").isidentifier():
                return line[:300]
    return describe_error(exc)[:300]
