//! Secrets in Git, made safe: SOPS-encrypted files read and written with age
//! keys ([`sops`]), whole byte strings sealed for age recipients ([`sealed`],
//! for what plumb keeps encrypted at rest), and plaintext secrets found before
//! they reach a cluster or a state file ([`scan`]).
//!
//! This crate decrypts into memory only: it never writes a decrypted byte to
//! disk, and nothing it returns in an error carries a secret value.

pub mod scan;
pub mod sealed;
pub mod sops;
