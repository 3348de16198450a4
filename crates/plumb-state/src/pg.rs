//! The PostgreSQL backend (`backend "pg" { conn_str = "..." }`).
//!
//! State lives in one row per workspace (`plumb_states`), journalled
//! instance records in `plumb_state_journal`; a full write replaces the row
//! and clears the journal in one transaction. The lock is a session-level
//! advisory lock held on a dedicated connection, so it disappears when the
//! holder's process or connection dies; `plumb_locks` records who holds it and
//! the lease they renew. A row whose advisory lock is free belonged to a holder
//! that died, and is reported and taken over.
//!
//! With encryption, `data` and the journal's `record`s hold sealed data
//! only; the `serial` and `lineage` columns stay readable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

use crate::encryption::{self, StateEncryption};
use crate::journal;
use crate::{
    JournalRecord, LEASE, LeaseInner, LockInfo, LockLease, StateBackend, StateError, StateSnapshot,
};

/// State in PostgreSQL.
pub struct PgBackend {
    conn_str: String,
    workspace: String,
    client: OnceCell<Arc<Client>>,
    encryption: Option<StateEncryption>,
    migrating: AtomicBool,
}

pub(crate) struct PgLease {
    client: Arc<Client>,
    renew: tokio::task::JoinHandle<()>,
    key: i64,
}

impl Drop for PgLease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS plumb_states (
    name text PRIMARY KEY,
    serial bigint NOT NULL,
    lineage text NOT NULL,
    data text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS plumb_state_journal (
    name text NOT NULL,
    seq bigserial,
    record text NOT NULL,
    PRIMARY KEY (name, seq)
);
CREATE TABLE IF NOT EXISTS plumb_locks (
    name text PRIMARY KEY,
    info text NOT NULL,
    backend_pid integer NOT NULL,
    lease_expires timestamptz NOT NULL
);";

async fn connect(conn_str: &str) -> Result<Client, StateError> {
    let (client, connection) = tokio_postgres::connect(conn_str, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection closed: {e}");
        }
    });
    Ok(client)
}

