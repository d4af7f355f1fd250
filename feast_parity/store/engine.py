"""SQLAlchemy engines for the parity store, and the one way to say that the store failed.

The parity store (``parity.store``) holds the SQL sample log, check runs, training datasets and
alerts. SQLite runs in WAL mode so readers never block the writer; PostgreSQL connects with a
short timeout so an unreachable store fails fast. Errors shown to users name the store by its
URL with the password masked, in one line (:func:`describe_error`): never SQLAlchemy's
multi-line text with its "Background on this error" link.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")


class StoreError(Exception):
    """The parity store cannot be used; the message is one line with the masked URL."""


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to print or log.

    >>> redact_url("postgresql+psycopg://u:secret@db:5432/parity")
    'postgresql+psycopg://u:***@db:5432/parity'
    """
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def describe_error(exc: BaseException) -> str:
    """One line about a database error: the driver's first line, no SQLAlchemy background."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(original or exc).__name__}: {first}" if first else type(exc).__name__


def create_engine(url: str, *, connect_timeout: float = 3.0) -> sa.Engine:
    """An engine for the parity store (SQLite: WAL, created directories; PostgreSQL: psycopg)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": int(connect_timeout)}
        )
    return sa.create_engine(url)


def open_store(url: str) -> sa.Engine:
    """An engine whose schema is ready (created or migrated), or :class:`StoreError`."""
    from feast_parity.parity.samplelog import NewerLogError
    from feast_parity.store.schema import ensure_schema

    try:
        engine = create_engine(url)
        ensure_schema(engine)
    except NewerLogError as exc:
        raise StoreError(f"parity store {redact_url(url)}: {exc}") from None
    except Exception as exc:
        raise StoreError(
            f"cannot open the parity store {redact_url(url)}: {describe_error(exc)}"
        ) from None
    return engine
