//! The first admin token, as the public `alien serve` makes it (docs/compatibility.md,
//! Tokens): the database is the source of truth, and the raw token is shown once, on stdout,
//! never in the log.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};
use tracing::{info, warn};

use crate::store::Store;
use crate::store::tokens::{self, NewToken};
use crate::token::{RawToken, TokenKind};
use crate::{StartError, ids};

/// Where the public `alien-manager` binary keeps its admin token, relative to the data
/// directory. We import it once and then delete it: a raw token should not sit on disk.
pub const LEGACY_TOKEN_FILE: &str = "admin-token";

/// Makes sure an admin token exists. A token created or imported now is printed on `out`
/// with the shell exports to use it, and returned; an existing one is only named in the log.
pub async fn admin_token<W>(
    store: &Store,
    data_dir: &Path,
    base_url: String,
    out: W,
) -> Result<Option<RawToken>, StartError>
where
    W: Write + Send + 'static,
{
    let legacy = data_dir.join(LEGACY_TOKEN_FILE);
    store
        .write(move |conn| bootstrap(conn, &legacy, &base_url, out))
        .await
}

fn bootstrap(
    conn: &mut Connection,
    legacy: &Path,
    base_url: &str,
    mut out: impl Write,
) -> Result<Option<RawToken>, StartError> {
    // IMMEDIATE: looking for an admin and inserting one is a single step.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(prefix) = tokens::first_admin_prefix(&tx)? {
        info!("Using existing admin token {prefix}…");
        if remove(legacy) {
            info!(path = %legacy.display(), "removed a leftover admin token file; the database holds the admin token");
        }
        return Ok(None);
    }
    let (token, headline) = match read_legacy(legacy)? {
        Some(token) => (
            token,
            format!(
                "Admin token imported from {} (save this securely):",
                legacy.display()
            ),
        ),
        None => (
            RawToken::generate(TokenKind::Admin)?,
            "Admin token generated (save this securely):".to_owned(),
        ),
    };
    tokens::insert(
        &tx,
        &NewToken {
            id: &ids::token()?,
            kind: TokenKind::Admin,
            raw: &token,
            deployment_group_id: None,
            deployment_id: None,
        },
    )?;
    // Printed before the commit: if nobody can see the token, it must not become the one
    // admin token, which could then never be recovered.
    announce(&mut out, &headline, base_url, &token).map_err(StartError::AnnounceToken)?;
    tx.commit()?;
    info!(
        "Admin token {}… stored; it was printed on stdout and will not be shown again",
        token.key_prefix()
    );
    remove(legacy);
    Ok(Some(token))
}

fn announce(
    out: &mut impl Write,
    headline: &str,
    base_url: &str,
    token: &RawToken,
) -> io::Result<()> {
    writeln!(out, "{headline}")?;
    writeln!(out, "export ALIEN_MANAGER_URL={base_url}")?;
    writeln!(out, "export ALIEN_API_KEY={}", token.expose())?;
    out.flush()
}

