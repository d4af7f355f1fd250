"""Training lineage and the training gate: which feature versions, how fresh, how trustworthy.

``ParityProvider.get_historical_features`` hands every retrieval job to
:func:`record_training_retrieval`, which records a training dataset the moment training
materializes the job (``to_df`` / ``to_arrow``), from the result training already holds.
:func:`lineage` and :func:`training_gate` answer training's question before it learns.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from feast_parity.parity.freshness import freshness_status
from feast_parity.parity.profiles import latest_dataset_for, profile_column
from feast_parity.plugin.errors import LineageError
from feast_parity.plugin.freshness import served_lag_percentiles, view_freshness
from feast_parity.plugin.registry import ViewCatalog, describe_view
from feast_parity.store.datasets import list_datasets, record_dataset
from feast_parity.store.runs import load_runs

logger = logging.getLogger("feast_parity")

# Retrievals made by feast-parity itself (the check job) are not training datasets.
_not_training: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "feast_parity_not_training", default=False
)


@contextlib.contextmanager
def not_training() -> Iterator[None]:
    """Within this block, materialized retrievals are not recorded as training datasets."""
    token = _not_training.set(True)
    try:
        yield
    finally:
        _not_training.reset(token)


class TrainingGateError(RuntimeError):
    """The gate refused: ``offenders`` maps each feature ref to the reasons."""

    def __init__(self, offenders: dict[str, list[str]]):
        self.offenders = offenders
        lines = [f"  {ref}: {'; '.join(reasons)}" for ref, reasons in sorted(offenders.items())]
        super().__init__(f"training gate refused {len(offenders)} feature(s):\n" + "\n".join(lines))


# -- recording training retrievals --------------------------------------------------------------


def _result_frame(result: Any) -> pd.DataFrame:
    if isinstance(result, pd.DataFrame):
        return result
    return result.to_pandas()  # a pyarrow Table


def _record(
    provider: Any,
    result: Any,
    feature_views: list[Any],
    feature_refs: list[str],
    project: str,
    full_feature_names: bool,
    lookup: Any = None,
) -> str | None:
    frame = _result_frame(result)
    views = {}
    for view in feature_views:
        on_demand = type(view).__name__ == "OnDemandFeatureView"
        views[view.projection.name_to_use()] = (view, on_demand)
        views.setdefault(view.name, (view, on_demand))
    redacted = set(provider.parity_config.redact)
    features: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    for ref in feature_refs:
        used_name, feature = ref.split(":", 1)  # the name training used: maybe an alias
        found = views.get(used_name)
        if found is None:
            continue
        view, on_demand = found
        registry_ref = f"{view.name}:{feature}"  # lineage and redaction use the registry's name
        declared = next((str(f.dtype) for f in view.features if f.name == feature), "Invalid")
        features[registry_ref] = {
            **describe_view(view, on_demand, lookup),
            "feature": feature,
            "declared_type": declared,
            "requested_as": ref,
        }
        column = f"{used_name.replace(':', '__')}__{feature}" if full_feature_names else feature
        if registry_ref in redacted:
            continue  # a histogram of a redacted feature would store its values in clear
        if column in frame.columns:
            sketch = profile_column(frame[column], declared)
            if sketch is not None:
                profile[registry_ref] = sketch
    times = frame["event_timestamp"] if "event_timestamp" in frame.columns else None
    start = end = None
    if times is not None and len(times):
        stamps = pd.to_datetime(times, utc=True)
        start, end = stamps.min().to_pydatetime(), stamps.max().to_pydatetime()
    engine = provider.parity_engine()
    dataset_id = record_dataset(
        engine,
        project=project,
        feature_refs=sorted(features) or feature_refs,
        row_count=len(frame),
        entity_start=start,
        entity_end=end,
        features=features,
        profile=profile,
    )
    if dataset_id is not None:
        from feast_parity.plugin.openlineage_events import emit_training_retrieval

        emit_training_retrieval(provider.repo_config, project, dataset_id, len(frame), features)
        from feast_parity.plugin.mlflow_runs import log_training_dataset

        log_training_dataset(
            provider.repo_config, dataset_id, project, len(frame), (start, end), features
        )
    return dataset_id


def _on_demand_views(job: Any) -> list[Any]:
    try:
        return list(job.on_demand_feature_views or [])
    except Exception:  # a retrieval job that does not say
        return []


def record_training_retrieval(
    provider: Any,
    job: Any,
    feature_views: list[Any],
    feature_refs: list[str],
    registry: Any,
    project: str,
    full_feature_names: bool,
) -> Any:
    """Make ``job`` record a training dataset when it is materialized; return the same job.

    Only ``to_df`` / ``to_arrow`` record (once per job, whichever comes first): a retrieval that
    training never materializes was not trained on. Recording never raises into training.
    """
    if not provider.parity_config.enabled:
        return job
    state = {"recorded": False}

    def wrap(method_name: str) -> None:
        original = getattr(job, method_name)

        def materialize(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if not state["recorded"] and not _not_training.get():
                state["recorded"] = True
                try:
                    dataset_id = _record(
                        provider,
                        result,
                        # Feast hands the provider the batch views only; the job knows the
                        # on-demand views it computes (their refs are in feature_refs)
                        [*feature_views, *_on_demand_views(job)],
                        list(feature_refs),
                        project,
                        full_feature_names,
                        ViewCatalog(registry, project).view,  # an on-demand view's inputs
                    )
                    job.parity_dataset_id = dataset_id
                except Exception as exc:  # lineage must never break training
                    logger.warning("feast-parity: could not record the training dataset: %r", exc)
            return result

        setattr(job, method_name, materialize)

    for name in ("to_df", "to_arrow"):
        if hasattr(job, name):
            wrap(name)
    return job


# -- lineage and the gate ------------------------------------------------------------------------


def _open_store(store: Any) -> Any:
    if isinstance(store, (str, Path)):
        from feast import FeatureStore

        return FeatureStore(repo_path=str(store))
    return store


def _engine(store: Any) -> sa.Engine:
    from feast_parity.plugin.session import open_engine

    return open_engine(store)


def _resolve_refs(store: Any, features: Any) -> list[str]:
    from feast.feature_service import FeatureService

    if isinstance(features, FeatureService):
        # lineage is keyed by the registry's view names, not a projection's alias
        return [f"{p.name}:{f.name}" for p in features.feature_view_projections for f in p.features]
    if isinstance(features, str):
        features = [features]
    refs = list(features)
    if not refs:
        raise LineageError("no feature refs given: pass refs like 'user_engagement:country'")
    return refs


def _view_for_ref(catalog: ViewCatalog, ref: str) -> tuple[Any, bool, str]:
    if ":" not in ref:
        raise LineageError(f"feature ref {ref!r} is not of the form 'feature_view:feature'")
    view_name, feature = ref.split(":", 1)
    info = catalog.get(view_name)
    if info is None:
        raise LineageError(
            f"unknown feature ref {ref!r}: no feature view {view_name!r} in "
            f"project {catalog.project!r}"
        )
    if feature not in info.declared:
        known = ", ".join(sorted(info.declared))
        raise LineageError(f"unknown feature ref {ref!r}: view {view_name!r} has {known}")
    return info.view, info.on_demand, feature


def view_freshness_now(store: Any, view: Any, sample_log: Any, now: datetime) -> dict[str, Any]:
    """Served, materialization and source lag of a batch view against its SLO."""
    served = served_lag_percentiles(sample_log, view.name, now)
    lags = view_freshness(store, view, now)
    status, ratio = freshness_status(
        lags["slo_seconds"],
        served["p95"],
        lags["materialization_lag_seconds"],
        lags["source_lag_seconds"],
    )
    return {
        "feature_view": view.name,
        "served_lag_seconds": served,
        **lags,
        "status": status,
        "over_ratio": ratio,
    }


def _latest_run_with(runs: Sequence[dict[str, Any]], ref: str) -> dict[str, Any] | None:
    for run in reversed(runs):
        if any(f["feature"] == ref for f in run["features"]):
            return run
    return None


def _concerns(finding: dict[str, Any], ref: str) -> bool:
    """Whether a finding is about the feature ``ref``: its own, or its view's (view-level)."""
    if finding.get("feature") == ref:
        return True
    view = ref.split(":", 1)[0]
    if finding.get("feature_view") != view:
        return False
    named = (finding.get("evidence") or {}).get("features")
    return not named or ref in named or ref.split(":", 1)[1] in named


