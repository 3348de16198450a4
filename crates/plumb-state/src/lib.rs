//! Where a stack's state lives, and who may change it.
//!
//! This crate owns the state snapshot in Terraform's v4 JSON format (version,
//! serial, lineage, resources, outputs — so existing tools read it), the
//! journal that makes each completed resource durable without rewriting the
//! whole file, and the lock that names its holder. Two backends implement
//! [`StateBackend`]: a local file next to the stack (the default) and
//! PostgreSQL (`backend "pg"`). Either may keep its state encrypted at rest
//! ([`StateEncryption`], see the `encryption` module): the cipher is the
//! caller's, the stored shape and the rules for reading it are this crate's.
//!
//! It must not know about configuration, providers or plans: it stores what
//! the engine hands it and refuses writers that do not hold the lock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod encryption;
mod journal;
mod local;
mod pg;

pub use encryption::{CipherError, ENCRYPTION_VERSION, StateCipher, StateEncryption};
pub use journal::{JournalRecord, apply as journal_apply};
pub use local::LocalBackend;
pub use pg::PgBackend;

/// A full state snapshot, as Terraform writes it (format version 4).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StateSnapshot {
    /// Always 4.
    pub version: u32,
    /// The tool version that wrote it.
    pub terraform_version: String,
    /// Increases with every change.
    pub serial: u64,
    /// Identifies this state's history; never changes once made.
    pub lineage: String,
    /// Root module outputs.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputState>,
    /// Every resource, each with its instances.
    #[serde(default)]
    pub resources: Vec<ResourceState>,
    /// Terraform writes `check_results`; plumb keeps whatever is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_results: Option<serde_json::Value>,
}

/// One output value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OutputState {
    /// The value (JSON).
    pub value: serde_json::Value,
    /// Its type (cty type JSON).
    #[serde(rename = "type")]
    pub ty: serde_json::Value,
    /// Redacted in output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// One resource block's state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResourceState {
    /// `module.a.module.b`, absent for the root module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// `managed` or `data`.
    pub mode: String,
    /// The resource type.
    #[serde(rename = "type")]
    pub ty: String,
    /// The resource name.
    pub name: String,
    /// `provider["registry.terraform.io/hashicorp/random"]` (with `.alias`).
    pub provider: String,
    /// Instances (one without a key, or keyed by count index / for_each key).
    pub instances: Vec<InstanceState>,
}

/// One instance of a resource.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceState {
    /// The count index (number) or for_each key (string); absent for single instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_key: Option<serde_json::Value>,
    /// The resource schema version the attributes follow.
    #[serde(default)]
    pub schema_version: i64,
    /// The attributes.
    pub attributes: serde_json::Value,
    /// Paths of sensitive attributes.
    #[serde(default)]
    pub sensitive_attributes: Vec<serde_json::Value>,
    /// Provider-private data, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<String>,
    /// Resources this one depended on when it was last applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Set when the instance was created with create_before_destroy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_before_destroy: bool,
}

impl StateSnapshot {
    /// An empty state with a fresh lineage.
    pub fn new(tool_version: &str) -> StateSnapshot {
        StateSnapshot {
            version: 4,
            terraform_version: tool_version.to_string(),
            serial: 0,
            lineage: new_id(),
            outputs: BTreeMap::new(),
            resources: Vec::new(),
            check_results: None,
        }
    }

