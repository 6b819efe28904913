"""PostgreSQL schema, as forward-only migrations. Never edit a released migration; append one.

Money columns are ``bigint`` micro-credits. Hot tables (holds, ledger, usage_daily, key_spend)
carry no foreign keys: their rows are written only by the functions below, inside the customer's
balance-row lock, and a foreign-key check would add a lookup and a row lock to every request.

Rows updated on every request (balances, key_spend, usage_daily) leave page room
(``fillfactor = 70``) so the updates stay HOT (no index writes, pruned in place).

Concurrency rule shared by every function: lock the ``balances`` rows involved first, in
ascending ``customer_id`` order, then touch holds/key_spend/ledger/usage of those customers only.
One global lock order means batched transactions from many replicas never deadlock.
"""

from __future__ import annotations

from newapi_gateway.store.migrations import Migration

V1_CORE = Migration(
    1,
    "core: customers, keys, balances, holds, ledger, usage rollups",
    (
        """
        CREATE TABLE customers (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            external_id text NOT NULL UNIQUE,
            display_name text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        """
        CREATE TABLE balances (
            customer_id bigint PRIMARY KEY REFERENCES customers (id),
            balance bigint NOT NULL DEFAULT 0,
            held bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
            updated_at timestamptz NOT NULL DEFAULT now()
        ) WITH (fillfactor = 70)
        """,
        """
        CREATE TABLE keys (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL REFERENCES customers (id),
            key_hash bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
            prefix text NOT NULL,
            tier text NOT NULL,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
            rotation integer NOT NULL DEFAULT 0,
            rpm integer CHECK (rpm > 0),
            tpm integer CHECK (tpm > 0),
            cap_daily bigint CHECK (cap_daily >= 0),
            cap_monthly bigint CHECK (cap_monthly >= 0),
            allowed_models text[] NOT NULL DEFAULT '{}',
            expires_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        "CREATE INDEX keys_customer_id ON keys (customer_id)",
        """
        CREATE TABLE key_spend (
            key_id bigint PRIMARY KEY,
            held bigint NOT NULL DEFAULT 0,
            day date NOT NULL DEFAULT '1970-01-01',
            day_spent bigint NOT NULL DEFAULT 0,
            day_requests bigint NOT NULL DEFAULT 0,
            month date NOT NULL DEFAULT '1970-01-01',
            month_spent bigint NOT NULL DEFAULT 0
        ) WITH (fillfactor = 70)
        """,
        """
        CREATE TABLE holds (
            request_id text PRIMARY KEY,
            customer_id bigint NOT NULL,
            key_id bigint NOT NULL,
            amount bigint NOT NULL CHECK (amount >= 0),
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """,
        "CREATE INDEX holds_expires_at ON holds (expires_at)",
        """
        CREATE TABLE ledger (
            customer_id bigint NOT NULL,
            id bigint GENERATED ALWAYS AS IDENTITY,
            key_id bigint,
            kind smallint NOT NULL CHECK (kind IN (1, 2, 3)),
            amount bigint NOT NULL,
            balance_after bigint NOT NULL,
            idempotency_key text NOT NULL,
            reason text,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (customer_id, id),
            UNIQUE (customer_id, idempotency_key)
        )
        """,
        """
        CREATE FUNCTION newapi_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the ledger is append-only: % is not allowed (book a correction with adjust)', TG_OP;
        END
        $$
        """,
        """
        CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
            FOR EACH ROW EXECUTE FUNCTION newapi_ledger_append_only()
        """,
        """
        CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
            FOR EACH STATEMENT EXECUTE FUNCTION newapi_ledger_append_only()
        """,
        """
        CREATE TABLE usage_daily (
            key_id bigint NOT NULL,
            day date NOT NULL,
            model text NOT NULL,
            customer_id bigint NOT NULL,
            requests bigint NOT NULL DEFAULT 0,
            input_tokens bigint NOT NULL DEFAULT 0,
            output_tokens bigint NOT NULL DEFAULT 0,
            cost bigint NOT NULL DEFAULT 0,
            estimated_requests bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (key_id, day, model)
        ) WITH (fillfactor = 70)
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
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            ts timestamptz NOT NULL,
            request_id text NOT NULL,
            customer_id bigint,
            key_id bigint,
            channel text,
            model text,
            upstream_model text,
            input_tokens bigint NOT NULL DEFAULT 0,
            output_tokens bigint NOT NULL DEFAULT 0,
            cost bigint NOT NULL DEFAULT 0,
            status integer NOT NULL,
            latency_ms integer NOT NULL DEFAULT 0,
            country text,
            decisions jsonb NOT NULL DEFAULT '{}',
            prompt text,
            completion text
        )
        """,
        "CREATE INDEX audit_events_ts ON audit_events (ts)",
        "CREATE INDEX audit_events_customer_ts ON audit_events (customer_id, ts, id)",
    ),
)

V3_FUNCTIONS = Migration(
    3,
    "hot-path functions v1: authorize, settle/release, expire holds, credit",
    (
        # Hot-path functions take the whole group-commit batch as ONE json argument: encoding one
        # string is far cheaper for the client than a dozen typed arrays, and order is kept.
        # authorize: items [{r: request id, k: key id, a: amount, u: unlimited credit, e: expiry as
        # epoch microseconds}]; outcome 0 held, 1 insufficient credit, 2 daily cap, 3 monthly cap,
        # 4 key not usable (o_reason says why), 5 a hold for this request id exists.
        # The caller's connection runs with synchronous_commit=off: a hold lost in a PostgreSQL
        # crash only un-reserves credit, so holds do not wait for a WAL flush. Debits do (settle).
        # key_spend.held (open holds per key) is only tracked for keys with a spending cap.
        """
        CREATE FUNCTION newapi_authorize_v1(p_items json, p_now timestamptz)
        RETURNS TABLE (o_request_id text, o_outcome smallint, o_customer_id bigint, o_available bigint,
                       o_cap bigint, o_committed bigint, o_reason text)
        LANGUAGE plpgsql AS $$
        DECLARE
            it record;
            n integer := json_array_length(p_items);
            k record;
            v_spend record;
            v_committed bigint;
            v_today date := (p_now AT TIME ZONE 'UTC')::date;
            v_month date := date_trunc('month', p_now AT TIME ZONE 'UTC')::date;
        BEGIN
            IF n > 1 THEN
                -- Several customers in one batch: lock their balance rows in ascending order first.
                PERFORM 1 FROM balances bl
                    WHERE bl.customer_id IN (
                        SELECT kk.customer_id FROM keys kk
                        WHERE kk.id IN (SELECT (e ->> 'k')::bigint FROM json_array_elements(p_items) e))
                    ORDER BY bl.customer_id FOR UPDATE;
            END IF;
            FOR it IN
                SELECT x.r, x.k, x.a, x.u, timestamptz 'epoch' + x.e * interval '1 microsecond' AS expires
                FROM ROWS FROM (json_to_recordset(p_items) AS (r text, k bigint, a bigint, u boolean, e bigint))
                     WITH ORDINALITY AS x (r, k, a, u, e, ord)
                ORDER BY x.ord
            LOOP
                o_request_id := it.r;
                o_customer_id := NULL; o_available := NULL; o_cap := NULL; o_committed := NULL; o_reason := NULL;
                SELECT kk.customer_id, kk.status, kk.expires_at, kk.cap_daily, kk.cap_monthly,
                       bl.balance - bl.held AS available
                    INTO k
                    FROM keys kk JOIN balances bl ON bl.customer_id = kk.customer_id
                    WHERE kk.id = it.k
                    FOR UPDATE OF bl;
                IF NOT FOUND THEN
                    o_outcome := 4; o_reason := 'unknown'; RETURN NEXT; CONTINUE;
                END IF;
                o_customer_id := k.customer_id;
                IF k.status <> 'active' THEN
                    o_outcome := 4; o_reason := k.status; RETURN NEXT; CONTINUE;
                END IF;
                IF k.expires_at IS NOT NULL AND k.expires_at <= p_now THEN
                    o_outcome := 4; o_reason := 'expired'; RETURN NEXT; CONTINUE;
                END IF;
                o_available := k.available;
                IF NOT it.u AND o_available < it.a THEN
                    o_outcome := 1; RETURN NEXT; CONTINUE;
                END IF;
                IF k.cap_daily IS NOT NULL OR k.cap_monthly IS NOT NULL THEN
                    SELECT sp.held, sp.day, sp.day_spent, sp.month, sp.month_spent INTO v_spend
                        FROM key_spend sp WHERE sp.key_id = it.k;
                    IF NOT FOUND THEN
                        SELECT 0::bigint AS held, v_today AS day, 0::bigint AS day_spent,
                               v_month AS month, 0::bigint AS month_spent INTO v_spend;
                    END IF;
                    IF k.cap_daily IS NOT NULL THEN
                        v_committed := v_spend.held
                            + CASE WHEN v_spend.day = v_today THEN v_spend.day_spent ELSE 0 END;
                        IF v_committed + it.a > k.cap_daily THEN
                            o_outcome := 2; o_cap := k.cap_daily; o_committed := v_committed;
                            RETURN NEXT; CONTINUE;
                        END IF;
                    END IF;
                    IF k.cap_monthly IS NOT NULL THEN
                        v_committed := v_spend.held
                            + CASE WHEN v_spend.month = v_month THEN v_spend.month_spent ELSE 0 END;
                        IF v_committed + it.a > k.cap_monthly THEN
                            o_outcome := 3; o_cap := k.cap_monthly; o_committed := v_committed;
                            RETURN NEXT; CONTINUE;
                        END IF;
                    END IF;
                END IF;
                INSERT INTO holds (request_id, customer_id, key_id, amount, created_at, expires_at)
                    VALUES (it.r, k.customer_id, it.k, it.a, p_now, it.expires)
                    ON CONFLICT DO NOTHING;
                IF NOT FOUND THEN
                    o_outcome := 5; RETURN NEXT; CONTINUE;
                END IF;
                UPDATE balances bl SET held = bl.held + it.a WHERE bl.customer_id = k.customer_id;
                IF k.cap_daily IS NOT NULL OR k.cap_monthly IS NOT NULL THEN
                    INSERT INTO key_spend AS sp (key_id, held) VALUES (it.k, it.a)
                        ON CONFLICT (key_id) DO UPDATE SET held = sp.held + EXCLUDED.held;
                END IF;
                o_available := o_available - it.a;
                o_outcome := 0;
                RETURN NEXT;
            END LOOP;
        END
        $$
        """,
        # settle: items [{r: request id, c: customer, k: key, x: cost (null = release without
        # charge), m: model, i: input tokens, o: output tokens, s: estimated}].
        # outcome 0 charged, 1 duplicate (already settled; nothing charged again), 2 released.
        """
        CREATE FUNCTION newapi_settle_v1(p_items json, p_now timestamptz)
        RETURNS TABLE (o_request_id text, o_outcome smallint, o_ledger_id bigint, o_charged bigint,
                       o_released bigint, o_balance_after bigint)
        LANGUAGE plpgsql AS $$
        DECLARE
            it record;
            v_hold bigint;
            v_cost bigint;
            v_ledger bigint;
            v_balance bigint;
            v_today date := (p_now AT TIME ZONE 'UTC')::date;
            v_month date := date_trunc('month', p_now AT TIME ZONE 'UTC')::date;
        BEGIN
            -- Balance rows first, ascending (also for one item: expire_holds takes the balance
            -- lock before touching holds, so settle must not hold a hold-row lock while waiting).
            PERFORM 1 FROM balances bl
                WHERE bl.customer_id IN (SELECT (e ->> 'c')::bigint FROM json_array_elements(p_items) e)
                ORDER BY bl.customer_id FOR UPDATE;
            FOR it IN
                SELECT x.r, x.c, x.k, x.x, x.m, x.i, x.o, x.s
                FROM ROWS FROM (json_to_recordset(p_items)
                                AS (r text, c bigint, k bigint, x bigint, m text, i bigint, o bigint, s boolean))
                     WITH ORDINALITY AS x (r, c, k, x, m, i, o, s, ord)
                ORDER BY x.ord
            LOOP
                o_request_id := it.r;
                o_ledger_id := NULL; o_charged := 0; o_released := 0; o_balance_after := NULL;
                DELETE FROM holds h WHERE h.request_id = it.r RETURNING h.amount INTO v_hold;
                v_hold := coalesce(v_hold, 0);
                v_cost := it.x;
                IF v_cost IS NULL THEN
                    UPDATE balances bl SET held = bl.held - v_hold WHERE bl.customer_id = it.c
                        RETURNING bl.balance INTO o_balance_after;
                    UPDATE key_spend sp SET held = greatest(sp.held - v_hold, 0)
                        WHERE sp.key_id = it.k AND sp.held > 0;
                    o_outcome := 2; o_released := v_hold; RETURN NEXT; CONTINUE;
                END IF;
                UPDATE balances bl SET balance = bl.balance - v_cost, held = bl.held - v_hold, updated_at = p_now
                    WHERE bl.customer_id = it.c
                    RETURNING bl.balance INTO v_balance;
                INSERT INTO ledger (customer_id, key_id, kind, amount, balance_after, idempotency_key, created_at)
                    VALUES (it.c, it.k, 3, -v_cost, v_balance, it.r, p_now)
                    ON CONFLICT DO NOTHING
                    RETURNING id INTO v_ledger;
                IF NOT FOUND THEN
                    -- Settled before: undo the charge (keep the hold release), report the original debit.
                    UPDATE balances bl SET balance = bl.balance + v_cost WHERE bl.customer_id = it.c;
                    SELECT l.id, -l.amount, l.balance_after INTO o_ledger_id, o_charged, o_balance_after
                        FROM ledger l
                        WHERE l.customer_id = it.c AND l.idempotency_key = it.r;
                    o_outcome := 1; o_released := v_hold; RETURN NEXT; CONTINUE;
                END IF;
                INSERT INTO key_spend AS sp (key_id, day, day_spent, day_requests, month, month_spent)
                    VALUES (it.k, v_today, v_cost, 1, v_month, v_cost)
                    ON CONFLICT (key_id) DO UPDATE SET
                        held = greatest(sp.held - v_hold, 0),
                        day_spent = CASE WHEN sp.day = EXCLUDED.day THEN sp.day_spent + EXCLUDED.day_spent
                                         ELSE EXCLUDED.day_spent END,
                        day_requests = CASE WHEN sp.day = EXCLUDED.day THEN sp.day_requests + 1 ELSE 1 END,
                        day = EXCLUDED.day,
                        month_spent = CASE WHEN sp.month = EXCLUDED.month THEN sp.month_spent + EXCLUDED.month_spent
                                           ELSE EXCLUDED.month_spent END,
                        month = EXCLUDED.month;
                INSERT INTO usage_daily AS u (key_id, day, model, customer_id, requests, input_tokens,
                                              output_tokens, cost, estimated_requests)
                    VALUES (it.k, v_today, it.m, it.c, 1, it.i,
                            it.o, v_cost, CASE WHEN it.s THEN 1 ELSE 0 END)
                    ON CONFLICT (key_id, day, model) DO UPDATE SET
                        requests = u.requests + 1,
                        input_tokens = u.input_tokens + EXCLUDED.input_tokens,
                        output_tokens = u.output_tokens + EXCLUDED.output_tokens,
                        cost = u.cost + EXCLUDED.cost,
                        estimated_requests = u.estimated_requests + EXCLUDED.estimated_requests;
                o_outcome := 0; o_ledger_id := v_ledger; o_charged := v_cost;
                o_released := greatest(v_hold - v_cost, 0); o_balance_after := v_balance;
                RETURN NEXT;
            END LOOP;
        END
        $$
        """,
        """
        CREATE FUNCTION newapi_expire_holds_v1(p_now timestamptz, p_limit integer) RETURNS integer
        LANGUAGE plpgsql AS $$
        DECLARE
            v_ids text[];
            v_customers bigint[];
            v_count integer;
        BEGIN
            SELECT array_agg(e.request_id), array_agg(DISTINCT e.customer_id) INTO v_ids, v_customers
                FROM (SELECT h.request_id, h.customer_id FROM holds h WHERE h.expires_at <= p_now
                      ORDER BY h.expires_at LIMIT p_limit) e;
            IF v_ids IS NULL THEN
                RETURN 0;
            END IF;
            -- Same lock order as authorize/settle: balance rows first, ascending.
            PERFORM 1 FROM balances bl WHERE bl.customer_id = ANY (v_customers)
                ORDER BY bl.customer_id FOR UPDATE;
            WITH gone AS (
                -- Re-checked under the lock: a settle may have removed some meanwhile.
                DELETE FROM holds h WHERE h.request_id = ANY (v_ids) AND h.expires_at <= p_now
                RETURNING h.customer_id, h.key_id, h.amount
            ), per_customer AS (
                UPDATE balances bl SET held = bl.held - g.amount
                FROM (SELECT customer_id, sum(amount) AS amount FROM gone GROUP BY customer_id) g
                WHERE bl.customer_id = g.customer_id
            ), per_key AS (
                UPDATE key_spend sp SET held = greatest(sp.held - g.amount, 0)
                FROM (SELECT key_id, sum(amount) AS amount FROM gone GROUP BY key_id) g
                WHERE sp.key_id = g.key_id
            )
            SELECT count(*) INTO v_count FROM gone;
            RETURN v_count;
        END
        $$
        """,
        # credit (top-up kind 1 / adjust kind 2). outcome 0 applied, 1 replay of the same
        # operation (nothing applied again), 2 idempotency key used for something else, 3 no customer.
        """
        CREATE FUNCTION newapi_credit_v1(
            p_customer_id bigint, p_kind smallint, p_amount bigint, p_key text, p_reason text, p_now timestamptz)
        RETURNS TABLE (o_outcome smallint, o_id bigint, o_kind smallint, o_amount bigint,
                       o_balance_after bigint, o_reason text, o_created_at timestamptz)
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM 1 FROM balances bl WHERE bl.customer_id = p_customer_id FOR UPDATE;
            IF NOT FOUND THEN
                o_outcome := 3; RETURN NEXT; RETURN;
            END IF;
            INSERT INTO ledger (customer_id, kind, amount, balance_after, idempotency_key, reason, created_at)
                SELECT p_customer_id, p_kind, p_amount, bl.balance + p_amount, p_key, p_reason, p_now
                FROM balances bl WHERE bl.customer_id = p_customer_id
                ON CONFLICT DO NOTHING
                RETURNING id, kind, amount, balance_after, reason, created_at
                INTO o_id, o_kind, o_amount, o_balance_after, o_reason, o_created_at;
            IF FOUND THEN
                UPDATE balances bl SET balance = o_balance_after, updated_at = p_now
                    WHERE bl.customer_id = p_customer_id;
                o_outcome := 0; RETURN NEXT; RETURN;
            END IF;
            SELECT l.id, l.kind, l.amount, l.balance_after, l.reason, l.created_at
                INTO o_id, o_kind, o_amount, o_balance_after, o_reason, o_created_at
                FROM ledger l WHERE l.customer_id = p_customer_id AND l.idempotency_key = p_key;
            o_outcome := CASE WHEN o_kind = p_kind AND o_amount = p_amount THEN 1 ELSE 2 END;
            RETURN NEXT;
        END
        $$
        """,
    ),
)

V4_SETTLE_V2 = Migration(
    4,
    "settle v2: set-based (one write per balance, key_spend and usage_daily row per batch)",
    (
        # Same contract and outcomes as newapi_settle_v1 (kept for older replicas during a rolling
        # update), but a batch costs one statement per table instead of five per item: the group
        # commit puts dozens of debits of the same customer/key/model into one call, and v1 wrote
        # the same balances/key_spend/usage_daily rows once per item (a row version and WAL record
        # each). Item by item, v1 did: delete the hold (the FIRST item with a request id gets it);
        # release (x null): balances.held -= hold, key_spend.held -= hold (floored at 0, existing
        # rows only); debit: if the ledger already has (customer, request id), or an earlier item
        # of this batch charged it, it is a duplicate (hold released from balances.held only, the
        # original debit reported); else charge, ledger row with the running balance, key_spend
        # (day/month rollover), usage_daily. Sequential floors at 0 of key_spend.held equal one
        # floor of the sum (hold amounts are >= 0), so the aggregates below write what v1 wrote.
        # No ON CONFLICT on the ledger insert: duplicates are found under the balance locks (every
        # ledger writer holds the customer's balance lock), so a unique violation here is a bug
        # and fails the batch rather than debiting a balance without its ledger row.
        """
        CREATE FUNCTION newapi_settle_v2(p_items json, p_now timestamptz)
        RETURNS TABLE (o_request_id text, o_outcome smallint, o_ledger_id bigint, o_charged bigint,
                       o_released bigint, o_balance_after bigint)
        LANGUAGE plpgsql
        -- Every table is reached by key, a batch at a time: never scan one whole (a cached plan
        -- made while a table was small would otherwise keep scanning it as it grows).
        SET enable_seqscan = off
        AS $$
        DECLARE
            v_today date := (p_now AT TIME ZONE 'UTC')::date;
            v_month date := date_trunc('month', p_now AT TIME ZONE 'UTC')::date;
        BEGIN
            -- Balance rows first, ascending (the lock order of every function; see v1).
            PERFORM 1 FROM balances bl
                WHERE bl.customer_id IN (SELECT (e ->> 'c')::bigint FROM json_array_elements(p_items) e)
                ORDER BY bl.customer_id FOR UPDATE;
            RETURN QUERY
            WITH it AS MATERIALIZED (
                SELECT x.ord, x.r, x.c, x.k, x.x, x.m, x.i, x.o, x.s,
                       row_number() OVER (PARTITION BY x.r ORDER BY x.ord) = 1 AS first_r,
                       x.x IS NOT NULL
                           AND row_number() OVER (PARTITION BY x.c, x.r, x.x IS NULL ORDER BY x.ord) = 1
                           AS first_debit
                FROM ROWS FROM (json_to_recordset(p_items)
                                AS (r text, c bigint, k bigint, x bigint, m text, i bigint, o bigint, s boolean))
                     WITH ORDINALITY AS x (r, c, k, x, m, i, o, s, ord)
            ), gone AS (
                DELETE FROM holds h WHERE h.request_id = ANY (ARRAY(SELECT it.r FROM it))
                RETURNING h.request_id, h.amount
            ), cls AS MATERIALIZED (
                SELECT it.ord, it.r, it.c, it.k, it.x, it.m, it.i, it.o, it.s,
                       coalesce(g.amount, 0) AS hold,
                       p.id AS p_id, p.charged AS p_charged, p.balance_after AS p_balance,
                       it.first_debit AND p.id IS NULL AS charge,
                       (bl.balance - sum(CASE WHEN it.first_debit AND p.id IS NULL THEN it.x ELSE 0 END)
                           OVER (PARTITION BY it.c ORDER BY it.ord))::bigint AS running
                FROM it
                LEFT JOIN gone g ON g.request_id = it.r AND it.first_r
                -- Settled before this batch? One unique-index probe per debit, whatever the
                -- statistics say (OFFSET 0 keeps the planner from turning it into a join).
                LEFT JOIN LATERAL (
                    SELECT l.id, -l.amount AS charged, l.balance_after FROM ledger l
                    WHERE it.x IS NOT NULL AND l.customer_id = it.c AND l.idempotency_key = it.r
                    OFFSET 0
                ) p ON true
                LEFT JOIN balances bl ON bl.customer_id = it.c
            ), ins AS (
                INSERT INTO ledger (customer_id, key_id, kind, amount, balance_after, idempotency_key, created_at)
                SELECT c.c, c.k, 3, -c.x, c.running, c.r, p_now FROM cls c WHERE c.charge ORDER BY c.ord
                RETURNING ledger.customer_id, ledger.idempotency_key, ledger.id, -ledger.amount AS charged,
                          ledger.balance_after
            ), per_customer AS (
                SELECT c.c, sum(CASE WHEN c.charge THEN c.x ELSE 0 END)::bigint AS cost,
                       sum(c.hold)::bigint AS hold, bool_or(c.x IS NOT NULL) AS debit
                FROM cls c GROUP BY c.c
            ), upd_balances AS (
                UPDATE balances bl
                SET balance = bl.balance - pc.cost, held = bl.held - pc.hold,
                    updated_at = CASE WHEN pc.debit THEN p_now ELSE bl.updated_at END
                FROM per_customer pc
                WHERE bl.customer_id = pc.c AND (pc.debit OR pc.hold <> 0)
            ), per_key AS (
                -- A duplicate's hold leaves balances.held only (as in v1), not key_spend.held.
                SELECT c.k, count(*) FILTER (WHERE c.charge) AS n,
                       coalesce(sum(c.x) FILTER (WHERE c.charge), 0)::bigint AS cost,
                       coalesce(sum(c.hold) FILTER (WHERE c.charge OR c.x IS NULL), 0)::bigint AS hold
                FROM cls c GROUP BY c.k
            ), spend_debit AS (
                INSERT INTO key_spend AS sp (key_id, day, day_spent, day_requests, month, month_spent)
                SELECT pk.k, v_today, pk.cost, pk.n, v_month, pk.cost FROM per_key pk WHERE pk.n > 0
                ON CONFLICT (key_id) DO UPDATE SET
                    held = greatest(sp.held - (SELECT pk.hold FROM per_key pk WHERE pk.k = EXCLUDED.key_id), 0),
                    day_spent = CASE WHEN sp.day = EXCLUDED.day THEN sp.day_spent + EXCLUDED.day_spent
                                     ELSE EXCLUDED.day_spent END,
                    day_requests = CASE WHEN sp.day = EXCLUDED.day THEN sp.day_requests + EXCLUDED.day_requests
                                        ELSE EXCLUDED.day_requests END,
                    day = EXCLUDED.day,
                    month_spent = CASE WHEN sp.month = EXCLUDED.month THEN sp.month_spent + EXCLUDED.month_spent
                                       ELSE EXCLUDED.month_spent END,
                    month = EXCLUDED.month
            ), spend_release AS (
                UPDATE key_spend sp SET held = greatest(sp.held - pk.hold, 0)
                FROM per_key pk
                WHERE sp.key_id = pk.k AND pk.n = 0 AND pk.hold > 0 AND sp.held > 0
            ), usage AS (
                INSERT INTO usage_daily AS u (key_id, day, model, customer_id, requests, input_tokens,
                                              output_tokens, cost, estimated_requests)
                SELECT c.k, v_today, c.m, (array_agg(c.c ORDER BY c.ord))[1], count(*), sum(c.i)::bigint,
                       sum(c.o)::bigint, sum(c.x)::bigint, count(*) FILTER (WHERE c.s)
                FROM cls c WHERE c.charge GROUP BY c.k, c.m
                ON CONFLICT (key_id, day, model) DO UPDATE SET
                    requests = u.requests + EXCLUDED.requests,
                    input_tokens = u.input_tokens + EXCLUDED.input_tokens,
                    output_tokens = u.output_tokens + EXCLUDED.output_tokens,
                    cost = u.cost + EXCLUDED.cost,
                    estimated_requests = u.estimated_requests + EXCLUDED.estimated_requests
            )
            SELECT c.r,
                   (CASE WHEN c.x IS NULL THEN 2 WHEN c.charge THEN 0 ELSE 1 END)::smallint,
                   CASE WHEN c.x IS NULL THEN NULL ELSE coalesce(c.p_id, n.id) END,
                   CASE WHEN c.x IS NULL THEN 0 WHEN c.charge THEN c.x ELSE coalesce(c.p_charged, n.charged) END,
                   CASE WHEN c.charge THEN greatest(c.hold - c.x, 0) ELSE c.hold END,
                   CASE WHEN c.x IS NULL OR c.charge THEN c.running ELSE coalesce(c.p_balance, n.balance_after) END
            FROM cls c
            LEFT JOIN ins n ON n.customer_id = c.c AND n.idempotency_key = c.r AND c.x IS NOT NULL
            ORDER BY c.ord;
        END
        $$
        """,
    ),
)

MIGRATIONS: tuple[Migration, ...] = (V1_CORE, V2_AUDIT, V3_FUNCTIONS, V4_SETTLE_V2)
