"""What the registry says about views and served columns: one lookup, cached per use.

:class:`ViewCatalog` is the only place that asks Feast's registry for a view by name (batch,
stream or on-demand, through ``get_any_feature_view``); the hook, the check, freshness and
lineage all go through it. :func:`served_columns` says, for a ``get_online_features`` call, which
view, projection (alias, join-key map) and declared type each response column has.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import xxhash
from feast.feature_service import FeatureService
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.stream_feature_view import StreamFeatureView


@dataclass(frozen=True)
class ServedColumn:
    """One feature column of an online response, attributed to its view and projection."""

    output_name: str  # the name in the response: feature, or <projection>__feature
    feature_view: str  # the registry name of the view (aliases and versions resolved)
    projection: str  # the name the request used for the view (alias, or the view's name)
    feature: str
    declared_type: str  # Feast type name, e.g. "Float32", "Array(Int64)"
    on_demand: bool
    join_key_map: tuple[tuple[str, str], ...] = ()  # view join key -> request column


@dataclass(frozen=True)
class ViewInfo:
    """A registry view and what the plugin needs of it, computed once."""

    view: Any
    kind: str  # "batch", "stream" or "on_demand"
    declared: dict[str, str]  # feature -> declared type name
    join_keys: tuple[str, ...]  # entity columns (empty for on-demand and entityless views)
    ttl_seconds: float  # 0: no ttl

    @property
    def on_demand(self) -> bool:
        return self.kind == "on_demand"

    @property
    def name(self) -> str:
        return str(self.view.name)


def declared_type_name(dtype: Any) -> str:
    """Feast's type name of a Field dtype: ``Float32``, ``Array(String)`` ..."""
    return str(dtype)


def view_info(view: Any) -> ViewInfo:
    if isinstance(view, OnDemandFeatureView):
        kind, join_keys, ttl = "on_demand", (), 0.0
    else:
        kind = "stream" if isinstance(view, StreamFeatureView) else "batch"
        join_keys = tuple(c.name for c in view.entity_columns if c.name != "__dummy_id")
        ttl = view.ttl.total_seconds() if getattr(view, "ttl", None) else 0.0
    declared = {f.name: declared_type_name(f.dtype) for f in view.features}
    return ViewInfo(view, kind, declared, join_keys, ttl)


class ViewCatalog:
    """Registry views by name, each looked up once (a registry read can cost milliseconds).

    ``views`` and ``service`` seed the catalog with the objects Feast served a request with
    (the hook takes them on the request path), so that what the writer logs later does not
    depend on the registry as it is by then: a view or service changed or removed after the
    request is still logged as served. Names not seeded are looked up in the registry.
    """

    def __init__(
        self,
        registry: Any,
        project: str,
        *,
        allow_cache: bool = True,
        views: Iterable[Any] = (),
        service: Any = None,
    ) -> None:
        self.registry = registry
        self.project = project
        self.allow_cache = allow_cache
        self._views: dict[str, ViewInfo | None] = {}
        for view in views:
            info = view_info(view)
            self._views.setdefault(info.name.split("@", 1)[0], info)
        self._service = service

    def get(self, name: str) -> ViewInfo | None:
        """The view called ``name`` (a version suffix ``@v2`` is ignored), or None."""
        base = name.split("@", 1)[0]
        if base not in self._views:
            try:
                view = self.registry.get_any_feature_view(base, self.project, self.allow_cache)
            except Exception:
                self._views[base] = None
            else:
                self._views[base] = view_info(view)
        return self._views[base]

    def all(self) -> list[ViewInfo]:
        """Every view of the project (batch, stream, on-demand)."""
        views = self.registry.list_all_feature_views(self.project, allow_cache=self.allow_cache)
        out = []
        for view in views:
            info = view_info(view)
            self._views.setdefault(info.name, info)
            out.append(info)
        return sorted(out, key=lambda v: v.name)

    def view(self, name: str) -> Any:
        """The registry's view object called ``name``, or None (a :data:`ViewLookup`)."""
        info = self.get(name)
        return None if info is None else info.view

    def service(self, name: str) -> Any:
        if self._service is not None and self._service.name == name:
            return self._service
        return self.registry.get_feature_service(name, self.project, self.allow_cache)


