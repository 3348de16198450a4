//! Persisting state while an apply runs.
//!
//! Completed instances arrive from many tasks; one writer task appends them
//! to the backend's journal in batches (each batch one durable write, so many
//! instances finishing together cost one fsync), and every few seconds folds
//! everything into a full snapshot with a higher serial. A caller's
//! [`StateWriter::record`] returns only after its record is durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plumb_state::{
    AnyBackend, JournalRecord, StateBackend, StateError, StateSnapshot, journal_apply,
};
use tokio::sync::{mpsc, oneshot};

type Item = (JournalRecord, oneshot::Sender<Result<(), Arc<StateError>>>);

/// Why state could not be written during an apply.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The writer task is gone: it failed on an earlier batch, or the walk
    /// is over.
    #[error("the state writer stopped")]
    Stopped,
    /// The backend refused a write; every record of the batch shares the
    /// error.
    #[error("{0}")]
    Backend(#[source] Arc<StateError>),
    /// The writer task panicked or was cancelled (reported as corrupt
    /// state, since what it had written is not known).
    #[error("state is corrupt: state writer failed: {0}")]
    Crashed(#[source] tokio::task::JoinError),
}

/// A handle for sending completed instances.
#[derive(Clone)]
pub struct StateWriter {
    tx: mpsc::Sender<Item>,
}

/// The writer task; [`StateWriterTask::finish`] writes the final snapshot.
pub struct StateWriterTask {
    handle: tokio::task::JoinHandle<Result<StateSnapshot, WriteError>>,
}

const COMPACT_EVERY: Duration = Duration::from_secs(3);

impl StateWriter {
    /// Starts a writer over `snapshot` (already written to the backend).
    pub fn start(
        backend: Arc<AnyBackend>,
        snapshot: StateSnapshot,
    ) -> (StateWriter, StateWriterTask) {
        let (tx, mut rx) = mpsc::channel::<Item>(4096);
        let handle = tokio::spawn(async move {
            let backend_error = |e: StateError| WriteError::Backend(Arc::new(e));
            let mut snap = snapshot;
            let mut base = snap.clone();
            let mut last_compact = Instant::now();
            let mut dirty = false;
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                    if batch.len() >= 512 {
                        break;
                    }
                }
                let records: Vec<JournalRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
                let res = backend.append(&base, &records).await.map_err(Arc::new);
                let ok = res.is_ok();
                for (rec, reply) in batch {
                    if ok {
                        journal_apply(&mut snap, rec);
                    }
                    let _ = reply.send(res.clone());
                }
                res.map_err(WriteError::Backend)?;
                dirty = true;
                if last_compact.elapsed() >= COMPACT_EVERY {
                    snap.serial = base.serial + 1;
                    snap.normalize();
                    backend.write(&snap).await.map_err(backend_error)?;
                    base = snap.clone();
                    last_compact = Instant::now();
                    dirty = false;
                }
            }
            if dirty {
                snap.serial = base.serial + 1;
            }
            snap.normalize();
            Ok(snap)
        });
        (StateWriter { tx }, StateWriterTask { handle })
    }

    /// Records one instance change; returns once it is durable.
    pub async fn record(&self, rec: JournalRecord) -> Result<(), WriteError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((rec, tx))
            .await
            .map_err(|_| WriteError::Stopped)?;
        rx.await
            .map_err(|_| WriteError::Stopped)?
            .map_err(WriteError::Backend)
    }
}

impl StateWriterTask {
    /// Waits for all records, then returns the final snapshot (not yet
    /// written: the caller adds outputs and writes it).
    pub async fn finish(self) -> Result<StateSnapshot, WriteError> {
        self.handle.await.map_err(WriteError::Crashed)?
    }
}
