"""Factories for real Feast repos shaped unlike the demo, for end-to-end tests.

Each ``write_*_repo`` writes ``feature_store.yaml``, one definitions file and the source data
(Parquet files under ``data/`` or PostgreSQL tables) into a directory; nothing is applied until
``apply(repo)`` runs the real ``feast apply`` CLI. Then ``materialize`` / ``get_online_features``
/ ``get_historical_features`` run on real Feast 0.67 as a user would call them.

* ``write_every_type_repo``: one view ``every_type`` with a feature of every value type and
  hostile values (null, NaN, empty, -0.0, unicode, large ints, sub-second timestamps) in each
  item's latest row; ``every_type_expectations`` says which items hold what.
* ``write_object_kinds_repo``: field mapping + created-timestamp ties, ttl=0, a composite key,
  an entityless view, a push-fed stream view, an offline-only view, on-demand views, and
  feature services over projections; ``populate_object_kinds`` materializes and pushes.
* ``plant_online_change``: overwrite one value online through Feast's own write path.
* ``normalise``: make an online and an offline value comparable (see docs/feast_facts.md).

The Feast behaviours these repos run into are listed, as confirmed, in docs/feast_facts.md.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests import services

# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------


def floor_hour(moment: datetime | None = None) -> datetime:
    """``moment`` (default now) in UTC, floored to the hour."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _project_name(prefix: str, project: str | None) -> str:
    if project:
        return project
    return f"{prefix}_{os.getpid()}_{int(datetime.now().timestamp() * 1e6) % 10**10}"


def _online_config(online: str, redis_url: str | None) -> dict[str, Any]:
    if online == "sqlite":
        return {"type": "sqlite", "path": "data/online.db"}
    if online == "redis":
        # default: the run's Redis (CI's on :6379, else an embedded one: tests/services.py)
        return {"type": "redis", "connection_string": redis_url or services.redis_address()[0]}
    raise ValueError(f"unknown online store {online!r} (sqlite or redis)")


def postgres_config(pg_url: str) -> dict[str, Any]:
    """Feast's postgres offline store block for a SQLAlchemy URL."""
    import sqlalchemy as sa

    parsed = sa.make_url(pg_url)
    return {
        "type": "postgres",
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "database": parsed.database or "postgres",
        "db_schema": "public",
        "user": parsed.username or "postgres",
        "password": parsed.password or "",
        "sslmode": "disable",
    }


def _offline_config(offline: str, pg_url: str | None) -> dict[str, Any]:
    if offline == "file":
        return {"type": "file"}
    if offline == "duckdb":
        return {"type": "duckdb"}
    if offline == "postgres":
        if not pg_url:
            raise ValueError("offline='postgres' needs pg_url")
        return postgres_config(pg_url)
    raise ValueError(f"unknown offline store {offline!r} (file, duckdb or postgres)")


def write_feature_store_yaml(
    repo: Path,
    *,
    project: str,
    offline: str,
    online: str,
    pg_url: str | None,
    redis_url: str | None,
    provider: str,
    parity: dict[str, Any] | None,
) -> Path:
    """Write ``feature_store.yaml`` for one factory repo."""
    config: dict[str, Any] = {
        "project": project,
        "registry": "data/registry.db",
        "provider": provider,
        "online_store": _online_config(online, redis_url),
        "offline_store": _offline_config(offline, pg_url),
        "entity_key_serialization_version": 3,
    }
    if parity is not None:
        config["parity"] = dict(parity)
    path = repo / "feature_store.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------
# The every-type repo
# ----------------------------------------------------------------------------------------------

STRUCT_FIELDS = {"label": "String", "score": "Float64", "count": "Int64"}

# feature name -> (Feast type expression in the definitions file, PostgreSQL column type)
EVERY_TYPE_FEATURES: dict[str, tuple[str, str]] = {
    "f_int32": ("Int32", "int4"),
    "f_int64": ("Int64", "int8"),
    "f_float32": ("Float32", "float4"),
    "f_float64": ("Float64", "float8"),
    "f_string": ("String", "text"),
    "f_bytes": ("Bytes", "bytea"),
    "f_bool": ("Bool", "bool"),
    "f_unix_timestamp": ("UnixTimestamp", "timestamptz"),
    "f_array_int32": ("Array(Int32)", "int4[]"),
    "f_array_int64": ("Array(Int64)", "int8[]"),
    "f_array_float32": ("Array(Float32)", "float4[]"),
    "f_array_float64": ("Array(Float64)", "float8[]"),
    "f_array_string": ("Array(String)", "text[]"),
    "f_array_bytes": ("Array(Bytes)", "bytea[]"),
    "f_array_bool": ("Array(Bool)", "bool[]"),
    "f_array_unix_timestamp": ("Array(UnixTimestamp)", "timestamptz[]"),
    "f_map": ("Map", "text"),
    "f_json": ("Json", "text"),
    "f_struct": (
        "Struct({" + ", ".join(f'"{k}": {v}' for k, v in STRUCT_FIELDS.items()) + "})",
        "text",
    ),
}

FLOAT_FEATURES = {"f_float32", "f_float64", "f_array_float32", "f_array_float64"}

# Special roles of the first entities; the others are ordinary.
ROLES = ("ordinary", "null", "nan", "empty", "extreme")
FIRST_ITEM = 101
SNAPSHOTS = 3  # hourly snapshots ending at ``end``
EVERY_TYPE_TTL = timedelta(days=2)


def every_type_entity_ids(entities: int = 8) -> list[int]:
    """The ``item_id`` values of an every-type repo with ``entities`` items."""
    return [FIRST_ITEM + i for i in range(entities)]


def every_type_role(item_id: int) -> str:
    """What the item's latest row holds: ordinary, null, nan, empty or extreme values."""
    index = item_id - FIRST_ITEM
    return ROLES[index] if 0 <= index < len(ROLES) else "ordinary"


INT32_MAX, INT64_BIG = 2**31 - 1, 2**62 + 1  # 2**62 + 1 is not a float64: it shows rounding
F32_MAX = float(np.finfo(np.float32).max)


