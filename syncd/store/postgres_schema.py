"""The PostgreSQL schema, as the migrations that build it: a data table, appended to, never edited.

The same tables as `sqlite_schema`, in PostgreSQL's types. The version lives in the one-row
table `schema_version` (SQLite keeps it in `PRAGMA user_version`); each migration runs in its
own transaction together with the version bump, so a failed one leaves the previous version.
"""

# Made before any migration, under the same advisory lock; not itself a migration.
VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version INTEGER NOT NULL)"
)

# Each entry moves the schema one version up; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE workspaces (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL DEFAULT 'Unknown',
        last_applied_revision TEXT,
        last_seen_revision TEXT,
        last_run_id TEXT,
        failed_revision TEXT,
        drift INTEGER NOT NULL DEFAULT 0,
        source_key TEXT,
        -- The revision a sync was pinned to, and a person's suspension of automation (written
        -- apart from the rest of the state, see SyncState.suspended).
        pinned_revision TEXT,
        suspended BOOLEAN NOT NULL DEFAULT FALSE,
        updated_at DOUBLE PRECISION
    );
    -- Each workspace's health as last assessed: since when, why, how many failures in a row.
    CREATE TABLE health (
        workspace TEXT PRIMARY KEY,
        health TEXT NOT NULL,
        since DOUBLE PRECISION,
        error TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        source_failing BOOLEAN NOT NULL DEFAULT FALSE
    );
    -- Live steps. A row with deleted is a tombstone: a step deleted outside git, kept so that an
    -- incremental sync knows to bring it back without scanning every step.
    CREATE TABLE steps (
        workspace TEXT NOT NULL,
        name TEXT NOT NULL,
        id TEXT NOT NULL,
        content TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        origin TEXT NOT NULL,
        deleted BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (workspace, name)
    );
    CREATE INDEX steps_origin ON steps (workspace, origin);
    -- Git's step files as of the last applied commit.
    CREATE TABLE git_files (
        workspace TEXT NOT NULL,
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        blob TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY (workspace, path)
    );
    CREATE INDEX git_files_name ON git_files (workspace, name);
    -- seq orders runs that started at the same instant, as SQLite's rowid does.
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        workspace TEXT NOT NULL,
        trigger TEXT NOT NULL,
        revision TEXT,
        result TEXT NOT NULL,
        created INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        error TEXT,
        dry_run BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX runs_workspace ON runs (workspace, started_at DESC, seq DESC);
    CREATE INDEX runs_finished ON runs (finished_at);
    -- Small named values that must survive a restart (e.g. how far the e-mail digests got).
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    -- Webhook deliveries taken lately, so that a redelivery starts nothing, even after a
    -- restart. Rows older than a day are pruned.
    CREATE TABLE deliveries (
        provider TEXT NOT NULL,
        id TEXT NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (provider, id)
    );
    CREATE INDEX deliveries_seen ON deliveries (seen_at);
    """,
    # Replicas (syncd.replicas.postgres): sync requests, durable before they are answered,
    # until the run that serves them is recorded; each remote's next poll; each replica's
    # heartbeat and the workspaces it holds. Times are the database's clock.
    """
    CREATE TABLE sync_requests (
        id BIGSERIAL PRIMARY KEY,
        workspace TEXT NOT NULL,
        trigger TEXT NOT NULL,
        revision TEXT,
        dry_run BOOLEAN NOT NULL DEFAULT FALSE,
        head TEXT,
        run_id TEXT NOT NULL,
        requested_at DOUBLE PRECISION NOT NULL,
        not_before DOUBLE PRECISION NOT NULL,
        claimed_by TEXT,
        claimed_at DOUBLE PRECISION
    );
    CREATE INDEX sync_requests_workspace ON sync_requests (workspace, id);
    CREATE TABLE polls (
        remote TEXT PRIMARY KEY,
        due_at DOUBLE PRECISION NOT NULL,
        polled_by TEXT,
        polled_at DOUBLE PRECISION
    );
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        holds TEXT NOT NULL DEFAULT '[]'
    );
    """,
    """
    -- Writers' leases on workspaces: who may write a workspace now, until when (the
    -- database's clock), and the fence that rises at every take (see syncd.store.leases).
    CREATE TABLE leases (
        workspace TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        fence BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    """,
    """
    -- Who asked for a run, the commit it read (its message's first line and its author), and
    -- whose signature on it was verified.
    ALTER TABLE runs ADD COLUMN actor TEXT;
    ALTER TABLE runs ADD COLUMN message TEXT;
    ALTER TABLE runs ADD COLUMN author TEXT;
    ALTER TABLE runs ADD COLUMN signed_by TEXT;
    """,
    """
    -- Who asked for a sync request (a token's name, `local:<user>`): its run records it.
    ALTER TABLE sync_requests ADD COLUMN actor TEXT;
    """,
    """
    -- The audit: who did what, when, to which workspace, and how it ended (appended, never
    -- changed). id rises with each entry: newest first, and a page's cursor.
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        via TEXT NOT NULL,
        action TEXT NOT NULL,
        workspace TEXT,
        revision TEXT,
        step TEXT,
        result TEXT NOT NULL,
        status INTEGER NOT NULL,
        detail TEXT
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX audit_workspace ON audit (workspace, id);
    CREATE INDEX audit_actor ON audit (actor, id);
    """,
    """
    -- The runs history pruning always keeps (a workspace's newest succeeded, newest applied),
    -- found without reading every run of a workspace that has failed for long.
    CREATE INDEX runs_result ON runs (workspace, result, started_at DESC, seq DESC);
    """,
    """
    -- The checks run after a run's apply (`checks:`), as JSON: [{name, result, detail,
    -- duration}], or NULL when none ran.
    ALTER TABLE runs ADD COLUMN checks TEXT;
    """,
)
