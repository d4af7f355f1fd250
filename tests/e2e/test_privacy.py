"""parity.redact: sensitive features reach the log only as keyed hashes; parity still works on
them by equality. Store URLs with passwords are never printed, and hostile values (ANSI escape
codes) never reach a terminal raw."""

from __future__ import annotations

import json
import struct
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from feast import FeatureStore

from feast_parity import demo, read_samples
from feast_parity.cli import main as cli
from feast_parity.parity.columns import canonical_column
from feast_parity.parity.samplelog import from_ipc
from feast_parity.plugin.check import run_check
from feast_parity.store.engine import redact_url
from tests.faults import fails, feature, latest_rows, serve_refs, write_online

REDACTED = ["user_engagement:country", "user_engagement:watch_minutes"]
KEY = "s3cret-key"


def store_text(repo: Path) -> str:
    """Every text cell of the parity store's tables (runs, findings, training datasets...)."""
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    parts = []
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in inspector.get_table_names():
            if table == "parity_sample_batches":
                continue  # Arrow bytes: read as columns by logged_batches
            for row in conn.execute(sa.text(f'select * from "{table}"')):
                parts.extend(str(v) for v in row)
    engine.dispose()
    return "\n".join(parts)


def logged_batches(repo: Path) -> list[tuple[bytes, object]]:
    """(payload bytes, Arrow table) of every v3 batch in the SQL sample log."""
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    with engine.connect() as conn:
        payloads = [
            r[0] for r in conn.execute(sa.text("select payload from parity_sample_batches"))
        ]
    engine.dispose()
    return [(bytes(p), from_ipc(bytes(p))) for p in payloads]


def training_profiles(repo: Path) -> list[dict]:
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select feature_refs, row_count, features, profile from parity_training_datasets"
            )
        ).all()
    engine.dispose()
    return [
        {"feature_refs": json.loads(r[0]), "row_count": r[1], "features": r[2], "profile": r[3]}
        for r in rows
    ]


