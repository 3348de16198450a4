//! Secrets in Git, made safe: SOPS-encrypted files read and written with age
//! keys ([`sops`]), and plaintext secrets found before they reach a cluster or
//! a state file ([`scan`]).
//!
//! This crate decrypts into memory only: it never writes a decrypted byte to
//! disk, and nothing it returns in an error carries a secret value.

pub mod scan;
pub mod sops;