def served_columns(
    catalog: ViewCatalog, features: list[str] | FeatureService, full_feature_names: bool
) -> list[ServedColumn]:
    """The feature columns a ``get_online_features`` call returns, with view and declared type.

    For a feature service, each projection keeps its alias (``with_name``), its feature subset
    (``view[["a", "b"]]``) and its join-key map; a list of refs names registry views directly.
    Features a view no longer declares are typed ``Invalid``.
    """
    projections: list[tuple[str, str, list[str], tuple[tuple[str, str], ...]]] = []
    if isinstance(features, FeatureService):
        service = catalog.service(features.name)
        for p in service.feature_view_projections:
            projections.append(
                (
                    p.name_to_use(),
                    p.name,
                    [f.name for f in p.features],
                    tuple(sorted((p.join_key_map or {}).items())),
                )
            )
    else:
        for ref in features:
            view_part, _, feature = ref.partition(":")
            projections.append((view_part, view_part, [feature], ()))
    columns = []
    for projection, view_name, names, key_map in projections:
        info = catalog.get(view_name)
        declared = info.declared if info is not None else {}
        on_demand = info.on_demand if info is not None else False
        registry_name = info.name if info is not None else view_name.split("@", 1)[0]
        for feature in names:
            output = (
                f"{projection.replace(':', '__')}__{feature}" if full_feature_names else feature
            )
            columns.append(
                ServedColumn(
                    output,
                    registry_name,
                    projection,
                    feature,
                    declared.get(feature, "Invalid"),
                    on_demand,
                    key_map,
                )
            )
    return columns


def input_columns(
    catalog: ViewCatalog, served: list[ServedColumn], full_feature_names: bool
) -> list[ServedColumn]:
    """The input feature columns Feast reads for the on-demand views among ``served``, named as
    in the response before Feast drops them: ``feature``, or ``<source>__feature`` with full
    feature names. Each is attributed to its source view, like a served column."""
    columns: dict[str, ServedColumn] = {}
    for view_name in dict.fromkeys(c.feature_view for c in served if c.on_demand):
        info = catalog.get(view_name)
        projections = getattr(info.view, "source_feature_view_projections", None) if info else None
        for projection in (projections or {}).values():
            source = catalog.get(projection.name)
            if source is None:
                continue
            prefix = projection.name_to_use().replace(":", "__")
            key_map = tuple(sorted((projection.join_key_map or {}).items()))
            for field in projection.features:
                output = f"{prefix}__{field.name}" if full_feature_names else field.name
                columns.setdefault(
                    output,
                    ServedColumn(
                        output,
                        source.name,
                        projection.name_to_use(),
                        field.name,
                        source.declared.get(field.name, "Invalid"),
                        source.on_demand,
                        key_map,
                    ),
                )
    return list(columns.values())


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


def udf_fingerprint(view: Any) -> str | None:
    """A hash of an on-demand view's transformation as loaded (code and mode), or None."""
    if not isinstance(view, OnDemandFeatureView):
        return None
    transformation = getattr(view, "feature_transformation", None)
    code = getattr(transformation, "udf_string", None) or getattr(view, "udf_string", "") or ""
    mode = str(getattr(view, "mode", ""))
    text = json.dumps({"udf": code, "mode": mode}, sort_keys=True)
    return f"{xxhash.xxh3_64_intdigest(text.encode()):016x}"


def definition_fingerprint(view: Any, on_demand: bool | None = None) -> str:
    """A hash of what decides a view's values: schema, entities, ttl, source; for on-demand
    views the transformation source code. Owner, description and materialization state are
    left out, so only a change that can change values changes the fingerprint.
    """
    if on_demand is None:
        on_demand = isinstance(view, OnDemandFeatureView)
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


