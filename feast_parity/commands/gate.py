"""``feast-parity gate --model URI``: may this model be promoted, by the last check of its
features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from feast_parity.commands.options import UsageError, json_option, repo_option


def render(verdict: dict[str, Any]) -> str:
    from feast_parity.render.text import printable as p

    service = verdict.get("feature_service")
    subject = f"model {verdict['model']}" if verdict.get("model") else "features"
    if service:
        subject += f" (feature service {service})"
    features = verdict["features"]
    refused = [f for f in features if not f["passed"]]
    if refused:
        head = (
            f"{subject}: may NOT be promoted: {len(refused)} of {len(features)} feature(s) refused"
        )
    else:
        head = f"{subject}: may be promoted: {len(features)} feature(s) pass"
    lines = [p(head)]
    for f in features:
        run = f["parity_run_id"] or "never checked"
        lines.append(f"  {'passed ' if f['passed'] else 'REFUSED'}  {p(f['feature'])}  (run {run})")
        lines.extend(f"           {p(reason)}" for reason in f["reasons"])
    return "\n".join(lines)


@click.command()
@click.argument("features", nargs=-1, metavar="[FEATURE_REF...]")
@click.option(
    "--model",
    metavar="URI",
    help="The MLflow model (models:/NAME/VERSION, runs:/RUN_ID/PATH) whose features to judge, "
    "resolved through Feast's mlflow: block.",
)
@repo_option
@json_option
def gate(features: tuple[str, ...], model: str | None, repo: Path, json_out: str | None) -> int:
    """May this model be promoted: exit 0 when every feature it was trained on passes the last
    parity check of it, 1 when one does not."""
    from feast_parity.commands.options import write_json
    from feast_parity.plugin.lineage import gate_records
    from feast_parity.plugin.session import load_store

    if bool(model) == bool(features):
        raise UsageError("give either --model URI or feature refs (view:feature), not both")
    store, _ = load_store(repo)
    verdict: dict[str, Any] = {"model": model, "feature_service": None}
    refs = list(features)
    if model:
        from feast_parity.plugin.mlflow_models import model_features

        resolved = model_features(store, model)
        refs = resolved.features
        verdict.update(resolved.scope())
    # promotion asks what the checks said: freshness now is the training gate's question
    records, offenders = gate_records(store, refs, check_freshness=False)
    verdict["passed"] = not offenders
    verdict["features"] = [
        {
            "feature": r["feature"],
            "passed": r["gate"]["passed"],
            "reasons": r["gate"]["reasons"],
            "parity_run_id": (r["parity"] or {}).get("run_id"),
            "status": (r["parity"] or {}).get("status"),
        }
        for r in records
    ]
    if not write_json(json_out, verdict):
        click.echo(render(verdict))
    return 0 if verdict["passed"] else 1
