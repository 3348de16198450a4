//! State encrypted at rest: how a snapshot and its journal lines look when a
//! stack configures encryption, and the rules for reading what is stored.
//!
//! State holds every attribute a provider returns, passwords and private keys
//! included. With a [`StateEncryption`], every write seals the snapshot (and
//! every journal batch) with the caller's [`StateCipher`]; only `serial` and
//! `lineage` stay readable beside the ciphertext, as OpenTofu keeps its
//! metadata outside, so locks, stale-plan checks and the PostgreSQL columns
//! work without a key. A snapshot as stored then reads:
//!
//! ```json
//! {
//!   "serial": 4,
//!   "lineage": "…",
//!   "encryption": {"method": "age", "key_provider": "key_provider.age.team", "recipients": ["age1…"]},
//!   "encrypted_data": "base64 of the sealed Terraform v4 JSON",
//!   "encryption_version": "plumb-age-v1"
//! }
//! ```
//!
//! There is deliberately no `version` key: a tool that does not know this
//! envelope refuses it instead of reading an empty state. On read the
//! readable `serial`/`lineage` must equal the sealed ones, so editing them
//! does not go unnoticed.
//!
//! Reading follows the configuration: an encrypted state without a
//! configured encryption is refused (nothing would be written encrypted
//! again); a plaintext state is read when encryption is not `enforced` (the
//! migration: the next write seals it) and refused when it is. The cipher
//! itself is the caller's: this crate knows no key format and no
//! configuration language.

use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{StateError, StateSnapshot};

/// The `encryption_version` plumb writes.
pub const ENCRYPTION_VERSION: &str = "plumb-age-v1";

/// Why a cipher could not seal or open.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// The cipher has no key to open with at all.
    #[error("no identity to decrypt with is given")]
    NoKeys,
    /// None of the cipher's keys opens the ciphertext.
    #[error("none of the given identities matches")]
    NoMatchingKey,
    /// Sealing failed, or the ciphertext is damaged.
    #[error("{0}")]
    Failed(String),
}

/// Seals and opens state bytes. Implemented by the caller (plumb-infra's age
/// key provider); never sees anything but bytes.
pub trait StateCipher: Send + Sync {
    /// The method, as recorded beside the ciphertext (`age`).
    fn method(&self) -> &str;
    /// The configuration's name for the key (`key_provider.age.team`).
    fn key_provider(&self) -> &str;
    /// Who can open what [`StateCipher::seal`] writes, as recorded beside
    /// the ciphertext and named in errors.
    fn recipients(&self) -> Vec<String>;
    /// Encrypts `plaintext` for the recipients.
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CipherError>;
    /// Decrypts what [`StateCipher::seal`] wrote (now or with other
    /// recipients before).
    fn open(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CipherError>;
}

/// A stack's state encryption: the cipher, and whether a plaintext state is
/// refused.
#[derive(Clone)]
pub struct StateEncryption {
    cipher: Arc<dyn StateCipher>,
    enforced: bool,
}

impl std::fmt::Debug for StateEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateEncryption")
            .field("method", &self.cipher.method())
            .field("key_provider", &self.cipher.key_provider())
            .field("recipients", &self.cipher.recipients())
            .field("enforced", &self.enforced)
            .finish()
    }
}

impl StateEncryption {
    /// Encryption with `cipher`; `enforced` refuses to read plaintext state.
    pub fn new(cipher: Arc<dyn StateCipher>, enforced: bool) -> StateEncryption {
        StateEncryption { cipher, enforced }
    }

    /// Whether a plaintext state is refused.
    pub fn enforced(&self) -> bool {
        self.enforced
    }

    /// The recipients writes are sealed for.
    pub fn recipients(&self) -> Vec<String> {
        self.cipher.recipients()
    }

