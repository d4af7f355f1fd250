"""The parity check job: sampled served rows vs point-in-time offline rows, through Feast.

:class:`ParityCheck` opens the repo and the window into a
:class:`~feast_parity.plugin.check_state.CheckContext`, hands it to its engine (the local one,
:mod:`feast_parity.plugin.local_engine`, or Spark, :mod:`feast_parity.plugin.spark_check`: both
implement :class:`~feast_parity.plugin.check_state.CheckEngine`), then adds freshness per view
(:mod:`feast_parity.plugin.freshness`), builds the report (:mod:`feast_parity.parity.report`)
and stores the run (:mod:`feast_parity.store.runs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from feast_parity.parity.chunk import ComparisonSettings
from feast_parity.parity.report import build_report
from feast_parity.parity.window import Window, WindowError
from feast_parity.plugin.check_scope import CheckScope
from feast_parity.plugin.check_state import CheckContext, CheckEngine
from feast_parity.plugin.cohort_labels import CohortLabeler, validate_dimensions
from feast_parity.plugin.errors import CheckError
from feast_parity.plugin.freshness import view_freshness
from feast_parity.plugin.local_engine import LocalEngine
from feast_parity.plugin.offline import OfflineReader
from feast_parity.plugin.registry import ViewCatalog, definition_fingerprint
from feast_parity.plugin.session import load_store, open_sample_log
from feast_parity.plugin.transform import (
    request_type,
)
from feast_parity.store.engine import describe_error
from feast_parity.store.runs import store_run

logger = logging.getLogger("feast_parity")


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
        engine: str | None = None,
        features: Sequence[str] | None = None,
        scope: dict[str, Any] | None = None,
    ) -> None:
        """``engine``: ``local`` or ``spark`` (default: the repo's ``parity.engine``);
        ``features``: check only these refs (``scope``: what named them, e.g. a model)."""
        self.repo = Path(repo)
        # (FeatureStore, ParityConfig) when the caller has loaded them (open_check)
        self.store, self.config = loaded or load_store(self.repo)
        self.now = now or datetime.now(timezone.utc)
        try:
            self.window = Window.of(since, until, self.now)
        except WindowError as exc:
            raise CheckError(str(exc)) from None
        self.since, self.until = self.window.start, self.window.end
        if chunk_rows < 1:
            raise CheckError(f"--chunk-rows: must be at least 1 (got {chunk_rows})")
        self.db, self.sample_log = open_sample_log(self.store, self.config)
        self.catalog = ViewCatalog(self.store.registry, self.store.project)
        self.notes: list[str] = []
        # only these features (check --model), else every feature of the window
        self.scope = CheckScope.of(features, self.catalog, scope)
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
        self.context = CheckContext(
            store=self.store,
            config=self.config,
            window=self.window,
            sample_log=self.sample_log,
            catalog=self.catalog,
            reader=self.reader,
            settings=self.settings,
            chunk_rows=chunk_rows,
            progress=progress,
            labeler=self.labeler,
            trained_udf=self._trained_udf,
            notes=self.notes,
        )
        self.context.scope = self.scope
        self.engine = _engine(engine, self.context)

    def _training_profiles(self) -> dict[str, tuple[Any, str]]:
        """Per feature ref: the newest training profile (histogram, dataset id), if any."""
        from feast_parity.parity.profiles import histogram_from_profile
        from feast_parity.store.datasets import list_datasets

        profiles: dict[str, tuple[Any, str]] = {}
        try:
            datasets = list_datasets(self.db, self.store.project)
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
                self.engine.compare(self.context)
                report = self._report(store_results)
        except BaseException:
            lineage_run.fail()
            raise
        finally:
            self.db.dispose()
        lineage_run.complete(report)
        return report

    # -- results --

    def _report(self, store_results: bool) -> dict[str, Any]:
        ctx = self.context
        started = time.perf_counter()
        thresholds = self.config.thresholds
        features = self._feature_rows()
        views = self._view_rows()
        self._window_notes()
        ctx.timings["results_seconds"] = time.perf_counter() - started
        report = build_report(
            window=(self.since, self.until),
            samples=ctx.samples,
            features=features,
            views=views,
            deleted_views=ctx.deleted_views,
            thresholds=thresholds,
            notes=self.notes,
            project=self.store.project,
            timings=ctx.timings,
            cohorts=self.config.cohorts if self.labeler is not None else None,
            skipped={"rows": ctx.skipped.total, "reasons": dict(ctx.skipped.counts)},
        )
        if self.scope is not None:
            self.scope.finish(report)
        if store_results:
            try:
                store_run(self.db, report)
            except Exception as exc:
                raise CheckError(f"cannot store the run: {describe_error(exc)}") from None
        return report

    def _feature_rows(self) -> list[dict[str, Any]]:
        """Each compared feature's result, with what the registry says of it now."""
        ctx = self.context
        thresholds = self.config.thresholds
        features = []
        for ref, comparison in sorted(ctx.features.items()):
            if self.scope is not None and not self.scope.keeps_feature(ref):
                continue  # read for an on-demand view of the scope, not checked itself
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
                ctx.missing_registry.get(view_name, set())
                | ctx.missing_offline.get(view_name, set())
            )
            result["on_demand"] = comparison.on_demand
            parity = ctx.transformations.get(view_name)
            if parity is not None:
                result["transformation"] = parity.result()["features"].get(
                    name, {"diverged": 0, "diverged_inputs_known": 0, "code_differs": 0}
                )
            result["definition_fingerprint"] = definition_fingerprint(info.view) if info else None
            features.append(result)
        return features

    def _view_rows(self) -> list[dict[str, Any]]:
        """Each view's result with its freshness (batch, stream) or transformation (on-demand),
        noting what could not be compared."""
        ctx = self.context
        views = []
        for view_name, view in sorted(ctx.views.items()):
            if self.scope is not None and not self.scope.keeps_view(view_name):
                continue
            info = self.catalog.get(view_name)
            row = {"feature_view": view_name, "on_demand": view.on_demand, **view.result()}
            if info is not None and not info.on_demand:
                row.update(view_freshness(self.store, info.view, self.now))
            else:  # on-demand: computed at request time, nothing materialized
                if view_name in ctx.transformations:
                    row["transformation"] = ctx.transformations[view_name].result()
                if ctx.unfit_request.get(view_name) and info is not None:
                    row["request_schema"] = {
                        field: {"declared": request_type(info.view, field), "unfit": count}
                        for field, count in sorted(ctx.unfit_request[view_name].items())
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
                ctx.note_once(
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
        return views

    def _window_notes(self) -> None:
        ctx = self.context
        if ctx.samples == 0 and not ctx.deleted_views and not ctx.skipped.total:
            self.notes.append(
                f"no samples in the window {self.since.isoformat()} .. {self.until.isoformat()}: "
                "is the plugin registered (provider: feast_parity.ParityProvider) and "
                "sample_rate > 0?"
            )
        for view_name, count in sorted(ctx.deleted_views.items()):
            self.notes.append(
                f"feature view {view_name!r} is no longer in the registry; "
                f"{count} logged samples of it were skipped"
            )
        self.notes.extend(ctx.skipped.notes())


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
    features: Sequence[str] | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Run the parity check on a repo's sample log window; return the report (schema 1).
    ``engine`` (``local`` or ``spark``) overrides the repo's ``parity.engine``; ``features``
    (refs ``view:feature``) or ``model`` (an MLflow model URI, its features resolved through
    Feast's ``mlflow:`` block) checks only those features."""
    check = open_check(
        repo,
        since,
        until,
        chunk_rows=chunk_rows,
        progress=progress,
        now=now,
        engine=engine,
        features=features,
        model=model,
    )
    return check.run(store_results=store_results)


def open_check(
    repo: str | Path,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    *,
    engine: str | None = None,
    model: str | None = None,
    **options: Any,
) -> ParityCheck:
    """The check of a repo on its engine: ``engine``, else the repo's ``parity.engine``.
    ``model``: check only the features that MLflow model was trained on."""
    if engine not in (None, "local", "spark"):
        raise CheckError(f"--engine: unknown engine {engine!r}; use local or spark")
    loaded = load_store(Path(repo))  # once: it says the engine, and the check reuses it
    if model is not None:
        from feast_parity.plugin.mlflow_models import model_features

        resolved = model_features(loaded[0], model)
        options["features"] = resolved.features
        options["scope"] = resolved.scope()
    return ParityCheck(repo, since, until, loaded=loaded, engine=engine, **options)


def _engine(name: str | None, context: CheckContext) -> CheckEngine:
    """The engine called ``name`` (default: the repo's ``parity.engine``) for ``context``."""
    name = name or context.config.engine
    if name == "spark":
        from feast_parity.plugin.spark_check import SparkEngine

        return SparkEngine(context)
    if name != "local":
        raise CheckError(f"--engine: unknown engine {name!r}; use local or spark")
    return LocalEngine()
