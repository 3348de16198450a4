//! Blob uploads, from a session's first chunk to a published blob.
//!
//! This module owns the write path of the registry's content: upload sessions
//! and their chunks, the streaming pipeline that turns a request body into a
//! file and its hash at once, and publication under the blob's digest. It
//! lives apart from [`crate::service`] because it is one job with its own
//! rules, the ones a crash must never break: bytes reach disk and are verified
//! before anything names them, a blob is published by a rename under its
//! digest's lock, and only then does a metadata transaction make it visible.
//! It is also the registry's hot path: hashing, writes and fsyncs overlap with
//! the network (see `HAND_OFF` and `PARALLEL_HASH` below).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use plumb_oci::{Algorithm, ContentHasher, Digest, RepositoryName};

use crate::blobs::hash_file;
use crate::error::RegistryError;
use crate::meta::BlobIntent;
use crate::service::{Registry, UploadSession, now};

type Result<T> = std::result::Result<T, RegistryError>;

impl Registry {
    /// Start an upload session in `repo`.
    pub fn start_upload(&self, repo: &RepositoryName) -> Result<String> {
        let id = self.blobs.new_upload();
        let session = UploadSession {
            repo: repo.to_string(),
            size: 0,
            hasher: ContentHasher::new(Algorithm::Sha256),
            touched: now(),
        };
        if let Ok(mut u) = self.uploads.lock() {
            u.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
        }
        Ok(id)
    }

    fn session(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<UploadSession>>> {
        let s = self
            .uploads
            .lock()
            .ok()
            .and_then(|u| u.get(id).cloned())
            .ok_or_else(|| RegistryError::UploadUnknown(id.to_owned()))?;
        Ok(s)
    }

    /// Bytes received so far by an upload.
    pub async fn upload_size(&self, repo: &RepositoryName, id: &str) -> Result<u64> {
        let s = self.session(id)?;
        let s = s.lock().await;
        if s.repo != repo.as_str() {
            return Err(RegistryError::UploadUnknown(id.to_owned()));
        }
        Ok(s.size)
    }

    /// Append a chunk to an upload. `range` is the chunk's claimed
    /// `(start, end)` from `Content-Range`; a start other than the current size
    /// is refused (416) and changes nothing.
    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        range: Option<(u64, u64)>,
        body: axum::body::Body,
    ) -> Result<u64> {
        Ok(self.append(repo, id, range, body, false).await?.0)
    }