def _ordinary_row(rng: np.random.Generator, end: datetime, item: int, snap: int) -> dict[str, Any]:
    f32 = [float(np.float32(round(float(x), 3))) for x in rng.normal(0, 10, 3)]
    f64 = [round(float(x), 6) for x in rng.normal(0, 100, 3)]
    stamps = [
        end - timedelta(hours=int(h), seconds=int(s))
        for h, s in zip(rng.integers(1, 2000, 2), rng.integers(0, 3600, 2))
    ]
    return {
        "f_int32": int(rng.integers(-1000, 1000)),
        "f_int64": int(rng.integers(-(10**12), 10**12)),
        "f_float32": f32[0],
        "f_float64": f64[0],
        "f_string": f"item-{item}-v{snap}",
        "f_bytes": bytes(int(b) for b in rng.integers(0, 256, 4)),
        "f_bool": bool(rng.integers(0, 2)),
        "f_unix_timestamp": stamps[0],
        "f_array_int32": [int(x) for x in rng.integers(-100, 100, 3)],
        "f_array_int64": [int(x) for x in rng.integers(-(10**12), 10**12, 2)],
        "f_array_float32": f32[1:],
        "f_array_float64": f64[1:],
        "f_array_string": [f"tag{int(x)}" for x in rng.integers(0, 50, 2)],
        "f_array_bytes": [bytes([int(x)]) * 2 for x in rng.integers(0, 256, 2)],
        "f_array_bool": [bool(x) for x in rng.integers(0, 2, 3)],
        "f_array_unix_timestamp": stamps,
        "f_map": {"color": ["red", "green", "blue"][snap % 3], "size": int(item), "ratio": 0.5},
        "f_json": {"id": int(item), "tags": ["a", "b"][: 1 + snap % 2], "nested": {"x": 1.5}},
        "f_struct": {"label": f"L{item}", "score": f64[0], "count": int(item * 10 + snap)},
    }


def _special_row(role: str, base: dict[str, Any], end: datetime) -> dict[str, Any]:
    row = dict(base)
    if role == "null":
        return {name: None for name in row}
    if role == "nan":
        row.update(
            f_float32=math.nan,
            f_float64=math.nan,
            f_array_float32=[math.nan, 1.5],
            f_array_float64=[2.5, math.nan],
        )
    elif role == "empty":
        row.update(
            f_int32=0,
            f_int64=0,
            f_float32=-0.0,
            f_float64=-0.0,
            f_string="",
            f_bytes=b"",
            f_bool=False,
            f_unix_timestamp=datetime(1970, 1, 1, tzinfo=timezone.utc),
            **{name: [] for name in EVERY_TYPE_FEATURES if name.startswith("f_array_")},
            f_map={},
            f_json={},
            f_struct={"label": None, "score": None, "count": None},
        )
    elif role == "extreme":
        sub_second = end - timedelta(days=1, microseconds=-123456)
        row.update(
            f_int32=INT32_MAX,
            f_int64=INT64_BIG,
            f_float32=F32_MAX,
            f_float64=1.7976931348623157e308,
            f_string="naïve café ☃ 日本語 🚀",
            f_bytes=b"\x00\xff\xfe\x80",
            f_bool=True,
            f_unix_timestamp=sub_second,
            f_array_int32=[INT32_MAX, -(2**31)],
            f_array_int64=[INT64_BIG, -(2**63)],
            f_array_float32=[F32_MAX, float(np.float32(-1e-30))],
            f_array_float64=[1e308, -5e-324],
            f_array_string=["日本語", "🚀", "é"],
            f_array_bytes=[b"\x00", b"\xff\xfe"],
            f_array_bool=[True, False, True],
            f_array_unix_timestamp=[sub_second, sub_second + timedelta(microseconds=1)],
            f_map={"ключ": "значение", "emoji": "🚀", "big": INT64_BIG},
            f_json={"unicode": "日本語", "big": INT64_BIG, "nested": {"list": [1, 2.5, None]}},
            f_struct={"label": "日本語 🚀", "score": 1e308, "count": INT64_BIG},
        )
    return row


def every_type_rows(
    entities: int = 8, end: datetime | None = None, seed: int = 7
) -> list[dict[str, Any]]:
    """The every-type source rows as Python values (Map/Json/Struct as dicts), oldest first;
    each item's special values (see ``every_type_role``) sit in its latest snapshot."""
    if entities < len(ROLES):
        raise ValueError(f"entities must be >= {len(ROLES)} (one per role)")
    end = floor_hour(end)
    rng = np.random.default_rng(seed)
    rows = []
    for snap in range(SNAPSHOTS):
        event_ts = end - timedelta(hours=SNAPSHOTS - 1 - snap)
        for item in every_type_entity_ids(entities):
            row = _ordinary_row(rng, end, item, snap)
            if snap == SNAPSHOTS - 1:
                row = _special_row(every_type_role(item), row, end)
            rows.append({"item_id": item, "event_timestamp": event_ts, **row})
    return rows


