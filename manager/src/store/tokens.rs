//! The `tokens` table: one row per issued token, holding its hash and never the token.

use rusqlite::{Connection, OptionalExtension, params};

use super::NOW;
use crate::Error;
use crate::token::{RawToken, TokenKind};

/// A token as stored, with what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub kind: TokenKind,
    pub key_hash: String,
    pub deployment_group_id: Option<String>,
    pub deployment_id: Option<String>,
}

/// A token about to be stored: of `raw`, only the hash and the prefix are kept.
#[derive(Debug)]
pub struct NewToken<'a> {
    pub id: &'a str,
    pub kind: TokenKind,
    pub raw: &'a RawToken,
    pub deployment_group_id: Option<&'a str>,
    pub deployment_id: Option<&'a str>,
}

pub fn insert(conn: &Connection, token: &NewToken<'_>) -> Result<(), Error> {
    conn.execute(
        &format!(
            "INSERT INTO tokens (id, type, key_prefix, key_hash, deployment_group_id, deployment_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, {NOW})"
        ),
        params![
            token.id,
            token.kind.as_str(),
            token.raw.key_prefix(),
            token.raw.hash(),
            token.deployment_group_id,
            token.deployment_id
        ],
    )?;
    Ok(())
}

pub fn find_by_hash(conn: &Connection, key_hash: &str) -> Result<Option<TokenRecord>, Error> {
    // Cached: every authenticated request runs it.
    let row = conn
        .prepare_cached(
            "SELECT id, type, key_hash, deployment_group_id, deployment_id FROM tokens WHERE key_hash = ?1",
        )?
        .query_row([key_hash], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()?;
    row.map(|(id, kind, key_hash, deployment_group_id, deployment_id)| {
        let kind = TokenKind::from_db(&kind).ok_or_else(|| Error::UnknownTokenType {
            id: id.clone(),
            kind,
        })?;
        Ok(TokenRecord {
            id,
            kind,
            key_hash,
            deployment_group_id,
            deployment_id,
        })
    })
    .transpose()
}

/// The key prefix of the first admin token issued, if there is one.
pub fn first_admin_prefix(conn: &Connection) -> Result<Option<String>, Error> {
    Ok(conn
        .query_row(
            "SELECT key_prefix FROM tokens WHERE type = ?1 ORDER BY created_at, rowid LIMIT 1",
            [TokenKind::Admin.as_str()],
            |row| row.get(0),
        )
        .optional()?)
}

/// A token as listed to an admin: never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenListing {
    pub id: String,
    pub kind: String,
    pub key_prefix: String,
    pub deployment_group_id: Option<String>,
    pub deployment_id: Option<String>,
    pub created_at: String,
}

/// Newest first.
pub fn list(conn: &Connection) -> Result<Vec<TokenListing>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, type, key_prefix, deployment_group_id, deployment_id, created_at
         FROM tokens ORDER BY created_at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(TokenListing {
            id: row.get(0)?,
            kind: row.get(1)?,
            key_prefix: row.get(2)?,
            deployment_group_id: row.get(3)?,
            deployment_id: row.get(4)?,
            created_at: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes a token; `false` when there is none with that id.
pub fn delete(conn: &Connection, id: &str) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("DELETE FROM tokens WHERE id = ?1")?
        .execute([id])?
        == 1)
}
