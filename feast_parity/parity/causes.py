"""One cause, one finding: the rules by which a cause's echoes become evidence of that cause.

A fault shows in several places at once: a feature served as another type also mismatches, a
view whose rows are NOT_FOUND online also silently defaults every feature, an input served
wrong also moves the on-demand outputs computed from it. Each rule below says which finding
holds the cause and which echoes fold into its evidence instead of standing as findings of
their own. :mod:`~feast_parity.parity.findings` asks the per-feature rules while it builds
findings; :mod:`~feast_parity.parity.report` applies :func:`attach_folded` and
:func:`fold_input_moves` once every finding exists. docs/checks.md ("One cause, one finding")
states them for users.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from feast_parity.parity.stats import pct

# What a folded finding keeps in its holder's ``evidence.folded``
FOLDED_FIELDS = ("kind", "feature", "severity", "message")


def type_change_explains_mismatch(schema: Mapping[str, Any]) -> bool:
    """Values served as another type than declared differ because of it: the feature's
    ``schema_divergence`` holds its ``value_mismatch``.

    >>> type_change_explains_mismatch({"diverged": True, "online_diverged": True})
    True
    >>> type_change_explains_mismatch({"diverged": True, "online_diverged": False})
    False
    """
    return bool(schema.get("diverged") and schema.get("online_diverged"))


def view_schema_change_explains(view_causes: set[str]) -> bool:
    """A view whose registry schema changed since serving holds its features' own
    ``schema_divergence`` findings.

    >>> view_schema_change_explains({"schema_divergence"}), view_schema_change_explains(set())
    (True, False)
    """
    return "schema_divergence" in view_causes


def code_drift_explains_divergence(result: Mapping[str, Any], view_causes: set[str]) -> bool:
    """An on-demand output whose divergence is all on old code: the view's code-drift
    ``transformation_divergence`` is its one cause.

    >>> code_drift_explains_divergence({"transformation": {}}, {"transformation_divergence"})
    True
    >>> code_drift_explains_divergence(
    ...     {"transformation": {"diverged_on_registry_code": 3}}, {"transformation_divergence"})
    False
    """
    inputs = result.get("transformation") or {}
    return "transformation_divergence" in view_causes and not inputs.get(
        "diverged_on_registry_code"
    )


def defaults_held_by_view(result: Mapping[str, Any], view_causes: set[str]) -> int:
    """Of a feature's silent defaults, those the view's NOT_FOUND ``silent_default`` holds
    (rows NOT_FOUND for the whole view): 0 when the view has no such finding.

    >>> defaults_held_by_view({"silent_defaults_not_found": 7}, {"silent_default"})
    7
    >>> defaults_held_by_view({"silent_defaults_not_found": 7}, set())
    0
    """
    if "silent_default" not in view_causes:
        return 0
    return int(result.get("silent_defaults_not_found", 0))


# a feature's own findings that explain its distribution drift (the values moved for them)
DRIFT_CAUSES = ("value_mismatch", "silent_default", "transformation_divergence")


def drift_is_explained(own_kinds: Iterable[str], view_causes: set[str]) -> bool:
    """A feature's served-vs-offline drift is an echo when the feature has a value-level
    finding of its own, or its view has any view-level cause.

    >>> drift_is_explained(["silent_default"], set()), drift_is_explained([], {"stale_serving"})
    (True, True)
    >>> drift_is_explained(["schema_divergence"], set())
    False
    """
    return any(kind in DRIFT_CAUSES for kind in own_kinds) or bool(view_causes)


def attach_folded(
    view_findings: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    folded_by_view: Mapping[str, Sequence[Mapping[str, Any]]],
    findings: Sequence[dict[str, Any]],
) -> None:
    """Put each folded finding into the evidence of what holds it: the view-level findings of
    its view (freshness aside) when the view has any, else a finding of another kind on the
    same feature (drift folded into the feature's own mismatch, say).

    >>> stale = {"kind": "stale_serving", "evidence": {}}
    >>> drift = {"kind": "distribution_drift", "feature": "v:a", "severity": "warn",
    ...          "message": "m"}
    >>> attach_folded([("v", [stale])], {"v": [drift]}, [stale])
    >>> stale["evidence"]["folded"][0]["kind"]
    'distribution_drift'
    """
    with_causes = set()
    for view_name, found in view_findings:
        folded = folded_by_view.get(view_name) or []
        causes = [f for f in found if f["kind"] != "freshness_slo"]
        if causes:
            with_causes.add(view_name)
        for finding in causes:
            if folded:
                finding["evidence"]["folded"] = [{k: f[k] for k in FOLDED_FIELDS} for f in folded]
    for view_name, folded in folded_by_view.items():
        if view_name in with_causes:
            continue
        for echo in folded:
            owner = next(
                (
                    g
                    for g in findings
                    if g.get("feature") == echo["feature"] and g["kind"] != echo["kind"]
                ),
                None,
            )
            if owner is not None:
                owner["evidence"].setdefault("folded", []).append(
                    {k: echo[k] for k in FOLDED_FIELDS}
                )


# An input's row outcome -> the findings that may hold it, most specific first ("feature":
# a finding on the input feature, "view": on its view)
INPUT_HOLDERS = {
    "value_mismatch": (
        ("feature", "value_mismatch"),
        ("feature", "silent_default"),
        ("feature", "schema_divergence"),
        ("view", "schema_divergence"),
    ),
    "silent_default": (
        ("feature", "silent_default"),
        ("view", "silent_default"),
        ("feature", "value_mismatch"),
    ),
    "stale_serving": (("view", "stale_serving"), ("view", "expired_serving")),
    "expired_serving": (("view", "expired_serving"), ("view", "stale_serving")),
}


def holder_of_input(
    findings: Sequence[dict[str, Any]], outcome: str, source: str
) -> dict[str, Any] | None:
    """The finding that holds an input's skew (``outcome`` of input ``source``,
    ``view:feature``), or None: cohort findings never hold it.

    >>> found = [{"kind": "stale_serving", "feature_view": "users", "evidence": {}}]
    >>> holder_of_input(found, "stale_serving", "users:age")["kind"]
    'stale_serving'
    >>> holder_of_input(found, "value_mismatch", "users:age") is None
    True
    """
    view = source.split(":", 1)[0]
    for level, kind in INPUT_HOLDERS.get(outcome, ()):
        for finding in findings:
            if finding["kind"] != kind or "cohort" in finding:
                continue
            target = finding.get("feature") if level == "feature" else finding.get("feature_view")
            if target == (source if level == "feature" else view):
                return finding
    return None


def fold_input_moves(
    findings: list[dict[str, Any]], views: Sequence[Mapping[str, Any]], notes: list[str]
) -> None:
    """An input's skew explains the on-demand outputs it moved: each output moved by an
    input is named in the evidence (``moves_outputs``) and message of the finding that holds
    that input's skew (:func:`holder_of_input`), never a finding of its own. Moves with no such
    finding (rows pushed online only, skew under the thresholds) are noted."""
    for view in views:
        moved = (view.get("transformation") or {}).get("moved_by_inputs") or {}
        name = view["feature_view"]
        by_holder: dict[int, dict[str, Any]] = {}
        orphans: dict[tuple[str, str], list[str]] = {}
        for output, detail in sorted(moved.items()):
            compared = detail.get("compared") or 0
            for cause in detail.get("causes") or []:
                if cause["kind"] == "shadowed_request_field":
                    continue
                holder = holder_of_input(findings, cause["kind"], cause["input"])
                rate = cause["rows"] / compared if compared else None
                if holder is None:
                    orphans.setdefault((cause["kind"], cause["input"]), []).append(
                        f"{name}:{output} ({pct(rate)})"
                    )
                    continue
                entry = by_holder.setdefault(id(holder), {"finding": holder, "moves": []})
                entry["moves"].append(
                    {"feature": f"{name}:{output}", "rows": cause["rows"], "rate": rate}
                )
        for entry in by_holder.values():
            finding, moves = entry["finding"], entry["moves"]
            finding["evidence"].setdefault("moves_outputs", []).extend(moves)
            finding["message"] += "; also moves outputs " + ", ".join(
                f"{m['feature']} ({pct(m['rate'])})" for m in moves
            )
        for (kind, source), outputs in sorted(orphans.items()):
            how = (
                "rows only online (pushed or written online only)"
                if kind == "online_only"
                else kind.replace("_", " ")
            )
            notes.append(
                f"input {source} fed the transformation other values than training would "
                f"({how}), moving {', '.join(outputs)}; no finding of its own holds it"
            )