    /// [`Registry::append_upload`]; with `last`, the chunk ends the upload and,
    /// when the store fsyncs, the file's fsync starts while its hash finishes
    /// (returned to be awaited before the blob is recorded).
    async fn append(
        &self,
        repo: &RepositoryName,
        id: &str,
        range: Option<(u64, u64)>,
        body: axum::body::Body,
        last: bool,
    ) -> Result<(u64, Option<PendingSync>)> {
        let s = self.session(id)?;
        let mut s = s.lock().await;
        if s.repo != repo.as_str() {
            return Err(RegistryError::UploadUnknown(id.to_owned()));
        }
        if let Some((start, end)) = range
            && (start != s.size || end < start)
        {
            return Err(RegistryError::RangeInvalid {
                got: start,
                expected: s.size,
            });
        }
        let (hasher, written, pending) = match write_body(
            self.blobs.upload_path(id),
            s.hasher.clone(),
            body,
            self.blobs.fsync(),
            last && self.blobs.fsync(),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // A broken body leaves the upload as it was before the chunk.
                if let Ok(f) = std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.blobs.upload_path(id))
                {
                    let _ = f.set_len(s.size);
                }
                return Err(e);
            }
        };
        if let Some((start, end)) = range
            && written != end - start + 1
        {
            // The chunk did not match its declared range: undo it.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(self.blobs.upload_path(id))?;
            f.set_len(s.size)?;
            return Err(RegistryError::SizeInvalid(format!(
                "Content-Range declares {} bytes but the body has {written}",
                end - start + 1
            )));
        }
        s.hasher = hasher;
        s.size += written;
        s.touched = now();
        Ok((s.size, pending))
    }

    /// Finish an upload: append the final body, check the digest, publish.
    pub async fn finish_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: axum::body::Body,
    ) -> Result<()> {
        // The intent's durable commit runs while the last bytes arrive.
        let key = crate::blobs::random_id();
        let noted = {
            let (meta, key) = (Arc::clone(&self.meta), key.clone());
            let intent = BlobIntent {
                digest: digest.clone(),
                repo: repo.to_string(),
            };
            Pooled::spawn(move || meta.add_intent(&key, &intent))
        };
        let verified = self
            .verify_upload(repo, id, digest, range, body)
            .await
            .and_then(|(size, path, pending)| {
                // A push over a storage quota is refused before it is published.
                match self.check_quota(repo, Some(digest), size) {
                    Ok(()) => Ok((size, path, pending)),
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        Err(e)
                    }
                }
            });
        match verified {
            Ok((size, path, pending)) => {
                self.publish(repo, digest, size, &path, pending, (&key, noted))
                    .await
            }
            Err(e) => {
                tokio::task::block_in_place(|| {
                    if noted.join().is_ok_and(|r| r.is_ok()) {
                        let _ = self.meta.drop_intent(&key);
                    }
                });
                Err(e)
            }
        }
    }

    /// Append the final body of upload `id` and check its digest; returns the
    /// upload's size, its file and its fsync in flight.
    async fn verify_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: axum::body::Body,
    ) -> Result<(u64, PathBuf, Option<PendingSync>)> {
        let (_, pending) = self.append(repo, id, range, body, true).await?;
        let session = self.session(id)?;
        let s = session.lock().await;
        let path = self.blobs.upload_path(id);
        let actual = match digest.algorithm() {
            Algorithm::Sha256 => s.hasher.clone().finish(),
            other => {
                let p = path.clone();
                tokio::task::spawn_blocking(move || hash_file(&p, other))
                    .await
                    .map_err(|e| RegistryError::Io(std::io::Error::other(e)))??
            }
        };
        let size = s.size;
        drop(s);
        if let Ok(mut u) = self.uploads.lock() {
            u.remove(id);
        }
        if &actual != digest {
            let _ = std::fs::remove_file(&path);
            return Err(RegistryError::DigestInvalid(format!(
                "uploaded content has digest {actual}, not {digest}; nothing was stored"
            )));
        }
        Ok((size, path, pending))
    }

    /// Publish a verified upload. Its intent was committed while the body
    /// arrived; here the file is renamed into place and, with the store's
    /// fsync, its bytes and its name are made durable, and then the blob is
    /// recorded by a commit that needs no fsync of its own (see
    /// [`crate::meta`]). A crash before the record leaves at most an
    /// unrecorded file, which nothing serves and which the intent's recovery
    /// or GC settles. A blob the store already holds is not renamed over
    /// (same digest, same bytes): the upload is dropped and the repository
    /// linked.
    async fn publish(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
        staged: &Path,
        pending: Option<PendingSync>,
        (key, noted): (&str, Pooled<Result<()>>),
    ) -> Result<()> {
        let wait = |pending: Option<PendingSync>| -> std::io::Result<()> {
            match pending {
                Some(handle) => handle
                    .join()
                    .map_err(|_| std::io::Error::other("the fsync thread panicked"))?,
                None => Ok(()),
            }
        };
        // Publishing holds a std lock and does blocking I/O: keep it off the reactor.
        tokio::task::block_in_place(|| -> Result<()> {
            let _guard = self.blobs.lock(digest);
            let held = self.meta.blob(digest)?.is_some() && self.blobs.blob_path(digest).exists();
            let published = if held {
                let _ = wait(pending);
                let _ = std::fs::remove_file(staged);
                Ok(())
            } else {
                self.blobs
                    .publish(staged, digest)
                    .and_then(|()| wait(pending))
            };
            let noted = noted.join().map_err(RegistryError::from)?;
            match (published, noted) {
                (Ok(()), Ok(())) => self
                    .meta
                    .confirm_blob(key, repo.as_str(), digest, size, now()),
                (published, noted) => {
                    if noted.is_ok() {
                        let _ = self.meta.drop_intent(key);
                    }
                    if !held {
                        let _ = self.blobs.remove(digest);
                    }
                    published?;
                    noted
                }
            }
        })?;
        self.touch(digest);
        Ok(())
    }

    /// Drop upload sessions idle since before `idle_before` (unix seconds);
    /// returns how many went. Sessions busy with a chunk are left alone.
    pub fn expire_uploads(&self, idle_before: i64) -> usize {
        let expired: Vec<String> = self
            .uploads
            .lock()
            .map(|u| {
                u.iter()
                    .filter(|(_, s)| s.try_lock().is_ok_and(|s| s.touched < idle_before))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in &expired {
            if let Ok(mut u) = self.uploads.lock() {
                u.remove(id);
            }
            let _ = std::fs::remove_file(self.blobs.upload_path(id));
        }
        expired.len()
    }

    /// Cancel an upload.
    pub async fn cancel_upload(&self, repo: &RepositoryName, id: &str) -> Result<()> {
        let s = self.session(id)?;
        let s = s.lock().await;
        if s.repo != repo.as_str() {
            return Err(RegistryError::UploadUnknown(id.to_owned()));
        }
        drop(s);
        if let Ok(mut u) = self.uploads.lock() {
            u.remove(id);
        }
        let _ = std::fs::remove_file(self.blobs.upload_path(id));
        Ok(())
    }
}

/// Request body bytes are handed to the writer in batches of about this
/// size: small enough that hashing and writing keep pace with the network
/// (a 1 MB blob is mostly hashed by the time its last byte arrives), large
/// enough that each hand-off moves many chunks.
const HAND_OFF: usize = 256 << 10;
const FLUSH_EVERY: u64 = 32 << 20;
/// Uploads past this many bytes are hashed on a thread of their own.
const PARALLEL_HASH: u64 = 256 << 10;
/// Batches queued for the hashing thread before the writer waits for it
/// (32 MiB): the hash normally outruns the disk, and where it cannot (no
/// SHA extensions) memory stays bounded.
const HASH_BATCHES_IN_FLIGHT: usize = 128;

/// Write every chunk with as few system calls as the kernel allows (one
/// vectored write per up to 512 chunks; request bodies arrive in many small
/// pieces).
fn write_chunks(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write as _};
    for group in chunks.chunks(512) {
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|c| IoSlice::new(c)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = file.write_vectored(rest)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
    }
    Ok(())
}