_TS = pa.timestamp("us", tz="UTC")
_STRUCT_ARROW = pa.struct([("label", pa.string()), ("score", pa.float64()), ("count", pa.int64())])
EVERY_TYPE_ARROW: dict[str, pa.DataType] = {
    "item_id": pa.int64(),
    "event_timestamp": _TS,
    "f_int32": pa.int32(),
    "f_int64": pa.int64(),
    "f_float32": pa.float32(),
    "f_float64": pa.float64(),
    "f_string": pa.string(),
    "f_bytes": pa.binary(),
    "f_bool": pa.bool_(),
    "f_unix_timestamp": _TS,
    "f_array_int32": pa.list_(pa.int32()),
    "f_array_int64": pa.list_(pa.int64()),
    "f_array_float32": pa.list_(pa.float32()),
    "f_array_float64": pa.list_(pa.float64()),
    "f_array_string": pa.list_(pa.string()),
    "f_array_bytes": pa.list_(pa.binary()),
    "f_array_bool": pa.list_(pa.bool_()),
    "f_array_unix_timestamp": pa.list_(_TS),
    # A parquet map<string, string> column breaks materialization of Map in Feast 0.67 (see
    # docs/feast_facts.md), and Json is a string by definition: both are stored as JSON text.
    "f_map": pa.string(),
    "f_json": pa.string(),
    "f_struct": _STRUCT_ARROW,
}
JSON_TEXT_FEATURES = ("f_map", "f_json")


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def every_type_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as the Arrow table written to Parquet (Map and Json as JSON text)."""
    columns = {}
    for name, kind in EVERY_TYPE_ARROW.items():
        values = [row[name] for row in rows]
        if name in JSON_TEXT_FEATURES:
            values = [_json_text(v) for v in values]
        columns[name] = pa.array(values, type=kind)
    return pa.table(columns)


_EVERY_TYPE_DEFINITIONS = '''"""Every-type feature view (written by tests/e2e/repos.py)."""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field
from feast.types import (
    Array, Bool, Bytes, Float32, Float64, Int32, Int64, Json, Map, String, Struct, UnixTimestamp,
)
from feast.value_type import ValueType
{source_import}

DATA_DIR = Path(__file__).parent / "data"

item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)

every_type_source = {source}

every_type = FeatureView(
    name="every_type",
    entities=[item],
    ttl=timedelta(seconds={ttl_seconds}),
    schema=[
        Field(name="item_id", dtype=Int64),
{fields}
    ],
    source=every_type_source,
    online=True,
)
'''

_FILE_SOURCE_IMPORT = "from feast import FileSource"
_PG_SOURCE_IMPORT = (
    "from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (\n"
    "    PostgreSQLSource,\n)"
)


def _file_source(name: str, file_name: str, **extra: Any) -> str:
    args = "".join(f", {k}={v!r}" for k, v in extra.items())
    return (
        f'FileSource(name="{name}", path=str(DATA_DIR / "{file_name}"), '
        f'timestamp_field="event_timestamp"{args})'
    )


def _pg_source(name: str, table: str, **extra: Any) -> str:
    args = "".join(f", {k}={v!r}" for k, v in extra.items())
    return (
        f'PostgreSQLSource(name="{name}", table="{table}", timestamp_field="event_timestamp"{args})'
    )


def _write_feastignore(repo: Path) -> None:
    # Only the definitions file is Python; keep anything else a test drops in out of apply.
    (repo / ".feastignore").write_text("data/\n*_helpers.py\n")


def write_every_type_repo(
    path: Path | str,
    *,
    offline: str = "file",
    online: str = "sqlite",
    pg_url: str | None = None,
    redis_url: str | None = None,
    provider: str = "local",
    parity: dict[str, Any] | None = None,
    project: str | None = None,
    entities: int = 8,
    end: datetime | None = None,
) -> Path:
    """Write the every-type repo (one view ``every_type``, one feature per Feast value type)
    and its source data into ``path``; return the repo path (not applied yet)."""
    repo = Path(path)
    (repo / "data").mkdir(parents=True, exist_ok=True)
    end = floor_hour(end)
    rows = every_type_rows(entities, end)
    if offline in ("file", "duckdb"):
        pq.write_table(every_type_table(rows), repo / "data" / "every_type.parquet")
        source_import, source = (
            _FILE_SOURCE_IMPORT,
            _file_source("every_type_source", "every_type.parquet"),
        )
    elif offline == "postgres":
        if not pg_url:
            raise ValueError("offline='postgres' needs pg_url")
        load_every_type_to_postgres(rows, pg_url)
        source_import, source = _PG_SOURCE_IMPORT, _pg_source("every_type_source", "every_type")
    else:
        raise ValueError(f"unknown offline store {offline!r}")
    fields = "\n".join(
        f'        Field(name="{name}", dtype={dtype}),'
        for name, (dtype, _) in EVERY_TYPE_FEATURES.items()
    )
    (repo / "every_type_repo.py").write_text(
        _EVERY_TYPE_DEFINITIONS.format(
            source_import=source_import,
            source=source,
            ttl_seconds=int(EVERY_TYPE_TTL.total_seconds()),
            fields=fields,
        )
    )
    _write_feastignore(repo)
    write_feature_store_yaml(
        repo,
        project=_project_name("every_type", project),
        offline=offline,
        online=online,
        pg_url=pg_url,
        redis_url=redis_url,
        provider=provider,
        parity=parity,
    )
    (repo / "data" / "factory.json").write_text(
        json.dumps(
            {"kind": "every_type", "offline": offline, "entities": entities, "end": end.isoformat()}
        )
    )
    return repo


def _pg_connect(pg_url: str) -> Any:
    import psycopg
    import sqlalchemy as sa

    parsed = sa.make_url(pg_url)
    return psycopg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        dbname=parsed.database or "postgres",
        user=parsed.username or "postgres",
        password=parsed.password or "",
        autocommit=True,
    )


def _pg_load(pg_url: str, table: str, columns: dict[str, str], rows: list[dict[str, Any]]) -> None:
    """(Re)create ``table`` with ``columns`` (name -> SQL type) and insert ``rows``."""
    names = list(columns)
    ddl = ", ".join(f'"{n}" {t}' for n, t in columns.items())
    marks = ", ".join(f"%s::{columns[n]}" for n in names)
    with _pg_connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{table}"')
        cur.execute(f'CREATE TABLE "{table}" ({ddl})')
        cur.executemany(
            f'INSERT INTO "{table}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
            f"VALUES ({marks})",
            [[row[n] for n in names] for row in rows],
        )


def load_every_type_to_postgres(rows: list[dict[str, Any]], pg_url: str) -> None:
    """Load the every-type rows into table ``every_type`` (Map/Json/Struct as JSON text)."""
    columns = {"item_id": "int8", "event_timestamp": "timestamptz"}
    columns.update({name: pg for name, (_, pg) in EVERY_TYPE_FEATURES.items()})
    prepared = []
    for row in rows:
        out = dict(row)
        for name in ("f_map", "f_json", "f_struct"):
            out[name] = _json_text(row[name])
        prepared.append(out)
    _pg_load(pg_url, "every_type", columns, prepared)


@dataclass(frozen=True)
class FeatureExpectation:
    """What an every-type feature holds in the latest snapshot, by item id.

    ``null_ids``: source null. ``nan_ids``: NaN (scalar) or an array holding NaN.
    ``empty_ids``: "" / b"" / [] / {} (Struct: every field null). ``zero_ids``: 0, -0.0, False,
    the epoch. ``extreme_ids``: unicode, large ints, float extremes, sub-second timestamps.
    ``lossy_ids``: items whose online value differs from the source value after materialize
    (beyond NaN -> null): see docs/feast_facts.md.
    """

    name: str
    dtype: str
    value_type: Any
    null_ids: frozenset[int]
    nan_ids: frozenset[int] = frozenset()
    empty_ids: frozenset[int] = frozenset()
    zero_ids: frozenset[int] = frozenset()
    extreme_ids: frozenset[int] = frozenset()
    lossy_ids: frozenset[int] = frozenset()


def every_type_feast_types() -> dict[str, Any]:
    """The declared Feast type of each ``every_type`` feature (what the definitions file says)."""
    from feast.types import (
        Array,
        Bool,
        Bytes,
        Float32,
        Float64,
        Int32,
        Int64,
        Json,
        Map,
        String,
        Struct,
        UnixTimestamp,
    )

    return {
        "f_int32": Int32,
        "f_int64": Int64,
        "f_float32": Float32,
        "f_float64": Float64,
        "f_string": String,
        "f_bytes": Bytes,
        "f_bool": Bool,
        "f_unix_timestamp": UnixTimestamp,
        "f_array_int32": Array(Int32),
        "f_array_int64": Array(Int64),
        "f_array_float32": Array(Float32),
        "f_array_float64": Array(Float64),
        "f_array_string": Array(String),
        "f_array_bytes": Array(Bytes),
        "f_array_bool": Array(Bool),
        "f_array_unix_timestamp": Array(UnixTimestamp),
        "f_map": Map,
        "f_json": Json,
        "f_struct": Struct({"label": String, "score": Float64, "count": Int64}),
    }


def every_type_refs() -> list[str]:
    """Feature references ``every_type:<feature>`` in declaration order."""
    return [f"every_type:{name}" for name in EVERY_TYPE_FEATURES]


def every_type_expectations(
    entities: int = 8, offline: str = "file"
) -> dict[str, FeatureExpectation]:
    """Per feature of ``every_type``: declared type and the item ids holding special values."""
    ids = {
        role: frozenset(i for i in every_type_entity_ids(entities) if every_type_role(i) == role)
        for role in ROLES
    }
    scalars = {"f_int32", "f_int64", "f_float32", "f_float64", "f_bool", "f_unix_timestamp"}
    out = {}
    for name, feast_type in every_type_feast_types().items():
        lossy: frozenset[int] = frozenset()
        if name in ("f_int64", "f_unix_timestamp", "f_array_unix_timestamp"):
            # Int64 with nulls goes through float64; timestamps lose the sub-second part.
            lossy = ids["extreme"]
        if name == "f_struct" and offline in ("file", "duckdb"):
            lossy = ids["extreme"]  # a Parquet struct's int field with nulls goes via float64
        out[name] = FeatureExpectation(
            name=name,
            dtype=EVERY_TYPE_FEATURES[name][0],
            value_type=feast_type.to_value_type(),
            null_ids=ids["null"],
            nan_ids=ids["nan"] if name in FLOAT_FEATURES else frozenset(),
            empty_ids=frozenset() if name in scalars else ids["empty"],
            zero_ids=ids["empty"] if name in scalars else frozenset(),
            extreme_ids=ids["extreme"],
            lossy_ids=lossy,
        )
    return out


# ----------------------------------------------------------------------------------------------
# Normalisation: make an online value and an offline value of the same feature comparable
# ----------------------------------------------------------------------------------------------

NAN = "NaN"  # NaN inside arrays, made equal to itself


def _to_utc_seconds(value: Any) -> datetime | None:
    import pandas as pd

    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    seconds = stamp.value // 10**9  # floor to whole seconds, as Feast does when writing online
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python; float NaN -> NAN marker (used inside containers)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return NAN
    return value


def as_floats(value: Any) -> Any:
    """``value`` with every int (not bool) made a float, recursively: compares values that went
    through float64 on one side only (``FeatureExpectation.lossy_ids``)."""
    if isinstance(value, dict):
        return {k: as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_floats(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def normalise(value_type: Any, value: Any) -> Any:
    """One online (``to_dict()``) or offline (``to_df()``) value in a comparable form.

    Null, NaN and NaT scalars -> None; integer types -> int (offline they may be float64);
    timestamps -> UTC datetimes floored to the second (online keeps whole seconds); arrays ->
    lists with NaN as ``NAN``; Map / Json / Struct given as JSON text (offline) -> parsed."""
    import pandas as pd
    from feast.value_type import ValueType as VT

    if value is None:
        return None
    if not isinstance(value, (list, tuple, np.ndarray, dict)) and pd.isna(value):
        return None  # NaN, NaT, pd.NA
    if value_type in (VT.INT32, VT.INT64):
        return int(value)
    if value_type in (VT.FLOAT, VT.DOUBLE):
        return float(value)
    if value_type == VT.BOOL:
        return bool(value)
    if value_type == VT.UNIX_TIMESTAMP:
        return _to_utc_seconds(value)
    if value_type == VT.UNIX_TIMESTAMP_LIST:
        return [_to_utc_seconds(v) for v in list(value)]
    if value_type in (VT.MAP, VT.JSON, VT.STRUCT):
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # an online Json value that is itself a string
        return _plain(value)
    if value_type in (VT.BYTES_LIST,):
        return [bytes(v) for v in list(value)]
    return _plain(value)


# ----------------------------------------------------------------------------------------------
# Driving a repo: apply, materialize, planting an online change
# ----------------------------------------------------------------------------------------------


def feast_cli() -> list[str]:
    """The venv's ``feast`` command (beside this interpreter)."""
    candidate = Path(sys.executable).with_name("feast")
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "feast.cli.cli"]


