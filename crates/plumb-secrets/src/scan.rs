//! Plaintext secret scanning (filled in by the scan work).
