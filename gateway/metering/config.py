"""Where the gateway keeps its state: ``--database-url`` / ``--redis-url`` and their env fallbacks (pure).

Database, first match wins:

1. ``--database-url``;
2. ``NEWAPI_DATABASE_URL``;
3. ``SQL_DSN`` (what the operator's Deployment passes from the instance's database Secret);
4. none: the embedded SQLite file ``<state dir>/newapi.db``.

``postgresql://`` / ``postgres://`` select PostgreSQL; ``sqlite:///relative/path.db`` and
``sqlite:////absolute/path.db`` (SQLAlchemy's spelling) select SQLite.

Redis (rate limits and key invalidation shared by every replica): ``--redis-url``, else
``NEWAPI_REDIS_URL``, else ``VALKEY_URL`` (the operator's Deployment); none = in-process limits
and invalidation (one gateway process only). ``redis://``, ``rediss://`` (TLS) and ``valkey://``
(read as ``redis://``) are accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

DATABASE_ENV = ("NEWAPI_DATABASE_URL", "SQL_DSN")
REDIS_ENV = ("NEWAPI_REDIS_URL", "VALKEY_URL")
SQLITE_FILE = "newapi.db"


class InvalidStateConfig(ValueError):
    """The database or Redis URL is unusable; the message names the option and what to write."""


@dataclass(frozen=True)
class StateConfig:
    """The resolved state back ends."""

    backend: Literal["postgres", "sqlite"]
    #: PostgreSQL DSN (``backend == "postgres"``).
    dsn: str | None
    #: SQLite file (``backend == "sqlite"``).
    sqlite_path: str | None
    redis_url: str | None
    #: Which option or variable named the database (``--database-url``, ``SQL_DSN``, ``default``).
    database_source: str
    redis_source: str | None

    def describe(self) -> dict[str, str | None]:
        """For the startup log: passwords masked."""
        return {
            "backend": self.backend,
            "database": redact(self.dsn) if self.dsn else self.sqlite_path,
            "database_source": self.database_source,
            "redis": redact(self.redis_url) if self.redis_url else None,
            "redis_source": self.redis_source,
        }


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def _first(flag: str | None, flag_name: str, env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str | None, str]:
    if flag:
        return flag, flag_name
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value, name
    return None, "default"


def parse_database_url(url: str, source: str) -> tuple[Literal["postgres", "sqlite"], str]:
    """``(backend, dsn or sqlite path)``; raises :class:`InvalidStateConfig` naming ``source``."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        if not urlsplit(url).hostname and "host=" not in url:
            raise InvalidStateConfig(f"{source}: {redact(url)} has no host (postgresql://user:password@host:5432/db)")
        return "postgres", url
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.lower().startswith("sqlite:///") else ""
        if not path:
            raise InvalidStateConfig(
                f"{source}: {url!r} names no file; write sqlite:///relative/file.db or sqlite:////absolute/file.db"
            )
        return "sqlite", path
    raise InvalidStateConfig(
        f"{source}: unsupported database URL {redact(url)!r}; use postgresql://user:password@host:5432/db "
        "or sqlite:///path/to/file.db (or leave it out for the embedded SQLite file under --state-dir)"
    )


def parse_redis_url(url: str, source: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "valkey":
        url = "redis://" + url.split("://", 1)[1]
        scheme = "redis"
    if scheme not in ("redis", "rediss") or not urlsplit(url).hostname:
        raise InvalidStateConfig(
            f"{source}: unsupported Redis URL {redact(url)!r}; use redis://host:6379/0 (rediss:// for TLS)"
        )
    return url


def resolve_state(
    database_url: str | None, redis_url: str | None, state_dir: str, env: Mapping[str, str] | None = None
) -> StateConfig:
    """Resolve the back ends from the flags and ``env`` (default ``os.environ``); see the module docstring."""
    env = os.environ if env is None else env
    db, db_source = _first(database_url, "--database-url", env, DATABASE_ENV)
    rurl, r_source = _first(redis_url, "--redis-url", env, REDIS_ENV)
    redis = parse_redis_url(rurl, r_source) if rurl else None
    if db is None:
        return StateConfig("sqlite", None, os.path.join(state_dir, SQLITE_FILE), redis, "default",
                           r_source if redis else None)
    backend, target = parse_database_url(db, db_source)
    if backend == "postgres":
        return StateConfig("postgres", target, None, redis, db_source, r_source if redis else None)
    return StateConfig("sqlite", None, target, redis, db_source, r_source if redis else None)