def _transformation(
    registry: str | None, trained: str | None, run: dict[str, Any] | None, view: str
) -> dict[str, Any]:
    """An on-demand view's transformation fingerprints: the registry's now, the one the latest
    training dataset used, and those the serving processes ran in the latest checked run."""
    serving = []
    if run is not None:
        row: dict[str, Any] = next(
            (v for v in run.get("feature_views", []) if v["feature_view"] == view), {}
        )
        for s in (row.get("transformation") or {}).get("serving", []):
            serving.append(
                {k: s.get(k) for k in ("udf_fingerprint", "writers", "first_seen", "last_seen")}
                | {"matches_registry": s.get("udf_fingerprint") == registry}
            )
    return {"registry": registry, "training": trained, "serving": serving}


def _feature_in(run: dict[str, Any], ref: str) -> dict[str, Any]:
    return next(f for f in run["features"] if f["feature"] == ref)


def lineage(store: Any, features: Any, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """For each feature: where it comes from, its fingerprints now, when it was last trained on
    (and whether its definition changed since), its freshness and its latest parity status."""
    store = _open_store(store)
    now = now or datetime.now(timezone.utc)
    from feast_parity.plugin.session import open_sample_log

    refs = _resolve_refs(store, features)
    catalog = ViewCatalog(store.registry, store.project, allow_cache=False)
    resolved = [(ref, *_view_for_ref(catalog, ref)) for ref in refs]
    engine, sample_log = open_sample_log(store)
    datasets = list_datasets(engine, store.project)
    runs = load_runs(engine, store.project)
    records = []
    fresh_cache: dict[str, dict[str, Any]] = {}
    for ref, view, on_demand, feature in resolved:
        described = describe_view(view, on_demand, catalog.view)
        declared = next(str(f.dtype) for f in view.features if f.name == feature)
        trained = latest_dataset_for(datasets, ref)
        last_trained = None
        if trained is not None:
            then = trained["features"][ref]
            last_trained = {
                "dataset_id": trained["dataset_id"],
                "created_at": trained["created_at"],
                "row_count": trained["row_count"],
                "entity_start": trained["entity_start"],
                "entity_end": trained["entity_end"],
                "definition_fingerprint": then["definition_fingerprint"],
                "definition_changed_since": (
                    then["definition_fingerprint"] != described["definition_fingerprint"]
                ),
            }
        if on_demand:
            fresh = None
        else:
            if view.name not in fresh_cache:
                fresh_cache[view.name] = view_freshness_now(store, view, sample_log, now)
            fresh = fresh_cache[view.name]
        run = _latest_run_with(runs, ref)
        parity = None
        if run is not None:
            row = _feature_in(run, ref)
            parity = {
                "run_id": run["run_id"],
                "window_end": run["window"]["end"],
                "status": row["status"],
                "definition_fingerprint": row.get("definition_fingerprint"),
                "findings": [f for f in run["findings"] if _concerns(f, ref)],
            }
        if on_demand:
            described["transformation"] = _transformation(
                described.get("udf_fingerprint"),
                trained["features"][ref].get("udf_fingerprint") if trained else None,
                run,
                view.name,
            )
        records.append(
            {
                "feature": ref,
                **described,
                "declared_type": declared,
                "last_trained": last_trained,
                "freshness": fresh,
                "parity": parity,
            }
        )
    return records


def gate_reasons(
    record: dict[str, Any],
    runs: Sequence[dict[str, Any]],
    *,
    check_freshness: bool = True,
    require_parity: bool = True,
) -> list[str]:
    """Why the gate refuses one feature (empty: it passes)."""
    reasons = []
    ref = record["feature"]
    parity = record["parity"]
    if parity is not None:
        for finding in parity["findings"]:
            if finding["severity"] == "fail":
                reasons.append(f"open fail finding {finding['kind']}: {finding['message']}")
    fresh = record["freshness"]
    if check_freshness and fresh is not None and fresh["status"] == "fail":
        reasons.append(
            f"view {fresh['feature_view']} is over its freshness SLO ({fresh['slo_source']})"
        )
    if require_parity:
        current = record["definition_fingerprint"]
        clean = [
            r
            for r in runs
            if any(
                f["feature"] == ref
                and f["status"] != "fail"
                and not any(_concerns(x, ref) and x["severity"] == "fail" for x in r["findings"])
                for f in r["features"]
            )
        ]
        if not clean:
            reasons.append("no clean parity run has checked this feature yet")
        else:
            last = _feature_in(clean[-1], ref).get("definition_fingerprint")
            if last != current:
                reasons.append(
                    f"definition changed since its last clean parity run "
                    f"{clean[-1]['run_id']} ({last} -> {current})"
                )
    return reasons


def gate_records(
    store: Any,
    features: Any,
    *,
    check_freshness: bool = True,
    require_clean_parity: bool = True,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The lineage records of ``features``, each with ``gate: {passed, reasons}``, and the
    refused refs with their reasons (the gate's verdict, without raising or logging)."""
    store = _open_store(store)
    records = lineage(store, features, now=now)
    runs = load_runs(_engine(store), store.project)
    offenders = {}
    for record in records:
        reasons = gate_reasons(
            record, runs, check_freshness=check_freshness, require_parity=require_clean_parity
        )
        record["gate"] = {"passed": not reasons, "reasons": reasons}
        if reasons:
            offenders[record["feature"]] = reasons
    return records, offenders


def training_gate(
    store: Any,
    features: Any,
    *,
    on_fail: str = "raise",
    check_freshness: bool = True,
    require_clean_parity: bool = True,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Refuse to train on features with an open fail finding, over their freshness SLO, or whose
    definition changed since their last clean parity run. Returns the lineage records.

    ``on_fail="warn"`` issues a ``UserWarning`` instead of raising ``TrainingGateError``. With
    Feast's ``mlflow:`` block on and an MLflow run active, the verdict, its reasons and the
    parity run consulted are logged on that run first (:mod:`feast_parity.plugin.mlflow_runs`).
    """
    if on_fail not in ("raise", "warn"):
        raise LineageError(f"on_fail must be 'raise' or 'warn', got {on_fail!r}")
    store = _open_store(store)
    records, offenders = gate_records(
        store,
        features,
        check_freshness=check_freshness,
        require_clean_parity=require_clean_parity,
        now=now,
    )
    from feast_parity.plugin.mlflow_runs import log_gate

    log_gate(store.config, records)  # on the active MLflow run, when Feast's block is on
    if offenders:
        error = TrainingGateError(offenders)
        if on_fail == "raise":
            raise error
        warnings.warn(str(error), UserWarning, stacklevel=2)
    return records
