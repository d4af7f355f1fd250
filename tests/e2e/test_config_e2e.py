"""The ``parity:`` block through a real Feast repo (the ``FeatureStore`` API and the ``feast
apply`` CLI), then entity rows whose key columns mix value types: whatever Feast does with
them, the plugin must not change it (moved from tests/test_config.py; the ``ParityConfig``
units are in tests/unit/test_config.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from feast import FeatureStore

from feast_parity import demo, read_samples
from feast_parity.plugin.config import ParityConfigError
from feast_parity.plugin.provider import ParityProvider

USERS, VIDEOS, DAYS = 300, 100, 5
SERVICE = "ranking_model_v1"


# --- through a real Feast repo ------------------------------------------------------------------


@pytest.fixture(scope="module")
def applied_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("config") / "repo"
    demo.make_demo_repo(repo, users=USERS, videos=VIDEOS, days=DAYS, sample_rate=0.0)
    demo.feast_apply(repo)
    demo.materialize(repo, days=DAYS + 1)
    return repo


def write_config(target: Path, parity: Any = ..., **config: Any) -> Path:
    """``demo.write_config`` into ``target``; ``parity`` replaces the whole block when given."""
    target.mkdir(parents=True, exist_ok=True)
    path = demo.write_config(target, **config)
    if parity is not ...:
        data = yaml.safe_load(path.read_text())
        data["parity"] = parity
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


OpenStore = Callable[..., FeatureStore]


@pytest.fixture
def open_store(applied_repo: Path, tmp_path: Path) -> Iterator[OpenStore]:
    opened: list[FeatureStore] = []

    def open_(**config: Any) -> FeatureStore:
        path = write_config(tmp_path / f"config{len(opened)}", **config)
        store = FeatureStore(repo_path=str(applied_repo), fs_yaml_file=path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        provider = store._get_provider()
        if isinstance(provider, ParityProvider):
            provider.writer.close()


@pytest.mark.parametrize(
    ("parity", "key"),
    [
        ({"sample_rate": 1.5}, "parity.sample_rate"),
        ({"sample_rate": -0.1}, "parity.sample_rate"),
        ({"sample_rate": 0.1, "sampel_seed": 3}, "parity.sampel_seed"),
        ({"store": "mysql://x"}, "parity.store"),
        ("yes please", "parity:"),
    ],
)
def test_feature_store_with_bad_block_fails_at_load(
    applied_repo: Path, tmp_path: Path, parity: Any, key: str
) -> None:
    path = write_config(tmp_path, parity=parity)
    with pytest.raises(ParityConfigError) as info:
        store = FeatureStore(repo_path=str(applied_repo), fs_yaml_file=path)
        store.get_online_features(
            ["user_engagement:sessions"], entity_rows=[{"user_id": demo.FIRST_USER}]
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(key)
    if key == "parity.store":
        assert "sqlite://" in message and "postgresql://" in message


def test_feast_apply_cli_rejects_bad_block(tmp_path: Path) -> None:
    repo = demo.make_demo_repo(
        tmp_path / "repo",
        users=USERS,
        videos=VIDEOS,
        days=DAYS,
        sample_rate=0.1,
        parity_extra={"sample_rat": 0.5},
    )
    with pytest.raises(RuntimeError) as info:  # demo.feast_apply: CLI exited non-zero
        demo.feast_apply(repo)
    assert "parity.sample_rat: unknown key" in str(info.value)


# --- entity rows mixing key types ----------------------------------------------------------------


def plain_feast(open_store: OpenStore) -> FeatureStore:
    return open_store(provider="local")


def serve(store: FeatureStore, entity_rows: Any) -> Any:
    return store.get_online_features(store.get_feature_service(SERVICE), entity_rows=entity_rows)


def test_rows_feast_rejects_fail_exactly_as_in_plain_feast(
    open_store: OpenStore, tmp_path: Path
) -> None:
    rows = [{"user_id": 1001, "video_id": 50001}, {"user_id": "abc", "video_id": 50002}]
    with pytest.raises(Exception) as plain:
        serve(plain_feast(open_store), rows)
    store = open_store(sample_rate=1.0, store_url=f"sqlite:///{tmp_path / 'samples.db'}")
    with pytest.raises(type(plain.value)) as hooked:
        serve(store, rows)
    assert str(hooked.value) == str(plain.value)
    provider = store._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["hook_errors"] == stats["sampled_rows"] == 0


MIXED = {
    "int and float": [{"user_id": 1001, "video_id": 50001}, {"user_id": 1002.0, "video_id": 50002}],
    "int and bool": [{"user_id": 1001, "video_id": 50001}, {"user_id": True, "video_id": 50002}],
    "columns, int and float": {"user_id": [1001, 1002.0], "video_id": [50001, 50002]},
}


@pytest.mark.parametrize("rows", MIXED.values(), ids=MIXED.keys())
def test_rows_feast_accepts_are_served_and_the_hook_error_is_counted(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, rows: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="feast_parity")
    url = f"sqlite:///{tmp_path / 'samples.db'}"
    store = open_store(sample_rate=1.0, store_url=url)
    expected = serve(plain_feast(open_store), rows).to_dict()

    assert serve(store, rows).to_dict() == expected  # never raises into the caller
    provider = store._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["hook_errors"] == 1
    assert stats["sampled_rows"] == stats["written_rows"] == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "feast_parity"]
    assert any(
        "sampling hook failed" in m and "'user_id'" in m and "mixes value kinds" in m
        for m in messages
    ), messages

    # The hook keeps working for the next, well-formed request.
    good = [{"user_id": 1003, "video_id": 50003}, {"user_id": 1004, "video_id": 50004}]
    assert serve(store, good).to_dict() == serve(plain_feast(open_store), good).to_dict()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["hook_errors"] == 1
    assert stats["sampled_rows"] == stats["written_rows"] == 2
    logged = {
        r["key:user_id"] for r in read_samples(url, feature_view="user_engagement").to_pylist()
    }
    assert logged == {1003, 1004}


def test_numeric_string_keys_are_sampled_like_ints(open_store: OpenStore, tmp_path: Path) -> None:
    # Feast parses "1002" for an Int64 key; the sampler's canonical key treats it as 1002 too.
    url = f"sqlite:///{tmp_path / 'samples.db'}"
    store = open_store(sample_rate=1.0, store_url=url)
    spelled = [{"user_id": 1001, "video_id": 50001}, {"user_id": "1002", "video_id": 50002}]
    as_ints = [{"user_id": 1002, "video_id": 50002}]
    assert serve(store, spelled).to_dict()["user_id"] == [1001, 1002]
    serve(store, as_ints)
    provider = store._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["hook_errors"] == 0
    assert stats["sampled_rows"] == stats["written_rows"] == 3
    log = read_samples(url, feature_view="user_engagement").to_pylist()
    hashes = {(r["request_id"], str(r["key:user_id"])): r["entity_key_hash"] for r in log}
    by_user: dict[str, set[int]] = {}
    for (_, user), key_hash in hashes.items():
        by_user.setdefault(user, set()).add(key_hash)
    assert len(by_user["1002"]) == 1, "both spellings of 1002 must hash to the same entity key"
    assert by_user["1002"] != by_user["1001"]
