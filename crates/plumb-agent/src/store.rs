//! The agent's embedded store: one SQLite file under the data directory.
//!
//! It holds per-Application status, sync history, suspensions (set by a
//! rollback, lifted by resume) and API token hashes. Every write is one
//! transaction, and SQLite's write-ahead log makes a crash or kill -9 at any
//! point leave the last committed state. Several processes may open it at once
//! (`plumb token create` while an agent runs).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::status::{AppStatus, HistoryEntry};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// A stored value does not decode.
    #[error("store {path}: corrupt record: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What.
        message: String,
    },
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May read and write.
    Admin,
    /// May only read.
    Readonly,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "readonly" => Ok(Role::Readonly),
            other => Err(format!("unknown role {other:?}: use admin or readonly")),
        }
    }
}

/// How many hex digits of a token's hash name it in `plumb token list`.
pub const TOKEN_ID_LEN: usize = 12;

/// A stored token, as `plumb token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The first hex digits of the token's hash.
    pub id: String,
    /// The name given at creation.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was made (Unix seconds).
    pub created: i64,
}

/// The store.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS status (app TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    app TEXT NOT NULL, id INTEGER NOT NULL, json TEXT NOT NULL,
    PRIMARY KEY (app, id));
CREATE TABLE IF NOT EXISTS suspension (app TEXT PRIMARY KEY, revision TEXT NOT NULL, since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS token (hash TEXT PRIMARY KEY, role TEXT NOT NULL, created INTEGER NOT NULL, name TEXT NOT NULL);
";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The hash under which a token is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Open (creating) `DATA_DIR/plumb.db`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("plumb.db");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = match self.conn.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        f(&mut conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, json: &str) -> Result<T, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Save an Application's status.
    pub fn put_status(&self, s: &AppStatus) -> Result<(), StoreError> {
        let json = serde_json::to_string(s).unwrap_or_default();
        self.with(|c| {
            c.execute(
                "INSERT INTO status (app, json) VALUES (?1, ?2) ON CONFLICT(app) DO UPDATE SET json = excluded.json",
                params![s.key, json],
            )
            .map(|_| ())
        })
    }

    /// Every saved status.
    pub fn statuses(&self) -> Result<Vec<AppStatus>, StoreError> {
        let rows: Vec<String> = self.with(|c| {
            let mut st = c.prepare("SELECT json FROM status ORDER BY app")?;
            st.query_map([], |r| r.get(0))?.collect()
        })?;
        rows.iter().map(|j| self.decode(j)).collect()
    }

    /// Append a history entry (assigning its id) and keep only the newest `keep`.
    pub fn add_history(
        &self,
        app: &str,
        mut entry: HistoryEntry,
        keep: usize,
    ) -> Result<HistoryEntry, StoreError> {
        let keep = keep.max(1) as i64;
        let out = self.with(|c| {
            let tx = c.transaction()?;
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(id), 0) + 1 FROM history WHERE app = ?1",
                params![app],
                |r| r.get(0),
            )?;
            entry.id = next as u64;
            let json = serde_json::to_string(&entry).unwrap_or_default();
            tx.execute(
                "INSERT INTO history (app, id, json) VALUES (?1, ?2, ?3)",
                params![app, next, json],
            )?;
            tx.execute(
                "DELETE FROM history WHERE app = ?1 AND id <= ?2",
                params![app, next - keep],
            )?;
            tx.commit()?;
            Ok(entry)
        })?;
        Ok(out)
    }

    /// History of an Application, newest first.
    pub fn history(&self, app: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows: Vec<String> = self.with(|c| {
            let mut st = c.prepare("SELECT json FROM history WHERE app = ?1 ORDER BY id DESC")?;
            st.query_map(params![app], |r| r.get(0))?.collect()
        })?;
        rows.iter().map(|j| self.decode(j)).collect()
    }

    /// Pin an Application to `revision` and stop automated sync.
    pub fn suspend(&self, app: &str, revision: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO suspension (app, revision, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT(app) DO UPDATE SET revision = excluded.revision, since = excluded.since",
                params![app, revision, now()],
            )
            .map(|_| ())
        })
    }

    /// Lift a suspension; whether there was one.
    pub fn resume(&self, app: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM suspension WHERE app = ?1", params![app])
                .map(|n| n > 0)
        })
    }

    /// The revision an Application is pinned to, if suspended.
    pub fn suspension(&self, app: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT revision FROM suspension WHERE app = ?1",
                params![app],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Store a new token's hash with its role.
    pub fn add_token(&self, token: &str, role: Role, name: &str) -> Result<(), StoreError> {
        let role = match role {
            Role::Admin => "admin",
            Role::Readonly => "readonly",
        };
        self.with(|c| {
            c.execute(
                "INSERT INTO token (hash, role, created, name) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash(token), role, now(), name],
            )
            .map(|_| ())
        })
    }

    /// The role of a presented token, if it is known.
    pub fn token_role(&self, token: &str) -> Result<Option<Role>, StoreError> {
        let role: Option<String> = self.with(|c| {
            c.query_row(
                "SELECT role FROM token WHERE hash = ?1",
                params![token_hash(token)],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok(role.and_then(|r| r.parse().ok()))
    }

    /// Every token, oldest first: its id, name, role and creation time
    /// (never the token, nor more of its hash than the id).
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = self.with(|c| {
            let mut st =
                c.prepare("SELECT hash, name, role, created FROM token ORDER BY created, hash")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(hash, name, role, created)| {
                Ok(TokenInfo {
                    id: hash[..TOKEN_ID_LEN.min(hash.len())].to_string(),
                    name,
                    role: role.parse().map_err(|message| StoreError::Corrupt {
                        path: self.path.clone(),
                        message,
                    })?,
                    created,
                })
            })
            .collect()
    }

    /// Revokes the one token whose id or name is `which`; returns what it
    /// was. Nothing changes when none or several match.
    pub fn revoke_token(&self, which: &str) -> Result<Result<TokenInfo, String>, StoreError> {
        let matching: Vec<TokenInfo> = self
            .tokens()?
            .into_iter()
            .filter(|t| t.id == which || (!t.name.is_empty() && t.name == which))
            .collect();
        match matching.as_slice() {
            [one] => {
                let pattern = format!("{}%", one.id);
                self.with(|c| c.execute("DELETE FROM token WHERE hash LIKE ?1", params![pattern]))?;
                Ok(Ok(one.clone()))
            }
            [] => Ok(Err(format!("no token has the id or name {which:?}"))),
            many => Ok(Err(format!(
                "{} tokens are named {which:?}; revoke one by its id ({})",
                many.len(),
                many.iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// How many tokens exist.
    pub fn token_count(&self) -> Result<usize, StoreError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM token", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as usize)
    }
}

/// A new random token: 32 bytes from the OS, hex, with a recognisable prefix.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    format!("plumb_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::HistoryEntry;

    fn entry(rev: &str) -> HistoryEntry {
        HistoryEntry {
            id: 0,
            revision: rev.into(),
            ..Default::default()
        }
    }

    #[test]
    fn history_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..7 {
            store
                .add_history("a/b", entry(&format!("r{i}")), 5)
                .unwrap();
        }
        let h = store.history("a/b").unwrap();
        assert_eq!(h.len(), 5);
        assert_eq!(h[0].revision, "r6");
        assert_eq!(h[0].id, 7);
        assert_eq!(h[4].revision, "r2");
        assert!(store.history("other").unwrap().is_empty());
    }

    #[test]
    fn tokens_are_stored_hashed_and_seen_by_other_handles() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path()).unwrap();
        let b = Store::open(dir.path()).unwrap();
        let t = new_token();
        assert!(t.starts_with("plumb_") && t.len() == 70);
        a.add_token(&t, Role::Readonly, "ci").unwrap();
        assert_eq!(b.token_role(&t).unwrap(), Some(Role::Readonly));
        assert_eq!(b.token_role("plumb_wrong").unwrap(), None);
        // Listed without the token; revoked by name, everywhere at once.
        let list = a.tokens().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].name.as_str(), list[0].role),
            ("ci", Role::Readonly)
        );
        assert!(t.len() > list[0].id.len() && !t.contains(&list[0].id));
        let other = new_token();
        a.add_token(&other, Role::Admin, "ci").unwrap();
        assert!(a.revoke_token("ci").unwrap().is_err(), "two are named ci");
        assert!(a.revoke_token("nobody").unwrap().is_err());
        assert_eq!(
            b.token_count().unwrap(),
            2,
            "a refused revoke changes nothing"
        );
        let id = a
            .tokens()
            .unwrap()
            .into_iter()
            .find(|x| x.role == Role::Readonly)
            .unwrap()
            .id;
        let gone = a.revoke_token(&id).unwrap().unwrap();
        assert_eq!(gone.id, id);
        assert_eq!(b.token_count().unwrap(), 1);
        assert_eq!(
            b.token_role(&t).unwrap(),
            None,
            "the revoked token no longer works"
        );
        let raw = std::fs::read(dir.path().join("plumb.db")).unwrap();
        let wal = std::fs::read(dir.path().join("plumb.db-wal")).unwrap_or_default();
        let needle = t.as_bytes();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn suspensions_pin_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.suspension("x").unwrap(), None);
        s.suspend("x", "abc").unwrap();
        assert_eq!(s.suspension("x").unwrap().as_deref(), Some("abc"));
        assert!(s.resume("x").unwrap());
        assert!(!s.resume("x").unwrap());
    }
}