/// Work running on a thread of the blocking pool, joined from another
/// blocking thread. The pool's threads outlive their tasks, so handing work
/// to one costs a wake-up, not a thread's creation.
struct Pooled<T>(std::sync::mpsc::Receiver<T>);

impl<T: Send + 'static> Pooled<T> {
    fn spawn(work: impl FnOnce() -> T + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(work());
        });
        Pooled(rx)
    }

    fn join(self) -> std::io::Result<T> {
        self.0
            .recv()
            .map_err(|_| std::io::Error::other("a blocking task panicked"))
    }
}

/// An upload file's fsync in flight.
type PendingSync = std::thread::JoinHandle<std::io::Result<()>>;

/// Where an upload's hash is computed: on the writer's thread for small
/// bodies, on a thread of its own (fed the same reference-counted chunks)
/// once a body is large enough that hashing would hold up writing.
enum Hashing {
    Inline(ContentHasher),
    Thread(
        std::sync::mpsc::SyncSender<Vec<Bytes>>,
        std::thread::JoinHandle<ContentHasher>,
    ),
}

impl Hashing {
    fn on_own_thread(self) -> Self {
        match self {
            Hashing::Inline(mut h) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(HASH_BATCHES_IN_FLIGHT);
                let handle = std::thread::spawn(move || {
                    while let Ok(chunks) = rx.recv() {
                        for c in &chunks {
                            h.update(c);
                        }
                    }
                    h
                });
                Hashing::Thread(tx, handle)
            }
            threaded => threaded,
        }
    }

    fn update(&mut self, batch: &[Bytes]) {
        match self {
            Hashing::Inline(h) => {
                for c in batch {
                    h.update(c);
                }
            }
            // Cloning the batch clones reference counts, not bytes.
            Hashing::Thread(tx, _) => {
                let _ = tx.send(batch.to_vec());
            }
        }
    }

    fn finish(self) -> std::io::Result<ContentHasher> {
        match self {
            Hashing::Inline(h) => Ok(h),
            Hashing::Thread(tx, handle) => {
                drop(tx);
                handle
                    .join()
                    .map_err(|_| std::io::Error::other("the hashing thread panicked"))
            }
        }
    }
}