def apply(repo: Path | str) -> str:
    """Run the real ``feast apply`` CLI on ``repo``; return its output, raise with it on failure."""
    result = subprocess.run(
        [*feast_cli(), "-c", str(repo), "apply"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"feast apply failed ({result.returncode}) in {repo}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def materialize(
    repo: Path | str, start: datetime, end: datetime, views: list[str] | None = None
) -> None:
    """``FeatureStore.materialize(start, end, views)`` on ``repo`` (default: every view)."""
    from feast import FeatureStore

    FeatureStore(repo_path=str(repo)).materialize(start, end, feature_views=views)


def _entity_key_proto(view: Any, entity_key: dict[str, Any]) -> Any:
    from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.type_map import python_values_to_proto_values

    columns = {c.name: c for c in view.entity_columns}
    if not columns or list(view.entities) == ["__dummy"]:
        if entity_key and set(entity_key) != {DUMMY_ENTITY_ID}:
            raise ValueError(f"{view.name} has no entities; pass {{}} as the entity key")
        return EntityKeyProto(
            join_keys=[DUMMY_ENTITY_ID], entity_values=[ValueProto(string_val=DUMMY_ENTITY_VAL)]
        )
    if set(entity_key) != set(columns):
        raise ValueError(f"{view.name} needs entity key columns {sorted(columns)}")
    names = sorted(columns)
    values = [
        python_values_to_proto_values([entity_key[n]], columns[n].dtype.to_value_type())[0]
        for n in names
    ]
    return EntityKeyProto(join_keys=names, entity_values=values)


def plant_online_change(
    repo: Path | str,
    feature_view: str,
    entity_key: dict[str, Any],
    feature: str,
    new_value: Any,
) -> None:
    """Overwrite one feature value online through Feast's own write path.

    The row's other features and its event timestamp stay as they are online (read back
    with the provider's ``online_read``); ``new_value`` is converted for the feature's
    declared type. Redis would drop a write carrying the stored event time (its write
    dedup), so dedup is switched off on this store instance only. Raises if the entity has
    no row online."""
    from feast import FeatureStore
    from feast.type_map import python_values_to_proto_values

    store = FeatureStore(repo_path=str(repo))
    view = store.registry.get_any_feature_view(feature_view, store.project)  # stream views too
    fields = {f.name: f for f in view.features}
    if feature not in fields:
        raise KeyError(f"{feature_view} has no feature {feature!r}")
    key = _entity_key_proto(view, entity_key)
    provider = store._get_provider()
    [(event_ts, values)] = provider.online_read(store.config, view, [key], None)
    # SQLite answers (None, None) for a missing row; Redis answers empty values at epoch 0.
    if (
        values is None
        or event_ts is None
        or (event_ts.timestamp() == 0 and all(v.WhichOneof("val") is None for v in values.values()))
    ):
        raise LookupError(f"{feature_view} {entity_key} has no row online to change")
    row = {name: values[name] for name in fields if name in values}
    row[feature] = python_values_to_proto_values(
        [new_value], fields[feature].dtype.to_value_type()
    )[0]
    online = store.config.online_store
    if getattr(online, "skip_dedup", None) is False:
        online.skip_dedup = True
    provider.online_write_batch(store.config, view, [(key, row, event_ts, None)], progress=None)


# ----------------------------------------------------------------------------------------------
# The object-kinds repo
# ----------------------------------------------------------------------------------------------

USERS = list(range(1001, 1011))
MERCHANTS = ["m-01", "m-02", "m-03", "m-04"]
TIE_USERS = [u for u in USERS if u % 2 == 0]  # their latest profile rows tie on event time
ONLINE_PUSH_USERS = [1001, 1002, 1003]  # pushed PushMode.ONLINE: never offline
OFFLINE_PUSH_USERS = [1004, 1005]  # pushed PushMode.ONLINE_AND_OFFLINE
ONLINE_ONLY_PAIRS = [(1009, "m-09"), (1010, "m-10")]  # write_to_online_store only
PUSH_OFFSET = timedelta(minutes=20)  # pushed rows are this much newer than the batch data


def merchants_of(user: int) -> list[str]:
    """The two merchants a user has batch rows with in ``user_merchant``."""
    return [MERCHANTS[user % 4], MERCHANTS[(user + 1) % 4]]


OBJECT_KINDS_VIEWS = (
    "user_profile",
    "user_daily",
    "user_merchant",
    "global_stats",
    "user_clicks",
    "user_ltv",
)
OBJECT_KINDS_ODFVS = ("order_risk", "spend_per_txn")
OBJECT_KINDS_SERVICES = (
    "svc_profile_subset",
    "svc_profile_score",
    "svc_alias",
    "svc_join_key_map",
    "svc_global",
    "svc_mixed",
)

_OBJECT_KINDS_DEFINITIONS = '''"""Object-kinds repo (written by tests/e2e/repos.py).

Field mapping with created-timestamp ties, ttl=0, a composite key, an entityless view, a
push-fed stream view, an offline-only view, on-demand views with and without request data,
and feature services over projections."""

from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import (
    Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource,
    StreamFeatureView,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, Int64, String
from feast.value_type import ValueType
@@SOURCE_IMPORT@@

DATA_DIR = Path(__file__).parent / "data"

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)

# Source columns are named unlike the features; event time ties are broken by ingested_at.
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="age", dtype=Int64),
        Field(name="tier", dtype=String),
        Field(name="credit_score", dtype=Float64),
    ],
    source=@@USER_PROFILE_SOURCE@@,
)

# ttl=0: no age limit offline.
user_daily = FeatureView(
    name="user_daily",
    entities=[user],
    ttl=timedelta(0),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="logins", dtype=Int64),
        Field(name="spend", dtype=Float64),
    ],
    source=@@USER_DAILY_SOURCE@@,
)

# Composite join key: (user_id Int64, merchant_id String).
user_merchant = FeatureView(
    name="user_merchant",
    entities=[user, merchant],
    ttl=timedelta(days=2),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="merchant_id", dtype=String),
        Field(name="txn_count", dtype=Int64),
        Field(name="avg_amount", dtype=Float64),
        Field(name="last_category", dtype=String),
    ],
    source=@@USER_MERCHANT_SOURCE@@,
)

# No entities at all.
global_stats = FeatureView(
    name="global_stats",
    entities=[],
    ttl=timedelta(days=2),
    schema=[
        Field(name="active_users", dtype=Int64),
        Field(name="fx_rate", dtype=Float64),
    ],
    source=@@GLOBAL_STATS_SOURCE@@,
)

user_clicks_push = PushSource(
    name="user_clicks_push",
    batch_source=@@USER_CLICKS_SOURCE@@,
)

# Fed by the push source; materialized from its batch source.
user_clicks = StreamFeatureView(
    name="user_clicks",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="clicks", dtype=Int64),
        Field(name="last_page", dtype=String),
    ],
    source=user_clicks_push,
)

# Never materialized: online=False.
user_ltv = FeatureView(
    name="user_ltv",
    entities=[user],
    ttl=timedelta(days=2),
    online=False,
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="lifetime_value", dtype=Float64),
    ],
    source=@@USER_LTV_SOURCE@@,
)

order_request = RequestSource(
    name="order_request",
    schema=[Field(name="amount", dtype=Float64), Field(name="channel", dtype=String)],
)


@on_demand_feature_view(
    sources=[user_profile, order_request],
    schema=[
        Field(name="risk_score", dtype=Float64),
        Field(name="is_large_order", dtype=Bool),
    ],
    mode="python",
)
def order_risk(inputs: dict) -> dict:
    """Order amount against the user's credit score (python mode, with request data)."""
    scores, large = [], []
    for amount, credit, channel in zip(
        inputs["amount"], inputs["credit_score"], inputs["channel"]
    ):
        weight = 2.0 if channel == "web" else 1.0
        scores.append(float(amount) * weight / (float(credit) if credit else 1.0))
        large.append(bool(amount > 100.0))
    return {"risk_score": scores, "is_large_order": large}


@on_demand_feature_view(
    sources=[user_merchant, user_daily],
    schema=[Field(name="spend_per_txn", dtype=Float64)],
    mode="pandas",
)
def spend_per_txn(inputs: pd.DataFrame) -> pd.DataFrame:
    """Daily spend per transaction with the merchant (pandas mode, no request data)."""
    out = pd.DataFrame()
    out["spend_per_txn"] = (
        inputs["spend"].astype("float64") / inputs["txn_count"].astype("float64").clip(lower=1.0)
    )
    return out


svc_profile_subset = FeatureService(
    name="svc_profile_subset", features=[user_profile[["age", "tier"]]]
)
svc_profile_score = FeatureService(
    name="svc_profile_score", features=[user_profile[["credit_score"]]]
)
svc_alias = FeatureService(
    name="svc_alias", features=[user_profile.with_name("profile_v2"), user_daily]
)
svc_join_key_map = FeatureService(
    name="svc_join_key_map",
    features=[
        user_merchant.with_join_key_map({"user_id": "buyer_id", "merchant_id": "seller_id"})
    ],
)
svc_global = FeatureService(name="svc_global", features=[global_stats, user_daily[["logins"]]])
svc_mixed = FeatureService(
    name="svc_mixed",
    features=[
        user_profile[["credit_score", "tier"]],
        user_clicks,
        order_risk,
        spend_per_txn,
    ],
)
'''

# table -> column -> (Arrow type, PostgreSQL type)
OBJECT_KINDS_TABLES: dict[str, dict[str, tuple[pa.DataType, str]]] = {
    "user_profile": {
        "user_id": (pa.int64(), "int8"),
        "observed_at": (_TS, "timestamptz"),
        "ingested_at": (_TS, "timestamptz"),
        "src_age": (pa.int64(), "int8"),
        "src_tier": (pa.string(), "text"),
        "src_score": (pa.float64(), "float8"),
    },
    "user_daily": {
        "user_id": (pa.int64(), "int8"),
        "event_timestamp": (_TS, "timestamptz"),
        "logins": (pa.int64(), "int8"),
        "spend": (pa.float64(), "float8"),
    },
    "user_merchant": {
        "user_id": (pa.int64(), "int8"),
        "merchant_id": (pa.string(), "text"),
        "event_timestamp": (_TS, "timestamptz"),
        "txn_count": (pa.int64(), "int8"),
        "avg_amount": (pa.float64(), "float8"),
        "last_category": (pa.string(), "text"),
    },
    "global_stats": {
        "event_timestamp": (_TS, "timestamptz"),
        "active_users": (pa.int64(), "int8"),
        "fx_rate": (pa.float64(), "float8"),
    },
    "user_clicks": {
        "user_id": (pa.int64(), "int8"),
        "event_timestamp": (_TS, "timestamptz"),
        "clicks": (pa.int64(), "int8"),
        "last_page": (pa.string(), "text"),
    },
    "user_ltv": {
        "user_id": (pa.int64(), "int8"),
        "event_timestamp": (_TS, "timestamptz"),
        "lifetime_value": (pa.float64(), "float8"),
    },
}
PROFILE_FIELD_MAPPING = {"src_age": "age", "src_tier": "tier", "src_score": "credit_score"}
DAILY_AGE = timedelta(days=9)  # user_daily's newest rows: far older than any other view's ttl


def object_kinds_rows(
    end: datetime | None = None, seed: int = 11
) -> dict[str, list[dict[str, Any]]]:
    """The object-kinds source rows per table (before any push)."""
    end = floor_hour(end)
    rng = np.random.default_rng(seed)
    hours = [end - timedelta(hours=h) for h in (2, 1, 0)]
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in OBJECT_KINDS_TABLES}
    for snap, ts in enumerate(hours):
        for u in USERS:
            base = {"user_id": u, "observed_at": ts, "src_age": 20 + u % 50 + snap}
            score = round(float(rng.uniform(300, 850)), 2)
            if snap == len(hours) - 1 and u in TIE_USERS:
                # Same event time, two ingestions: the later one (written first) must win.
                tables["user_profile"].append(
                    {
                        **base,
                        "ingested_at": ts + timedelta(minutes=30),
                        "src_tier": f"winner-{u}",
                        "src_score": score,
                    }
                )
                tables["user_profile"].append(
                    {
                        **base,
                        "ingested_at": ts + timedelta(minutes=10),
                        "src_tier": f"loser-{u}",
                        "src_score": -1.0,
                    }
                )
            else:
                tables["user_profile"].append(
                    {
                        **base,
                        "ingested_at": ts + timedelta(minutes=5),
                        "src_tier": ["gold", "silver", "bronze"][(u + snap) % 3],
                        "src_score": score,
                    }
                )
            tables["user_clicks"].append(
                {
                    "user_id": u,
                    "event_timestamp": ts,
                    "clicks": int(rng.integers(0, 50)),
                    "last_page": f"/p/{int(rng.integers(1, 20))}",
                }
            )
            tables["user_ltv"].append(
                {
                    "user_id": u,
                    "event_timestamp": ts,
                    "lifetime_value": round(float(rng.uniform(0, 5000)), 2),
                }
            )
            if snap >= 1:
                for m in merchants_of(u):
                    tables["user_merchant"].append(
                        {
                            "user_id": u,
                            "merchant_id": m,
                            "event_timestamp": ts,
                            "txn_count": int(rng.integers(0, 30)),
                            "avg_amount": round(float(rng.uniform(1, 300)), 2),
                            "last_category": ["food", "travel", "games"][int(rng.integers(0, 3))],
                        }
                    )
        tables["global_stats"].append(
            {
                "event_timestamp": ts,
                "active_users": int(rng.integers(1000, 5000)),
                "fx_rate": round(float(rng.uniform(0.9, 1.1)), 4),
            }
        )
    for days_old in (DAILY_AGE + timedelta(days=1), DAILY_AGE):
        for u in USERS:
            tables["user_daily"].append(
                {
                    "user_id": u,
                    "event_timestamp": end - days_old,
                    "logins": int(rng.integers(0, 10)),
                    "spend": round(float(rng.uniform(0, 200)), 2),
                }
            )
    return tables


