"""A finding's evidence as something a person can act on: facts, tables of example rows.

Each finding becomes a block of display strings: ``facts`` (label, value) pairs and at most one
``table`` (headers, rows). What goes in depends on the finding's kind: example rows for a
mismatch or a transformation divergence, the lag distribution for staleness, the fill values for
a silent default, the three types for a schema divergence, the fingerprints and processes for
code drift. Any other evidence is shown as its scalar fields, so a new kind is never hidden.

>>> block = evidence_block({"kind": "silent_default", "feature": "v:f", "severity": "warn",
...     "message": "m", "evidence": {"fill_values": [0], "silent_defaults": 12,
...     "offline_rows": 100, "online_null_rate": 0.0}})
>>> block["facts"][:2]
[('fill value(s)', '0'), ('replaced real values', '12 of 100 rows (12.0%)')]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from feast_parity.render.text import count, duration, fixed, number, pct

EXAMPLE_COLUMNS = ("entity", "request_time", "online", "offline", "difference")


def _text(value: Any) -> str:
    """A value of the evidence as compact text (JSON for lists and objects)."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _lags(lags: Any) -> str:
    lags = lags if isinstance(lags, Mapping) else {}
    return " / ".join(duration(lags.get(p)) for p in ("p50", "p95", "p99"))


def _share(part: Any, whole: Any) -> str:
    part_n, whole_n = number(part), number(whole)
    share = part_n / whole_n if part_n is not None and whole_n else None
    return f"{count(part)} of {count(whole)} rows ({pct(share)})"


