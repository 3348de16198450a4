//! Cosign-compatible keys and signature payloads.
//!
//! plumb reads and writes the key files `cosign generate-key-pair` makes: the
//! private key is a PEM block (`ENCRYPTED SIGSTORE PRIVATE KEY`, or the older
//! `ENCRYPTED COSIGN PRIVATE KEY`) whose body is JSON holding scrypt parameters,
//! a NaCl secretbox nonce and the sealed PKCS#8 DER of an ECDSA P-256 key; the
//! public key is a PKIX `PUBLIC KEY` PEM block. Signatures are ASN.1 DER ECDSA
//! over SHA-256.
//!
//! Two signature shapes are produced and checked, the two cosign writes:
//! the *simple signing* payload stored as a layer of the `sha256-<hex>.sig` tag,
//! and a Sigstore bundle (v0.3) holding a DSSE envelope around an in-toto
//! statement, stored as an OCI referrer of the signed manifest.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 signature on a simple-signing layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type (and artifact type) of a Sigstore bundle, v0.3.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Predicate type cosign uses for plain image signatures in a bundle.
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Annotation naming the bundle's predicate type on the referrer manifest.
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// DSSE payload type of an in-toto statement.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

const PEM_ENCRYPTED_SIGSTORE: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const PEM_ENCRYPTED_COSIGN: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// Why a key could not be read, or a signature not made or checked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No PEM block of a usable type.
    #[error("no PEM block of type {expected} found")]
    NoPem {
        /// The block types looked for.
        expected: String,
    },
    /// Base64 or JSON inside the key is damaged.
    #[error("the key file is damaged: {0}")]
    Damaged(String),
    /// scrypt parameters outside the three levels cosign writes (a DoS guard).
    #[error("the key uses scrypt parameters N={n}, r={r}, p={p}, which cosign never writes")]
    UnsupportedKdf {
        /// N.
        n: u64,
        /// r.
        r: u32,
        /// p.
        p: u32,
    },
    /// The password does not open the key.
    #[error("wrong password for the private key (set COSIGN_PASSWORD)")]
    WrongPassword,
    /// The key is not ECDSA P-256.
    #[error("the key is not an ECDSA P-256 key: {0}")]
    NotP256(String),
    /// The signature bytes are not DER or base64.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
}

/// Decode the first PEM block whose label is one of `labels`.
fn pem_block(text: &str, labels: &[&str]) -> Result<(String, Vec<u8>), KeyError> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        if !labels.contains(&label) {
            continue;
        }
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        for l in lines.by_ref() {
            let l = l.trim();
            if l == end {
                let der = B64
                    .decode(body.as_bytes())
                    .map_err(|e| KeyError::Damaged(e.to_string()))?;
                return Ok((label.to_owned(), der));
            }
            body.push_str(l);
        }
        return Err(KeyError::Damaged(format!(
            "PEM block {label} has no END line"
        )));
    }
    Err(KeyError::NoPem {
        expected: labels.join(" or "),
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

mod b64bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64bytes")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64bytes")]
    nonce: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64bytes")]
    ciphertext: Vec<u8>,
}

fn box_key(password: &[u8], kdf: &Kdf) -> Result<[u8; 32], KeyError> {
    let p = &kdf.params;
    // Only the legacy (2^15), standard (2^16) and OWASP (2^17) levels, r=8, p=1.
    let log_n = match p.n {
        32768 => 15,
        65536 => 16,
        131072 => 17,
        _ => 0,
    };
    if log_n == 0 || p.r != 8 || p.p != 1 || kdf.name != "scrypt" {
        return Err(KeyError::UnsupportedKdf {
            n: p.n,
            r: p.r,
            p: p.p,
        });
    }
    let params =
        scrypt::Params::new(log_n, p.r, p.p, 32).map_err(|e| KeyError::Damaged(e.to_string()))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &kdf.salt, &params, &mut key)
        .map_err(|e| KeyError::Damaged(e.to_string()))?;
    Ok(key)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut b = [0u8; N];
    getrandom_fill(&mut b)?;
    Ok(b)
}

fn getrandom_fill(b: &mut [u8]) -> Result<(), KeyError> {
    // p256's key generation wants a CryptoRng; reading the OS source directly
    // keeps one RNG dependency in the tree.
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(b))
        .map_err(|e| KeyError::Damaged(format!("no randomness: {e}")))
}

