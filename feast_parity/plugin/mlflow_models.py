"""Which features an MLflow model was trained on, through Feast's own model resolution.

``feast-parity check --model URI`` and ``feast-parity gate --model URI`` start here:

* ``models:/<name>/<version>`` (or ``models:/<name>/<alias>``, ``models:/<name>@<alias>``):
  Feast's ``store.mlflow.resolve_features`` names the feature service (the model version's
  ``feast.feature_service`` tag, else its training run's, checked against the registry and
  the run's ``feast_features.json``);
* ``runs:/<run_id>/<path>``: the model versions registered from that run resolve as above;
  a run never registered is read the same way Feast reads a training run: its
  ``feast.feature_service`` tag.

When no feature service is named, or the one named holds more than the run's
``feast_features.json`` (Feast's auto-log tags the smallest service that holds the refs training
read), the model is checked on the refs of that file: what it was trained on. A model with
neither was logged without Feast metadata: :class:`ModelError`, one line, exit 2.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from feast_parity.plugin.errors import ParityError

FEATURES_ARTIFACT = "feast_features.json"  # written by Feast's store.mlflow.log_model


class ModelError(ParityError):
    """A model URI that cannot be resolved to its features (one line, exit 2)."""


@dataclass
class ModelFeatures:
    """A model and the features it was trained on (registry refs ``view:feature``)."""

    uri: str
    features: list[str]
    feature_service: str | None = None
    run_id: str | None = None
    resolved_by: str = ""
    notes: list[str] = field(default_factory=list)

    def scope(self) -> dict[str, Any]:
        """The report's ``scope`` (without ``features``, which the check adds)."""
        return {
            "model": self.uri,
            "feature_service": self.feature_service,
            "model_run_id": self.run_id,
            "resolved_by": self.resolved_by,
        }


_MODELS = re.compile(r"^models:/([^/@]+)(?:/|@)(.+)$")
_RUNS = re.compile(r"^runs:/([^/]+)(?:/.*)?$")


def _integration(store: Any) -> Any:
    block = getattr(store.config, "mlflow", None)
    if block is None or not getattr(block, "enabled", False):
        raise ModelError(
            "--model needs Feast's mlflow: block in feature_store.yaml "
            "(mlflow: {enabled: true, tracking_uri: ...})"
        )
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ModelError("--model needs mlflow: pip install 'feast-parity[mlflow]'") from None
    client = store.mlflow
    if client is None:
        raise ModelError("Feast could not configure its MLflow integration (see its warning)")
    return client


def _short(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), repr(exc))


def _service_refs(store: Any, name: str) -> list[str]:
    try:
        service = store.get_feature_service(name)
    except Exception:
        raise ModelError(
            f"feature service {name!r} named by the model is not in the Feast registry"
        ) from None
    # the registry's view names: a projection's alias is how the service names it, not the view
    return [f"{p.name}:{f.name}" for p in service.feature_view_projections for f in p.features]


def _service_names(store: Any, name: str) -> set[str]:
    """The refs of a feature service as training names them (a projection's alias, as in
    ``feast_features.json``)."""
    try:
        service = store.get_feature_service(name)
    except Exception:
        return set()
    return {
        f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features
    }


def _logged_refs(client: Any, run_id: str | None) -> list[str] | None:
    """The refs of the run's ``feast_features.json``, or None when it has none."""
    if not run_id:
        return None
    try:
        names = {a.path for a in client.client.list_artifacts(run_id)}
        if FEATURES_ARTIFACT not in names:
            return None
        path = client.client.download_artifacts(run_id, FEATURES_ARTIFACT)
        with open(path) as handle:
            refs = json.load(handle)
    except Exception as exc:
        raise ModelError(
            f"cannot read {FEATURES_ARTIFACT} of run {run_id}: {_short(exc)}"
        ) from None
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs) or not refs:
        raise ModelError(f"{FEATURES_ARTIFACT} of run {run_id} is not a list of feature refs")
    return refs