def _object_kinds_source(offline: str, table: str) -> str:
    extra: dict[str, Any] = {}
    if table == "user_profile":
        extra = {"created_timestamp_column": "ingested_at", "field_mapping": PROFILE_FIELD_MAPPING}
    if offline == "postgres":
        code = _pg_source(f"{table}_source", table, **extra)
    else:
        code = _file_source(f"{table}_source", f"{table}.parquet", **extra)
    if table == "user_profile":
        code = code.replace('timestamp_field="event_timestamp"', 'timestamp_field="observed_at"')
    return code


def write_object_kinds_repo(
    path: Path | str,
    *,
    offline: str = "file",
    online: str = "sqlite",
    pg_url: str | None = None,
    redis_url: str | None = None,
    provider: str = "local",
    parity: dict[str, Any] | None = None,
    project: str | None = None,
    end: datetime | None = None,
) -> Path:
    """Write the object-kinds repo and its source data into ``path``; return the repo path.

    Then ``apply(repo)`` and ``populate_object_kinds(repo)`` (materialize, push, write
    online-only rows), or ``build_object_kinds_repo`` for all three."""
    repo = Path(path)
    (repo / "data").mkdir(parents=True, exist_ok=True)
    end = floor_hour(end)
    tables = object_kinds_rows(end)
    for table, rows in tables.items():
        columns = OBJECT_KINDS_TABLES[table]
        if offline in ("file", "duckdb"):
            arrow = pa.table(
                {c: pa.array([r[c] for r in rows], type=t) for c, (t, _) in columns.items()}
            )
            pq.write_table(arrow, repo / "data" / f"{table}.parquet")
        elif offline == "postgres":
            if not pg_url:
                raise ValueError("offline='postgres' needs pg_url")
            _pg_load(pg_url, table, {c: pg for c, (_, pg) in columns.items()}, rows)
        else:
            raise ValueError(f"unknown offline store {offline!r}")
    text = _OBJECT_KINDS_DEFINITIONS.replace(
        "@@SOURCE_IMPORT@@", _PG_SOURCE_IMPORT if offline == "postgres" else ""
    )
    for table in OBJECT_KINDS_TABLES:
        text = text.replace(f"@@{table.upper()}_SOURCE@@", _object_kinds_source(offline, table))
    (repo / "object_kinds_repo.py").write_text(text)
    _write_feastignore(repo)
    write_feature_store_yaml(
        repo,
        project=_project_name("object_kinds", project),
        offline=offline,
        online=online,
        pg_url=pg_url,
        redis_url=redis_url,
        provider=provider,
        parity=parity,
    )
    (repo / "data" / "factory.json").write_text(
        json.dumps({"kind": "object_kinds", "offline": offline, "end": end.isoformat()})
    )
    return repo