    /// Parses a state file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<StateSnapshot, StateError> {
        let s: StateSnapshot =
            serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt(e.to_string()))?;
        if s.version != 4 {
            return Err(StateError::Corrupt(format!(
                "state format version {} is not supported (plumb reads version 4)",
                s.version
            )));
        }
        Ok(s)
    }

    /// Serialises with Terraform's two-space indentation.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Finds a resource by address parts.
    pub fn resource(
        &self,
        module: Option<&str>,
        mode: &str,
        ty: &str,
        name: &str,
    ) -> Option<&ResourceState> {
        self.resources.iter().find(|r| {
            r.module.as_deref() == module && r.mode == mode && r.ty == ty && r.name == name
        })
    }

    /// Puts (or replaces) one instance, creating the resource entry if needed.
    pub fn put_instance(&mut self, res: ResourceKey, instance: InstanceState) {
        let entry = match self.resources.iter_mut().position(|r| res.matches(r)) {
            Some(i) => &mut self.resources[i],
            None => {
                self.resources.push(ResourceState {
                    module: res.module.clone(),
                    mode: res.mode.clone(),
                    ty: res.ty.clone(),
                    name: res.name.clone(),
                    provider: res.provider.clone(),
                    instances: Vec::new(),
                });
                let last = self.resources.len() - 1;
                &mut self.resources[last]
            }
        };
        entry.provider = res.provider;
        match entry
            .instances
            .iter_mut()
            .find(|i| i.index_key == instance.index_key)
        {
            Some(slot) => *slot = instance,
            None => entry.instances.push(instance),
        }
    }

    /// Removes one instance (and the resource entry when it has none left).
    pub fn remove_instance(&mut self, res: &ResourceKey, index_key: &Option<serde_json::Value>) {
        if let Some(i) = self.resources.iter().position(|r| res.matches(r)) {
            self.resources[i]
                .instances
                .retain(|inst| &inst.index_key != index_key);
            if self.resources[i].instances.is_empty() {
                self.resources.remove(i);
            }
        }
    }

    /// Sorts resources the way Terraform writes them (module, mode, type, name).
    pub fn normalize(&mut self) {
        self.resources.sort_by(|a, b| {
            (
                a.module.as_deref().unwrap_or(""),
                b.mode.as_str() == "managed",
                &a.ty,
                &a.name,
            )
                .cmp(&(
                    b.module.as_deref().unwrap_or(""),
                    a.mode.as_str() == "managed",
                    &b.ty,
                    &b.name,
                ))
        });
        for r in &mut self.resources {
            r.instances.sort_by_key(|i| key_order(&i.index_key));
        }
    }
}

fn key_order(k: &Option<serde_json::Value>) -> (u8, i64, String) {
    match k {
        None => (0, 0, String::new()),
        Some(serde_json::Value::Number(n)) => (1, n.as_i64().unwrap_or(0), String::new()),
        Some(v) => (2, 0, v.as_str().unwrap_or_default().to_string()),
    }
}

/// Which resource an instance belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceKey {
    /// Module path, absent for root.
    pub module: Option<String>,
    /// `managed` or `data`.
    pub mode: String,
    /// Resource type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Resource name.
    pub name: String,
    /// Provider address string.
    pub provider: String,
}

impl ResourceKey {
    fn matches(&self, r: &ResourceState) -> bool {
        r.module == self.module && r.mode == self.mode && r.ty == self.ty && r.name == self.name
    }
}

/// Who holds a lock, for what, since when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct LockInfo {
    /// Unique lock id (what `force-unlock` takes).
    #[serde(rename = "ID")]
    pub id: String,
    /// The operation, e.g. `OperationTypeApply`.
    pub operation: String,
    /// Free text.
    #[serde(default)]
    pub info: String,
    /// `user@host`.
    pub who: String,
    /// Tool version.
    pub version: String,
    /// When it was taken (RFC 3339).
    pub created: String,
    /// The state's path or name.
    pub path: String,
    /// The holder's process id.
    #[serde(default)]
    pub pid: u32,
    /// The holder's host name.
    #[serde(default)]
    pub host: String,
    /// Until when the holder's lease runs unless renewed (RFC 3339).
    #[serde(default)]
    pub lease_expires: String,
}

impl LockInfo {
    /// Lock info for `operation` on the state at `path`, held by this
    /// process for `user` (who the caller says runs it).
    pub fn for_operation(operation: &str, path: &str, tool_version: &str, user: &str) -> LockInfo {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        LockInfo {
            id: new_id(),
            operation: operation.to_string(),
            info: String::new(),
            who: format!("{user}@{host}"),
            version: tool_version.to_string(),
            created: now_rfc3339(),
            path: path.to_string(),
            pid: std::process::id(),
            host,
            lease_expires: rfc3339_in(LEASE),
        }
    }

    /// What a lock says of its holder when the holder wrote nothing readable:
    /// only the state's `path` is known.
    pub fn unknown(path: String) -> LockInfo {
        LockInfo {
            id: "unknown".into(),
            operation: "unknown".into(),
            info: String::new(),
            who: "unknown".into(),
            version: String::new(),
            created: String::new(),
            path,
            pid: 0,
            host: String::new(),
            lease_expires: String::new(),
        }
    }

    /// One line naming the holder, for messages.
    pub fn describe(&self) -> String {
        format!(
            "ID {} held by {} (pid {} on {}) for {} since {}",
            self.id, self.who, self.pid, self.host, self.operation, self.created
        )
    }
}

