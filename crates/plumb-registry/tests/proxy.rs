//! Pull-through caches: a plumb registry mirrors another plumb registry
//! (with Basic auth, so upstream credentials are exercised); crane pulls
//! through the mirror, the cache serves with the upstream gone, tags are
//! re-checked after their TTL, one uncached blob is fetched once however
//! many clients ask, and content with the wrong digest is never kept.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{TestRegistry, run, tool};
use plumb_oci::Digest;

/// A mirror of `upstream` under prefix `hub`, logged in to it through the
/// upstream's docker config file, with `tag_ttl`.
fn mirror(upstream: &TestRegistry, tag_ttl: &str) -> TestRegistry {
    let config = upstream.docker_config().join("config.json");
    TestRegistry::start_with(&format!(
        "proxy:\n  - prefix: hub\n    upstream: {}\n    tag_ttl: {tag_ttl}\n    credentials: {{ docker_config: {} }}\n",
        upstream.url(),
        config.display()
    ))
}

/// The value of the metric line starting with `prefix` (0 when absent).
fn metric(reg: &TestRegistry, prefix: &str) -> f64 {
    reg.registry
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn upstream_blob_gets(upstream: &TestRegistry) -> f64 {
    metric(
        upstream,
        "plumb_registry_http_requests_total{endpoint=\"blob\",method=\"GET\",code=\"200\"}",
    )
}

fn crane(reg: &TestRegistry) -> Command {
    let mut c = Command::new(tool("crane"));
    c.env("DOCKER_CONFIG", reg.docker_config())
        .arg("--insecure");
    c
}

#[test]
fn crane_pulls_through_the_cache_and_again_with_the_upstream_gone() {
    let upstream = TestRegistry::start();
    let (digest, manifest) = upstream.http().push_image(
        "library/alpine",
        "3.20",
        &[b"alpine layer one", b"layer two"],
    );
    let proxy = mirror(&upstream, "0s");
    let r = format!("{}/hub/library/alpine:3.20", proxy.host());
    let out = run(crane(&proxy).args(["manifest", &r]));
    assert_eq!(
        out.stdout, manifest,
        "the upstream's manifest, byte for byte"
    );
    let dst = proxy.dir.path().join("pulled");
    run(crane(&proxy).args(["pull", "--format=oci", &r]).arg(&dst));
    let out = run(crane(&proxy).args(["digest", &r]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        digest.to_string()
    );
    assert_eq!(upstream_blob_gets(&upstream), 3.0, "config and two layers");
    assert!(
        metric(
            &proxy,
            "plumb_registry_proxy_requests_total{kind=\"blob\",result=\"miss\"}"
        ) >= 3.0
    );
    // Cached content is ordinary content of the local repository.
    let tags = proxy.http().get("/v2/hub/library/alpine/tags/list");
    assert!(tags.text().unwrap().contains("3.20"));

    // The upstream goes away: the mirror serves what it holds, by tag too
    // (tag_ttl 0s: every pull asks upstream first, and falls back).
    drop(upstream);
    let again = proxy.dir.path().join("again");
    run(crane(&proxy).args(["pull", "--format=oci", &r]).arg(&again));
    assert_eq!(
        std::fs::read(dst.join("index.json")).unwrap(),
        std::fs::read(again.join("index.json")).unwrap()
    );
    assert!(
        metric(
            &proxy,
            "plumb_registry_proxy_upstream_errors_total{kind=\"manifest\"}"
        ) >= 1.0
    );
    // Something never cached cannot be served, and says why.
    let r = proxy.http().get("/v2/hub/library/busybox/manifests/1.36");
    assert_eq!(r.status(), 502);
}

#[test]
fn tags_are_checked_upstream_after_their_ttl() {
    let upstream = TestRegistry::start();
    let up = upstream.http();
    let (first, _) = up.push_image("org/app", "stable", &[b"first build"]);
    let proxy = mirror(&upstream, "2s");
    let http = proxy.http();
    let digest_now = || {
        let r = http.get("/v2/hub/org/app/manifests/stable");
        assert_eq!(r.status(), 200);
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(digest_now(), first.to_string());
    let started = std::time::Instant::now();
    let (second, _) = up.push_image("org/app", "stable", &[b"second build"]);
    assert_ne!(first, second);
    assert_eq!(
        digest_now(),
        first.to_string(),
        "within the TTL: the cached digest"
    );
    assert!(
        started.elapsed().as_secs_f64() < 2.0,
        "the check ran within the TTL"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        digest_now(),
        second.to_string(),
        "after the TTL: the upstream's"
    );
    // The old manifest stays readable by digest.
    assert_eq!(
        http.get(&format!("/v2/hub/org/app/manifests/{first}"))
            .status(),
        200
    );
}

#[test]
fn concurrent_pulls_of_an_uncached_blob_fetch_it_once() {
    let upstream = TestRegistry::start();
    let big: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (_, _) = upstream.http().push_image("org/big", "v1", &[&big]);
    let layer = Digest::sha256_of(&big);
    let proxy = mirror(&upstream, "5m");
    let before = upstream_blob_gets(&upstream);
    let barrier = std::sync::Barrier::new(6);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let http = proxy.http();
                    barrier.wait();
                    let r = http.get(&format!("/v2/hub/org/big/blobs/{layer}"));
                    assert_eq!(r.status(), 200);
                    Digest::sha256_of(&r.bytes().unwrap())
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), layer);
        }
    });
    assert_eq!(
        upstream_blob_gets(&upstream) - before,
        1.0,
        "one upstream fetch"
    );
    assert_eq!(
        metric(&proxy, "plumb_registry_proxy_fetched_bytes_total"),
        big.len() as f64
    );
}

