"""SQLite schema (embedded mode), as forward-only migrations mirroring the PostgreSQL ones.

Times are INTEGER microseconds since the Unix epoch (UTC), days are ISO ``YYYY-MM-DD`` TEXT,
lists and JSON are TEXT. The hot-path logic that PostgreSQL runs in functions runs in Python
(``newapi_gateway.store.sqlite``) inside one transaction per group commit.
"""

from __future__ import annotations

from newapi_gateway.store.migrations import Migration

V1_CORE = Migration(
    1,
    "core: customers, keys, balances, holds, ledger, usage rollups",
    (
        """
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            external_id TEXT NOT NULL UNIQUE,
            display_name TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE balances (
            customer_id INTEGER PRIMARY KEY REFERENCES customers (id),
            balance INTEGER NOT NULL DEFAULT 0,
            held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
            updated_at INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE keys (
            id INTEGER PRIMARY KEY,
            customer_id INTEGER NOT NULL REFERENCES customers (id),
            key_hash BLOB NOT NULL UNIQUE CHECK (length(key_hash) = 32),
            prefix TEXT NOT NULL,
            tier TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
            rotation INTEGER NOT NULL DEFAULT 0,
            rpm INTEGER CHECK (rpm > 0),
            tpm INTEGER CHECK (tpm > 0),
            cap_daily INTEGER CHECK (cap_daily >= 0),
            cap_monthly INTEGER CHECK (cap_monthly >= 0),
            allowed_models TEXT NOT NULL DEFAULT '[]',
            expires_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )
        """,
        "CREATE INDEX keys_customer_id ON keys (customer_id)",
        """
        CREATE TABLE key_spend (
            key_id INTEGER PRIMARY KEY,
            held INTEGER NOT NULL DEFAULT 0,
            day TEXT NOT NULL DEFAULT '1970-01-01',
            day_spent INTEGER NOT NULL DEFAULT 0,
            day_requests INTEGER NOT NULL DEFAULT 0,
            month TEXT NOT NULL DEFAULT '1970-01-01',
            month_spent INTEGER NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE holds (
            request_id TEXT PRIMARY KEY,
            customer_id INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            amount INTEGER NOT NULL CHECK (amount >= 0),
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        )
        """,
        "CREATE INDEX holds_expires_at ON holds (expires_at)",
        """
        CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            customer_id INTEGER NOT NULL,
            key_id INTEGER,
            kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
            amount INTEGER NOT NULL,
            balance_after INTEGER NOT NULL,
            idempotency_key TEXT NOT NULL,
            reason TEXT,
            created_at INTEGER NOT NULL,
            UNIQUE (customer_id, idempotency_key)
        )
        """,
        "CREATE INDEX ledger_customer_id ON ledger (customer_id, id)",
        """
        CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
        BEGIN
            SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is not allowed (book a correction with adjust)');
        END
        """,
        """
        CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
        BEGIN
            SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is not allowed (book a correction with adjust)');
        END
        """,
        """
        CREATE TABLE usage_daily (
            key_id INTEGER NOT NULL,
            day TEXT NOT NULL,
            model TEXT NOT NULL,
            customer_id INTEGER NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cost INTEGER NOT NULL DEFAULT 0,
            estimated_requests INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (key_id, day, model)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX usage_daily_customer_day ON usage_daily (customer_id, day)",
    ),
)

V2_AUDIT = Migration(
    2,
    "audit events (one row per request)",
    (
        """
        CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY,
            ts INTEGER NOT NULL,
            request_id TEXT NOT NULL,
            customer_id INTEGER,
            key_id INTEGER,
            channel TEXT,
            model TEXT,
            upstream_model TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cost INTEGER NOT NULL DEFAULT 0,
            status INTEGER NOT NULL,
            latency_ms INTEGER NOT NULL DEFAULT 0,
            country TEXT,
            decisions TEXT NOT NULL DEFAULT '{}',
            prompt TEXT,
            completion TEXT
        )
        """,
        "CREATE INDEX audit_events_ts ON audit_events (ts)",
        "CREATE INDEX audit_events_customer_ts ON audit_events (customer_id, ts, id)",
    ),
)

#: Version 3 is PostgreSQL's functions; SQLite runs that logic in Python, so v3 only records the
#: version (both back ends report the same schema version).
V3_FUNCTIONS = Migration(3, "hot-path logic v1 (in Python for SQLite)", ("SELECT 1",))

#: Version 4 is PostgreSQL's set-based settle function; nothing to do here either.
V4_SETTLE_V2 = Migration(4, "settle v2 (PostgreSQL function; SQLite settles in Python)", ("SELECT 1",))

MIGRATIONS: tuple[Migration, ...] = (V1_CORE, V2_AUDIT, V3_FUNCTIONS, V4_SETTLE_V2)