/// A private signing key in cosign's format.
pub struct CosignSigningKey {
    key: SigningKey,
}

impl std::fmt::Debug for CosignSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CosignSigningKey(<redacted>)")
    }
}

impl CosignSigningKey {
    /// Read a private key file: cosign's encrypted PEM (opened with `password`),
    /// or an unencrypted PKCS#8 `PRIVATE KEY` / SEC1 `EC PRIVATE KEY`.
    pub fn from_pem(text: &str, password: &[u8]) -> Result<Self, KeyError> {
        let (label, der) = pem_block(
            text,
            &[
                PEM_ENCRYPTED_SIGSTORE,
                PEM_ENCRYPTED_COSIGN,
                "PRIVATE KEY",
                "EC PRIVATE KEY",
            ],
        )?;
        let key = match label.as_str() {
            "PRIVATE KEY" => {
                SigningKey::from_pkcs8_der(&der).map_err(|e| KeyError::NotP256(e.to_string()))?
            }
            "EC PRIVATE KEY" => {
                use p256::elliptic_curve::SecretKey;
                let sk = SecretKey::<p256::NistP256>::from_sec1_der(&der)
                    .map_err(|e| KeyError::NotP256(e.to_string()))?;
                SigningKey::from(sk)
            }
            _ => {
                let enc: EncryptedKey = serde_json::from_slice(&der)
                    .map_err(|e| KeyError::Damaged(format!("encrypted key JSON: {e}")))?;
                if enc.cipher.name != "nacl/secretbox" || enc.cipher.nonce.len() != 24 {
                    return Err(KeyError::Damaged(format!(
                        "cipher {:?} is not nacl/secretbox",
                        enc.cipher.name
                    )));
                }
                let key = box_key(password, &enc.kdf)?;
                use crypto_secretbox::aead::{Aead as _, KeyInit as _};
                let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
                let nonce = crypto_secretbox::Nonce::from_slice(&enc.cipher.nonce);
                let plain = cipher
                    .decrypt(nonce, enc.ciphertext.as_slice())
                    .map_err(|_| KeyError::WrongPassword)?;
                SigningKey::from_pkcs8_der(&plain).map_err(|e| KeyError::NotP256(e.to_string()))?
            }
        };
        Ok(CosignSigningKey { key })
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        loop {
            let bytes: [u8; 32] = random_bytes()?;
            if let Ok(key) = SigningKey::from_bytes(&bytes.into()) {
                return Ok(CosignSigningKey { key });
            }
        }
    }

    /// The key as cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` PEM, sealed with
    /// `password` (scrypt N=2^16, r=8, p=1; NaCl secretbox).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Damaged(e.to_string()))?;
        let kdf = Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                n: 65536,
                r: 8,
                p: 1,
            },
            salt: random_bytes::<32>()?.to_vec(),
        };
        let nonce: [u8; 24] = random_bytes()?;
        let key = box_key(password, &kdf)?;
        use crypto_secretbox::aead::{Aead as _, KeyInit as _};
        let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
        let ciphertext = cipher
            .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), der.as_bytes())
            .map_err(|e| KeyError::Damaged(e.to_string()))?;
        let enc = EncryptedKey {
            kdf,
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: nonce.to_vec(),
            },
            ciphertext,
        };
        let json = serde_json::to_vec(&enc).map_err(|e| KeyError::Damaged(e.to_string()))?;
        Ok(pem_encode(PEM_ENCRYPTED_SIGSTORE, &json))
    }

    /// The matching public key.
    pub fn public_key(&self) -> CosignPublicKey {
        CosignPublicKey {
            key: *self.key.verifying_key(),
        }
    }

    /// Sign `message` (ECDSA P-256, SHA-256), returning ASN.1 DER.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(message);
        sig.to_der().as_bytes().to_vec()
    }
}

/// A public verification key in cosign's format.
#[derive(Debug, Clone)]
pub struct CosignPublicKey {
    key: VerifyingKey,
}

