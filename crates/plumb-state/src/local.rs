//! The local backend: `terraform.tfstate` in the stack directory.
//!
//! Writes go to a temporary file that is fsynced and renamed over the state
//! (the previous state is kept as `terraform.tfstate.backup` once per run), so
//! a crash leaves either the old or the new state, never a mix. The lock is
//! `.terraform.tfstate.lock.info`, holding the holder's [`LockInfo`], guarded by
//! an OS file lock on that same file: the kernel releases it when the holder
//! dies, so a dead holder is detected for certain (its info left behind is
//! reported as stale and taken over) while a live one is waited for.
//!
//! With encryption, the state, its backup and the journal hold only sealed
//! data (see the `encryption` module); a plaintext state being migrated is
//! sealed before it is kept as the backup.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::encryption::{self, StateEncryption};
use crate::journal;
use crate::{
    JournalRecord, LEASE, LeaseInner, LockInfo, LockLease, StateBackend, StateError, StateSnapshot,
    rfc3339_in,
};

/// State in a local file.
pub struct LocalBackend {
    path: PathBuf,
    backed_up: Mutex<bool>,
    journal: Mutex<Option<File>>,
    encryption: Option<StateEncryption>,
    migrating: AtomicBool,
}

pub(crate) struct LocalLease {
    file: Arc<File>,
    renew: tokio::task::JoinHandle<()>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Drop for LocalLease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

impl LocalBackend {
    /// State at `path` (usually `<stack>/terraform.tfstate`).
    pub fn new(path: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            path: path.into(),
            backed_up: Mutex::new(false),
            journal: Mutex::new(None),
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
    pub fn with_encryption(mut self, encryption: Option<StateEncryption>) -> LocalBackend {
        self.encryption = encryption;
        self
    }

    /// A second handle on the same file, with the same encryption.
    pub fn reopen(&self) -> LocalBackend {
        LocalBackend::new(&self.path).with_encryption(self.encryption.clone())
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sibling(&self, name: &str) -> PathBuf {
        let file = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "terraform.tfstate".into());
        self.path.with_file_name(name.replace("{}", &file))
    }

    /// `.terraform.tfstate.lock.info`
    pub fn lock_path(&self) -> PathBuf {
        self.sibling(".{}.lock.info")
    }

    /// `terraform.tfstate.journal`
    pub fn journal_path(&self) -> PathBuf {
        self.sibling("{}.journal")
    }

    fn read_lock_info(path: &Path) -> Option<LockInfo> {
        let mut s = String::new();
        File::open(path).ok()?.read_to_string(&mut s).ok()?;
        serde_json::from_str(&s).ok()
    }
}

fn write_info(file: &File, info: &LockInfo) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(info).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.write_all_at(&bytes, 0)?;
    file.sync_data()
}

impl StateBackend for LocalBackend {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn read(&self) -> Result<Option<StateSnapshot>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&self.path)(e)),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let name = self.describe();
        let enc = self.encryption.as_ref();
        let (mut snapshot, plaintext) = encryption::decode_snapshot(enc, &name, &bytes)?;
        self.migrating.store(plaintext, Ordering::Relaxed);
        match std::fs::read(self.journal_path()) {
            Ok(j) => {
                journal::replay(enc, &name, &mut snapshot, &j)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.journal_path())(e)),
        }
        Ok(Some(snapshot))
    }

    async fn write(&self, snapshot: &StateSnapshot) -> Result<(), StateError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.sibling(".{}.tmp");
        let name = self.describe();
        let bytes = encryption::encode_snapshot(self.encryption.as_ref(), &name, snapshot)?;
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        let first = {
            let mut b = self.backed_up.lock().unwrap_or_else(|e| e.into_inner());
            let exists = self.path.exists();
            let first = exists && !*b;
            *b |= exists;
            first
        };
        if first {
            let backup = self.sibling("{}.backup");
            let backup_tmp = self.sibling(".{}.backup.tmp");
            let old = std::fs::read(&self.path).map_err(io(&self.path))?;
            // A plaintext state under encryption is kept sealed, not as it was.
            let kept = encryption::reseal(self.encryption.as_ref(), &name, &old)?.unwrap_or(old);
            {
                let mut f = File::create(&backup_tmp).map_err(io(&backup_tmp))?;
                f.write_all(&kept).map_err(io(&backup_tmp))?;
                f.sync_all().map_err(io(&backup_tmp))?;
            }
            std::fs::rename(&backup_tmp, &backup).map_err(io(&backup))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        self.migrating.store(false, Ordering::Relaxed);
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        // The snapshot now holds everything journalled; start a new journal.
        let mut j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        *j = None;
        match std::fs::remove_file(self.journal_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.journal_path())(e)),
        }
        Ok(())
    }

    async fn append(
        &self,
        base: &StateSnapshot,
        records: &[JournalRecord],
    ) -> Result<(), StateError> {
        let path = self.journal_path();
        let lines = journal::encode(self.encryption.as_ref(), &self.describe(), base, records)?;
        let mut guard = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(&path))?,
            );
        }
        if let Some(f) = guard.as_mut() {
            f.write_all(&lines).map_err(io(&path))?;
            f.sync_data().map_err(io(&path))?;
        }
        Ok(())
    }

    async fn lock(&self, mut info: LockInfo, timeout: Duration) -> Result<LockLease, StateError> {
        let path = self.lock_path();
        let deadline = Instant::now() + timeout;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io(&path))?;
            match file.try_lock() {
                Ok(()) => {
                    // Make sure the file we locked is still the lock file (an
                    // unlock or force-unlock may have removed it meanwhile).
                    let same = std::fs::metadata(&path)
                        .ok()
                        .zip(file.metadata().ok())
                        .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
                    if !same {
                        continue;
                    }
                    let took_over = Self::read_lock_info(&path);
                    if let Some(stale) = &took_over {
                        tracing::warn!(
                            "taking over a stale lock: {} (the holder is gone)",
                            stale.describe()
                        );
                    }
                    info.lease_expires = rfc3339_in(LEASE);
                    write_info(&file, &info).map_err(io(&path))?;
                    let file = Arc::new(file);
                    let renew = {
                        let file = file.clone();
                        let mut info = info.clone();
                        tokio::spawn(async move {
                            loop {
                                tokio::time::sleep(LEASE / 3).await;
                                info.lease_expires = rfc3339_in(LEASE);
                                if write_info(&file, &info).is_err() {
                                    break;
                                }
                            }
                        })
                    };
                    return Ok(LockLease {
                        info,
                        took_over,
                        inner: LeaseInner::Local(LocalLease { file, renew }),
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        let holder = Self::read_lock_info(&path)
                            .unwrap_or_else(|| LockInfo::unknown(self.describe()));
                        return Err(StateError::Locked(Box::new(holder)));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
    }

    async fn unlock(&self, lease: LockLease) -> Result<(), StateError> {
        let LeaseInner::Local(l) = lease.inner else {
            return Ok(());
        };
        let path = self.lock_path();
        // Remove only if the file is still ours (force-unlock may have removed it).
        let ours = std::fs::metadata(&path)
            .ok()
            .zip(l.file.metadata().ok())
            .is_some_and(|(a, b)| a.ino() == b.ino());
        if ours {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        drop(l);
        Ok(())
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        let path = self.lock_path();
        let current = Self::read_lock_info(&path);
        match current {
            Some(info) if info.id == id => {
                std::fs::remove_file(&path).map_err(io(&path))?;
                Ok(info)
            }
            other => Err(StateError::LockMismatch {
                given: id.to_string(),
                current: other.map(|i| i.describe()).unwrap_or_else(|| "none".into()),
            }),
        }
    }
}
