"""The parity check job: sampled served rows vs point-in-time offline rows, through Feast.

Reads the sample log of a window in chunks; per chunk and feature view it asks Feast's own
offline store for (a) the point-in-time value at the served row's event time and (b) the value
at request time, with ``get_historical_features``, and (c) the newest offline event at or before
the request time with ``pull_all_from_table_or_query``. Results are joined back on a row id that
travels through the entity dataframe (the Dask store drops rows and reorders). The comparison
itself is pure (``feast_parity.parity.compare``).
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from feast_parity.parity.cohorts import (
    NULL,
    Dimension,
    entity_hashes,
    key_label,
    parse_dimensions,
    value_label,
)
from feast_parity.parity.compare import FeatureComparison, ViewFreshness
from feast_parity.parity.freshness import parse_duration
from feast_parity.parity.report import build_report
from feast_parity.parity.results import store_run
from feast_parity.parity.samplelog import (
    count_samples,
    create_engine,
    decode_json_value,
    ensure_schema,
    iter_sample_chunks,
    redact_url,
)
from feast_parity.plugin.config import ParityConfig, ParityConfigError
from feast_parity.plugin.registry import definition_fingerprint

logger = logging.getLogger("feast_parity")

ROW_ID = "__parity_row"
DEFAULT_WINDOW = timedelta(hours=24)


class CheckError(Exception):
    """A usage or configuration error: the CLI prints the message and exits 2."""


@dataclass
class _ViewState:
    features: dict[str, FeatureComparison] = field(default_factory=dict)
    freshness: ViewFreshness | None = None
    samples: int = 0
    missing_offline: set[str] = field(default_factory=set)


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


def load_store(repo: str | Path) -> tuple[Any, ParityConfig]:
    """The FeatureStore and validated parity config of a repo, or CheckError."""
    from feast import FeatureStore

    repo_path = Path(repo)
    if not (repo_path / "feature_store.yaml").exists():
        raise CheckError(f"--repo: no feature_store.yaml in {repo_path}")
    try:
        store = FeatureStore(repo_path=str(repo_path))
        config = ParityConfig.from_repo_config(store.config)
    except ParityConfigError as exc:
        raise CheckError(str(exc)) from None
    except Exception as exc:
        raise CheckError(f"cannot load the Feast repo at {repo_path}: {exc}") from None
    return store, config


def _lookup_view(store: Any, name: str) -> tuple[Any, bool] | None:
    registry, project = store.registry, store.project
    try:
        return registry.get_feature_view(name, project), False
    except Exception:
        pass
    try:
        return registry.get_on_demand_feature_view(name, project), True
    except Exception:
        return None


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so offline digests match the served ones."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def _offline_type(series: pd.Series, declared: str) -> str | None:
    """Offline column type; integer columns that pandas widened to float for NaNs stay int."""
    dtype = series.dtype
    if series.notna().sum() == 0:
        return None
    if dtype.kind == "f" and declared in ("Int32", "Int64"):
        valid = series.dropna()
        if len(valid) and bool(np.all(np.equal(np.mod(valid.to_numpy(), 1), 0))):
            return "int64"
    if dtype.kind == "O":
        valid = series.dropna()
        if len(valid):
            first = valid.iloc[0]
            if isinstance(first, (list, tuple, np.ndarray)):
                inner = next((v for v in first if v is not None), None)
                kind = (
                    "string"
                    if isinstance(inner, str)
                    else (
                        "float64"
                        if isinstance(inner, (float, np.floating))
                        else "int64"
                        if isinstance(inner, (int, np.integer))
                        else "object"
                    )
                )
                return f"list<{kind}>"
            if isinstance(first, dict):
                return "map"
            return {
                str: "string",
                bytes: "bytes",
                bool: "bool",
                int: "int64",
                float: "float64",
            }.get(type(first), type(first).__name__)
    return str(dtype)


def _values(series: pd.Series) -> np.ndarray:
    """A column's values for the comparison: numbers as float64 (NaN where missing, exactly the
    floats ``float()`` gives), anything else as Python objects with None where missing."""
    if series.dtype.kind in "iuf":
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return _pylist(series)


def _pylist(series: pd.Series) -> np.ndarray:
    """The column's values as Python objects (object array), None where missing."""
    values = series.astype(object).to_numpy(dtype=object, copy=True)
    values[series.isna().to_numpy()] = None
    return values


_PLAIN_JSON_TYPES = frozenset({int, float, str, bool, type(None)})


