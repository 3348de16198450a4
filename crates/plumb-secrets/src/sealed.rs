//! Whole byte strings sealed for age recipients and opened with a
//! [`Keyring`]: what plumb keeps encrypted at rest besides SOPS files (a
//! stack's state and journal, the variables of a saved plan).
//!
//! A SOPS file encrypts each value under one data key and wraps that key for
//! every recipient; here there is no document structure to keep readable, so
//! the bytes are one age file (binary, not armored: callers base64 it where
//! they need text). The recipients are not recoverable from an age file, so a
//! caller that wants to name them in an error keeps them beside it.

use std::io::{Read, Write};
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::sops::Keyring;

/// Why bytes could not be sealed or opened. Never carries plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A recipient is not an age X25519 recipient (`age1…`).
    #[error("{recipient:?} is not an age recipient (age1…): {message}")]
    Recipient {
        /// As given.
        recipient: String,
        /// Why.
        message: String,
    },
    /// Sealing needs at least one recipient.
    #[error("no age recipient given")]
    NoRecipients,
    /// The keyring holds no identity at all.
    #[error("no age identity is configured")]
    NoKeys,
    /// No identity of the keyring opens the file.
    #[error("no age identity matches")]
    NoMatchingKey,
    /// The bytes are not an age file, or were altered.
    #[error("not a valid age file: {0}")]
    Corrupt(String),
}

/// A validated list of age recipients to seal for.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<(String, age::x25519::Recipient)>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(s, _)| s))
            .finish()
    }
}

impl Recipients {
    /// Parses `age1…` recipients; at least one is needed.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Recipients, SealError> {
        let keys = list
            .iter()
            .map(|r| {
                let r = r.as_ref().trim();
                age::x25519::Recipient::from_str(r)
                    .map(|k| (r.to_string(), k))
                    .map_err(|message| SealError::Recipient {
                        recipient: r.to_string(),
                        message: message.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SealError::NoRecipients);
        }
        Ok(Recipients { keys })
    }

    /// The recipients, as given.
    pub fn to_strings(&self) -> Vec<String> {
        self.keys.iter().map(|(s, _)| s.clone()).collect()
    }

    /// `plaintext` as one binary age file that any of the recipients opens.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let fail = |e: &dyn std::fmt::Display| SealError::Corrupt(format!("age: {e}"));
        let encryptor = age::Encryptor::with_recipients(
            self.keys.iter().map(|(_, k)| k as &dyn age::Recipient),
        )
        .map_err(|e| fail(&e))?;
        let mut out = Vec::with_capacity(plaintext.len() + 256);
        let mut w = encryptor.wrap_output(&mut out).map_err(|e| fail(&e))?;
        w.write_all(plaintext).map_err(|e| fail(&e))?;
        w.finish().map_err(|e| fail(&e))?;
        Ok(out)
    }
}

/// Opens an age file sealed by [`Recipients::seal`] with any identity of
/// `keys`; the plaintext is wiped when dropped.
pub fn open(keys: &Keyring, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if keys.is_empty() {
        return Err(SealError::NoKeys);
    }
    let decryptor =
        age::Decryptor::new(ciphertext).map_err(|e| SealError::Corrupt(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(keys.age_identities())
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SealError::NoMatchingKey,
            other => SealError::Corrupt(other.to_string()),
        })?;
    let mut out = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut out)
        .map_err(|e| SealError::Corrupt(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sops::generate_identity;

    #[test]
    fn seals_for_every_recipient_and_refuses_others() {
        let (a_key, a) = generate_identity();
        let (b_key, b) = generate_identity();
        let (c_key, _) = generate_identity();
        let sealed = Recipients::parse(&[a, b]).unwrap().seal(b"state").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"state"));
        for key in [&a_key, &b_key] {
            let keys = Keyring::from_text(key, "test").unwrap();
            assert_eq!(&open(&keys, &sealed).unwrap()[..], b"state");
        }
        let other = Keyring::from_text(&c_key, "test").unwrap();
        assert!(matches!(
            open(&other, &sealed),
            Err(SealError::NoMatchingKey)
        ));
        assert!(matches!(
            open(&Keyring::new(), &sealed),
            Err(SealError::NoKeys)
        ));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        let keys = Keyring::from_text(&a_key, "test").unwrap();
        assert!(matches!(open(&keys, &altered), Err(SealError::Corrupt(_))));
    }

    #[test]
    fn refuses_bad_recipients() {
        assert!(matches!(
            Recipients::parse::<&str>(&[]),
            Err(SealError::NoRecipients)
        ));
        assert!(matches!(
            Recipients::parse(&["age1nope"]),
            Err(SealError::Recipient { .. })
        ));
    }
}
