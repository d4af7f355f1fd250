"""The local engine: the check's comparison in this process, one view and chunk at a time.

For each feature view of the window, read the sample log in chunks
(:mod:`feast_parity.store.samples`), ask the offline store for the point-in-time rows of those
chunks (:mod:`feast_parity.plugin.offline`; for local offline stores the view's rows of the window
are pulled once and joined here), classify each row (:mod:`feast_parity.parity.view`) and feed
the per-feature comparisons (:mod:`feast_parity.parity.chunk`). On-demand views are recomputed
from what serving fed them (:mod:`feast_parity.plugin.transform`) after the batch views whose
served values they look up.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from feast_parity.parity.chunk import EntityLabels, compare_chunk
from feast_parity.parity.cohorts import entity_hashes
from feast_parity.parity.lag_series import LagSeries
from feast_parity.parity.samplelog import NewerLogError
from feast_parity.parity.served import ServedRows
from feast_parity.parity.transformation import (
    ServedInputs,
    TransformationParity,
    against_training,
)
from feast_parity.parity.view import ViewComparison, classify, recomputed_outcomes
from feast_parity.plugin.check_state import CheckContext
from feast_parity.plugin.errors import CheckError
from feast_parity.plugin.registry import ViewInfo
from feast_parity.plugin.transform import OnDemandRecompute, Recomputed, sources_of
from feast_parity.store.engine import describe_error


class LocalEngine:
    """The comparison in the check's own process (``--engine local``, the default)."""

    name = "local"

    def __init__(self) -> None:
        self.input_of: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self._recomputed: Recomputed | None = None  # the on-demand chunk being compared

    def compare(self, context: CheckContext) -> None:
        self.context = ctx = context
        self.served_inputs = ServedInputs({})
        self.recompute = OnDemandRecompute(ctx.reader, ctx.catalog, self.served_inputs)
        try:
            views = self.context.sample_log.views(self.context.since, self.context.until)
        except Exception as exc:
            raise CheckError(f"cannot read the sample log: {describe_error(exc)}") from None
        views = {name: count for name, count in views.items() if ctx.reads(name)}
        total = sum(views.values())
        done = 0
        self._plan_inputs(views)
        # batch and stream views first: on-demand rows look up what their inputs were served
        order = sorted(views, key=lambda v: (self._is_on_demand(v), v))
        for view_name in order:
            info = self.context.catalog.get(view_name)
            if info is None:
                self.context.deleted_views[view_name] = views[view_name]
                done += views[view_name]
                continue
            try:
                if self.context.reader.local and not info.on_demand:
                    self._pull(info)  # times itself
                if self.context.reader.local and info.on_demand:
                    for source in sources_of(info.view, self.context.catalog)[0]:
                        self._pull(source.info)
                started = time.perf_counter()
                for rows, skipped in self.context.sample_log.iter_view(
                    view_name, self.context.since, self.context.until, self.context.chunk_rows
                ):
                    self.context.timings["read_seconds"] += time.perf_counter() - started
                    self.context.skipped.merge(skipped)
                    if rows is not None and len(rows):
                        self.context.samples += len(rows)
                        self._check_chunk(info, rows)
                        done += len(rows)
                    if self.context.progress:
                        self.context.progress(min(done, total), total)
                    started = time.perf_counter()
            except NewerLogError as exc:
                raise CheckError(str(exc)) from None
        if self.context.progress:
            self.context.progress(total, total)

    def _is_on_demand(self, view_name: str) -> bool:
        info = self.context.catalog.get(view_name)
        return bool(info is not None and info.on_demand)

    def _plan_inputs(self, views: dict[str, int]) -> None:
        """Which views feed the window's on-demand views, and with which features and keys."""
        wanted: dict[str, set[str]] = {}
        self.input_of = {}
        for view_name in views:
            info = self.context.catalog.get(view_name)
            if info is None or not info.on_demand:
                continue
            sources, _ = sources_of(info.view, self.context.catalog)
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

        if info.name in self.context.reader.pulled:
            return
        started = time.perf_counter()
        names = list(info.join_keys)
        distinct: list[pd.DataFrame] = []
        oldest: int | None = None
        logs = [(info.name, {})] + list(self.input_of.get(info.name, []))
        for log_view, key_map in logs:
            for keys, event_time in self.context.sample_log.iter_keys(
                log_view, self.context.since, self.context.until
            ):
                keys = {k: keys[key_map.get(k, k)] for k in names if key_map.get(k, k) in keys}
                if names and len(keys) != len(names):
                    continue
                frame = pd.DataFrame(keys) if names else pd.DataFrame()
                distinct.append(frame.drop_duplicates() if names else frame)
                valid = event_time[event_time != NO_TIME]
                if valid.size and log_view == info.name:
                    low = int(valid.min())
                    oldest = low if oldest is None else min(oldest, low)
        self.context.timings["read_seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        keys_frame = pd.concat(distinct).drop_duplicates() if distinct and names else pd.DataFrame()
        keys = {k: keys_frame[k].to_numpy(dtype=object) for k in names}
        source = info.view.batch_source
        skip = {*info.join_keys, source.timestamp_field, source.created_timestamp_column}
        features = sorted(f for f in info.declared if f not in skip)
        try:
            self.context.reader.pull(
                info, features, keys, oldest, self.context.since, self.context.until
            )
        except Exception as exc:
            self.context.note_once(
                f"offline rows of {info.name} could not be pulled, so its features were "
                f"compared one chunk at a time instead: {describe_error(exc)}"
            )
        self.context.timings["offline_seconds"] += time.perf_counter() - started

    def _check_chunk(self, info: ViewInfo, rows: ServedRows) -> None:
        view_name = info.name
        served_features = sorted(rows.features)
        in_registry = [f for f in served_features if f in info.declared]
        gone = set(served_features) - set(in_registry)
        if gone:
            self.context.missing_registry.setdefault(view_name, set()).update(gone)
        started = time.perf_counter()
        offline = self._offline(info, rows, in_registry)
        if offline.missing:
            self.context.missing_offline.setdefault(view_name, set()).update(offline.missing)
            self.context.note_once(
                f"the offline store returned no column for {', '.join(sorted(offline.missing))} "
                f"of {view_name}: schema divergence"
            )
        labels = self.context.labeler.labels(rows) if self.context.labeler is not None else None
        self.context.timings["offline_seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        self.served_inputs.add(rows)
        if info.on_demand:
            outcomes = recomputed_outcomes(
                _or_none(offline.recomputed, len(rows)), rows.request_time, rows.event_time
            )
        else:
            outcomes = classify(rows, offline, info.ttl_seconds)
        entity_labels = EntityLabels(rows)
        view = self.context.views.get(view_name)
        if view is None:
            view = self.context.views[view_name] = ViewComparison(
                view_name,
                on_demand=info.on_demand,
                seed=self.context.config.seed,
                lag_series=LagSeries.for_window(
                    self.context.window.start_us, self.context.window.end_us
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
            lambda name: self.context.comparison(info, name, rows),
            rows,
            offline,
            outcomes,
            entity_labels,
            cohort_labels=labels,
            cohort_entities=units,
        )
        if info.on_demand:
            parity = self.context.transformation(info)
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
        self.context.timings["compare_seconds"] += time.perf_counter() - started

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
                    self.context.note_once(result.error)
                else:
                    self.context.note_once(
                        f"the transformation of {info.name} raised on the logged inputs of "
                        f"some rows (counted as udf_errors): {result.error}"
                    )
            if result.failed_rows:
                self.context.transformation(info).failed(result.failed_rows, result.error or "")
            for name, count in (result.unfit_request or {}).items():
                counts = self.context.unfit_request.setdefault(info.name, {})
                counts[name] = counts.get(name, 0) + count
            offline = result.offline or empty
            offline.recomputed = result.recomputed
            offline.inputs_known = result.inputs_known
            offline.inputs_agree = result.inputs_agree
            return offline
        try:
            return self.context.reader.batch_view(info, rows, features)
        except Exception as exc:
            self.context.note_once(
                f"offline retrieval of {info.name} failed, its features were not compared: "
                f"{describe_error(exc)}"
            )
            return empty


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