@dataclass
class FeatureColumn:
    """One served feature of a chunk's log rows, decoded: one entry per row."""

    values: np.ndarray  # object: the served value (None where the row lacks the feature)
    status: np.ndarray  # int: Feast FieldStatus (3 NOT_FOUND where the row lacks the feature)
    online_types: dict[str, int]  # rows per served value kind ("null" where absent)
    declared: dict[str, int]  # rows per registry type at serving time (rows that logged it)
    first_declared: str | None  # the declared type of the first row that logged the feature


def _parse_json_column(texts: Any) -> tuple[list[Any], np.ndarray]:
    """Parse a column of JSON texts: each distinct text once, in one ``json.loads`` call.

    Returns the parsed distinct values and each row's index into them (rows that log the same
    entity row repeat their text exactly, so a window usually has far fewer distinct texts)."""
    encoded = pa.array(np.asarray(texts, dtype=object), type=pa.string()).dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    uniques = encoded.dictionary.to_pylist()
    if not uniques:
        return [], codes
    # one C-level parse of all distinct texts; the collector is paused meanwhile (the parse
    # allocates millions of containers, and each generation-2 pass would walk them all)
    collecting = gc.isenabled()
    gc.disable()
    try:
        parsed = json.loads("[" + ",".join(uniques) + "]")
        if len(parsed) != len(uniques):  # a cell holding several values: parse one by one
            parsed = [json.loads(text) for text in uniques]
    finally:
        if collecting:
            gc.enable()
    return parsed, codes


def decode_feature_columns(texts: Any) -> dict[str, FeatureColumn]:
    """The log's ``features`` JSON of a chunk -> one :class:`FeatureColumn` per served feature.

    One pass: distinct texts are parsed once; rows with the same feature layout are transposed
    together with ``zip``; values are decoded (``decode_json_value``) only when a column holds
    tagged values (bytes, timestamps, maps, lists); then each column is expanded to all rows.
    """
    collecting = gc.isenabled()
    gc.disable()  # see _parse_json_column
    try:
        return _decode_feature_columns(texts)
    finally:
        if collecting:
            gc.enable()


def _decode_feature_columns(texts: Any) -> dict[str, FeatureColumn]:
    parsed, codes = _parse_json_column(texts)
    u = len(parsed)
    layouts: dict[tuple[str, ...], list[int]] = {}
    for j, cells in enumerate(parsed):
        layouts.setdefault(tuple(cells), []).append(j)
    by_name: dict[str, list[np.ndarray]] = {}
    for layout, members in layouts.items():
        idx = np.asarray(members, dtype=np.int64)
        per_feature = zip(*(parsed[j].values() for j in members))
        for name, cells in zip(layout, per_feature):
            column = by_name.get(name)
            if column is None:
                column = by_name[name] = [
                    np.full(u, None, dtype=object),
                    np.full(u, 3, dtype=np.int64),
                    np.full(u, "null", dtype=object),
                    np.full(u, None, dtype=object),
                    np.zeros(u, dtype=bool),
                ]
            parts = list(zip(*cells))
            values: Sequence[Any] | np.ndarray = parts[0]
            if not set(map(type, values)) <= _PLAIN_JSON_TYPES:
                values = [decode_json_value(v) for v in values]
            column[0][idx] = _object_array(values)
            column[1][idx] = parts[1]
            column[2][idx] = _object_array(parts[3])
            # cells of log schema v1 had no declared type (4 fields): the registry's is used
            column[3][idx] = _object_array(parts[4]) if len(parts) > 4 else None
            column[4][idx] = True
    weights = np.bincount(codes, minlength=u)  # rows per distinct text
    first_row = np.full(u, len(codes), dtype=np.int64)
    np.minimum.at(first_row, codes, np.arange(len(codes), dtype=np.int64))
    out = {}
    for name, (values, status, kinds, declared, present) in sorted(by_name.items()):
        first = int(np.argmin(np.where(present, first_row, len(codes) + 1))) if u else 0
        out[name] = FeatureColumn(
            values=values[codes],
            status=status[codes],
            online_types=_weighted_counts(kinds, weights),
            declared=_weighted_counts(declared[present], weights[present]),
            first_declared=str(declared[first]) if u and present[first] else None,
        )
    return out


def _weighted_counts(labels: np.ndarray, weights: np.ndarray) -> dict[str, int]:
    if len(labels) == 0:
        return {}
    if bool(np.all(labels == labels[0])):  # the usual case: one type for every row
        return {str(labels[0]): int(weights.sum())}
    codes, uniques = pd.factorize(labels, use_na_sentinel=False)
    totals = np.bincount(codes, weights=weights, minlength=len(uniques))
    return {str(k): int(t) for k, t in zip(uniques.tolist(), totals.tolist()) if t > 0}