def test_redacted_values_are_stored_as_keyed_hashes_and_still_compared(build_repo, monkeypatch):
    monkeypatch.setenv("FEAST_PARITY_REDACT_KEY", KEY)
    repo = build_repo(sample_rate=1.0, parity_extra={"redact": REDACTED})
    rows = latest_rows(repo, "user_engagement")
    tenth = rows[rows["user_id"] % 10 == 3].copy()
    tenth["watch_minutes"] = tenth["watch_minutes"] + 7.0
    write_online(repo, "user_engagement", tenth)
    serve_refs(repo, 80)
    countries = set(rows["country"])
    served_watch = dict(zip(rows["user_id"], rows["watch_minutes"]))
    served_watch.update(zip(tenth["user_id"], tenth["watch_minutes"]))
    country_of = dict(zip(rows["user_id"], rows["country"]))
    watch_values = {float(v) for v in rows["watch_minutes"]} | set(served_watch.values())

    # the log: value columns of redacted features are NULL, their hashes are keyed (HMAC)
    log = read_samples(f"sqlite:///{repo}/data/parity.db", feature_view="user_engagement")
    assert log.num_rows == 800
    for name in ("country", "watch_minutes"):
        assert log.column(f"value:{name}").null_count == log.num_rows, name
        assert log.column(f"hash:{name}").null_count == 0, name
    key = KEY.encode()
    for record in log.slice(0, 50).to_pylist():
        user = record["key:user_id"]
        for name, declared, value in (
            ("country", "String", country_of[user]),
            ("watch_minutes", "Float64", float(served_watch[user])),
        ):
            keyed = int(canonical_column([value], declared, redact_key=key).hashes()[0])
            plain = int(canonical_column([value], declared).hashes()[0])
            assert record[f"hash:{name}"] == keyed != plain, (name, user)
    # an unredacted string feature is still stored as is
    device_of = dict(zip(rows["user_id"], rows["device"]))
    assert [r["value:device"] for r in log.slice(0, 50).to_pylist()] == [
        device_of[u] for u in log.column("key:user_id").slice(0, 50).to_pylist()
    ]
    # and the stored batches hold no redacted value in any column or in their metadata
    batches = logged_batches(repo)
    assert batches
    for payload, table in batches:
        metadata = json.dumps(
            {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        )
        assert not any(f'"{c}"' in metadata for c in countries)
        for name in table.column_names:
            if name.startswith("hash:"):
                continue
            values = set(table.column(name).to_pylist())
            assert not values & countries, name
            assert not {v for v in values if isinstance(v, float)} & watch_values, name
        for v in list(watch_values)[:50]:
            assert struct.pack("<d", v) not in payload

    report = run_check(repo)
    watch = feature(report, "user_engagement:watch_minutes")
    assert 0.05 < watch["mismatch_rate"] < 0.16
    assert feature(report, "user_engagement:country")["mismatch_rate"] == 0.0
    assert feature(report, "user_engagement:country")["compared"] == 800
    assert fails(report) == [("value_mismatch", "user_engagement:watch_minutes")]
    # the report and the stored run show digests, never the values (docs/configuration.md)
    report_text = json.dumps(report)
    assert not any(f'"{c}"' in report_text for c in countries)
    assert not any(f'"{c}"' in store_text(repo) for c in countries)

    # the training profile of a redacted feature is not stored (its bins would be values)
    store = FeatureStore(repo_path=str(repo))
    store.get_historical_features(
        entity_df=pd.DataFrame(
            {"user_id": list(range(1001, 1051)), "event_timestamp": datetime.now(timezone.utc)}
        ),
        features=["user_engagement:country", "user_engagement:device"],
    ).to_df()
    logged = store_text(repo)
    assert not any(f'"{c}"' in logged for c in countries)
    (dataset,) = training_profiles(repo)
    profile = json.loads(dataset["profile"])
    assert "user_engagement:device" in profile and "user_engagement:country" not in profile


ALIAS_SERVICES = """

training_alias = FeatureService(
    name="training_alias",
    features=[user_engagement.with_name("ue_alias")],
)

training_subset = FeatureService(
    name="training_subset",
    features=[user_engagement[["country", "watch_minutes", "device"]]],
)
"""


def test_training_through_an_aliased_projection_never_profiles_a_redacted_feature(
    build_repo, monkeypatch
):
    monkeypatch.setenv("FEAST_PARITY_REDACT_KEY", KEY)
    repo = build_repo(sample_rate=0.0, materialize=False, parity_extra={"redact": REDACTED})
    (repo / "features.py").write_text((repo / "features.py").read_text() + ALIAS_SERVICES)
    demo.feast_apply(repo)
    countries = set(pd.read_parquet(repo / "data" / "user_engagement.parquet")["country"])
    store = FeatureStore(repo_path=str(repo))
    entity_df = pd.DataFrame(
        {"user_id": list(range(1001, 1101)), "event_timestamp": datetime.now(timezone.utc)}
    )
    for service in ("training_alias", "training_subset"):
        for full_names in (False, True):
            frame = store.get_historical_features(
                entity_df=entity_df,
                features=store.get_feature_service(service),
                full_feature_names=full_names,
            ).to_df()
            assert len(frame) == 100
    datasets = training_profiles(repo)
    assert len(datasets) == 4
    for dataset in datasets:
        assert dataset["row_count"] == 100
        profile = json.loads(dataset["profile"])
        text = dataset["profile"]
        # recorded at all (the unredacted device is profiled), but never a redacted feature,
        # under its registry name or its alias, nor any of its values
        assert any(ref.endswith(":device") for ref in profile), profile.keys()
        assert "country" not in text and "watch_minutes" not in text, sorted(profile)
        assert not any(f'"{c}"' in text for c in countries)
        assert not any(f'"{c}"' in dataset["features"] for c in countries)


def test_a_cohort_dimension_on_a_redacted_feature_is_refused_in_one_line(
    build_repo, monkeypatch, capsys
):
    monkeypatch.setenv("FEAST_PARITY_REDACT_KEY", KEY)
    repo = build_repo(
        sample_rate=1.0,
        materialize=False,
        parity_extra={
            "redact": REDACTED,
            "cohorts": {"dimensions": ["user_engagement:country"]},
        },
    )
    capsys.readouterr()
    assert cli(["check", "--repo", str(repo), "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "parity.cohorts.dimensions" in lines[0] and "redacted" in lines[0]
    assert "user_engagement:country" in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_redaction_without_a_key_refuses_to_start(build_repo, monkeypatch, capsys):
    monkeypatch.delenv("FEAST_PARITY_REDACT_KEY", raising=False)
    repo = build_repo(sample_rate=1.0, materialize=False)
    demo.write_config(repo, sample_rate=1.0, parity_extra={"redact": REDACTED})
    capsys.readouterr()
    assert cli(["check", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "FEAST_PARITY_REDACT_KEY" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_store_passwords_are_never_printed(build_repo, capsys):
    url = "postgresql+psycopg://parity:hunter2@127.0.0.1:1/parity"
    assert "hunter2" not in redact_url(url) and "127.0.0.1:1/parity" in redact_url(url)
    repo = build_repo(sample_rate=1.0, materialize=False, store_url=url)
    capsys.readouterr()
    code = cli(["check", "--repo", str(repo)])
    captured = capsys.readouterr()
    assert code == 2 and "hunter2" not in captured.err + captured.out
    assert "127.0.0.1" in captured.err


HOSTILE = "\x1b[31mUS"  # a country value that would turn a terminal red
VISIBLE = "\\x1b[31mUS"
HOSTILE_KPI = "\x1b[31mclicks"


def test_ansi_escape_codes_in_values_print_as_visible_escapes(build_repo, capsys, monkeypatch):
    # click strips ANSI codes when stdout is not a terminal; capsys is not one, so keep them as
    # a terminal would receive them
    monkeypatch.setattr("click.utils.should_strip_ansi", lambda stream=None, color=None: False)
    repo = build_repo(
        sample_rate=1.0,
        materialize=False,
        parity_extra={
            "cohorts": {"dimensions": ["user_engagement:country"]},
            "alerts": {"kpi_source": "data/kpis_hostile.csv"},
        },
    )
    source = repo / "data" / "user_engagement.parquet"
    frame = pd.read_parquet(source)
    frame.loc[frame["country"] == "US", "country"] = HOSTILE
    frame.to_parquet(source)
    kpis = pd.read_csv(repo / "data" / demo.KPI_FILE).rename(columns={"click_through": HOSTILE_KPI})
    kpis.to_csv(repo / "data" / "kpis_hostile.csv", index=False)
    demo.materialize(repo, days=6)
    # a fault in the hostile cohort only: its label is printed by check and lineage
    rows = latest_rows(repo, "user_engagement")
    hostile = rows[rows["country"] == HOSTILE].copy()
    assert len(hostile) > 30
    hostile["watch_minutes"] = hostile["watch_minutes"] * 1.5 + 1.0
    write_online(repo, "user_engagement", hostile)
    serve_refs(repo, 80)

    def run(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()  # drop what Feast printed before (its own colours)
        code = cli([*argv, "--repo", str(repo)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = run(["check", "--no-progress"])
    assert code == 1, out + err
    assert f"user_engagement:country={VISIBLE}" in out, out
    assert HOSTILE not in out + err and "\x1b" not in out + err

    code, out, err = run(["lineage", "user_engagement:watch_minutes"])
    assert code == 0, err
    assert VISIBLE in out, out
    assert "\x1b" not in out + err

    code, out, err = run(["freshness"])
    assert code in (0, 1), err
    assert "\x1b" not in out + err
    # a hostile tag value: the one-line error shows it escaped
    features = (repo / "features.py").read_text()
    (repo / "features.py").write_text(
        features.replace('"parity.freshness_slo": "12h"', '"parity.freshness_slo": "\\x1b[31m12h"')
    )
    demo.feast_apply(repo)
    code, out, err = run(["freshness"])
    assert code == 2, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "\\x1b[31m12h" in lines[0], err
    assert "\x1b" not in out + err

    # alerts: a hostile KPI column name of parity.alerts.kpi_source
    code, out, err = run(["alerts"])
    assert code in (0, 1), err
    assert "\\x1b[31mclicks" in out, out
    assert "\x1b" not in out + err
