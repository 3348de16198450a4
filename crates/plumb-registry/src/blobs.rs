//! The content-addressed blob store on disk.
//!
//! Layout under the registry root:
//!
//! ```text
//! blobs/<algorithm>/<first two hex>/<hex>   published content, named by its digest
//! uploads/<id>                              bytes of an upload in progress
//! ```
//!
//! A blob file only ever appears under `blobs/` by an atomic rename of a fully
//! written and verified upload file, and a blob is served only once the index
//! records it, which happens after the file's bytes and its rename are both
//! fsynced. So a crash (or kill -9, or power loss) never exposes a partial
//! blob: at worst it leaves an upload file or an unindexed blob, both of which
//! garbage collection removes. Publishing and deleting the
//! same digest are serialised by a striped lock, so a concurrent re-upload and
//! a GC sweep of that digest cannot interleave.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use plumb_oci::Digest;

const STRIPES: usize = 64;

/// The on-disk blob store.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
    fsync: bool,
    stripes: Vec<Mutex<()>>,
}

impl BlobStore {
    /// Open (creating directories as needed) the store under `root`.
    pub fn open(root: &Path, fsync: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        // Every sha256 shard directory exists from the start, so publishing
        // a blob never waits for a mkdir.
        let sha256 = root
            .join("blobs")
            .join(plumb_oci::digest::Algorithm::Sha256.as_str());
        for b in 0..=255u8 {
            std::fs::create_dir_all(sha256.join(format!("{b:02x}")))?;
        }
        Ok(BlobStore {
            root: root.to_owned(),
            fsync,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
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
        match self.stripes[b % STRIPES].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
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
        if self.fsync
            && let Some(parent) = dest.parent()
        {
            // Make the rename itself durable.
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    /// Remove a blob file (the caller holds the lock and has removed the index entry).
    pub fn remove(&self, digest: &Digest) -> std::io::Result<()> {
        match std::fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
