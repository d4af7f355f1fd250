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