#[test]
fn a_blob_with_the_wrong_digest_is_not_kept() {
    let upstream = TestRegistry::start();
    let layer = b"the genuine layer bytes".to_vec();
    upstream.http().push_image("org/app", "v1", &[&layer]);
    let d = Digest::sha256_of(&layer);
    // Corrupt the upstream's copy on disk (same length, other bytes).
    let file = upstream
        .blob_files()
        .into_iter()
        .find(|p| p.ends_with(d.hex()))
        .unwrap();
    std::fs::write(&file, b"THE GENUINE LAYER BYTES").unwrap();
    let proxy = mirror(&upstream, "5m");
    let http = proxy.http();
    let path = format!("/v2/hub/org/app/blobs/{d}");
    let broken = http
        .req(reqwest::Method::GET, &path)
        .send()
        .and_then(|r| r.bytes());
    assert!(
        broken.is_err(),
        "the response is cut before its end: {broken:?}"
    );
    assert!(
        proxy.registry.config().proxy_for("hub/org/app").is_some()
            && !proxy.blob_files().iter().any(|p| p.ends_with(d.hex())),
        "nothing was stored"
    );
    assert!(
        metric(
            &proxy,
            "plumb_registry_proxy_upstream_errors_total{kind=\"blob\"}"
        ) >= 1.0
    );
    // Asked again, it is fetched again (and refused again), never served from the cache.
    assert!(
        http.req(reqwest::Method::GET, &path)
            .send()
            .and_then(|r| r.bytes())
            .is_err()
    );
}

#[test]
fn the_mirror_is_read_only_and_uses_configured_passwords() {
    let upstream = TestRegistry::start();
    upstream.http().push_image("org/app", "v1", &[b"x"]);
    // A password in the configuration (the docker config route is above).
    let proxy = TestRegistry::start_with(&format!(
        "proxy:\n  - prefix: hub\n    upstream: {}\n    credentials: {{ username: {}, password: {} }}\n",
        upstream.url(),
        common::USER,
        common::PASSWORD
    ));
    let http = proxy.http();
    assert_eq!(http.get("/v2/hub/org/app/manifests/v1").status(), 200);
    let r = http.post("/v2/hub/org/app/blobs/uploads/");
    assert_eq!(r.status(), 403);
    let body = r.text().unwrap();
    assert_eq!(common::error_code(&body), "DENIED");
    assert!(body.contains("read-only pull-through cache"), "{body}");
    let r = http.delete("/v2/hub/org/app/manifests/v1");
    assert_eq!(r.status(), 403);
    // Outside the prefix the registry is an ordinary one.
    http.push_image("local/app", "v1", &[b"y"]);
    // Wrong upstream credentials: nothing is served, nothing leaks.
    let bad = TestRegistry::start_with(&format!(
        "proxy:\n  - prefix: hub\n    upstream: {}\n    credentials: {{ username: {}, password: not-it }}\n",
        upstream.url(),
        common::USER
    ));
    let r = bad.http().get("/v2/hub/org/app/manifests/v1");
    assert_eq!(r.status(), 502);
    assert!(!r.text().unwrap().contains("not-it"));
}
