//! One SOPS value: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`.
//!
//! AES-256-GCM with a 32-byte nonce under the file's data key; the additional
//! data is the value's path of map keys joined with `:` plus a trailing `:`
//! (or, for the MAC, the file's `lastmodified` text). The type tells how the
//! plaintext reads back (`str`, `int`, `float`, `bool`, `bytes`, `comment`).

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::tree::Node;

type Gcm = AesGcm<Aes256, U32>;

/// A decrypted value, typed as the file says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plain {
    /// A value of the tree.
    Value(Node),
    /// An encrypted comment (kept out of the MAC).
    Comment(String),
}

/// Whether `s` is an encrypted SOPS value.
pub(crate) fn is_encrypted(s: &str) -> bool {
    s.starts_with("ENC[AES256_GCM,data:") && s.ends_with(']')
}

/// Why a value did not decrypt (the text never holds the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueError {
    /// Not `ENC[AES256_GCM,…]`.
    Format,
    /// Authentication failed: tampered, moved, or another data key.
    Auth,
    /// The plaintext does not read as its type.
    Type(String),
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::Format => f.write_str("not an ENC[AES256_GCM,...] value"),
            ValueError::Auth => f.write_str(
                "authentication failed (the value was changed or moved, or the data key is wrong)",
            ),
            ValueError::Type(t) => write!(f, "the plaintext is not a valid {t}"),
        }
    }
}

/// The raw decrypted bytes of `value` and its declared type.
pub(crate) fn open(
    value: &str,
    key: &[u8; 32],
    aad: &str,
) -> Result<(Zeroizing<Vec<u8>>, String), ValueError> {
    let inner = value
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|s| s.strip_suffix(']'))
        .ok_or(ValueError::Format)?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut ty = None;
    for part in inner.split(',') {
        let (k, v) = part.split_once(':').ok_or(ValueError::Format)?;
        match k {
            "data" => data = Some(v),
            "iv" => iv = Some(v),
            "tag" => tag = Some(v),
            "type" => ty = Some(v),
            _ => return Err(ValueError::Format),
        }
    }
    let (Some(data), Some(iv), Some(tag), Some(ty)) = (data, iv, tag, ty) else {
        return Err(ValueError::Format);
    };
    let b64 = |s: &str| STANDARD.decode(s).map_err(|_| ValueError::Format);
    let mut sealed = b64(data)?;
    let iv = b64(iv)?;
    let tag = b64(tag)?;
    if iv.len() != 32 || tag.len() != 16 {
        return Err(ValueError::Format);
    }
    sealed.extend_from_slice(&tag);
    let cipher = Gcm::new(key.into());
    let plain = cipher
        .decrypt(
            Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: &sealed,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| ValueError::Auth)?;
    Ok((Zeroizing::new(plain), ty.to_string()))
}

/// Decrypt `value` into its typed plaintext.
pub(crate) fn decrypt(value: &str, key: &[u8; 32], aad: &str) -> Result<Plain, ValueError> {
    let (bytes, ty) = open(value, key, aad)?;
    let text = || String::from_utf8(bytes.to_vec()).map_err(|_| ValueError::Type(ty.clone()));
    Ok(match ty.as_str() {
        "str" | "time" => Plain::Value(Node::Str(text()?)),
        "bytes" => Plain::Value(Node::Str(String::from_utf8_lossy(&bytes).into_owned())),
        "int" => Plain::Value(Node::Int(
            text()?.parse().map_err(|_| ValueError::Type(ty.clone()))?,
        )),
        "float" => Plain::Value(Node::Float(
            text()?.parse().map_err(|_| ValueError::Type(ty.clone()))?,
        )),
        "bool" => Plain::Value(Node::Bool(match text()?.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => return Err(ValueError::Type(ty)),
        })),
        "comment" => Plain::Comment(text()?),
        _ => return Err(ValueError::Type(ty)),
    })
}

/// Encrypt raw bytes as a value of type `ty`.
pub(crate) fn seal(plain: &[u8], ty: &str, key: &[u8; 32], aad: &str) -> String {
    let mut iv = [0u8; 32];
    OsRng.fill_bytes(&mut iv);
    let cipher = Gcm::new(key.into());
    // Encryption with a valid key and nonce size cannot fail.
    let sealed = cipher
        .encrypt(
            Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .unwrap_or_default();
    let (data, tag) = sealed.split_at(sealed.len().saturating_sub(16));
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{ty}]",
        STANDARD.encode(data),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    )
}

/// Encrypt a leaf of the tree (empty strings stay empty, as SOPS leaves them).
pub(crate) fn seal_node(node: &Node, key: &[u8; 32], aad: &str) -> Node {
    let (bytes, ty) = match node {
        Node::Str(s) if s.is_empty() => return Node::Str(String::new()),
        Node::Str(s) => (s.as_bytes().to_vec(), "str"),
        Node::Int(i) => (i.to_string().into_bytes(), "int"),
        Node::Float(f) => (format!("{f}").into_bytes(), "float"),
        Node::Bool(b) => (
            if *b {
                b"True".to_vec()
            } else {
                b"False".to_vec()
            },
            "bool",
        ),
        other => return other.clone(),
    };
    let bytes = Zeroizing::new(bytes);
    Node::Str(seal(&bytes, ty, key, aad))
}

/// 32 random bytes: a new data key.
pub(crate) fn data_key() -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(k.as_mut());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_their_types() {
        let key = [7u8; 32];
        for n in [
            Node::Str("hunter2".into()),
            Node::Int(-42),
            Node::Float(2.5),
            Node::Bool(true),
        ] {
            let Node::Str(enc) = seal_node(&n, &key, "a:b:") else {
                panic!()
            };
            assert!(is_encrypted(&enc), "{enc}");
            assert_eq!(decrypt(&enc, &key, "a:b:").unwrap(), Plain::Value(n));
            // Moving a value to another path breaks it.
            assert_eq!(decrypt(&enc, &key, "a:c:"), Err(ValueError::Auth));
            assert_eq!(decrypt(&enc, &[8u8; 32], "a:b:"), Err(ValueError::Auth));
        }
        assert_eq!(
            seal_node(&Node::Str(String::new()), &key, "x:"),
            Node::Str(String::new())
        );
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        let key = [1u8; 32];
        let enc = seal(b"secret-value", "str", &key, "k:");
        let data_at = enc.find("data:").unwrap() + 5;
        let mut bytes = enc.into_bytes();
        bytes[data_at] = if bytes[data_at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(decrypt(&tampered, &key, "k:"), Err(ValueError::Auth));
        assert_eq!(
            decrypt("ENC[AES256_GCM,data:x]", &key, "k:"),
            Err(ValueError::Format)
        );
    }
}
