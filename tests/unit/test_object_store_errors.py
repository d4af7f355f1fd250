"""One line for each way an object store refuses the sample log, from pyarrow's own messages.

The texts are pyarrow 26's, as its S3 filesystem raised them against moto's server
(tests/e2e/test_s3_sample_log.py runs the real requests); the filesystem is a real
``S3FileSystem`` (building one sends no request).
"""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from feast_parity.store.sinks import check_bucket, endpoint_of, explain_store_error

ENDPOINT = "http://127.0.0.1:9"
S3 = pafs.S3FileSystem(endpoint_override=ENDPOINT, region="us-east-1")

CASES = [
    (
        "When listing objects under key 'p/' in bucket 'logs': AWS Error NO_SUCH_BUCKET during "
        "ListObjectsV2 operation: The specified bucket does not exist (Request ID: 8Z2rz)",
        f"bucket 'logs' does not exist (endpoint {ENDPOINT})",
    ),
    (
        "Bucket 'logs' not found. To create buckets, enable the allow_bucket_creation option.",
        f"bucket 'logs' does not exist (endpoint {ENDPOINT})",
    ),
    (
        "When listing objects under key 'p/' in bucket 'logs': AWS Error INVALID_ACCESS_KEY_ID "
        "during ListObjectsV2 operation: The AWS Access Key Id you provided does not exist in "
        "our records. (Request ID: 1O58k)",
        "the server refused the credentials for bucket 'logs' (INVALID_ACCESS_KEY_ID: The AWS "
        f"Access Key Id you provided does not exist in our records; endpoint {ENDPOINT})",
    ),
    (
        "When getting information for bucket 'logs': AWS Error ACCESS_DENIED during HeadBucket "
        "operation: No response body.",
        "the server refused the credentials for bucket 'logs' "
        f"(ACCESS_DENIED; endpoint {ENDPOINT})",
    ),
    (
        "When getting information for bucket 'logs': AWS Error NETWORK_CONNECTION during "
        "HeadBucket operation: curlCode: 7, Could not connect to server; Details: Failed to "
        "connect to 127.0.0.1:9 after 0 ms: Could not connect to server",
        f"cannot connect to endpoint {ENDPOINT} (Could not connect to server)",
    ),
    ("something else\nand a second line", "something else"),
]


@pytest.mark.parametrize(("raised", "line"), CASES)
def test_each_refusal_is_one_line_naming_its_cause(raised: str, line: str) -> None:
    assert explain_store_error(OSError(raised), S3, "logs") == line


def test_the_endpoint_is_the_override_else_the_provider_and_region() -> None:
    assert endpoint_of(S3) == ENDPOINT
    assert endpoint_of(pafs.S3FileSystem(region="eu-west-3")) == "AWS S3 eu-west-3"


def test_a_local_directory_is_never_checked_as_a_bucket(tmp_path) -> None:  # noqa: ANN001
    check_bucket(pafs.LocalFileSystem(), str(tmp_path / "not-yet"))  # no bucket, no error