def _factory_info(repo: Path | str) -> dict[str, Any]:
    return json.loads((Path(repo) / "data" / "factory.json").read_text())


def repo_end(repo: Path | str) -> datetime:
    """The ``end`` (newest batch snapshot time) a factory repo was written with."""
    return datetime.fromisoformat(_factory_info(repo)["end"])


def pushed_rows(end: datetime) -> dict[str, Any]:
    """The rows ``populate_object_kinds`` pushes / writes online, as DataFrames:
    ``online`` (PushMode.ONLINE), ``online_and_offline`` and ``online_only_pairs``
    (``write_to_online_store`` into ``user_merchant``). Their event time is
    ``end + PUSH_OFFSET`` plus 250 ms (sub-second on purpose)."""
    import pandas as pd

    ts = pd.Timestamp(end + PUSH_OFFSET + timedelta(milliseconds=250))
    return {
        "online": pd.DataFrame(
            {
                "user_id": ONLINE_PUSH_USERS,
                "event_timestamp": [ts] * len(ONLINE_PUSH_USERS),
                "clicks": [900 + i for i in range(len(ONLINE_PUSH_USERS))],
                "last_page": ["/pushed-online"] * len(ONLINE_PUSH_USERS),
            }
        ),
        "online_and_offline": pd.DataFrame(
            {
                "user_id": OFFLINE_PUSH_USERS,
                "event_timestamp": [ts] * len(OFFLINE_PUSH_USERS),
                "clicks": [800 + i for i in range(len(OFFLINE_PUSH_USERS))],
                "last_page": ["/pushed-both"] * len(OFFLINE_PUSH_USERS),
            }
        ),
        "online_only_pairs": pd.DataFrame(
            {
                "user_id": [u for u, _ in ONLINE_ONLY_PAIRS],
                "merchant_id": [m for _, m in ONLINE_ONLY_PAIRS],
                "event_timestamp": [ts] * len(ONLINE_ONLY_PAIRS),
                "txn_count": [7 + i for i in range(len(ONLINE_ONLY_PAIRS))],
                "avg_amount": [1.25 * (i + 1) for i in range(len(ONLINE_ONLY_PAIRS))],
                "last_category": ["online-only"] * len(ONLINE_ONLY_PAIRS),
            }
        ),
    }