/// How long a lease runs without renewal.
pub const LEASE: Duration = Duration::from_secs(30);

/// What went wrong with state or its lock.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Someone else holds the lock.
    #[error("state is locked: {}", .0.describe())]
    Locked(Box<LockInfo>),
    /// force-unlock named a lock that is not the current one.
    #[error("lock ID {given:?} does not match the current lock {current}")]
    LockMismatch {
        /// What was asked.
        given: String,
        /// What holds it (or "none").
        current: String,
    },
    /// The stored state is unreadable.
    #[error("state is corrupt: {0}")]
    Corrupt(String),
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Database trouble.
    #[error("postgres backend: {0}")]
    Postgres(String),
    /// The stored state is encrypted but no encryption is configured.
    #[error(
        "state {state} is encrypted ({}) but the configuration has no state encryption",
        describe_key(key_provider, recipients)
    )]
    Encrypted {
        /// The state's name.
        state: String,
        /// The key provider it was sealed with, as recorded.
        key_provider: String,
        /// Who it was sealed for, as recorded.
        recipients: Vec<String>,
    },
    /// The stored state is encrypted and could not be opened.
    #[error(
        "cannot decrypt state {state}: {reason} (it is encrypted to {})",
        list_recipients(recipients)
    )]
    Undecryptable {
        /// The state's name.
        state: String,
        /// Who it was sealed for.
        recipients: Vec<String>,
        /// Why it did not open (no key, no matching key, damaged).
        reason: String,
    },
    /// The stored state is plaintext and encryption is enforced.
    #[error("state {state} is not encrypted, and the configured state encryption is enforced")]
    Plaintext {
        /// The state's name.
        state: String,
    },
    /// The state could not be encrypted for writing.
    #[error("cannot encrypt state {state}: {reason}")]
    Encrypt {
        /// The state's name.
        state: String,
        /// Why.
        reason: String,
    },
}

fn list_recipients(recipients: &[String]) -> String {
    if recipients.is_empty() {
        "unknown recipients".to_string()
    } else {
        recipients.join(", ")
    }
}

fn describe_key(key_provider: &str, recipients: &[String]) -> String {
    match (key_provider.is_empty(), recipients.is_empty()) {
        (true, true) => "age".to_string(),
        (false, true) => key_provider.to_string(),
        (true, false) => format!("to {}", recipients.join(", ")),
        (false, false) => format!("{key_provider}, to {}", recipients.join(", ")),
    }
}

impl From<tokio_postgres::Error> for StateError {
    fn from(e: tokio_postgres::Error) -> Self {
        StateError::Postgres(e.to_string())
    }
}

/// A held lock. Renewed in the background until released; dropping it
/// without [`StateBackend::unlock`] leaves the lease to expire, and the next
/// locker reports it as stale.
pub struct LockLease {
    /// What this holder wrote.
    pub info: LockInfo,
    /// A previous holder that died without unlocking, taken over by this one.
    pub took_over: Option<LockInfo>,
    pub(crate) inner: LeaseInner,
}

pub(crate) enum LeaseInner {
    Local(local::LocalLease),
    Pg(pg::PgLease),
}

/// A place that stores state and hands out its lock.
#[allow(async_fn_in_trait)]
pub trait StateBackend {
    /// A name for messages (a path or `pg:<schema>`).
    fn describe(&self) -> String;
    /// Reads the latest state, including journalled instances; `None` if
    /// there is no state yet.
    async fn read(&self) -> Result<Option<StateSnapshot>, StateError>;
    /// Writes a full snapshot atomically and folds the journal into it.
    async fn write(&self, snapshot: &StateSnapshot) -> Result<(), StateError>;
    /// Durably records one instance change on top of the last snapshot.
    async fn append(
        &self,
        base: &StateSnapshot,
        records: &[JournalRecord],
    ) -> Result<(), StateError>;
    /// Takes the lock, waiting up to `timeout` for a live holder.
    async fn lock(&self, info: LockInfo, timeout: Duration) -> Result<LockLease, StateError>;
    /// Releases a lock.
    async fn unlock(&self, lease: LockLease) -> Result<(), StateError>;
    /// Removes a lock by id, whoever holds it.
    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError>;
}