fn lock_key(name: &str) -> i64 {
    // FNV-1a, stable across processes and versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("plumb-state:{name}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

impl PgBackend {
    /// A backend for workspace `default` at `conn_str` (a libpq URL or
    /// key=value string).
    pub fn new(conn_str: impl Into<String>) -> PgBackend {
        PgBackend {
            conn_str: conn_str.into(),
            workspace: "default".into(),
            client: OnceCell::new(),
            encryption: None,
            migrating: AtomicBool::new(false),
        }
    }

    /// Whether the last read found a plaintext state that the configured
    /// encryption seals at the next write.
    pub fn migrating(&self) -> bool {
        self.migrating.load(Ordering::Relaxed)
    }

    /// The same state, kept encrypted with `encryption` (or in the clear).
    pub fn with_encryption(mut self, encryption: Option<StateEncryption>) -> PgBackend {
        self.encryption = encryption;
        self
    }

    /// A second handle on the same state (its own connection), with the
    /// same encryption.
    pub fn reopen(&self) -> PgBackend {
        PgBackend {
            conn_str: self.conn_str.clone(),
            workspace: self.workspace.clone(),
            client: OnceCell::new(),
            encryption: self.encryption.clone(),
            migrating: AtomicBool::new(false),
        }
    }

    async fn client(&self) -> Result<Arc<Client>, StateError> {
        self.client
            .get_or_try_init(|| async {
                let mut client = connect(&self.conn_str).await?;
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock(7081795)", &[])
                    .await?;
                tx.batch_execute(SCHEMA_SQL).await?;
                tx.commit().await?;
                Ok::<_, StateError>(Arc::new(client))
            })
            .await
            .cloned()
    }

    async fn holder(&self, client: &Client) -> Result<Option<(LockInfo, i32)>, StateError> {
        let row = client
            .query_opt(
                "SELECT info, backend_pid FROM plumb_locks WHERE name = $1",
                &[&self.workspace],
            )
            .await?;
        Ok(row.and_then(|r| {
            let info: String = r.get(0);
            let pid: i32 = r.get(1);
            serde_json::from_str(&info).ok().map(|i| (i, pid))
        }))
    }
}

impl StateBackend for PgBackend {
    fn describe(&self) -> String {
        format!("pg:{}", self.workspace)
    }

    async fn read(&self) -> Result<Option<StateSnapshot>, StateError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT data FROM plumb_states WHERE name = $1",
                &[&self.workspace],
            )
            .await?
        else {
            return Ok(None);
        };
        let data: String = row.get(0);
        let name = self.describe();
        let enc = self.encryption.as_ref();
        let (mut snapshot, plaintext) = encryption::decode_snapshot(enc, &name, data.as_bytes())?;
        self.migrating.store(plaintext, Ordering::Relaxed);
        let rows = client
            .query(
                "SELECT record FROM plumb_state_journal WHERE name = $1 ORDER BY seq",
                &[&self.workspace],
            )
            .await?;
        let mut lines = Vec::new();
        for r in rows {
            let line: String = r.get(0);
            lines.extend_from_slice(line.as_bytes());
            lines.push(b'\n');
        }
        journal::replay(enc, &name, &mut snapshot, &lines)?;
        Ok(Some(snapshot))
    }

    async fn write(&self, snapshot: &StateSnapshot) -> Result<(), StateError> {
        let client = self.client().await?;
        let bytes =
            encryption::encode_snapshot(self.encryption.as_ref(), &self.describe(), snapshot)?;
        let data = String::from_utf8_lossy(&bytes).into_owned();
        let serial = snapshot.serial as i64;
        client.batch_execute("BEGIN").await?;
        let result = async {
            client
                .execute(
                    "INSERT INTO plumb_states (name, serial, lineage, data, updated_at)
                     VALUES ($1, $2, $3, $4, now())
                     ON CONFLICT (name) DO UPDATE
                     SET serial = EXCLUDED.serial, lineage = EXCLUDED.lineage,
                         data = EXCLUDED.data, updated_at = now()",
                    &[&self.workspace, &serial, &snapshot.lineage, &data],
                )
                .await?;
            client
                .execute(
                    "DELETE FROM plumb_state_journal WHERE name = $1",
                    &[&self.workspace],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>(())
        }
        .await;
        match result {
            Ok(()) => {
                client.batch_execute("COMMIT").await?;
                self.migrating.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e.into());
            }
        }
        Ok(())
    }

    async fn append(
        &self,
        base: &StateSnapshot,
        records: &[JournalRecord],
    ) -> Result<(), StateError> {
        let client = self.client().await?;
        let encoded = journal::encode(self.encryption.as_ref(), &self.describe(), base, records)?;
        let lines: Vec<String> = encoded
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        client
            .execute(
                "INSERT INTO plumb_state_journal (name, record) SELECT $1, unnest($2::text[])",
                &[&self.workspace, &lines],
            )
            .await?;
        Ok(())
    }

    async fn lock(&self, mut info: LockInfo, timeout: Duration) -> Result<LockLease, StateError> {
        // Make sure the tables exist before the dedicated connection uses them.
        self.client().await?;
        let client = Arc::new(connect(&self.conn_str).await?);
        let key = lock_key(&self.workspace);
        let deadline = Instant::now() + timeout;
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await?
                .get(0);
            if got {
                let took_over = self.holder(&client).await?.map(|(i, _)| i);
                if let Some(stale) = &took_over {
                    tracing::warn!(
                        "taking over a stale lock: {} (its database session is gone)",
                        stale.describe()
                    );
                }
                info.lease_expires = crate::rfc3339_in(LEASE);
                let json =
                    serde_json::to_string(&info).map_err(|e| StateError::Corrupt(e.to_string()))?;
                let lease_secs = LEASE.as_secs_f64();
                client
                    .execute(
                        "INSERT INTO plumb_locks (name, info, backend_pid, lease_expires)
                         VALUES ($1, $2, pg_backend_pid(), now() + make_interval(secs => $3))
                         ON CONFLICT (name) DO UPDATE
                         SET info = EXCLUDED.info, backend_pid = EXCLUDED.backend_pid,
                             lease_expires = EXCLUDED.lease_expires",
                        &[&self.workspace, &json, &lease_secs],
                    )
                    .await?;
                let renew = {
                    let client = client.clone();
                    let name = self.workspace.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(LEASE / 3).await;
                            let r = client
                                .execute(
                                    "UPDATE plumb_locks SET lease_expires = now() + make_interval(secs => $2)
                                     WHERE name = $1 AND backend_pid = pg_backend_pid()",
                                    &[&name, &lease_secs],
                                )
                                .await;
                            if r.is_err() {
                                break;
                            }
                        }
                    })
                };
                return Ok(LockLease {
                    info,
                    took_over,
                    inner: LeaseInner::Pg(PgLease { client, renew, key }),
                });
            }
            if Instant::now() >= deadline {
                let holder = self
                    .holder(&client)
                    .await?
                    .map(|(i, _)| i)
                    .unwrap_or_else(|| LockInfo::unknown(self.describe()));
                return Err(StateError::Locked(Box::new(holder)));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn unlock(&self, lease: LockLease) -> Result<(), StateError> {
        let LeaseInner::Pg(l) = lease.inner else {
            return Ok(());
        };
        l.client
            .execute(
                "DELETE FROM plumb_locks WHERE name = $1 AND backend_pid = pg_backend_pid()",
                &[&self.workspace],
            )
            .await?;
        l.client
            .query_one("SELECT pg_advisory_unlock($1)", &[&l.key])
            .await?;
        Ok(())
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        let client = self.client().await?;
        match self.holder(&client).await? {
            Some((info, pid)) if info.id == id => {
                // Ending the holder's session releases its advisory lock.
                let _ = client
                    .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                    .await;
                client
                    .execute(
                        "DELETE FROM plumb_locks WHERE name = $1",
                        &[&self.workspace],
                    )
                    .await?;
                Ok(info)
            }
            other => Err(StateError::LockMismatch {
                given: id.to_string(),
                current: other
                    .map(|(i, _)| i.describe())
                    .unwrap_or_else(|| "none".into()),
            }),
        }
    }
}