def populate_object_kinds(repo: Path | str) -> dict[str, Any]:
    """Fill an applied object-kinds repo's online store, in this order (SQLite would let a
    later materialize overwrite newer pushed rows):

    1. materialize every online view, one at a time, over the 30 days before ``end``;
    2. ``push(..., PushMode.ONLINE)`` rows that never reach the offline store;
    3. ``push(..., PushMode.ONLINE_AND_OFFLINE)`` rows;
    4. ``write_to_online_store("user_merchant", ...)`` pairs that exist online only.

    Returns what happened: ``materialized`` views, ``materialize_errors`` (view -> error:
    the entityless view fails on duckdb/postgres in Feast 0.67), ``push_offline_error``
    (postgres has no offline write), and the ``pushed`` DataFrames."""
    from feast import FeatureStore
    from feast.data_source import PushMode

    end = repo_end(repo)
    store = FeatureStore(repo_path=str(repo))
    summary: dict[str, Any] = {
        "materialized": [],
        "materialize_errors": {},
        "push_offline_error": None,
    }
    for view in OBJECT_KINDS_VIEWS:
        if not store.registry.get_any_feature_view(view, store.project).online:
            continue
        try:
            store.materialize(end - timedelta(days=30), end + timedelta(seconds=1), [view])
            summary["materialized"].append(view)
        except Exception as exc:  # recorded for the caller to assert on
            summary["materialize_errors"][view] = f"{type(exc).__name__}: {exc}"
    rows = pushed_rows(end)
    store.push("user_clicks_push", rows["online"], to=PushMode.ONLINE)
    try:
        store.push("user_clicks_push", rows["online_and_offline"], to=PushMode.ONLINE_AND_OFFLINE)
    except NotImplementedError as exc:  # the online half is written before the offline half
        summary["push_offline_error"] = f"NotImplementedError: {exc}"
    store.write_to_online_store("user_merchant", rows["online_only_pairs"])
    summary["pushed"] = rows
    return summary