/// Either backend, chosen at run time.
pub enum AnyBackend {
    /// Local file.
    Local(LocalBackend),
    /// PostgreSQL.
    Pg(PgBackend),
}

impl AnyBackend {
    /// The same backend, its state kept encrypted with `encryption` (or in
    /// the clear with `None`).
    pub fn with_encryption(self, encryption: Option<StateEncryption>) -> AnyBackend {
        match self {
            AnyBackend::Local(b) => AnyBackend::Local(b.with_encryption(encryption)),
            AnyBackend::Pg(b) => AnyBackend::Pg(b.with_encryption(encryption)),
        }
    }

    /// Whether the last read found a plaintext state that the configured
    /// encryption seals at the next write (a migration in progress).
    pub fn migrating(&self) -> bool {
        match self {
            AnyBackend::Local(b) => b.migrating(),
            AnyBackend::Pg(b) => b.migrating(),
        }
    }

    /// A second handle on the same state, with the same encryption (its own
    /// connection, for a writer task).
    pub fn reopen(&self) -> AnyBackend {
        match self {
            AnyBackend::Local(b) => AnyBackend::Local(b.reopen()),
            AnyBackend::Pg(b) => AnyBackend::Pg(b.reopen()),
        }
    }
}

impl StateBackend for AnyBackend {
    fn describe(&self) -> String {
        match self {
            AnyBackend::Local(b) => b.describe(),
            AnyBackend::Pg(b) => b.describe(),
        }
    }
    async fn read(&self) -> Result<Option<StateSnapshot>, StateError> {
        match self {
            AnyBackend::Local(b) => b.read().await,
            AnyBackend::Pg(b) => b.read().await,
        }
    }
    async fn write(&self, snapshot: &StateSnapshot) -> Result<(), StateError> {
        match self {
            AnyBackend::Local(b) => b.write(snapshot).await,
            AnyBackend::Pg(b) => b.write(snapshot).await,
        }
    }
    async fn append(
        &self,
        base: &StateSnapshot,
        records: &[JournalRecord],
    ) -> Result<(), StateError> {
        match self {
            AnyBackend::Local(b) => b.append(base, records).await,
            AnyBackend::Pg(b) => b.append(base, records).await,
        }
    }
    async fn lock(&self, info: LockInfo, timeout: Duration) -> Result<LockLease, StateError> {
        match self {
            AnyBackend::Local(b) => b.lock(info, timeout).await,
            AnyBackend::Pg(b) => b.lock(info, timeout).await,
        }
    }
    async fn unlock(&self, lease: LockLease) -> Result<(), StateError> {
        match self {
            AnyBackend::Local(b) => b.unlock(lease).await,
            AnyBackend::Pg(b) => b.unlock(lease).await,
        }
    }
    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        match self {
            AnyBackend::Local(b) => b.force_unlock(id).await,
            AnyBackend::Pg(b) => b.force_unlock(id).await,
        }
    }
}

/// A random identifier in UUID form.
pub fn new_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if random.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ u128::from(std::process::id())).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    rfc3339_in(Duration::ZERO)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `now + d` as RFC 3339 UTC.
pub fn rfc3339_in(d: Duration) -> String {
    format_unix(unix_now() + d.as_secs())
}

/// Formats seconds since the epoch as RFC 3339 UTC.
pub fn format_unix(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Whether an RFC 3339 UTC timestamp written by [`format_unix`] is in the past.
pub fn is_past(ts: &str) -> bool {
    !ts.is_empty() && ts < now_rfc3339().as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn ids_are_uuids() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert_ne!(a, new_id());
    }

    #[test]
    fn snapshot_round_trips_terraform_shape() {
        let mut s = StateSnapshot::new("plumb-0.1.0");
        s.put_instance(
            ResourceKey {
                module: None,
                mode: "managed".into(),
                ty: "random_id".into(),
                name: "a".into(),
                provider: "provider[\"registry.terraform.io/hashicorp/random\"]".into(),
            },
            InstanceState {
                index_key: Some(serde_json::json!(0)),
                schema_version: 0,
                attributes: serde_json::json!({"hex": "ab"}),
                sensitive_attributes: vec![],
                private: None,
                dependencies: vec![],
                create_before_destroy: false,
            },
        );
        let json = s.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["version"], 4);
        assert_eq!(v["resources"][0]["instances"][0]["index_key"], 0);
        assert_eq!(StateSnapshot::from_json(&json).unwrap(), s);
    }
}
