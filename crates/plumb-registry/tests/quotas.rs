//! Storage quotas per repository prefix: a push that would take the prefix
//! over its quota is refused with DENIED naming the quota; a blob already in
//! the prefix costs nothing again; other prefixes are not limited.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestRegistry, error_code};

#[test]
fn pushes_over_a_prefix_quota_are_refused() {
    let reg = TestRegistry::start_with("quotas:\n  - { prefix: team-a/, max_bytes: 1000 }\n");
    let http = reg.http();
    let first = vec![b'a'; 600];
    http.push_blob("team-a/one", &first);
    // Another 600 bytes would make 1200.
    let second = vec![b'b'; 600];
    let d = plumb_oci::Digest::sha256_of(&second);
    let r = http
        .req(
            reqwest::Method::POST,
            &format!("/v2/team-a/two/blobs/uploads/?digest={d}"),
        )
        .body(second.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().unwrap();
    assert_eq!(error_code(&body), "DENIED");
    assert!(body.contains("quota") && body.contains("team-a"), "{body}");
    assert!(
        !reg.blob_files().iter().any(|p| p.ends_with(d.hex())),
        "nothing was stored"
    );
    // The same blob in another repository of the prefix counts once.
    http.push_blob("team-a/two", &first);
    // A mount that would go over is refused too.
    http.push_blob("team-b/app", &second);
    let r = http.post(&format!(
        "/v2/team-a/three/blobs/uploads/?mount={d}&from=team-b/app"
    ));
    assert_eq!(r.status(), 403);
    // A manifest that would go over.
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":600}},"layers":[],"annotations":{{"pad":"{}"}}}}"#,
        plumb_oci::Digest::sha256_of(&first),
        "x".repeat(400)
    );
    let r = http.put_manifest("team-a/one", "v1", manifest.as_bytes());
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("quota"));
    // Other prefixes are not limited.
    http.push_blob("team-b/app", &vec![b'c'; 5000]);
    let m = reg.registry.metrics.encode();
    assert!(
        m.contains("plumb_registry_policy_refusals_total{policy=\"quota\"} 3"),
        "{m}"
    );
}
