//! Secrets in Git, made safe: SOPS-encrypted files read and written with age
//! keys ([`sops`]), whole byte strings sealed for age recipients ([`sealed`],
//! for what plumb keeps encrypted at rest), plaintext secrets found before
//! they reach a cluster or a state file ([`scan`]), and references to values
//! kept elsewhere (Vault, another Kubernetes Secret, a mounted file) resolved
//! at apply ([`refs`]).
//!
//! This crate decrypts into memory only: it never writes a decrypted byte to
//! disk, and nothing it returns in an error carries a secret value.

pub mod refs;
pub mod scan;
pub mod sealed;
pub mod sops;
