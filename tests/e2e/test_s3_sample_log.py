"""``parity.sample_log: s3://bucket/prefix`` end to end, against a real S3-API server (issue 28.3).

The server is moto's server mode (``moto_server``, from the ``dev`` extra), started here as a
subprocess on a free port. The module's server checks credentials: the fixture creates a
bucket, an IAM user with an S3 policy and its access key, then turns moto's authentication on,
so a wrong key or secret is refused as S3 refuses it (signatures are verified). Nothing is
mocked: serving writes through the plugin's Parquet sink (pyarrow's S3 filesystem), the check
and ``export --feast-log`` read through it, and the endpoint and keys come from the usual
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...) or from the URI and an AWS
credentials file.

Cases: the whole path (serving, check, Feast-log export); a bucket that does not exist and
refused credentials (one line, exit 2; serving unaffected, rows counted as dropped); a prefix
with nothing in the window (the check says the window is empty); a server that goes away while
serving (responses identical, no exception, every dropped row counted).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from feast import FeatureService, FeatureStore
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination

from feast_parity import demo, read_samples
from feast_parity.cli import main as cli
from feast_parity.store.sinks import SampleLogLocationError
from tests.faults import now_hour
from tests.s3_server import start_moto, stop

BUCKET = "parity-log"
SERVICE = "ranking_logged"  # logged by Feast: export --feast-log writes its logs
REQUESTS, ROWS = 20, 10
REGION = "us-east-1"
S3_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


@dataclass
class S3Server:
    endpoint: str
    key_id: str
    secret: str
    process: subprocess.Popen[bytes]

    def client(self, key_id: str | None = None, secret: str | None = None):  # noqa: ANN201
        import boto3

        return boto3.session.Session().client(  # a fresh session reads today's environment
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key_id or self.key_id,
            aws_secret_access_key=secret or self.secret,
            region_name=REGION,
        )

    def keys(self, prefix: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A moto S3 server that checks credentials: one bucket, one IAM user allowed S3."""
    import boto3

    process, endpoint = start_moto()
    admin = {
        "endpoint_url": endpoint,
        "aws_access_key_id": "admin",
        "aws_secret_access_key": "admin",
        "region_name": REGION,
    }
    try:
        boto3.client("s3", **admin).create_bucket(Bucket=BUCKET)
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="parity")
        policy = iam.create_policy(PolicyName="parity-s3", PolicyDocument=json.dumps(S3_POLICY))
        iam.attach_user_policy(UserName="parity", PolicyArn=policy["Policy"]["Arn"])
        key = iam.create_access_key(UserName="parity")["AccessKey"]
        # from now on every request must be signed by a known key (moto's IAM authentication)
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=5).read()
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], process)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo repo, applied and materialized once; each test points its log somewhere."""
    path = tmp_path_factory.mktemp("s3") / "repo"
    demo.make_demo_repo(path, users=300, videos=100, days=3, end=now_hour(), sample_rate=1.0)
    demo.feast_apply(path)
    demo.materialize(path, days=4)
    store = FeatureStore(repo_path=str(path))
    views = [store.get_feature_view("user_engagement"), store.get_feature_view("video_stats")]
    logged = FeatureService(  # a service Feast logs, for export --feast-log
        name=SERVICE,
        features=[*views, store.get_on_demand_feature_view("ranking_signals")],
        logging_config=LoggingConfig(destination=FileLoggingDestination(path="data/feature_logs")),
    )
    store.apply([logged])
    return path


AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture
def aws_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    """The usual AWS environment pointing at the test server (and no stray profile)."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return s3


