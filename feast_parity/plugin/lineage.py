"""Training lineage: what a training retrieval read, recorded when training materializes it."""

from __future__ import annotations

from typing import Any


def record_training_retrieval(
    provider: Any,
    job: Any,
    feature_views: list[Any],
    feature_refs: list[str],
    registry: Any,
    project: str,
    full_feature_names: bool,
) -> Any:
    """Return ``job`` wrapped so that ``to_df``/``to_arrow`` record a training dataset."""
    return job
