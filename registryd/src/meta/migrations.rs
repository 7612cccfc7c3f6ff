//! Schema migrations, versioned by `PRAGMA user_version`: version N means the first N entries
//! of [`MIGRATIONS`] are applied, each in its own transaction. Append; never edit one.

pub const MIGRATIONS: &[&str] = &[INITIAL_SCHEMA];

/// Times are Unix milliseconds. Digests are `algorithm:hex` strings.
const INITIAL_SCHEMA: &str = "
CREATE TABLE repositories (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per file under blobs/: content shared by all repositories. `touched_at` is when a
-- push last wrote, mounted, checked or referenced it; the collector spares recent ones.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    touched_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Which repository may read which blob (uploaded or mounted there).
CREATE TABLE repo_blobs (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX repo_blobs_digest ON repo_blobs (digest);

-- A manifest's bytes are the blob with its digest; this row is its place in a repository.
CREATE TABLE manifests (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    artifact_type TEXT,
    subject TEXT,
    annotations TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX manifests_subject ON manifests (repo, subject) WHERE subject IS NOT NULL;
CREATE INDEX manifests_digest ON manifests (digest);

-- What each manifest references: its config and layers (kind 'blob') or, for an index,
-- its manifests (kind 'manifest').
CREATE TABLE manifest_refs (
    repo TEXT NOT NULL,
    manifest TEXT NOT NULL,
    child TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (repo, manifest, child)
) WITHOUT ROWID;
CREATE INDEX manifest_refs_child ON manifest_refs (child);

CREATE TABLE tags (
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
CREATE INDEX tags_digest ON tags (repo, digest);

-- Upload sessions; their bytes are uploads/<id>, of which the first `length` are
-- acknowledged (written and fsynced before this row said so).
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    length INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
";
