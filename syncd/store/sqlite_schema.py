"""The SQLite schema, as the migrations that build it: a data table, appended to, never edited."""

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
        updated_at REAL
    );
    -- Live steps. A row with deleted = 1 is a tombstone: a step deleted outside git, kept so
    -- that an incremental sync knows to bring it back without scanning every step.
    CREATE TABLE steps (
        workspace TEXT NOT NULL,
        name TEXT NOT NULL,
        id TEXT NOT NULL,
        content TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        origin TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (workspace, name)
    ) WITHOUT ROWID;
    CREATE INDEX steps_origin ON steps (workspace, origin);
    -- Git's step files as of the last applied commit: lets an incremental sync read only
    -- the blobs a commit changed.
    CREATE TABLE git_files (
        workspace TEXT NOT NULL,
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        blob TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY (workspace, path)
    ) WITHOUT ROWID;
    CREATE INDEX git_files_name ON git_files (workspace, name);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        trigger TEXT NOT NULL,
        revision TEXT,
        result TEXT NOT NULL,
        created INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        finished_at REAL,
        error TEXT,
        dry_run INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_workspace ON runs (workspace, started_at DESC);
    """,
    """
    ALTER TABLE workspaces ADD COLUMN source_key TEXT;
    """,
    """
    -- Small named values that must survive a restart (e.g. how far the e-mail digests got).
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE INDEX runs_finished ON runs (finished_at);
    """,
    """
    -- The revision a sync was pinned to, and a person's suspension of automation (written
    -- apart from the rest of the state, see SyncState.suspended).
    ALTER TABLE workspaces ADD COLUMN pinned_revision TEXT;
    ALTER TABLE workspaces ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
    -- Each workspace's health as last assessed: since when, why, how many failures in a row.
    CREATE TABLE health (
        workspace TEXT PRIMARY KEY,
        health TEXT NOT NULL,
        since REAL,
        error TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        source_failing INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
    """
    -- Webhook deliveries taken lately, so that a redelivery starts nothing, even after a
    -- restart. Rows older than a day are pruned.
    CREATE TABLE deliveries (
        provider TEXT NOT NULL,
        id TEXT NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (provider, id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_seen ON deliveries (seen_at);
    """,
    """
    -- Writers' leases on workspaces: who may write a workspace now, until when, and the fence
    -- that rises at every take (see syncd.store.leases). A released lease keeps its fence.
    CREATE TABLE leases (
        workspace TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        fence INTEGER NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
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
    -- The audit: who did what, when, to which workspace, and how it ended (appended, never
    -- changed). id rises with each entry: newest first, and a page's cursor.
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
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
    CREATE INDEX runs_result ON runs (workspace, result, started_at DESC);
    """,
    """
    -- The checks run after a run's apply (`checks:`), as JSON: [{name, result, detail,
    -- duration}], or NULL when none ran.
    ALTER TABLE runs ADD COLUMN checks TEXT;
    """,
)
