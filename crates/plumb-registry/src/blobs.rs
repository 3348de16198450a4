//! The content-addressed blob store on disk.
//!
//! Layout under the registry root:
//!
//! ```text
//! blobs/<algorithm>/<first two hex>/<hex>   published content, named by its digest
//! uploads/<id>                              bytes of an upload in progress
//! spare/<id>                                empty files made ahead for new uploads
//! ```
//!
//! A blob file only ever appears under `blobs/` by an atomic rename of a fully
//! written and verified upload file, and a blob is served only once the index
//! records it, which happens after the file's bytes and its rename are both
//! fsynced. So a crash (or kill -9, or power loss) never exposes a partial
//! blob: at worst it leaves an upload file (dropped at the next start), an
//! unindexed blob (removed by garbage collection) or an upload's intent
//! without its record (settled at the next start, see [`crate::meta`]).
//! Publishing and deleting the same digest are serialised by a striped lock,
//! so a concurrent re-upload and a GC sweep of that digest cannot interleave.
//!
//! Creating a file is the costliest step of a small upload on some file
//! systems (ext4 without a journal scans past every recently deleted inode
//! to find a free one), so a background thread keeps a few empty files in
//! `spare/` and a new upload session moves one into `uploads/`, keeping its
//! name as the session's id.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use plumb_oci::{Algorithm, ContentHasher, Digest};

const STRIPES: usize = 64;
/// Empty upload files kept ready for new sessions.
const READY_UPLOADS: usize = 8;

/// The on-disk blob store.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
    fsync: bool,
    stripes: Vec<Mutex<()>>,
    ready: Arc<Mutex<Vec<String>>>,
    /// Wakes the thread that refills `ready`; dropping it ends the thread.
    refill: std::sync::mpsc::Sender<()>,
}

impl BlobStore {
    /// Open (creating directories as needed) the store under `root`.
    pub fn open(root: &Path, fsync: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        // Spare files of an earlier run are made again.
        let spare = root.join("spare");
        let _ = std::fs::remove_dir_all(&spare);
        std::fs::create_dir_all(&spare)?;
        // Every sha256 shard directory exists from the start, so publishing
        // a blob never waits for a mkdir.
        let sha256 = root
            .join("blobs")
            .join(plumb_oci::digest::Algorithm::Sha256.as_str());
        for b in 0..=255u8 {
            std::fs::create_dir_all(sha256.join(format!("{b:02x}")))?;
        }
        let ready = Arc::new(Mutex::new(Vec::with_capacity(READY_UPLOADS)));
        let (refill, wake) = std::sync::mpsc::channel::<()>();
        let pool = Arc::clone(&ready);
        std::thread::Builder::new()
            .name("upload-files".into())
            .spawn(move || {
                while wake.recv().is_ok() {
                    while lock_ignoring_poison(&pool).len() < READY_UPLOADS {
                        let id = random_id();
                        let made = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(spare.join(&id));
                        if made.is_err() {
                            // Sessions then create their own files.
                            break;
                        }
                        lock_ignoring_poison(&pool).push(id);
                    }
                }
            })?;
        let _ = refill.send(());
        Ok(BlobStore {
            root: root.to_owned(),
            fsync,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            ready,
            refill,
        })
    }

    /// An id for a new upload session. Its file usually exists already (a
    /// spare made ahead by a background thread, moved into `uploads/`);
    /// otherwise the upload's first chunk creates it.
    pub fn new_upload(&self) -> String {
        let spare = lock_ignoring_poison(&self.ready).pop();
        let _ = self.refill.send(());
        if let Some(id) = spare
            && std::fs::rename(self.root.join("spare").join(&id), self.upload_path(&id)).is_ok()
        {
            return id;
        }
        random_id()
    }

    /// Whether blobs are fsynced before they are published.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Where a published blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    /// Where an upload's bytes accumulate.
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// The directory of upload files.
    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// Lock the stripe of `digest` (held across publish or delete).
    pub fn lock(&self, digest: &Digest) -> MutexGuard<'_, ()> {
        let b = u8::from_str_radix(&digest.hex()[..2], 16).unwrap_or(0) as usize;
        lock_ignoring_poison(&self.stripes[b % STRIPES])
    }

    /// Move the verified file `staged` into place as `digest` and, when the
    /// store fsyncs, make the rename durable. The caller makes the bytes
    /// themselves durable (the upload's writer starts their fsync while the
    /// hash finishes) before it records the blob, and holds
    /// [`BlobStore::lock`] for the digest.
    pub fn publish(&self, staged: &Path, digest: &Digest) -> std::io::Result<()> {
        let dest = self.blob_path(digest);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(staged, &dest)?;
        // Make the rename itself durable.
        self.sync_dir_of(&dest)
    }

    /// When the store fsyncs, make a blob's bytes and its name durable again
    /// (recovery after a crash that may have come before its fsync).
    pub fn sync_blob(&self, digest: &Digest) -> std::io::Result<()> {
        let path = self.blob_path(digest);
        if self.fsync {
            std::fs::File::open(&path)?.sync_all()?;
        }
        self.sync_dir_of(&path)
    }

    fn sync_dir_of(&self, path: &Path) -> std::io::Result<()> {
        match path.parent() {
            Some(dir) if self.fsync => std::fs::File::open(dir)?.sync_all(),
            _ => Ok(()),
        }
    }

    /// Remove a blob file (the caller holds the lock and has removed the index entry).
    pub fn remove(&self, digest: &Digest) -> std::io::Result<()> {
        match std::fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A random upload id (128 bits, hex).
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !ok {
        // Fall back to time and a counter: ids need uniqueness, not secrecy.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = jiff::Timestamp::now().as_nanosecond();
        b[..8].copy_from_slice(&n.to_le_bytes());
        b[8..].copy_from_slice(&(t as u64).to_le_bytes());
    }
    hex::encode(b)
}

/// The digest of the file at `path` under `algorithm`, read in 1 MiB pieces.
pub fn hash_file(path: &Path, algorithm: Algorithm) -> std::io::Result<Digest> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut h = ContentHasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}
