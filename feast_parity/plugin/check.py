"""The parity check job: sampled served rows vs point-in-time offline rows, through Feast.

The loop only: for each feature view of the window, read the sample log in chunks
(:mod:`feast_parity.store.samples`), ask the offline store for the point-in-time rows of those
chunks (:mod:`feast_parity.plugin.offline`), classify each row (:mod:`feast_parity.parity.view`)
and feed the per-feature comparisons (:mod:`feast_parity.parity.feature`); then freshness per
view (:mod:`feast_parity.plugin.freshness`), the report (:mod:`feast_parity.parity.report`) and
the stored run (:mod:`feast_parity.store.runs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from feast_parity.parity.chunk import ComparisonSettings, EntityLabels, compare_chunk
from feast_parity.parity.cohorts import entity_hashes
from feast_parity.parity.feature import FeatureComparison
from feast_parity.parity.lag_series import LagSeries
from feast_parity.parity.report import build_report
from feast_parity.parity.samplelog import NewerLogError
from feast_parity.parity.samplelog.v2 import Skipped
from feast_parity.parity.served import ServedRows
from feast_parity.parity.transformation import (
    ServedInputs,
    TransformationParity,
    against_training,
)
from feast_parity.parity.view import ViewComparison, classify, recomputed_outcomes
from feast_parity.plugin.cohort_labels import CohortLabeler, validate_dimensions
from feast_parity.plugin.errors import CheckError
from feast_parity.plugin.freshness import view_freshness
from feast_parity.plugin.offline import OfflineReader
from feast_parity.plugin.registry import ViewCatalog, ViewInfo, definition_fingerprint
from feast_parity.plugin.session import load_store, open_sample_log
from feast_parity.plugin.transform import (
    OnDemandRecompute,
    Recomputed,
    request_type,
    sources_of,
)
from feast_parity.store.engine import describe_error
from feast_parity.store.runs import store_run

logger = logging.getLogger("feast_parity")

DEFAULT_WINDOW = timedelta(hours=24)


def parse_time(value: str | datetime | None, name: str) -> datetime | None:
    """ISO 8601 date or date-time (naive means UTC) -> aware datetime; errors name the flag."""
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CheckError(f"{name}: not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class ParityCheck:
    """One run of the check over a window; ``run()`` returns the report dict."""

    def __init__(
        self,
        repo: str | Path,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        *,
        chunk_rows: int = 50_000,
        progress: Callable[[int, int], None] | None = None,
        now: datetime | None = None,
        loaded: tuple[Any, Any] | None = None,
    ) -> None:
        self.repo = Path(repo)
        # (FeatureStore, ParityConfig) when the caller has loaded them (open_check)
        self.store, self.config = loaded or load_store(self.repo)
        self.now = now or datetime.now(timezone.utc)
        self.until = parse_time(until, "--until") or self.now
        self.since = parse_time(since, "--since") or (self.until - DEFAULT_WINDOW)
        if self.since >= self.until:
            raise CheckError(
                f"empty window: --since {self.since.isoformat()} is not before "
                f"--until {self.until.isoformat()}"
            )
        if chunk_rows < 1:
            raise CheckError(f"--chunk-rows: must be at least 1 (got {chunk_rows})")
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.engine, self.sample_log = open_sample_log(self.store, self.config)
        self.catalog = ViewCatalog(self.store.registry, self.store.project)
        self.notes: list[str] = []
        self.redacted = set(self.config.redact)
        key = self.config.redaction_key()
        self.reader = OfflineReader(
            self.store,
            {ref: key for ref in self.redacted} if key else {},
            join=self.config.offline_join,
        )
        dims = validate_dimensions(
            self.config.cohorts.dimensions, self.catalog, self.store, self.redacted
        )
        self.labeler = CohortLabeler(dims, self.catalog, self.reader, self.notes) if dims else None
        self._trained_udf: dict[str, str] = {}  # on-demand view -> fingerprint trained on
        self.training_profiles = self._training_profiles()
        thresholds = self.config.thresholds
        self.settings = ComparisonSettings(
            seed=self.config.seed,
            relative_tolerance=thresholds.mismatch_relative_tolerance,
            drift_confidence=thresholds.drift_confidence,
            max_cohorts=self.config.cohorts.max_cohorts,
            redacted=frozenset(self.redacted),
            fill_values=list(self.config.fill_values),
            training=self.training_profiles,
        )
        self.features: dict[str, FeatureComparison] = {}
        self.views: dict[str, ViewComparison] = {}
        self.transformations: dict[str, TransformationParity] = {}
        self.unfit_request: dict[str, dict[str, int]] = {}  # on-demand view -> field -> values
        self.served_inputs = ServedInputs({})
        self.recompute = OnDemandRecompute(self.reader, self.catalog, self.served_inputs)
        self._recomputed: Recomputed | None = None  # the on-demand chunk being compared
        self.missing_registry: dict[str, set[str]] = {}
        self.missing_offline: dict[str, set[str]] = {}
        self.deleted_views: dict[str, int] = {}
        self.skipped = Skipped()
        self.samples = 0
        self.timings = {"read_seconds": 0.0, "offline_seconds": 0.0, "compare_seconds": 0.0}

    def _training_profiles(self) -> dict[str, tuple[Any, str]]:
        """Per feature ref: the newest training profile (histogram, dataset id), if any."""
        from feast_parity.parity.profiles import histogram_from_profile
        from feast_parity.store.datasets import list_datasets

        profiles: dict[str, tuple[Any, str]] = {}
        try:
            datasets = list_datasets(self.engine, self.store.project)
        except Exception as exc:  # lineage is optional: note it, never fail the check on it
            self.notes.append(f"could not read training profiles: {describe_error(exc)}")
            return profiles
        for dataset in datasets:  # newest first
            for ref, described in (dataset.get("features") or {}).items():
                fingerprint = (described or {}).get("udf_fingerprint")
                if fingerprint:
                    self._trained_udf.setdefault(ref.split(":", 1)[0], fingerprint)
            for ref, profile in dataset["profile"].items():
                if ref in profiles or not profile.get("histogram") or ref in self.redacted:
                    continue
                try:
                    profiles[ref] = (histogram_from_profile(profile), dataset["dataset_id"])
                except (KeyError, ValueError):
                    continue
        return profiles

    # -- main loop --

    def run(self, store_results: bool = True) -> dict[str, Any]:
        from feast_parity.plugin.lineage import not_training
        from feast_parity.plugin.openlineage_events import CheckRun

        lineage_run = CheckRun(self.store.config, self.store.project, self.catalog)
        lineage_run.start()
        try:
            with not_training():  # the check's own retrievals are not training datasets
                report = self._run(store_results)
        except BaseException:
            lineage_run.fail()
            raise
        finally:
            self.engine.dispose()
        lineage_run.complete(report)
        return report

    def _run(self, store_results: bool) -> dict[str, Any]:
        try:
            views = self.sample_log.views(self.since, self.until)
        except Exception as exc:
            raise CheckError(f"cannot read the sample log: {describe_error(exc)}") from None
        total = sum(views.values())
        done = 0
        self._plan_inputs(views)
        # batch and stream views first: on-demand rows look up what their inputs were served
        order = sorted(views, key=lambda v: (self._is_on_demand(v), v))
        for view_name in order:
            info = self.catalog.get(view_name)
            if info is None:
                self.deleted_views[view_name] = views[view_name]
                done += views[view_name]
                continue
            try:
                if self.reader.local and not info.on_demand:
                    self._pull(info)  # times itself
                if self.reader.local and info.on_demand:
                    for source in sources_of(info.view, self.catalog)[0]:
                        self._pull(source.info)
                started = time.perf_counter()
                for rows, skipped in self.sample_log.iter_view(
                    view_name, self.since, self.until, self.chunk_rows
                ):
                    self.timings["read_seconds"] += time.perf_counter() - started
                    self.skipped.merge(skipped)
                    if rows is not None and len(rows):
                        self.samples += len(rows)
                        self._check_chunk(info, rows)
                        done += len(rows)
                    if self.progress:
                        self.progress(min(done, total), total)
                    started = time.perf_counter()
            except NewerLogError as exc:
                raise CheckError(str(exc)) from None
        if self.progress:
            self.progress(total, total)
        return self._report(store_results)

    def _is_on_demand(self, view_name: str) -> bool:
        info = self.catalog.get(view_name)
        return bool(info is not None and info.on_demand)

    def _plan_inputs(self, views: dict[str, int]) -> None:
        """Which views feed the window's on-demand views, and with which features and keys."""
        wanted: dict[str, set[str]] = {}
        self.input_of: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for view_name in views:
            info = self.catalog.get(view_name)
            if info is None or not info.on_demand:
                continue
            sources, _ = sources_of(info.view, self.catalog)
            for source in sources:
                wanted.setdefault(source.info.name, set()).update(source.features)
                self.input_of.setdefault(source.info.name, []).append((view_name, source.key_map))
        self.served_inputs.wanted = wanted

    def _pull(self, info: ViewInfo) -> None:
        """Local join: fetch the view's offline rows of the window once (first pass over the
        log's keys, to keep only the sampled entities, its own and those of the on-demand
        views that read it)."""
        import pandas as pd

        from feast_parity.parity.served import NO_TIME

        if info.name in self.reader.pulled:
            return
        started = time.perf_counter()
        names = list(info.join_keys)
        distinct: list[pd.DataFrame] = []
        oldest: int | None = None
        logs = [(info.name, {})] + list(getattr(self, "input_of", {}).get(info.name, []))
        for log_view, key_map in logs:
            for keys, event_time in self.sample_log.iter_keys(log_view, self.since, self.until):
                keys = {k: keys[key_map.get(k, k)] for k in names if key_map.get(k, k) in keys}
                if names and len(keys) != len(names):
                    continue
                frame = pd.DataFrame(keys) if names else pd.DataFrame()
                distinct.append(frame.drop_duplicates() if names else frame)
                valid = event_time[event_time != NO_TIME]
                if valid.size and log_view == info.name:
                    low = int(valid.min())
                    oldest = low if oldest is None else min(oldest, low)
        self.timings["read_seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        keys_frame = pd.concat(distinct).drop_duplicates() if distinct and names else pd.DataFrame()
        keys = {k: keys_frame[k].to_numpy(dtype=object) for k in names}
        source = info.view.batch_source
        skip = {*info.join_keys, source.timestamp_field, source.created_timestamp_column}
        features = sorted(f for f in info.declared if f not in skip)
        try:
            self.reader.pull(info, features, keys, oldest, self.since, self.until)
        except Exception as exc:
            self._note_once(
                f"offline rows of {info.name} could not be pulled, so its features were "
                f"compared one chunk at a time instead: {describe_error(exc)}"
            )
        self.timings["offline_seconds"] += time.perf_counter() - started

    # -- one chunk of one view --

    def _check_chunk(self, info: ViewInfo, rows: ServedRows) -> None:
        view_name = info.name
        served_features = sorted(rows.features)
        in_registry = [f for f in served_features if f in info.declared]
        gone = set(served_features) - set(in_registry)
        if gone:
            self.missing_registry.setdefault(view_name, set()).update(gone)
        started = time.perf_counter()
        offline = self._offline(info, rows, in_registry)
        if offline.missing:
            self.missing_offline.setdefault(view_name, set()).update(offline.missing)
            self._note_once(
                f"the offline store returned no column for {', '.join(sorted(offline.missing))} "
                f"of {view_name}: schema divergence"
            )
        labels = self.labeler.labels(rows) if self.labeler is not None else None
        self.timings["offline_seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        self.served_inputs.add(rows)
        if info.on_demand:
            outcomes = recomputed_outcomes(
                _or_none(offline.recomputed, len(rows)), rows.request_time, rows.event_time
            )
        else:
            outcomes = classify(rows, offline, info.ttl_seconds)
        entity_labels = EntityLabels(rows)
        view = self.views.get(view_name)
        if view is None:
            view = self.views[view_name] = ViewComparison(
                view_name,
                on_demand=info.on_demand,
                seed=self.config.seed,
                lag_series=LagSeries.for_window(
                    int(self.since.timestamp() * 1e6), int(self.until.timestamp() * 1e6)
                ),
            )
        units = None
        if labels:
            # the unit whose rows share one fate: the view's entity (all keys for on-demand)
            units = entity_hashes(
                [rows.all_keys(i) for i in range(len(rows))], info.join_keys or None
            )
        diverged = compare_chunk(
            view,
            lambda name: self._comparison(info, name, rows),
            rows,
            offline,
            outcomes,
            entity_labels,
            cohort_labels=labels,
            cohort_entities=units,
        )
        if info.on_demand:
            parity = self._transformation(info)
            parity.update(
                fingerprints=rows.udf_fingerprint
                if rows.udf_fingerprint is not None
                else np.full(len(rows), None, dtype=object),
                writers=rows.writer,
                request_time=rows.request_time,
                recomputed=outcomes.exact,
                inputs_known=_or_none(offline.inputs_known, len(rows)),
                inputs_agree=_or_none(offline.inputs_agree, len(rows)),
                diverged=diverged,
            )
            if self._recomputed is not None:
                _against_training(parity, rows, self._recomputed, diverged, entity_labels)
        self.timings["compare_seconds"] += time.perf_counter() - started

    def _transformation(self, info: ViewInfo) -> TransformationParity:
        from feast_parity.plugin.registry import udf_fingerprint

        parity = self.transformations.get(info.name)
        if parity is None:
            parity = self.transformations[info.name] = TransformationParity(
                info.name,
                registry_fingerprint=udf_fingerprint(info.view),
                training_fingerprint=self._trained_udf.get(info.name),
            )
        return parity

    def _offline(self, info: ViewInfo, rows: ServedRows, features: list[str]) -> Any:
        from feast_parity.parity.served import NO_TIME
        from feast_parity.parity.view import OfflineRows

        n = len(rows)
        self._recomputed = None
        empty = OfflineRows(
            np.full(n, NO_TIME, dtype=np.int64),
            {},
            np.full(n, NO_TIME, dtype=np.int64),
            {},
            available=False,
        )
        if not features:
            return empty
        if info.on_demand:
            result = self._recomputed = self.recompute.recompute(info, rows, features)
            if result.error:
                if result.offline is None and not result.failed_rows:
                    self._note_once(result.error)
                else:
                    self._note_once(
                        f"the transformation of {info.name} raised on the logged inputs of "
                        f"some rows (counted as udf_errors): {result.error}"
                    )
            if result.failed_rows:
                self._transformation(info).failed(result.failed_rows, result.error or "")
            for name, count in (result.unfit_request or {}).items():
                counts = self.unfit_request.setdefault(info.name, {})
                counts[name] = counts.get(name, 0) + count
            offline = result.offline or empty
            offline.recomputed = result.recomputed
            offline.inputs_known = result.inputs_known
            offline.inputs_agree = result.inputs_agree
            return offline
        try:
            return self.reader.batch_view(info, rows, features)
        except Exception as exc:
            self._note_once(
                f"offline retrieval of {info.name} failed, its features were not compared: "
                f"{describe_error(exc)}"
            )
            return empty

    def _note_once(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def _comparison(self, info: ViewInfo, name: str, rows: ServedRows) -> FeatureComparison:
        ref = f"{info.name}:{name}"
        comparison = self.features.get(ref)
        if comparison is not None:
            return comparison
        declared = info.declared.get(name) or rows.features[name].declared
        comparison = self.settings.new(ref, declared, info.on_demand)
        self.features[ref] = comparison
        return comparison

    # -- results --

    def _report(self, store_results: bool) -> dict[str, Any]:
        started = time.perf_counter()
        thresholds = self.config.thresholds
        features = []
        for ref, comparison in sorted(self.features.items()):
            view_name, name = ref.split(":", 1)
            info = self.catalog.get(view_name)
            result = comparison.result(
                ratio=thresholds.fill_value_ratio,
                min_share=thresholds.fill_value_min_share,
                min_rows=thresholds.fill_value_min_rows,
            )
            result["feature"] = ref
            result["feature_view"] = view_name
            result["declared"] = info.declared.get(name) if info else None
            result["missing_offline"] = name in (
                self.missing_registry.get(view_name, set())
                | self.missing_offline.get(view_name, set())
            )
            result["on_demand"] = comparison.on_demand
            parity = self.transformations.get(view_name)
            if parity is not None:
                result["transformation"] = parity.result()["features"].get(
                    name, {"diverged": 0, "diverged_inputs_known": 0, "code_differs": 0}
                )
            result["definition_fingerprint"] = definition_fingerprint(info.view) if info else None
            features.append(result)
        views = []
        for view_name, view in sorted(self.views.items()):
            info = self.catalog.get(view_name)
            row = {"feature_view": view_name, "on_demand": view.on_demand, **view.result()}
            if info is not None and not info.on_demand:
                row.update(view_freshness(self.store, info.view, self.now))
            else:  # on-demand: computed at request time, nothing materialized
                if view_name in self.transformations:
                    row["transformation"] = self.transformations[view_name].result()
                if self.unfit_request.get(view_name) and info is not None:
                    row["request_schema"] = {
                        field: {"declared": request_type(info.view, field), "unfit": count}
                        for field, count in sorted(self.unfit_request[view_name].items())
                    }
                row.update(
                    {
                        "materialization_lag_seconds": None,
                        "source_lag_seconds": None,
                        "ttl_seconds": None,
                        "slo_seconds": None,
                        "slo_source": "none (on-demand view)",
                    }
                )
            if view.rows and not view.offline_rows and not view.on_demand:
                self._note_once(
                    f"the offline store returned no rows for {view_name} in this window; "
                    "its features cannot be compared"
                )
            if view.future_rows:
                self.notes.append(
                    f"{view.future_rows} served row(s) of {view_name} carry an event time after "
                    "their request time (clock skew or future-dated writes): compared at their "
                    "own event time only"
                )
            if view.online_only_rows:
                self.notes.append(
                    f"{view.online_only_rows} served row(s) of {view_name} have no offline row "
                    "within ttl at their event time (pushed or written online only): not compared"
                )
            views.append(row)
        self._window_notes()
        self.timings["results_seconds"] = time.perf_counter() - started
        report = build_report(
            window=(self.since, self.until),
            samples=self.samples,
            features=features,
            views=views,
            deleted_views=self.deleted_views,
            thresholds=thresholds,
            notes=self.notes,
            project=self.store.project,
            timings=self.timings,
            cohorts=self.config.cohorts if self.labeler is not None else None,
            skipped={"rows": self.skipped.total, "reasons": dict(self.skipped.counts)},
        )
        if store_results:
            try:
                store_run(self.engine, report)
            except Exception as exc:
                raise CheckError(f"cannot store the run: {describe_error(exc)}") from None
        return report

    def _window_notes(self) -> None:
        if self.samples == 0 and not self.deleted_views and not self.skipped.total:
            self.notes.append(
                f"no samples in the window {self.since.isoformat()} .. {self.until.isoformat()}: "
                "is the plugin registered (provider: feast_parity.ParityProvider) and "
                "sample_rate > 0?"
            )
        for view_name, count in sorted(self.deleted_views.items()):
            self.notes.append(
                f"feature view {view_name!r} is no longer in the registry; "
                f"{count} logged samples of it were skipped"
            )
        self.notes.extend(self.skipped.notes())


def _against_training(
    parity: TransformationParity,
    rows: ServedRows,
    result: Recomputed,
    diverged: dict[str, np.ndarray],
    entity_labels: EntityLabels,
) -> None:
    """Outputs against training's computation, and the request fields a stored input
    shadows, into the view's transformation tallies."""
    n = len(rows)
    if result.trained is not None:
        compared, moved = against_training(
            rows.features,
            result.training,
            result.trained,
            _or_none(result.untrainable, n),
            diverged,
        )
        parity.update_training(compared, moved, result.causes)
    for name, shadow in result.shadows.items():
        examples = [
            (
                int(rows.sample_ids[i]),
                {
                    "entity": entity_labels[i],
                    "request_time": _iso_us(int(rows.request_time[i])),
                    "request_value": shadow.request[i],
                    "stored_value": shadow.stored[i],
                },
            )
            for i in np.flatnonzero(shadow.differs)[:3].tolist()
        ]
        parity.update_shadow(
            name,
            shadow.feature,
            active=shadow.active,
            differs=shadow.differs,
            fed_apart=shadow.fed_apart,
            examples=examples,
        )


def _iso_us(micros: int) -> str:
    return str(np.datetime64(micros, "us")) + "Z"


def _or_none(mask: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool) if mask is None else mask


def progress_bar() -> Callable[[int, int], None]:
    """A tqdm progress bar on stderr: samples done of the window's total."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def show(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, unit="samples", desc="checking", leave=True)
        current = bar["bar"]
        current.total = max(total, done)
        current.update(done - current.n)
        if done >= total:
            current.close()

    return show


def run_check(
    repo: str | Path,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    *,
    chunk_rows: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
    now: datetime | None = None,
    store_results: bool = True,
    engine: str | None = None,
) -> dict[str, Any]:
    """Run the parity check on a repo's sample log window; return the report (schema 1).
    ``engine`` (``local`` or ``spark``) overrides the repo's ``parity.engine``."""
    check = open_check(
        repo, since, until, chunk_rows=chunk_rows, progress=progress, now=now, engine=engine
    )
    return check.run(store_results=store_results)


def open_check(
    repo: str | Path,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    *,
    engine: str | None = None,
    **options: Any,
) -> ParityCheck:
    """The check of a repo on its engine: ``engine``, else the repo's ``parity.engine``."""
    if engine not in (None, "local", "spark"):
        raise CheckError(f"--engine: unknown engine {engine!r}; use local or spark")
    loaded = load_store(Path(repo))  # once: it says the engine, and the check reuses it
    engine = engine or loaded[1].engine
    if engine == "spark":
        from feast_parity.plugin.spark_check import SparkParityCheck

        return SparkParityCheck(repo, since, until, loaded=loaded, **options)
    return ParityCheck(repo, since, until, loaded=loaded, **options)