impl CosignPublicKey {
    /// Read a PKIX `PUBLIC KEY` PEM block.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let (_, der) = pem_block(text, &["PUBLIC KEY"])?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| KeyError::NotP256(e.to_string()))?;
        Ok(CosignPublicKey { key })
    }

    /// The key as a PKIX `PUBLIC KEY` PEM block.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let der = self
            .key
            .to_public_key_der()
            .map_err(|e| KeyError::Damaged(e.to_string()))?;
        Ok(pem_encode("PUBLIC KEY", der.as_bytes()))
    }

    /// base64(sha256(PKIX DER)): the key hint a Sigstore bundle carries.
    pub fn hint(&self) -> Result<String, KeyError> {
        let der = self
            .key
            .to_public_key_der()
            .map_err(|e| KeyError::Damaged(e.to_string()))?;
        use sha2::Digest as _;
        Ok(B64.encode(sha2::Sha256::digest(der.as_bytes())))
    }

    /// Whether `der_signature` is a valid signature of `message` by this key.
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> Result<bool, KeyError> {
        let sig = Signature::from_der(der_signature)
            .map_err(|e| KeyError::MalformedSignature(e.to_string()))?;
        Ok(self.key.verify(message, &sig).is_ok())
    }
}

/// The simple-signing payload cosign signs for a container image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimpleSigningPayload {
    /// What the signature is about.
    pub critical: SimpleSigningCritical,
    /// Free-form claims (cosign writes `null` when there are none).
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The `critical` section of a simple-signing payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimpleSigningCritical {
    /// `{"docker-reference": "host/repo"}`.
    pub identity: SimpleSigningIdentity,
    /// `{"docker-manifest-digest": "sha256:..."}`.
    pub image: SimpleSigningImage,
    /// Always `cosign container image signature`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The identity claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimpleSigningIdentity {
    /// The repository the image was signed under.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// The image claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimpleSigningImage {
    /// The signed manifest digest.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigningPayload {
    /// The payload for `repository` (`host/repo`) at `digest`.
    pub fn new(repository: &str, digest: &Digest) -> Self {
        SimpleSigningPayload {
            critical: SimpleSigningCritical {
                identity: SimpleSigningIdentity {
                    docker_reference: repository.to_owned(),
                },
                image: SimpleSigningImage {
                    docker_manifest_digest: digest.to_string(),
                },
                kind: "cosign container image signature".to_owned(),
            },
            optional: None,
        }
    }
}

/// DSSE pre-authentication encoding.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A Sigstore bundle (only the parts a key-based signature uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigstoreBundle {
    /// `application/vnd.dev.sigstore.bundle.v0.3+json`.
    pub media_type: String,
    /// Key hint, transparency-log entries, timestamps.
    pub verification_material: serde_json::Value,
    /// The signed envelope (absent for message-signature bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<DsseEnvelope>,
    /// A detached message signature (cosign's blob bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_signature: Option<serde_json::Value>,
}

/// A DSSE envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DsseEnvelope {
    /// base64 of the payload.
    pub payload: String,
    /// The payload's type.
    pub payload_type: String,
    /// Signatures over the PAE.
    pub signatures: Vec<DsseSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DsseSignature {
    /// base64 of the DER signature.
    pub sig: String,
    /// Key id (cosign leaves it empty).
    #[serde(default)]
    pub keyid: String,
}

/// Build the in-toto statement cosign signs into a bundle for `digest`.
pub fn sign_statement(digest: &Digest) -> serde_json::Value {
    serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "digest": { digest.algorithm().as_str(): digest.hex() } }],
        "predicateType": SIGN_PREDICATE_TYPE,
        "predicate": {}
    })
}

impl SigstoreBundle {
    /// Sign the statement for `digest` with `key` into a v0.3 bundle.
    pub fn sign(key: &CosignSigningKey, digest: &Digest) -> Result<Self, KeyError> {
        let statement = serde_json::to_vec(&sign_statement(digest))
            .map_err(|e| KeyError::Damaged(e.to_string()))?;
        let sig = key.sign(&dsse_pae(INTOTO_PAYLOAD_TYPE, &statement));
        Ok(SigstoreBundle {
            media_type: BUNDLE_MEDIA_TYPE.to_owned(),
            verification_material: serde_json::json!({
                "publicKey": { "hint": key.public_key().hint()? }
            }),
            dsse_envelope: Some(DsseEnvelope {
                payload: B64.encode(&statement),
                payload_type: INTOTO_PAYLOAD_TYPE.to_owned(),
                signatures: vec![DsseSignature {
                    sig: B64.encode(sig),
                    keyid: String::new(),
                }],
            }),
            message_signature: None,
        })
    }