def point_log_at(repo: Path, location: str) -> None:
    """Set ``parity.sample_log`` of the repo's feature_store.yaml."""
    path = repo / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["parity"]["sample_log"] = location
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def window_args(start: datetime, end: datetime) -> list[str]:
    return ["--since", start.isoformat(), "--until", end.isoformat()]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("feast-parity: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_serving_writes_the_log_to_s3_and_the_check_and_export_read_it(
    repo: Path, aws_env: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = "video_recs/samples"
    point_log_at(repo, f"s3://{BUCKET}/{prefix}")
    start = datetime.now(timezone.utc) - timedelta(seconds=1)

    server = FeatureStore(repo_path=str(repo))
    rng = np.random.default_rng(5)
    served = []
    for _ in range(REQUESTS):
        rows = demo.request_rows(rng, ROWS, users=300, videos=100)
        answer = server.get_online_features(server.get_feature_service(SERVICE), entity_rows=rows)
        answer = answer.to_dict()
        served += list(zip(answer["user_id"], answer["video_id"], answer["watch_minutes"]))
    provider = server._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["sampled_rows"] == REQUESTS * ROWS
    assert stats["written_rows"] == REQUESTS * ROWS and stats["dropped_rows"] == 0, stats
    end = datetime.now(timezone.utc) + timedelta(seconds=1)

    # the files are in the bucket, partitioned by view and hour; nothing went to local disk
    keys = [k for k in aws_env.keys(prefix) if k.endswith(".parquet")]
    views_logged = {k[len(prefix) + 1 :].split("/")[0] for k in keys}
    assert views_logged == {
        "feature_view=user_engagement",
        "feature_view=video_stats",
        "feature_view=ranking_signals",
    }, keys
    assert all(k.split("/")[3].startswith("hour=") for k in keys), keys
    assert not any(k.rsplit("/", 1)[-1].startswith(".") for k in aws_env.keys(prefix)), keys
    assert not (repo / "data" / "parity_samples").exists()
    log = read_samples(
        f"sqlite:///{repo}/data/parity.db",
        since=start,
        until=end,
        sample_log=f"s3://{BUCKET}/{prefix}",
    )
    assert log.num_rows == stats["written_log_rows"] == REQUESTS * ROWS * 3

    # the local engine reads the window from S3 and compares every row
    report_file = tmp_path / "report.json"
    code = cli(["check", "--repo", str(repo), "--json", str(report_file), *window_args(start, end)])
    out = capsys.readouterr().out
    report = json.loads(report_file.read_text())
    assert code == 0, out
    assert report["samples"] == REQUESTS * ROWS * 3
    compared = {f["feature"]: f["compared"] for f in report["features"]}
    assert compared["user_engagement:watch_minutes"] == REQUESTS * ROWS, compared
    assert report["findings"] == [], report["findings"]
    summary = [line for line in out.splitlines() if line.startswith("window ")]
    assert summary and f"samples {REQUESTS * ROWS * 3:,}" in summary[0], out
    assert "result: OK (exit 0)" in out
    with capsys.disabled():  # shown with -s: the closing note quotes this line
        print(f"\ns3:// check: {summary[0]}")

    # export --feast-log reads the same window from S3; Feast reads back what serving returned
    export = ["export", "--repo", str(repo), "--feast-log", SERVICE, *window_args(start, end)]
    assert cli(export) == 0
    assert f"wrote {REQUESTS * ROWS} logged rows of feature service {SERVICE!r}" in (
        capsys.readouterr().out
    )
    reader = FeatureStore(repo_path=str(repo))
    job = reader._get_provider().retrieve_feature_service_logs(
        feature_service=reader.get_feature_service(SERVICE),
        start_date=start,
        end_date=end,
        config=reader.config,
        registry=reader.registry,
    )
    table = job.to_arrow()
    back = zip(
        table.column("user_id").to_pylist(),
        table.column("video_id").to_pylist(),
        table.column("user_engagement__watch_minutes").to_pylist(),
    )
    assert sorted(back) == sorted(served)


def test_the_endpoint_in_the_uri_and_keys_from_an_aws_credentials_file(
    repo: Path, aws_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No AWS variables but a profile: the endpoint comes from the URI's query, the keys from
    the shared credentials file, as pyarrow (the AWS SDK) reads them."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[parity]\naws_access_key_id = {aws_env.key_id}\n"
        f"aws_secret_access_key = {aws_env.secret}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    config = tmp_path / "config"
    config.write_text(f"[profile parity]\nregion = {REGION}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "parity")
    prefix = "from-config"
    point_log_at(repo, f"s3://{BUCKET}/{prefix}?endpoint_override={aws_env.endpoint}")
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    server = FeatureStore(repo_path=str(repo))
    demo.serve(server, 3, users=300, videos=100, seed=8)
    provider = server._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["written_rows"] == 30 and stats["dropped_rows"] == 0, stats
    assert any(k.endswith(".parquet") for k in aws_env.keys(prefix))
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert cli(["check", "--repo", str(repo), *window_args(start, end)]) == 0


def test_a_bucket_that_does_not_exist_is_one_line_and_exit_2(
    repo: Path,
    aws_env: S3Server,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    location = "s3://no-such-bucket/samples"
    point_log_at(repo, location)
    expected = (
        f"feast-parity: error: parity.sample_log: cannot read the sample log at {location}: "
        f"bucket 'no-such-bucket' does not exist (endpoint {aws_env.endpoint})"
    )
    assert cli(["check", "--repo", str(repo)]) == 2
    assert one_error_line(capsys.readouterr().err) == expected
    # the Feast-log export reads the log the same way: the same line
    assert cli(["export", "--repo", str(repo), "--feast-log", SERVICE]) == 2
    assert one_error_line(capsys.readouterr().err) == expected
    with pytest.raises(SampleLogLocationError, match="bucket 'no-such-bucket' does not exist"):
        read_samples("sqlite://", sample_log=location)

    # serving is unaffected: every sampled row is dropped, counted, and the cause logged once
    with caplog.at_level(logging.WARNING, logger="feast_parity"):
        served = serve_and_flush(repo, 3)
    assert served["dropped_store_error"] == served["sampled_rows"] == 30, served
    assert served["written_rows"] == 0
    failures = [
        r.getMessage() for r in caplog.records if "dropping rows until it returns" in r.getMessage()
    ]
    assert len(failures) == 1, failures
    assert failures[0].endswith(
        f"bucket 'no-such-bucket' does not exist (endpoint {aws_env.endpoint})"
    ), failures


def serve_and_flush(repo: Path, requests: int, seed: int = 4) -> dict[str, int]:
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, requests, users=300, videos=100, seed=seed)
    provider = store._get_provider()
    assert provider.flush_samples(timeout=60)
    return provider.parity_stats()


@pytest.mark.parametrize(
    ("key_id", "secret", "code"),
    [
        ("AKIANOTKNOWNTOMOTO00", None, "INVALID_ACCESS_KEY_ID"),
        (None, "not-the-secret", "SIGNATURE_DOES_NOT_MATCH"),
    ],
    ids=["unknown-key", "wrong-secret"],
)
def test_refused_credentials_are_one_line_and_exit_2(
    repo: Path,
    aws_env: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key_id: str | None,
    secret: str | None,
    code: str,
) -> None:
    location = f"s3://{BUCKET}/samples"
    point_log_at(repo, location)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id or aws_env.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret or aws_env.secret)
    assert cli(["check", "--repo", str(repo)]) == 2
    line = one_error_line(capsys.readouterr().err)
    prefix = (
        f"feast-parity: error: parity.sample_log: cannot read the sample log at {location}: "
        f"the server refused the credentials for bucket '{BUCKET}' ({code}: "
    )
    assert line.startswith(prefix), line
    assert line.endswith(f"; endpoint {aws_env.endpoint})"), line
    assert cli(["export", "--repo", str(repo), "--feast-log", SERVICE]) == 2
    assert one_error_line(capsys.readouterr().err) == line

    served = serve_and_flush(repo, 2)  # refused writes: dropped and counted, serving unaffected
    assert served["dropped_store_error"] == served["sampled_rows"] == 20, served


def test_a_prefix_with_nothing_in_the_window_says_the_window_is_empty(
    repo: Path, aws_env: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    location = f"s3://{BUCKET}/never-written"
    point_log_at(repo, location)
    report_file = tmp_path / "empty.json"
    assert cli(["check", "--repo", str(repo), "--json", str(report_file)]) == 0
    out = capsys.readouterr().out
    assert "no samples in the window: nothing was compared" in out
    assert "note: no samples in the window " in out, out
    report = json.loads(report_file.read_text())
    assert report["samples"] == 0 and report["features"] == []
    assert aws_env.keys("never-written") == []  # reading created nothing


def test_a_server_that_goes_away_mid_serving_leaves_serving_alone_and_drops_are_counted(
    repo: Path,
    aws_env: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import boto3

    process, endpoint = start_moto()  # a server of its own (no authentication), killed below
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name=REGION,
        ).create_bucket(Bucket="outage")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        point_log_at(repo, "s3://outage/samples")
        store = FeatureStore(repo_path=str(repo))
        provider = store._get_provider()
        with caplog.at_level(logging.WARNING, logger="feast_parity"):
            before = demo.serve(store, 10, users=300, videos=100, seed=21)
            assert provider.flush_samples()
            written = provider.parity_stats()
            assert written["written_rows"] == 100 and written["dropped_rows"] == 0, written

            process.send_signal(signal.SIGKILL)  # the server goes away, no goodbye
            process.wait(timeout=10)
            durations = []
            for index in range(2):  # the same requests twice: during the failing writes too
                started = time.perf_counter()
                after = demo.serve(store, 10, users=300, videos=100, seed=21)
                durations.append((time.perf_counter() - started) / 10)
                assert after == before, f"responses changed while the log was down ({index})"
            assert provider.flush_samples(timeout=120)
        stats = provider.parity_stats()
    finally:
        stop(process)
    # serving never waited on the dead endpoint (each failed request retries for seconds)
    assert max(durations) < 0.5, durations
    assert stats["sampled_rows"] == 300
    assert stats["written_rows"] == 100
    assert stats["dropped_rows"] == stats["dropped_store_error"] + stats["dropped_queue_full"]
    assert stats["written_rows"] + stats["dropped_rows"] == stats["sampled_rows"], stats
    assert stats["store_errors"] >= 1 and stats["hook_errors"] == 0, stats
    failures = [
        r.getMessage() for r in caplog.records if "dropping rows until it returns" in r.getMessage()
    ]
    assert len(failures) == 1, failures
    assert f"cannot connect to endpoint {endpoint}" in failures[0], failures

    # the check against the dead endpoint: one line, exit 2
    assert cli(["check", "--repo", str(repo)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(
        "feast-parity: error: parity.sample_log: cannot read the sample log at "
        f"s3://outage/samples: cannot connect to endpoint {endpoint} ("
    ), line