    /// `plaintext` sealed, as base64 (`state` names the state in errors).
    pub(crate) fn seal(&self, state: &str, plaintext: &[u8]) -> Result<String, StateError> {
        let sealed = self
            .cipher
            .seal(plaintext)
            .map_err(|e| StateError::Encrypt {
                state: state.to_string(),
                reason: e.to_string(),
            })?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// What [`StateEncryption::seal`] wrote; `recipients` (as recorded) are
    /// named when it does not open.
    pub(crate) fn open(
        &self,
        state: &str,
        data: &str,
        recipients: Vec<String>,
    ) -> Result<Zeroizing<Vec<u8>>, StateError> {
        let undecryptable = |reason: String| StateError::Undecryptable {
            state: state.to_string(),
            recipients: recipients.clone(),
            reason,
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| undecryptable(format!("the ciphertext is not base64: {e}")))?;
        self.cipher
            .open(&sealed)
            .map_err(|e| undecryptable(e.to_string()))
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    method: String,
    key_provider: String,
    recipients: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    serial: u64,
    lineage: String,
    encryption: Meta,
    encrypted_data: String,
    encryption_version: String,
}

/// Just enough of a stored state to tell the two shapes apart.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    encryption_version: Option<String>,
}

fn is_envelope(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.encryption_version.is_some())
}

/// A snapshot as stored: plain Terraform JSON, or sealed in an envelope.
pub(crate) fn encode_snapshot(
    encryption: Option<&StateEncryption>,
    state: &str,
    snapshot: &StateSnapshot,
) -> Result<Vec<u8>, StateError> {
    let Some(enc) = encryption else {
        return Ok(snapshot.to_json());
    };
    let plain = Zeroizing::new(snapshot.to_json());
    let envelope = Envelope {
        serial: snapshot.serial,
        lineage: snapshot.lineage.clone(),
        encryption: Meta {
            method: enc.cipher.method().to_string(),
            key_provider: enc.cipher.key_provider().to_string(),
            recipients: enc.cipher.recipients(),
        },
        encrypted_data: enc.seal(state, &plain)?,
        encryption_version: ENCRYPTION_VERSION.to_string(),
    };
    let mut out = serde_json::to_vec_pretty(&envelope).map_err(|e| StateError::Encrypt {
        state: state.to_string(),
        reason: e.to_string(),
    })?;
    out.push(b'\n');
    Ok(out)
}

/// Reads a stored snapshot under the configured encryption (see the module
/// documentation for what is refused); says too whether it was a plaintext
/// state read under (unenforced) encryption, which the next write seals.
pub(crate) fn decode_snapshot(
    encryption: Option<&StateEncryption>,
    state: &str,
    bytes: &[u8],
) -> Result<(StateSnapshot, bool), StateError> {
    if !is_envelope(bytes) {
        if encryption.is_some_and(StateEncryption::enforced) {
            return Err(StateError::Plaintext {
                state: state.to_string(),
            });
        }
        return Ok((StateSnapshot::from_json(bytes)?, encryption.is_some()));
    }
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| StateError::Corrupt(format!("{state}: encrypted state: {e}")))?;
    if envelope.encryption_version != ENCRYPTION_VERSION {
        return Err(StateError::Corrupt(format!(
            "{state}: encryption_version {:?} is not one plumb reads ({ENCRYPTION_VERSION})",
            envelope.encryption_version
        )));
    }
    let Some(enc) = encryption else {
        return Err(StateError::Encrypted {
            state: state.to_string(),
            key_provider: envelope.encryption.key_provider,
            recipients: envelope.encryption.recipients,
        });
    };
    let plain = enc.open(
        state,
        &envelope.encrypted_data,
        envelope.encryption.recipients,
    )?;
    let snapshot = StateSnapshot::from_json(&plain)?;
    if snapshot.serial != envelope.serial || snapshot.lineage != envelope.lineage {
        return Err(StateError::Corrupt(format!(
            "{state}: the readable serial/lineage ({}, {}) differ from the encrypted state's ({}, {}); the file was altered",
            envelope.serial, envelope.lineage, snapshot.serial, snapshot.lineage
        )));
    }
    Ok((snapshot, false))
}

/// A stored snapshot in the shape the configured encryption writes, when it
/// differs from how it is stored: a plaintext state under encryption, so
/// that a backup made while migrating is not left in plain text. `None`
/// when the bytes can stay as they are.
pub(crate) fn reseal(
    encryption: Option<&StateEncryption>,
    state: &str,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, StateError> {
    match encryption {
        Some(enc) if !is_envelope(bytes) => {
            // Not decode_snapshot: this plaintext is what is being migrated.
            let snapshot = StateSnapshot::from_json(bytes)?;
            encode_snapshot(Some(enc), state, &snapshot).map(Some)
        }
        _ => Ok(None),
    }
}
