"""parity.redact: sensitive features reach the log only as keyed digests; parity still works
on them by equality. Store URLs with passwords are never printed."""

from __future__ import annotations

import sqlalchemy as sa
from feast import FeatureStore

from feast_parity import demo
from feast_parity.cli import main as cli
from feast_parity.parity.samplelog import redact_url
from feast_parity.plugin.check import run_check
from tests.faults import fails, feature, latest_rows, serve_refs, write_online

REDACTED = ["user_engagement:country", "user_engagement:watch_minutes"]


def all_text(repo) -> str:
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select entity_key, features from parity_samples")).all()
        datasets = (
            conn.execute(sa.text("select features, profile from parity_training_datasets")).all()
            if sa.inspect(conn).has_table("parity_training_datasets")
            else []
        )
    return "\n".join(str(r) for r in [*rows, *datasets])


def test_redacted_values_are_stored_as_keyed_digests_and_still_compared(build_repo, monkeypatch):
    monkeypatch.setenv("FEAST_PARITY_REDACT_KEY", "s3cret-key")
    repo = build_repo(sample_rate=1.0, parity_extra={"redact": REDACTED})
    rows = latest_rows(repo, "user_engagement")
    tenth = rows[rows["user_id"] % 10 == 3].copy()
    tenth["watch_minutes"] = tenth["watch_minutes"] + 7.0
    write_online(repo, "user_engagement", tenth)
    serve_refs(repo, 80)
    logged = all_text(repo)
    assert '"$hmac"' in logged
    countries = set(rows["country"])
    assert not any(f'"{c}"' in logged for c in countries)  # no country in clear
    assert not any(repr(float(v)) in logged for v in rows["watch_minutes"].head(50))
    assert '"device":["' in logged  # an unredacted string feature is still stored as is

    report = run_check(repo)
    watch = feature(report, "user_engagement:watch_minutes")
    assert 0.05 < watch["mismatch_rate"] < 0.16
    assert feature(report, "user_engagement:country")["mismatch_rate"] == 0.0
    assert feature(report, "user_engagement:country")["compared"] == 800
    assert fails(report) == [("value_mismatch", "user_engagement:watch_minutes")]

    # the training profile of a redacted feature is not stored (its bins would be values)
    from datetime import datetime, timezone

    import pandas as pd

    store = FeatureStore(repo_path=str(repo))
    store.get_historical_features(
        entity_df=pd.DataFrame(
            {"user_id": list(range(1001, 1051)), "event_timestamp": datetime.now(timezone.utc)}
        ),
        features=["user_engagement:country", "user_engagement:device"],
    ).to_df()
    logged = all_text(repo)
    assert not any(f'"{c}"' in logged for c in countries)


def test_redaction_without_a_key_refuses_to_start(build_repo, monkeypatch, capsys):
    monkeypatch.delenv("FEAST_PARITY_REDACT_KEY", raising=False)
    repo = build_repo(sample_rate=1.0, materialize=False)
    demo.write_config(repo, sample_rate=1.0, parity_extra={"redact": REDACTED})
    assert cli(["check", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "FEAST_PARITY_REDACT_KEY" in err and "Traceback" not in err


def test_store_passwords_are_never_printed(build_repo, capsys):
    url = "postgresql+psycopg://parity:hunter2@127.0.0.1:1/parity"
    assert "hunter2" not in redact_url(url) and "127.0.0.1:1/parity" in redact_url(url)
    repo = build_repo(sample_rate=1.0, materialize=False, store_url=url)
    code = cli(["check", "--repo", str(repo)])
    captured = capsys.readouterr()
    assert code == 2 and "hunter2" not in captured.err + captured.out
    assert "127.0.0.1" in captured.err
