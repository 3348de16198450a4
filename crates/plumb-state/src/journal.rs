//! The journal: one durable line per completed resource, on top of the last
//! full snapshot.
//!
//! Rewriting the whole state after each of 10 000 resources would cost
//! quadratic I/O; appending one record (with group commit) costs a line. A
//! reader folds the records whose base matches the snapshot's lineage and
//! serial into it; records of an older base were already folded in by the
//! write that made the newer snapshot. A torn last line (kill -9 mid-write) is
//! ignored: that resource's record was never acknowledged.

use serde::{Deserialize, Serialize};

use crate::{InstanceState, ResourceKey, StateSnapshot};

/// One instance change.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JournalRecord {
    /// The resource.
    pub resource: ResourceKey,
    /// Which instance.
    #[serde(default)]
    pub index_key: Option<serde_json::Value>,
    /// Its new state, or `None` when it was destroyed.
    #[serde(default)]
    pub instance: Option<InstanceState>,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    lineage: std::borrow::Cow<'a, str>,
    base_serial: u64,
    record: std::borrow::Cow<'a, JournalRecord>,
}

/// Encodes records as journal lines.
pub(crate) fn encode(base: &StateSnapshot, records: &[JournalRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let line = Line {
            lineage: std::borrow::Cow::Borrowed(&base.lineage),
            base_serial: base.serial,
            record: std::borrow::Cow::Borrowed(r),
        };
        if let Ok(bytes) = serde_json::to_vec(&line) {
            out.extend_from_slice(&bytes);
            out.push(b'\n');
        }
    }
    out
}

/// Folds journal lines into `snapshot`; returns how many records applied.
pub(crate) fn replay(snapshot: &mut StateSnapshot, journal: &[u8]) -> usize {
    let mut applied = 0;
    for raw in journal.split(|b| *b == b'\n') {
        if raw.is_empty() {
            continue;
        }
        let Ok(line) = serde_json::from_slice::<Line<'_>>(raw) else {
            tracing::warn!("ignoring a torn journal record");
            continue;
        };
        if line.lineage != snapshot.lineage || line.base_serial != snapshot.serial {
            continue;
        }
        apply(snapshot, line.record.into_owned());
        applied += 1;
    }
    if applied > 0 {
        snapshot.serial += 1;
        snapshot.normalize();
    }
    applied
}

/// Applies one record to a snapshot.
pub fn apply(snapshot: &mut StateSnapshot, record: JournalRecord) {
    match record.instance {
        Some(inst) => snapshot.put_instance(record.resource, inst),
        None => snapshot.remove_instance(&record.resource, &record.index_key),
    }
}
