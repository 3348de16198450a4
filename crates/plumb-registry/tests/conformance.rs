//! The OCI distribution-spec conformance suite against plumb's registry, with
//! pull, push, content discovery and content management enabled, through
//! basic-auth credentials. Zero failures is the bar.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

#[test]
fn oci_distribution_conformance_suite_passes() {
    let reg = common::TestRegistry::start();
    let results = reg.dir.path().join("results");
    let out = Command::new(common::tool("conformance"))
        .current_dir(reg.dir.path())
        .env("OCI_REGISTRY", reg.host())
        .env("OCI_TLS", "disabled")
        .env("OCI_REPO1", "conformance/repo1")
        .env("OCI_REPO2", "conformance/repo2")
        .env("OCI_USERNAME", common::USER)
        .env("OCI_PASSWORD", common::PASSWORD)
        .env("OCI_VERSION", "1.1")
        .env("OCI_API_PULL", "true")
        .env("OCI_API_PUSH", "true")
        .env("OCI_API_REFERRER", "true")
        .env("OCI_API_TAGS_LIST", "true")
        .env("OCI_API_TAGS_DELETE", "true")
        .env("OCI_API_MANIFESTS_DELETE", "true")
        .env("OCI_API_BLOBS_DELETE", "true")
        .env("OCI_API_BLOBS_UPLOAD_CANCEL", "true")
        .env("OCI_API_MANIFESTS_TAG_PARAM", "true")
        .env("OCI_API_BLOBS_DIGEST_HEADER", "true")
        .env("OCI_API_MANIFESTS_DIGEST_HEADER", "true")
        .env("OCI_RESULTS_DIR", &results)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let junit = std::fs::read_to_string(results.join("junit.xml")).unwrap_or_default();
    let attr = |name: &str| -> u64 {
        let key = format!("{name}=\"");
        junit
            .find(&key)
            .and_then(|i| junit[i + key.len()..].split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    let (tests, failures, errors) = (attr("tests"), attr("failures"), attr("errors"));
    eprintln!("conformance: {tests} tests, {failures} failures, {errors} errors");
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_end().ends_with(": Fail"))
        .collect();
    assert!(
        out.status.success() && failures == 0 && errors == 0 && tests > 500,
        "conformance failed ({}): {tests} tests, {failures} failures\nfailing:\n{}\nstderr:\n{}",
        out.status,
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}
