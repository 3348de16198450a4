//! Scan reports as the gate reads them from a registry: the types live in
//! plumb-scan, which writes them; the gate reads them through these names.

pub use plumb_scan::report::{
    Finding, SCAN_REPORT_ARTIFACT_TYPE, SCAN_REPORT_MEDIA_TYPE, ScanReport, Severity,
};