def _examples(evidence: Mapping[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    rows = [e for e in evidence.get("examples") or [] if isinstance(e, Mapping)]
    if not rows:
        return None
    headers = ["entity", "request time", "served", "offline", "difference"]
    return headers, [[_text(e.get(c)) if c in e else "" for c in EXAMPLE_COLUMNS] for e in rows]


def _magnitude(evidence: Mapping[str, Any]) -> list[tuple[str, str]]:
    magnitude = evidence.get("magnitude")
    if not isinstance(magnitude, Mapping):
        return []
    return [
        (f"magnitude {key.replace('_', ' ')}", _text(value))
        for key, value in magnitude.items()
        if not isinstance(value, (dict, list))
    ]


Facts = list[tuple[str, str]]
Table = tuple[list[str], list[list[str]]] | None


def _compared_rows(kind: str, evidence: Mapping[str, Any]) -> tuple[Facts, Table]:
    """A mismatch or an on-demand output's divergence: differing rows and examples."""
    facts = [("differing rows", _share(evidence.get("mismatches"), evidence["compared"]))]
    facts += _magnitude(evidence)
    if kind == "transformation_divergence":
        facts.append(("diverging rows with served inputs", count(evidence.get("inputs_known"))))
        facts.append(("of those, inputs equal offline", count(evidence.get("inputs_agreed"))))
    return facts, _examples(evidence)


def _shadowed_request(evidence: Mapping[str, Any]) -> tuple[Facts, Table]:
    """A request field that shadows a stored input of an on-demand view."""
    facts = [
        ("cause", _text(evidence.get("cause"))),
        ("request field", _text(evidence.get("request_field"))),
        ("shadowed input", _text(evidence.get("shadowed_feature"))),
        (
            "request value differs from the stored one",
            _share(evidence.get("request_differs"), evidence.get("rows")),
        ),
    ]
    rates = evidence.get("moved_rates")
    if isinstance(rates, Mapping):
        facts.append(("outputs moved", ", ".join(f"{k} ({pct(v)})" for k, v in rates.items())))
    rows = [e for e in evidence.get("examples") or [] if isinstance(e, Mapping)]
    if not rows:
        return facts, None
    columns = ("entity", "request_time", "request_value", "stored_value")
    headers = ["entity", "request time", "request value", "stored value"]
    return facts, (headers, [[_text(e.get(c)) for c in columns] for e in rows])


def _code_drift(evidence: Mapping[str, Any]) -> Facts:
    facts = [
        ("cause", _text(evidence.get("cause"))),
        ("registry fingerprint", _text(evidence.get("registry_udf_fingerprint"))),
        ("training fingerprint", _text(evidence.get("training_udf_fingerprint"))),
    ]
    served = evidence.get("serving_udf_fingerprints")
    if served:
        facts.append(("served fingerprint(s)", ", ".join(str(s) for s in served)))
    writers = evidence.get("stale_writers")
    if writers:
        facts.append(("processes on old code", ", ".join(str(w) for w in writers)))
        facts.append(("since", _text(evidence.get("since"))))
    return facts


def _staleness(kind: str, evidence: Mapping[str, Any]) -> Facts:
    if kind == "stale_serving":
        return [
            ("stale rows", _share(evidence.get("stale_rows"), evidence.get("rows"))),
            ("staleness p50 / p95 / p99", _lags(evidence.get("lag_seconds"))),
        ]
    return [
        ("expired rows", _share(evidence.get("expired_rows"), evidence.get("rows"))),
        ("age p50 / p95 / p99", _lags(evidence.get("age_seconds"))),
        ("ttl", duration(evidence.get("ttl_seconds"))),
    ]


def _defaults(evidence: Mapping[str, Any]) -> Facts:
    if "fill_values" not in evidence:  # the view's whole rows NOT_FOUND
        return [
            ("whole rows NOT_FOUND", _share(evidence.get("not_found_rows"), evidence.get("rows")))
        ]
    fills = evidence.get("fill_values") or []
    return [
        ("fill value(s)", ", ".join(_text(v) for v in fills) or "none (nulls)"),
        (
            "replaced real values",
            _share(evidence.get("silent_defaults"), evidence.get("offline_rows")),
        ),
        ("served null", pct(evidence.get("online_null_rate"))),
    ]


def _schema(evidence: Mapping[str, Any]) -> Facts:
    if "request_field" in evidence:
        return [
            ("request field", _text(evidence.get("request_field"))),
            ("declared", _text(evidence.get("declared"))),
            ("logged values of another type", count(evidence.get("unfit"))),
        ]
    if "declared" not in evidence:
        return []
    sides = ("declared", "online", "offline", "declared_at_serving")
    return [(side.replace("_", " "), _text(evidence.get(side))) for side in sides]


def _drift(evidence: Mapping[str, Any]) -> Facts:
    facts = [
        ("reference", _text(evidence.get("reference"))),
        ("PSI", fixed(evidence.get("psi"))),
        ("no-drift PSI (95th percentile)", fixed(evidence.get("psi_critical"))),
    ]
    if evidence.get("ks_statistic") is not None:
        ks = f"{fixed(evidence.get('ks_statistic'))} / {_text(evidence.get('ks_pvalue'))}"
        facts.append(("KS D / p", ks))
    return facts


def _freshness(evidence: Mapping[str, Any]) -> Facts:
    facts = []
    for key, value in evidence.items():
        if key == "over_ratio":
            facts.append(("worst lag / SLO", f"{fixed(value, 2)}x"))
        elif not isinstance(value, (dict, list)):
            facts.append((key.replace("_", " "), duration(value)))
    return facts


def _kind_facts(kind: str, evidence: Mapping[str, Any]) -> tuple[Facts, Table]:
    """What a finding of ``kind`` shows, by the evidence its check wrote."""
    if kind in ("value_mismatch", "transformation_divergence") and "compared" in evidence:
        return _compared_rows(kind, evidence)
    if kind == "transformation_divergence" and "request_field" in evidence:
        return _shadowed_request(evidence)
    plain = {
        "transformation_divergence": _code_drift,
        "stale_serving": lambda e: _staleness("stale_serving", e),
        "expired_serving": lambda e: _staleness("expired_serving", e),
        "silent_default": _defaults,
        "schema_divergence": _schema,
        "distribution_drift": _drift,
        "freshness_slo": _freshness,
    }.get(kind)
    return (plain(evidence) if plain else []), None


def evidence_block(finding: Mapping[str, Any]) -> dict[str, Any]:
    """``{"facts": [(label, value)], "table": (headers, rows) or None}`` of one finding."""
    kind = str(finding.get("kind", ""))
    evidence = finding.get("evidence")
    evidence = evidence if isinstance(evidence, Mapping) else {}
    facts, table = _kind_facts(kind, evidence)
    if not facts and table is None:  # a kind this module does not know is never hidden
        facts = [
            (key.replace("_", " "), _text(value))
            for key, value in evidence.items()
            if key != "folded" and not isinstance(value, (dict, list))
        ]
    if "cohort" in finding and isinstance(finding["cohort"], Mapping):
        facts.insert(0, ("cohort", _text(finding["cohort"].get("label"))))
    moves = [m for m in evidence.get("moves_outputs") or [] if isinstance(m, Mapping)]
    if moves:
        facts.append(
            (
                "also moves on-demand outputs",
                ", ".join(f"{m.get('feature')} ({pct(m.get('rate'))})" for m in moves),
            )
        )
    folded = [f for f in evidence.get("folded") or [] if isinstance(f, Mapping)]
    if folded:
        facts.append(
            ("explains", "; ".join(f"{f.get('kind')} of {f.get('feature', '-')}" for f in folded))
        )
    return {"facts": facts, "table": table}
