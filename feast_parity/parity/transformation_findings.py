"""View-level findings of on-demand views: code that drifted, request data of other types.

(The per-output ``transformation_divergence`` finding is :func:`~feast_parity.parity.findings.
divergence_finding`, beside ``value_mismatch``.)

* Per view, ``transformation_divergence`` with ``evidence.cause = "code_drift"``: a serving
  process ran a transformation whose fingerprint is not the registry's. It names both
  fingerprints, the processes (host:pid) still on the old one and since when; the outputs that
  diverged on that old code fold into it (one cause, one finding). Without diverging outputs it
  warns: the code differs even if no sampled row showed it.
* Per view, ``schema_divergence`` of a request input whose logged values are not of the type
  its request source declares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from feast_parity.parity.findings import CheckThresholds, level, new_finding
from feast_parity.parity.stats import pct


def transformation_view_findings(
    view: Mapping[str, Any],
    features: Sequence[Mapping[str, Any]],
    thresholds: CheckThresholds | None = None,
) -> list[dict[str, Any]]:
    """Code drift, shadowed request fields and request-input findings of one on-demand view's
    report row."""
    name = view["feature_view"]
    out = []
    info = view.get("transformation") or {}
    out.extend(shadow_findings(name, info, thresholds or CheckThresholds()))
    if info.get("code_drift"):
        old = [s for s in info["serving"] if s["matches_registry"] is False]
        diverged = sorted(
            f"{name}:{feature}"
            for feature in {f for s in old for f, count in s["diverged"].items() if count}
        )
        writers = info["stale_writers"]
        message = (
            f"{len(writers)} serving process(es) ran a transformation of {name} other than the "
            f"registry's ({', '.join(s['udf_fingerprint'] for s in old)} vs "
            f"{info['registry_udf_fingerprint']}) since {info['stale_since']} "
            f"({', '.join(writers)}): "
            + (
                f"outputs differ for {', '.join(diverged)}"
                if diverged
                else "no sampled output differed"
                if info.get("recomputed")
                else "no output could be recomputed to compare"
            )
        )
        out.append(
            new_finding(
                "transformation_divergence",
                name,
                "fail" if diverged else "warn",
                message,
                {
                    "cause": "code_drift",
                    "registry_udf_fingerprint": info["registry_udf_fingerprint"],
                    "training_udf_fingerprint": info.get("training_udf_fingerprint"),
                    "serving_udf_fingerprints": [s["udf_fingerprint"] for s in old],
                    "stale_writers": writers,
                    "since": info["stale_since"],
                    "features": diverged,
                    "serving": info["serving"],
                },
                view=True,
            )
        )
    elif info.get("training_drift"):
        out.append(
            new_finding(
                "transformation_divergence",
                name,
                "warn",
                f"serving runs the registry's transformation of {name}, but the latest training "
                f"dataset was built with another ({info.get('training_udf_fingerprint')})",
                {
                    "cause": "training_code_drift",
                    "registry_udf_fingerprint": info["registry_udf_fingerprint"],
                    "training_udf_fingerprint": info.get("training_udf_fingerprint"),
                    "features": sorted(f["feature"] for f in features),
                },
                view=True,
            )
        )
    for field, detail in sorted((view.get("request_schema") or {}).items()):
        out.append(
            new_finding(
                "schema_divergence",
                name,
                "fail",
                f"request input {field} of {name} is declared {detail['declared']}, but "
                f"{detail['unfit']} logged value(s) are not",
                {"request_field": field, **detail},
                view=True,
            )
        )
    return out


def shadow_findings(
    name: str, info: Mapping[str, Any], thresholds: CheckThresholds
) -> list[dict[str, Any]]:
    """``transformation_divergence`` (cause ``shadowed_request_field``) of a request field
    that shares its name with a stored input, where serving and training feed the
    transformation different values for it (docs/feast_facts.md T6) and that moved outputs:
    rated as ``value_mismatch`` is, by the worst output's share of moved rows."""
    moved = info.get("moved_by_inputs") or {}
    out = []
    for shadow in info.get("shadowed_request_fields") or []:
        outputs = {o: c for o, c in (shadow.get("moved_outputs") or {}).items() if c}
        rates = {
            o: c / moved[o]["compared"]
            for o, c in outputs.items()
            if moved.get(o, {}).get("compared")
        }
        worst = max(rates.values(), default=None)
        compared = max((moved[o]["compared"] for o in rates), default=0)
        severity = level(worst, thresholds.mismatch_warn, thresholds.mismatch_fail)
        if severity is None or compared < thresholds.min_compared:
            continue
        field = shadow["field"]
        moved_text = ", ".join(f"{name}:{o} ({pct(r)})" for o, r in sorted(rates.items()))
        out.append(
            new_finding(
                "transformation_divergence",
                name,
                severity,
                f"request field {field} of {name} has the name of input {shadow['feature']}: "
                "serving and training feed the transformation different values for it, and "
                f"the request value differs from the stored one on "
                f"{pct(shadow.get('request_differs_share'))} of {shadow['rows']} rows; outputs "
                f"differ from training's for {moved_text}",
                {
                    "cause": "shadowed_request_field",
                    "request_field": field,
                    "shadowed_feature": shadow["feature"],
                    "rows": shadow["rows"],
                    "request_differs": shadow["request_differs"],
                    "request_differs_share": shadow.get("request_differs_share"),
                    "fed_apart": shadow.get("fed_apart"),
                    "features": sorted(f"{name}:{o}" for o in rates),
                    "moved_rates": {f"{name}:{o}": r for o, r in sorted(rates.items())},
                    "examples": shadow.get("examples") or [],
                },
                view=True,
            )
        )
    return out