def _no_metadata(uri: str) -> ModelError:
    return ModelError(
        f"model {uri!r} was logged without Feast metadata (no feast.feature_service tag on the "
        f"model version or its run, no {FEATURES_ARTIFACT}): train inside "
        "store.mlflow.start_run() and log it with store.mlflow.log_model()"
    )


def _version(client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        if version.isdigit():
            return client.client.get_model_version(name, version)
        return client.client.get_model_version_by_alias(name, version)
    except MlflowException as exc:
        raise ModelError(f"model 'models:/{name}/{version}' not found: {_short(exc)}") from None


def _from_registry(store: Any, client: Any, uri: str, name: str, version: str) -> ModelFeatures:
    from feast.mlflow_integration.model_resolver import FeastMlflowModelResolutionError

    canonical = f"models:/{name}/{version}"
    model_version = _version(client, name, version)
    try:
        service = client.resolve_features(canonical)
    except FeastMlflowModelResolutionError as exc:
        # no service named, or the one named is not what the model was trained on (Feast's
        # auto-log tags the smallest service holding the refs read): the run's
        # feast_features.json says exactly what it was trained on
        unnamed = "Could not determine feature service" in str(exc)
        if not unnamed and "Feature mismatch" not in str(exc):
            raise ModelError(f"model {uri!r}: {_short(exc)}") from None
        refs = _logged_refs(client, model_version.run_id)
        if refs is None:
            if unnamed:
                raise _no_metadata(uri) from None
            raise ModelError(f"model {uri!r}: {_short(exc)}") from None
        return ModelFeatures(uri, refs, run_id=model_version.run_id, resolved_by=FEATURES_ARTIFACT)
    return ModelFeatures(
        uri,
        _service_refs(store, service),
        feature_service=service,
        run_id=model_version.run_id,
        resolved_by="feast resolve_features",
    )


def _from_run(store: Any, client: Any, uri: str, run_id: str) -> ModelFeatures:
    from mlflow.exceptions import MlflowException

    try:
        run = client.client.get_run(run_id)
        versions = client.client.search_model_versions(f"run_id = '{run_id}'")
    except MlflowException as exc:
        raise ModelError(f"model {uri!r}: run {run_id} not found: {_short(exc)}") from None
    for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
        try:
            found = _from_registry(store, client, uri, version.name, str(version.version))
        except ModelError:
            continue
        found.notes.append(f"resolved as models:/{version.name}/{version.version}")
        return found
    service = run.data.tags.get("feast.feature_service")
    logged = _logged_refs(client, run_id)
    if service and logged is not None and set(logged) != _service_names(store, service):
        service = None  # the tagged service holds more than the model was trained on
    if service:
        return ModelFeatures(
            uri,
            _service_refs(store, service),
            feature_service=service,
            run_id=run_id,
            resolved_by="run tag feast.feature_service",
        )
    if logged is None:
        raise _no_metadata(uri)
    return ModelFeatures(uri, logged, run_id=run_id, resolved_by=FEATURES_ARTIFACT)


def model_features(store: Any, uri: str) -> ModelFeatures:
    """The features the model at ``uri`` was trained on; :class:`ModelError` when it cannot say."""
    uri = uri.strip()
    models = _MODELS.match(uri)
    runs = _RUNS.match(uri)
    if models is None and runs is None:
        raise ModelError(
            f"--model: {uri!r} is not a model URI: use models:/<name>/<version> "
            "(or /<alias>, @<alias>) or runs:/<run_id>/<path>"
        )
    client = _integration(store)
    try:
        if models is not None:
            return _from_registry(store, client, uri, models.group(1), models.group(2))
        return _from_run(store, client, uri, runs.group(1))  # type: ignore[union-attr]
    except ModelError:
        raise
    except Exception as exc:  # the tracking server: unreachable, refused, ...
        raise ModelError(f"model {uri!r}: MLflow: {_short(exc)}") from None