/// Stream `body` onto the end of the file at `path`, hashing as it goes, on a
/// blocking worker so hashing and disk writes overlap with network reads.
/// Past [`PARALLEL_HASH`] bytes the hash runs on a second thread that is fed
/// the same reference-counted chunks the writer writes, so neither waits for
/// the other.
async fn write_body(
    path: PathBuf,
    hasher: ContentHasher,
    body: axum::body::Body,
    early_writeback: bool,
    sync_at_end: bool,
) -> Result<(ContentHasher, u64, Option<PendingSync>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(32);
    let worker = tokio::task::spawn_blocking(
        move || -> std::io::Result<(ContentHasher, u64, Option<PendingSync>)> {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let mut hashing = Hashing::Inline(hasher);
            let mut written = 0u64;
            let mut unflushed = 0u64;
            let mut flusher: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> =
                None;
            while let Some(batch) = rx.blocking_recv() {
                let len: u64 = batch.iter().map(|c| c.len() as u64).sum();
                if written + len >= PARALLEL_HASH {
                    hashing = hashing.on_own_thread();
                }
                hashing.update(&batch);
                write_chunks(&mut file, &batch)?;
                written += len;
                unflushed += len;
                if early_writeback && unflushed >= FLUSH_EVERY {
                    unflushed = 0;
                    // Large uploads start their writeback while bytes still
                    // arrive, so the fsync before publishing finds little left.
                    if flusher.is_none() {
                        let f = file.try_clone()?;
                        let (tx, rx) = std::sync::mpsc::channel::<()>();
                        let handle = std::thread::spawn(move || {
                            while rx.recv().is_ok() {
                                while rx.try_recv().is_ok() {}
                                let _ = f.sync_data();
                            }
                        });
                        flusher = Some((tx, handle));
                    }
                    if let Some((tx, _)) = &flusher {
                        let _ = tx.send(());
                    }
                }
            }
            if let Some((tx, handle)) = flusher {
                drop(tx);
                let _ = handle.join();
            }
            // The fsync runs while the hashing thread finishes its last chunks
            // and, after that, while the blob is renamed into place.
            let pending = sync_at_end.then(|| std::thread::spawn(move || file.sync_data()));
            let hasher = hashing.finish()?;
            Ok((hasher, written, pending))
        },
    );
    let mut stream = body.into_data_stream();
    let mut batch: Vec<Bytes> = vec![];
    let mut batch_len = 0usize;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                // Chunks are handed over as they came (no copy), in batches.
                batch_len += c.len();
                batch.push(c);
                if batch_len >= HAND_OFF {
                    batch_len = 0;
                    if tx.send(std::mem::take(&mut batch)).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    drop(tx);
    let result = worker
        .await
        .map_err(|e| RegistryError::Io(std::io::Error::other(e)))??;
    if let Some(e) = failure {
        return Err(RegistryError::Io(std::io::Error::other(format!(
            "request body: {e}"
        ))));
    }
    Ok(result)
}