    /// Whether this bundle carries a signature by `key` over a statement whose
    /// subject is `digest`.
    pub fn verify(&self, key: &CosignPublicKey, digest: &Digest) -> Result<bool, KeyError> {
        let Some(env) = &self.dsse_envelope else {
            return Ok(false);
        };
        if env.payload_type != INTOTO_PAYLOAD_TYPE {
            return Ok(false);
        }
        let payload = B64
            .decode(env.payload.as_bytes())
            .map_err(|e| KeyError::MalformedSignature(e.to_string()))?;
        let mut signed = false;
        for s in &env.signatures {
            let der = B64
                .decode(s.sig.as_bytes())
                .map_err(|e| KeyError::MalformedSignature(e.to_string()))?;
            if key.verify(&dsse_pae(&env.payload_type, &payload), &der)? {
                signed = true;
            }
        }
        if !signed {
            return Ok(false);
        }
        let statement: serde_json::Value = serde_json::from_slice(&payload)
            .map_err(|e| KeyError::MalformedSignature(e.to_string()))?;
        let names_digest = statement["subject"].as_array().is_some_and(|subjects| {
            subjects
                .iter()
                .any(|s| s["digest"][digest.algorithm().as_str()].as_str() == Some(digest.hex()))
        });
        Ok(names_digest)
    }
}

/// Check a simple-signing layer: `payload` bytes, base64 `signature`; true when
/// the signature is by `key` and the payload names `digest`.
pub fn verify_simple_signing(
    key: &CosignPublicKey,
    payload: &[u8],
    signature_b64: &str,
    digest: &Digest,
) -> Result<bool, KeyError> {
    let der = B64
        .decode(signature_b64.trim().as_bytes())
        .map_err(|e| KeyError::MalformedSignature(e.to_string()))?;
    if !key.verify(payload, &der)? {
        return Ok(false);
    }
    let parsed: SimpleSigningPayload =
        serde_json::from_slice(payload).map_err(|e| KeyError::MalformedSignature(e.to_string()))?;
    Ok(parsed.critical.image.docker_manifest_digest == digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_key_round_trip() {
        let k = CosignSigningKey::generate().unwrap();
        let pem = k.to_encrypted_pem(b"pw").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        let back = CosignSigningKey::from_pem(&pem, b"pw").unwrap();
        let sig = back.sign(b"hello");
        assert!(k.public_key().verify(b"hello", &sig).unwrap());
        assert!(!k.public_key().verify(b"hellO", &sig).unwrap());
        assert!(matches!(
            CosignSigningKey::from_pem(&pem, b"nope"),
            Err(KeyError::WrongPassword)
        ));
        let pubpem = k.public_key().to_pem().unwrap();
        let p = CosignPublicKey::from_pem(&pubpem).unwrap();
        assert!(p.verify(b"hello", &sig).unwrap());
    }

    #[test]
    fn simple_signing_and_bundle() {
        let k = CosignSigningKey::generate().unwrap();
        let d = Digest::sha256_of(b"manifest");
        let other = Digest::sha256_of(b"other");
        let payload = serde_json::to_vec(&SimpleSigningPayload::new("localhost/app", &d)).unwrap();
        let sig = B64.encode(k.sign(&payload));
        assert!(verify_simple_signing(&k.public_key(), &payload, &sig, &d).unwrap());
        assert!(!verify_simple_signing(&k.public_key(), &payload, &sig, &other).unwrap());
        let stranger = CosignSigningKey::generate().unwrap();
        assert!(!verify_simple_signing(&stranger.public_key(), &payload, &sig, &d).unwrap());

        let b = SigstoreBundle::sign(&k, &d).unwrap();
        assert!(b.verify(&k.public_key(), &d).unwrap());
        assert!(!b.verify(&k.public_key(), &other).unwrap());
        assert!(!b.verify(&stranger.public_key(), &d).unwrap());
    }

    #[test]
    fn refuses_hostile_kdf_parameters() {
        let enc = serde_json::json!({
            "kdf": {"name": "scrypt", "params": {"N": 1u64 << 40, "r": 8, "p": 1}, "salt": "AAAA"},
            "cipher": {"name": "nacl/secretbox", "nonce": B64.encode([0u8; 24])},
            "ciphertext": "AAAA"
        });
        let pem = pem_encode(PEM_ENCRYPTED_SIGSTORE, enc.to_string().as_bytes());
        assert!(matches!(
            CosignSigningKey::from_pem(&pem, b""),
            Err(KeyError::UnsupportedKdf { .. })
        ));
    }
}