def build_object_kinds_repo(path: Path | str, **options: Any) -> tuple[Path, dict[str, Any]]:
    """``write_object_kinds_repo`` + ``apply`` + ``populate_object_kinds``: (repo, summary)."""
    repo = write_object_kinds_repo(path, **options)
    apply(repo)
    return repo, populate_object_kinds(repo)


def _requirements(store: Any, name: str) -> tuple[set[str], dict[str, Any], dict[str, Any]]:
    """(entity columns of the request, column -> view join key, request field -> dtype) for a
    feature service or a (stream / on-demand) view name."""
    from feast.errors import FeatureServiceNotFoundException

    try:
        projections = list(store.get_feature_service(name).feature_view_projections)
    except FeatureServiceNotFoundException:
        projections = [store.registry.get_any_feature_view(name, store.project).projection]
    columns: set[str] = set()
    column_key: dict[str, Any] = {}
    request: dict[str, Any] = {}
    todo = list(projections)
    while todo:
        projection = todo.pop()
        view = store.registry.get_any_feature_view(projection.name, store.project)
        if hasattr(view, "source_request_sources"):  # on-demand view: look at its inputs
            for source in view.source_request_sources.values():
                request.update({f.name: f.dtype for f in source.schema})
            todo.extend(view.source_feature_view_projections.values())
            continue
        for column in view.entity_columns:
            if column.name == "__dummy_id":  # entityless view
                continue
            mapped = projection.join_key_map.get(column.name, column.name)
            columns.add(mapped)
            column_key[mapped] = column.name
    return columns, column_key, request


def entity_rows_for(
    repo: Path | str, service_or_view: str, n: int, seed: int = 0
) -> list[dict[str, Any]]:
    """``n`` entity rows (join keys, renamed by any join-key map, plus request data) that
    ``get_online_features`` accepts for a feature service or view of a factory repo, drawn
    from entities the repo holds. Rows for entityless-only requests are
    ``{"__dummy_id": ""}``: Feast 0.67 rejects an empty entity row."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    columns, column_key, request = _requirements(store, service_or_view)
    info = _factory_info(repo)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {}
        user = int(rng.choice(USERS))
        for column in sorted(columns):
            key = column_key[column]
            if key == "item_id":
                row[column] = int(rng.choice(every_type_entity_ids(info["entities"])))
            elif key == "user_id":
                row[column] = user
            elif key == "merchant_id":
                row[column] = str(rng.choice(merchants_of(user)))
            else:
                raise ValueError(f"no value pool for join key {key!r}")
        for field_name in sorted(request):
            if field_name == "amount":
                row[field_name] = float(round(rng.uniform(1, 250), 2))
            elif field_name == "channel":
                row[field_name] = str(rng.choice(["web", "app"]))
            else:
                raise ValueError(f"no value pool for request field {field_name!r}")
        rows.append(row or {"__dummy_id": ""})
    return rows