def _object_array(values: Any) -> np.ndarray:
    values = list(values)
    return np.fromiter(values, dtype=object, count=len(values))  # lists stay elements


def decode_entity_keys(texts: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The log's ``entity_key`` JSON of a chunk -> per row the key dict (rows with the same
    key share one dict; treat them as read-only) and its canonical label (sorted-keys JSON)."""
    parsed, codes = _parse_json_column(texts)
    labels = [json.dumps(k, sort_keys=True) for k in parsed]
    rows = codes.tolist()
    return [parsed[c] for c in rows], [labels[c] for c in rows]


def _decode_keys(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``decode_json_value`` of every key dict's values; rows sharing one dict object (as
    ``decode_entity_keys`` returns them) share one decoded dict, decoded once."""
    done: dict[int, dict[str, Any]] = {}
    out = []
    for row in keys:
        decoded = done.get(id(row))
        if decoded is None:
            decoded = done[id(row)] = {k: decode_json_value(v) for k, v in row.items()}
        out.append(decoded)
    return out


def _decoded_key_frame(
    keys: list[dict[str, Any]], columns: list[str] | None = None
) -> pd.DataFrame:
    """DataFrame of the decoded entity keys, one row per key (the distinct keys are decoded and
    framed once, then repeated)."""
    codes, distinct = pd.factorize(np.fromiter((id(k) for k in keys), np.int64, len(keys)))
    firsts: dict[int, dict[str, Any]] = {}
    for i, c in enumerate(codes.tolist()):
        firsts.setdefault(c, keys[i])
    if columns is None:
        rows = [
            {k: decode_json_value(v) for k, v in firsts[c].items()} for c in range(len(distinct))
        ]
    else:
        rows = [
            {k: decode_json_value(firsts[c].get(k)) for k in columns} for c in range(len(distinct))
        ]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.iloc[codes].reset_index(drop=True)


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
    ) -> None:
        self.repo = Path(repo)
        self.store, self.config = load_store(self.repo)
        self.now = now or datetime.now(timezone.utc)
        self.until = parse_time(until, "--until") or self.now
        self.since = parse_time(since, "--since") or (self.until - DEFAULT_WINDOW)
        if self.since >= self.until:
            raise CheckError(
                f"empty window: --since {self.since.isoformat()} is not before "
                f"--until {self.until.isoformat()}"
            )
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.url = self.config.store_url(self.repo)
        try:
            self.engine = create_engine(self.url)
            ensure_schema(self.engine)
        except Exception as exc:
            raise CheckError(
                f"cannot open the parity store {redact_url(self.url)}: {exc}"
            ) from None
        self.notes: list[str] = []
        self._views_by_name: dict[str, tuple[Any, bool] | None] = {}
        self.dimensions = self._cohort_dimensions()
        self.training_profiles = self._training_profiles()
        self.redacted = set(self.config.redact)
        self.redaction_key = self.config.redaction_key()
        self.views: dict[str, _ViewState] = {}
        self.deleted_views: dict[str, int] = {}
        self.timings = {
            "offline_seconds": 0.0,
            "compare_seconds": 0.0,
            "read_seconds": 0.0,
            "decode_seconds": 0.0,
            "results_seconds": 0.0,
        }

    def _view(self, name: str) -> tuple[Any, bool] | None:
        """A registry view by name, looked up once per run (the registry does not change
        under a check, and uncached lookups re-read it)."""
        if name not in self._views_by_name:
            self._views_by_name[name] = _lookup_view(self.store, name)
        return self._views_by_name[name]

    def _training_profiles(self) -> dict[str, tuple[Any, str]]:
        """Per feature ref: the newest training profile (histogram, dataset id), if any."""
        from feast_parity.parity.lineage import histogram_from_profile, list_datasets

        profiles: dict[str, tuple[Any, str]] = {}
        try:
            datasets = list_datasets(self.engine, self.store.project)
        except Exception as exc:  # lineage is optional: note it, never fail the check on it
            self.notes.append(f"could not read training profiles: {exc}")
            return profiles
        for dataset in datasets:  # newest first
            for ref, profile in dataset["profile"].items():
                if ref in profiles or not profile.get("histogram"):
                    continue
                try:
                    profiles[ref] = (histogram_from_profile(profile), dataset["dataset_id"])
                except (KeyError, ValueError):
                    continue
        return profiles

    # -- main loop --

    def run(self, store_results: bool = True) -> dict[str, Any]:
        from feast_parity.plugin.lineage import not_training

        with not_training():  # the check's own retrievals are not training datasets
            return self._run(store_results)

    def _run(self, store_results: bool) -> dict[str, Any]:
        total = count_samples(self.engine, since=self.since, until=self.until)
        done = 0
        read_started = time.perf_counter()
        for chunk in iter_sample_chunks(
            self.engine, since=self.since, until=self.until, chunk_rows=self.chunk_rows
        ):
            self.timings["read_seconds"] += time.perf_counter() - read_started
            frame = chunk.to_pandas()
            labels = self._cohort_labels(frame) if self.dimensions else None
            for view_name, rows in frame.groupby("feature_view", sort=True):
                self._check_view_chunk(
                    str(view_name),
                    rows.reset_index(drop=True),
                    None
                    if labels is None
                    else {d: v.loc[rows.index].to_numpy() for d, v in labels.items()},
                )
            done += chunk.num_rows
            if self.progress:
                self.progress(done, total)
            read_started = time.perf_counter()
        if total == 0:
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
        started = time.perf_counter()
        features, views = self._feature_results(), self._view_results()
        # results: PSI, KS on the reservoirs, source/materialization lags of each view
        self.timings["results_seconds"] = time.perf_counter() - started
        report = build_report(
            window=(self.since, self.until),
            samples=total,
            features=features,
            views=views,
            deleted_views=self.deleted_views,
            thresholds=self.config.thresholds,
            notes=self.notes,
            project=self.store.project,
            timings=self.timings,
            cohorts=self.config.cohorts if self.dimensions else None,
        )
        if store_results:
            store_run(self.engine, report)
        return report

    # -- per chunk and view --

    def _check_view_chunk(
        self,
        view_name: str,
        rows: pd.DataFrame,
        cohort_labels: dict[str, np.ndarray] | None = None,
    ) -> None:
        found = self._view(view_name)
        if found is None:
            self.deleted_views[view_name] = self.deleted_views.get(view_name, 0) + len(rows)
            return
        view, on_demand = found
        state = self.views.setdefault(view_name, _ViewState())
        state.samples += len(rows)
        declared_now = {f.name: str(f.dtype) for f in view.features}
        started = time.perf_counter()
        columns = decode_feature_columns(rows["features"].to_numpy())
        keys, entity_labels = decode_entity_keys(rows["entity_key"].to_numpy())
        self.timings["decode_seconds"] += time.perf_counter() - started
        served = sorted(columns)
        in_registry = [name for name in served if name in declared_now]
        state.missing_offline.update(name for name in served if name not in declared_now)

        request_times = pd.to_datetime(rows["request_time"], utc=True)
        event_times = pd.to_datetime(rows["event_time"], utc=True)
        started = time.perf_counter()
        offline = self._offline_values(
            view_name, in_registry, keys, request_times, event_times, on_demand
        )
        if on_demand:
            stale_lag, exact_rows = None, None
        else:
            stale_lag, exact_rows = self._offline_event_times(
                view, keys, request_times, event_times
            )
        self.timings["offline_seconds"] += time.perf_counter() - started

        started = time.perf_counter()
        if not on_demand:
            if state.freshness is None:
                state.freshness = ViewFreshness(view_name, seed=self.config.seed)
            lag = (request_times - event_times).dt.total_seconds().to_numpy(dtype=np.float64)
            state.freshness.update(lag)
        units = None
        if cohort_labels:
            # the unit whose rows share one fate: the view's entity (all keys for on-demand)
            unit_keys = None if on_demand else [c.name for c in view.entity_columns]
            decoded = _decode_keys(keys)
            units = entity_hashes(decoded, unit_keys)
        for name in served:
            comparison = state.features.get(name)
            column = columns[name]
            declared = declared_now.get(name) or column.first_declared or "Invalid"
            redacted = f"{view_name}:{name}" in self.redacted
            if comparison is None:
                comparison = FeatureComparison(
                    feature=f"{view_name}:{name}",
                    # redacted values compare as opaque digests: equality, not order
                    declared_type="String" if redacted else declared,
                    fill_values=self.config.fill_values,
                    on_demand=on_demand,
                    seed=self.config.seed,
                    max_cohorts=self.config.cohorts.max_cohorts,
                )
                state.features[name] = comparison
                reference = self.training_profiles.get(comparison.feature)
                if reference is not None:
                    comparison.set_training_reference(*reference)
            online_values: np.ndarray | list[Any] = column.values
            status = column.status
            online_types = column.online_types
            declared_serving = {  # cells of log schema v1 carry no declared type
                d: count for d, count in column.declared.items() if d not in (None, "None", "")
            }
            at_event: np.ndarray | list[Any]
            at_request: np.ndarray | list[Any]
            if name in offline:
                at_event, has_event, at_request, offline_type = offline[name]
                if exact_rows is not None:
                    has_event = has_event & exact_rows
            else:
                at_event = [None] * len(rows)
                has_event = np.zeros(len(rows), dtype=bool)
                at_request = [None] * len(rows)
                offline_type = None
            if redacted:
                online_values, at_event, at_request = self._as_digests(
                    declared, online_values, at_event, at_request
                )
            comparison.update(
                online_values,
                status,
                online_types,
                declared_serving,
                at_event,
                has_event,
                at_request,
                offline_type,
                stale_lag,
                entity_labels,
                cohort_labels=cohort_labels,
                cohort_entities=units,
            )
        self.timings["compare_seconds"] += time.perf_counter() - started

    def _as_digests(
        self, declared: str, online: Any, at_event: Any, at_request: Any
    ) -> tuple[list[Any], list[Any], list[Any]]:
        """Served digests as stored; offline values digested with the same key and encoding."""
        from feast_parity.parity.redact import REDACTED_TAG, keyed_digest

        key = self.redaction_key
        assert key is not None

        def served(value: Any) -> Any:
            if isinstance(value, dict) and REDACTED_TAG in value:
                return value[REDACTED_TAG]
            return None if value is None else keyed_digest(key, value, declared)

        def offline(values: Any) -> list[Any]:
            out = []
            for value in list(values):
                missing = value is None or (isinstance(value, float) and np.isnan(value))
                value = _plain(value)
                if declared in ("Int32", "Int64") and isinstance(value, float):
                    value = int(value)  # pandas widens integer columns with gaps to float
                out.append(None if missing else keyed_digest(key, value, declared))
            return out

        return [served(v) for v in list(online)], offline(at_event), offline(at_request)

    def _offline_values(
        self,
        view_name: str,
        features: list[str],
        keys: list[dict[str, Any]],
        request_times: pd.Series,
        event_times: pd.Series,
        on_demand: bool,
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, str | None]]:
        """Per feature: values at served event time, whether that row exists, values at request
        time, and the offline column type. Joined back on a row id, not on position."""
        if not features:
            return {}
        n = len(keys)
        key_frame = _decoded_key_frame(keys)
        found = self._view(view_name)
        if found is not None and not on_demand:
            view_keys = [c.name for c in found[0].entity_columns if c.name in key_frame.columns]
        else:
            view_keys = list(key_frame.columns)
        key_frame = key_frame[view_keys]
        has_event_time = event_times.notna().to_numpy() & (not on_demand)
        request_rows = key_frame.assign(event_timestamp=request_times.to_numpy())
        event_rows = key_frame[has_event_time].assign(
            event_timestamp=event_times[has_event_time].to_numpy()
        )
        # Feast collapses duplicate (entity, timestamp) rows, so ask once per distinct pair and
        # join the answers back on a row id of our own (never on position: Dask reorders).
        both = pd.concat(
            [request_rows, event_rows] if len(event_rows) else [request_rows], ignore_index=True
        )
        both["event_timestamp"] = pd.to_datetime(both["event_timestamp"], utc=True)
        if on_demand:
            # Feast's file store keeps one row per (entity of a source view, timestamp) when it
            # joins an on-demand view's sources, so rows of one request that share a user would
            # collapse. A distinct microsecond per row keeps them apart (data has coarser times).
            both["event_timestamp"] += pd.to_timedelta(np.arange(len(both)), unit="us")
        on = [*view_keys, "event_timestamp"]
        entity_df = both.drop_duplicates(on).reset_index(drop=True)
        entity_df[ROW_ID] = np.arange(len(entity_df), dtype=np.int64)
        row_ids = both.merge(entity_df, on=on, how="left")[ROW_ID].to_numpy()
        request_ids = row_ids[:n]
        event_ids = np.full(n, -1, dtype=np.int64)
        event_ids[has_event_time] = row_ids[n:]
        refs = [f"{view_name}:{name}" for name in features]
        try:
            result = self.store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        except Exception as exc:
            self.notes.append(f"offline retrieval of {view_name} failed: {exc}")
            return {}
        feature_columns = [
            c for c in result.columns if c in features or c.startswith(f"{view_name}__")
        ]
        if result.empty or not result[feature_columns].notna().to_numpy().any():
            self.notes.append(
                f"the offline store returned no rows for {view_name} in this window; "
                "its features cannot be compared"
            )
        result = result.drop_duplicates(ROW_ID).set_index(ROW_ID)
        has_event = np.isin(event_ids, result.index.to_numpy()) & (event_ids >= 0)
        declared_now = {f.name: str(f.dtype) for f in found[0].features} if found else {}
        out = {}
        for name in features:
            column = name if name in result.columns else f"{view_name}__{name}"
            if column not in result.columns:
                continue
            series = result[column]
            by_request = series.reindex(request_ids)
            by_event = series.reindex(event_ids)
            out[name] = (
                _values(by_event),
                has_event,
                _values(by_request),
                _offline_type(series, declared_now.get(name, "Invalid")),
            )
        return out

    def _offline_event_times(
        self,
        view: Any,
        keys: list[dict[str, Any]],
        request_times: pd.Series,
        event_times: pd.Series,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """From the offline event times of the sampled entities, per row: the seconds by which the
        newest offline event at/before request time (within ttl) is newer than the served event
        (0 when not stale, NaN when unknown), and whether an offline row exists at exactly the
        served event time (None when unknown)."""
        n = len(keys)
        lags = np.zeros(n, dtype=np.float64)
        exact = np.zeros(n, dtype=bool)
        served = event_times.notna().to_numpy()
        if not served.any():
            return lags, exact
        source = view.batch_source
        join_keys = [col.name for col in view.entity_columns]
        reverse = {v: k for k, v in (source.field_mapping or {}).items()}
        ts_field = source.timestamp_field
        start = event_times[served].min().to_pydatetime()
        end = request_times.max().to_pydatetime()
        try:
            provider = self.store._get_provider()
            job = provider.offline_store.pull_all_from_table_or_query(
                config=self.store.config,
                data_source=source,
                join_key_columns=[reverse.get(k, k) for k in join_keys],
                feature_name_columns=[],
                timestamp_field=ts_field,
                created_timestamp_column=source.created_timestamp_column or None,
                start_date=start,
                end_date=end,
            )
            newer = job.to_df()
        except Exception as exc:
            self.notes.append(f"could not read offline event times of {view.name}: {exc}")
            lags[:] = np.nan
            return lags, None
        newer = newer.rename(columns={reverse.get(k, k): k for k in join_keys})
        if newer.empty:
            return lags, exact
        left = _decoded_key_frame(keys, list(join_keys))
        left["__request_time"] = pd.to_datetime(request_times, utc=True).to_numpy()
        left["__event_time"] = pd.to_datetime(event_times, utc=True).to_numpy()
        left["__i"] = np.arange(n)
        right = newer[[*join_keys, ts_field]].rename(columns={ts_field: "__offline_time"})
        # merge_asof needs one resolution on both sides: PostgreSQL answers in us, pandas in ns
        right["__offline_time"] = pd.to_datetime(right["__offline_time"], utc=True).astype(
            "datetime64[ns, UTC]"
        )
        for k in join_keys:
            if left[k].dtype != right[k].dtype:
                try:
                    right[k] = right[k].astype(left[k].dtype)
                except (TypeError, ValueError):
                    left[k] = left[k].astype(str)
                    right[k] = right[k].astype(str)
        left = left.sort_values("__request_time")
        right = right.dropna(subset=["__offline_time"]).sort_values("__offline_time")
        merged = pd.merge_asof(
            left,
            right,
            left_on="__request_time",
            right_on="__offline_time",
            by=join_keys,
            direction="backward",
        )
        ttl = view.ttl.total_seconds() if view.ttl else 0.0
        newest = merged["__offline_time"]
        within_ttl = (
            (merged["__request_time"] - newest).dt.total_seconds() <= ttl if ttl > 0 else True
        )
        lag = (newest - merged["__event_time"]).dt.total_seconds()
        stale = newest.notna() & merged["__event_time"].notna() & within_ttl & (lag > 0)
        values = np.where(stale, lag, 0.0)
        lags[merged["__i"].to_numpy()] = values
        at_event = left.merge(
            right.drop_duplicates([*join_keys, "__offline_time"]),
            left_on=[*join_keys, "__event_time"],
            right_on=[*join_keys, "__offline_time"],
            how="inner",
        )
        exact[at_event["__i"].to_numpy()] = True
        return lags, exact

    # -- cohort slices --

    def _cohort_dimensions(self) -> list[Dimension]:
        """The configured dimensions, checked against the registry (CheckError names the key):
        a feature dimension must be a String, Bool or integer feature of a batch feature view,
        a key dimension a join key of an entity."""
        dims = parse_dimensions(self.config.cohorts.dimensions)
        where = "parity.cohorts.dimensions"
        join_keys: set[str] | None = None
        for dim in dims:
            if dim.is_key:
                if join_keys is None:
                    entities = self.store.registry.list_entities(self.store.project)
                    join_keys = {e.join_key for e in entities}
                if dim.key not in join_keys:
                    raise CheckError(
                        f"{where}: {dim.spec!r}: {dim.key!r} is not a join key of any entity "
                        f"(join keys: {', '.join(sorted(join_keys)) or 'none'})"
                    )
                continue
            found = self._view(str(dim.feature_view))
            if found is None or found[1]:
                what = "an on-demand feature view" if found else "not a feature view"
                raise CheckError(
                    f"{where}: {dim.spec!r}: {dim.feature_view!r} is {what}; a dimension must "
                    "be a feature of a batch feature view"
                )
            declared = {f.name: str(f.dtype) for f in found[0].features}
            if dim.feature not in declared:
                raise CheckError(
                    f"{where}: {dim.spec!r}: feature view {dim.feature_view!r} has no feature "
                    f"{dim.feature!r}"
                )
            if declared[dim.feature] not in ("String", "Bool", "Int32", "Int64"):
                raise CheckError(
                    f"{where}: {dim.spec!r} is {declared[dim.feature]}; a dimension feature must "
                    "be String, Bool, Int32 or Int64 (bucket numbers upstream, or slice by a "
                    "join key bucket)"
                )
        return dims

    def _cohort_labels(self, frame: pd.DataFrame) -> dict[str, pd.Series]:
        """Per dimension, the cohort label of every log row of a chunk.

        A key bucket comes from the row's logged entity key. A feature dimension is the
        feature's *offline* value for the row's entity at request time, asked through
        ``get_historical_features`` once per chunk and dimension view (the value training saw;
        a served value could itself be the fault). Rows whose entity key lacks the view's join
        keys, or with no offline value, are ``(null)``."""
        n = len(frame)
        keys = [
            {k: decode_json_value(v) for k, v in json.loads(text).items()}
            for text in frame["entity_key"]
        ]
        labels: dict[str, np.ndarray] = {}
        by_view: dict[str, list[Dimension]] = {}
        for dim in self.dimensions:
            if dim.is_key:
                labels[dim.spec] = np.asarray(
                    [key_label(row.get(str(dim.key)), dim) for row in keys], dtype=object
                )
            else:
                by_view.setdefault(str(dim.feature_view), []).append(dim)
        if by_view:
            request_times = pd.to_datetime(frame["request_time"], utc=True).reset_index(drop=True)
            started = time.perf_counter()
            for view_name, dims in by_view.items():
                values = self._dimension_values(
                    view_name, [str(d.feature) for d in dims], keys, request_times
                )
                for dim in dims:
                    column = values.get(str(dim.feature))
                    labels[dim.spec] = np.asarray(
                        [value_label(v) for v in column] if column is not None else [NULL] * n,
                        dtype=object,
                    )
            self.timings["offline_seconds"] += time.perf_counter() - started
        # aligned with the chunk frame's index, so a view's rows select their labels by index
        return {d: pd.Series(v, index=frame.index) for d, v in labels.items()}

    def _dimension_values(
        self,
        view_name: str,
        features: list[str],
        keys: list[dict[str, Any]],
        request_times: pd.Series,
    ) -> dict[str, np.ndarray]:
        """Offline values of ``features`` of a batch view at request time, per row (None where
        the row's entity key lacks the view's join keys or the store has no value)."""
        found = self._view(view_name)
        n = len(keys)
        if found is None or found[1] or n == 0:
            return {}
        join_keys = [c.name for c in found[0].entity_columns]
        usable = np.asarray([all(k in row for k in join_keys) for row in keys], dtype=bool)
        if not usable.any():
            return {}
        rows = pd.DataFrame([{k: keys[i][k] for k in join_keys} for i in np.flatnonzero(usable)])
        rows["event_timestamp"] = request_times[usable].to_numpy()
        on = [*join_keys, "event_timestamp"]
        entity_df = rows.drop_duplicates(on).reset_index(drop=True)
        entity_df[ROW_ID] = np.arange(len(entity_df), dtype=np.int64)
        row_ids = rows.merge(entity_df, on=on, how="left")[ROW_ID].to_numpy()
        refs = [f"{view_name}:{name}" for name in features]
        try:
            result = self.store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        except Exception as exc:
            self.notes.append(
                f"offline retrieval of cohort dimensions of {view_name} failed: {exc}"
            )
            return {}
        result = result.drop_duplicates(ROW_ID).set_index(ROW_ID)
        ids = np.full(n, -1, dtype=np.int64)
        ids[usable] = row_ids
        out = {}
        for name in features:
            column = name if name in result.columns else f"{view_name}__{name}"
            if column in result.columns:
                out[name] = _pylist(result[column].reindex(ids))
        return out

    # -- results --

    def _feature_results(self) -> list[dict[str, Any]]:
        thresholds = self.config.thresholds
        out = []
        for view_name, state in sorted(self.views.items()):
            found = self._view(view_name)
            declared_now = {f.name: str(f.dtype) for f in found[0].features} if found else {}
            fingerprint = definition_fingerprint(found[0], found[1]) if found else None
            for name, comparison in sorted(state.features.items()):
                result = comparison.result(ratio=thresholds.fill_value_ratio)
                result["feature"] = comparison.feature
                result["feature_view"] = view_name
                result["declared"] = declared_now.get(name)
                result["missing_offline"] = name in state.missing_offline
                result["on_demand"] = comparison.on_demand
                result["definition_fingerprint"] = fingerprint
                out.append(result)
        return out

    def _view_results(self) -> list[dict[str, Any]]:
        out = []
        for view_name, state in sorted(self.views.items()):
            found = self._view(view_name)
            if found is None or found[1]:
                continue
            view = found[0]
            out.append(
                {
                    "feature_view": view_name,
                    "samples": state.samples,
                    "served_lag_seconds": (
                        state.freshness.percentiles()
                        if state.freshness
                        else {"p50": None, "p95": None, "p99": None}
                    ),
                    "served_lag_sample": (state.freshness.lags[:2000] if state.freshness else []),
                    **view_freshness(self.store, view, self.now),
                }
            )
        return out


def view_slo_seconds(view: Any) -> tuple[float | None, str]:
    """The view's freshness SLO in seconds and where it came from (tag, or 2 x ttl)."""
    tag = (view.tags or {}).get("parity.freshness_slo")
    if tag:
        try:
            return parse_duration(tag), f"tag parity.freshness_slo={tag}"
        except ValueError as exc:
            raise CheckError(f"feature view {view.name}: tag parity.freshness_slo: {exc}") from None
    ttl = view.ttl.total_seconds() if view.ttl else 0.0
    if ttl > 0:
        return 2 * ttl, "2 x ttl"
    return None, "none (no tag, ttl 0)"


def materialization_lag_seconds(view: Any, now: datetime) -> float | None:
    """now - end of the last materialization interval recorded in the registry."""
    intervals = getattr(view, "materialization_intervals", None) or []
    if not intervals:
        return None
    end = max(interval[1] for interval in intervals)
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return max((now - end).total_seconds(), 0.0)


def source_lag_seconds(store: Any, view: Any, now: datetime, lookback: timedelta) -> float | None:
    """now - newest event in the view's offline source, asked through Feast's offline store."""
    source = view.batch_source
    reverse = {v: k for k, v in (source.field_mapping or {}).items()}
    join_keys = [reverse.get(col.name, col.name) for col in view.entity_columns]
    try:
        provider = store._get_provider()
        job = provider.offline_store.pull_latest_from_table_or_query(
            config=store.config,
            data_source=source,
            join_key_columns=join_keys,
            feature_name_columns=[],
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column or None,
            start_date=now - lookback,
            end_date=now,
        )
        frame = job.to_df()
    except Exception as exc:  # a broken source is reported, not raised
        logger.warning("feast-parity: could not read the source of %s: %s", view.name, exc)
        return None
    if frame.empty:
        return None
    newest = pd.to_datetime(frame[source.timestamp_field], utc=True).max()
    return max((now - newest.to_pydatetime()).total_seconds(), 0.0)


def view_freshness(store: Any, view: Any, now: datetime) -> dict[str, Any]:
    """Materialization and source lag of a view, its SLO and where the SLO came from."""
    slo, slo_source = view_slo_seconds(view)
    lookback = timedelta(seconds=max(4 * (slo or 0.0), 7 * 86400))
    return {
        "materialization_lag_seconds": _round(materialization_lag_seconds(view, now)),
        "source_lag_seconds": _round(source_lag_seconds(store, view, now, lookback)),
        "slo_seconds": slo,
        "slo_source": slo_source,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def progress_bar(stream: Any = None) -> Callable[[int, int], None]:
    """A one-line progress bar on stderr: samples done of the window's total."""
    stream = stream or sys.stderr

    def show(done: int, total: int) -> None:
        width = 30
        frac = done / total if total else 1.0
        filled = int(width * frac)
        stream.write(
            f"\rchecking [{'#' * filled}{'.' * (width - filled)}] "
            f"{frac:5.1%} {done:,}/{total:,} samples"
        )
        if done >= total:
            stream.write("\n")
        stream.flush()

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
) -> dict[str, Any]:
    """Run the parity check on a repo's sample log window; return the report (schema 1)."""
    check = ParityCheck(repo, since, until, chunk_rows=chunk_rows, progress=progress, now=now)
    return check.run(store_results=store_results)
