"""What the registry says about served columns: which view and declared type each one has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feast.feature_service import FeatureService
from feast.utils import _get_features


@dataclass(frozen=True)
class ServedColumn:
    """One feature column of an online response, attributed to its feature view."""

    output_name: str  # the name in the response: feature, or view__feature
    feature_view: str  # the registry name of the view (aliases resolved)
    feature: str
    declared_type: str  # Feast type name, e.g. "Float32", "Array(Int64)"
    on_demand: bool


def declared_type_name(dtype: Any) -> str:
    """Feast's type name of a Field dtype: ``Float32``, ``Array(String)`` ..."""
    return str(dtype)


def _view_by_name(registry: Any, project: str, name: str) -> tuple[Any, bool]:
    try:
        return registry.get_feature_view(name, project, allow_cache=True), False
    except Exception:
        pass
    try:
        return registry.get_on_demand_feature_view(name, project, allow_cache=True), True
    except Exception:
        pass
    return registry.get_stream_feature_view(name, project, allow_cache=True), False


def resolve_served_columns(
    registry: Any, project: str, features: list[str] | FeatureService, full_feature_names: bool
) -> list[ServedColumn]:
    """The columns a ``get_online_features`` call returns, with view and declared type."""
    aliases: dict[str, str] = {}
    if isinstance(features, FeatureService):
        service = registry.get_feature_service(features.name, project, allow_cache=True)
        for projection in service.feature_view_projections:
            aliases[projection.name_to_use()] = projection.name
    refs = _get_features(registry, project, features, allow_cache=True)
    columns = []
    views: dict[str, tuple[Any, bool]] = {}
    for ref in refs:
        view_part, feature = ref.split(":", 1)
        view_name = aliases.get(view_part, view_part).split("@", 1)[0]
        if view_name not in views:
            views[view_name] = _view_by_name(registry, project, view_name)
        view, on_demand = views[view_name]
        declared = "Invalid"
        for field in view.features:
            if field.name == feature:
                declared = declared_type_name(field.dtype)
                break
        output = f"{view_part.replace(':', '__')}__{feature}" if full_feature_names else feature
        columns.append(ServedColumn(output, view_name, feature, declared, on_demand))
    return columns


def _source_description(source: Any) -> dict[str, Any]:
    """Name, kind and location (path, table or query) of a data source."""
    if source is None:
        return {"name": None, "kind": None}
    described: dict[str, Any] = {"name": source.name, "kind": type(source).__name__}
    for attribute in ("path", "table", "query"):
        try:
            value = getattr(source, attribute, None)
        except Exception:  # some sources raise for locations they do not have
            value = None
        if value:
            described[attribute] = str(value)
    described["timestamp_field"] = getattr(source, "timestamp_field", None)
    described["field_mapping"] = dict(getattr(source, "field_mapping", None) or {})
    return described


def definition_fingerprint(view: Any, on_demand: bool) -> str:
    """A hash of what decides a view's values: schema, entities, ttl, source; for on-demand
    views the transformation source code. Owner, description and materialization state are
    left out, so only a change that can change values changes the fingerprint.
    """
    import json

    import xxhash

    definition: dict[str, Any] = {
        "name": view.name,
        "schema": sorted((f.name, str(f.dtype)) for f in view.features),
    }
    if on_demand:
        transformation = getattr(view, "feature_transformation", None)
        definition["udf"] = getattr(transformation, "udf_string", None) or getattr(
            view, "udf_string", ""
        )
        definition["mode"] = str(getattr(view, "mode", ""))
        definition["sources"] = sorted(getattr(view, "source_feature_view_projections", {}) or {})
        definition["request_sources"] = sorted(getattr(view, "source_request_sources", {}) or {})
    else:
        definition["entities"] = sorted(view.entities or [])
        definition["entity_columns"] = sorted((c.name, str(c.dtype)) for c in view.entity_columns)
        definition["ttl"] = view.ttl.total_seconds() if view.ttl else 0
        definition["source"] = _source_description(view.batch_source)
    text = json.dumps(definition, sort_keys=True, default=str)
    return f"{xxhash.xxh3_64_intdigest(text.encode()):016x}"


def describe_view(view: Any, on_demand: bool) -> dict[str, Any]:
    """Where a view's values come from, for lineage records."""
    from feast_parity.parity.hashing import hash_hex, schema_fingerprint

    intervals = [
        [start.isoformat(), end.isoformat()]
        for start, end in (getattr(view, "materialization_intervals", None) or [])
    ]
    description: dict[str, Any] = {
        "feature_view": view.name,
        "on_demand": on_demand,
        "owner": getattr(view, "owner", "") or None,
        "tags": dict(view.tags or {}),
        "schema_fingerprint": hash_hex(
            schema_fingerprint({f.name: str(f.dtype) for f in view.features})
        ),
        "definition_fingerprint": definition_fingerprint(view, on_demand),
        "materialization_intervals": intervals,
    }
    if on_demand:
        description["sources"] = sorted(getattr(view, "source_feature_view_projections", {}) or {})
        description["entities"] = []
        description["ttl_seconds"] = None
        description["source"] = {"name": None, "kind": "OnDemandFeatureView"}
    else:
        description["entities"] = list(view.entities or [])
        description["ttl_seconds"] = view.ttl.total_seconds() if view.ttl else 0
        description["source"] = _source_description(view.batch_source)
    return description