fn read_legacy(path: &Path) -> Result<Option<RawToken>, StartError> {
    let failed = |source| StartError::LegacyAdminToken {
        path: PathBuf::from(path),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Err(failed(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is empty; delete it to have a new admin token generated",
        ))),
        Ok(text) => Ok(Some(RawToken::new(text.trim()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed(e)),
    }
}

/// Deletes the legacy token file if it is there; says whether it was.
fn remove(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(error) => {
            warn!(path = %path.display(), %error, "cannot delete the admin token file; delete it by hand");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::auth;

    /// Stdout as the test sees it.
    #[derive(Debug, Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            let bytes = self.0.lock().expect("not poisoned").clone();
            String::from_utf8(bytes).expect("utf-8")
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const URL: &str = "http://localhost:8080";

    async fn store(dir: &Path) -> Store {
        Store::open(dir.join("manager.db")).await.expect("open")
    }

    async fn stored_tokens(store: &Store) -> Vec<(String, String, String)> {
        store
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT type, key_prefix, key_hash FROM tokens")?;
                let rows = stmt
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
            .expect("tokens")
    }

    #[tokio::test]
    async fn the_first_start_prints_a_token_once_and_stores_only_its_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path()).await;
        let out = Captured::default();
        let token = admin_token(&store, dir.path(), URL.into(), out.clone())
            .await
            .expect("bootstrap")
            .expect("a new token");
        let raw = token.expose();
        assert!(raw.starts_with("ax_admin_"), "{raw}");
        assert_eq!(raw.len(), 41);
        assert!(
            raw[9..]
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{raw}"
        );
        assert_eq!(
            out.text(),
            format!(
                "Admin token generated (save this securely):\nexport ALIEN_MANAGER_URL={URL}\nexport ALIEN_API_KEY={raw}\n"
            )
        );
        assert_eq!(
            stored_tokens(&store).await,
            [(
                "admin".into(),
                raw[..12].to_owned(),
                crate::token::hash(raw)
            )]
        );
        let db = std::fs::read(dir.path().join("manager.db")).expect("db file");
        let wal = std::fs::read(dir.path().join("manager.db-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw.as_bytes()),
                "raw token on disk"
            );
        }

        let again = Captured::default();
        let second = admin_token(&store, dir.path(), URL.into(), again.clone())
            .await
            .expect("bootstrap again");
        assert_eq!(second, None);
        assert_eq!(again.text(), "", "an existing token is never printed");
        assert_eq!(stored_tokens(&store).await.len(), 1);
        let subject = auth::authenticate(&store, raw.to_owned())
            .await
            .expect("the first token still works");
        assert_eq!(subject.role, auth::Role::WorkspaceAdmin);
    }

    #[tokio::test]
    async fn a_legacy_token_file_is_imported_printed_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let legacy = dir.path().join(LEGACY_TOKEN_FILE);
        let raw = "ax_admin_0123456789abcdef0123456789abcdef";
        std::fs::write(&legacy, format!("{raw}\n")).expect("write legacy file");
        let store = store(dir.path()).await;
        let out = Captured::default();
        let token = admin_token(&store, dir.path(), URL.into(), out.clone())
            .await
            .expect("bootstrap")
            .expect("imported");
        assert_eq!(token.expose(), raw);
        assert!(
            out.text()
                .ends_with(&format!("export ALIEN_API_KEY={raw}\n")),
            "{}",
            out.text()
        );
        assert!(!legacy.exists(), "the raw token no longer sits on disk");
        auth::authenticate(&store, raw.to_owned())
            .await
            .expect("the imported token works");

        // A file left over beside an existing admin is removed, not imported.
        std::fs::write(&legacy, "ax_admin_ffffffffffffffffffffffffffffffff").expect("write");
        let again = admin_token(&store, dir.path(), URL.into(), Captured::default())
            .await
            .expect("bootstrap again");
        assert_eq!(again, None);
        assert!(!legacy.exists());
        assert_eq!(stored_tokens(&store).await.len(), 1);
    }

    #[tokio::test]
    async fn an_empty_legacy_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(LEGACY_TOKEN_FILE), "\n").expect("write");
        let store = store(dir.path()).await;
        let error = admin_token(&store, dir.path(), URL.into(), Captured::default())
            .await
            .expect_err("refused");
        assert!(
            matches!(error, StartError::LegacyAdminToken { .. }),
            "{error:?}"
        );
        assert!(stored_tokens(&store).await.is_empty());
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_printed_is_not_kept() {
        #[derive(Debug)]
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path()).await;
        let error = admin_token(&store, dir.path(), URL.into(), Closed)
            .await
            .expect_err("refused");
        assert!(matches!(error, StartError::AnnounceToken(_)), "{error:?}");
        assert!(stored_tokens(&store).await.is_empty(), "rolled back");
    }
}
