//! SOPS files (filled in by the sops work).
