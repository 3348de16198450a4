//! The journal: one durable line per completed resource, on top of the last
//! full snapshot.
//!
//! Rewriting the whole state after each of 10 000 resources would cost
//! quadratic I/O; appending one record (with group commit) costs a line. A
//! reader folds the records whose base matches the snapshot's lineage and
//! serial into it; records of an older base were already folded in by the
//! write that made the newer snapshot. A torn last line (kill -9 mid-write) is
//! ignored: that resource's record was never acknowledged.
//!
//! Under state encryption a line holds one batch of records sealed together
//! (`encrypted_records`), its lineage and base serial readable beside them;
//! a plaintext line is refused when the encryption is enforced.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::encryption::StateEncryption;
use crate::{InstanceState, ResourceKey, StateError, StateSnapshot};

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

/// One journal line: a record in the clear, or a batch of records sealed.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    lineage: Cow<'a, str>,
    base_serial: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<Cow<'a, JournalRecord>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted_records: Option<String>,
}

/// A batch of records sealed as one line's payload.
fn seal_records(
    enc: &StateEncryption,
    state: &str,
    records: &[JournalRecord],
) -> Result<String, StateError> {
    let plain = Zeroizing::new(
        serde_json::to_vec(records).map_err(|e| StateError::Encrypt {
            state: state.to_string(),
            reason: e.to_string(),
        })?,
    );
    enc.seal(state, &plain)
}

/// A sealed batch of records, opened under the configured encryption.
fn open_records(
    encryption: Option<&StateEncryption>,
    state: &str,
    data: &str,
) -> Result<Vec<JournalRecord>, StateError> {
    let journal = format!("{state} (journal)");
    let Some(enc) = encryption else {
        return Err(StateError::Encrypted {
            state: journal,
            key_provider: String::new(),
            recipients: Vec::new(),
        });
    };
    let plain = enc.open(&journal, data, enc.recipients())?;
    serde_json::from_slice(&plain)
        .map_err(|e| StateError::Corrupt(format!("{journal}: encrypted record: {e}")))
}

/// Encodes records as journal lines (`state` names the state in errors).
pub(crate) fn encode(
    encryption: Option<&StateEncryption>,
    state: &str,
    base: &StateSnapshot,
    records: &[JournalRecord],
) -> Result<Vec<u8>, StateError> {
    let line = |record: Option<&JournalRecord>, sealed: Option<String>| {
        let line = Line {
            lineage: Cow::Borrowed(&base.lineage),
            base_serial: base.serial,
            record: record.map(Cow::Borrowed),
            encrypted_records: sealed,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|e| StateError::Encrypt {
            state: state.to_string(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        Ok::<_, StateError>(bytes)
    };
    if let Some(enc) = encryption {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        return line(None, Some(seal_records(enc, state, records)?));
    }
    let mut out = Vec::new();
    for r in records {
        out.extend(line(Some(r), None)?);
    }
    Ok(out)
}

/// Folds journal lines into `snapshot`; returns how many records applied.
pub(crate) fn replay(
    encryption: Option<&StateEncryption>,
    state: &str,
    snapshot: &mut StateSnapshot,
    journal: &[u8],
) -> Result<usize, StateError> {
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
        match (line.record, line.encrypted_records) {
            (_, Some(sealed)) => {
                for record in open_records(encryption, state, &sealed)? {
                    apply(snapshot, record);
                    applied += 1;
                }
            }
            (Some(record), None) => {
                if encryption.is_some_and(StateEncryption::enforced) {
                    return Err(StateError::Plaintext {
                        state: format!("{state} (journal)"),
                    });
                }
                apply(snapshot, record.into_owned());
                applied += 1;
            }
            (None, None) => tracing::warn!("ignoring an empty journal record"),
        }
    }
    if applied > 0 {
        snapshot.serial += 1;
        snapshot.normalize();
    }
    Ok(applied)
}

/// Applies one record to a snapshot.
pub fn apply(snapshot: &mut StateSnapshot, record: JournalRecord) {
    match record.instance {
        Some(inst) => snapshot.put_instance(record.resource, inst),
        None => snapshot.remove_instance(&record.resource, &record.index_key),
    }
}