# A registry view by name (batch, stream or on-demand), or None: how lineage finds the views an
# on-demand view reads (ViewCatalog.view, or any other lookup)
ViewLookup = Callable[[str], Any]
MAX_INPUT_DEPTH = 8  # on-demand views over on-demand views: deeper is a cycle, not a repo


def _kind_of(view: Any) -> str:
    if isinstance(view, OnDemandFeatureView):
        return "on_demand_feature_view"
    return "stream_feature_view" if isinstance(view, StreamFeatureView) else "feature_view"


def _input_view(projection: Any, lookup: ViewLookup | None) -> dict[str, Any]:
    """One feature-view input of an on-demand view: what it reads of it and where that view's
    values come from (its source, or for an on-demand view its own inputs)."""
    view = None
    if lookup is not None:
        try:
            view = lookup(projection.name)
        except Exception:
            view = None
    described: dict[str, Any] = {
        "name": projection.name_to_use(),
        "feature_view": projection.name,
        "kind": _kind_of(view) if view is not None else "feature_view",
        "features": [f.name for f in projection.features],
        "fields": [{"name": f.name, "type": str(f.dtype)} for f in projection.features],
    }
    if view is None:  # not in the registry (any more): what the projection itself says
        described["source"] = _source_description(getattr(projection, "batch_source", None))
        return described
    if isinstance(view, OnDemandFeatureView):
        described["source"] = {"name": view.name, "kind": "OnDemandFeatureView"}
        described["udf_fingerprint"] = udf_fingerprint(view)
        return described
    described["source"] = _source_description(view.batch_source)
    described["entities"] = list(view.entities or [])
    described["ttl_seconds"] = view.ttl.total_seconds() if view.ttl else 0
    return described


def describe_inputs(
    view: Any, lookup: ViewLookup | None = None, _depth: int = 0
) -> list[dict[str, Any]]:
    """Everything an on-demand view is computed from: each feature view it reads (its features,
    source, entities, ttl), each on-demand view it reads (with its own ``inputs``, recursively),
    by name, then each request source (its fields and their types), by name (the registry does
    not keep the definition's order). ``lookup`` finds the registry's view of an input."""
    inputs = []
    projections = getattr(view, "source_feature_view_projections", None) or {}
    for _, projection in sorted(projections.items()):
        described = _input_view(projection, lookup)
        if described["kind"] == "on_demand_feature_view" and _depth < MAX_INPUT_DEPTH:
            upstream = lookup(projection.name) if lookup is not None else None
            described["inputs"] = describe_inputs(upstream, lookup, _depth + 1)
        inputs.append(described)
    for _, source in sorted((getattr(view, "source_request_sources", None) or {}).items()):
        inputs.append(
            {
                "name": source.name,
                "kind": "request_source",
                "fields": [{"name": f.name, "type": str(f.dtype)} for f in source.schema],
            }
        )
    return inputs


def describe_view(
    view: Any, on_demand: bool | None = None, lookup: ViewLookup | None = None
) -> dict[str, Any]:
    """Where a view's values come from, for lineage records. An on-demand view names everything
    it is computed from (``inputs``, :func:`describe_inputs`; ``lookup`` finds the registry's
    views among them)."""
    from feast_parity.parity.hashing import hash_hex, schema_fingerprint

    if on_demand is None:
        on_demand = isinstance(view, OnDemandFeatureView)
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
        inputs = describe_inputs(view, lookup)
        description["sources"] = sorted(getattr(view, "source_feature_view_projections", {}) or {})
        requests = [i["name"] for i in inputs if i["kind"] == "request_source"]
        description["request_sources"] = requests
        description["entities"] = []
        description["ttl_seconds"] = None
        # the view computes its values: it is their source, from the inputs it names
        description["source"] = {
            "name": view.name,
            "kind": "OnDemandFeatureView",
            "inputs": [i["name"] for i in inputs],
        }
        description["inputs"] = inputs
        description["udf_fingerprint"] = udf_fingerprint(view)
    else:
        description["entities"] = list(view.entities or [])
        description["ttl_seconds"] = view.ttl.total_seconds() if view.ttl else 0
        description["source"] = _source_description(view.batch_source)
    return description
